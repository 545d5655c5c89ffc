//! The message kinds of the compact encoding: one small code per `(proto, typ)` of today's
//! protocols, each with the props it carries as fields (in the order the encoders of
//! `tether_proto` write them), and how each field's value is written.

use crate::{protocol, value::Value};

/// How a field's value travels, and which msgpack values it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// A string: varint length and UTF-8 bytes.
    Str,
    /// A non-negative integer written by msgpack in its smallest form (`Value::Int`): a varint.
    Unsigned,
    /// A non-negative integer written by msgpack as int64 (`0xd3`, the Go agent's `offset`):
    /// a varint.
    Unsigned64,
}

/// A prop a kind carries as a field.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub key: &'static str,
    pub form: Form,
}

/// One message kind.
#[derive(Debug)]
pub struct Kind {
    pub code: u8,
    pub proto: u16,
    pub typ: &'static str,
    pub fields: &'static [Field],
}

/// A field's value as read from a frame or found in an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValue<'a> {
    Str(&'a str),
    Unsigned(u64),
}

impl Form {
    /// The field value `value` stands for, if re-encoding the field gives the very msgpack bytes
    /// `value` has (same integer width), so the mapping stays lossless.
    pub fn matches<'a>(self, value: &'a Value) -> Option<FieldValue<'a>> {
        let unsigned = match (self, value) {
            (Form::Str, Value::Str(text)) => return Some(FieldValue::Str(text)),
            // msgpack's smallest form of n ≥ 0: fixint, uint8, uint16, uint32 or uint64 by size.
            (Form::Unsigned, Value::Int(n)) => u64::try_from(*n).ok(),
            (Form::Unsigned, Value::UInt(n)) => Some(*n),
            (Form::Unsigned, Value::UInt16(n)) if *n >= 256 => Some(u64::from(*n)),
            (Form::Unsigned, Value::UInt32(n)) if *n >= 65_536 => Some(u64::from(*n)),
            (Form::Unsigned64, Value::Int64(n)) => u64::try_from(*n).ok(),
            _ => None,
        };
        unsigned.map(FieldValue::Unsigned)
    }

    /// The msgpack value of a field read from a frame; `None` when it does not fit the form.
    pub fn value(self, field: FieldValue<'_>) -> Option<Value> {
        match (self, field) {
            (Form::Str, FieldValue::Str(text)) => Some(Value::Str(text.to_owned())),
            (Form::Unsigned, FieldValue::Unsigned(n)) => {
                Some(i64::try_from(n).map_or(Value::UInt(n), Value::Int))
            }
            (Form::Unsigned64, FieldValue::Unsigned(n)) => i64::try_from(n).ok().map(Value::Int64),
            _ => None,
        }
    }
}

/// The most fields a kind may have: three presence bits in the flags, eight in a presence byte.
pub const MAX_FIELDS: usize = 3 + 8;

/// The kind of frames carrying any other message: the whole envelope, sid left out, as msgpack.
pub const GENERIC: u8 = 0x7f;

const fn field(key: &'static str, form: Form) -> Field {
    Field { key, form }
}

const NONE: &[Field] = &[];
const OFFSET: &[Field] = &[field("offset", Form::Unsigned)];
/// Terminal data: the agent's output carries `status` (as a stock agent's does), then `offset`.
const SHELL_DATA: &[Field] = &[field("status", Form::Unsigned), field("offset", Form::Unsigned)];
const SIZE: &[Field] = &[
    field("terminal_width", Form::Unsigned),
    field("terminal_height", Form::Unsigned),
];
const SHELL_NEW: &[Field] = &[
    field("user_id", Form::Str),
    field("terminal_width", Form::Unsigned),
    field("terminal_height", Form::Unsigned),
    field("command", Form::Str),
    field("status", Form::Unsigned),
];
const SHELL_STOP: &[Field] = &[
    field("user_id", Form::Str),
    field("status", Form::Unsigned),
    field("exit_status", Form::Unsigned),
];
const SHELL_PING: &[Field] = &[field("status", Form::Unsigned), field("timeout", Form::Unsigned)];
const STATUS: &[Field] = &[field("status", Form::Unsigned)];
const CHUNK: &[Field] = &[field("offset", Form::Unsigned64), field("sha256", Form::Str)];
const ACK: &[Field] = &[field("offset", Form::Unsigned64)];
const CONNECTION: &[Field] = &[field("connection_id", Form::Str)];
const OPEN: &[Field] = &[field("user_name", Form::Str)];

const fn kind(code: u8, proto: u16, typ: &'static str, fields: &'static [Field]) -> Kind {
    Kind {
        code,
        proto,
        typ,
        fields,
    }
}

use protocol::{COMMANDS, CONTROL, FILE_TRANSFER, PORT_FORWARD, SHELL};

