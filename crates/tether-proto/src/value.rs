//! The msgpack data model used by the device protocol.
//!
//! Re-encoding a decoded value keeps every value and the fixed widths peers depend on: an int64
//! (`0xd3`), a uint16 (`0xcd`) and a uint32 (`0xce`) are written back as they came (the stock agent
//! rejects an `offset` that is not an int64, and the reference encoder writes `hdr.proto` as a
//! uint16). It is not byte-exact in general: other integers, string, binary, array, map and
//! extension lengths and timestamps are written in their smallest form, and a float32 comes back
//! as a float64. Map keys keep their wire order. Encoders choose the fixed widths explicitly;
//! integer variants compare by value.

use crate::Error;

/// Nesting limit for decoding: protocol messages are at most three levels deep.
const MAX_DEPTH: usize = 16;
/// msgpack timestamp extension type.
const TIMESTAMP_EXT: i8 = -1;

#[derive(Debug, Clone)]
pub enum Value {
    Nil,
    Bool(bool),
    /// An integer written in its smallest msgpack form.
    Int(i64),
    /// An unsigned integer written in its smallest form (used for values above `i64::MAX`).
    UInt(u64),
    /// Always written as msgpack int64 (`0xd3`).
    Int64(i64),
    /// Always written as msgpack uint16 (`0xcd`).
    UInt16(u16),
    /// Always written as msgpack uint32 (`0xce`).
    UInt32(u32),
    Float(f64),
    Str(String),
    Bin(Vec<u8>),
    Array(Vec<Value>),
    /// A map with string keys, in wire order.
    Map(Vec<(String, Value)>),
    /// The msgpack timestamp extension (type −1).
    Timestamp {
        seconds: i64,
        nanoseconds: u32,
    },
    /// Any other extension type.
    Ext(i8, Vec<u8>),
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        use Value::*;
        if let (Some(a), Some(b)) = (self.integer(), other.integer()) {
            return a == b;
        }
        match (self, other) {
            (Nil, Nil) => true,
            (Bool(a), Bool(b)) => a == b,
            (Float(a), Float(b)) => a.to_bits() == b.to_bits(),
            (Str(a), Str(b)) => a == b,
            (Bin(a), Bin(b)) => a == b,
            (Array(a), Array(b)) => a == b,
            (Map(a), Map(b)) => a == b,
            (
                Timestamp {
                    seconds: a,
                    nanoseconds: x,
                },
                Timestamp {
                    seconds: b,
                    nanoseconds: y,
                },
            ) => a == b && x == y,
            (Ext(a, x), Ext(b, y)) => a == b && x == y,
            _ => false,
        }
    }
}

impl Value {
    /// Any integer form, widened to i128 so that signed and unsigned compare.
    fn integer(&self) -> Option<i128> {
        match *self {
            Value::Int(v) | Value::Int64(v) => Some(v.into()),
            Value::UInt(v) => Some(v.into()),
            Value::UInt16(v) => Some(v.into()),
            Value::UInt32(v) => Some(v.into()),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        self.integer().and_then(|v| i64::try_from(v).ok())
    }

    pub fn as_u64(&self) -> Option<u64> {
        self.integer().and_then(|v| u64::try_from(v).ok())
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(String, Value)]> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Looks a key up in a map value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_map()?.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Encodes this value as msgpack.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }

    /// Appends the msgpack encoding of this value to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        use rmp::encode as e;
        // Writing into a Vec cannot fail, so the results below are ignored deliberately.
        match self {
            Value::Nil => e::write_nil(out).unwrap_or(()),
            Value::Bool(b) => e::write_bool(out, *b).unwrap_or(()),
            Value::Int(v) => drop(e::write_sint(out, *v)),
            Value::UInt(v) => drop(e::write_uint(out, *v)),
            Value::Int64(v) => drop(e::write_i64(out, *v)),
            Value::UInt16(v) => drop(e::write_u16(out, *v)),
            Value::UInt32(v) => drop(e::write_u32(out, *v)),
            Value::Float(v) => drop(e::write_f64(out, *v)),
            Value::Str(s) => drop(e::write_str(out, s)),
            Value::Bin(b) => drop(e::write_bin(out, b)),
            Value::Array(items) => {
                drop(e::write_array_len(out, items.len() as u32));
                items.iter().for_each(|v| v.write(out));
            }
            Value::Map(entries) => {
                drop(e::write_map_len(out, entries.len() as u32));
                for (k, v) in entries {
                    drop(e::write_str(out, k));
                    v.write(out);
                }
            }
            Value::Timestamp { seconds, nanoseconds } => write_timestamp(out, *seconds, *nanoseconds),
            Value::Ext(typ, data) => {
                drop(e::write_ext_meta(out, data.len() as u32, *typ));
                out.extend_from_slice(data);
            }
        }
    }

    /// Decodes exactly one value from `bytes`; trailing bytes are an error.
    pub fn decode(bytes: &[u8]) -> Result<Value, Error> {
        let mut reader = Reader { bytes, position: 0 };
        let value = reader.value(0)?;
        match bytes.len() - reader.position {
            0 => Ok(value),
            n => Err(Error::TrailingBytes(n)),
        }
    }
}

