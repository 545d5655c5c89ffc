//! The protocol message: `{hdr: {proto, typ, sid, props}, body}`, as the Mender reference
//! implementation writes it (maps with string keys, `proto` as uint16, empty fields omitted).

use crate::{Error, value::Value};

/// Header properties (`hdr.props`), in wire order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Props(pub Vec<(String, Value)>);

impl Props {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets `key`, replacing an existing value in place.
    pub fn set(&mut self, key: &str, value: Value) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key.to_owned(), value)),
        }
    }

    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.set(key, value);
        self
    }

    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let index = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(index).1)
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    pub fn i64(&self, key: &str) -> Option<i64> {
        self.get(key).and_then(Value::as_i64)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One protocol message, as carried in one binary WebSocket frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Envelope {
    pub proto: u16,
    pub typ: String,
    pub sid: String,
    pub props: Props,
    pub body: Vec<u8>,
}

impl Envelope {
    pub fn new(proto: u16, typ: &str, sid: &str) -> Self {
        Envelope {
            proto,
            typ: typ.to_owned(),
            sid: sid.to_owned(),
            ..Default::default()
        }
    }

    pub fn with_prop(mut self, key: &str, value: Value) -> Self {
        self.props.set(key, value);
        self
    }

    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Encodes the message for the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 64);
        self.encode_into(&mut out);
        out
    }

    /// Appends the message's msgpack encoding to `out` (a buffer the caller may reuse). Written
    /// field by field, nothing copied but into `out`: this runs once per relayed message.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        use rmp::encode as e;
        out.reserve(self.body.len() + 64);
        let envelope_len = if self.body.is_empty() { 1 } else { 2 };
        let header_len = 1 + [self.typ.is_empty(), self.sid.is_empty(), self.props.is_empty()]
            .iter()
            .filter(|empty| !**empty)
            .count();
        // Writing into a Vec cannot fail.
        let _ = e::write_map_len(out, envelope_len);
        let _ = e::write_str(out, "hdr");
        let _ = e::write_map_len(out, header_len as u32);
        let _ = e::write_str(out, "proto");
        let _ = e::write_u16(out, self.proto);
        for (key, text) in [("typ", &self.typ), ("sid", &self.sid)] {
            if !text.is_empty() {
                let _ = e::write_str(out, key);
                let _ = e::write_str(out, text);
            }
        }
        if !self.props.is_empty() {
            let _ = e::write_str(out, "props");
            let _ = e::write_map_len(out, self.props.0.len() as u32);
            for (key, value) in &self.props.0 {
                let _ = e::write_str(out, key);
                value.write(out);
            }
        }
        if !self.body.is_empty() {
            let _ = rmp::encode::write_str(out, "body");
            let _ = rmp::encode::write_bin(out, &self.body);
        }
    }

    /// Decodes one message. Unknown keys are ignored, as the reference decoder does.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, Error> {
        // Taken apart by value: the body moves out of the decoded tree, it is not copied again.
        let Value::Map(entries) = Value::decode(bytes)? else {
            return Err(Error::WrongType {
                field: "message",
                expected: "a map",
            });
        };
        let mut envelope = Envelope::default();
        let mut header = None;
        for (key, value) in entries {
            match key.as_str() {
                "hdr" => header = Some(value),
                "body" => {
                    envelope.body = match value {
                        Value::Bin(b) => b,
                        Value::Str(s) => s.into_bytes(),
                        Value::Nil => Vec::new(),
                        // Some encoders put structured bodies inline; keep their bytes as msgpack.
                        other => other.encode(),
                    }
                }
                _ => {}
            }
        }
        let header = header.ok_or(Error::Missing("hdr"))?;
        let Value::Map(header) = header else {
            return Err(Error::WrongType {
                field: "hdr",
                expected: "a map",
            });
        };
        let mut proto = None;
        for (key, value) in header {
            match key.as_str() {
                "proto" => {
                    let p = value.as_u64().and_then(|p| u16::try_from(p).ok());
                    proto = Some(p.ok_or(Error::WrongType {
                        field: "hdr.proto",
                        expected: "uint16",
                    })?);
                }
                "typ" => envelope.typ = string_or_nil(value, "hdr.typ")?,
                "sid" => envelope.sid = string_or_nil(value, "hdr.sid")?,
                "props" => {
                    envelope.props = match value {
                        Value::Map(m) => Props(m),
                        Value::Nil => Props::default(),
                        _ => {
                            return Err(Error::WrongType {
                                field: "hdr.props",
                                expected: "a map",
                            });
                        }
                    }
                }
                _ => {}
            }
        }
        envelope.proto = proto.ok_or(Error::Missing("hdr.proto"))?;
        Ok(envelope)
    }

    /// Decodes the body as a msgpack map (structured bodies: `open`, `accept`, `error`, ...).
    pub fn body_value(&self) -> Result<Value, Error> {
        Value::decode(&self.body)
    }
}

