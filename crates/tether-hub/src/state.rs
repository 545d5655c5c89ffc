//! The state every request handler shares.

use std::sync::Arc;

use crate::{auth::FailureLimiter, config::HubConfig, router::Router, store::Store, tokens::TokenSigner};

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<HubConfig>,
    pub store: Store,
    pub router: Arc<Router>,
    pub tokens: Arc<TokenSigner>,
    pub login_failures: Arc<FailureLimiter>,
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
}
