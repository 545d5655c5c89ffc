//! The audit log: who did what, when, to which device, and with what outcome.
//!
//! Every event is written (and committed, SQLite `synchronous=FULL`) *before* the action it
//! describes is confirmed; if it cannot be written, the action is refused (fail closed). Events are
//! hash-chained: each row's `hash` is SHA-256 over its own fields and the previous row's hash, and
//! `seq` has no gaps, so [`verify`] names the first modified, removed or reordered event.

use std::net::SocketAddr;

use axum::{
    extract::FromRequestParts,
    http::{StatusCode, header, request::Parts},
};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::{auth::Principal, http_error::ApiError, state::AppState, store::now_millis};

/// The hash before the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit event, as stored and as the API returns it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEvent {
    pub seq: i64,
    pub id: String,
    /// Unix milliseconds.
    pub time: i64,
    /// `user`, `device`, `system` or `anonymous`.
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub actor_name: Option<String>,
    pub client_address: Option<String>,
    pub user_agent: Option<String>,
    /// e.g. `login`, `device.accept`, `terminal.open`, `file.download`.
    pub action: String,
    /// `device`, `user`, `session`, ...
    pub object_kind: Option<String>,
    pub object_id: Option<String>,
    pub object_name: Option<String>,
    /// `success`, `failure`, `refused` or `interrupted`.
    pub outcome: String,
    /// A JSON object with the action's particulars (path, size, reason...).
    pub details: serde_json::Value,
    pub session_id: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEvent {
    /// The hash of this event's content and its predecessor's hash. Field order is fixed here:
    /// changing it invalidates every stored chain.
    pub fn compute_hash(&self) -> String {
        let content = serde_json::json!([
            self.seq,
            self.id,
            self.time,
            self.actor_kind,
            self.actor_id,
            self.actor_name,
            self.client_address,
            self.user_agent,
            self.action,
            self.object_kind,
            self.object_id,
            self.object_name,
            self.outcome,
            self.details,
            self.session_id,
            self.prev_hash,
        ]);
        hex::encode(Sha256::digest(content.to_string().as_bytes()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Refused,
    /// Cut short by a stop of the hub (closed at its next start).
    Interrupted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Refused => "refused",
            Outcome::Interrupted => "interrupted",
        }
    }
}

/// Who acted, and from where.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub kind: &'static str,
    pub id: Option<String>,
    pub name: Option<String>,
    pub client_address: Option<String>,
    pub user_agent: Option<String>,
}

impl Actor {
    pub fn system() -> Actor {
        Actor {
            kind: "system",
            ..Default::default()
        }
    }

    pub fn principal(principal: &Principal, context: &RequestContext) -> Actor {
        let (kind, id, name) = match principal {
            Principal::User { user, .. } => ("user", user.id.clone(), Some(user.name.clone())),
            Principal::Device { device_id } => ("device", device_id.clone(), None),
        };
        Actor {
            kind,
            id: Some(id),
            name,
            ..context.actor("")
        }
    }
}

/// Where a request came from: the client address and user agent every event records.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub client: SocketAddr,
    pub user_agent: Option<String>,
}

impl RequestContext {
    /// An actor of `kind` with this request's origin (`anonymous` when `kind` is empty).
    pub fn actor(&self, kind: &'static str) -> Actor {
        Actor {
            kind: if kind.is_empty() { "anonymous" } else { kind },
            id: None,
            name: None,
            client_address: Some(self.client.to_string()),
            user_agent: self.user_agent.clone(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let client = parts
            .extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|info| info.0)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(200).collect());
        Ok(RequestContext { client, user_agent })
    }
}

/// What the action was done to.
#[derive(Debug, Clone, Default)]
pub struct Object {
    pub kind: Option<&'static str>,
    pub id: Option<String>,
    pub name: Option<String>,
}

impl Object {
    pub fn none() -> Object {
        Object::default()
    }

    pub fn device(id: &str, name: &str) -> Object {
        Object {
            kind: Some("device"),
            id: Some(id.to_owned()),
            name: Some(name.to_owned()),
        }
    }

    pub fn user(id: Option<&str>, name: &str) -> Object {
        Object {
            kind: Some("user"),
            id: id.map(str::to_owned),
            name: Some(name.to_owned()),
        }
    }
}

/// An event before the log assigns its place in the chain.
pub struct NewEvent {
    pub actor: Actor,
    pub action: &'static str,
    pub object: Object,
    pub outcome: Outcome,
    pub details: serde_json::Value,
    pub session_id: Option<String>,
}

impl NewEvent {
    pub fn new(actor: Actor, action: &'static str, object: Object, outcome: Outcome) -> NewEvent {
        NewEvent {
            actor,
            action,
            object,
            outcome,
            details: serde_json::json!({}),
            session_id: None,
        }
    }

    pub fn details(mut self, details: serde_json::Value) -> NewEvent {
        self.details = details;
        self
    }

    pub fn session(mut self, session_id: &str) -> NewEvent {
        self.session_id = Some(session_id.to_owned());
        self
    }
}

/// The refusal an action gets when its event cannot be written.
pub fn unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the audit log cannot be written; the action was refused",
    )
}

