//! Deflate for compact frames (flags `COMPRESSED` and `CONTINUED`, see docs/protocol.md,
//! *Compression*).
//!
//! A compressed payload is raw deflate (RFC 1951). It either starts a deflate stream of its own
//! or, flagged CONTINUED, carries on the stream of the frame right before it on the connection,
//! which must be a compressed frame of the same session whose stream did not end. A sender only
//! leaves a stream open when that next frame is already in its hands, so a stream spans a burst
//! of one session's output and never waits for output that may not come: each end holds at most
//! one open stream per connection, and none between bursts.
//!
//! What the compression of one frame could reveal is thus about a run of one session's output,
//! which its recipient — that session's operator — reads anyway: nothing one party keeps secret
//! is compressed together with data another party controls (the CRIME/BREACH family of attacks
//! needs both in one context). A payload starts a stream only when deflating saves at least a
//! sixteenth of it, so incompressible data (already compressed files, random bytes) travels as it
//! is.

use miniz_oxide::{
    DataFormat, MZError, MZFlush, MZStatus,
    deflate::core::{CompressorOxide, TDEFLFlush, TDEFLStatus, compress, create_comp_flags_from_zip_params},
    inflate::stream::{InflateState, inflate},
};

use super::Error;

/// Payloads shorter than this do not start a stream (a keystroke, an echo, a prompt); inside a
/// stream, anything may be worth it.
pub const MIN_PAYLOAD: usize = 256;
/// zlib's default level (ssh -C's too): a good ratio on terminal text at modest CPU.
const LEVEL: i32 = 6;
/// A payload of at least four times this is first tried on its first this many bytes: deflating
/// all of an incompressible one (a compressed file, random bytes) only to send it as it is took
/// most of the agent's CPU in a 1 GiB download.
const SAMPLE: usize = 4096;
/// How a payload that leaves its stream open ends: the empty stored block of a sync flush.
const SYNC_FLUSH: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The compressing side's state: one deflate compressor per connection, reset at the start of
/// each stream, and the buffer its output goes to. Its memory (about 300 KB, miniz_oxide's
/// dictionary and hash chains) is allocated once, on the first payload tried.
pub struct Deflater {
    compressor: Box<CompressorOxide>,
    out: Vec<u8>,
    /// The last payload deflated left its stream open (ended with a sync flush).
    open: bool,
}

/// A deflated payload, and whether it carries on the stream of the payload before it.
#[derive(Debug, PartialEq, Eq)]
pub struct Deflated<'a> {
    pub bytes: &'a [u8],
    pub continued: bool,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Deflater")
            .field("open", &self.open)
            .finish_non_exhaustive()
    }
}

impl Default for Deflater {
    fn default() -> Self {
        Deflater::new()
    }
}

impl Deflater {
    pub fn new() -> Self {
        // window_bits 0: raw deflate, no zlib header or checksum (the TLS record has its own).
        let flags = create_comp_flags_from_zip_params(LEVEL, 0, 0);
        Deflater {
            compressor: Box::new(CompressorOxide::new(flags)),
            out: Vec::new(),
            open: false,
        }
    }

    /// Whether the next payload may carry on the stream (the last one left it open).
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Forgets the open stream: the frame just sent was not its continuation.
    pub fn end_stream(&mut self) {
        self.open = false;
    }

    /// `payload` deflated, carrying on the open stream if there is one, else starting one (only
    /// for payloads of at least [`MIN_PAYLOAD`] bytes). `keep_open`: the next frame sent is this
    /// session's next payload, so the stream is left open for it (a sync flush) instead of ended.
    /// `None` when deflating does not save at least a sixteenth: send the payload as it is, and
    /// the stream (if any) is over.
    pub fn deflate(&mut self, payload: &[u8], keep_open: bool) -> Option<Deflated<'_>> {
        let continued = std::mem::take(&mut self.open);
        if !continued {
            if payload.len() < MIN_PAYLOAD {
                return None;
            }
            if payload.len() >= 4 * SAMPLE {
                self.compressor.reset();
                self.compress_saving(&payload[..SAMPLE], TDEFLFlush::Finish)?;
            }
            self.compressor.reset();
        }
        let flush = if keep_open {
            TDEFLFlush::Sync
        } else {
            TDEFLFlush::Finish
        };
        let written = self.compress_saving(payload, flush)?;
        self.open = keep_open;
        Some(Deflated {
            bytes: &self.out[..written],
            continued,
        })
    }

    /// Deflates `payload` into `out`; the size written, if it saves at least a sixteenth.
    fn compress_saving(&mut self, payload: &[u8], flush: TDEFLFlush) -> Option<usize> {
        // Output that would not fit in this much is not worth sending: the compressor stops there.
        let room = payload.len() - payload.len() / 16;
        if room == 0 {
            return None;
        }
        self.out.clear();
        self.out.resize(room, 0);
        let (status, consumed, written) = compress(&mut self.compressor, payload, &mut self.out, flush);
        let complete = consumed == payload.len()
            && match flush {
                TDEFLFlush::Finish => status == TDEFLStatus::Done,
                // A sync flush that filled the buffer may have more output pending.
                _ => status == TDEFLStatus::Okay && written < room,
            };
        complete.then_some(written)
    }
}

