//! A session between a user on one replica and a device held by another, bridged over NATS.
//!
//! Each direction has its own subject and a credit window: the sender may have
//! [`WINDOW`] frames unacknowledged, and the receiver returns credit in batches of
//! [`CREDIT_BATCH`] once it has handed frames on locally. So a transfer streams (no wait per
//! message) while a slow reader still slows the writer down instead of overflowing NATS's
//! per-subscription buffer. The device protocol's own windows (file transfer, port forwarding)
//! work end to end on top of this.
//!
//! Messages of one direction come from one NATS connection on one subject, so they keep their
//! order (a forward's `stop` still arrives after its data).

use std::sync::Arc;

use futures_util::StreamExt as _;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{
    Lane, Router, SESSION_DEPTH, SessionEvent, SessionLink,
    bus::{Bus, HEARTBEAT, LIVENESS, OpenReply, OpenRequest, no_responders, token},
    wire::Wire,
};

/// Frames in flight per direction of one bridged session.
const WINDOW: u32 = 256;
/// Credit is returned after this many frames were handed on.
const CREDIT_BATCH: u32 = 64;

fn subject(sid: &str, direction: &str) -> String {
    format!("tether.session.{}.{direction}", token(sid))
}

async fn publish(client: &async_nats::Client, subject: &str, message: Wire) -> bool {
    client
        .publish(subject.to_owned(), message.encode().into())
        .await
        .is_ok()
}

/// The user's side: asks the holding replica to open `sid` on the device, then bridges.
pub(super) async fn open_remote(bus: &Bus, device_id: &str, sid: &str) -> Option<SessionLink> {
    // Subscribe before asking, so that nothing the device sends is missed.
    let inbound = bus.client.subscribe(subject(sid, "to_user")).await.ok()?;
    let request = OpenRequest {
        sid: sid.to_owned(),
        replica: bus.replica.clone(),
    };
    let payload = serde_json::to_vec(&request).ok()?;
    let reply = match bus
        .client
        .request(format!("tether.device.{}.open", token(device_id)), payload.into())
        .await
    {
        Ok(reply) => reply,
        Err(error) if no_responders(&error) => return None,
        Err(error) => {
            tracing::warn!("NATS: opening a session on device {device_id}: {error}");
            return None;
        }
    };
    let answer: OpenReply = serde_json::from_slice(&reply.payload).ok()?;
    let Some(holder) = answer.replica else {
        tracing::debug!("device {device_id} refused a bridged session: {:?}", answer.error);
        return None;
    };
    let (interactive_sender, interactive) = mpsc::channel(super::LANE_DEPTH);
    let (bulk_sender, bulk) = mpsc::channel(super::LANE_DEPTH);
    let (events_sender, events) = mpsc::channel(SESSION_DEPTH);
    let (close, closed) = oneshot::channel();
    bus.outgoing
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(sid.to_owned(), close);
    let client = bus.client.clone();
    let router = bus_router(bus);
    let sid = sid.to_owned();
    tokio::spawn(async move {
        let credit = Arc::new(Semaphore::new(WINDOW as usize));
        let to_device = subject(&sid, "to_device");
        let outgoing = user_outgoing(&client, &to_device, interactive, bulk, closed, credit.clone());
        let incoming = incoming(&client, &to_device, inbound, credit, |message| {
            let events = events_sender.clone();
            async move {
                match message {
                    Incoming::Frame(_, envelope) => {
                        events.send(SessionEvent::Message(envelope)).await.is_ok()
                    }
                    Incoming::Close(reason) => {
                        let _ = events.send(SessionEvent::DeviceGone(reason)).await;
                        false
                    }
                    Incoming::Kicked(reason) => {
                        let _ = events.send(SessionEvent::DeviceKicked(reason)).await;
                        false
                    }
                }
            }
        });
        let watch = watch_peer(router.clone(), holder);
        tokio::select! {
            _ = outgoing => {}
            _ = incoming => {}
            reason = watch => {
                let _ = events_sender.send(SessionEvent::DeviceGone(reason)).await;
            }
        }
        if let Some(bus) = router.upgrade().and_then(|r| r.bus().cloned()) {
            bus.outgoing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&sid);
        }
    });
    Some(SessionLink {
        // The router numbers the link (see `Router::open_session`).
        link_id: 0,
        interactive: interactive_sender,
        bulk: bulk_sender,
        events,
    })
}