fn string_or_nil(value: Value, field: &'static str) -> Result<String, Error> {
    match value {
        Value::Str(s) => Ok(s),
        Value::Nil => Ok(String::new()),
        _ => Err(Error::WrongType {
            field,
            expected: "a string",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_fields_are_omitted() {
        let bytes = Envelope::new(0xffff, "", "").encode();
        // {"hdr": {"proto": uint16 0xffff}}
        assert_eq!(
            bytes,
            [
                0x81, 0xa3, b'h', b'd', b'r', 0x81, 0xa5, b'p', b'r', b'o', b't', b'o', 0xcd, 0xff, 0xff
            ]
        );
    }

    #[test]
    fn proto_is_uint16_even_when_small() {
        let bytes = Envelope::new(1, "shell", "s").encode();
        let proto_at = bytes.windows(5).position(|w| w == b"proto").unwrap() + 5;
        assert_eq!(&bytes[proto_at..proto_at + 3], [0xcd, 0x00, 0x01]);
    }

    #[test]
    fn offset_prop_is_int64() {
        let message = Envelope::new(2, "file_chunk", "s").with_prop("offset", Value::Int64(4096));
        let bytes = message.encode();
        let at = bytes.windows(6).position(|w| w == b"offset").unwrap() + 6;
        assert_eq!(&bytes[at..at + 9], [0xd3, 0, 0, 0, 0, 0, 0, 0x10, 0]);
    }

    #[test]
    fn decoder_accepts_any_integer_form_for_proto() {
        // {"hdr": {"proto": 1 (fixint), "typ": "new"}}
        let bytes = [
            0x81, 0xa3, b'h', b'd', b'r', 0x82, 0xa5, b'p', b'r', b'o', b't', b'o', 0x01, 0xa3, b't', b'y',
            b'p', 0xa3, b'n', b'e', b'w',
        ];
        let message = Envelope::decode(&bytes).unwrap();
        assert_eq!((message.proto, message.typ.as_str()), (1, "new"));
    }

    #[test]
    fn missing_header_and_bad_proto_are_errors() {
        assert_eq!(Envelope::decode(&[0x80]), Err(Error::Missing("hdr")));
        let bad = [
            0x81, 0xa3, b'h', b'd', b'r', 0x81, 0xa5, b'p', b'r', b'o', b't', b'o', 0xa1, b'x',
        ];
        assert!(matches!(Envelope::decode(&bad), Err(Error::WrongType { .. })));
        assert!(Envelope::decode(&[0x93, 1, 2, 3]).is_err());
    }

    fn prop_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Nil),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<i64>().prop_map(Value::Int64),
            any::<u32>().prop_map(Value::UInt32),
            any::<u16>().prop_map(Value::UInt16),
            ".{0,20}".prop_map(Value::Str),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bin),
            (any::<i64>(), 0u32..1_000_000_000)
                .prop_map(|(seconds, nanoseconds)| Value::Timestamp { seconds, nanoseconds }),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec(("[a-z_]{1,12}", inner), 0..6).prop_map(Value::Map),
            ]
        })
    }

    proptest! {
        #[test]
        fn envelopes_round_trip(
            proto in any::<u16>(),
            typ in "[a-z_]{0,12}",
            sid in "[0-9a-f-]{0,36}",
            props in proptest::collection::vec(("[a-z_]{1,16}", prop_value()), 0..5),
            body in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let message = Envelope { proto, typ, sid, props: Props(props), body };
            prop_assert_eq!(Envelope::decode(&message.encode()), Ok(message));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Envelope::decode(&bytes);
        }

        #[test]
        fn values_reencode_byte_exact(value in prop_value()) {
            let bytes = value.encode();
            let decoded = Value::decode(&bytes).unwrap();
            prop_assert_eq!(decoded.encode(), bytes);
        }
    }
}
