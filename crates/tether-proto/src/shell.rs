//! The shell protocol (1): a PTY shell per session.
//!
//! Tether extension (version 2 only, see `docs/protocol.md`): `new` may carry a `command` prop
//! to run one command instead of an interactive shell, and the device's `stop` then carries the
//! command's `exit_status`. `new` may also carry a `local_user` prop: the device account to run
//! the shell as, if the device allows it (see [`valid_local_user`]).
//!
//! Session survival (version 2 only): the device's terminal output carries the stream offset of
//! its first byte (prop `offset`); the hub sends `detach` when the operator's leg is gone (the
//! device keeps the shell and buffers its output) and `resume` with the offset to continue from.

use crate::{Error, envelope::Envelope, protocol::SHELL, value::Value};

/// `status` prop values.
pub mod status {
    pub const NORMAL: i64 = 1;
    pub const ERROR: i64 = 2;
    pub const CONTROL: i64 = 3;
}

#[derive(Debug, Clone, PartialEq)]
pub enum Shell {
    /// Server → device: start a shell. Device → server: the answer (`status` and text).
    New {
        user_id: Option<String>,
        width: Option<u16>,
        height: Option<u16>,
        /// Tether extension: run this command instead of an interactive shell.
        command: Option<String>,
        /// Tether extension: the local user to run the shell as (the device decides whether
        /// it may).
        local_user: Option<String>,
        status: Option<i64>,
        text: Vec<u8>,
    },
    /// Keystrokes in, terminal output out.
    Data(Vec<u8>),
    Resize {
        width: u16,
        height: u16,
    },
    Stop {
        user_id: Option<String>,
        status: Option<i64>,
        text: Vec<u8>,
        /// Tether extension: the exit status of an exec'd command.
        exit_status: Option<i64>,
    },
    Ping {
        timeout: Option<i64>,
    },
    Pong,
    /// Tether extension, server → device: continue a kept shell, sending its output from byte
    /// `offset` of the stream on. Answered with `new` (status 1: resumed; 2: no such shell).
    Resume {
        offset: u64,
    },
    /// Tether extension, server → device: nobody watches the shell for now; keep it (within the
    /// grace period) and buffer its output.
    Detach,
}

/// The prop naming the local user a `new` asks for (version 2).
pub const LOCAL_USER: &str = "local_user";

/// The longest local user name a `new` may ask for, in bytes (as `useradd` allows).
pub const LOCAL_USER_MAX_BYTES: usize = 32;

/// Whether `name` is a portable POSIX user name: 1 to 32 bytes of letters, digits, `.`, `_` and
/// `-`, not starting with `-` (the hub, the CLI and the agent all check it the same way).
pub fn valid_local_user(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= LOCAL_USER_MAX_BYTES
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
}

/// The prop naming the stream offset of the first byte of a `shell` output message.
pub const OFFSET: &str = "offset";

/// The stream offset of a `shell` output message, if the device sent one (version 2).
pub fn output_offset(envelope: &Envelope) -> Option<u64> {
    envelope.props.i64(OFFSET).and_then(|v| u64::try_from(v).ok())
}

/// Marks a `shell` output message with the stream offset of its first byte.
pub fn set_output_offset(envelope: &mut Envelope, offset: u64) {
    envelope.props.set(OFFSET, offset_value(offset));
}

fn offset_value(offset: u64) -> Value {
    Value::Int(i64::try_from(offset).unwrap_or(i64::MAX))
}

fn size(envelope: &Envelope, key: &'static str) -> Option<u16> {
    envelope.props.i64(key).and_then(|v| u16::try_from(v).ok())
}

