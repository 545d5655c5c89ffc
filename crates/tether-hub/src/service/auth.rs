//! Authorization with its audit trail: [`permit`] is [`crate::domain::principal::authorize`]
//! plus a refusal event in the audit log.

use crate::{
    domain::audit::Actor, domain::audit::NewEvent, domain::audit::Object, domain::audit::Outcome,
    domain::audit::RequestContext, domain::device::DeviceRecord, domain::failure::Failure,
    domain::permissions::Action, domain::principal::Principal, domain::principal::authorize, relay::Relay,
};

/// [`authorize`], recording a refusal in the audit log.
pub async fn permit(
    relay: &Relay,
    principal: &Principal,
    context: &RequestContext,
    action: Action,
    device: Option<&DeviceRecord>,
) -> Result<(), Failure> {
    let Err(refusal) = authorize(principal, action, device) else {
        return Ok(());
    };
    let object = device
        .map(|d| Object::device(&d.id, &d.name))
        .unwrap_or_else(Object::none);
    let event = NewEvent::new(
        Actor::principal(principal, context),
        "authorization",
        object,
        Outcome::Refused,
    )
    .details(serde_json::json!({ "permission": action.describe(), "reason": refusal.message }));
    relay.store.record_audit(event).await?;
    Err(refusal)
}

/// Loads device `id` and checks with [`permit`] that `principal` may do `action` on it.
pub async fn permitted_device(
    relay: &Relay,
    principal: &Principal,
    context: &RequestContext,
    id: &str,
    action: Action,
) -> Result<DeviceRecord, Failure> {
    let device = relay
        .store
        .device(id)
        .await?
        .ok_or_else(|| Failure::not_found(format!("no device with id {id}")))?;
    permit(relay, principal, context, action, Some(&device)).await?;
    Ok(device)
}
