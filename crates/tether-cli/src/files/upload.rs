//! One file to the device: `put_file` with the local mode (the device decides the owner), the
//! data under the flow control of [`Upload`], and on version 2 the sha256 of the whole file
//! in the final chunk. A dropped session (version 2) resumes with the same `upload_id` at the
//! last acknowledged offset; the device answers with what it actually has.

use std::{
    fs::File,
    io::{Read, Seek, SeekFrom},
    os::unix::fs::MetadataExt,
    path::Path,
};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use tether_proto::{
    file_transfer::{FileTransfer, PutFile, go_mode},
    transfer::{Upload, UploadStep},
};

use super::{link::Link, progress::Progress, refused, transfer_failed};

/// 16 random hex characters naming the upload's temporary file on the device.
pub fn upload_id() -> String {
    let mut bytes = [0u8; 8];
    let random = File::open("/dev/urandom").and_then(|mut source| source.read_exact(&mut bytes));
    if random.is_err() {
        // Unique enough for one device's uploads in flight.
        let now = tether_proto::clock::unix_millis().unsigned_abs();
        bytes = (now ^ (u64::from(std::process::id()) << 40)).to_le_bytes();
    }
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Reads until `buffer` is full or the file ends; returns the bytes read.
fn read_up_to(file: &mut File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// The hash of the first `length` bytes, leaving the file positioned there.
fn hash_prefix(file: &mut File, length: u64) -> std::io::Result<Sha256> {
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = Sha256::new();
    // Read by hand: digest 0.11's hashers are not `io::Write`.
    let mut limited = file.by_ref().take(length);
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match limited.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        hasher.update(&buffer[..read]);
    }
    file.seek(SeekFrom::Start(length))?;
    Ok(hasher)
}

/// Uploads `local` to `remote`; returns the hex sha256 of what was sent.
pub async fn upload(link: &mut Link, local: &Path, remote: &str, progress: &Progress) -> Result<String> {
    let mut file = File::open(local).with_context(|| format!("cannot open {}", local.display()))?;
    let metadata = file
        .metadata()
        .with_context(|| format!("cannot read {}", local.display()))?;
    let id = link.can_resume().then(upload_id);
    let mut resume_at: Option<i64> = None;
    let mut buffer = Vec::new();
    loop {
        link.send(&FileTransfer::PutFile(PutFile {
            path: remote.to_owned(),
            size: Some(metadata.len() as i64),
            mode: Some(go_mode::from_unix(metadata.mode())),
            offset: resume_at,
            upload_id: id.clone(),
            ..Default::default()
        }));
        let start = match link.recv().await {
            Ok(FileTransfer::Ack { offset }) => offset,
            Ok(FileTransfer::Error(body)) => return Err(refused(&link.label, remote, &body)),
            Ok(other) => bail!(
                "{}:{remote}: unexpected `{}` answer to put_file",
                link.label,
                other.typ()
            ),
            Err(lost) => {
                link.reconnect(lost).await?;
                continue;
            }
        };
        if start < 0 || start as u64 > metadata.len() {
            bail!(
                "{}:{remote}: the device resumes at {start} bytes, beyond the file",
                link.label
            );
        }
        // The device may have kept more than was acknowledged: those bytes came from this
        // upload (same `upload_id`), so continuing after them is right.
        if resume_at.is_some() {
            progress.say(&format!("tether: connection lost; resuming at {start} bytes"));
        }
        let mut hasher =
            hash_prefix(&mut file, start as u64).with_context(|| format!("reading {}", local.display()))?;
        progress.at(start as u64);
        let mut flow = Upload::new(link.version(), start);
        let lost = loop {
            while !flow.is_finished() && flow.sendable() > 0 {
                buffer.resize(flow.sendable(), 0);
                let read = read_up_to(&mut file, &mut buffer)
                    .with_context(|| format!("reading {}", local.display()))?;
                if read == 0 {
                    let sha256 = hex::encode(hasher.clone().finalize());
                    link.send(&flow.finish(Some(sha256)));
                } else {
                    hasher.update(&buffer[..read]);
                    link.send(&flow.chunk(buffer[..read].to_vec()));
                    progress.at(flow.sent() as u64);
                }
            }
            let message = match link.recv().await {
                Ok(message) => message,
                Err(lost) => break lost,
            };
            match flow
                .on_message(message)
                .map_err(|error| transfer_failed(&link.label, remote, error))?
            {
                UploadStep::Done => return Ok(hex::encode(hasher.finalize())),
                UploadStep::Continue => {}
            }
        };
        link.reconnect(lost).await?;
        resume_at = Some(flow.acked());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids_are_16_hex_characters() {
        let id = upload_id();
        assert_eq!(id.len(), 16);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(id, upload_id());
    }
}
