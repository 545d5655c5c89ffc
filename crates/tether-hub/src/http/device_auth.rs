//! `POST /api/devices/v1/authentication/auth_requests`: a device proves it holds its key and
//! gets a token once accepted (see `docs/protocol.md`, "Device authentication").
//!
//! Anyone can ask, so enrolment is bounded: requests from unknown keys are rate-limited per
//! client address and in total (known devices and a valid provisioning key never are), the
//! pending devices are capped (the oldest is dropped, audited), and names over
//! [`MAX_NAME_BYTES`] are refused.

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use tether_proto::auth::{AuthRefusal, AuthRequest, SIGNATURE_HEADER};
use tether_proto::clock::unix_millis;

use crate::{
    domain::audit, domain::audit::NewEvent, domain::audit::Object, domain::audit::Outcome,
    domain::audit::RequestContext, domain::device::DeviceRecord, domain::device::DeviceStatus,
    domain::device_key::DevicePublicKey, http::error::ApiError, http::state::AppState,
};

/// The longest device name (the `hostname` identity attribute) the hub keeps, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// Drops the oldest pending devices so that one more fits under `max_pending_devices`; each
/// drop is audited.
async fn make_room_for_pending(state: &AppState, context: &RequestContext) -> Result<(), ApiError> {
    let cap = state.config.max_pending_devices.max(1);
    let pending = state.store.count_devices(DeviceStatus::Pending).await?;
    if pending < cap as i64 {
        return Ok(());
    }
    let excess = pending - cap as i64 + 1;
    for (id, name) in state.store.oldest_pending_devices(excess).await? {
        if !state.store.delete_pending_device(&id).await? {
            continue;
        }
        tracing::warn!(
            "dropped pending device {name} ({id}): max_pending_devices ({cap}) reached by a new device from {}",
            context.client
        );
        let event = NewEvent::new(
            audit::Actor::system(),
            "device.pending_dropped",
            Object::device(&id, &name),
            Outcome::Success,
        )
        .details(serde_json::json!({
            "reason": format!("max_pending_devices ({cap}) reached; the oldest pending device is dropped"),
            "new_device_from": context.client.to_string(),
        }));
        state.store.record_audit(event).await?;
    }
    Ok(())
}

/// Checks the request's signature and returns the request and the device's public key
/// (Ed25519, RSA or ECDSA P-256: see [`crate::domain::device_key`]).
fn verified_request(headers: &HeaderMap, body: &[u8]) -> Result<(AuthRequest, DevicePublicKey), ApiError> {
    let signature = headers.get(SIGNATURE_HEADER).ok_or_else(|| {
        ApiError::bad_request(format!(
            "missing {SIGNATURE_HEADER} header (the request must be signed)"
        ))
    })?;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(signature.as_bytes())
        .map_err(|_| ApiError::bad_request(format!("{SIGNATURE_HEADER} is not base64")))?;
    let request: AuthRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid authentication request: {e}")))?;
    let key = DevicePublicKey::from_pem(&request.pubkey).map_err(|e| ApiError::bad_request(e.to_string()))?;
    key.verify(body, &signature)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok((request, key))
}

fn refusal(status: &str, error: String) -> Response {
    // Pending is the normal wait of an enrolment, not a failure.
    if status != "pending" {
        crate::metrics::metrics().auth_failed("device");
    }
    (
        StatusCode::UNAUTHORIZED,
        Json(AuthRefusal {
            error,
            status: status.to_owned(),
        }),
    )
        .into_response()
}

/// Records the outcome of an authentication request by `device` (audit: one event per request).
async fn record(
    state: &AppState,
    context: &RequestContext,
    device: Option<&DeviceRecord>,
    outcome: Outcome,
    details: serde_json::Value,
) -> Result<(), ApiError> {
    let mut actor = context.actor("device");
    actor.id = device.map(|d| d.id.clone());
    actor.name = device.map(|d| d.name.clone());
    let object = device
        .map(|d| Object::device(&d.id, &d.name))
        .unwrap_or_else(Object::none);
    state
        .store
        .record_audit(NewEvent::new(actor, "device.auth_request", object, outcome).details(details))
        .await
        .map_err(ApiError::from)
}