fn bus_router(bus: &Bus) -> std::sync::Weak<Router> {
    bus.router_weak()
}

/// The device's side: opens `sid` on the local device and bridges it to the user's replica.
pub(super) async fn accept_remote(
    router: &Arc<Router>,
    bus: &Bus,
    device_id: &str,
    request: OpenRequest,
) -> OpenReply {
    let Some(mut link) = router.open_local(device_id, &request.sid) else {
        return OpenReply {
            replica: None,
            error: Some("the device is not attached here".into()),
        };
    };
    let inbound = match bus.client.subscribe(subject(&request.sid, "to_device")).await {
        Ok(inbound) => inbound,
        Err(error) => {
            router.close_session_local(&request.sid);
            return OpenReply {
                replica: None,
                error: Some(format!("subscribing: {error}")),
            };
        }
    };
    let client = bus.client.clone();
    let weak = Arc::downgrade(router);
    let sid = request.sid.clone();
    let peer = request.replica;
    tokio::spawn(async move {
        let credit = Arc::new(Semaphore::new(WINDOW as usize));
        let to_user = subject(&sid, "to_user");
        let interactive = link.sender(Lane::Interactive);
        let bulk = link.sender(Lane::Bulk);
        let outgoing = async {
            while let Some(event) = link.events.recv().await {
                match event {
                    SessionEvent::Message(envelope) => {
                        let Ok(permit) = credit.acquire().await else {
                            return;
                        };
                        permit.forget();
                        if !publish(&client, &to_user, Wire::Frame(Lane::Interactive, envelope)).await {
                            return;
                        }
                    }
                    SessionEvent::DeviceGone(reason) => {
                        publish(&client, &to_user, Wire::Close(reason)).await;
                        return;
                    }
                    SessionEvent::DeviceKicked(reason) => {
                        publish(&client, &to_user, Wire::Kicked(reason)).await;
                        return;
                    }
                    SessionEvent::Superseded => return,
                }
            }
        };
        let incoming = incoming(&client, &to_user, inbound, credit.clone(), |message| {
            let (interactive, bulk) = (interactive.clone(), bulk.clone());
            async move {
                match message {
                    Incoming::Frame(Lane::Interactive, envelope) => {
                        interactive.send(Box::new(envelope)).await.is_ok()
                    }
                    Incoming::Frame(Lane::Bulk, envelope) => bulk.send(Box::new(envelope)).await.is_ok(),
                    Incoming::Close(_) | Incoming::Kicked(_) => false,
                }
            }
        });
        let watch = watch_peer(weak.clone(), peer);
        tokio::select! {
            _ = outgoing => {}
            _ = incoming => {}
            _ = watch => {}
        }
        if let Some(router) = weak.upgrade() {
            router.close_session_local(&sid);
        }
    });
    OpenReply {
        replica: Some(bus.replica.clone()),
        error: None,
    }
}

/// What the receiving half hands on locally.
enum Incoming {
    Frame(Lane, tether_proto::Envelope),
    Close(String),
    Kicked(String),
}

/// The user's outgoing half: interactive before bulk, within the credit window; when the user
/// leaves, what is queued still goes out, then `Close`.
async fn user_outgoing(
    client: &async_nats::Client,
    to_device: &str,
    mut interactive: mpsc::Receiver<super::Outbound>,
    mut bulk: mpsc::Receiver<super::Outbound>,
    mut closed: oneshot::Receiver<()>,
    credit: Arc<Semaphore>,
) {
    loop {
        let next = tokio::select! {
            biased;
            Some(envelope) = interactive.recv() => (Lane::Interactive, envelope),
            Some(envelope) = bulk.recv() => (Lane::Bulk, envelope),
            _ = &mut closed => break,
        };
        let Ok(permit) = credit.acquire().await else {
            return;
        };
        permit.forget();
        if !publish(client, to_device, Wire::Frame(next.0, *next.1)).await {
            return;
        }
    }
    // The user left: flush what was queued (the final `close` among it) without waiting for
    // credit, then end the bridge.
    while let Ok(envelope) = interactive.try_recv() {
        publish(client, to_device, Wire::Frame(Lane::Interactive, *envelope)).await;
    }
    while let Ok(envelope) = bulk.try_recv() {
        publish(client, to_device, Wire::Frame(Lane::Bulk, *envelope)).await;
    }
    publish(client, to_device, Wire::Close(String::new())).await;
    let _ = client.flush().await;
}

