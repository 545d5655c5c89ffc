//! The user leg: `GET /api/management/v1/deviceconnect/devices/{id}/connect`. One WebSocket is
//! one session on one device: the hub assigns its `sid`, performs the version handshake with the
//! device, stamps the user on every message, relays both ways, and ends the device's side when
//! the user leaves.
//!
//! Version-2 interactive shells survive a drop of either leg (see `docs/protocol.md`, session
//! survival): when the user's leg drops the device is told to `detach` and keep the shell; the
//! user re-attaches with `?attach=SID&offset=N`. When the device's leg drops the session waits
//! for the device to come back and asks it to `resume` from the last offset relayed.

use std::time::Duration;
use tether_proto::clock::unix_millis;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt as _, StreamExt as _, stream::SplitSink};
use tether_proto::{
    Envelope,
    control::{Control, ErrorBody},
    protocol,
    shell::{self, Shell},
    version,
};
use tokio::{sync::broadcast::error::RecvError, time::Instant};

use crate::{
    domain::audit::Actor, domain::audit::Object, domain::audit::RequestContext, domain::device::DeviceRecord,
    domain::permissions::Action, domain::principal::Principal, domain::principal::Revocation, relay::Relay,
    relay::recording::RecordingHandle, relay::router::Lane, relay::router::SessionEvent,
    relay::router::SessionLink, relay::session_audit::SessionAudit,
};

mod audit;
mod audit_behind;
mod forward;
mod handshake;
mod listing;
mod resume;

use audit::record_all;
use audit_behind::AuditBehind;
use forward::{forward, recheck, record_terminal};
pub(crate) use handshake::{Accepted, Offer, handshake};
use resume::{await_device, end_resumable, observe_shell};

pub(crate) type Sink = SplitSink<WebSocket, Message>;

pub(crate) async fn send(sink: &mut Sink, envelope: &Envelope) -> bool {
    sink.send(Message::Binary(envelope.encode().into())).await.is_ok()
}

/// Tells the user what ended the session, then closes the WebSocket.
pub(crate) async fn end_with_error(sink: &mut Sink, sid: &str, why: &str) {
    let error = Control::Error(ErrorBody {
        err: why.to_owned(),
        close: true,
        ..Default::default()
    });
    let _ = send(sink, &error.to_envelope(sid)).await;
    let frame = CloseFrame {
        code: 1000,
        reason: why.chars().take(120).collect::<String>().into(),
    };
    let _ = sink.send(Message::Close(Some(frame))).await;
}

/// What the session knows about its device's side.
#[derive(Default)]
struct DeviceSide {
    version: u32,
    /// The device chose version 3 (its leg speaks compact frames): a resume after a drop needs
    /// no new handshake, the device remembers the version of a shell it kept.
    compact: bool,
    shell_running: bool,
    /// The user asked for an interactive shell (not a command).
    interactive: bool,
    /// The device runs a shell that survives drops (version 2, interactive): recorded in
    /// `resumable_sessions`.
    resumable: bool,
    /// Stream offset after the last output byte relayed to the user.
    next_offset: u64,
}

