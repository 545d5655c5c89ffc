//! The port forward protocol (3): many TCP or UDP connections in one session, each named by the
//! `connection_id` prop (chosen by the operator's side).
//!
//! Flow control: every `forward` is answered by one `ack` for that connection. A version-1 sender
//! waits for each ack (one 4 KiB message in flight, as the stock agent does); a version-2 sender
//! keeps up to its peer's window unacknowledged in flight, in messages of up to [`MAX_CHUNK`].
//! Each side's `new` may say how many bytes it takes unacknowledged (prop `window`, its
//! receive window); a peer that does not say gets [`WINDOW_BYTES`], the window of the agents
//! and CLIs from before it was negotiated.

use std::borrow::Cow;

use crate::{
    Error,
    control::ErrorBody,
    envelope::Envelope,
    protocol::PORT_FORWARD,
    value::{Value, map},
};

/// Largest `forward` body for a version-1 peer.
pub const VERSION_1_CHUNK: usize = 4096;
/// Largest `forward` body between Tether peers (version 2).
pub const MAX_CHUNK: usize = 32 * 1024;
/// Unacknowledged bytes a version-2 sender may have in flight per connection and direction
/// when its peer's `new` named no window.
pub const WINDOW_BYTES: usize = 1024 * 1024;
/// The receive window Tether's agent and CLI name in their `new`. On loopback a 1 MiB window
/// left the relay idle between acks (262 MB/s against 395 MB/s with 4 MiB, same run).
pub const ADVERTISED_WINDOW_BYTES: usize = 4 * 1024 * 1024;
/// The largest window a peer may name; more is taken as this.
pub const MAX_WINDOW_BYTES: usize = 16 * 1024 * 1024;
/// The prop of `new` that names the sender's receive window.
pub const WINDOW_PROP: &str = "window";