/// The receiving side's state: the open stream of the frame just received, if it left one open
/// (about 43 KB: miniz_oxide's 32 KB window and tables, freed as soon as the stream is over).
#[derive(Default)]
pub struct Inflater {
    open: Option<(String, Box<InflateState>)>,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sid = self.open.as_ref().map(|(sid, _)| sid.as_str());
        formatter.debug_struct("Inflater").field("open", &sid).finish()
    }
}

impl Inflater {
    /// Forgets the open stream: a frame that is not its continuation arrived.
    pub fn end_stream(&mut self) {
        self.open = None;
    }

    /// Inflates one compressed payload of session `sid`, refusing one that would grow beyond
    /// `limit` bytes (a small frame must not make the receiver allocate without bound).
    /// `continued`: the payload carries on the open stream, which must be `sid`'s.
    pub fn inflate(
        &mut self,
        sid: &str,
        payload: &[u8],
        continued: bool,
        limit: usize,
    ) -> Result<Vec<u8>, Error> {
        let open = self.open.take();
        let mut state = match (continued, open) {
            (true, Some((open_sid, state))) if open_sid == sid => state,
            (true, _) => return Err(Error::NoStreamToContinue),
            (false, _) => InflateState::new_boxed(DataFormat::Raw),
        };
        let (bytes, ended) = inflate_payload(&mut state, payload, limit)?;
        if !ended && !payload.ends_with(&SYNC_FLUSH) {
            return Err(Error::BadCompressedPayload(
                "the deflate stream neither ends nor ends in a sync flush".into(),
            ));
        }
        if !ended {
            self.open = Some((sid.to_owned(), state));
        }
        Ok(bytes)
    }
}