pub async fn serve(
    state: &Relay,
    device: &DeviceRecord,
    principal: &Principal,
    context: &RequestContext,
    sid: &str,
    resume: Option<u64>,
    socket: WebSocket,
) -> String {
    let user_id = match principal {
        Principal::User { user, .. } => user.id.as_str(),
        Principal::Device { .. } => return "devices do not open sessions".into(),
    };
    let (mut sink, mut stream) = socket.split();
    let Some(mut link) = state.router.open_session(&device.id, sid).await else {
        let why = format!("device {} went offline", device.name);
        end_with_error(&mut sink, sid, &why).await;
        return why;
    };
    let user_name = match principal {
        Principal::User { user, .. } => user.name.clone(),
        Principal::Device { .. } => String::new(),
    };
    let reason = match handshake(
        &mut link,
        sid,
        &user_name,
        Offer::from_config(&state.config),
        Some(&mut sink),
    )
    .await
    {
        Ok(Accepted {
            accept,
            version,
            device_version,
        }) => {
            if resume.is_some() && version != version::TETHER {
                let why = "the device no longer speaks protocol version 2: its session cannot be resumed";
                end_with_error(&mut sink, sid, why).await;
                state.router.close_link(sid, &link).await;
                return why.into();
            }
            if send(&mut sink, &accept).await {
                let mut side = DeviceSide {
                    version,
                    compact: device_version == version::COMPACT,
                    ..DeviceSide::default()
                };
                let actor = Actor::principal(principal, context);
                let audit = SessionAudit::new(actor, Object::device(&device.id, &device.name), sid);
                let mut session = Session {
                    device: device.clone(),
                    principal: principal.clone(),
                    used: Vec::new(),
                    context,
                    user_id,
                    sid,
                    audit,
                    recording: None,
                    requested_shell: None,
                    resumed: resume.is_some(),
                    counted: resume.map(|_| crate::metrics::metrics().session("terminal")),
                    listed_transfer: None,
                    listed_forward: None,
                    audit_behind: None,
                };
                if let Some(offset) = resume {
                    session.audit.resume();
                    side.shell_running = true;
                    side.interactive = true;
                    side.resumable = true;
                    side.next_offset = offset;
                    session.requested_shell = Some((80, 24, None));
                    if let Err(error) = state.store.set_session_detached(sid, None).await {
                        tracing::warn!("session {sid}: {error:#}");
                    }
                    tracing::info!("session {sid}: re-attached, resuming output from offset {offset}");
                    link.send(Lane::Interactive, Shell::Resume { offset }.to_envelope(sid))
                        .await;
                }
                let reason = relay(state, &mut session, &mut link, &mut sink, &mut stream, &mut side).await;
                let detach = reason.detachable && side.resumable && side.shell_running;
                let text = if detach {
                    format!("{} (the shell is kept for re-attaching)", reason.text)
                } else {
                    reason.text.clone()
                };
                if let Some(behind) = session.audit_behind.take() {
                    behind.finish().await;
                }
                audit::record_ending(state, sid, session.audit.session_ended(&text)).await;
                if reason.superseded {
                    // Another connection of the same user took the session over.
                } else if detach {
                    link.send(Lane::Interactive, Shell::Detach.to_envelope(sid)).await;
                    if let Err(error) = state.store.set_session_detached(sid, Some(unix_millis())).await {
                        tracing::warn!("session {sid}: {error:#}");
                    }
                } else {
                    end_resumable(state, sid, &mut side).await;
                }
                if !reason.device_gone && !reason.superseded && !detach {
                    // The user left or misbehaved: end the device's side of the session.
                    if side.shell_running {
                        let stop = Shell::Stop {
                            user_id: Some(user_id.to_owned()),
                            status: Some(shell::status::ERROR),
                            text: b"user disconnected".to_vec(),
                            exit_status: None,
                        };
                        link.send(Lane::Interactive, stop.to_envelope(sid)).await;
                    }
                    link.send(Lane::Interactive, Control::Close.to_envelope(sid))
                        .await;
                }
                text
            } else {
                "the user disconnected".into()
            }
        }
        Err(why) => {
            end_with_error(&mut sink, sid, &why).await;
            why
        }
    };
    state.router.close_link(sid, &link).await;
    reason
}

/// The WebSocket close code with which a client detaches: its interactive shell keeps running
/// on the device, to be re-attached (the web UI's Detach; `docs/protocol.md`).
pub const DETACH_CLOSE_CODE: u16 = 4001;

/// Why the relay ended, and what is left to do on the device's side.
#[derive(Default)]
pub(crate) struct Ending {
    text: String,
    device_gone: bool,
    /// The user's leg dropped (not a choice, a refusal or a revocation): a resumable shell is
    /// detached rather than ended.
    detachable: bool,
    /// A newer link of the same session took over: leave the device alone.
    superseded: bool,
}

impl Ending {
    pub(crate) fn user(text: impl Into<String>) -> Self {
        Ending {
            text: text.into(),
            ..Ending::default()
        }
    }

    fn user_lost(text: impl Into<String>) -> Self {
        Ending {
            text: text.into(),
            detachable: true,
            ..Ending::default()
        }
    }

    /// The user closed the WebSocket: with [`DETACH_CLOSE_CODE`] they leave the shell running
    /// (detached, as if the connection had dropped); with any other code they end it.
    pub(crate) fn user_closed(frame: Option<&CloseFrame>) -> Self {
        if frame.is_some_and(|frame| frame.code == DETACH_CLOSE_CODE) {
            Ending::user_lost("the user detached")
        } else {
            Ending::user("the user disconnected")
        }
    }

    fn device_gone(text: String) -> Self {
        Ending {
            text,
            device_gone: true,
            ..Ending::default()
        }
    }
}