pub async fn auth_request(
    State(state): State<AppState>,
    context: RequestContext,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (request, key) = match verified_request(&headers, &body) {
        Ok(verified) => verified,
        Err(error) => {
            tracing::warn!(
                "refused a device authentication request from {}: {}",
                context.client,
                error.message
            );
            record(
                &state,
                &context,
                None,
                Outcome::Refused,
                serde_json::json!({ "reason": error.message }),
            )
            .await?;
            return Err(error);
        }
    };
    let Ok(identity) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&request.id_data)
    else {
        let error = ApiError::bad_request("id_data must be a JSON object of identity attributes");
        record(
            &state,
            &context,
            None,
            Outcome::Refused,
            serde_json::json!({ "reason": error.message }),
        )
        .await?;
        return Err(error);
    };
    let public_key = key.identity();
    let name = identity
        .get("hostname")
        .and_then(|v| v.as_str())
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    if let Some(name) = name.as_ref().filter(|name| name.len() > MAX_NAME_BYTES) {
        let error = ApiError::bad_request(format!(
            "device name (identity attribute hostname) is {} bytes; names are at most {MAX_NAME_BYTES} bytes",
            name.len()
        ));
        tracing::warn!(
            "refused a device authentication request from {}: {}",
            context.client,
            error.message
        );
        let details = serde_json::json!({ "reason": error.message });
        record(&state, &context, None, Outcome::Refused, details).await?;
        return Err(error);
    }
    let agent_version = request.agent_version.as_deref();

    let device = match state.store.device_by_public_key(&public_key).await? {
        Some(device) => {
            let name = name.unwrap_or_else(|| device.id.clone());
            state
                .store
                .update_device_identity(&device.id, &request.id_data, &name, agent_version)
                .await?;
            device
        }
        None => {
            let provisioned = request
                .provisioning_key
                .as_deref()
                .is_some_and(|offered| provisioning_key_valid(&state, offered));
            if !provisioned {
                if let Err(why) = state.enrolment_limits.admit(context.client.ip()) {
                    tracing::warn!("refused a new device from {}: {why}", context.client);
                    let details = serde_json::json!({ "reason": why });
                    record(&state, &context, None, Outcome::Refused, details).await?;
                    return Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, why));
                }
                make_room_for_pending(&state, &context).await?;
            }
            let id = uuid::Uuid::now_v7().to_string();
            let device = DeviceRecord {
                name: name.unwrap_or_else(|| id.clone()),
                id,
                public_key,
                identity: request.id_data.clone(),
                status: DeviceStatus::Pending,
                agent_version: agent_version.map(str::to_owned),
                created_at: unix_millis(),
                last_seen_at: None,
                tags: Vec::new(),
                inventory: None,
            };
            state.store.insert_device(&device).await?;
            tracing::info!(
                "new device {} ({}, {} key) is pending acceptance",
                device.name,
                device.id,
                key.kind()
            );
            device
        }
    };

    if state.config.device_reported_tags
        && let Some(reported) = identity.get("tags").and_then(|v| v.as_str())
    {
        let tags: Vec<String> = reported
            .split(',')
            .map(str::trim)
            .filter(|tag| crate::domain::roles::valid_tag(tag).is_ok())
            .map(str::to_owned)
            .collect();
        let mut sorted = tags.clone();
        sorted.sort();
        sorted.dedup();
        if sorted != device.tags {
            state.store.set_device_tags(&device.id, &sorted).await?;
            tracing::info!("device {} reports its tags: {}", device.name, sorted.join(","));
            crate::service::roles::access_changed(
                &state,
                crate::domain::principal::Affected::Device(device.id.clone()),
            );
        }
    }

    let mut status = device.status;
    // A one-time enrolment token (the one-line install, see install_tokens.rs) accepts a pending
    // newcomer with the token's tags; a dead token leaves it pending.
    if let (DeviceStatus::Pending, Some(offered)) = (status, &request.enrolment_token) {
        if let Err(reason) = crate::http::install_tokens::enrol(&state, &context, &device, offered).await? {
            return Ok(refusal("invalid", reason));
        }
        status = DeviceStatus::Accepted;
    }
    let accepted_by_token = status != device.status;
    // The provisioning key only enrols pending newcomers: an accepted device is not refused for
    // a stale key, and a rejected device stays rejected (the key does not overrule an admin).
    if let (DeviceStatus::Pending, Some(offered)) = (status, &request.provisioning_key) {
        if !provisioning_key_valid(&state, offered) {
            tracing::warn!(
                "device {} ({}) presented an invalid provisioning key",
                device.name,
                device.id
            );
            let reason = "invalid provisioning key; the device stays pending";
            let details = serde_json::json!({ "status": "invalid", "reason": reason });
            record(&state, &context, Some(&device), Outcome::Refused, details).await?;
            return Ok(refusal("invalid", reason.into()));
        }
        state
            .store
            .set_device_status(&device.id, DeviceStatus::Accepted)
            .await?;
        tracing::info!(
            "device {} ({}) accepted by provisioning key",
            device.name,
            device.id
        );
        status = DeviceStatus::Accepted;
    }
    let outcome = if status == DeviceStatus::Accepted {
        Outcome::Success
    } else {
        Outcome::Refused
    };
    let details = serde_json::json!({
        "status": status.as_str(),
        "accepted_by_provisioning_key": status != device.status && !accepted_by_token,
        "accepted_by_enrolment_token": accepted_by_token,
        "identity": identity,
    });
    record(&state, &context, Some(&device), outcome, details).await?;
    Ok(match status {
        DeviceStatus::Accepted => {
            let token = state
                .tokens
                .issue_device_token(&device.id, state.config.device_token_lifetime_secs);
            (StatusCode::OK, token).into_response()
        }
        DeviceStatus::Pending => refusal(
            "pending",
            format!("device {} is pending acceptance by an administrator", device.id),
        ),
        DeviceStatus::Rejected => refusal(
            "rejected",
            format!("device {} was rejected by an administrator", device.id),
        ),
    })
}

fn provisioning_key_valid(state: &AppState, offered: &str) -> bool {
    state
        .config
        .provisioning_key
        .as_deref()
        .is_some_and(|expected| constant_time_equal(expected.as_bytes(), offered.as_bytes()))
}

fn constant_time_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