/// The receiving half: hands frames on (waiting when the local reader is slow), returns credit
/// in batches on `credit_subject`, and adds credit the other side returns. Ends on `Close`, on
/// a failed hand-on, or when the subscription ends.
///
/// Credit is applied as soon as it arrives, never behind a frame waiting for a slow reader: the
/// subscription is read by its own loop, and frames queue in a channel of one window (the peer
/// never has more in flight, plus what a leaving user flushes without credit), so that loop
/// never waits.
async fn incoming<F, Fut>(
    client: &async_nats::Client,
    credit_subject: &str,
    mut inbound: async_nats::Subscriber,
    credit: Arc<Semaphore>,
    hand_on: F,
) where
    F: Fn(Incoming) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let (queue, mut queued) = mpsc::channel::<Incoming>(WINDOW as usize + 2 * super::LANE_DEPTH + 1);
    let read = async move {
        while let Some(message) = inbound.next().await {
            let next = match Wire::decode(&message.payload) {
                Ok(Wire::Credit(count)) => {
                    credit.add_permits(count.min(WINDOW) as usize);
                    continue;
                }
                Ok(Wire::Frame(lane, envelope)) => Incoming::Frame(lane, envelope),
                Ok(Wire::Close(reason)) => Incoming::Close(reason),
                Ok(Wire::Kicked(reason)) => Incoming::Kicked(reason),
                Err(error) => {
                    tracing::warn!("NATS: bad bridge message ignored: {error}");
                    continue;
                }
            };
            let close = matches!(next, Incoming::Close(_) | Incoming::Kicked(_));
            if queue.try_send(next).is_err() {
                tracing::warn!("NATS: a bridge peer exceeded its window; ending the session");
                return;
            }
            crate::metrics::metrics().nats_bridge_queue.inc();
            if close {
                // Keep the queue open until the hand-on loop has seen the close.
                std::future::pending::<()>().await;
            }
        }
    };
    let hand = async {
        let mut consumed = 0;
        while let Some(next) = queued.recv().await {
            crate::metrics::metrics().nats_bridge_queue.dec();
            match next {
                Incoming::Frame(lane, envelope) => {
                    if !hand_on(Incoming::Frame(lane, envelope)).await {
                        return;
                    }
                    consumed += 1;
                    if consumed >= CREDIT_BATCH {
                        publish(client, credit_subject, Wire::Credit(consumed)).await;
                        consumed = 0;
                    }
                }
                ending @ (Incoming::Close(_) | Incoming::Kicked(_)) => {
                    hand_on(ending).await;
                    return;
                }
            }
        }
    };
    tokio::select! {
        _ = read => {}
        _ = hand => {}
    }
    // What was still queued is dropped with the session.
    crate::metrics::metrics()
        .nats_bridge_queue
        .dec_by(queued.len() as i64);
}

/// Resolves (with a reason) once the replica at the other end stops sending heartbeats.
async fn watch_peer(router: std::sync::Weak<Router>, peer: String) -> String {
    // A replica that started a moment ago may not have been heard yet: give it one window.
    let since = std::time::Instant::now();
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        let Some(bus) = router.upgrade().and_then(|r| r.bus().cloned()) else {
            return "the hub is shutting down".into();
        };
        if !bus.peer_alive(&peer) && since.elapsed() > LIVENESS {
            return "the hub replica at the other end of the session went away".into();
        }
    }
}
