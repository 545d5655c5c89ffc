//! The compact encoding of the device protocol (version 3, see `docs/protocol.md`, *Compact
//! encoding*): the same [`Envelope`]s as the msgpack form, in frames built for slow links and
//! for a relay that routes without decoding.
//!
//! A frame is a fixed header — kind (one byte below 0x80, so it never looks like the msgpack map
//! a version-1/2 frame starts with), flags, and a varint session handle instead of the 36-byte
//! sid — then the kind's props as fields (varints, or strings), and the body bytes verbatim.
//! The user stamped on a session is sent once, in the frame that binds its handle.
//!
//! Each connection has one [`Encoder`] (the handles this end allocates) and one [`Decoder`] (the
//! peer's handles). Frames must be decoded in the order they were encoded: every encoded frame
//! must be sent, in order, and a decoding error leaves the connection unusable (close it).

pub mod compression;
mod handles;
pub mod kind;
pub mod link;
mod wire;

#[cfg(test)]
mod extension_tests;
#[cfg(test)]
mod tests;

pub use handles::MAX_SESSIONS;
pub use link::Link;
pub use wire::{Binding, Header, flag};

use crate::{Envelope, Props, value::Value};
use handles::{Entry, SenderTable, Slot, Table};
use kind::{FieldValue, GENERIC, Kind};
use wire::{Reader, write_string, write_varint};

