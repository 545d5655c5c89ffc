//! `POST /api/devices/v1/authentication/auth_requests`: a device proves it holds its key and
//! gets a token once accepted (see `docs/protocol.md`, "Device authentication").

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use ed25519_dalek::{Verifier as _, VerifyingKey, pkcs8::DecodePublicKey as _};
use tether_proto::auth::{AuthRefusal, AuthRequest, SIGNATURE_HEADER};

use crate::{
    http_error::ApiError,
    state::AppState,
    store::{DeviceRecord, DeviceStatus, now_millis},
};

/// Checks the request's signature and returns the request and the device's public key.
fn verified_request(headers: &HeaderMap, body: &[u8]) -> Result<(AuthRequest, VerifyingKey), ApiError> {
    let signature = headers.get(SIGNATURE_HEADER).ok_or_else(|| {
        ApiError::bad_request(format!(
            "missing {SIGNATURE_HEADER} header (the request must be signed)"
        ))
    })?;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(signature.as_bytes())
        .map_err(|_| ApiError::bad_request(format!("{SIGNATURE_HEADER} is not base64")))?;
    let signature = ed25519_dalek::Signature::from_slice(&signature)
        .map_err(|_| ApiError::bad_request(format!("{SIGNATURE_HEADER} is not an Ed25519 signature")))?;
    let request: AuthRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid authentication request: {e}")))?;
    let key = VerifyingKey::from_public_key_pem(&request.pubkey)
        .map_err(|_| ApiError::bad_request("pubkey is not an Ed25519 public key in SPKI PEM form"))?;
    key.verify(body, &signature)
        .map_err(|_| ApiError::bad_request("signature does not match the request body and its public key"))?;
    Ok((request, key))
}

fn refusal(status: &str, error: String) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(AuthRefusal {
            error,
            status: status.to_owned(),
        }),
    )
        .into_response()
}

pub async fn auth_request(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (request, key) = verified_request(&headers, &body).inspect_err(|e| {
        tracing::warn!("refused a device authentication request: {}", e.message);
    })?;
    let identity: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&request.id_data)
        .map_err(|_| ApiError::bad_request("id_data must be a JSON object of identity attributes"))?;
    let public_key = hex::encode(key.as_bytes());
    let name = identity
        .get("hostname")
        .and_then(|v| v.as_str())
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
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
            let id = uuid::Uuid::now_v7().to_string();
            let device = DeviceRecord {
                name: name.unwrap_or_else(|| id.clone()),
                id,
                public_key,
                identity: request.id_data.clone(),
                status: DeviceStatus::Pending,
                agent_version: agent_version.map(str::to_owned),
                created_at: now_millis(),
                last_seen_at: None,
            };
            state.store.insert_device(&device).await?;
            tracing::info!("new device {} ({}) is pending acceptance", device.name, device.id);
            device
        }
    };

    let mut status = device.status;
    // The provisioning key only enrols pending newcomers: an accepted device is not refused for
    // a stale key, and a rejected device stays rejected (the key does not overrule an admin).
    if let (DeviceStatus::Pending, Some(offered)) = (status, &request.provisioning_key) {
        let valid = state
            .config
            .provisioning_key
            .as_deref()
            .is_some_and(|expected| constant_time_equal(expected.as_bytes(), offered.as_bytes()));
        if !valid {
            tracing::warn!(
                "device {} ({}) presented an invalid provisioning key",
                device.name,
                device.id
            );
            return Ok(refusal(
                "invalid",
                "invalid provisioning key; the device stays pending".into(),
            ));
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

fn constant_time_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