/// The window to keep to when sending to a peer that named `advertised` (or nothing).
pub fn send_window(advertised: Option<u32>) -> usize {
    advertised.map_or(WINDOW_BYTES, |bytes| {
        (bytes as usize).clamp(MAX_CHUNK, MAX_WINDOW_BYTES)
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

/// Where the device should connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub transport: Transport,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PortForward {
    /// Operator → device with a target: open a connection. Device → operator without one: opened.
    /// `window`: the bytes the sender takes unacknowledged on this connection (see [`send_window`]).
    New {
        connection_id: String,
        target: Option<Target>,
        window: Option<u32>,
    },
    /// Bytes (TCP) or one datagram (UDP), either way.
    Forward {
        connection_id: String,
        data: Vec<u8>,
    },
    /// One per `forward` received and written.
    Ack {
        connection_id: String,
    },
    /// Either side closes the connection; the other echoes it.
    Stop {
        connection_id: String,
    },
    Error {
        connection_id: String,
        body: ErrorBody,
    },
}

impl PortForward {
    pub fn connection_id(&self) -> &str {
        match self {
            PortForward::New { connection_id, .. }
            | PortForward::Forward { connection_id, .. }
            | PortForward::Ack { connection_id }
            | PortForward::Stop { connection_id }
            | PortForward::Error { connection_id, .. } => connection_id,
        }
    }

    pub fn typ(&self) -> &'static str {
        match self {
            PortForward::New { .. } => "new",
            PortForward::Forward { .. } => "forward",
            PortForward::Ack { .. } => "ack",
            PortForward::Stop { .. } => "stop",
            PortForward::Error { .. } => "error",
        }
    }

    pub fn to_envelope(&self, sid: &str) -> Envelope {
        self.clone().into_envelope(sid)
    }

    /// The message as an envelope; a forward's data moves into the body, it is not copied.
    pub fn into_envelope(self, sid: &str) -> Envelope {
        let mut envelope = Envelope::new(PORT_FORWARD, self.typ(), sid)
            .with_prop("connection_id", Value::Str(self.connection_id().to_owned()));
        if let PortForward::New {
            window: Some(window), ..
        } = &self
        {
            envelope.props.set(WINDOW_PROP, Value::UInt32(*window));
        }
        match self {
            PortForward::New {
                target: Some(target), ..
            } => {
                envelope.body = map([
                    ("remote_host", Some(Value::Str(target.host.clone()))),
                    ("remote_port", Some(Value::UInt16(target.port))),
                    ("protocol", Some(Value::Str(target.transport.as_str().to_owned()))),
                ])
                .encode();
            }
            PortForward::Forward { data, .. } => envelope.body = data,
            PortForward::Error { body, .. } => envelope.body = body.to_value().encode(),
            _ => {}
        }
        envelope
    }

    pub fn from_envelope(envelope: &Envelope) -> Result<PortForward, Error> {
        PortForward::from_parts(envelope, Cow::Borrowed(&envelope.body))
    }

    /// Like [`PortForward::from_envelope`]; a forward's data is moved out, not copied.
    pub fn from_owned(mut envelope: Envelope) -> Result<PortForward, Error> {
        let body = std::mem::take(&mut envelope.body);
        PortForward::from_parts(&envelope, Cow::Owned(body))
    }

    /// A forward's connection id and the size of its data, read without copying the data (the
    /// hub counts bytes on every forward it relays). None for any other message.
    pub fn forward_size(envelope: &Envelope) -> Option<(&str, usize)> {
        if envelope.proto != PORT_FORWARD || envelope.typ != "forward" {
            return None;
        }
        Some((envelope.props.str("connection_id")?, envelope.body.len()))
    }

    /// The message of `header` with `body` (which the caller may have taken out of it).
    pub fn from_parts(header: &Envelope, body: Cow<'_, [u8]>) -> Result<PortForward, Error> {
        let envelope = header;
        let connection_id = envelope
            .props
            .str("connection_id")
            .ok_or(Error::Missing("connection_id"))?
            .to_owned();
        // A window that is not a positive 32-bit count is not a window: the default applies.
        let window = envelope
            .props
            .i64(WINDOW_PROP)
            .and_then(|bytes| u32::try_from(bytes).ok())
            .filter(|bytes| *bytes > 0);
        Ok(match envelope.typ.as_str() {
            "new" if body.is_empty() => PortForward::New {
                connection_id,
                target: None,
                window,
            },
            "new" => {
                let body = Value::decode(&body)?;
                let host = body
                    .get("remote_host")
                    .and_then(Value::as_str)
                    .ok_or(Error::Missing("remote_host"))?;
                let port = body
                    .get("remote_port")
                    .and_then(Value::as_u64)
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or(Error::Missing("remote_port"))?;
                let transport = match body.get("protocol").and_then(Value::as_str) {
                    Some("udp") => Transport::Udp,
                    Some("tcp") | None => Transport::Tcp,
                    Some(_) => {
                        return Err(Error::WrongType {
                            field: "protocol",
                            expected: "\"tcp\" or \"udp\"",
                        });
                    }
                };
                PortForward::New {
                    connection_id,
                    target: Some(Target {
                        host: host.to_owned(),
                        port,
                        transport,
                    }),
                    window,
                }
            }
            "forward" => PortForward::Forward {
                connection_id,
                data: body.into_owned(),
            },
            "ack" => PortForward::Ack { connection_id },
            "stop" => PortForward::Stop { connection_id },
            "error" => PortForward::Error {
                connection_id,
                body: ErrorBody::from_value(&Value::decode(&body)?)?,
            },
            other => {
                return Err(Error::UnknownType {
                    proto: PORT_FORWARD,
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
    fn port_forward_messages_round_trip() {
        let target = Target {
            host: "127.0.0.1".into(),
            port: 22,
            transport: Transport::Udp,
        };
        let messages = [
            PortForward::New {
                connection_id: "c1".into(),
                target: Some(target),
                window: Some(4 << 20),
            },
            PortForward::New {
                connection_id: "c1".into(),
                target: None,
                window: None,
            },
            PortForward::Forward {
                connection_id: "c1".into(),
                data: vec![1, 2, 3],
            },
            PortForward::Ack {
                connection_id: "c1".into(),
            },
            PortForward::Stop {
                connection_id: "c1".into(),
            },
            PortForward::Error {
                connection_id: "c1".into(),
                body: ErrorBody::new("refused"),
            },
        ];
        for message in messages {
            let envelope = Envelope::decode(&message.to_envelope("s").encode()).unwrap();
            assert_eq!(PortForward::from_envelope(&envelope).unwrap(), message);
            assert_eq!(PortForward::from_owned(envelope).unwrap(), message);
        }
    }

    #[test]
    fn windows_are_bounded_and_default_to_the_old_one() {
        assert_eq!(send_window(None), WINDOW_BYTES);
        assert_eq!(send_window(Some(1)), MAX_CHUNK);
        assert_eq!(send_window(Some(u32::MAX)), MAX_WINDOW_BYTES);
        assert_eq!(send_window(Some(4 << 20)), 4 << 20);
        let envelope = Envelope::new(PORT_FORWARD, "new", "s")
            .with_prop("connection_id", Value::Str("c1".into()))
            .with_prop(WINDOW_PROP, Value::Int(-5));
        let Ok(PortForward::New { window, .. }) = PortForward::from_envelope(&envelope) else {
            panic!("not a new");
        };
        assert_eq!(window, None);
    }

    #[test]
    fn a_message_without_connection_id_is_an_error() {
        let envelope = Envelope::new(PORT_FORWARD, "forward", "s");
        assert_eq!(
            PortForward::from_envelope(&envelope),
            Err(Error::Missing("connection_id"))
        );
    }
}
