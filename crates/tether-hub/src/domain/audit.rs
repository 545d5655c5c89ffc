//! The audit log's events: who did what, when, to which device, and with what outcome.
//!
//! Every event is written (and committed, SQLite `synchronous=FULL`) *before* the action it
//! describes is confirmed; if it cannot be written, the action is refused (fail closed). Events are
//! hash-chained: each row's `hash` is SHA-256 over its own fields and the previous row's hash, and
//! `seq` has no gaps, so [`verify`] (shared with the CLI, in `tether_proto::audit`) names the
//! first modified, removed or reordered event. Signed checkpoints of the chain's head
//! ([`crate::service::checkpoints`]) make a rewrite of the whole chain detectable too.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use crate::{domain::failure::Failure, domain::failure::Kind, domain::principal::Principal};

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
    /// The id the hub gave the request (`X-Request-Id`), for the events of refusals.
    pub request_id: Option<String>,
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
pub fn unavailable() -> Failure {
    Failure::new(
        Kind::Unavailable,
        "the audit log cannot be written; the action was refused",
    )
}

/// What the handlers of one request tell the layer.
#[derive(Default)]
pub struct RequestAudit {
    /// The authenticated caller, for refusals that come after authentication.
    pub caller: Mutex<Option<Actor>>,
    /// A refusal or failure of this request was recorded by a handler already.
    pub recorded: AtomicBool,
}

tokio::task_local! {
    /// The request being served, for the refusal layer (`http::refusal_audit`).
    pub static REQUEST: Arc<RequestAudit>;
}

/// The request's caller is `actor` (called once a credential checks out).
pub fn note_caller(actor: Actor) {
    let _ = REQUEST.try_with(|request| {
        *request.caller.lock().unwrap_or_else(|e| e.into_inner()) = Some(actor);
    });
}

/// An event that is not a success was recorded for the request being served (if any).
pub fn note_recorded(outcome: Outcome) {
    if outcome != Outcome::Success {
        let _ = REQUEST.try_with(|request| request.recorded.store(true, Ordering::Relaxed));
    }
}
