//! The device leg: `GET /api/devices/v1/deviceconnect/connect`. One WebSocket per device; this
//! module authenticates it, attaches it to the router, relays messages between the device and its
//! sessions, keeps it alive, and closes it with a clear reason on bad input. Frames are msgpack,
//! or compact for the sessions that negotiated version 3 (`tether_proto::compact::Link` keeps
//! track of which).

use std::{net::SocketAddr, time::Duration};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt as _, StreamExt as _, stream::SplitSink};
use tether_proto::{
    Envelope,
    compact::Link,
    control::{Control, ErrorBody},
    protocol,
};
use tokio::time::Instant;

use crate::{
    domain::audit::Actor,
    domain::audit::NewEvent,
    domain::audit::Object,
    domain::audit::Outcome,
    domain::device::DeviceRecord,
    metrics::{Direction, metrics},
    relay::Relay,
    relay::router::DeviceAttachment,
    relay::user_leg::Offer,
    store::ResumableSession,
};

/// WebSocket close codes used when the hub ends a device connection.
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TOO_BIG: u16 = 1009;
const CLOSE_GOING_AWAY: u16 = 1001;

/// How often a connected device's `last_seen_at` is rewritten. It is written at connect and at
/// disconnect too; this refresh only bounds how stale it is when a hub dies without seeing the
/// disconnect. One write per device per interval (20,000 devices: about 70 writes a second),
/// never one per message.
const LAST_SEEN_REFRESH: Duration = Duration::from_secs(300);

/// The hub's sending end of one device connection: the WebSocket's sink and the encoding state
/// of the connection's sessions (shared with the reader, which decodes through `link` too).
struct Connection {
    sink: SplitSink<WebSocket, Message>,
    link: Link,
    /// When this connection's last inventory was stored.
    inventory_at: Option<Instant>,
}

impl Connection {
    async fn send(&mut self, envelope: &Envelope) -> bool {
        let frame = self.link.encode(envelope);
        metrics().relayed(Direction::ToDevice, envelope.proto, frame.len());
        self.sink.send(Message::Binary(frame.into())).await.is_ok()
    }

    /// Tells the device what was wrong, then closes its connection.
    async fn refuse(&mut self, code: u16, why: &str) {
        let error = Control::Error(ErrorBody {
            err: why.to_owned(),
            close: true,
            ..Default::default()
        });
        let _ = self.send(&error.to_envelope("")).await;
        let frame = CloseFrame {
            code,
            reason: why.chars().take(120).collect::<String>().into(),
        };
        let _ = self.sink.send(Message::Close(Some(frame))).await;
    }
}

pub async fn serve(state: Relay, device: DeviceRecord, socket: WebSocket, client: SocketAddr) {
    let mut attachment = state.router.attach_device(&device.id).await;
    let _connected = metrics().device_connected();
    tracing::info!("device {} ({}) connected from {client}", device.name, device.id);
    if let Err(error) = state.store.touch_device(&device.id).await {
        tracing::warn!("recording last-seen time of {}: {error:#}", device.id);
    }
    let reason = relay(&state, &device, socket, &mut attachment).await;
    // Written before the device is listed offline, so that whoever sees it offline reads the
    // time it left, not the last refresh.
    if let Err(error) = state.store.touch_device(&device.id).await {
        tracing::warn!("recording last-seen time of {}: {error:#}", device.id);
    }
    state
        .router
        .detach_device(&device.id, attachment.connection_id, &reason)
        .await;
    tracing::info!("device {} ({}) disconnected: {reason}", device.name, device.id);
}

/// Rewrites a connected device's `last_seen_at` in the background: a slow database must not
/// hold up the device's relay loop.
fn refresh_last_seen(state: &Relay, device_id: &str) {
    let (store, device_id) = (state.store.clone(), device_id.to_owned());
    tokio::spawn(async move {
        if let Err(error) = store.touch_device(&device_id).await {
            tracing::warn!("refreshing last-seen time of {device_id}: {error:#}");
        }
    });
}

