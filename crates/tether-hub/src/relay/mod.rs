//! The relay: the device and user legs of every session and the routing between them (in
//! process, or across replicas over NATS), with the terminal recorder beside the stream.

pub mod active_sessions;
pub mod device_leg;
pub mod inventory;
pub mod open_terminals;
pub mod recording;
pub mod replicas;
pub mod router;
pub mod session_audit;
pub mod user_leg;

use std::{path::PathBuf, sync::Arc};

use crate::{
    config::HubConfig, domain::principal::Revocation, relay::recording::LiveSessions, relay::router::Router,
    store::Store,
};

/// What every leg of every session shares.
#[derive(Clone)]
pub struct Relay {
    pub config: Arc<HubConfig>,
    pub store: Store,
    pub router: Arc<Router>,
    /// Where recordings made before they were kept in the database (migration 0017) are, as
    /// files (`DATA_DIR/recordings`): still played, and deleted by retention.
    pub recordings_dir: PathBuf,
    /// Sessions being recorded now, for live watchers.
    pub live: Arc<LiveSessions>,
    /// Withdrawn credentials, so that live connections using them end at once.
    pub revocations: tokio::sync::broadcast::Sender<Revocation>,
    /// This hub process's replica id (`DATA_DIR/replica-id`): the open terminals it serves.
    pub replica_id: Arc<str>,
}
