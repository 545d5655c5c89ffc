//! The control protocol (0xFFFF): per-session handshake, session close, ping and errors, and
//! Tether's extensions (the device's kept sessions, who watches a terminal).

use crate::{
    Error,
    envelope::Envelope,
    inventory::Inventory,
    protocol::CONTROL,
    value::{Value, map},
};

/// A typed control message; `sid` travels beside it in the envelope.
#[derive(Debug, Clone, PartialEq)]
pub enum Control {
    /// Server → device: the versions the server speaks.
    Open {
        versions: Vec<u32>,
    },
    /// Device → server: the version chosen and the protocols enabled.
    Accept {
        version: u32,
        protocols: Vec<u16>,
    },
    Close,
    Ping,
    Pong,
    Error(ErrorBody),
    /// Device → server → user (version 2 handshake): the `accept` will come later, after a
    /// local decision on the device (consent), within `timeout_secs`.
    Wait {
        reason: String,
        timeout_secs: u64,
    },
    /// Tether extension, device → server, session id empty, sent first on every connection: the
    /// sessions whose shells the device still keeps (detached, waiting to be resumed).
    Sessions {
        sids: Vec<String>,
    },
    /// Tether extension, hub → user, on a terminal's session: `user` started (`watching`
    /// true) or stopped watching it live. Only for the terminal's user; a client that does not
    /// know it ignores it (an unknown control type).
    Watching {
        user: String,
        watching: bool,
    },
    /// Tether extension, device → server, session id empty, sent after `sessions` and again when
    /// it changed: what the device reports of itself (see [`crate::inventory`]).
    Inventory(Inventory),
}

/// Tether's own `code` values of a control `error` (1000 and above).
pub mod code {
    /// Not an error, a state (`close` false): the device's leg dropped under a resumable
    /// terminal and the hub waits for the device to come back (a client shows "reconnecting…").
    pub const RECONNECTING: i64 = 1100;
}

/// The body of a control `error` (also used by file transfer and port forward errors).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorBody {
    pub err: String,
    pub close: bool,
    pub msgproto: Option<u16>,
    pub msgtype: Option<String>,
    pub msgid: Option<String>,
    /// 400–599 carry HTTP meaning; 1000 and above are Tether's own.
    pub code: Option<i64>,
}

impl ErrorBody {
    pub fn new(err: impl Into<String>) -> Self {
        ErrorBody {
            err: err.into(),
            ..Default::default()
        }
    }

    pub fn to_value(&self) -> Value {
        map([
            ("err", Some(Value::Str(self.err.clone()))),
            ("close", Some(Value::Bool(self.close))),
            ("msgproto", self.msgproto.map(Value::UInt16)),
            ("msgtype", self.msgtype.clone().map(Value::Str)),
            ("msgid", self.msgid.clone().map(Value::Str)),
            ("code", self.code.map(Value::Int)),
        ])
    }

    pub fn from_value(value: &Value) -> Result<Self, Error> {
        Ok(ErrorBody {
            err: value
                .get("err")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            close: value.get("close").and_then(Value::as_bool).unwrap_or(false),
            msgproto: value
                .get("msgproto")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok()),
            msgtype: value.get("msgtype").and_then(Value::as_str).map(str::to_owned),
            msgid: value.get("msgid").and_then(Value::as_str).map(str::to_owned),
            code: value.get("code").and_then(Value::as_i64),
        })
    }
}