/// Every kind, the most frequent first (lookups scan in order).
pub const KINDS: &[Kind] = &[
    kind(0x01, SHELL, "shell", SHELL_DATA),
    kind(0x10, FILE_TRANSFER, "file_chunk", CHUNK),
    kind(0x11, FILE_TRANSFER, "ack", ACK),
    kind(0x20, PORT_FORWARD, "forward", CONNECTION),
    kind(0x21, PORT_FORWARD, "ack", CONNECTION),
    kind(0x02, SHELL, "resize", SIZE),
    kind(0x03, SHELL, "new", SHELL_NEW),
    kind(0x04, SHELL, "stop", SHELL_STOP),
    kind(0x05, SHELL, "ping", SHELL_PING),
    kind(0x06, SHELL, "pong", STATUS),
    kind(0x07, SHELL, "resume", OFFSET),
    kind(0x08, SHELL, "detach", NONE),
    kind(0x12, FILE_TRANSFER, "stat", NONE),
    kind(0x13, FILE_TRANSFER, "file_info", NONE),
    kind(0x14, FILE_TRANSFER, "get_file", NONE),
    kind(0x15, FILE_TRANSFER, "put_file", NONE),
    kind(0x16, FILE_TRANSFER, "error", NONE),
    kind(0x17, FILE_TRANSFER, "list", NONE),
    kind(0x18, FILE_TRANSFER, "file_list", NONE),
    kind(0x19, FILE_TRANSFER, "mkdir", NONE),
    kind(0x22, PORT_FORWARD, "new", CONNECTION),
    kind(0x23, PORT_FORWARD, "stop", CONNECTION),
    kind(0x24, PORT_FORWARD, "error", CONNECTION),
    kind(0x30, COMMANDS, "check-update", STATUS),
    kind(0x31, COMMANDS, "send-inventory", STATUS),
    kind(0x70, CONTROL, "open", OPEN),
    kind(0x71, CONTROL, "accept", NONE),
    kind(0x72, CONTROL, "close", NONE),
    kind(0x73, CONTROL, "ping", NONE),
    kind(0x74, CONTROL, "pong", NONE),
    kind(0x75, CONTROL, "error", NONE),
    kind(0x76, CONTROL, "wait", NONE),
    kind(0x77, CONTROL, "sessions", NONE),
    kind(0x78, CONTROL, "inventory", NONE),
];

/// The control `close`: after it, the session's handle is free again (on both sides).
pub const CLOSE: u8 = 0x72;

/// The kinds whose payload may travel deflated (flag COMPRESSED): terminal data and file
/// chunks, the bulk that compresses. Port-forward data is mostly encrypted already.
pub fn compressible(code: u8) -> bool {
    matches!(code, 0x01 | 0x10)
}

pub fn by_code(code: u8) -> Option<&'static Kind> {
    KINDS.iter().find(|kind| kind.code == code)
}

pub fn by_message(proto: u16, typ: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|kind| kind.proto == proto && kind.typ == typ)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn codes_are_unique_below_0x80_and_fields_unique_per_kind() {
        for (index, kind) in KINDS.iter().enumerate() {
            assert!(kind.code > 0 && kind.code < GENERIC, "{}", kind.typ);
            assert!(KINDS[index + 1..].iter().all(|other| other.code != kind.code));
            assert!(
                KINDS[index + 1..]
                    .iter()
                    .all(|other| (other.proto, other.typ) != (kind.proto, kind.typ))
            );
            assert!(kind.fields.len() <= MAX_FIELDS, "{}", kind.typ);
            for (at, field) in kind.fields.iter().enumerate() {
                assert!(kind.fields[at + 1..].iter().all(|other| other.key != field.key));
            }
        }
    }

    fn integer() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<i64>().prop_map(Value::Int),
            (0i64..70_000).prop_map(Value::Int),
            any::<u64>().prop_map(Value::UInt),
            any::<i64>().prop_map(Value::Int64),
            any::<u16>().prop_map(Value::UInt16),
            any::<u32>().prop_map(Value::UInt32),
        ]
    }

    proptest! {
        /// A form claims a value exactly when the field, read back, encodes to the same bytes.
        #[test]
        fn forms_match_exactly_the_values_they_reproduce(value in integer()) {
            for form in [Form::Unsigned, Form::Unsigned64] {
                let original = value.encode();
                let claimed = form.matches(&value);
                if let Some(field) = claimed {
                    let back = form.value(field).expect("a matched field has a value");
                    prop_assert_eq!(back.encode(), original);
                } else if let Some(n) = value.as_u64() {
                    // Not claimed: the form's own value of the same number has other bytes.
                    if let Some(back) = form.value(FieldValue::Unsigned(n)) {
                        prop_assert_ne!(back.encode(), original);
                    }
                }
            }
        }
    }
}
