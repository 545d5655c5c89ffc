//! Admitting a user session under the hub's caps (per user, per device): a refusal is audited.

use crate::{
    domain::audit::Actor, domain::audit::NewEvent, domain::audit::Object, domain::audit::Outcome,
    domain::audit::RequestContext, domain::device::DeviceRecord, domain::failure::Failure,
    domain::failure::Kind, domain::principal::Principal, domain::session_limits::SessionSlot, service::Hub,
};

/// A slot for `principal`'s new session on `device`; a refusal is 429, logged and audited.
pub async fn admit(
    hub: &Hub,
    principal: &Principal,
    context: &RequestContext,
    device: &DeviceRecord,
) -> Result<SessionSlot, Failure> {
    let Principal::User { user, .. } = principal else {
        return Err(Failure::forbidden("only users open sessions"));
    };
    let (limit, why) = match hub.session_limits.acquire(&user.id, &user.name, device) {
        Ok(slot) => return Ok(slot),
        Err(refusal) => refusal,
    };
    tracing::warn!(
        "refused a session of {} from {}: {why}",
        principal.describe(),
        context.client
    );
    let event = NewEvent::new(
        Actor::principal(principal, context),
        "authorization",
        Object::device(&device.id, &device.name),
        Outcome::Refused,
    )
    .details(serde_json::json!({ "permission": "open a session", "reason": why, "limit": limit }));
    hub.store.record_audit(event).await?;
    Err(Failure::new(Kind::TooManyRequests, why))
}