/// Why a compact frame could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("compact frame truncated in its {0}")]
    Truncated(&'static str),
    #[error("not a compact frame: it starts with 0x{0:02x} (compact kinds are below 0x80)")]
    NotCompact(u8),
    #[error("unknown compact message kind 0x{0:02x}")]
    UnknownKind(u8),
    #[error("flag bits 0x{flags:02x} are not allowed on compact kind 0x{kind:02x}")]
    FlagsNotAllowed { kind: u8, flags: u8 },
    #[error("the payload is compressed, but no compression was negotiated")]
    CompressionNotNegotiated,
    #[error("the payload continues a deflate stream, but the frame before it left none open for its session")]
    NoStreamToContinue,
    #[error("the compressed payload inflates beyond {0} bytes")]
    InflatesTooLarge(usize),
    #[error("the compressed payload is not valid deflate data ({0})")]
    BadCompressedPayload(String),
    #[error("{0}: varint above 64 bits")]
    VarintOverflow(&'static str),
    #[error("{0}: varint not in its shortest form")]
    NonMinimalVarint(&'static str),
    #[error("{what}: length {length} exceeds the {remaining} bytes left in the frame")]
    TooLong {
        what: &'static str,
        length: u64,
        remaining: usize,
    },
    #[error("{0}: invalid UTF-8")]
    InvalidUtf8(&'static str),
    #[error("handle {handle} is outside 1..={limit}")]
    HandleOutOfRange { handle: u64, limit: usize },
    #[error("handle {0} is not bound to a session")]
    UnknownHandle(u32),
    #[error("handle {0}: {1}")]
    BadBinding(u32, &'static str),
    #[error("handle {0} has no user to stamp")]
    NoUser(u32),
    #[error("more than {0} sessions on this connection")]
    TooManySessions(usize),
    #[error("field `{0}`: value does not fit its form")]
    FieldOutOfRange(&'static str),
    #[error("the generic frame carries a sid of its own")]
    GenericWithSid,
    #[error("msgpack inside the compact frame: {0}")]
    Msgpack(#[from] crate::Error),
    /// A msgpack frame (version 1 or 2) that did not decode, from [`Link::decode`].
    #[error("{0}")]
    MsgpackFrame(crate::Error),
}

/// Whether a device-protocol frame is compact (or msgpack, which always starts with a map).
pub fn is_compact(frame: &[u8]) -> bool {
    frame.first().is_some_and(|first| *first < 0x80)
}

/// The version an `accept` chooses: the highest one both ends speak.
pub fn choose_version(offered: &[u32], supported: &[u32]) -> Option<u32> {
    offered.iter().copied().filter(|v| supported.contains(v)).max()
}

/// Encodes the envelopes one end of a connection sends.
#[derive(Debug, Clone)]
pub struct Encoder {
    table: SenderTable,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new(MAX_SESSIONS)
    }
}

/// The props of an envelope sorted into the kind's fields, the rest, and the user stamp.
struct Split<'a> {
    /// Indexed like the kind's fields (a fixed array: no allocation per message).
    fields: [Option<FieldValue<'a>>; kind::MAX_FIELDS],
    extra: &'a [(String, Value)],
    user: Option<&'a str>,
}

/// `stamp`: whether a trailing `user_id` may become the stamp (not on the empty sid, whose
/// handle carries no user).
fn split<'a>(kind: &Kind, props: &'a Props, stamp: bool) -> Split<'a> {
    let mut props = props.0.as_slice();
    let mut user = None;
    if let Some(((key, Value::Str(id)), rest)) = props.split_last()
        && stamp
        && key == "user_id"
        && !id.is_empty()
    {
        user = Some(id.as_str());
        props = rest;
    }
    let mut fields = [None; kind::MAX_FIELDS];
    let mut next = 0;
    let mut taken = 0;
    for (key, value) in props {
        let found = kind.fields[next..]
            .iter()
            .position(|field| field.key == key)
            .map(|at| next + at);
        let Some(at) = found else { break };
        let Some(field) = kind.fields[at].form.matches(value) else {
            break;
        };
        fields[at] = Some(field);
        next = at + 1;
        taken += 1;
    }
    // Props from the first that is not the next field in order travel as they are, so their
    // order (and any duplicate) survives.
    Split {
        fields,
        extra: &props[taken..],
        user,
    }
}

impl Encoder {
    /// An encoder allowing `limit` sessions bound at once (the peer's decoder must allow as many).
    pub fn new(limit: usize) -> Self {
        Encoder {
            table: SenderTable::new(limit),
        }
    }

    /// Sessions currently bound.
    pub fn sessions(&self) -> usize {
        self.table.len()
    }

    /// Frees the handle of a session that ended without a `close` from this end.
    pub fn forget(&mut self, sid: &str) {
        self.table.release_sid(sid);
    }

    pub fn encode(&mut self, envelope: &Envelope) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(envelope.body.len() + 16);
        self.encode_into(envelope, &mut out)?;
        Ok(out)
    }

    /// Appends the frame of `envelope` to `out` (a buffer the caller reuses). On error nothing
    /// is appended and the session table is unchanged.
    pub fn encode_into(&mut self, envelope: &Envelope, out: &mut Vec<u8>) -> Result<(), Error> {
        self.encode_with_payload(envelope, None, out)
    }

    /// Like [`Encoder::encode_into`], with `deflated` (the envelope's body, deflated by
    /// [`compression::Deflater`]) as the payload, flagged COMPRESSED (and CONTINUED when it
    /// carries on the stream of the frame before). Only for the kinds whose payload may be
    /// compressed ([`kind::compressible`]); any other is an error.
    pub fn encode_deflated_into(
        &mut self,
        envelope: &Envelope,
        deflated: compression::Deflated<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        self.encode_with_payload(envelope, Some(deflated), out)
    }

    fn encode_with_payload(
        &mut self,
        envelope: &Envelope,
        deflated: Option<compression::Deflated<'_>>,
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        let Some(kind) = kind::by_message(envelope.proto, &envelope.typ) else {
            if deflated.is_some() {
                return Err(Error::FlagsNotAllowed {
                    kind: GENERIC,
                    flags: flag::COMPRESSED,
                });
            }
            return self.encode_generic(envelope, out);
        };
        if deflated.is_some() && !kind::compressible(kind.code) {
            return Err(Error::FlagsNotAllowed {
                kind: kind.code,
                flags: flag::COMPRESSED,
            });
        }
        let split = split(kind, &envelope.props, !envelope.sid.is_empty());
        let (extra, user) = (split.extra, split.user);
        let slot = self.table.slot(&envelope.sid, user)?;
        let mut flags = 0;
        let mut presence: u16 = 0;
        for (index, field) in split.fields.iter().enumerate() {
            if field.is_some() {
                presence |= 1 << index;
            }
        }
        flags |= ((presence & 0b111) as u8) << flag::PRESENCE_SHIFT;
        if user.is_some() {
            flags |= flag::USER;
        }
        if !extra.is_empty() {
            flags |= flag::EXTRA;
        }
        match &deflated {
            Some(deflated) if deflated.continued => flags |= flag::COMPRESSED | flag::CONTINUED,
            Some(_) => flags |= flag::COMPRESSED,
            None => {}
        }
        self.header(kind.code, flags, &slot).write(out);
        if kind.fields.len() > 3 {
            out.push((presence >> 3) as u8);
        }
        for field in split.fields.iter().flatten() {
            match field {
                FieldValue::Str(text) => write_string(out, text),
                FieldValue::Unsigned(n) => write_varint(out, *n),
            }
        }
        if !extra.is_empty() {
            let map = Value::Map(extra.to_vec()).encode();
            write_varint(out, map.len() as u64);
            out.extend_from_slice(&map);
        }
        out.extend_from_slice(deflated.map_or(&envelope.body[..], |deflated| deflated.bytes));
        if kind.code == kind::CLOSE && slot.handle != 0 {
            self.table.release(slot.handle);
        }
        Ok(())
    }

    /// The header of a frame for `slot`, with the binding when it must be announced.
    fn header(&self, kind: u8, flags: u8, slot: &Slot) -> Header<'_> {
        let binding = match (slot.announce, self.table.entry(slot.handle)) {
            (true, Some(entry)) => Some(Binding {
                sid: &entry.sid,
                user: &entry.user,
            }),
            _ => None,
        };
        Header {
            kind,
            flags,
            handle: slot.handle,
            binding,
        }
    }

    fn encode_generic(&mut self, envelope: &Envelope, out: &mut Vec<u8>) -> Result<(), Error> {
        let slot = self.table.slot(&envelope.sid, None)?;
        self.header(GENERIC, 0, &slot).write(out);
        let inner = Envelope {
            sid: String::new(),
            ..envelope.clone()
        };
        out.extend_from_slice(&inner.encode());
        Ok(())
    }
}

/// Decodes the frames the peer of a connection sends.
#[derive(Debug)]
pub struct Decoder {
    table: Table,
    /// The largest payload a COMPRESSED frame may inflate to; `None`: compression was not
    /// offered, such a frame is an error.
    inflate_limit: Option<usize>,
    inflater: compression::Inflater,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(MAX_SESSIONS)
    }
}

