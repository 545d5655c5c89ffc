//! The audit side of the user relay: the events a session's messages complete (with the open
//! terminals they start and end), and the hub's refusals of user messages — each recorded before
//! the user hears of it, and ending the session when the audit log cannot take it (fail closed).

use tether_proto::{
    Envelope,
    control::{Control, ErrorBody},
    port_forward::PortForward,
    protocol, shell, version,
};

use crate::{
    domain::audit, domain::audit::Actor, domain::audit::NewEvent, domain::audit::Object,
    domain::audit::Outcome, domain::permissions::Action, relay::Relay, relay::open_terminals,
};

use super::{Ending, Session, Sink, end_with_error, send};

/// Records a session's events (one commit); when the audit log fails, the session ends (fail
/// closed).
pub(crate) async fn record_all(
    state: &Relay,
    sink: &mut Sink,
    sid: &str,
    events: Vec<NewEvent>,
) -> Result<(), Ending> {
    let trackings: Vec<_> = events
        .iter()
        .filter_map(|event| open_terminals::Tracking::of(state, event))
        .collect();
    if let Err(error) = state.store.record_audits(events).await {
        end_with_error(sink, sid, &error.message).await;
        return Err(Ending::user(error.message));
    }
    // A terminal whose close could not be made after a crash is not opened (fail closed).
    for tracking in trackings {
        if let Err(error) = tracking.apply(state).await {
            tracing::error!("session {sid}: cannot track its open terminal: {error:#}");
            let why = audit::unavailable().message;
            end_with_error(sink, sid, &why).await;
            return Err(Ending::user(why));
        }
    }
    Ok(())
}

/// Records the events of a session's end (best effort: the session is over).
pub(crate) async fn record_ending(state: &Relay, sid: &str, events: Vec<NewEvent>) {
    for event in events {
        let tracking = open_terminals::Tracking::of(state, &event);
        if state.store.record_audit(event).await.is_err() {
            break;
        }
        if let Some(tracking) = tracking
            && let Err(error) = tracking.apply(state).await
        {
            tracing::warn!("session {sid}: {error:#}");
        }
    }
}

/// Why the hub refuses one user message.
pub(crate) struct Refusal {
    pub why: String,
    /// The HTTP-like status the error carries (400 malformed, 403 not permitted, 413 too large).
    pub code: i64,
    /// The permission it lacked, for a 403.
    pub permission: Option<Action>,
}

/// Refuses a user message: records the refusal (an `authorization` event of the session), then
/// answers it with an error on its own protocol, leaving the session open. Every refusal of the
/// relay goes through here. An ending when the event cannot be written (fail closed).
pub(crate) async fn refuse_message(
    state: &Relay,
    session: &Session<'_>,
    sink: &mut Sink,
    envelope: &Envelope,
    refusal: Refusal,
) -> Option<Ending> {
    let sid = session.sid;
    let Refusal {
        why,
        code,
        permission,
    } = refusal;
    tracing::warn!(
        "session {sid}: refused {}/{}: {why}",
        envelope.proto,
        envelope.typ
    );
    let details = serde_json::json!({
        "reason": why,
        "code": code,
        "permission": permission.map(Action::describe),
        "protocol": envelope.proto,
        "message": envelope.typ,
        "connection_id": envelope.props.str("connection_id"),
    });
    let event = NewEvent::new(
        Actor::principal(&session.principal, session.context),
        "authorization",
        Object::device(&session.device.id, &session.device.name),
        Outcome::Refused,
    )
    .details(details)
    .session(sid);
    super::AuditBehind::before_own_event(&session.audit_behind).await;
    if let Err(error) = state.store.record_audit(event).await {
        end_with_error(sink, sid, &error.message).await;
        return Some(Ending::user(error.message));
    }
    let mut error = ErrorBody {
        err: why,
        close: false,
        msgproto: Some(envelope.proto),
        msgtype: Some(envelope.typ.clone()),
        code: Some(code),
        ..Default::default()
    };
    let reply = if envelope.proto == protocol::CONTROL || envelope.proto == protocol::SHELL {
        Control::Error(error).to_envelope(sid)
    } else {
        // File transfer and port forward errors travel on their own protocol (with the
        // connection id for forwards), as the stock agent sends them.
        error.msgproto = None;
        let mut reply = Envelope::new(envelope.proto, "error", sid).with_body(error.to_value().encode());
        if let Some(connection) = envelope.props.get("connection_id") {
            reply.props.set("connection_id", connection.clone());
        }
        reply
    };
    send(sink, &reply).await;
    None
}

/// Why a user's port-forward message cannot go to the device, if it cannot: it must parse, and
/// a `new` must name its target (a `new` without one is the device's confirmation).
pub(crate) fn malformed_forward(envelope: &Envelope) -> Option<String> {
    // A forward only needs its connection: its data is not copied to be checked.
    if envelope.typ == "forward" {
        return PortForward::forward_size(envelope)
            .is_none()
            .then(|| "malformed port-forward `forward`: missing field `connection_id`".to_owned());
    }
    match PortForward::from_envelope(envelope) {
        Ok(PortForward::New { target: None, .. }) => {
            Some("malformed port-forward `new`: no remote_host and remote_port".to_owned())
        }
        Ok(_) => None,
        Err(error) => Some(format!("malformed port-forward `{}`: {error}", envelope.typ)),
    }
}

/// Why a user's shell `new` cannot go to the device, if it cannot: a `local_user` it carries
/// must be a user name (a string of at most 32 bytes, portable POSIX characters), and the
/// device must speak version 2 (a stock agent would ignore it and run its default user).
pub(crate) fn malformed_local_user(envelope: &Envelope, device_version: u32) -> Option<String> {
    let requested = envelope.props.get(shell::LOCAL_USER)?;
    let Some(name) = requested.as_str() else {
        return Some("malformed shell `new`: local_user must be a string".to_owned());
    };
    if !shell::valid_local_user(name) {
        return Some(format!(
            "malformed shell `new`: local_user {name:?} is not a valid user name (letters, digits, \
             '.', '_' and '-', at most {} bytes, not starting with '-')",
            shell::LOCAL_USER_MAX_BYTES
        ));
    }
    if device_version < version::TETHER {
        return Some(format!(
            "the device speaks protocol version {device_version} and cannot choose a local user"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use tether_proto::value::Value;

    use super::*;

    fn new_with(local_user: Value) -> Envelope {
        Envelope::new(protocol::SHELL, "new", "s").with_prop(shell::LOCAL_USER, local_user)
    }

    #[test]
    fn a_requested_local_user_must_be_a_user_name_for_a_version_2_device() {
        assert_eq!(
            malformed_local_user(&Envelope::new(protocol::SHELL, "new", "s"), 1),
            None
        );
        assert_eq!(
            malformed_local_user(&new_with(Value::Str("daemon".into())), 2),
            None
        );
        let not_a_string = malformed_local_user(&new_with(Value::Int(0)), 2).unwrap();
        assert!(not_a_string.contains("must be a string"), "{not_a_string}");
        for bad in ["", "a b", "-x", &"u".repeat(33)] {
            let why = malformed_local_user(&new_with(Value::Str(bad.into())), 2).unwrap();
            assert!(why.contains("not a valid user name"), "{why}");
        }
        let stock = malformed_local_user(&new_with(Value::Str("daemon".into())), 1).unwrap();
        assert!(stock.contains("cannot choose a local user"), "{stock}");
    }
}
