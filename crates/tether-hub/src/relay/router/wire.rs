//! What one half of a session bridge sends the other over NATS: a device message with its lane,
//! credit for more messages, or the end of the session. A one-byte tag, then the body; the
//! envelope inside a frame is the device protocol's own msgpack, passed through untouched.

use tether_proto::Envelope;

use super::Lane;

const FRAME: u8 = 1;
const CREDIT: u8 = 2;
const CLOSE: u8 = 3;
const KICKED: u8 = 4;

#[derive(Debug, PartialEq)]
pub enum Wire {
    /// A device-protocol message, on the lane it must use at the device.
    Frame(Lane, Envelope),
    /// The receiver consumed this many frames: the sender may send as many more.
    Credit(u32),
    /// The session ended, with the reason (empty when the user left).
    Close(String),
    /// The hub sent the device away (rejected, removed): nothing waits for it to come back.
    Kicked(String),
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("empty bridge message")]
    Empty,
    #[error("unknown bridge message tag {0}")]
    UnknownTag(u8),
    #[error("truncated bridge message")]
    Truncated,
    #[error("bad envelope in bridge message: {0}")]
    Envelope(String),
}

impl Wire {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Wire::Frame(lane, envelope) => {
                let body = envelope.encode();
                let mut bytes = Vec::with_capacity(body.len() + 2);
                bytes.push(FRAME);
                bytes.push(match lane {
                    Lane::Interactive => 0,
                    Lane::Bulk => 1,
                });
                bytes.extend_from_slice(&body);
                bytes
            }
            Wire::Credit(count) => {
                let mut bytes = vec![CREDIT];
                bytes.extend_from_slice(&count.to_be_bytes());
                bytes
            }
            Wire::Close(reason) | Wire::Kicked(reason) => {
                let mut bytes = vec![if matches!(self, Wire::Close(_)) {
                    CLOSE
                } else {
                    KICKED
                }];
                bytes.extend_from_slice(reason.as_bytes());
                bytes
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Wire, WireError> {
        let (&tag, body) = bytes.split_first().ok_or(WireError::Empty)?;
        match tag {
            FRAME => {
                let (&lane, envelope) = body.split_first().ok_or(WireError::Truncated)?;
                let lane = if lane == 0 { Lane::Interactive } else { Lane::Bulk };
                let envelope =
                    Envelope::decode(envelope).map_err(|error| WireError::Envelope(error.to_string()))?;
                Ok(Wire::Frame(lane, envelope))
            }
            CREDIT => {
                let count: [u8; 4] = body.try_into().map_err(|_| WireError::Truncated)?;
                Ok(Wire::Credit(u32::from_be_bytes(count)))
            }
            CLOSE => Ok(Wire::Close(String::from_utf8_lossy(body).into_owned())),
            KICKED => Ok(Wire::Kicked(String::from_utf8_lossy(body).into_owned())),
            other => Err(WireError::UnknownTag(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_survives_a_round_trip() {
        let envelope = Envelope::new(2, "data", "s1");
        for message in [
            Wire::Frame(Lane::Bulk, envelope.clone()),
            Wire::Frame(Lane::Interactive, envelope),
            Wire::Credit(128),
            Wire::Close("the device disconnected".into()),
            Wire::Kicked("the device was rejected".into()),
        ] {
            assert_eq!(Wire::decode(&message.encode()).unwrap(), message);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Wire::decode(&[]).is_err());
        assert!(Wire::decode(&[9]).is_err());
        assert!(Wire::decode(&[CREDIT, 1]).is_err());
        assert!(Wire::decode(&[FRAME]).is_err());
        assert!(Wire::decode(&[FRAME, 0, 0xc1]).is_err());
    }
}