/// Appends an event to the chain and commits it. Errors mean the action must not proceed.
/// Records a successful action of `principal`, before it takes effect (fail closed: an action
/// the audit log cannot hold is not done).
pub async fn record_success(
    state: &AppState,
    principal: &Principal,
    context: &RequestContext,
    action: &'static str,
    object: Object,
    details: serde_json::Value,
) -> Result<(), ApiError> {
    let event = NewEvent::new(
        Actor::principal(principal, context),
        action,
        object,
        Outcome::Success,
    )
    .details(details);
    record(state, event).await
}

pub async fn record(state: &AppState, event: NewEvent) -> Result<(), ApiError> {
    crate::refusal_audit::note_recorded(event.outcome);
    // One writer at a time in this process; the store serializes replicas (the chain needs the
    // previous hash).
    let _chain = state.audit_chain.lock().await;
    let build = |seq: i64, prev_hash: String| {
        let mut stored = AuditEvent {
            seq,
            id: uuid::Uuid::now_v7().to_string(),
            time: now_millis(),
            actor_kind: event.actor.kind.to_owned(),
            actor_id: event.actor.id,
            actor_name: event.actor.name,
            client_address: event.actor.client_address,
            user_agent: event.actor.user_agent,
            action: event.action.to_owned(),
            object_kind: event.object.kind.map(str::to_owned),
            object_id: event.object.id,
            object_name: event.object.name,
            outcome: event.outcome.as_str().to_owned(),
            details: event.details,
            session_id: event.session_id,
            prev_hash,
            hash: String::new(),
        };
        stored.hash = stored.compute_hash();
        stored
    };
    match state.store.append_audit_event(build).await {
        Ok(_) => Ok(()),
        Err(error) => {
            tracing::error!("audit log unavailable: {error:#}");
            Err(unavailable())
        }
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Verification {
    pub ok: bool,
    pub checked: i64,
    /// The first broken event: `modified`, `removed` or `reordered`.
    pub problem: Option<Problem>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Problem {
    pub seq: i64,
    pub kind: String,
    pub detail: String,
}

/// Walks the chain in `seq` order from its anchor and reports the first inconsistency.
pub fn verify<I: IntoIterator<Item = AuditEvent>>(anchor: (i64, String), events: I) -> Verification {
    let (mut expected_seq, mut previous_hash) = (anchor.0 + 1, anchor.1);
    let mut checked = 0;
    let problem = |seq, kind: &str, detail: String| {
        Some(Problem {
            seq,
            kind: kind.to_owned(),
            detail,
        })
    };
    for event in events {
        let found = if event.compute_hash() != event.hash {
            problem(
                event.seq,
                "modified",
                format!("event {} does not match its hash", event.seq),
            )
        } else if event.seq != expected_seq && event.prev_hash != previous_hash && event.seq > expected_seq {
            problem(
                expected_seq,
                "removed",
                format!("events {expected_seq}..{} are missing", event.seq - 1),
            )
        } else if event.prev_hash != previous_hash || event.seq != expected_seq {
            problem(
                event.seq,
                "reordered",
                format!("event {} does not follow event {}", event.seq, expected_seq - 1),
            )
        } else {
            None
        };
        if found.is_some() {
            return Verification {
                ok: false,
                checked,
                problem: found,
            };
        }
        checked += 1;
        expected_seq = event.seq + 1;
        previous_hash = event.hash;
    }
    Verification {
        ok: true,
        checked,
        problem: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditEvent> {
        let mut previous = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let mut event = AuditEvent {
                    seq,
                    id: format!("id-{seq}"),
                    time: seq * 1000,
                    actor_kind: "user".into(),
                    actor_id: Some("u".into()),
                    actor_name: Some("alice".into()),
                    client_address: None,
                    user_agent: None,
                    action: "login".into(),
                    object_kind: None,
                    object_id: None,
                    object_name: None,
                    outcome: "success".into(),
                    details: serde_json::json!({"n": seq}),
                    session_id: None,
                    prev_hash: previous.clone(),
                    hash: String::new(),
                };
                event.hash = event.compute_hash();
                previous = event.hash.clone();
                event
            })
            .collect()
    }

    fn genesis() -> (i64, String) {
        (0, GENESIS_HASH.to_owned())
    }

    #[test]
    fn an_intact_chain_verifies() {
        let result = verify(genesis(), chain(5));
        assert!(result.ok);
        assert_eq!(result.checked, 5);
    }

    #[test]
    fn a_modified_event_is_named() {
        let mut events = chain(5);
        events[2].outcome = "failure".into();
        let problem = verify(genesis(), events).problem.unwrap();
        assert_eq!((problem.seq, problem.kind.as_str()), (3, "modified"));
    }

    #[test]
    fn a_removed_event_is_named() {
        let mut events = chain(5);
        events.remove(1);
        let problem = verify(genesis(), events).problem.unwrap();
        assert_eq!((problem.seq, problem.kind.as_str()), (2, "removed"));
    }

    #[test]
    fn swapped_events_are_named() {
        let mut events = chain(5);
        // Swap the content of rows 2 and 3 while keeping their seq numbers (a row swap in the table).
        let (a, b) = (events[1].clone(), events[2].clone());
        events[1] = AuditEvent { seq: 2, ..b };
        events[2] = AuditEvent { seq: 3, ..a };
        let problem = verify(genesis(), events).problem.unwrap();
        assert_eq!(problem.seq, 2);
        assert!(problem.kind == "modified" || problem.kind == "reordered");
    }
}
