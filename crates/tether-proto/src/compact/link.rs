//! One end of a device connection that speaks both encodings: msgpack for every session of
//! versions 1 and 2 (and for the handshake), compact frames for the sessions that negotiated
//! version 3. The hub's device leg and the agent's connection each own one `Link` per connection
//! and pass every frame through it, in order, at their one reader and one writer.
//!
//! A session is spoken to in compact frames once this end knows it is a version-3 session: an
//! `accept` of version 3 went through (either way), a compact frame of it arrived, or the owner
//! said so ([`Link::speak_compact`], e.g. for a shell resumed on a new connection). A `close`
//! (either way) ends that.
//!
//! Compression (see [`super::compression`]) is offered by the receiving end: the hub puts the
//! prop `compression: "deflate"` on its `open`s and calls [`Link::accept_compressed`]; a device's
//! link that decodes such an `open` deflates the terminal output and file chunks of its compact
//! sessions from then on, in one stream across a session's consecutive frames when its writer
//! says what comes next ([`Link::encode_followed_into`]).

use std::collections::{HashMap, HashSet};

use super::{Decoder, Encoder, Error, MAX_SESSIONS, compression::Deflater, is_compact, kind};
use crate::{Envelope, control::Control, protocol, version};

/// The `open` prop by which the hub offers to inflate compressed frames.
pub const COMPRESSION_PROP: &str = "compression";
/// Its one value: per-message raw deflate.
pub const DEFLATE: &str = "deflate";
/// After a payload of a session did not compress, that many of its next payloads are sent
/// without trying (a random file's download does not pay for a deflate per chunk).
const SKIP_AFTER_INCOMPRESSIBLE: u8 = 15;

#[derive(Debug, Default)]
pub struct Link {
    encoder: Encoder,
    decoder: Decoder,
    /// Sessions this end sends compact frames for (at most [`MAX_SESSIONS`]).
    compact: HashSet<String>,
    /// Set once the peer offered to inflate: allocated on the first payload worth a try.
    deflater: Option<Box<Deflater>>,
    deflate: bool,
    /// Payloads still to send without trying, per session (after an incompressible one).
    skip: HashMap<String, u8>,
    /// The session and kind whose deflate stream the last frame sent left open.
    open_stream: Option<(String, u8)>,
}

impl Link {
    pub fn new() -> Self {
        Link::default()
    }

    /// Accepts compressed frames whose payload inflates to at most `limit` bytes (the end that
    /// offers compression in its `open`s).
    pub fn accept_compressed(&mut self, limit: usize) {
        self.decoder.accept_compressed(limit);
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
        self.encode_followed_into(envelope, None, out);
    }