impl Decoder {
    /// A decoder accepting handles 1..=`limit` (at least the peer encoder's limit).
    pub fn new(limit: usize) -> Self {
        Decoder {
            table: Table::new(limit),
            inflate_limit: None,
            inflater: compression::Inflater::default(),
        }
    }

    /// Accepts COMPRESSED frames (this end offered compression) whose payload inflates to at
    /// most `limit` bytes.
    pub fn accept_compressed(&mut self, limit: usize) {
        self.inflate_limit = Some(limit);
    }

    /// The session a handle names now (for a relay that routes by header alone).
    pub fn sid(&self, handle: u32) -> Option<&str> {
        match handle {
            0 => Some(""),
            _ => self.table.get(handle).map(|entry| entry.sid.as_str()),
        }
    }

    /// A frame that is not a compact one arrived: whatever deflate stream was open is over.
    pub fn end_stream(&mut self) {
        self.inflater.end_stream();
    }

    /// Decodes one frame. The table learns the frame's binding, and forgets the handle after a
    /// control `close`, only when the whole frame decoded.
    pub fn decode(&mut self, frame: &[u8]) -> Result<Envelope, Error> {
        let mut reader = Reader::new(frame);
        let header = Header::read(&mut reader)?;
        let compressed = header.flags & flag::COMPRESSED != 0;
        let continued = header.flags & flag::CONTINUED != 0;
        if !continued {
            // Only a continuation may follow a frame that left its stream open.
            self.inflater.end_stream();
        }
        let inflate_limit = match (compressed, self.inflate_limit) {
            (false, _) if continued => {
                return Err(Error::FlagsNotAllowed {
                    kind: header.kind,
                    flags: flag::CONTINUED,
                });
            }
            (false, _) => None,
            (true, None) => return Err(Error::CompressionNotNegotiated),
            (true, Some(_)) if !kind::compressible(header.kind) => {
                return Err(Error::FlagsNotAllowed {
                    kind: header.kind,
                    flags: flag::COMPRESSED,
                });
            }
            (true, Some(limit)) => Some(limit),
        };
        let handle = header.handle;
        let (sid, user) = match header.binding {
            Some(binding) => {
                self.check_binding(handle, binding)?;
                (binding.sid, binding.user)
            }
            None if handle == 0 => ("", ""),
            None => {
                let entry = self.table.get(handle).ok_or(Error::UnknownHandle(handle))?;
                (entry.sid.as_str(), entry.user.as_str())
            }
        };
        let mut envelope = if header.kind == GENERIC {
            decode_generic(&header, &mut reader, sid)?
        } else {
            let kind = kind::by_code(header.kind).ok_or(Error::UnknownKind(header.kind))?;
            decode_kind(kind, &header, &mut reader, sid, user)?
        };
        if let Some(limit) = inflate_limit {
            envelope.body = self
                .inflater
                .inflate(&envelope.sid, &envelope.body, continued, limit)?;
        }
        if let Some(binding) = header.binding
            && handle != 0
        {
            let entry = Entry {
                sid: binding.sid.to_owned(),
                user: binding.user.to_owned(),
            };
            self.table.bind(handle, entry)?;
        }
        if header.kind == kind::CLOSE {
            self.table.release(handle);
        }
        Ok(envelope)
    }

