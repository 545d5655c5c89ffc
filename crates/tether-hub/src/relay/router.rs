//! Routing between users' sessions and devices' connections.
//!
//! A device connection *attaches* and receives its outbound messages from two lanes:
//! `Interactive` (control, shell) is always drained before `Bulk` (file data, forwarded bytes), so
//! keystrokes never queue behind a transfer. A user session *opens* on a device and receives the
//! device's messages for its `sid`, or word that the device went away.
//!
//! In-process tables are the embedded default. With a NATS [`bus::Bus`] (several replicas), a
//! device attached elsewhere is reached through it: the same methods, network calls behind them
//! (`bus.rs` for presence and events, `bridge.rs` for sessions across replicas).

mod bridge;
pub mod bus;
pub mod live_watch;
mod wire;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
};

use tether_proto::Envelope;
use tokio::sync::{mpsc, watch};

/// Queue depth per lane: enough to absorb bursts, small enough that a stuck device pushes back.
const LANE_DEPTH: usize = 256;
/// Queue depth from a device to one session.
const SESSION_DEPTH: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Interactive,
    /// File transfer and port forwarding data.
    Bulk,
}

/// A message queued for a device. Boxed: a queue allocates its first block of 32 slots when it
/// is made, and every attached device has two, idle or not (3.3 KB each for bare envelopes,
/// 256 bytes boxed).
pub type Outbound = Box<Envelope>;

/// What a device connection handler owns while attached.
pub struct DeviceAttachment {
    pub connection_id: u64,
    pub interactive: mpsc::Receiver<Outbound>,
    pub bulk: mpsc::Receiver<Outbound>,
    /// Set to the reason when the hub wants this connection closed (rejected, removed, replaced).
    pub kicked: watch::Receiver<Option<String>>,
}

/// What a session receives from its device.
#[derive(Debug)]
pub enum SessionEvent {
    Message(Envelope),
    /// The device's connection ended; it may come back (sessions that survive wait for it).
    DeviceGone(String),
    /// The hub sent the device away (rejected, removed): nothing waits for it.
    DeviceKicked(String),
    /// The session was opened again (a re-attach): this link no longer receives its messages.
    Superseded,
}

/// A user session's link to its device.
pub struct SessionLink {
    /// Tells this link apart from a later one opened for the same session.
    link_id: u64,
    interactive: mpsc::Sender<Outbound>,
    bulk: mpsc::Sender<Outbound>,
    pub events: mpsc::Receiver<SessionEvent>,
}

impl SessionLink {
    /// Queues a message for the device; false when the device connection is gone.
    pub async fn send(&self, lane: Lane, envelope: Envelope) -> bool {
        let sender = match lane {
            Lane::Interactive => &self.interactive,
            Lane::Bulk => &self.bulk,
        };
        sender.send(Box::new(envelope)).await.is_ok()
    }

    /// A sender for one lane, for work that outlives the link (closing it from `Drop`).
    pub fn sender(&self, lane: Lane) -> mpsc::Sender<Outbound> {
        match lane {
            Lane::Interactive => self.interactive.clone(),
            Lane::Bulk => self.bulk.clone(),
        }
    }
}

struct DeviceEntry {
    connection_id: u64,
    interactive: mpsc::Sender<Outbound>,
    bulk: mpsc::Sender<Outbound>,
    kick: watch::Sender<Option<String>>,
    /// Set by [`Router::kick_device`]: the device is sent away, not just disconnected.
    kicked: bool,
    sessions: HashSet<String>,
}

struct SessionEntry {
    link_id: u64,
    device_id: String,
    events: mpsc::Sender<SessionEvent>,
}

#[derive(Default)]
struct Tables {
    devices: HashMap<String, DeviceEntry>,
    sessions: HashMap<String, SessionEntry>,
}

impl Tables {
    /// Removes a device's sessions and tells each one why.
    fn end_sessions(&mut self, entry: &DeviceEntry, reason: &str) {
        for sid in &entry.sessions {
            if let Some(session) = self.sessions.remove(sid) {
                let event = if entry.kicked {
                    SessionEvent::DeviceKicked(reason.to_owned())
                } else {
                    SessionEvent::DeviceGone(reason.to_owned())
                };
                let _ = session.events.try_send(event);
            }
        }
    }
}

#[derive(Default)]
pub struct Router {
    tables: Mutex<Tables>,
    next_connection: AtomicU64,
    /// Set when replicas route through NATS.
    bus: OnceLock<Arc<bus::Bus>>,
}

impl Router {
    pub fn new() -> Self {
        Router::default()
    }

