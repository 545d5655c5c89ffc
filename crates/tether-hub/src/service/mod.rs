//! Use cases over the store and the relay: authorizing and auditing what callers do, admitting
//! sessions, checkpoints of the audit chain, the hub's secrets, its data directory's lock, and
//! backups of a SQLite hub. [`Hub`] is what they share.

pub mod access;
pub mod admission;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod checkpoints;
pub mod data_lock;
pub mod exec_runs;
pub mod login;
pub mod restore;
pub mod roles;
pub mod secret_box;
pub mod secrets;
pub mod two_factor;

use std::{ops::Deref, sync::Arc};

use crate::{
    domain::enrolment_limits::EnrolmentLimits, domain::login_throttle::LoginThrottle,
    domain::session_limits::SessionLimits, domain::tokens::TokenSigner, relay::Relay,
    service::checkpoints::Checkpointer, service::secret_box::SecretBox,
};

/// The hub's parts, shared by every use case: the relay's (store, router, recordings) and the
/// credentials, limits and keys above it.
pub struct Hub {
    pub relay: Relay,
    pub tokens: Arc<TokenSigner>,
    /// Failed-login buckets (per address, per account and address, second factors).
    pub login_throttle: Arc<LoginThrottle>,
    /// Rate limits on enrolments by unknown device keys.
    pub enrolment_limits: Arc<EnrolmentLimits>,
    /// Concurrent user sessions per user and per device.
    pub session_limits: Arc<SessionLimits>,
    /// Encrypts the secrets the database keeps (TOTP secrets) with a key outside it.
    pub secret_box: Arc<SecretBox>,
    /// Signs audit checkpoints and retention anchors with the audit signing key.
    pub checkpoints: Arc<Checkpointer>,
}

/// A use case reaches the store and router as `hub.store`, `hub.router`.
impl Deref for Hub {
    type Target = Relay;

    fn deref(&self) -> &Relay {
        &self.relay
    }
}
