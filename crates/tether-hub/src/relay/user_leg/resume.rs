//! A resumable shell across drops: tracking its output offset, ending it, and waiting for a
//! dropped device to come back and resume.

use std::time::Duration;
use tether_proto::clock::unix_millis;

use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt as _, StreamExt as _};
use tether_proto::{
    Envelope,
    control::{Control, ErrorBody},
    protocol,
    shell::{self, Shell},
    value::Value,
    version,
};
use tokio::time::Instant;

use crate::{domain::principal::Principal, relay::Relay, relay::router::Lane, relay::router::SessionLink};

use super::{DeviceSide, Ending, Offer, Session, Sink, end_with_error, handshake, send};

/// How often a session whose device dropped looks for the device again.
const DEVICE_RETRY: Duration = Duration::from_millis(250);
/// Input messages a session keeps while its device is away (beyond them, input is dropped).
const PENDING_INPUT: usize = 256;

/// Keeps track of the device's shell as its messages pass: whether it runs, whether it is
/// resumable, and the output offset relayed (output already relayed is trimmed, so the user
/// never gets a byte twice). False when the message has nothing left to relay.
pub(super) async fn observe_shell(
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

pub(super) async fn end_resumable(state: &Relay, sid: &str, side: &mut DeviceSide) {
    if std::mem::take(&mut side.resumable)
        && let Err(error) = state.store.end_resumable_session(sid, unix_millis()).await
    {
        tracing::warn!("session {sid}: {error:#}");
    }
}

/// The device's leg dropped under a resumable shell: tells the user, keeps their leg alive
/// (their input is kept, up to [`PENDING_INPUT`] messages), and once the device is back asks it
/// to resume from the last offset relayed. Gives up after the grace period.
pub(super) async fn await_device(
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
                    Some(Ok(Message::Close(frame))) => return Err(Ending::user_closed(frame.as_ref())),
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
                let resumed = if side.compact {
                    // The device kept the shell and the version it chose for it: no handshake.
                    Ok(version::TETHER)
                } else {
                    handshake(&mut new_link, sid, &user_name, Offer::from_config(&state.config), None)
                        .await
                        .map(|accepted| accepted.version)
                };
                match resumed {
                    Ok(version) if version == version::TETHER => {
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
