//! Recording what callers do: a successful action of a principal, written before it takes
//! effect.

use crate::{
    domain::audit::Actor, domain::audit::NewEvent, domain::audit::Object, domain::audit::Outcome,
    domain::audit::RequestContext, domain::failure::Failure, domain::principal::Principal, relay::Relay,
};

/// Appends an event to the chain and commits it. Errors mean the action must not proceed.
/// Records a successful action of `principal`, before it takes effect (fail closed: an action
/// the audit log cannot hold is not done).
pub async fn record_success(
    relay: &Relay,
    principal: &Principal,
    context: &RequestContext,
    action: &'static str,
    object: Object,
    details: serde_json::Value,
) -> Result<(), Failure> {
    let event = NewEvent::new(
        Actor::principal(principal, context),
        action,
        object,
        Outcome::Success,
    )
    .details(details);
    relay.store.record_audit(event).await
}
