//! The hub's domain: the rules and data shapes, with no HTTP, no SQL and no network in them.
//! Access decisions (principals, permissions, roles on device groups), audit events, tokens
//! (JWT and random credentials), TOTP, password hashing, device keys, the recording format, and
//! the in-memory limits (throttles, session caps). Everything above builds on these.

pub mod audit;
pub mod device;
pub mod device_key;
pub mod enrolment_limits;
pub mod failure;
pub mod login_throttle;
pub mod passwords;
pub mod permissions;
pub mod principal;
pub mod recording_format;
pub mod roles;
pub mod session_limits;
pub mod throttle;
pub mod tokens;
pub mod two_factor;
pub mod user;