impl Shell {
    pub fn typ(&self) -> &'static str {
        match self {
            Shell::New { .. } => "new",
            Shell::Data(_) => "shell",
            Shell::Resize { .. } => "resize",
            Shell::Stop { .. } => "stop",
            Shell::Ping { .. } => "ping",
            Shell::Pong => "pong",
            Shell::Resume { .. } => "resume",
            Shell::Detach => "detach",
        }
    }

    pub fn to_envelope(&self, sid: &str) -> Envelope {
        let mut envelope = Envelope::new(SHELL, self.typ(), sid);
        let props = &mut envelope.props;
        match self {
            Shell::New {
                user_id,
                width,
                height,
                command,
                local_user,
                status,
                text,
            } => {
                if let Some(user) = user_id {
                    props.set("user_id", Value::Str(user.clone()));
                }
                if let Some(w) = width {
                    props.set("terminal_width", Value::Int(*w as i64));
                }
                if let Some(h) = height {
                    props.set("terminal_height", Value::Int(*h as i64));
                }
                if let Some(c) = command {
                    props.set("command", Value::Str(c.clone()));
                }
                if let Some(user) = local_user {
                    props.set(LOCAL_USER, Value::Str(user.clone()));
                }
                if let Some(s) = status {
                    props.set("status", Value::Int(*s));
                }
                envelope.body = text.clone();
            }
            Shell::Data(bytes) => envelope.body = bytes.clone(),
            Shell::Resize { width, height } => {
                props.set("terminal_width", Value::Int(*width as i64));
                props.set("terminal_height", Value::Int(*height as i64));
            }
            Shell::Stop {
                user_id,
                status,
                text,
                exit_status,
            } => {
                if let Some(user) = user_id {
                    props.set("user_id", Value::Str(user.clone()));
                }
                if let Some(s) = status {
                    props.set("status", Value::Int(*s));
                }
                if let Some(code) = exit_status {
                    props.set("exit_status", Value::Int(*code));
                }
                envelope.body = text.clone();
            }
            Shell::Ping { timeout } => {
                props.set("status", Value::Int(status::CONTROL));
                if let Some(t) = timeout {
                    props.set("timeout", Value::Int(*t));
                }
            }
            Shell::Pong => props.set("status", Value::Int(status::CONTROL)),
            Shell::Resume { offset } => props.set(OFFSET, offset_value(*offset)),
            Shell::Detach => {}
        }
        envelope
    }

    pub fn from_envelope(envelope: &Envelope) -> Result<Shell, Error> {
        let props = &envelope.props;
        let user_id = props.str("user_id").map(str::to_owned);
        Ok(match envelope.typ.as_str() {
            "new" => Shell::New {
                user_id,
                width: size(envelope, "terminal_width"),
                height: size(envelope, "terminal_height"),
                command: props.str("command").map(str::to_owned),
                local_user: props.str(LOCAL_USER).map(str::to_owned),
                status: props.i64("status"),
                text: envelope.body.clone(),
            },
            "shell" => Shell::Data(envelope.body.clone()),
            "resize" => Shell::Resize {
                width: size(envelope, "terminal_width").ok_or(Error::Missing("terminal_width"))?,
                height: size(envelope, "terminal_height").ok_or(Error::Missing("terminal_height"))?,
            },
            "stop" => Shell::Stop {
                user_id,
                status: props.i64("status"),
                text: envelope.body.clone(),
                exit_status: props.i64("exit_status"),
            },
            "ping" => Shell::Ping {
                timeout: props.i64("timeout"),
            },
            "pong" => Shell::Pong,
            "resume" => Shell::Resume {
                offset: output_offset(envelope).ok_or(Error::Missing(OFFSET))?,
            },
            "detach" => Shell::Detach,
            other => {
                return Err(Error::UnknownType {
                    proto: SHELL,
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
    fn shell_messages_round_trip() {
        let messages = [
            Shell::New {
                user_id: Some("u".into()),
                width: Some(80),
                height: Some(24),
                command: None,
                local_user: Some("daemon".into()),
                status: None,
                text: vec![],
            },
            Shell::New {
                user_id: None,
                width: None,
                height: None,
                command: Some("id".into()),
                local_user: None,
                status: Some(1),
                text: b"Shell started".to_vec(),
            },
            Shell::Data(b"ls\r".to_vec()),
            Shell::Resize {
                width: 120,
                height: 40,
            },
            Shell::Stop {
                user_id: None,
                status: Some(2),
                text: b"user disconnected".to_vec(),
                exit_status: Some(3),
            },
            Shell::Ping { timeout: Some(65) },
            Shell::Pong,
            Shell::Resume { offset: 1 << 40 },
            Shell::Detach,
        ];
        for message in messages {
            let envelope = Envelope::decode(&message.to_envelope("s").encode()).unwrap();
            assert_eq!(Shell::from_envelope(&envelope).unwrap(), message);
        }
    }

    #[test]
    fn local_user_names_are_portable_posix_names() {
        for good in [
            "root",
            "daemon",
            "svc-backup",
            "_apt",
            "a.b",
            "A1",
            &"u".repeat(32),
        ] {
            assert!(valid_local_user(good), "{good}");
        }
        for bad in [
            "",
            "-rf",
            "a b",
            "a@b",
            "a/b",
            "a:b",
            "caf\u{e9}",
            "a$",
            &"u".repeat(33),
        ] {
            assert!(!valid_local_user(bad), "{bad}");
        }
    }

    #[test]
    fn resize_without_size_is_an_error() {
        let envelope = Envelope::new(SHELL, "resize", "s");
        assert_eq!(
            Shell::from_envelope(&envelope),
            Err(Error::Missing("terminal_width"))
        );
    }
}