/// Inflates all of `payload` into a new buffer of at most `limit` bytes; true when the stream
/// ended with it (then nothing may follow it in the payload).
fn inflate_payload(state: &mut InflateState, payload: &[u8], limit: usize) -> Result<(Vec<u8>, bool), Error> {
    let mut out = vec![
        0u8;
        payload
            .len()
            .saturating_mul(4)
            .clamp(1024, limit.saturating_add(1))
    ];
    let (mut consumed, mut written) = (0, 0);
    loop {
        let result = inflate(state, &payload[consumed..], &mut out[written..], MZFlush::None);
        consumed += result.bytes_consumed;
        written += result.bytes_written;
        if written > limit {
            return Err(Error::InflatesTooLarge(limit));
        }
        match result.status {
            Ok(MZStatus::StreamEnd) if consumed < payload.len() => {
                return Err(Error::BadCompressedPayload(
                    "bytes after the end of the deflate stream".into(),
                ));
            }
            Ok(MZStatus::StreamEnd) => {
                out.truncate(written);
                return Ok((out, true));
            }
            Ok(_) | Err(MZError::Buf) => {}
            Err(error) => return Err(Error::BadCompressedPayload(format!("{error:?}"))),
        }
        if written == out.len() {
            // Full: there may be more to come; grow up to one byte past the limit.
            let grown = out.len().saturating_mul(2).min(limit.saturating_add(1));
            if grown == out.len() {
                return Err(Error::InflatesTooLarge(limit));
            }
            out.resize(grown, 0);
        } else if consumed == payload.len() {
            // All input read and room left: everything it holds is out (a sync-flushed stream).
            out.truncate(written);
            return Ok((out, false));
        } else if result.bytes_consumed == 0 && result.bytes_written == 0 {
            return Err(Error::BadCompressedPayload("no progress".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut n = 0u64;
        while out.len() < bytes {
            out.extend_from_slice(
                format!(
                    "2026-12-03T10:00:{:02}Z sensor[{}]: reading {} ok\n",
                    n % 60,
                    n % 7,
                    n * 37 % 1000
                )
                .as_bytes(),
            );
            n += 1;
        }
        out.truncate(bytes);
        out
    }

    fn random(bytes: usize) -> Vec<u8> {
        let mut state = 0x1234_5678_9abc_def0u64;
        (0..bytes)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    const LIMIT: usize = 1 << 20;

    #[test]
    fn text_deflates_and_inflates_back() {
        let (mut deflater, mut inflater) = (Deflater::new(), Inflater::default());
        let original = text(32 * 1024);
        let deflated = deflater.deflate(&original, false).expect("text compresses");
        assert!(!deflated.continued);
        let deflated = deflated.bytes.to_vec();
        assert!(
            deflated.len() * 4 < original.len(),
            "{} of {}",
            deflated.len(),
            original.len()
        );
        assert_eq!(inflater.inflate("s", &deflated, false, LIMIT).unwrap(), original);
        // The stream ended: the next payload starts one of its own, with the same bytes.
        let again = deflater.deflate(&original, false).expect("again");
        assert_eq!((again.bytes, again.continued), (deflated.as_slice(), false));
    }

    #[test]
    fn a_stream_carries_on_across_payloads_and_costs_less_than_one_per_payload() {
        let (mut deflater, mut inflater) = (Deflater::new(), Inflater::default());
        let original = text(64 * 1024);
        let pieces: Vec<&[u8]> = original.chunks(4096).collect();
        let (mut streamed, mut alone) = (0, 0);
        for (index, piece) in pieces.iter().enumerate() {
            let last = index + 1 == pieces.len();
            let deflated = deflater.deflate(piece, !last).expect("text compresses");
            assert_eq!(deflated.continued, index > 0);
            streamed += deflated.bytes.len();
            let bytes = deflated.bytes.to_vec();
            assert_eq!(&inflater.inflate("s", &bytes, index > 0, LIMIT).unwrap(), piece);
            alone += Deflater::new().deflate(piece, false).unwrap().bytes.len();
        }
        assert!(
            streamed * 5 < alone * 4,
            "streamed {streamed}, one by one {alone}"
        );
        // The last payload ended the stream: nothing is held, and a continuation is refused.
        assert!(!deflater.is_open() && inflater.open.is_none());
        let next = deflater.deflate(pieces[0], true).unwrap().bytes.to_vec();
        assert_eq!(
            inflater.inflate("s", &next, true, LIMIT),
            Err(Error::NoStreamToContinue)
        );
    }

    #[test]
    fn a_continuation_of_another_session_or_after_an_ended_stream_is_refused() {
        let (mut deflater, mut inflater) = (Deflater::new(), Inflater::default());
        let first = deflater.deflate(&text(4096), true).unwrap().bytes.to_vec();
        inflater.inflate("s", &first, false, LIMIT).unwrap();
        let second = deflater.deflate(&text(4096), true).unwrap().bytes.to_vec();
        assert_eq!(
            inflater.inflate("t", &second, true, LIMIT),
            Err(Error::NoStreamToContinue)
        );
        // A frame in between that is not the continuation ends the stream on both sides.
        deflater.end_stream();
        inflater.end_stream();
        let fresh = deflater.deflate(&text(4096), false).unwrap();
        assert!(!fresh.continued);
        let fresh = fresh.bytes.to_vec();
        assert_eq!(inflater.inflate("s", &fresh, false, LIMIT).unwrap(), text(4096));
    }

    #[test]
    fn short_and_incompressible_payloads_stay_as_they_are() {
        let mut deflater = Deflater::new();
        assert!(deflater.deflate(&text(MIN_PAYLOAD - 1), true).is_none());
        assert!(deflater.deflate(&random(32 * 1024), true).is_none());
        // A large payload is judged by its first SAMPLE bytes: not deflated at all when they do
        // not deflate.
        let mixed = [random(SAMPLE), text(16 * SAMPLE)].concat();
        assert!(deflater.deflate(&mixed, false).is_none());
        let large = deflater.deflate(&text(16 * SAMPLE), false).unwrap().bytes.len();
        assert!(large < 16 * SAMPLE / 2, "{large} bytes");
        // Inside a stream a short payload is worth it, and random bytes end the stream.
        deflater.deflate(&text(8192), true).unwrap();
        assert!(deflater.deflate(&text(100), true).unwrap().continued);
        assert!(deflater.deflate(&random(8192), true).is_none());
        assert!(!deflater.is_open());
    }

    #[test]
    fn a_payload_inflating_beyond_the_limit_or_broken_is_an_error() {
        let zeros = vec![0u8; 1 << 20];
        let bomb = Deflater::new()
            .deflate(&zeros, false)
            .expect("zeros compress")
            .bytes
            .to_vec();
        assert!(bomb.len() < 2048);
        let mut inflater = Inflater::default();
        assert_eq!(
            inflater.inflate("s", &bomb, false, 64 * 1024),
            Err(Error::InflatesTooLarge(64 * 1024))
        );
        assert!(matches!(
            inflater.inflate("s", &[0xff, 0xff, 0xff], false, 1024),
            Err(Error::BadCompressedPayload(_))
        ));
        assert!(matches!(
            inflater.inflate("s", &bomb[..bomb.len() / 2], false, 2 << 20),
            Err(Error::BadCompressedPayload(_))
        ));
        let mut trailing = Deflater::new()
            .deflate(&text(1024), false)
            .unwrap()
            .bytes
            .to_vec();
        trailing.push(0);
        assert!(matches!(
            inflater.inflate("s", &trailing, false, LIMIT),
            Err(Error::BadCompressedPayload(_))
        ));
        assert!(inflater.open.is_none(), "a failed payload leaves no stream open");
    }
}
