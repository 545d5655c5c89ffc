//! Flow control of one file transfer (protocol 2), with no I/O: which chunks to accept and when
//! to acknowledge them while receiving `get_file` data ([`Download`]), and how much may be sent
//! and when an upload is complete while sending `put_file` data ([`Upload`]).
//!
//! Shared by the CLI and the hub's HTTP file endpoints. Version 1 is Mender's: 4 KiB chunks,
//! 20 chunks beyond the last acknowledged offset, an ack for every chunk received. Version 2:
//! 256 KiB chunks, 8 MiB beyond the last ack, an ack at least every 1 MiB. Acks are cumulative
//! (`offset` = bytes received so far). Hashing (the version-2 `sha256`) stays with the caller.

use crate::{
    control::ErrorBody,
    file_transfer::{FileTransfer, MAX_CHUNK, VERSION_1_CHUNK, VERSION_1_WINDOW_CHUNKS, WINDOW_BYTES},
    version,
};

/// A version-2 receiver acknowledges at least this often.
pub const ACK_EVERY: i64 = 1024 * 1024;

/// Why a transfer cannot go on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TransferError {
    #[error("file chunk at offset {got}, expected {expected}")]
    OutOfOrder { expected: i64, got: i64 },
    #[error("{}", .0.err)]
    Refused(ErrorBody),
    #[error("unexpected `{0}` message during a file transfer")]
    Unexpected(&'static str),
    #[error("acknowledgement of {acked} bytes, but only {sent} were sent")]
    AckBeyondSent { acked: i64, sent: i64 },
}

/// What to do with a message received during a download.
#[derive(Debug, Clone, PartialEq)]
pub enum DownloadStep {
    /// Write `data`; then send `ack {offset}` if `ack` is set.
    Data { data: Vec<u8>, ack: Option<i64> },
    /// The file is complete at `ack` bytes: send the final `ack`, and check `sha256` (version 2)
    /// against the hash of the whole local file.
    Finished { ack: i64, sha256: Option<String> },
}

/// The receiving side of `get_file`.
#[derive(Debug, Clone)]
pub struct Download {
    version: u32,
    offset: i64,
    last_ack: i64,
    finished: bool,
}

impl Download {
    /// `start_offset`: where the data starts (the `offset` of a resuming `get_file`, else 0).
    pub fn new(version: u32, start_offset: i64) -> Download {
        Download {
            version,
            offset: start_offset,
            last_ack: start_offset,
            finished: false,
        }
    }

    /// Bytes received so far, counting from the start of the file.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    pub fn on_message(&mut self, message: FileTransfer) -> Result<DownloadStep, TransferError> {
        match message {
            FileTransfer::FileChunk { offset, data, sha256 } => {
                if offset != self.offset || self.finished {
                    return Err(TransferError::OutOfOrder {
                        expected: self.offset,
                        got: offset,
                    });
                }
                if data.is_empty() {
                    self.finished = true;
                    self.last_ack = self.offset;
                    return Ok(DownloadStep::Finished {
                        ack: self.offset,
                        sha256,
                    });
                }
                self.offset += data.len() as i64;
                let due = self.version < version::TETHER || self.offset - self.last_ack >= ACK_EVERY;
                let ack = due.then(|| {
                    self.last_ack = self.offset;
                    self.offset
                });
                Ok(DownloadStep::Data { data, ack })
            }
            FileTransfer::Error(body) => Err(TransferError::Refused(body)),
            other => Err(TransferError::Unexpected(other.typ())),
        }
    }
}

/// What an upload's inbound message meant.
#[derive(Debug, Clone, PartialEq)]
pub enum UploadStep {
    /// The window moved (or nothing changed): send what [`Upload::sendable`] allows.
    Continue,
    /// The device acknowledged the whole file after the final chunk.
    Done,
}

/// The sending side of `put_file`, after the device's first `ack` (which says where to start).
#[derive(Debug, Clone)]
pub struct Upload {
    version: u32,
    sent: i64,
    acked: i64,
    finished: bool,
}

impl Upload {
    pub fn new(version: u32, start_offset: i64) -> Upload {
        Upload {
            version,
            sent: start_offset,
            acked: start_offset,
            finished: false,
        }
    }

    fn chunk_size(&self) -> usize {
        if self.version < version::TETHER {
            VERSION_1_CHUNK
        } else {
            MAX_CHUNK
        }
    }