fn write_timestamp(out: &mut Vec<u8>, seconds: i64, nanoseconds: u32) {
    if nanoseconds == 0 && (0..=u32::MAX as i64).contains(&seconds) {
        out.extend_from_slice(&[0xd6, TIMESTAMP_EXT as u8]);
        out.extend_from_slice(&(seconds as u32).to_be_bytes());
    } else if (0..1 << 34).contains(&seconds) {
        out.extend_from_slice(&[0xd7, TIMESTAMP_EXT as u8]);
        let packed = ((nanoseconds as u64) << 34) | seconds as u64;
        out.extend_from_slice(&packed.to_be_bytes());
    } else {
        out.extend_from_slice(&[0xc7, 12, TIMESTAMP_EXT as u8]);
        out.extend_from_slice(&nanoseconds.to_be_bytes());
        out.extend_from_slice(&seconds.to_be_bytes());
    }
}

/// A bounds-checked cursor over msgpack bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.position.checked_add(n).ok_or(Error::Truncated)?;
        let slice = self.bytes.get(self.position..end).ok_or(Error::Truncated)?;
        self.position = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<usize, Error> {
        Ok(self.byte()? as usize)
    }
    fn u16(&mut self) -> Result<u16, Error> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn string(&mut self, len: usize) -> Result<String, Error> {
        let raw = self.take(len)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| Error::InvalidUtf8)
    }

    fn value(&mut self, depth: usize) -> Result<Value, Error> {
        if depth > MAX_DEPTH {
            return Err(Error::TooDeep(MAX_DEPTH));
        }
        let marker = self.byte()?;
        Ok(match marker {
            0x00..=0x7f => Value::Int(marker as i64),
            0x80..=0x8f => self.map((marker & 0x0f) as usize, depth)?,
            0x90..=0x9f => self.list((marker & 0x0f) as usize, depth)?,
            0xa0..=0xbf => Value::Str(self.string((marker & 0x1f) as usize)?),
            0xc0 => Value::Nil,
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4 => {
                let n = self.u8()?;
                Value::Bin(self.take(n)?.to_vec())
            }
            0xc5 => {
                let n = self.u16()? as usize;
                Value::Bin(self.take(n)?.to_vec())
            }
            0xc6 => {
                let n = self.u32()? as usize;
                Value::Bin(self.take(n)?.to_vec())
            }
            0xc7 => {
                let n = self.u8()?;
                self.ext(n)?
            }
            0xc8 => {
                let n = self.u16()? as usize;
                self.ext(n)?
            }
            0xc9 => {
                let n = self.u32()? as usize;
                self.ext(n)?
            }
            0xca => Value::Float(f32::from_be_bytes(self.array()?) as f64),
            0xcb => Value::Float(f64::from_be_bytes(self.array()?)),
            0xcc => Value::Int(self.byte()? as i64),
            0xcd => Value::UInt16(self.u16()?),
            0xce => Value::UInt32(self.u32()?),
            0xcf => {
                let v = self.u64()?;
                i64::try_from(v).map_or(Value::UInt(v), Value::Int)
            }
            0xd0 => Value::Int(i8::from_be_bytes(self.array()?) as i64),
            0xd1 => Value::Int(i16::from_be_bytes(self.array()?) as i64),
            0xd2 => Value::Int(i32::from_be_bytes(self.array()?) as i64),
            0xd3 => Value::Int64(i64::from_be_bytes(self.array()?)),
            0xd4 => self.ext(1)?,
            0xd5 => self.ext(2)?,
            0xd6 => self.ext(4)?,
            0xd7 => self.ext(8)?,
            0xd8 => self.ext(16)?,
            0xd9 => {
                let n = self.u8()?;
                Value::Str(self.string(n)?)
            }
            0xda => {
                let n = self.u16()? as usize;
                Value::Str(self.string(n)?)
            }
            0xdb => {
                let n = self.u32()? as usize;
                Value::Str(self.string(n)?)
            }
            0xdc => {
                let n = self.u16()? as usize;
                self.list(n, depth)?
            }
            0xdd => {
                let n = self.u32()? as usize;
                self.list(n, depth)?
            }
            0xde => {
                let n = self.u16()? as usize;
                self.map(n, depth)?
            }
            0xdf => {
                let n = self.u32()? as usize;
                self.map(n, depth)?
            }
            0xe0..=0xff => Value::Int(marker as i8 as i64),
            0xc1 => return Err(Error::InvalidMarker(marker)),
        })
    }

    /// The remaining bytes bound how many elements can follow (each takes at least one byte),
    /// so a forged length never makes us allocate more than the frame's size.
    fn capacity(&self, claimed: usize) -> usize {
        claimed.min(self.bytes.len() - self.position)
    }

    fn list(&mut self, len: usize, depth: usize) -> Result<Value, Error> {
        let mut items = Vec::with_capacity(self.capacity(len));
        for _ in 0..len {
            items.push(self.value(depth + 1)?);
        }
        Ok(Value::Array(items))
    }

    fn map(&mut self, len: usize, depth: usize) -> Result<Value, Error> {
        let mut entries = Vec::with_capacity(self.capacity(len) / 2);
        for _ in 0..len {
            let Value::Str(key) = self.value(depth + 1)? else {
                return Err(Error::NonStringKey);
            };
            entries.push((key, self.value(depth + 1)?));
        }
        Ok(Value::Map(entries))
    }

    fn ext(&mut self, len: usize) -> Result<Value, Error> {
        let typ = self.byte()? as i8;
        let data = self.take(len)?;
        if typ != TIMESTAMP_EXT {
            return Ok(Value::Ext(typ, data.to_vec()));
        }
        Ok(match *data {
            [a, b, c, d] => Value::Timestamp {
                seconds: u32::from_be_bytes([a, b, c, d]) as i64,
                nanoseconds: 0,
            },
            [..] if data.len() == 8 => {
                let packed = u64::from_be_bytes(data.try_into().map_err(|_| Error::Truncated)?);
                Value::Timestamp {
                    seconds: (packed & ((1 << 34) - 1)) as i64,
                    nanoseconds: (packed >> 34) as u32,
                }
            }
            [..] if data.len() == 12 => Value::Timestamp {
                nanoseconds: u32::from_be_bytes(data[..4].try_into().map_err(|_| Error::Truncated)?),
                seconds: i64::from_be_bytes(data[4..].try_into().map_err(|_| Error::Truncated)?),
            },
            _ => Value::Ext(typ, data.to_vec()),
        })
    }
}

