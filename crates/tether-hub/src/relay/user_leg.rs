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
    Envelope, STOCK_AGENT_MAX_FRAME,
    control::{Control, ErrorBody},
    protocol,
    shell::{self, Shell},
    value::Value,
    version,
};
use tokio::{sync::broadcast::error::RecvError, time::Instant};

use crate::{
    domain::audit::Actor, domain::audit::Object, domain::audit::RequestContext, domain::device::DeviceRecord,
    domain::permissions::Action, domain::principal::Principal, domain::principal::Revocation,
    domain::principal::authorize_quietly, domain::recording_format::SessionInfo, relay::Relay,
    relay::recording, relay::recording::RecordingHandle, relay::relay_audit, relay::relay_audit::Refusal,
    relay::relay_audit::malformed_forward, relay::relay_audit::record_all,
    relay::relay_audit::refuse_message, relay::router::Lane, relay::router::SessionEvent,
    relay::router::SessionLink, relay::session_audit::SessionAudit,
};

/// How often a session whose device dropped looks for the device again.
const DEVICE_RETRY: Duration = Duration::from_millis(250);
/// Input messages a session keeps while its device is away (beyond them, input is dropped).
const PENDING_INPUT: usize = 256;

/// How long a device may take to answer the `open` handshake before we assume version 1.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a device may keep a session waiting for local consent.
const MAX_CONSENT_WAIT_SECS: u64 = 600;
/// Largest `shell` body sent to a version-1 (stock) agent: its frames must stay under 8 KiB.
const VERSION_1_SHELL_CHUNK: usize = 4096;

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
    let reason = match handshake(&mut link, sid, &user_name, Some(&mut sink)).await {
        Ok((accept, version)) => {
            if resume.is_some() && version != version::TETHER {
                let why = "the device no longer speaks protocol version 2: its session cannot be resumed";
                end_with_error(&mut sink, sid, why).await;
                state.router.close_link(sid, &link).await;
                return why.into();
            }
            if send(&mut sink, &accept).await {
                let mut side = DeviceSide {
                    version,
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
                relay_audit::record_ending(state, sid, session.audit.session_ended(&text)).await;
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

/// Offers versions 1 and 2; returns the device's `accept` (to forward) and the chosen version.
/// The `open` names the user (for the device's consent prompt); a device that asks for local
/// approval (`wait`) gets the time it announces, and `user` (when given) is told.
pub(crate) async fn handshake(
    link: &mut SessionLink,
    sid: &str,
    user_name: &str,
    mut user: Option<&mut Sink>,
) -> Result<(Envelope, u32), String> {
    let open = Control::Open {
        versions: vec![version::MENDER, version::TETHER],
    };
    let mut open = open.to_envelope(sid);
    open.props.set("user_name", Value::Str(user_name.to_owned()));
    if !link.send(Lane::Interactive, open).await {
        return Err("the device went offline".into());
    }
    let mut deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    loop {
        let event = match tokio::time::timeout_at(deadline, link.events.recv()).await {
            // A device that ignores `open` speaks version 1.
            Err(_) => {
                let accept = Control::Accept {
                    version: version::MENDER,
                    protocols: vec![protocol::SHELL],
                };
                return Ok((accept.to_envelope(sid), version::MENDER));
            }
            Ok(None) => return Err("the device went offline".into()),
            Ok(Some(event)) => event,
        };
        match event {
            SessionEvent::DeviceGone(reason) | SessionEvent::DeviceKicked(reason) => return Err(reason),
            SessionEvent::Superseded => return Err("the session was re-attached elsewhere".into()),
            SessionEvent::Message(envelope) if envelope.proto == protocol::CONTROL => {
                match Control::from_envelope(&envelope) {
                    Ok(Control::Accept { version, .. })
                        if version == version::MENDER || version == version::TETHER =>
                    {
                        return Ok((envelope, version));
                    }
                    Ok(Control::Accept { version, .. }) => {
                        return Err(format!(
                            "the device chose protocol version {version}, which the hub does not speak"
                        ));
                    }
                    Ok(Control::Error(body)) => {
                        return Err(format!("the device refused the session: {}", body.err));
                    }
                    Ok(Control::Wait { timeout_secs, .. }) => {
                        let granted = Duration::from_secs(timeout_secs.min(MAX_CONSENT_WAIT_SECS));
                        deadline = Instant::now() + granted + HANDSHAKE_TIMEOUT;
                        if let Some(sink) = user.as_deref_mut() {
                            send(sink, &envelope).await;
                        }
                    }
                    _ => {}
                }
            }
            SessionEvent::Message(_) => {}
        }
    }
}

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
    loop {
        tokio::select! {
            biased;
            event = link.events.recv() => match event {
                Some(SessionEvent::Message(mut envelope)) => {
                    if envelope.proto == protocol::SHELL
                        && !observe_shell(state, session, side, &mut envelope).await
                    {
                        continue;
                    }
                    // Fail closed: what the audit log cannot record does not reach the user.
                    if let Err(ending) = record_all(state, sink, sid, session.audit.observe_device(&envelope)).await {
                        return ending;
                    }
                    if let Err(why) = record_terminal(state, session, &envelope).await {
                        end_with_error(sink, sid, &why).await;
                        return Ending::user(why);
                    }
                    if !send(sink, &envelope).await {
                        return Ending::user_lost("the user disconnected");
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
                    Some(Ok(Message::Close(_))) => return Ending::user("the user disconnected"),
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
            revocation = revocations.recv() => {
                // Withdrawn credentials end their live sessions at once; a missed notice
                // (lagged) is settled against the database.
                let why = match revocation {
                    // Roles, grants or tags changed: go on only if what the session uses still holds.
                    Ok(Revocation::Access { .. }) | Err(RecvError::Lagged(_)) => recheck(state, session).await,
                    Ok(revocation) if revocation.reaches(&session.principal) => Some(revocation.describe().to_owned()),
                    _ => None,
                };
                if let Some(why) = why {
                    end_with_error(sink, sid, &why).await;
                    return Ending::user(why);
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

/// Keeps track of the device's shell as its messages pass: whether it runs, whether it is
/// resumable, and the output offset relayed (output already relayed is trimmed, so the user
/// never gets a byte twice). False when the message has nothing left to relay.
async fn observe_shell(
    state: &Relay,
    session: &mut Session<'_>,
    side: &mut DeviceSide,
    envelope: &mut Envelope,
) -> bool {
    let sid = session.sid;
    match envelope.typ.as_str() {
        "shell" => {
            if let Some(offset) = shell::output_offset(envelope) {
                let end = offset + envelope.body.len() as u64;
                if end <= side.next_offset {
                    return false;
                }
                if offset < side.next_offset {
                    envelope.body.drain(..(side.next_offset - offset) as usize);
                    shell::set_output_offset(envelope, side.next_offset);
                }
                side.next_offset = end;
            }
        }
        "new"
            if envelope.props.i64("status") == Some(shell::status::NORMAL)
                && side.version == version::TETHER
                && side.interactive
                && !side.resumable =>
        {
            side.resumable = true;
            if let Err(error) = state
                .store
                .insert_resumable_session(sid, &session.device.id, session.user_id, unix_millis())
                .await
            {
                tracing::warn!("session {sid}: cannot record it for re-attaching: {error:#}");
                side.resumable = false;
            }
        }
        "new" if envelope.props.i64("status") == Some(shell::status::NORMAL) => {}
        "new" => {
            // Refused (or, for a resume, the shell is gone).
            side.shell_running = false;
            end_resumable(state, sid, side).await;
        }
        "stop" => {
            side.shell_running = false;
            end_resumable(state, sid, side).await;
        }
        _ => {}
    }
    true
}

async fn end_resumable(state: &Relay, sid: &str, side: &mut DeviceSide) {
    if std::mem::take(&mut side.resumable)
        && let Err(error) = state.store.end_resumable_session(sid, unix_millis()).await
    {
        tracing::warn!("session {sid}: {error:#}");
    }
}

/// The device's leg dropped under a resumable shell: tells the user, keeps their leg alive
/// (their input is kept, up to [`PENDING_INPUT`] messages), and once the device is back asks it
/// to resume from the last offset relayed. Gives up after the grace period.
async fn await_device(
    state: &Relay,
    session: &mut Session<'_>,
    link: &mut SessionLink,
    sink: &mut Sink,
    stream: &mut futures_util::stream::SplitStream<WebSocket>,
    side: &mut DeviceSide,
    reason: &str,
) -> Result<(), Ending> {
    let (device, sid) = (session.device.clone(), session.sid);
    tracing::info!(
        "session {sid}: device {} dropped ({reason}); waiting for it",
        device.name
    );
    let notice = Control::Error(ErrorBody {
        err: format!("device {}: {reason}; reconnecting…", device.name),
        close: false,
        code: Some(tether_proto::control::code::RECONNECTING),
        ..Default::default()
    });
    if !send(sink, &notice.to_envelope(sid)).await {
        return Err(Ending::user_lost("the user disconnected"));
    }
    let grace = Duration::from_secs(state.config.terminal_grace_period_secs);
    let deadline = Instant::now() + grace;
    let keepalive = Duration::from_secs(state.config.keepalive_interval_secs.max(1));
    let mut retry = tokio::time::interval(DEVICE_RETRY);
    let mut last_heard = Instant::now();
    let mut pending: Vec<Envelope> = Vec::new();
    loop {
        tokio::select! {
            inbound = stream.next() => {
                last_heard = Instant::now();
                let bytes = match inbound {
                    None | Some(Err(_)) => return Err(Ending::user_lost("the user disconnected")),
                    Some(Ok(Message::Close(_))) => return Err(Ending::user("the user disconnected")),
                    Some(Ok(Message::Binary(bytes))) => bytes,
                    Some(Ok(_)) => continue,
                };
                let Ok(mut envelope) = Envelope::decode(&bytes) else {
                    let why = "malformed message";
                    end_with_error(sink, sid, why).await;
                    return Err(Ending::user(why));
                };
                match (envelope.proto, envelope.typ.as_str()) {
                    (protocol::CONTROL, "ping") => {
                        send(sink, &Control::Pong.to_envelope(sid)).await;
                    }
                    (protocol::CONTROL, "close") => return Err(Ending::user("the user closed the session")),
                    (protocol::SHELL, "shell" | "resize") if pending.len() < PENDING_INPUT => {
                        envelope.sid = sid.to_owned();
                        envelope.props.set("user_id", Value::Str(session.user_id.to_owned()));
                        pending.push(envelope);
                    }
                    _ => {}
                }
            }
            _ = retry.tick() => {
                if Instant::now() >= deadline {
                    let why = format!(
                        "device {} did not come back within {} s (terminal_grace_period_secs)",
                        device.name,
                        grace.as_secs()
                    );
                    end_with_error(sink, sid, &why).await;
                    end_resumable(state, sid, side).await;
                    return Err(Ending::device_gone(why));
                }
                let silent = last_heard.elapsed();
                if silent >= keepalive * 2 {
                    return Err(Ending::user_lost(format!("the user was silent for {} s", silent.as_secs())));
                }
                if silent >= keepalive && sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return Err(Ending::user_lost("the user disconnected"));
                }
                let Some(mut new_link) = state.router.open_session(&device.id, sid).await else {
                    continue;
                };
                let user_name = match &session.principal {
                    Principal::User { user, .. } => user.name.clone(),
                    Principal::Device { .. } => String::new(),
                };
                match handshake(&mut new_link, sid, &user_name, None).await {
                    Ok((_, version)) if version == version::TETHER => {
                        tracing::info!(
                            "session {sid}: device {} is back; resuming from offset {}",
                            device.name,
                            side.next_offset
                        );
                        let resume = Shell::Resume { offset: side.next_offset };
                        new_link.send(Lane::Interactive, resume.to_envelope(sid)).await;
                        for input in pending.drain(..) {
                            new_link.send(Lane::Interactive, input).await;
                        }
                        *link = new_link;
                        return Ok(());
                    }
                    Ok(_) => {
                        let why = format!("device {} came back without protocol version 2: the shell is lost", device.name);
                        end_with_error(sink, sid, &why).await;
                        state.router.close_link(sid, &new_link).await;
                        end_resumable(state, sid, side).await;
                        return Err(Ending::device_gone(why));
                    }
                    Err(why) => {
                        tracing::debug!("session {sid}: the device's handshake failed: {why}");
                        state.router.close_link(sid, &new_link).await;
                    }
                }
            }
        }
    }
}

/// Re-reads the caller and the device after access changed; returns why the session must end
/// when a permission it uses no longer holds. Otherwise the session goes on with the new
/// access (also narrower: later messages are checked against it).
async fn recheck(state: &Relay, session: &mut Session<'_>) -> Option<String> {
    let principal = match state.store.reload_principal(&session.principal).await {
        Ok(Some(principal)) => principal,
        Ok(None) => return Some("access revoked".to_owned()),
        // Fail closed: access that cannot be checked is not granted.
        Err(error) => return Some(format!("access could not be checked: {error:#}")),
    };
    let device = match state.store.device(&session.device.id).await {
        Ok(Some(device)) => device,
        _ => return Some(format!("device {} was removed", session.device.name)),
    };
    if let Some(action) = session
        .used
        .iter()
        .find(|action| !authorize_quietly(&principal, **action, &device))
    {
        return Some(format!(
            "access revoked: {} may no longer {} on device {}",
            principal.describe(),
            action.describe(),
            device.name
        ));
    }
    session.principal = principal;
    session.device = device;
    None
}

/// Feeds the session's terminal recording: it starts when the device confirms a shell, takes
/// every byte of output the user receives, and ends with the shell.
///
/// Fails closed: a terminal whose recording cannot be started is ended (unless recording is
/// switched off in the configuration).
async fn record_terminal(
    state: &Relay,
    session: &mut Session<'_>,
    envelope: &Envelope,
) -> Result<(), String> {
    if envelope.proto != protocol::SHELL {
        return Ok(());
    }
    match envelope.typ.as_str() {
        "shell" => {
            if let Some(recording) = &session.recording {
                recording.output(&envelope.body).await;
            }
        }
        "new"
            if envelope.props.i64("status") == Some(shell::status::NORMAL)
                && state.config.record_sessions =>
        {
            let Some((width, height, command)) = session.requested_shell.take() else {
                return Ok(());
            };
            let Principal::User { user, .. } = &session.principal else {
                return Ok(());
            };
            // A re-attached session's recording is a new one (the first ended with the link).
            let recording_id = if session.resumed {
                format!("{}-resumed-{}", session.sid, unix_millis())
            } else {
                session.sid.to_owned()
            };
            let info = SessionInfo {
                sid: recording_id,
                device_id: session.device.id.clone(),
                device_name: session.device.name.clone(),
                user_id: user.id.clone(),
                user_name: user.name.clone(),
                command,
                width,
                height,
            };
            match recording::recorder::start(state, info).await {
                Ok(handle) => session.recording = Some(handle),
                Err(error) => {
                    tracing::error!("session {}: cannot record the terminal: {error:#}", session.sid);
                    return Err(
                        "the terminal cannot be recorded (see the hub's log); the session was ended".into(),
                    );
                }
            }
        }
        "stop" => session.recording = None,
        _ => {}
    }
    Ok(())
}

/// The permission a user message needs, by protocol and type.
fn required_action(envelope: &Envelope) -> Option<Action> {
    match envelope.proto {
        protocol::SHELL => Some(Action::Terminal),
        protocol::FILE_TRANSFER => Some(match envelope.typ.as_str() {
            "put_file" | "mkdir" => Action::FileWrite,
            // Chunks and acks belong to a transfer whose request was authorized.
            _ => Action::FileRead,
        }),
        protocol::PORT_FORWARD => Some(Action::PortForward),
        _ => None,
    }
}

/// Passes one user message on to the device. Returns an ending when the session must stop.
async fn forward(
    state: &Relay,
    session: &mut Session<'_>,
    mut envelope: Envelope,
    link: &mut SessionLink,
    sink: &mut Sink,
    side: &mut DeviceSide,
) -> Option<Ending> {
    let sid = session.sid;
    envelope.sid = sid.to_owned();
    if envelope.proto == protocol::CONTROL {
        return match envelope.typ.as_str() {
            "ping" => {
                send(sink, &Control::Pong.to_envelope(sid)).await;
                None
            }
            "close" => Some(Ending::user("the user closed the session")),
            _ => None,
        };
    }
    let Some(action) = required_action(&envelope) else {
        let why = format!("protocol {} is not available through this hub", envelope.proto);
        let refusal = Refusal {
            why,
            code: 400,
            permission: None,
        };
        return refuse_message(state, session, sink, &envelope, refusal).await;
    };
    if let Err(refused) =
        crate::domain::principal::authorize(&session.principal, action, Some(&session.device))
    {
        let refusal = Refusal {
            why: refused.message,
            code: 403,
            permission: Some(action),
        };
        return refuse_message(state, session, sink, &envelope, refusal).await;
    }
    if envelope.proto == protocol::PORT_FORWARD
        && let Some(why) = malformed_forward(&envelope)
    {
        let refusal = Refusal {
            why,
            code: 400,
            permission: None,
        };
        return refuse_message(state, session, sink, &envelope, refusal).await;
    }
    if !session.used.contains(&action) {
        session.used.push(action);
    }
    session.audit.observe_user(&envelope);
    if envelope.proto == protocol::SHELL {
        match Shell::from_envelope(&envelope) {
            Ok(Shell::New {
                width,
                height,
                command,
                ..
            }) => {
                side.interactive = command.is_none();
                session.requested_shell = Some((width.unwrap_or(80), height.unwrap_or(24), command));
            }
            Ok(Shell::Resize { width, height }) => {
                if let Some(recording) = &session.recording {
                    recording.resize(width, height).await;
                }
            }
            Ok(Shell::Data(data)) => {
                if let Some(recording) = &session.recording {
                    recording.input(&data).await;
                }
            }
            _ => {}
        }
    }
    if envelope.proto == protocol::SHELL {
        envelope
            .props
            .set("user_id", Value::Str(session.user_id.to_owned()));
        match envelope.typ.as_str() {
            "new" => side.shell_running = true,
            "stop" => side.shell_running = false,
            _ => {}
        }
    }
    if side.version == version::MENDER {
        // A stock agent drops its connection on frames of 8 KiB or more.
        if envelope.proto == protocol::SHELL
            && envelope.typ == "shell"
            && envelope.body.len() > VERSION_1_SHELL_CHUNK
        {
            for chunk in envelope.body.chunks(VERSION_1_SHELL_CHUNK) {
                let mut piece = envelope.clone();
                piece.body = chunk.to_vec();
                link.send(Lane::Interactive, piece).await;
            }
            return None;
        }
        if envelope.encode().len() >= STOCK_AGENT_MAX_FRAME {
            let why = format!(
                "message too large for this device (protocol version 1 frames stay under {STOCK_AGENT_MAX_FRAME} bytes)"
            );
            let refusal = Refusal {
                why,
                code: 413,
                permission: None,
            };
            return refuse_message(state, session, sink, &envelope, refusal).await;
        }
    }
    // Bulk data waits behind keystrokes; requests and acks stay interactive so that a transfer's
    // flow control is not slowed by its own data. A forwarded connection's `stop` travels with
    // its data, which it must not overtake.
    let lane = match (envelope.proto, envelope.typ.as_str()) {
        (protocol::FILE_TRANSFER, "file_chunk") | (protocol::PORT_FORWARD, "forward" | "stop") => Lane::Bulk,
        _ => Lane::Interactive,
    };
    // A failed send means the device is gone; its DeviceGone event explains why.
    link.send(lane, envelope).await;
    None
}
