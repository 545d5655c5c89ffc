//! The audit log, end to end: every recorded action (logins, logouts, refused tokens and
//! permissions, device authentication and management, terminals, file transfers, port forwards)
//! leaves exactly one event with the right actor, object, outcome, details and origin, read back
//! with `tether audit list --json`; `tether audit verify` finds rows modified, removed or swapped
//! in the hub's SQLite database behind its back; events survive a SIGKILL of the hub; exports
//! (CSV, JSON Lines) hold one line per event.
//!
//! One test binary (CI time), a module per concern.

mod common;
mod devices;
mod durability;
mod logins;
mod reading;
mod terminals;
mod transfers;
mod verification;