    fn window(&self) -> i64 {
        if self.version < version::TETHER {
            (VERSION_1_CHUNK * VERSION_1_WINDOW_CHUNKS) as i64
        } else {
            WINDOW_BYTES as i64
        }
    }

    /// How many bytes the next chunk may carry now (0: wait for an ack).
    pub fn sendable(&self) -> usize {
        if self.finished {
            return 0;
        }
        let room = (self.acked + self.window() - self.sent).max(0);
        self.chunk_size().min(usize::try_from(room).unwrap_or(usize::MAX))
    }

    /// Bytes sent so far (the offset of the next chunk).
    pub fn sent(&self) -> i64 {
        self.sent
    }

    /// Bytes the device acknowledged: where a resumed upload starts at the latest.
    pub fn acked(&self) -> i64 {
        self.acked
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The next data chunk (at most [`Upload::sendable`] bytes; not empty).
    pub fn chunk(&mut self, data: Vec<u8>) -> FileTransfer {
        debug_assert!(!data.is_empty(), "an empty chunk ends the file: use finish");
        let offset = self.sent;
        self.sent += data.len() as i64;
        FileTransfer::FileChunk {
            offset,
            data,
            sha256: None,
        }
    }

    /// The final, empty chunk; `sha256` (hex of the whole file) is sent on version 2 only.
    pub fn finish(&mut self, sha256: Option<String>) -> FileTransfer {
        self.finished = true;
        FileTransfer::FileChunk {
            offset: self.sent,
            data: Vec::new(),
            sha256: sha256.filter(|_| self.version >= version::TETHER),
        }
    }

    pub fn on_message(&mut self, message: FileTransfer) -> Result<UploadStep, TransferError> {
        match message {
            FileTransfer::Ack { offset } => {
                if offset > self.sent {
                    return Err(TransferError::AckBeyondSent {
                        acked: offset,
                        sent: self.sent,
                    });
                }
                self.acked = self.acked.max(offset);
                if self.finished && offset == self.sent {
                    Ok(UploadStep::Done)
                } else {
                    Ok(UploadStep::Continue)
                }
            }
            FileTransfer::Error(body) => Err(TransferError::Refused(body)),
            other => Err(TransferError::Unexpected(other.typ())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(offset: i64, len: usize) -> FileTransfer {
        FileTransfer::FileChunk {
            offset,
            data: vec![7; len],
            sha256: None,
        }
    }

    #[test]
    fn version_1_download_acks_every_chunk() {
        let mut download = Download::new(1, 0);
        assert_eq!(
            download.on_message(chunk(0, 4096)).unwrap(),
            DownloadStep::Data {
                data: vec![7; 4096],
                ack: Some(4096)
            }
        );
        let DownloadStep::Data { ack, .. } = download.on_message(chunk(4096, 1)).unwrap() else {
            panic!("data expected");
        };
        assert_eq!(ack, Some(4097));
        assert_eq!(
            download.on_message(chunk(4097, 0)).unwrap(),
            DownloadStep::Finished {
                ack: 4097,
                sha256: None
            }
        );
        assert!(download.is_finished());
    }

    #[test]
    fn version_2_download_acks_every_mebibyte() {
        let mut download = Download::new(2, 0);
        let mut acks = Vec::new();
        for i in 0..9 {
            let DownloadStep::Data { ack, .. } = download.on_message(chunk(i * 262_144, 262_144)).unwrap()
            else {
                panic!("data expected");
            };
            acks.push(ack);
        }
        let mib = 1 << 20;
        assert_eq!(
            acks,
            [None, None, None, Some(mib), None, None, None, Some(2 * mib), None]
        );
        let end = 9 * 262_144;
        assert_eq!(
            download
                .on_message(FileTransfer::FileChunk {
                    offset: end,
                    data: vec![],
                    sha256: Some("ab".into())
                })
                .unwrap(),
            DownloadStep::Finished {
                ack: end,
                sha256: Some("ab".into())
            }
        );
    }

    #[test]
    fn resumed_download_starts_at_the_offset() {
        let mut download = Download::new(2, 1000);
        assert_eq!(
            download.on_message(chunk(0, 10)),
            Err(TransferError::OutOfOrder {
                expected: 1000,
                got: 0
            })
        );
        let mut download = Download::new(2, 1000);
        assert!(download.on_message(chunk(1000, 10)).is_ok());
        assert_eq!(download.offset(), 1010);
    }

    #[test]
    fn download_rejects_gaps_errors_and_strays() {
        let mut download = Download::new(2, 0);
        download.on_message(chunk(0, 100)).unwrap();
        assert_eq!(
            download.on_message(chunk(200, 100)),
            Err(TransferError::OutOfOrder {
                expected: 100,
                got: 200
            })
        );
        let refusal = ErrorBody::new("no space left on device");
        assert_eq!(
            download.on_message(FileTransfer::Error(refusal.clone())),
            Err(TransferError::Refused(refusal))
        );
        assert_eq!(
            download.on_message(FileTransfer::Ack { offset: 0 }),
            Err(TransferError::Unexpected("ack"))
        );
        download.on_message(chunk(100, 0)).unwrap();
        assert!(matches!(
            download.on_message(chunk(100, 0)),
            Err(TransferError::OutOfOrder { .. })
        ));
    }

    #[test]
    fn version_1_upload_window_is_20_small_chunks() {
        let mut upload = Upload::new(1, 0);
        let mut sent = 0;
        while upload.sendable() > 0 {
            assert_eq!(upload.sendable(), 4096);
            upload.chunk(vec![1; 4096]);
            sent += 1;
        }
        assert_eq!(sent, 20);
        assert_eq!(
            upload.on_message(FileTransfer::Ack { offset: 4096 }).unwrap(),
            UploadStep::Continue
        );
        assert_eq!(upload.sendable(), 4096);
        // An ack that went backwards does not shrink the window.
        upload.on_message(FileTransfer::Ack { offset: 0 }).unwrap();
        assert_eq!(upload.acked(), 4096);
    }

    #[test]
    fn version_2_upload_window_is_8_mib_of_big_chunks() {
        let mut upload = Upload::new(2, 0);
        let mut sent = 0;
        while upload.sendable() > 0 {
            assert_eq!(upload.sendable(), MAX_CHUNK);
            upload.chunk(vec![1; MAX_CHUNK]);
            sent += 1;
        }
        assert_eq!(sent, 32);
        upload.on_message(FileTransfer::Ack { offset: 100 }).unwrap();
        assert_eq!(upload.sendable(), 100);
        upload.chunk(vec![1; 100]);
        assert_eq!(upload.sendable(), 0);
        assert_eq!(
            upload.on_message(FileTransfer::Ack { offset: 1 << 30 }),
            Err(TransferError::AckBeyondSent {
                acked: 1 << 30,
                sent: 8 * 1024 * 1024 + 100
            })
        );
    }

    #[test]
    fn upload_is_done_when_the_total_is_acked_after_finish() {
        let mut upload = Upload::new(2, 0);
        upload.chunk(vec![1; 10]);
        assert_eq!(
            upload.on_message(FileTransfer::Ack { offset: 10 }).unwrap(),
            UploadStep::Continue
        );
        assert_eq!(
            upload.finish(Some("cafe".into())),
            FileTransfer::FileChunk {
                offset: 10,
                data: vec![],
                sha256: Some("cafe".into())
            }
        );
        assert_eq!(upload.sendable(), 0);
        assert_eq!(
            upload.on_message(FileTransfer::Ack { offset: 10 }).unwrap(),
            UploadStep::Done
        );
        let refusal = ErrorBody::new("sha256 mismatch");
        assert_eq!(
            upload.on_message(FileTransfer::Error(refusal.clone())),
            Err(TransferError::Refused(refusal))
        );
        assert_eq!(
            upload.on_message(FileTransfer::Stat { path: "/".into() }),
            Err(TransferError::Unexpected("stat"))
        );
    }

    #[test]
    fn empty_and_resumed_uploads() {
        let mut empty = Upload::new(1, 0);
        // Version 1 has no checksum.
        assert_eq!(
            empty.finish(Some("e3b0".into())),
            FileTransfer::FileChunk {
                offset: 0,
                data: vec![],
                sha256: None
            }
        );
        assert_eq!(
            empty.on_message(FileTransfer::Ack { offset: 0 }).unwrap(),
            UploadStep::Done
        );
        let mut resumed = Upload::new(2, 5000);
        assert_eq!(resumed.sent(), 5000);
        let FileTransfer::FileChunk { offset, .. } = resumed.chunk(vec![0; 3]) else {
            panic!("a chunk");
        };
        assert_eq!(offset, 5000);
    }
}
