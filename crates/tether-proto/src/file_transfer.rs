//! The file transfer protocol (2): `stat`, `get_file` and `put_file`, streamed in `file_chunk`s
//! and acknowledged by offset.
//!
//! Version-2 extensions (see `docs/protocol.md`): `offset` on `get_file` and `put_file` to resume,
//! `upload_id` to find an interrupted upload's temporary file, a `sha256` prop on the final (empty)
//! chunk, larger chunks with a byte window instead of 20 chunks, and `list` / `mkdir`.

use crate::{
    Error,
    control::ErrorBody,
    envelope::Envelope,
    protocol::FILE_TRANSFER,
    value::{Value, map},
};

/// Chunk size and window of the stock agent (version 1): 4 KiB, 20 chunks beyond the last ack.
pub const VERSION_1_CHUNK: usize = 4096;
pub const VERSION_1_WINDOW_CHUNKS: usize = 20;
/// Version 2: chunks of up to 256 KiB, and up to 8 MiB beyond the last acknowledged offset.
pub const MAX_CHUNK: usize = 256 * 1024;
pub const WINDOW_BYTES: usize = 8 * 1024 * 1024;

/// Go's `os.FileMode` bits, as the stock agent puts them in `file_info.mode`: the file type is
/// in the high bits (none set: a regular file), the permissions in the low nine.
pub mod go_mode {
    pub const DIRECTORY: u32 = 1 << 31;
    pub const SYMLINK: u32 = 1 << 27;
    /// A device node; a character device also has [`CHAR_DEVICE`].
    pub const DEVICE: u32 = 1 << 26;
    pub const NAMED_PIPE: u32 = 1 << 25;
    pub const SOCKET: u32 = 1 << 24;
    pub const SETUID: u32 = 1 << 23;
    pub const SETGID: u32 = 1 << 22;
    pub const CHAR_DEVICE: u32 = 1 << 21;
    pub const STICKY: u32 = 1 << 20;
    /// A file of a type Go does not know.
    pub const IRREGULAR: u32 = 1 << 19;
    /// Every file type bit.
    pub const TYPE: u32 = DIRECTORY | SYMLINK | DEVICE | NAMED_PIPE | SOCKET | CHAR_DEVICE | IRREGULAR;

    /// Converts a Unix `st_mode` to Go's layout (what Go's `os.Stat` reports).
    pub fn from_unix(st_mode: u32) -> u32 {
        let mut mode = st_mode & 0o777;
        match st_mode & 0o170000 {
            0o100000 => {}
            0o040000 => mode |= DIRECTORY,
            0o120000 => mode |= SYMLINK,
            0o010000 => mode |= NAMED_PIPE,
            0o140000 => mode |= SOCKET,
            0o020000 => mode |= DEVICE | CHAR_DEVICE,
            0o060000 => mode |= DEVICE,
            _ => mode |= IRREGULAR,
        }
        if st_mode & 0o4000 != 0 {
            mode |= SETUID;
        }
        if st_mode & 0o2000 != 0 {
            mode |= SETGID;
        }
        if st_mode & 0o1000 != 0 {
            mode |= STICKY;
        }
        mode
    }

    /// The permission and special bits of a Go mode, as Unix bits (file type dropped).
    pub fn to_unix_permissions(mode: u32) -> u32 {
        let mut bits = mode & 0o777;
        if mode & SETUID != 0 {
            bits |= 0o4000;
        }
        if mode & SETGID != 0 {
            bits |= 0o2000;
        }
        if mode & STICKY != 0 {
            bits |= 0o1000;
        }
        bits
    }

    /// A plain file: the only kind `get_file` and `put_file` transfer.
    pub fn is_regular(mode: u32) -> bool {
        mode & TYPE == 0
    }