    fn check_binding(&self, handle: u32, binding: Binding<'_>) -> Result<(), Error> {
        match handle {
            0 if !binding.sid.is_empty() => Err(Error::BadBinding(0, "handle 0 is the empty sid")),
            0 if !binding.user.is_empty() => Err(Error::BadBinding(0, "the empty sid has no user")),
            0 => Ok(()),
            _ if binding.sid.is_empty() => Err(Error::BadBinding(handle, "bound to the empty sid")),
            _ if handle as usize > self.table.limit() => Err(Error::HandleOutOfRange {
                handle: handle.into(),
                limit: self.table.limit(),
            }),
            _ => Ok(()),
        }
    }
}

fn decode_generic(header: &Header<'_>, reader: &mut Reader<'_>, sid: &str) -> Result<Envelope, Error> {
    if header.flags & !flag::BIND != 0 {
        return Err(Error::FlagsNotAllowed {
            kind: header.kind,
            flags: header.flags & !flag::BIND,
        });
    }
    let mut envelope = Envelope::decode(reader.rest())?;
    if !envelope.sid.is_empty() {
        return Err(Error::GenericWithSid);
    }
    sid.clone_into(&mut envelope.sid);
    Ok(envelope)
}

fn decode_kind(
    kind: &Kind,
    header: &Header<'_>,
    reader: &mut Reader<'_>,
    sid: &str,
    user: &str,
) -> Result<Envelope, Error> {
    let mut presence = u16::from(header.flags >> flag::PRESENCE_SHIFT);
    if kind.fields.len() > 3 {
        presence |= u16::from(reader.byte("presence")?) << 3;
    }
    if presence >> kind.fields.len() != 0 {
        return Err(Error::FlagsNotAllowed {
            kind: kind.code,
            flags: header.flags & flag::PRESENCE,
        });
    }
    let mut props = Vec::with_capacity(kind.fields.len() + 1);
    for (index, field) in kind.fields.iter().enumerate() {
        if presence & (1 << index) == 0 {
            continue;
        }
        let read = match field.form {
            kind::Form::Str => FieldValue::Str(reader.string(field.key)?),
            kind::Form::Unsigned | kind::Form::Unsigned64 => FieldValue::Unsigned(reader.varint(field.key)?),
        };
        let value = field.form.value(read).ok_or(Error::FieldOutOfRange(field.key))?;
        props.push((field.key.to_owned(), value));
    }
    if header.flags & flag::EXTRA != 0 {
        let length = reader.varint("extra props")?;
        let bytes = reader.take(length, "extra props")?;
        match Value::decode(bytes)? {
            Value::Map(extra) => props.extend(extra),
            _ => {
                return Err(Error::Msgpack(crate::Error::WrongType {
                    field: "extra props",
                    expected: "a map",
                }));
            }
        }
    }
    if header.flags & flag::USER != 0 {
        if user.is_empty() {
            return Err(Error::NoUser(header.handle));
        }
        props.push(("user_id".to_owned(), Value::Str(user.to_owned())));
    }
    Ok(Envelope {
        proto: kind.proto,
        typ: kind.typ.to_owned(),
        sid: sid.to_owned(),
        props: Props(props),
        body: reader.rest().to_vec(),
    })
}
