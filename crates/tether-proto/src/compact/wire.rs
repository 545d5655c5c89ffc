//! The byte-level pieces of a compact frame: LEB128 varints, length-prefixed strings, a
//! bounds-checked reader, and the fixed header (kind, flags, handle, optional binding) that a
//! relay reads and rewrites without touching the payload behind it.

use super::Error;

/// Frame flags (the low five bits of the flags byte).
pub mod flag {
    /// The sid and user of the handle follow the handle: the handle is (re)bound by this frame.
    pub const BIND: u8 = 0x01;
    /// The message carries the prop `user_id` = the handle's user, as its last prop.
    pub const USER: u8 = 0x02;
    /// Props the kind's fields do not cover follow the fields, as a length-prefixed msgpack map.
    pub const EXTRA: u8 = 0x04;
    /// The payload is deflated (refused unless the receiver offered compression).
    pub const COMPRESSED: u8 = 0x08;
    /// With COMPRESSED: the payload carries on the deflate stream of the frame right before it.
    pub const CONTINUED: u8 = 0x10;
    /// The top three bits: presence of the kind's fields 0, 1 and 2.
    pub const PRESENCE: u8 = 0xe0;
    /// How far the presence bits are shifted up in the flags byte.
    pub const PRESENCE_SHIFT: u32 = 5;
}

/// The longest LEB128 encoding of a u64.
const MAX_VARINT_BYTES: usize = 10;

/// Appends `value` as an unsigned LEB128 varint (7 bits per byte, low bits first).
pub fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends a string as its byte length (varint) and its UTF-8 bytes.
pub fn write_string(out: &mut Vec<u8>, text: &str) {
    write_varint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

/// A bounds-checked cursor over one frame.
pub struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, position: 0 }
    }

    pub fn position(&self) -> usize {
        self.position
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    /// The unread rest of the frame, consumed.
    pub fn rest(&mut self) -> &'a [u8] {
        let rest = &self.bytes[self.position..];
        self.position = self.bytes.len();
        rest
    }

    pub fn byte(&mut self, what: &'static str) -> Result<u8, Error> {
        let byte = *self.bytes.get(self.position).ok_or(Error::Truncated(what))?;
        self.position += 1;
        Ok(byte)
    }

    /// Reads a minimal LEB128 varint: overlong forms (a trailing zero group) are refused, so
    /// that every value has exactly one encoding.
    pub fn varint(&mut self, what: &'static str) -> Result<u64, Error> {
        let mut value: u64 = 0;
        for index in 0..MAX_VARINT_BYTES {
            let byte = self.byte(what)?;
            let bits = u64::from(byte & 0x7f);
            let shift = 7 * index as u32;
            if shift == 63 && bits > 1 {
                return Err(Error::VarintOverflow(what));
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                if byte == 0 && index > 0 {
                    return Err(Error::NonMinimalVarint(what));
                }
                return Ok(value);
            }
        }
        Err(Error::VarintOverflow(what))
    }

    /// Takes `length` bytes, refusing a length beyond the end of the frame before anything is
    /// allocated.
    pub fn take(&mut self, length: u64, what: &'static str) -> Result<&'a [u8], Error> {
        let remaining = self.remaining();
        let length = usize::try_from(length)
            .ok()
            .filter(|length| *length <= remaining)
            .ok_or(Error::TooLong {
                what,
                length,
                remaining,
            })?;
        let slice = &self.bytes[self.position..self.position + length];
        self.position += length;
        Ok(slice)
    }

    /// Reads a length-prefixed UTF-8 string, borrowed from the frame.
    pub fn string(&mut self, what: &'static str) -> Result<&'a str, Error> {
        let length = self.varint(what)?;
        let raw = self.take(length, what)?;
        std::str::from_utf8(raw).map_err(|_| Error::InvalidUtf8(what))
    }
}

/// The session a handle names, as a `BIND` frame carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding<'a> {
    pub sid: &'a str,
    /// The user stamped on the session's messages; empty for none.
    pub user: &'a str,
}

