//! The state every request handler shares: the hub, and what only HTTP serves (the installer).

use std::{ops::Deref, sync::Arc};

use crate::{http::installer::Installer, service::Hub};

#[derive(Clone)]
pub struct AppState {
    pub hub: Arc<Hub>,
    /// The one-line install: the hub's certificate pins and the agent binaries' hashes.
    pub installer: Arc<Installer>,
    /// The bearer token that scrapes `/metrics`.
    pub metrics_token: Arc<str>,
}

/// Handlers reach the hub's parts as `state.store`, `state.router`, `state.tokens`.
impl Deref for AppState {
    type Target = Hub;

    fn deref(&self) -> &Hub {
        &self.hub
    }
}