    /// Like [`Link::encode_into`], knowing the message that will be encoded and sent right after
    /// this one: when it is the same session's next payload of the same kind, a compressed
    /// payload leaves its deflate stream open for it (see [`super::compression`]). The caller
    /// must then encode `next` next.
    pub fn encode_followed_into(&mut self, envelope: &Envelope, next: Option<&Envelope>, out: &mut Vec<u8>) {
        // Whatever this frame is, it is the one after the frame that left a stream open.
        let open = self.open_stream.take();
        let continuing =
            open.is_some_and(|(sid, code)| sid == envelope.sid && Some(code) == compressible_kind(envelope));
        if !continuing && let Some(deflater) = self.deflater.as_mut() {
            deflater.end_stream();
        }
        let handshake = is_handshake(envelope);
        if !handshake
            && self.compact.contains(&envelope.sid)
            && (self.try_deflated(envelope, continuing, next, out)
                || self.encoder.encode_into(envelope, out).is_ok())
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

    /// Appends `envelope` with its body deflated, when compression was offered, its kind's
    /// payload may be compressed and deflating it is worth it; `continuing`: the frame before
    /// left its stream open for this one. False: nothing was appended.
    fn try_deflated(
        &mut self,
        envelope: &Envelope,
        continuing: bool,
        next: Option<&Envelope>,
        out: &mut Vec<u8>,
    ) -> bool {
        let Some(kind) = compressible_kind(envelope).filter(|_| self.deflate) else {
            return false;
        };
        if !continuing {
            if envelope.body.len() < super::compression::MIN_PAYLOAD {
                return false;
            }
            if let Some(left) = self.skip.get_mut(&envelope.sid) {
                *left -= 1;
                if *left == 0 {
                    self.skip.remove(&envelope.sid);
                }
                return false;
            }
        }
        let keep_open =
            next.is_some_and(|next| next.sid == envelope.sid && compressible_kind(next) == Some(kind));
        let deflater = self.deflater.get_or_insert_with(Box::default);
        let Some(deflated) = deflater.deflate(&envelope.body, keep_open) else {
            if !continuing && self.skip.len() < MAX_SESSIONS {
                self.skip.insert(envelope.sid.clone(), SKIP_AFTER_INCOMPRESSIBLE);
            }
            return false;
        };
        // On error the encoder appends nothing: the caller then sends the body as it is, which
        // ends the stream for the receiver, so it ends here too.
        if self
            .encoder
            .encode_deflated_into(envelope, deflated, out)
            .is_err()
        {
            deflater.end_stream();
            return false;
        }
        if keep_open {
            self.open_stream = Some((envelope.sid.clone(), kind));
        }
        true
    }

    /// Decodes one frame of either encoding. After an error the link can no longer be trusted
    /// (the peer's compact table may have moved on): close the connection.
    pub fn decode(&mut self, frame: &[u8]) -> Result<Envelope, Error> {
        let envelope = if is_compact(frame) {
            let envelope = self.decoder.decode(frame)?;
            self.speak_compact(&envelope.sid);
            envelope
        } else {
            self.decoder.end_stream();
            let envelope = Envelope::decode(frame).map_err(Error::MsgpackFrame)?;
            if accepts_compact(&envelope) {
                self.speak_compact(&envelope.sid);
            }
            if offers_deflate(&envelope) {
                self.deflate = true;
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
            self.skip.remove(&envelope.sid);
            self.encoder.forget(&envelope.sid);
        }
    }
}

/// The kind of `envelope` when its payload may be compressed.
fn compressible_kind(envelope: &Envelope) -> Option<u8> {
    kind::by_message(envelope.proto, &envelope.typ)
        .map(|kind| kind.code)
        .filter(|code| kind::compressible(*code))
}

/// `open` and `accept` always travel in msgpack: they come before the choice of version.
fn is_handshake(envelope: &Envelope) -> bool {
    envelope.proto == protocol::CONTROL && matches!(envelope.typ.as_str(), "open" | "accept")
}

fn offers_deflate(envelope: &Envelope) -> bool {
    envelope.proto == protocol::CONTROL
        && envelope.typ == "open"
        && envelope.props.str(COMPRESSION_PROP) == Some(DEFLATE)
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
    use crate::{compact::flag, shell::Shell};

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

    fn open_offering_deflate(sid: &str) -> Envelope {
        let mut open = Control::Open {
            versions: vec![1, 2, 3],
        }
        .to_envelope(sid);
        open.props
            .set(COMPRESSION_PROP, crate::value::Value::Str(DEFLATE.into()));
        open
    }

    #[test]
    fn output_is_deflated_once_the_hub_offers_it_and_random_bytes_are_not() {
        let (mut device, mut hub) = (Link::new(), Link::new());
        hub.accept_compressed(1 << 20);
        let text: Vec<u8> = (0..4000)
            .flat_map(|n: u32| format!("line {} ok\n", n % 50).into_bytes())
            .collect();
        let output = Shell::Data(text.clone()).to_envelope("s");
        // Before the offer: a compact frame with the text as it is.
        device.decode(&hub.encode(&open_offering_deflate("s"))).unwrap();
        hub.decode(&device.encode(&accept("s", version::COMPACT)))
            .unwrap();
        let frame = device.encode(&output);
        assert!(
            frame.len() * 4 < text.len(),
            "deflated: {} of {}",
            frame.len(),
            text.len()
        );
        assert_eq!(hub.decode(&frame).unwrap(), output);
        let mut state = 7u32;
        let random: Vec<u8> = (0..8192)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (state >> 16) as u8
            })
            .collect();
        let noise = Shell::Data(random.clone()).to_envelope("s");
        let frame = device.encode(&noise);
        assert!(frame.len() <= random.len() + 8, "sent as it is: {}", frame.len());
        assert_eq!(hub.decode(&frame).unwrap(), noise);
    }

    #[test]
    fn a_compressed_frame_without_the_offer_is_refused() {
        let (mut device, mut hub) = (Link::new(), Link::new());
        device.decode(&hub.encode(&open_offering_deflate("s"))).unwrap();
        hub.decode(&device.encode(&accept("s", version::COMPACT)))
            .unwrap();
        let frame = device.encode(&Shell::Data(vec![b'a'; 4096]).to_envelope("s"));
        assert_eq!(hub.decode(&frame), Err(Error::CompressionNotNegotiated));
    }

    #[test]
    fn a_burst_of_output_is_one_stream_and_a_frame_in_between_ends_it() {
        let (mut device, mut hub) = (Link::new(), Link::new());
        hub.accept_compressed(1 << 20);
        device.decode(&hub.encode(&open_offering_deflate("s"))).unwrap();
        hub.decode(&device.encode(&accept("s", version::COMPACT)))
            .unwrap();
        let output = |n: u32| {
            let text: Vec<u8> = (0..300)
                .flat_map(|line: u32| format!("burst {n} line {} ok\n", line % 40).into_bytes())
                .collect();
            Shell::Data(text).to_envelope("s")
        };
        let burst: Vec<Envelope> = (0..4).map(output).collect();
        let mut flags = Vec::new();
        for (index, envelope) in burst.iter().enumerate() {
            let mut frame = Vec::new();
            device.encode_followed_into(envelope, burst.get(index + 1), &mut frame);
            flags.push(frame[1] & (flag::COMPRESSED | flag::CONTINUED));
            assert_eq!(&hub.decode(&frame).unwrap(), envelope);
        }
        let first_only = flag::COMPRESSED;
        let then = flag::COMPRESSED | flag::CONTINUED;
        assert_eq!(flags, [first_only, then, then, then]);
        // Announced as followed by more, then another frame goes first: the stream is over on
        // both ends, and the next payload starts one of its own.
        let mut frame = Vec::new();
        device.encode_followed_into(&output(5), Some(&output(6)), &mut frame);
        hub.decode(&frame).unwrap();
        hub.decode(&device.encode(&keystroke("s"))).unwrap();
        let frame = device.encode(&output(6));
        assert_eq!(frame[1] & flag::CONTINUED, 0);
        assert_eq!(hub.decode(&frame).unwrap(), output(6));
    }
}
