//! The wire formats Tether speaks, with no I/O in them.
//!
//! - [`value`]: the msgpack data model, with explicit integer widths where the stock agent
//!   checks Go types strictly.
//! - [`envelope`]: the Mender remote-terminal message (`hdr` + `body`), encoded and decoded.
//! - [`compact`]: the same messages in the compact encoding of version 3 (session handles,
//!   small integer kinds, varints), with the per-connection session tables it needs.
//! - [`control`], [`shell`], [`file_transfer`], [`port_forward`]: typed messages of the control
//!   (0xFFFF), shell (1), file transfer (2) and port forward (3) protocols.
//! - [`inventory`]: what a Tether agent reports of its device (a control extension).
//! - [`transfer`]: flow control of a file transfer (chunks, window, acks), shared by the CLI and
//!   the hub.
//! - [`auth`]: the device authentication request the agent signs and the hub verifies.
//! - [`clock`]: the wall clock as Unix seconds or milliseconds, read the same way everywhere.
//! - [`api`]: the hub's management API, defined once: every request and response body (one
//!   module per resource) and every path, shared by the hub and the CLI.
//! - [`audit`], [`audit_checkpoint`]: the audit log's hash chain and its signed checkpoints,
//!   computed alike by the hub (which writes them) and the CLI (which verifies them); behind the
//!   `audit` feature, which the agent leaves off.
//!
//! Decoding never panics: malformed input is an [`Error`] value.

pub mod api;
#[cfg(feature = "audit")]
pub mod audit;
#[cfg(feature = "audit")]
pub mod audit_checkpoint;
pub mod auth;
pub mod clock;
pub mod compact;
pub mod control;
pub mod envelope;
pub mod file_transfer;
pub mod inventory;
pub mod port_forward;
pub mod shell;
pub mod transfer;
pub mod value;

pub use envelope::{Envelope, Props};
pub use value::Value;

/// Protocol numbers carried in `hdr.proto`.
pub mod protocol {
    pub const SHELL: u16 = 1;
    pub const FILE_TRANSFER: u16 = 2;
    pub const PORT_FORWARD: u16 = 3;
    pub const COMMANDS: u16 = 4;
    pub const CONTROL: u16 = 0xFFFF;
}

/// Versions offered in the control `open` handshake.
pub mod version {
    /// The Mender protocol, exactly as a stock `mender-connect` speaks it.
    pub const MENDER: u32 = 1;
    /// Mender's protocol plus Tether's negotiated extensions (see `docs/protocol.md`).
    pub const TETHER: u32 = 2;
    /// Version 2 in the compact encoding (`tether_proto::compact`): the same messages in
    /// smaller frames, for the device leg.
    pub const COMPACT: u32 = 3;
}

/// The largest frame a stock `mender-connect` accepts; it drops its connection on anything larger.
pub const STOCK_AGENT_MAX_FRAME: usize = 8192;

/// Why a frame could not be decoded or a message could not be interpreted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("truncated msgpack data")]
    Truncated,
    #[error("invalid msgpack marker 0x{0:02x}")]
    InvalidMarker(u8),
    #[error("msgpack nesting deeper than {0} levels")]
    TooDeep(usize),
    #[error("invalid UTF-8 in a msgpack string")]
    InvalidUtf8,
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    #[error("map keys must be strings")]
    NonStringKey,
    #[error("field `{field}`: expected {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("unknown message type `{typ}` for protocol {proto}")]
    UnknownType { proto: u16, typ: String },
}
