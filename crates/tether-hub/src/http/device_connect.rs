//! The device leg's upgrade: `GET /api/devices/v1/deviceconnect/connect`. The device's token
//! is checked here (and a refusal audited); the connection itself runs in
//! [`crate::relay::device_leg`].

use axum::{
    extract::{State, ws::WebSocketUpgrade},
    http::{HeaderMap, StatusCode},
    response::Response,
};

use crate::{
    domain::audit::NewEvent, domain::audit::Object, domain::audit::Outcome, domain::audit::RequestContext,
    domain::device::DeviceRecord, domain::device::DeviceStatus, domain::permissions::Action,
    domain::principal::Principal, domain::principal::authorize, http::error::ApiError,
    http::extract::bearer_token, http::state::AppState, relay::device_leg::serve,
};

/// The read buffer of one device WebSocket: one maximal TLS record.
const DEVICE_READ_BUFFER: usize = 4 * 1024;

pub async fn connect(
    State(state): State<AppState>,
    context: RequestContext,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let device = match authenticate(&state, &headers).await {
        Ok(device) => device,
        Err((device, why)) => {
            tracing::warn!("refused a device connection from {}: {why}", context.client);
            let mut actor = context.actor("device");
            actor.id = device.as_ref().map(|d| d.id.clone());
            let object = device
                .as_ref()
                .map(|d| Object::device(&d.id, &d.name))
                .unwrap_or_else(Object::none);
            let event = NewEvent::new(actor, "device.connect", object, Outcome::Refused)
                .details(serde_json::json!({ "reason": why }));
            state.store.record_audit(event).await?;
            crate::metrics::metrics().auth_failed("device");
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, why));
        }
    };
    let limit = state.config.max_device_frame_bytes;
    let client = context.client;
    Ok(upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        // Idle devices dominate a hub's memory: read one TLS record at a time instead of
        // tungstenite's default 128 KiB per connection (larger frames still assemble).
        .read_buffer_size(DEVICE_READ_BUFFER)
        .on_upgrade(move |socket| serve(state.relay.clone(), device, socket, client)))
}

/// The device behind a request's token, if it may hold its device leg; otherwise the device (when
/// known) and why not.
async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<DeviceRecord, (Option<DeviceRecord>, String)> {
    let token = bearer_token(headers).ok_or((None, "missing device token".to_owned()))?;
    let claims = state
        .tokens
        .verify_device_token(token)
        .map_err(|e| (None, format!("invalid device token: {e}")))?;
    let device = match state.store.device(&claims.sub).await {
        Ok(Some(device)) => device,
        Ok(None) => return Err((None, format!("device {} is not known (removed?)", claims.sub))),
        Err(error) => return Err((None, format!("database error: {error:#}"))),
    };
    let principal = Principal::Device {
        device_id: claims.sub.clone(),
    };
    if authorize(&principal, Action::ConnectAsDevice, Some(&device)).is_err() {
        return Err((Some(device), "this token does not grant the device leg".into()));
    }
    if device.status != DeviceStatus::Accepted {
        let why = format!("device {} is {}", device.id, device.status.as_str());
        return Err((Some(device), why));
    }
    Ok(device)
}