/// Builds a map value from `(key, value)` pairs, skipping `None`s.
pub fn map<const N: usize>(entries: [(&str, Option<Value>); N]) -> Value {
    Value::Map(
        entries
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn re_encoding_keeps_fixed_widths_and_shrinks_the_rest() {
        let round = |bytes: &[u8]| Value::decode(bytes).unwrap().encode();
        // Fixed widths come back as they were.
        for fixed in [
            &[0xd3, 0, 0, 0, 0, 0, 0, 0, 5][..],
            &[0xcd, 0, 5],
            &[0xce, 0, 0, 0, 5],
        ] {
            assert_eq!(round(fixed), fixed);
        }
        // Other widths and lengths come back in their smallest form, with the same value.
        assert_eq!(round(&[0xd2, 0, 0, 0, 5]), [0x05]);
        assert_eq!(round(&[0xd9, 1, b'a']), [0xa1, b'a']);
        assert_eq!(round(&[0xdc, 0, 1, 0xc0]), [0x91, 0xc0]);
        // A float32 comes back as the same number in a float64.
        let float32 = [0xca, 0x3f, 0xc0, 0, 0];
        assert_eq!(Value::decode(&round(&float32)).unwrap(), Value::Float(1.5));
        assert_eq!(round(&float32)[0], 0xcb);
    }

    #[test]
    fn forced_widths_are_byte_exact() {
        assert_eq!(Value::Int64(5).encode(), [0xd3, 0, 0, 0, 0, 0, 0, 0, 5]);
        assert_eq!(Value::UInt16(1).encode(), [0xcd, 0, 1]);
        assert_eq!(Value::UInt32(0o644).encode(), [0xce, 0, 0, 1, 0xa4]);
        assert_eq!(Value::Int(5).encode(), [5]);
        assert_eq!(Value::Int(-1).encode(), [0xff]);
    }

    #[test]
    fn integers_compare_by_value() {
        assert_eq!(Value::Int64(7), Value::Int(7));
        assert_eq!(Value::UInt16(7), Value::UInt(7));
        assert_ne!(Value::Int(7), Value::Str("7".into()));
    }

    #[test]
    fn timestamps_round_trip_in_all_three_forms() {
        for (s, n) in [(1_700_000_000, 0), (1_700_000_000, 5), (-5, 1), (1 << 40, 0)] {
            let v = Value::Timestamp {
                seconds: s,
                nanoseconds: n,
            };
            assert_eq!(Value::decode(&v.encode()), Ok(v));
        }
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert_eq!(Value::decode(&[]), Err(Error::Truncated));
        assert_eq!(Value::decode(&[0xc1]), Err(Error::InvalidMarker(0xc1)));
        assert_eq!(
            Value::decode(&[0xdd, 0xff, 0xff, 0xff, 0xff]),
            Err(Error::Truncated)
        );
        assert_eq!(Value::decode(&[0x81, 0x01, 0x01]), Err(Error::NonStringKey));
        assert_eq!(Value::decode(&[0xa1, 0xff]), Err(Error::InvalidUtf8));
        assert_eq!(Value::decode(&[0x01, 0x02]), Err(Error::TrailingBytes(1)));
        assert_eq!(Value::decode(&[0x91; 100]), Err(Error::TooDeep(MAX_DEPTH)));
    }
}