impl Control {
    pub fn typ(&self) -> &'static str {
        match self {
            Control::Open { .. } => "open",
            Control::Accept { .. } => "accept",
            Control::Close => "close",
            Control::Ping => "ping",
            Control::Pong => "pong",
            Control::Error(_) => "error",
            Control::Wait { .. } => "wait",
            Control::Sessions { .. } => "sessions",
            Control::Watching { .. } => "watching",
            Control::Inventory(_) => "inventory",
        }
    }

    pub fn to_envelope(&self, sid: &str) -> Envelope {
        let body = match self {
            Control::Open { versions } => map([(
                "versions",
                Some(Value::Array(
                    versions.iter().map(|v| Value::Int(*v as i64)).collect(),
                )),
            )])
            .encode(),
            Control::Accept { version, protocols } => map([
                ("version", Some(Value::Int(*version as i64))),
                (
                    "protocols",
                    Some(Value::Array(
                        protocols.iter().map(|p| Value::UInt16(*p)).collect(),
                    )),
                ),
            ])
            .encode(),
            Control::Error(body) => body.to_value().encode(),
            Control::Wait { reason, timeout_secs } => map([
                ("reason", Some(Value::Str(reason.clone()))),
                ("timeout", Some(Value::Int(*timeout_secs as i64))),
            ])
            .encode(),
            Control::Sessions { sids } => map([(
                "sids",
                Some(Value::Array(sids.iter().cloned().map(Value::Str).collect())),
            )])
            .encode(),
            Control::Watching { user, watching } => map([
                ("user", Some(Value::Str(user.clone()))),
                ("watching", Some(Value::Bool(*watching))),
            ])
            .encode(),
            Control::Inventory(inventory) => inventory.to_value().encode(),
            Control::Close | Control::Ping | Control::Pong => Vec::new(),
        };
        Envelope::new(CONTROL, self.typ(), sid).with_body(body)
    }

    pub fn from_envelope(envelope: &Envelope) -> Result<Control, Error> {
        Ok(match envelope.typ.as_str() {
            "open" => {
                let body = envelope.body_value()?;
                let versions = body
                    .get("versions")
                    .and_then(Value::as_array)
                    .ok_or(Error::Missing("versions"))?;
                Control::Open {
                    versions: versions
                        .iter()
                        .filter_map(|v| v.as_u64())
                        .map(|v| v as u32)
                        .collect(),
                }
            }
            "accept" => {
                let body = envelope.body_value()?;
                let version = body
                    .get("version")
                    .and_then(Value::as_u64)
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or(Error::Missing("version"))?;
                let protocols = body
                    .get("protocols")
                    .and_then(Value::as_array)
                    .map(|list| {
                        list.iter()
                            .filter_map(|p| p.as_u64())
                            .filter_map(|p| u16::try_from(p).ok())
                            .collect()
                    })
                    .unwrap_or_default();
                Control::Accept { version, protocols }
            }
            "close" => Control::Close,
            "ping" => Control::Ping,
            "pong" => Control::Pong,
            "error" => Control::Error(ErrorBody::from_value(&envelope.body_value()?)?),
            "wait" => {
                let body = envelope.body_value()?;
                Control::Wait {
                    reason: body
                        .get("reason")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    timeout_secs: body.get("timeout").and_then(Value::as_u64).unwrap_or(0),
                }
            }
            "sessions" => {
                let body = envelope.body_value()?;
                let sids = body
                    .get("sids")
                    .and_then(Value::as_array)
                    .ok_or(Error::Missing("sids"))?;
                Control::Sessions {
                    sids: sids.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
                }
            }
            "watching" => {
                let body = envelope.body_value()?;
                Control::Watching {
                    user: body
                        .get("user")
                        .and_then(Value::as_str)
                        .ok_or(Error::Missing("user"))?
                        .to_owned(),
                    watching: body.get("watching").and_then(Value::as_bool).unwrap_or(false),
                }
            }
            "inventory" => Control::Inventory(Inventory::from_value(&envelope.body_value()?)?),
            other => {
                return Err(Error::UnknownType {
                    proto: CONTROL,
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
    fn control_messages_round_trip() {
        let messages = [
            Control::Open { versions: vec![1, 2] },
            Control::Accept {
                version: 2,
                protocols: vec![1, 2, 3],
            },
            Control::Close,
            Control::Ping,
            Control::Pong,
            Control::Wait {
                reason: "consent".into(),
                timeout_secs: 60,
            },
            Control::Error(ErrorBody {
                err: "no".into(),
                close: true,
                code: Some(1001),
                ..Default::default()
            }),
            Control::Sessions {
                sids: vec!["a".into(), "b".into()],
            },
            Control::Sessions { sids: vec![] },
            Control::Watching {
                user: "bob".into(),
                watching: true,
            },
            Control::Watching {
                user: "bob".into(),
                watching: false,
            },
        ];
        for message in messages {
            let bytes = message.to_envelope("sid").encode();
            let envelope = Envelope::decode(&bytes).unwrap();
            assert_eq!(envelope.sid, "sid");
            assert_eq!(Control::from_envelope(&envelope).unwrap(), message);
        }
    }

    #[test]
    fn open_body_is_a_map_not_an_array() {
        let body = Control::Open { versions: vec![1] }.to_envelope("").body;
        // {"versions": [1]}
        assert_eq!(
            body,
            [
                0x81, 0xa8, b'v', b'e', b'r', b's', b'i', b'o', b'n', b's', 0x91, 0x01
            ]
        );
    }

    #[test]
    fn an_inventory_round_trips_and_stays_a_few_hundred_bytes() {
        let inventory = crate::inventory::tests::typical();
        let envelope = Control::Inventory(inventory.clone()).to_envelope("");
        let frame = envelope.encode();
        // The whole frame (header included) of a typical device, as it travels.
        assert!(frame.len() < 300, "{} bytes", frame.len());
        // The figure docs/protocol.md gives.
        assert_eq!(frame.len(), 231);
        let decoded = crate::Envelope::decode(&frame).unwrap();
        assert_eq!(
            Control::from_envelope(&decoded).unwrap(),
            Control::Inventory(inventory)
        );
    }
}