/// Runs the connection until it ends; returns why it ended (told to the device's sessions).
async fn relay(
    state: &Relay,
    device: &DeviceRecord,
    socket: WebSocket,
    attachment: &mut DeviceAttachment,
) -> String {
    let (sink, mut stream) = socket.split();
    let mut connection = Connection {
        sink,
        link: Link::new(),
        inventory_at: None,
    };
    if Offer::from_config(&state.config).compression {
        // The handshakes offer compression: a payload inflates to at most a frame's limit.
        connection
            .link
            .accept_compressed(state.config.max_device_frame_bytes);
    }
    let keepalive = Duration::from_secs(state.config.keepalive_interval_secs.max(1));
    let mut ticker = tokio::time::interval(keepalive / 4);
    let mut last_heard = Instant::now();
    // The first refresh falls at a random point of the interval, so that devices that all
    // reconnected at once (a hub restart) do not all write at the same moment ever after.
    let mut next_refresh = Instant::now() + LAST_SEEN_REFRESH.mul_f64(rand::random_range(0.05..1.0));
    loop {
        tokio::select! {
            biased;
            _ = attachment.kicked.changed() => {
                let reason = attachment.kicked.borrow().clone().unwrap_or_else(|| "closed by the hub".into());
                connection.refuse(CLOSE_POLICY, &reason).await;
                return reason;
            }
            inbound = stream.next() => {
                last_heard = Instant::now();
                match inbound {
                    None => return "the device disconnected".into(),
                    Some(Err(error)) => {
                        let too_big = std::error::Error::source(&error)
                            .and_then(|e| e.downcast_ref::<tokio_tungstenite::tungstenite::Error>())
                            .is_some_and(|e| matches!(e, tokio_tungstenite::tungstenite::Error::Capacity(_)));
                        if too_big {
                            let why = format!("frame too large (limit {} bytes)", state.config.max_device_frame_bytes);
                            tracing::warn!("device {} sent a {why}", device.id);
                            connection.refuse(CLOSE_TOO_BIG, &why).await;
                            return format!("the device sent a {why}");
                        }
                        // A reset or a close without TLS close_notify is how a killed or
                        // powered-off device looks: report it plainly, details in the log.
                        tracing::debug!("device {} connection error: {error}", device.id);
                        return "the device disconnected".into();
                    }
                    Some(Ok(Message::Binary(bytes))) => match connection.link.decode(&bytes) {
                        Ok(envelope) => {
                            metrics().relayed(Direction::FromDevice, envelope.proto, bytes.len());
                            if !handle(state, device, envelope, &mut connection).await {
                                return "the device connection failed".into();
                            }
                        }
                        Err(error) => {
                            let why = format!("malformed message: {error}");
                            tracing::warn!("device {} sent a {why}", device.id);
                            connection.refuse(CLOSE_POLICY, &why).await;
                            return format!("the device sent a {why}");
                        }
                    },
                    Some(Ok(Message::Text(_))) => {
                        let why = "text frames are not part of the protocol (binary msgpack only)";
                        tracing::warn!("device {} sent a text frame", device.id);
                        connection.refuse(CLOSE_POLICY, why).await;
                        return format!("the device sent {why}");
                    }
                    Some(Ok(Message::Close(_))) => return "the device closed its connection".into(),
                    // Pings are answered by the WebSocket layer; any frame counts as a sign of life.
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                }
            }
            Some(envelope) = attachment.interactive.recv() => {
                if !connection.send(&envelope).await {
                    return "the device connection failed".into();
                }
            }
            Some(envelope) = attachment.bulk.recv() => {
                if !connection.send(&envelope).await {
                    return "the device connection failed".into();
                }
            }
            _ = ticker.tick() => {
                if Instant::now() >= next_refresh {
                    next_refresh += LAST_SEEN_REFRESH;
                    refresh_last_seen(state, &device.id);
                }
                let silent = last_heard.elapsed();
                if silent >= keepalive * 2 {
                    let why = format!("the device was silent for {} s", silent.as_secs());
                    let _ = connection.sink.send(Message::Close(Some(CloseFrame { code: CLOSE_GOING_AWAY, reason: "keep-alive timeout".into() }))).await;
                    return why;
                }
                // Only ping a device we have not heard from: agents that ping us cost no extra bytes.
                if silent >= keepalive && connection.sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return "the device connection failed".into();
                }
            }
        }
    }
}

