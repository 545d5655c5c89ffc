//! One end of a device connection that speaks both encodings: msgpack for every session of
//! versions 1 and 2 (and for the handshake), compact frames for the sessions that negotiated
//! version 3. The hub's device leg and the agent's connection each own one `Link` per connection
//! and pass every frame through it, in order, at their one reader and one writer.
//!
//! A session is spoken to in compact frames once this end knows it is a version-3 session: an
//! `accept` of version 3 went through (either way), a compact frame of it arrived, or the owner
//! said so ([`Link::speak_compact`], e.g. for a shell resumed on a new connection). A `close`
//! (either way) ends that.

use std::collections::HashSet;

use super::{Decoder, Encoder, Error, MAX_SESSIONS, is_compact};
use crate::{Envelope, control::Control, protocol, version};

#[derive(Debug, Default)]
pub struct Link {
    encoder: Encoder,
    decoder: Decoder,
    /// Sessions this end sends compact frames for (at most [`MAX_SESSIONS`]).
    compact: HashSet<String>,
}

impl Link {
    pub fn new() -> Self {
        Link::default()
    }

    /// Sends `sid`'s messages as compact frames from now on (a version-3 session).
    pub fn speak_compact(&mut self, sid: &str) {
        if !sid.is_empty() && self.compact.len() < MAX_SESSIONS {
            self.compact.insert(sid.to_owned());
        }
    }

    /// Whether `sid`'s messages go out as compact frames.
    pub fn is_compact_session(&self, sid: &str) -> bool {
        self.compact.contains(sid)
    }

    /// Appends the frame of `envelope` to `out` (a buffer the caller reuses): compact for a
    /// version-3 session, msgpack otherwise. Never fails: a session the compact table has no
    /// room for goes out in msgpack, which a version-3 peer always accepts.
    pub fn encode_into(&mut self, envelope: &Envelope, out: &mut Vec<u8>) {
        let handshake = is_handshake(envelope);
        if !handshake
            && self.compact.contains(&envelope.sid)
            && self.encoder.encode_into(envelope, out).is_ok()
        {
            self.after(envelope);
            return;
        }
        envelope.encode_into(out);
        if handshake && accepts_compact(envelope) {
            self.speak_compact(&envelope.sid);
        }
        self.after(envelope);
    }

    pub fn encode(&mut self, envelope: &Envelope) -> Vec<u8> {
        let mut out = Vec::with_capacity(envelope.body.len() + 16);
        self.encode_into(envelope, &mut out);
        out
    }

    /// Decodes one frame of either encoding. After an error the link can no longer be trusted
    /// (the peer's compact table may have moved on): close the connection.
    pub fn decode(&mut self, frame: &[u8]) -> Result<Envelope, Error> {
        let envelope = if is_compact(frame) {
            let envelope = self.decoder.decode(frame)?;
            self.speak_compact(&envelope.sid);
            envelope
        } else {
            let envelope = Envelope::decode(frame).map_err(Error::MsgpackFrame)?;
            if accepts_compact(&envelope) {
                self.speak_compact(&envelope.sid);
            }
            envelope
        };
        self.after(&envelope);
        Ok(envelope)
    }

    /// A `close` either way ends the session's compact form and frees its handle.
    fn after(&mut self, envelope: &Envelope) {
        if envelope.proto == protocol::CONTROL && envelope.typ == "close" && !envelope.sid.is_empty() {
            self.compact.remove(&envelope.sid);
            self.encoder.forget(&envelope.sid);
        }
    }
}

/// `open` and `accept` always travel in msgpack: they come before the choice of version.
fn is_handshake(envelope: &Envelope) -> bool {
    envelope.proto == protocol::CONTROL && matches!(envelope.typ.as_str(), "open" | "accept")
}

fn accepts_compact(envelope: &Envelope) -> bool {
    envelope.proto == protocol::CONTROL
        && envelope.typ == "accept"
        && matches!(
            Control::from_envelope(envelope),
            Ok(Control::Accept {
                version: version::COMPACT,
                ..
            })
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shell::Shell;

    fn accept(sid: &str, version: u32) -> Envelope {
        Control::Accept {
            version,
            protocols: vec![protocol::SHELL],
        }
        .to_envelope(sid)
    }

    fn keystroke(sid: &str) -> Envelope {
        let mut envelope = Shell::Data(b"a".to_vec()).to_envelope(sid);
        envelope
            .props
            .0
            .push(("user_id".into(), crate::value::Value::Str("u".into())));
        envelope
    }

    #[test]
    fn a_version_3_accept_switches_its_session_to_compact_both_ways() {
        let (mut device, mut hub) = (Link::new(), Link::new());
        let frame = device.encode(&accept("s", version::COMPACT));
        assert!(!is_compact(&frame), "the accept itself is msgpack");
        assert_eq!(hub.decode(&frame).unwrap(), accept("s", version::COMPACT));
        let first = hub.encode(&keystroke("s"));
        assert!(is_compact(&first));
        assert_eq!(device.decode(&first).unwrap(), keystroke("s"));
        let second = hub.encode(&keystroke("s"));
        assert_eq!(second, [0x01, 0x02, 0x01, b'a'], "after the binding, 4 bytes");
        assert_eq!(device.decode(&second).unwrap(), keystroke("s"));
    }

    #[test]
    fn version_1_and_2_sessions_stay_msgpack_byte_for_byte() {
        let (mut device, mut hub) = (Link::new(), Link::new());
        for (sid, version) in [("one", version::MENDER), ("two", version::TETHER)] {
            let frame = device.encode(&accept(sid, version));
            assert_eq!(frame, accept(sid, version).encode());
            hub.decode(&frame).unwrap();
            assert_eq!(hub.encode(&keystroke(sid)), keystroke(sid).encode());
        }
    }

    #[test]
    fn a_close_ends_the_compact_form_and_the_handle_is_bound_again() {
        let (mut device, mut hub) = (Link::new(), Link::new());
        hub.decode(&device.encode(&accept("s", version::COMPACT)))
            .unwrap();
        device.decode(&hub.encode(&keystroke("s"))).unwrap();
        device
            .decode(&hub.encode(&Control::Close.to_envelope("s")))
            .unwrap();
        assert!(!hub.is_compact_session("s") && !device.is_compact_session("s"));
        hub.decode(&device.encode(&accept("t", version::COMPACT)))
            .unwrap();
        let frame = hub.encode(&keystroke("t"));
        assert_eq!(device.decode(&frame).unwrap(), keystroke("t"));
    }

    #[test]
    fn a_compact_frame_from_the_peer_switches_the_session_too() {
        let (mut device, mut hub) = (Link::new(), Link::new());
        device.speak_compact("resumed");
        let frame = device.encode(&Shell::Data(b"output".to_vec()).to_envelope("resumed"));
        assert!(is_compact(&frame));
        hub.decode(&frame).unwrap();
        assert!(is_compact(&hub.encode(&keystroke("resumed"))));
    }
}