/// The fixed part of every compact frame: what a relay needs to route a frame and rewrite its
/// session, without decoding the payload behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// The message kind (see [`super::kind`]); always below 0x80.
    pub kind: u8,
    /// [`flag`] bits and the presence bits of the kind's first three fields.
    pub flags: u8,
    pub handle: u32,
    /// Present exactly when `flags` has [`flag::BIND`].
    pub binding: Option<Binding<'a>>,
}

impl<'a> Header<'a> {
    /// Reads the header; returns it and the offset of the first byte after it.
    pub fn parse(frame: &'a [u8]) -> Result<(Header<'a>, usize), Error> {
        let mut reader = Reader::new(frame);
        let header = Header::read(&mut reader)?;
        Ok((header, reader.position()))
    }

    pub(super) fn read(reader: &mut Reader<'a>) -> Result<Header<'a>, Error> {
        let kind = reader.byte("kind")?;
        if kind >= 0x80 {
            return Err(Error::NotCompact(kind));
        }
        let flags = reader.byte("flags")?;
        let handle = reader.varint("handle")?;
        let handle = u32::try_from(handle).map_err(|_| Error::HandleOutOfRange {
            handle,
            limit: u32::MAX as usize,
        })?;
        let binding = if flags & flag::BIND != 0 {
            Some(Binding {
                sid: reader.string("sid")?,
                user: reader.string("user")?,
            })
        } else {
            None
        };
        Ok(Header {
            kind,
            flags,
            handle,
            binding,
        })
    }

    /// Appends the header; `flags`' BIND bit is set from `binding`, whatever it was.
    pub fn write(&self, out: &mut Vec<u8>) {
        let flags = match self.binding {
            Some(_) => self.flags | flag::BIND,
            None => self.flags & !flag::BIND,
        };
        out.push(self.kind);
        out.push(flags);
        write_varint(out, u64::from(self.handle));
        if let Some(binding) = self.binding {
            write_string(out, binding.sid);
            write_string(out, binding.user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        write_varint(&mut out, value);
        out
    }

    #[test]
    fn varints_are_leb128() {
        assert_eq!(varint(0), [0x00]);
        assert_eq!(varint(127), [0x7f]);
        assert_eq!(varint(128), [0x80, 0x01]);
        assert_eq!(varint(4096), [0x80, 0x20]);
        assert_eq!(varint(u64::MAX).len(), MAX_VARINT_BYTES);
        for value in [0, 1, 127, 128, 16_383, 16_384, u64::MAX >> 1, u64::MAX] {
            assert_eq!(Reader::new(&varint(value)).varint("v"), Ok(value));
        }
    }

    #[test]
    fn bad_varints_are_refused() {
        assert_eq!(
            Reader::new(&[0x80, 0x00]).varint("v"),
            Err(Error::NonMinimalVarint("v"))
        );
        assert_eq!(Reader::new(&[0x80]).varint("v"), Err(Error::Truncated("v")));
        let mut too_big = vec![0xff; 9];
        too_big.push(0x02);
        assert_eq!(Reader::new(&too_big).varint("v"), Err(Error::VarintOverflow("v")));
        assert_eq!(
            Reader::new(&[0xff; 11]).varint("v"),
            Err(Error::VarintOverflow("v"))
        );
    }

    #[test]
    fn a_length_beyond_the_frame_is_refused_before_allocating() {
        let frame = [0xff, 0xff, 0xff, 0xff, 0x0f, b'a'];
        assert_eq!(
            Reader::new(&frame).string("sid"),
            Err(Error::TooLong {
                what: "sid",
                length: 0xffff_ffff,
                remaining: 1
            })
        );
    }

    #[test]
    fn headers_round_trip() {
        let header = Header {
            kind: 0x01,
            flags: flag::BIND | flag::USER,
            handle: 300,
            binding: Some(Binding { sid: "s", user: "u" }),
        };
        let mut out = Vec::new();
        header.write(&mut out);
        assert_eq!(out, [0x01, 0x03, 0xac, 0x02, 0x01, b's', 0x01, b'u']);
        assert_eq!(Header::parse(&out), Ok((header, out.len())));
    }
}