/// Who and what a session is about.
pub(crate) struct Session<'a> {
    /// The device and the caller as last checked (re-read when access changes).
    pub(crate) device: DeviceRecord,
    pub(crate) principal: Principal,
    /// The permissions this session has used: they must hold for it to go on.
    pub(crate) used: Vec<Action>,
    pub(crate) context: &'a RequestContext,
    pub(crate) user_id: &'a str,
    pub(crate) sid: &'a str,
    pub(crate) audit: SessionAudit,
    /// The terminal being recorded, once the device confirmed it.
    pub(crate) recording: Option<RecordingHandle>,
    /// Size and command of a shell the user asked for, until the device answers.
    pub(crate) requested_shell: Option<(u16, u16, Option<String>)>,
    /// A re-attach: the shell was started (and its first part recorded) by an earlier link.
    pub(crate) resumed: bool,
    /// Counted in `tether_sessions_active` by kind, from its first message on.
    pub(crate) counted: Option<crate::metrics::Held>,
    /// The file transfer under way, listed as an active session while it runs.
    pub(crate) listed_transfer: Option<crate::relay::active_sessions::Listed>,
    /// The port forward, listed from its first connection to the end of the session.
    pub(crate) listed_forward: Option<crate::relay::active_sessions::Listed>,
    /// Its connections' audit events, written behind the relay (from the first one on).
    pub(crate) audit_behind: Option<AuditBehind>,
}

async fn relay(
    state: &Relay,
    session: &mut Session<'_>,
    link: &mut SessionLink,
    sink: &mut Sink,
    stream: &mut futures_util::stream::SplitStream<WebSocket>,
    side: &mut DeviceSide,
) -> Ending {
    let sid = session.sid;
    let device_name = session.device.name.clone();
    let keepalive = Duration::from_secs(state.config.keepalive_interval_secs.max(1));
    let mut ticker = tokio::time::interval(keepalive / 4);
    let mut last_heard = Instant::now();
    let mut revocations = state.revocations.subscribe();
    // A device event taken while gathering a batch, handled next.
    let mut deferred = None;
    let mut watch_notices = state.live.notices();
    // A re-attached terminal's user is told again who watches it.
    for user in state.live.watchers(sid) {
        let watching = Control::Watching { user, watching: true };
        if !send(sink, &watching.to_envelope(sid)).await {
            return Ending::user_lost("the user disconnected");
        }
    }
    loop {
        tokio::select! {
            biased;
            event = next_event(&mut deferred, link) => match event {
                Some(SessionEvent::Message(envelope)) => {
                    let batch = take_batch(envelope, link, &mut deferred);
                    if let Err(ending) = deliver(state, session, sink, side, batch).await {
                        return ending;
                    }
                }
                Some(SessionEvent::Superseded) => {
                    return Ending {
                        text: "re-attached from another connection".into(),
                        superseded: true,
                        ..Ending::default()
                    };
                }
                Some(SessionEvent::DeviceGone(reason)) if side.resumable && side.shell_running => {
                    if let Err(ending) = await_device(state, session, link, sink, stream, side, &reason).await {
                        return ending;
                    }
                }
                None if side.resumable && side.shell_running => {
                    if let Err(ending) = await_device(state, session, link, sink, stream, side, "went offline").await {
                        return ending;
                    }
                }
                Some(SessionEvent::DeviceGone(reason) | SessionEvent::DeviceKicked(reason)) => {
                    let why = format!("device {device_name}: {reason}");
                    end_with_error(sink, sid, &why).await;
                    return Ending::device_gone(why);
                }
                None => {
                    let why = format!("device {device_name} went offline");
                    end_with_error(sink, sid, &why).await;
                    return Ending::device_gone(why);
                }
            },
            inbound = stream.next() => {
                last_heard = Instant::now();
                match inbound {
                    None | Some(Err(_)) => return Ending::user_lost("the user disconnected"),
                    Some(Ok(Message::Close(frame))) => return Ending::user_closed(frame.as_ref()),
                    Some(Ok(Message::Binary(bytes))) => {
                        let envelope = match Envelope::decode(&bytes) {
                            Ok(envelope) => envelope,
                            Err(error) => {
                                let why = format!("malformed message: {error}");
                                end_with_error(sink, sid, &why).await;
                                return Ending::user(why);
                            }
                        };
                        if let Some(ending) = forward(state, session, envelope, link, sink, side).await {
                            return ending;
                        }
                    }
                    Some(Ok(Message::Text(_))) => {
                        let why = "text frames are not part of the protocol (binary msgpack only)";
                        end_with_error(sink, sid, why).await;
                        return Ending::user(why);
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                }
            }
            why = behind_failed(&mut session.audit_behind) => {
                end_with_error(sink, sid, &why).await;
                return Ending::user(why);
            }
            revocation = revocations.recv() => {
                // Withdrawn credentials end their live sessions at once; a missed notice
                // (lagged) is settled against the database.
                let why = match revocation {
                    Ok(revocation) if !revocation.reaches(&session.principal, &session.device.id) => None,
                    // Roles, grants or tags changed: go on only if what the session uses still holds.
                    Ok(Revocation::Access { .. }) | Err(RecvError::Lagged(_)) => recheck(state, session).await,
                    Ok(revocation) => Some(revocation.describe().to_owned()),
                    Err(RecvError::Closed) => None,
                };
                if let Some(why) = why {
                    end_with_error(sink, sid, &why).await;
                    return Ending::user(why);
                }
            }
            notice = watch_notices.recv() => {
                // Someone watches this terminal live (or stopped): its user is told. A missed
                // notice (lagged) is dropped: the next one says who watches.
                if let Ok(notice) = notice
                    && crate::relay::recording::watches(&notice.sid, sid)
                {
                    let watching = Control::Watching { user: notice.user, watching: notice.watching };
                    if !send(sink, &watching.to_envelope(sid)).await {
                        return Ending::user_lost("the user disconnected");
                    }
                }
            }
            _ = ticker.tick() => {
                let silent = last_heard.elapsed();
                if silent >= keepalive * 2 {
                    return Ending::user_lost(format!("the user was silent for {} s", silent.as_secs()));
                }
                if silent >= keepalive && sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return Ending::user_lost("the user disconnected");
                }
            }
        }
    }
}