    /// The file type in words, for listings and refusals: `file`, `directory`, `symlink`,
    /// `fifo`, `socket`, `char device`, `block device` or `other`.
    pub fn kind(mode: u32) -> &'static str {
        if mode & DIRECTORY != 0 {
            "directory"
        } else if mode & SYMLINK != 0 {
            "symlink"
        } else if mode & NAMED_PIPE != 0 {
            "fifo"
        } else if mode & SOCKET != 0 {
            "socket"
        } else if mode & CHAR_DEVICE != 0 {
            "char device"
        } else if mode & DEVICE != 0 {
            "block device"
        } else if is_regular(mode) {
            "file"
        } else {
            "other"
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileInfo {
    pub path: String,
    pub size: i64,
    pub uid: u32,
    pub gid: u32,
    /// Go `os.FileMode` layout (see [`go_mode`]).
    pub mode: u32,
    /// Unix seconds and nanoseconds.
    pub modtime: (i64, u32),
}

impl FileInfo {
    pub fn to_value(&self) -> Value {
        map([
            ("path", Some(Value::Str(self.path.clone()))),
            ("size", Some(Value::Int64(self.size))),
            ("uid", Some(Value::UInt32(self.uid))),
            ("gid", Some(Value::UInt32(self.gid))),
            ("mode", Some(Value::UInt32(self.mode))),
            (
                "modtime",
                Some(Value::Timestamp {
                    seconds: self.modtime.0,
                    nanoseconds: self.modtime.1,
                }),
            ),
        ])
    }

    pub fn from_value(value: &Value) -> Result<FileInfo, Error> {
        let u32_field = |key| {
            value
                .get(key)
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(0)
        };
        Ok(FileInfo {
            path: value
                .get("path")
                .and_then(Value::as_str)
                .ok_or(Error::Missing("path"))?
                .to_owned(),
            size: value.get("size").and_then(Value::as_i64).unwrap_or(0),
            uid: u32_field("uid"),
            gid: u32_field("gid"),
            mode: u32_field("mode"),
            modtime: match value.get("modtime") {
                Some(Value::Timestamp { seconds, nanoseconds }) => (*seconds, *nanoseconds),
                Some(other) => (other.as_i64().unwrap_or(0), 0),
                None => (0, 0),
            },
        })
    }
}

/// `put_file`'s body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PutFile {
    pub path: String,
    pub src_path: Option<String>,
    pub size: Option<i64>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Go `os.FileMode` layout.
    pub mode: Option<u32>,
    /// Version 2: resume an interrupted upload at this offset (with the same `upload_id`).
    pub offset: Option<i64>,
    /// Version 2: names the upload's temporary file so that a resume finds it.
    pub upload_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FileTransfer {
    Stat {
        path: String,
    },
    FileInfo(FileInfo),
    /// `offset` is a version-2 extension (resume).
    GetFile {
        path: String,
        offset: Option<i64>,
    },
    PutFile(PutFile),
    /// `offset` prop (int64) and data; an empty chunk ends the file. The final chunk of a
    /// version-2 transfer carries `sha256` (hex of the whole file).
    FileChunk {
        offset: i64,
        data: Vec<u8>,
        sha256: Option<String>,
    },
    Ack {
        offset: i64,
    },
    Error(ErrorBody),
    /// Version 2: list a directory; answered by `file_list`.
    List {
        path: String,
    },
    FileList {
        path: String,
        entries: Vec<FileInfo>,
    },
    /// Version 2: create a directory (for recursive uploads); answered by `ack` offset 0.
    Mkdir {
        path: String,
        mode: Option<u32>,
    },
}

impl FileTransfer {
    pub fn typ(&self) -> &'static str {
        match self {
            FileTransfer::Stat { .. } => "stat",
            FileTransfer::FileInfo(_) => "file_info",
            FileTransfer::GetFile { .. } => "get_file",
            FileTransfer::PutFile(_) => "put_file",
            FileTransfer::FileChunk { .. } => "file_chunk",
            FileTransfer::Ack { .. } => "ack",
            FileTransfer::Error(_) => "error",
            FileTransfer::List { .. } => "list",
            FileTransfer::FileList { .. } => "file_list",
            FileTransfer::Mkdir { .. } => "mkdir",
        }
    }

    pub fn to_envelope(&self, sid: &str) -> Envelope {
        let mut envelope = Envelope::new(FILE_TRANSFER, self.typ(), sid);
        let body = match self {
            FileTransfer::Stat { path } | FileTransfer::List { path } => {
                Some(map([("path", Some(Value::Str(path.clone())))]))
            }
            FileTransfer::FileInfo(info) => Some(info.to_value()),
            FileTransfer::GetFile { path, offset } => Some(map([
                ("path", Some(Value::Str(path.clone()))),
                ("offset", offset.map(Value::Int64)),
            ])),
            FileTransfer::PutFile(put) => Some(map([
                ("path", Some(Value::Str(put.path.clone()))),
                ("src_path", put.src_path.clone().map(Value::Str)),
                ("size", put.size.map(Value::Int64)),
                ("uid", put.uid.map(Value::UInt32)),
                ("gid", put.gid.map(Value::UInt32)),
                ("mode", put.mode.map(Value::UInt32)),
                ("offset", put.offset.map(Value::Int64)),
                ("upload_id", put.upload_id.clone().map(Value::Str)),
            ])),
            FileTransfer::FileChunk { offset, data, sha256 } => {
                envelope.props.set("offset", Value::Int64(*offset));
                if let Some(hash) = sha256 {
                    envelope.props.set("sha256", Value::Str(hash.clone()));
                }
                envelope.body = data.clone();
                None
            }
            FileTransfer::Ack { offset } => {
                envelope.props.set("offset", Value::Int64(*offset));
                None
            }
            FileTransfer::Error(body) => Some(body.to_value()),
            FileTransfer::FileList { path, entries } => Some(map([
                ("path", Some(Value::Str(path.clone()))),
                (
                    "entries",
                    Some(Value::Array(entries.iter().map(FileInfo::to_value).collect())),
                ),
            ])),
            FileTransfer::Mkdir { path, mode } => Some(map([
                ("path", Some(Value::Str(path.clone()))),
                ("mode", mode.map(Value::UInt32)),
            ])),
        };
        if let Some(body) = body {
            envelope.body = body.encode();
        }
        envelope
    }

    pub fn from_envelope(envelope: &Envelope) -> Result<FileTransfer, Error> {
        let path_of = |body: &Value| -> Result<String, Error> {
            Ok(body
                .get("path")
                .and_then(Value::as_str)
                .ok_or(Error::Missing("path"))?
                .to_owned())
        };
        let u32_of = |body: &Value, key| {
            body.get(key)
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
        };
        let offset_prop = || envelope.props.i64("offset").ok_or(Error::Missing("offset"));
        Ok(match envelope.typ.as_str() {
            "stat" => FileTransfer::Stat {
                path: path_of(&envelope.body_value()?)?,
            },
            "list" => FileTransfer::List {
                path: path_of(&envelope.body_value()?)?,
            },
            "file_info" => FileTransfer::FileInfo(FileInfo::from_value(&envelope.body_value()?)?),
            "get_file" => {
                let body = envelope.body_value()?;
                FileTransfer::GetFile {
                    path: path_of(&body)?,
                    offset: body.get("offset").and_then(Value::as_i64),
                }
            }
            "put_file" => {
                let body = envelope.body_value()?;
                FileTransfer::PutFile(PutFile {
                    path: path_of(&body)?,
                    src_path: body.get("src_path").and_then(Value::as_str).map(str::to_owned),
                    size: body.get("size").and_then(Value::as_i64),
                    uid: u32_of(&body, "uid"),
                    gid: u32_of(&body, "gid"),
                    mode: u32_of(&body, "mode"),
                    offset: body.get("offset").and_then(Value::as_i64),
                    upload_id: body.get("upload_id").and_then(Value::as_str).map(str::to_owned),
                })
            }
            "file_chunk" => FileTransfer::FileChunk {
                offset: offset_prop()?,
                data: envelope.body.clone(),
                sha256: envelope.props.str("sha256").map(str::to_owned),
            },
            "ack" => FileTransfer::Ack {
                offset: offset_prop()?,
            },
            "error" => FileTransfer::Error(ErrorBody::from_value(&envelope.body_value()?)?),
            "file_list" => {
                let body = envelope.body_value()?;
                let entries = body
                    .get("entries")
                    .and_then(Value::as_array)
                    .unwrap_or_default()
                    .iter()
                    .map(FileInfo::from_value)
                    .collect::<Result<_, _>>()?;
                FileTransfer::FileList {
                    path: path_of(&body)?,
                    entries,
                }
            }
            "mkdir" => {
                let body = envelope.body_value()?;
                FileTransfer::Mkdir {
                    path: path_of(&body)?,
                    mode: u32_of(&body, "mode"),
                }
            }
            other => {
                return Err(Error::UnknownType {
                    proto: FILE_TRANSFER,
                    typ: other.to_owned(),
                });
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_transfer_messages_round_trip() {
        let info = FileInfo {
            path: "/data/a".into(),
            size: 5,
            uid: 1,
            gid: 2,
            mode: 0o644,
            modtime: (1_700_000_000, 7),
        };
        let messages = [
            FileTransfer::Stat {
                path: "/data/a".into(),
            },
            FileTransfer::FileInfo(info.clone()),
            FileTransfer::GetFile {
                path: "/a".into(),
                offset: Some(4096),
            },
            FileTransfer::GetFile {
                path: "/a".into(),
                offset: None,
            },
            FileTransfer::PutFile(PutFile {
                path: "/a".into(),
                size: Some(9),
                mode: Some(0o600),
                upload_id: Some("u".into()),
                ..Default::default()
            }),
            FileTransfer::FileChunk {
                offset: 0,
                data: b"abc".to_vec(),
                sha256: None,
            },
            FileTransfer::FileChunk {
                offset: 3,
                data: vec![],
                sha256: Some("ff".into()),
            },
            FileTransfer::Ack { offset: 3 },
            FileTransfer::Error(ErrorBody::new("nope")),
            FileTransfer::List { path: "/data".into() },
            FileTransfer::FileList {
                path: "/data".into(),
                entries: vec![info],
            },
            FileTransfer::Mkdir {
                path: "/data/d".into(),
                mode: Some(0o755),
            },
        ];
        for message in messages {
            let envelope = Envelope::decode(&message.to_envelope("s").encode()).unwrap();
            assert_eq!(FileTransfer::from_envelope(&envelope).unwrap(), message);
        }
    }

    #[test]
    fn chunk_offsets_and_info_integers_have_go_widths() {
        let chunk = FileTransfer::FileChunk {
            offset: 1,
            data: vec![],
            sha256: None,
        }
        .to_envelope("s")
        .encode();
        let at = chunk.windows(6).position(|w| w == b"offset").unwrap() + 6;
        assert_eq!(chunk[at], 0xd3, "offset must be int64");
        let info = FileInfo {
            path: "p".into(),
            mode: 0o644,
            ..Default::default()
        }
        .to_value()
        .encode();
        let at = info.windows(4).position(|w| w == b"mode").unwrap() + 4;
        assert_eq!(info[at], 0xce, "mode must be uint32");
        let at = info.windows(4).position(|w| w == b"size").unwrap() + 4;
        assert_eq!(info[at], 0xd3, "size must be int64");
    }

    #[test]
    fn go_modes_convert() {
        assert_eq!(go_mode::from_unix(0o040755), go_mode::DIRECTORY | 0o755);
        assert_eq!(go_mode::from_unix(0o104755), go_mode::SETUID | 0o755);
        assert_eq!(go_mode::to_unix_permissions(go_mode::SETUID | 0o755), 0o4755);
    }

    #[test]
    fn go_modes_carry_the_file_type() {
        let cases = [
            (0o100644, 0o644, "file"),
            (0o040755, go_mode::DIRECTORY | 0o755, "directory"),
            (0o120777, go_mode::SYMLINK | 0o777, "symlink"),
            (0o010644, go_mode::NAMED_PIPE | 0o644, "fifo"),
            (0o140755, go_mode::SOCKET | 0o755, "socket"),
            (
                0o020666,
                go_mode::DEVICE | go_mode::CHAR_DEVICE | 0o666,
                "char device",
            ),
            (0o060660, go_mode::DEVICE | 0o660, "block device"),
        ];
        for (unix, go, kind) in cases {
            assert_eq!(go_mode::from_unix(unix), go, "{unix:o}");
            assert_eq!(go_mode::kind(go), kind, "{unix:o}");
            assert_eq!(go_mode::is_regular(go), kind == "file", "{unix:o}");
            assert_eq!(go_mode::to_unix_permissions(go), unix & 0o7777, "{unix:o}");
        }
    }
}
