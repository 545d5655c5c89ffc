//! The state every request handler shares.

use std::sync::Arc;

use crate::{
    config::HubConfig, device_auth::EnrolmentLimits, login_throttle::LoginThrottle, router::Router,
    session_limits::SessionLimits, store::Store, tokens::TokenSigner,
};

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<HubConfig>,
    pub store: Store,
    pub router: Arc<Router>,
    pub tokens: Arc<TokenSigner>,
    /// Failed-login buckets (per address, per account and address, second factors).
    pub login_throttle: Arc<LoginThrottle>,
    /// Rate limits on enrolments by unknown device keys.
    pub enrolment_limits: Arc<EnrolmentLimits>,
    /// Concurrent user sessions per user and per device.
    pub session_limits: Arc<SessionLimits>,
    /// Serializes audit writes: each event chains to the previous one.
    pub audit_chain: Arc<tokio::sync::Mutex<()>>,
    /// Where terminal recordings are written (`DATA_DIR/recordings`).
    pub recordings_dir: std::path::PathBuf,
    /// Sessions being recorded now, for live watchers.
    pub live: Arc<crate::recording::LiveSessions>,
    /// Encrypts the secrets the database keeps (TOTP secrets) with a key outside it.
    pub secret_box: Arc<crate::secret_box::SecretBox>,
    /// Withdrawn credentials, so that live connections using them end at once.
    pub revocations: tokio::sync::broadcast::Sender<crate::auth::Revocation>,
    /// Signs audit checkpoints and retention anchors with the audit signing key.
    pub checkpoints: Arc<crate::checkpoints::Checkpointer>,
    /// This hub process's replica id (`DATA_DIR/replica-id`): the open terminals it serves.
    pub replica_id: Arc<str>,
    /// The one-line install: the hub's certificate pins and the agent binaries' hashes.
    pub installer: Arc<crate::install::Installer>,
}