/// Handles one message from the device. Returns false when the connection failed.
async fn handle(
    state: &Relay,
    device: &DeviceRecord,
    envelope: Envelope,
    connection: &mut Connection,
) -> bool {
    // Keep-alives are answered here, whatever the session: a stock agent kills a shell whose
    // `ping` goes unanswered.
    match (envelope.proto, envelope.typ.as_str()) {
        (protocol::CONTROL, "ping") => {
            return connection.send(&Control::Pong.to_envelope(&envelope.sid)).await;
        }
        (protocol::SHELL, "ping") => {
            let pong = tether_proto::shell::Shell::Pong.to_envelope(&envelope.sid);
            return connection.send(&pong).await;
        }
        (protocol::CONTROL, "sessions") => {
            match Control::from_envelope(&envelope) {
                Ok(Control::Sessions { sids }) => forget_lost_sessions(state, device, &sids).await,
                _ => tracing::warn!("device {} sent a malformed session list", device.id),
            }
            return true;
        }
        (protocol::CONTROL, "inventory") => {
            crate::relay::inventory::record(state, device, &envelope, &mut connection.inventory_at).await;
            return true;
        }
        _ => {}
    }
    if envelope.sid.is_empty() {
        tracing::debug!(
            "device {} sent {}/{} without a session",
            device.id,
            envelope.proto,
            envelope.typ
        );
        return true;
    }
    let ends_session = matches!(envelope.typ.as_str(), "stop" | "close" | "error");
    let shell_stop = envelope.proto == protocol::SHELL && envelope.typ == "stop";
    let (proto, typ, sid) = (envelope.proto, envelope.typ.clone(), envelope.sid.clone());
    // The router delivers only to sessions of this device; whatever it does not deliver is
    // checked here before it may touch anything.
    if state.router.deliver(&device.id, envelope).await {
        return true;
    }
    let resumable = match holder(state, device, &sid).await {
        Holder::Other => return refuse_foreign(state, device, connection, &sid, proto, &typ).await,
        Holder::Mine(resumable) => resumable,
        Holder::Nobody => None,
    };
    if shell_stop && resumable.is_some() {
        // A detached shell ended on the device (its grace period ran out, or it exited).
        if let Err(error) = state
            .store
            .end_resumable_session(&sid, tether_proto::clock::unix_millis())
            .await
        {
            tracing::warn!("session {sid}: {error:#}");
        }
    }
    if ends_session {
        return true;
    }
    // Output in flight when its operator detached: the device keeps the shell for a re-attach.
    if resumable.is_some_and(|session| session.ended_at.is_none()) {
        return true;
    }
    // The device talks in a session the hub no longer has (the user left, the hub restarted):
    // tell it to end that session rather than leave a shell running nobody sees.
    tracing::debug!(
        "device {} sent a message for unknown session {sid}; closing it",
        device.id
    );
    connection.send(&Control::Close.to_envelope(&sid)).await
}

/// Who holds a session a device's message names.
enum Holder {
    /// This device (with its resumable record, if the session is a terminal that survives).
    Mine(Option<ResumableSession>),
    /// Another device: the message must not touch it.
    Other,
    /// No device: the session is gone or never existed.
    Nobody,
}

async fn holder(state: &Relay, device: &DeviceRecord, sid: &str) -> Holder {
    if state
        .router
        .session_device(sid)
        .is_some_and(|holder| holder != device.id)
    {
        return Holder::Other;
    }
    match state.store.resumable_session(sid).await {
        Ok(Some(session)) if session.device_id != device.id => Holder::Other,
        Ok(Some(session)) => Holder::Mine(Some(session)),
        Ok(None) => Holder::Nobody,
        Err(error) => {
            // Unknown is not permission: without the record, the message touches nothing.
            tracing::warn!("session {sid} of device {}: {error:#}", device.id);
            Holder::Other
        }
    }
}

/// A device named a session of another device: nothing is done with the message, the device is
/// told (its connection stays up: its own sessions are not at fault) and the refusal is audited.
async fn refuse_foreign(
    state: &Relay,
    device: &DeviceRecord,
    connection: &mut Connection,
    sid: &str,
    proto: u16,
    typ: &str,
) -> bool {
    let why = format!("session {sid} is not a session of this device");
    tracing::warn!(
        "device {} ({}) sent {proto}/{typ} for a session it does not hold: {sid}",
        device.name,
        device.id
    );
    let actor = Actor {
        kind: "device",
        id: Some(device.id.clone()),
        name: Some(device.name.clone()),
        ..Default::default()
    };
    let event = NewEvent::new(
        actor,
        "authorization",
        Object::device(&device.id, &device.name),
        Outcome::Refused,
    )
    .details(serde_json::json!({ "sid": sid, "message": format!("{proto}/{typ}"), "reason": why }));
    if let Err(error) = state.store.record_audit(event).await {
        tracing::warn!("auditing a refused device message: {}", error.message);
    }
    let error = Control::Error(ErrorBody {
        err: why,
        close: false,
        msgproto: Some(proto),
        msgtype: Some(typ.to_owned()),
        code: Some(403),
        ..Default::default()
    });
    connection.send(&error.to_envelope(sid)).await
}

/// The device announced the shells it still keeps: the others it had are gone (it restarted, or
/// their grace period ran out while it was away), so they are no longer offered for re-attaching.
async fn forget_lost_sessions(state: &Relay, device: &DeviceRecord, kept: &[String]) {
    let open = match state.store.open_resumable_sessions(&device.id).await {
        Ok(open) => open,
        Err(error) => {
            tracing::warn!("device {}: {error:#}", device.id);
            return;
        }
    };
    for session in open.iter().filter(|session| !kept.contains(&session.sid)) {
        tracing::info!(
            "session {}: device {} no longer has its shell",
            session.sid,
            device.name
        );
        if let Err(error) = state
            .store
            .end_resumable_session(&session.sid, tether_proto::clock::unix_millis())
            .await
        {
            tracing::warn!("session {}: {error:#}", session.sid);
        }
    }
}
