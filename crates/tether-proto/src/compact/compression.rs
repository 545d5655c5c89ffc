//! Per-message deflate for compact frames (flag `COMPRESSED`, see docs/protocol.md, *Compression*).
//!
//! Each payload is compressed on its own (raw deflate, RFC 1951, no shared history): what one
//! frame's size could reveal is about that frame alone, so nothing one party keeps secret is ever
//! compressed together with data another party controls (the CRIME/BREACH family of attacks needs
//! both in one context). A payload is sent compressed only when that saves at least a sixteenth of
//! it, so incompressible data (already compressed files, random bytes) travels as it is.

use miniz_oxide::{
    deflate::core::{CompressorOxide, TDEFLFlush, TDEFLStatus, compress, create_comp_flags_from_zip_params},
    inflate::{TINFLStatus, decompress_to_vec_with_limit},
};

use super::Error;

/// Payloads shorter than this are not worth a try (a keystroke, an echo, a prompt).
pub const MIN_PAYLOAD: usize = 256;
/// zlib's default level (ssh -C's too): a good ratio on terminal text at modest CPU.
const LEVEL: i32 = 6;

/// The compressing side's state: one deflate compressor, reused for every payload (reset in
/// between), and the buffer its output goes to. Its memory (about 300 KB, miniz_oxide's
/// dictionary and hash chains) is allocated once, on the first payload tried.
pub struct Deflater {
    compressor: Box<CompressorOxide>,
    out: Vec<u8>,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Deflater").finish_non_exhaustive()
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
        }
    }

    /// `payload` deflated, when it is at least [`MIN_PAYLOAD`] bytes and deflating saves at least
    /// a sixteenth of it; `None` otherwise (send it as it is).
    pub fn deflate(&mut self, payload: &[u8]) -> Option<&[u8]> {
        if payload.len() < MIN_PAYLOAD {
            return None;
        }
        // Output that would not fit in this much is not worth sending: the compressor stops there.
        let room = payload.len() - payload.len() / 16;
        self.out.clear();
        self.out.resize(room, 0);
        self.compressor.reset();
        let (status, consumed, written) =
            compress(&mut self.compressor, payload, &mut self.out, TDEFLFlush::Finish);
        (status == TDEFLStatus::Done && consumed == payload.len()).then(|| &self.out[..written])
    }
}

/// Inflates a compressed payload, refusing one that would grow beyond `limit` bytes (a small
/// frame must not make the receiver allocate without bound).
pub fn inflate(payload: &[u8], limit: usize) -> Result<Vec<u8>, Error> {
    decompress_to_vec_with_limit(payload, limit).map_err(|error| match error.status {
        TINFLStatus::HasMoreOutput => Error::InflatesTooLarge(limit),
        status => Error::BadCompressedPayload(format!("{status:?}")),
    })
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

    #[test]
    fn text_deflates_and_inflates_back() {
        let mut deflater = Deflater::new();
        let original = text(32 * 1024);
        let deflated = deflater.deflate(&original).expect("text compresses").to_vec();
        assert!(
            deflated.len() * 4 < original.len(),
            "{} of {}",
            deflated.len(),
            original.len()
        );
        assert_eq!(inflate(&deflated, original.len()).unwrap(), original);
        // The compressor is reused: the next payload is compressed on its own.
        let again = deflater.deflate(&original).expect("again").to_vec();
        assert_eq!(again, deflated);
    }

    #[test]
    fn short_and_incompressible_payloads_stay_as_they_are() {
        let mut deflater = Deflater::new();
        assert!(deflater.deflate(&text(MIN_PAYLOAD - 1)).is_none());
        let mut state = 0x1234_5678_9abc_def0u64;
        let random: Vec<u8> = (0..32 * 1024)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        assert!(deflater.deflate(&random).is_none());
    }

    #[test]
    fn a_payload_inflating_beyond_the_limit_or_broken_is_an_error() {
        let zeros = vec![0u8; 1 << 20];
        let bomb = Deflater::new().deflate(&zeros).expect("zeros compress").to_vec();
        assert!(bomb.len() < 2048);
        assert_eq!(inflate(&bomb, 64 * 1024), Err(Error::InflatesTooLarge(64 * 1024)));
        assert!(matches!(
            inflate(&[0xff, 0xff, 0xff], 1024),
            Err(Error::BadCompressedPayload(_))
        ));
        assert!(matches!(
            inflate(&bomb[..bomb.len() / 2], 2 << 20),
            Err(Error::BadCompressedPayload(_))
        ));
    }
}
