//! The audit log: who did what, when, to which device, and with what outcome.
//!
//! Every event is written (and committed, SQLite `synchronous=FULL`) *before* the action it
//! describes is confirmed; if it cannot be written, the action is refused (fail closed). Events are
//! hash-chained: each row's `hash` is SHA-256 over its own fields and the previous row's hash, and
//! `seq` has no gaps, so [`verify`] (shared with the CLI, in `tether_proto::audit`) names the
//! first modified, removed or reordered event. Signed checkpoints of the chain's head
//! ([`crate::checkpoints`]) make a rewrite of the whole chain detectable too.

use std::net::SocketAddr;

use axum::{
    extract::FromRequestParts,
    http::{StatusCode, header, request::Parts},
};

use crate::{auth::Principal, http_error::ApiError, state::AppState, store::now_millis};

// The chain itself (event, hash, verification) is shared with the CLI, which verifies exports.
pub use tether_proto::audit::{AuditEvent, GENESIS_HASH, Verification, verify};

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