    /// A router for one of several replicas, routing through the NATS server at `url`.
    pub async fn with_nats(url: &str) -> anyhow::Result<Arc<Router>> {
        let router = Arc::new(Router::new());
        let bus = bus::Bus::connect(url, Arc::downgrade(&router)).await?;
        let _ = router.bus.set(bus);
        Ok(router)
    }

    pub fn bus(&self) -> Option<&Arc<bus::Bus>> {
        self.bus.get()
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Attaches a device connection, replacing (and kicking) an older one of the same device.
    pub async fn attach_device(&self, device_id: &str) -> DeviceAttachment {
        let (interactive_sender, interactive) = mpsc::channel(LANE_DEPTH);
        let (bulk_sender, bulk) = mpsc::channel(LANE_DEPTH);
        let (kick, kicked) = watch::channel(None);
        let connection_id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let entry = DeviceEntry {
            connection_id,
            interactive: interactive_sender,
            bulk: bulk_sender,
            kick,
            kicked: false,
            sessions: HashSet::new(),
        };
        {
            let mut tables = self.tables();
            if let Some(old) = tables.devices.insert(device_id.to_owned(), entry) {
                let _ = old
                    .kick
                    .send(Some("replaced by a newer connection of the same device".into()));
                tables.end_sessions(&old, "the device reconnected");
            }
        }
        if let Some(bus) = self.bus() {
            bus.device_attached(device_id, connection_id).await;
        }
        DeviceAttachment {
            connection_id,
            interactive,
            bulk,
            kicked,
        }
    }

    /// Detaches a device connection (if it is still the current one) and ends its sessions.
    pub async fn detach_device(&self, device_id: &str, connection_id: u64, reason: &str) {
        if let Some(bus) = self.bus() {
            bus.device_detached(device_id, connection_id);
        }
        let mut tables = self.tables();
        if tables
            .devices
            .get(device_id)
            .is_some_and(|e| e.connection_id == connection_id)
            && let Some(entry) = tables.devices.remove(device_id)
        {
            tables.end_sessions(&entry, reason);
        }
    }

    pub async fn is_online(&self, device_id: &str) -> bool {
        if self.tables().devices.contains_key(device_id) {
            return true;
        }
        match self.bus() {
            Some(bus) => bus.device_online(device_id).await,
            None => false,
        }
    }

    pub async fn online_devices(&self) -> HashSet<String> {
        let mut online = self.local_devices();
        if let Some(bus) = self.bus() {
            online.extend(bus.remote_devices().await);
        }
        online
    }

    /// The devices attached to this replica.
    pub fn local_devices(&self) -> HashSet<String> {
        self.tables().devices.keys().cloned().collect()
    }

    /// Asks the device's connection to close, giving `reason` to its sessions, wherever it is
    /// attached. False if it is not attached here (it may be on another replica).
    pub async fn kick_device(&self, device_id: &str, reason: &str) -> bool {
        let kicked = self.kick_local(device_id, reason);
        if let Some(bus) = self.bus() {
            bus.publish_kick(device_id, reason).await;
        }
        kicked
    }

    /// Kicks the device's connection on this replica only.
    pub fn kick_local(&self, device_id: &str, reason: &str) -> bool {
        let mut tables = self.tables();
        match tables.devices.get_mut(device_id) {
            Some(entry) => {
                entry.kicked = true;
                entry.kick.send(Some(reason.to_owned())).is_ok()
            }
            None => false,
        }
    }

    /// Kicks every device (graceful shutdown).
    /// Kicks every device (graceful shutdown), spread evenly over `spread` so that their
    /// reconnects do not all reach the other replicas at once.
    pub async fn kick_all(&self, reason: &str, spread: std::time::Duration) {
        let devices: Vec<String> = self.local_devices().into_iter().collect();
        if devices.is_empty() {
            return;
        }
        let pause = spread / devices.len() as u32;
        for device_id in devices {
            self.kick_local(&device_id, reason);
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
    }

    /// Opens session `sid` on a device, here or on another replica; None when the device is
    /// not attached anywhere.
    pub async fn open_session(&self, device_id: &str, sid: &str) -> Option<SessionLink> {
        if let Some(link) = self.open_local(device_id, sid) {
            return Some(link);
        }
        let mut link = self.bus()?.open_remote(device_id, sid).await?;
        link.link_id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        Some(link)
    }

    /// Opens session `sid` on a device attached to this replica. A link already open for `sid`
    /// (an operator re-attaching before the hub noticed the old leg was gone) is told it was
    /// superseded.
    fn open_local(&self, device_id: &str, sid: &str) -> Option<SessionLink> {
        let link_id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let mut tables = self.tables();
        let device = tables.devices.get_mut(device_id)?;
        device.sessions.insert(sid.to_owned());
        let link_interactive = device.interactive.clone();
        let link_bulk = device.bulk.clone();
        let (events_sender, events) = mpsc::channel(SESSION_DEPTH);
        let old = tables.sessions.insert(
            sid.to_owned(),
            SessionEntry {
                link_id,
                device_id: device_id.to_owned(),
                events: events_sender,
            },
        );
        if let Some(old) = old {
            let _ = old.events.try_send(SessionEvent::Superseded);
        }
        Some(SessionLink {
            link_id,
            interactive: link_interactive,
            bulk: link_bulk,
            events,
        })
    }

    pub async fn close_session(&self, sid: &str) {
        if let Some(bus) = self.bus() {
            bus.close_remote(sid);
        }
        self.close_session_local(sid);
    }

    fn close_session_local(&self, sid: &str) {
        let mut tables = self.tables();
        if let Some(session) = tables.sessions.remove(sid)
            && let Some(device) = tables.devices.get_mut(&session.device_id)
        {
            device.sessions.remove(sid);
        }
    }

    /// Closes a session if `link` is still the one receiving its messages.
    pub async fn close_link(&self, sid: &str, link: &SessionLink) {
        // Another local link for `sid` means the session was re-attached: leave it. No local
        // entry at all: the link is a bridge to another replica (or already closed).
        let superseded = self
            .tables()
            .sessions
            .get(sid)
            .is_some_and(|session| session.link_id != link.link_id);
        if !superseded {
            self.close_session(sid).await;
        }
    }

    /// The device a session attached to this replica belongs to, if it is open here.
    pub fn session_device(&self, sid: &str) -> Option<String> {
        self.tables()
            .sessions
            .get(sid)
            .map(|session| session.device_id.clone())
    }

    /// Delivers a device's message to its session, waiting if the session is slow to read
    /// (which slows the device down rather than dropping output). False for an unknown session.
    pub async fn deliver(&self, device_id: &str, envelope: Envelope) -> bool {
        let sender = {
            let tables = self.tables();
            match tables.sessions.get(&envelope.sid) {
                // A device may only reach its own sessions.
                Some(session) if session.device_id == device_id => session.events.clone(),
                _ => return false,
            }
        };
        sender.send(SessionEvent::Message(envelope)).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_flow_both_ways_and_stay_with_their_device() {
        let router = Router::new();
        let mut device = router.attach_device("d1").await;
        let _other = router.attach_device("d2").await;
        let mut link = router.open_session("d1", "s1").await.unwrap();
        assert!(
            link.send(Lane::Interactive, Envelope::new(1, "shell", "s1"))
                .await
        );
        assert_eq!(device.interactive.recv().await.unwrap().typ, "shell");
        assert!(router.deliver("d1", Envelope::new(1, "shell", "s1")).await);
        assert!(
            !router.deliver("d2", Envelope::new(1, "shell", "s1")).await,
            "another device's session"
        );
        assert!(matches!(link.events.recv().await, Some(SessionEvent::Message(_))));
    }

    #[tokio::test]
    async fn detaching_ends_sessions_with_the_reason() {
        let router = Router::new();
        let device = router.attach_device("d1").await;
        let mut link = router.open_session("d1", "s1").await.unwrap();
        assert!(router.kick_device("d1", "rejected").await);
        assert_eq!(device.kicked.borrow().as_deref(), Some("rejected"));
        router.detach_device("d1", device.connection_id, "rejected").await;
        assert!(matches!(link.events.recv().await, Some(SessionEvent::DeviceKicked(r)) if r == "rejected"));
        assert!(!router.is_online("d1").await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_graceful_shutdown_kicks_every_device_spread_over_the_window() {
        let router = Router::new();
        let devices: Vec<_> = futures_util::future::join_all((0..4).map(|n| {
            let router = &router;
            async move { router.attach_device(&format!("d{n}")).await }
        }))
        .await;
        let started = tokio::time::Instant::now();
        router
            .kick_all("shutting down", std::time::Duration::from_secs(8))
            .await;
        // Paused time: the spread is virtual, exactly the pauses between kicks.
        assert_eq!(started.elapsed(), std::time::Duration::from_secs(8));
        for device in devices {
            assert_eq!(device.kicked.borrow().as_deref(), Some("shutting down"));
        }
    }

    #[tokio::test]
    async fn a_newer_connection_replaces_the_old_one() {
        let router = Router::new();
        let old = router.attach_device("d1").await;
        let new = router.attach_device("d1").await;
        assert!(old.kicked.borrow().is_some());
        // The old handler's late detach must not remove the new attachment.
        router.detach_device("d1", old.connection_id, "gone").await;
        assert!(router.is_online("d1").await);
        router.detach_device("d1", new.connection_id, "gone").await;
        assert!(!router.is_online("d1").await);
    }
}
