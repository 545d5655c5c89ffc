//! The NATS side of routing when several hub replicas run: which replica holds which device,
//! how a replica reaches a device another one holds, and the events every replica must apply.
//!
//! Subjects (`tether.` prefix):
//! - `device.<id>.open|ping|kick`: the replica holding device `<id>` subscribes while it is
//!   attached. A request nobody subscribes to gets NATS's "no responders" at once, so asking
//!   for an unreachable device answers "offline" without waiting.
//! - `session.<sid>.to_device|to_user`: the two halves of a session bridged between replicas
//!   (see `bridge.rs`).
//! - `heartbeat`: every replica, every [`HEARTBEAT`]; a replica not heard for [`LIVENESS`] is
//!   gone, and so are its devices and bridged sessions.
//! - `presence.list`: scatter-gather of the devices each replica holds (device listings).
//! - `revocation`: withdrawn credentials, applied by every replica.
//!
//! Core NATS only (no JetStream): presence is the live subscriptions themselves plus
//! heartbeats, so nothing is stored that could go stale.

use std::{
    collections::{HashMap, HashSet},
    sync::{Mutex, Weak},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use async_nats::{Client, RequestErrorKind};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::task::AbortHandle;

use super::{Router, SessionLink, bridge};
use crate::domain::principal::Revocation;

/// How often a replica announces that it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A replica silent for this long is considered gone (three missed heartbeats).
pub const LIVENESS: Duration = Duration::from_secs(3);
/// How long a request to another replica may take before the device counts as unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a replica holding a device may take to answer "is it here?".
const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// Devices per `presence.list` reply (keeps replies under NATS's default 1 MiB payload).
const LIST_CHUNK: usize = 5_000;

pub struct Bus {
    pub(super) client: Client,
    /// This replica's id, unique per process start.
    pub(super) replica: String,
    router: Weak<Router>,
    /// Replicas heard from, and when.
    peers: Mutex<HashMap<String, Instant>>,
    /// The subscription task of each attached device, with its connection id.
    devices: Mutex<HashMap<String, (u64, AbortHandle)>>,
    /// Remote sessions opened from here: their bridge's close signal.
    pub(super) outgoing: Mutex<HashMap<String, tokio::sync::oneshot::Sender<()>>>,
    /// Revocations received from other replicas and re-broadcast here, so the outbound relay
    /// does not send them back.
    echoes: Mutex<Vec<Revocation>>,
    started: Instant,
}

#[derive(Serialize, Deserialize)]
pub(super) struct OpenRequest {
    pub sid: String,
    pub replica: String,
}

#[derive(Serialize, Deserialize)]
pub(super) struct OpenReply {
    /// The holding replica, or None with `error` when the device is no longer here.
    pub replica: Option<String>,
    pub error: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Kick {
    origin: String,
    reason: String,
}

#[derive(Serialize, Deserialize)]
struct Heartbeat {
    replica: String,
}

#[derive(Serialize, Deserialize)]
struct DeviceList {
    replica: String,
    devices: Vec<String>,
    last: bool,
}

#[derive(Serialize, Deserialize)]
struct RevocationMessage {
    origin: String,
    revocation: Revocation,
}

/// A subject token for an id: ids are UUIDs, but anything else is hex-encoded so that it can
/// never contain `.`, `*` or `>`.
pub(super) fn token(id: &str) -> String {
    if !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        id.to_owned()
    } else {
        format!("x{}", hex::encode(id))
    }
}

fn device_subject(device_id: &str, operation: &str) -> String {
    format!("tether.device.{}.{operation}", token(device_id))
}

impl Bus {
    /// Connects to NATS and starts the heartbeat and listing tasks for `router`.
    pub async fn connect(url: &str, router: Weak<Router>) -> anyhow::Result<std::sync::Arc<Bus>> {
        let replica = uuid::Uuid::now_v7().to_string();
        let client = async_nats::ConnectOptions::new()
            .name(format!("tether-hub {replica}"))
            .request_timeout(Some(REQUEST_TIMEOUT))
            .retry_on_initial_connect()
            .connect(url)
            .await
            .context("connecting to NATS")?;
        let bus = std::sync::Arc::new(Bus {
            client,
            replica,
            router,
            peers: Mutex::new(HashMap::new()),
            devices: Mutex::new(HashMap::new()),
            outgoing: Mutex::new(HashMap::new()),
            echoes: Mutex::new(Vec::new()),
            started: Instant::now(),
        });
        let heartbeats = bus.client.subscribe("tether.heartbeat").await?;
        tokio::spawn(listen_heartbeats(std::sync::Arc::downgrade(&bus), heartbeats));
        let lists = bus.client.subscribe("tether.presence.list").await?;
        tokio::spawn(answer_lists(std::sync::Arc::downgrade(&bus), lists));
        tokio::spawn(send_heartbeats(std::sync::Arc::downgrade(&bus)));
        tracing::info!("routing through NATS as replica {}", bus.replica);
        Ok(bus)
    }

    pub(super) fn router_weak(&self) -> Weak<Router> {
        self.router.clone()
    }

    /// True while `replica` has been heard from within the liveness window.
    /// Whether the NATS connection is up now.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    pub fn peer_alive(&self, replica: &str) -> bool {
        replica == self.replica
            || self
                .peers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(replica)
                .is_some_and(|heard| heard.elapsed() < LIVENESS)
    }

    /// True until this replica has listened for one liveness window: before that, the set of
    /// live peers may be incomplete, so scatter-gather waits for its deadline.
    pub(super) fn peers_uncertain(&self) -> bool {
        self.started.elapsed() < LIVENESS
    }

    pub(super) fn live_peers(&self) -> HashSet<String> {
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers
            .iter()
            .filter(|(_, heard)| heard.elapsed() < LIVENESS)
            .map(|(replica, _)| replica.clone())
            .collect()
    }

    /// Starts answering for an attached device, and kicks any older attachment of it on
    /// another replica (the device reconnected here).
    pub async fn device_attached(&self, device_id: &str, connection_id: u64) {
        let subscriber = match self.client.subscribe(device_subject(device_id, "*")).await {
            Ok(subscriber) => subscriber,
            Err(error) => {
                tracing::error!("NATS: cannot subscribe for device {device_id}: {error}");
                return;
            }
        };
        let task = tokio::spawn(serve_device(
            self.router.clone(),
            device_id.to_owned(),
            subscriber,
        ));
        let old = self
            .devices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(device_id.to_owned(), (connection_id, task.abort_handle()));
        if let Some((_, old)) = old {
            old.abort();
        }
        self.publish_kick(device_id, "replaced by a newer connection of the same device")
            .await;
    }

    /// Stops answering for a device whose connection `connection_id` ended.
    pub fn device_detached(&self, device_id: &str, connection_id: u64) {
        let mut devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        if devices.get(device_id).is_some_and(|(id, _)| *id == connection_id)
            && let Some((_, task)) = devices.remove(device_id)
        {
            task.abort();
        }
    }

    /// Asks whichever replica holds the device to close its connection.
    pub async fn publish_kick(&self, device_id: &str, reason: &str) {
        let kick = Kick {
            origin: self.replica.clone(),
            reason: reason.to_owned(),
        };
        let payload = serde_json::to_vec(&kick).unwrap_or_default();
        if let Err(error) = self
            .client
            .publish(device_subject(device_id, "kick"), payload.into())
            .await
        {
            tracing::error!("NATS: cannot publish a kick for device {device_id}: {error}");
        }
    }

    /// Whether another replica holds the device (false at once when none does; false after
    /// [`PING_TIMEOUT`] when the holder hangs without having dropped its NATS connection).
    pub async fn device_online(&self, device_id: &str) -> bool {
        let ping = self
            .client
            .request(device_subject(device_id, "ping"), Vec::new().into());
        matches!(tokio::time::timeout(PING_TIMEOUT, ping).await, Ok(Ok(_)))
    }

    /// The devices every other live replica holds (asks them; waits at most a second).
    pub async fn remote_devices(&self) -> HashSet<String> {
        let mut found = HashSet::new();
        let inbox = self.client.new_inbox();
        let Ok(mut replies) = self.client.subscribe(inbox.clone()).await else {
            return found;
        };
        let mut waiting = self.live_peers();
        let uncertain = self.peers_uncertain();
        if waiting.is_empty() && !uncertain {
            return found;
        }
        if self
            .client
            .publish_with_reply("tether.presence.list", inbox, Vec::new().into())
            .await
            .is_err()
        {
            return found;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while uncertain || !waiting.is_empty() {
            let Ok(Some(message)) = tokio::time::timeout_at(deadline, replies.next()).await else {
                break;
            };
            let Ok(list) = serde_json::from_slice::<DeviceList>(&message.payload) else {
                continue;
            };
            found.extend(list.devices);
            if list.last {
                waiting.remove(&list.replica);
            }
        }
        found
    }

    /// Opens session `sid` on a device held by another replica; None when none holds it.
    pub async fn open_remote(&self, device_id: &str, sid: &str) -> Option<SessionLink> {
        bridge::open_remote(self, device_id, sid).await
    }

    /// Ends the bridge of a remote session opened from here (the user left).
    pub fn close_remote(&self, sid: &str) {
        let signal = self
            .outgoing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(sid);
        if let Some(signal) = signal {
            let _ = signal.send(());
        }
    }

    /// Relays revocations both ways between this replica's broadcast channel and NATS.
    pub async fn relay_revocations(
        self: &std::sync::Arc<Bus>,
        local: tokio::sync::broadcast::Sender<Revocation>,
    ) -> anyhow::Result<()> {
        let mut inbound = self.client.subscribe("tether.revocation").await?;
        let bus = self.clone();
        let sender = local.clone();
        tokio::spawn(async move {
            while let Some(message) = inbound.next().await {
                let Ok(received) = serde_json::from_slice::<RevocationMessage>(&message.payload) else {
                    tracing::warn!("NATS: malformed revocation ignored");
                    continue;
                };
                if received.origin == bus.replica {
                    continue;
                }
                bus.echoes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(received.revocation.clone());
                let _ = sender.send(received.revocation);
            }
        });
        let bus = self.clone();
        let mut outbound = local.subscribe();
        tokio::spawn(async move {
            loop {
                let revocation = match outbound.recv().await {
                    Ok(revocation) => revocation,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                {
                    let mut echoes = bus.echoes.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(index) = echoes.iter().position(|echo| *echo == revocation) {
                        echoes.remove(index);
                        continue;
                    }
                }
                let message = RevocationMessage {
                    origin: bus.replica.clone(),
                    revocation,
                };
                let payload = serde_json::to_vec(&message).unwrap_or_default();
                if let Err(error) = bus.client.publish("tether.revocation", payload.into()).await {
                    tracing::error!("NATS: cannot publish a revocation: {error}");
                }
            }
        });
        Ok(())
    }
}

/// Answers requests for one attached device: open a session, ping, kick.
async fn serve_device(router: Weak<Router>, device_id: String, mut subscriber: async_nats::Subscriber) {
    while let Some(message) = subscriber.next().await {
        let Some(router) = router.upgrade() else { return };
        let Some(bus) = router.bus() else { return };
        let operation = message.subject.rsplit('.').next().unwrap_or_default();
        match operation {
            "ping" => {
                if let Some(reply) = message.reply {
                    let _ = bus.client.publish(reply, Vec::new().into()).await;
                }
            }
            "kick" => match serde_json::from_slice::<Kick>(&message.payload) {
                Ok(kick) if kick.origin != bus.replica => {
                    router.kick_local(&device_id, &kick.reason);
                }
                Ok(_) => {}
                Err(error) => tracing::warn!("NATS: malformed kick for {device_id}: {error}"),
            },
            "open" => {
                let Some(reply) = message.reply else { continue };
                let answer = match serde_json::from_slice::<OpenRequest>(&message.payload) {
                    Ok(request) => bridge::accept_remote(&router, bus, &device_id, request).await,
                    Err(error) => OpenReply {
                        replica: None,
                        error: Some(format!("malformed open request: {error}")),
                    },
                };
                let payload = serde_json::to_vec(&answer).unwrap_or_default();
                let _ = bus.client.publish(reply, payload.into()).await;
            }
            other => tracing::debug!("NATS: unknown device operation {other}"),
        }
    }
}

async fn send_heartbeats(bus: Weak<Bus>) {
    let mut ticker = tokio::time::interval(HEARTBEAT);
    loop {
        ticker.tick().await;
        let Some(bus) = bus.upgrade() else { return };
        let beat = Heartbeat {
            replica: bus.replica.clone(),
        };
        let payload = serde_json::to_vec(&beat).unwrap_or_default();
        if let Err(error) = bus.client.publish("tether.heartbeat", payload.into()).await {
            tracing::warn!("NATS: heartbeat not sent: {error}");
        }
    }
}

async fn listen_heartbeats(bus: Weak<Bus>, mut subscriber: async_nats::Subscriber) {
    while let Some(message) = subscriber.next().await {
        let Some(bus) = bus.upgrade() else { return };
        if let Ok(beat) = serde_json::from_slice::<Heartbeat>(&message.payload)
            && beat.replica != bus.replica
        {
            bus.peers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(beat.replica, Instant::now());
        }
    }
}

async fn answer_lists(bus: Weak<Bus>, mut subscriber: async_nats::Subscriber) {
    while let Some(message) = subscriber.next().await {
        let Some(bus) = bus.upgrade() else { return };
        let Some(reply) = message.reply else { continue };
        let Some(router) = bus.router.upgrade() else {
            return;
        };
        let devices: Vec<String> = router.local_devices().into_iter().collect();
        let chunks: Vec<&[String]> = if devices.is_empty() {
            vec![&[]]
        } else {
            devices.chunks(LIST_CHUNK).collect()
        };
        let count = chunks.len();
        for (index, chunk) in chunks.into_iter().enumerate() {
            let list = DeviceList {
                replica: bus.replica.clone(),
                devices: chunk.to_vec(),
                last: index + 1 == count,
            };
            let payload = serde_json::to_vec(&list).unwrap_or_default();
            let _ = bus.client.publish(reply.clone(), payload.into()).await;
        }
    }
}

/// Whether a request failed because nobody holds the subject (as opposed to a slow replica).
pub(super) fn no_responders(error: &async_nats::RequestError) -> bool {
    error.kind() == RequestErrorKind::NoResponders
}
