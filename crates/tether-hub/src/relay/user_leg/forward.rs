//! Per-message authorization and forwarding of user messages, the re-check after access
//! changed, and feeding the terminal recording.

use tether_proto::{
    Envelope, STOCK_AGENT_MAX_FRAME,
    control::Control,
    protocol,
    shell::{self, Shell},
    value::Value,
    version,
};

use crate::{
    domain::permissions::Action, domain::principal::Principal, domain::principal::authorize_quietly,
    domain::recording_format::SessionInfo, relay::Relay, relay::recording, relay::router::Lane,
    relay::router::SessionLink,
};

use super::{
    DeviceSide, Ending, Session, Sink,
    audit::{Refusal, malformed_forward, malformed_local_user, refuse_message},
    send,
};

/// Largest `shell` body sent to a version-1 (stock) agent: its frames must stay under 8 KiB.
const VERSION_1_SHELL_CHUNK: usize = 4096;

/// Re-reads the caller and the device after access changed; returns why the session must end
/// when a permission it uses no longer holds. Otherwise the session goes on with the new
/// access (also narrower: later messages are checked against it).
pub(super) async fn recheck(state: &Relay, session: &mut Session<'_>) -> Option<String> {
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
pub(super) async fn record_terminal(
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
                recording
                    .output(shell::output_offset(envelope), &envelope.body)
                    .await;
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
            // A re-attached session continues its recording (`recorder::start`).
            let info = SessionInfo {
                sid: session.sid.to_owned(),
                device_id: session.device.id.clone(),
                device_name: session.device.name.clone(),
                user_id: user.id.clone(),
                user_name: user.name.clone(),
                command,
                width,
                height,
            };
            match recording::recorder::start(state, info, session.resumed).await {
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
pub(super) fn required_action(envelope: &Envelope) -> Option<Action> {
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
pub(super) async fn forward(
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
    if envelope.proto == protocol::SHELL
        && envelope.typ == "new"
        && let Some(why) = malformed_local_user(&envelope, side.version)
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
    if session.counted.is_none() {
        session.counted = session_kind(&envelope).map(|kind| crate::metrics::metrics().session(kind));
    }
    session.audit.observe_user(&envelope);
    super::listing::list_activity(state, session, &envelope).await;
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

/// The kind a session is counted as (`tether_sessions_active`), told by its first message that
/// says: a shell `new` (with a command: exec), a port-forward or a file-transfer message.
fn session_kind(envelope: &Envelope) -> Option<&'static str> {
    match envelope.proto {
        protocol::SHELL if envelope.typ == "new" && envelope.props.str("command").is_some() => Some("exec"),
        protocol::SHELL if envelope.typ == "new" => Some("terminal"),
        protocol::PORT_FORWARD => Some("forward"),
        protocol::FILE_TRANSFER => Some("file"),
        _ => None,
    }
}