/// At most this many device messages are delivered after one audit commit.
const MAX_DELIVERY_BATCH: usize = 32;

/// Why a write behind the relay failed, once one did.
async fn behind_failed(behind: &mut Option<AuditBehind>) -> String {
    match behind {
        Some(behind) => behind.failed().await,
        None => std::future::pending().await,
    }
}

/// The deferred device event, else the next one from the device.
async fn next_event(deferred: &mut Option<SessionEvent>, link: &mut SessionLink) -> Option<SessionEvent> {
    match deferred.take() {
        Some(event) => Some(event),
        None => link.events.recv().await,
    }
}

/// `first` and the device messages already waiting behind it: what one audit commit covers.
/// Terminal messages go alone (the shell's observation and recording see them one by one); the
/// first event that does not join the batch is deferred.
fn take_batch(first: Envelope, link: &mut SessionLink, deferred: &mut Option<SessionEvent>) -> Vec<Envelope> {
    let alone = first.proto == protocol::SHELL;
    let mut batch = vec![first];
    while !alone && batch.len() < MAX_DELIVERY_BATCH {
        match link.events.try_recv() {
            Ok(SessionEvent::Message(envelope)) if envelope.proto != protocol::SHELL => batch.push(envelope),
            Ok(other) => {
                *deferred = Some(other);
                break;
            }
            Err(_) => break,
        }
    }
    batch
}

/// Delivers device messages to the user: their audit events first, in one commit (fail closed:
/// what the audit log cannot record does not reach the user), then each message in order. A
/// forwarded connection's events are written behind instead (`audit_behind`): its bytes do not
/// wait for a disk flush, a failed write ends the session.
async fn deliver(
    state: &Relay,
    session: &mut Session<'_>,
    sink: &mut Sink,
    side: &mut DeviceSide,
    batch: Vec<Envelope>,
) -> Result<(), Ending> {
    let sid = session.sid;
    let mut events = Vec::new();
    let mut delivered = Vec::with_capacity(batch.len());
    for mut envelope in batch {
        if envelope.proto == protocol::SHELL && !observe_shell(state, session, side, &mut envelope).await {
            continue;
        }
        events.extend(session.audit.observe_device(&envelope));
        delivered.push(envelope);
    }
    // Once a commit failed, nothing is written behind: every event is on disk before its action
    // goes on, as it was before that failure was seen.
    let failing = state.store.audit_failing();
    let (behind, now): (Vec<_>, Vec<_>) = events
        .into_iter()
        .partition(|event| !failing && audit_behind::writes_behind(event));
    if !behind.is_empty() {
        let queue = session
            .audit_behind
            .get_or_insert_with(|| AuditBehind::start(state));
        behind.into_iter().for_each(|event| queue.write(event));
    }
    if !now.is_empty() {
        AuditBehind::before_own_event(&session.audit_behind).await;
    }
    record_all(state, sink, sid, now).await?;
    listing::transfer_may_have_ended(session);
    for envelope in delivered {
        if let Err(why) = record_terminal(state, session, &envelope).await {
            end_with_error(sink, sid, &why).await;
            return Err(Ending::user(why));
        }
        if !send(sink, &envelope).await {
            return Err(Ending::user_lost("the user disconnected"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed_with(code: u16) -> Ending {
        Ending::user_closed(Some(&CloseFrame {
            code,
            reason: "".into(),
        }))
    }

    #[test]
    fn only_the_detach_code_keeps_the_shell() {
        assert!(closed_with(DETACH_CLOSE_CODE).detachable);
        assert!(!closed_with(1000).detachable);
        assert!(!closed_with(4000).detachable);
        assert!(!Ending::user_closed(None).detachable);
    }
}
