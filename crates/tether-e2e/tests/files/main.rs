//! File transfer: `tether cp` and `tether ls` and the hub's Mender-compatible HTTP file API
//! (driven with `curl`) against a real agent whose `file_transfer.roots` is a temporary
//! directory: round trips with checksums, modes and mtimes; directory trees; refusals (path
//! escapes, permissions, size and overwrite policy, a full disk) that leave nothing behind; a
//! 200 MB transfer that survives dropped connections; a terminal that stays responsive while a
//! 200 MB transfer runs.
//!
//! One test binary (CI time), a module per concern.

mod common;
mod http_api;
mod large;
mod refusals;
mod round_trips;
mod symlink_swap;
