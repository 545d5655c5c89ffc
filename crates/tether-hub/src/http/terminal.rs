//! The user leg's upgrade: `GET /api/management/v1/deviceconnect/devices/{id}/connect`. The
//! caller is authenticated and admitted here (a session feature on the device, a free session
//! slot, the owner of a detached shell); the session itself runs in [`crate::relay::user_leg`].

use axum::{
    extract::{Path, Query, State, ws::WebSocketUpgrade},
    http::StatusCode,
    response::Response,
};
use tether_proto::api;

use crate::{
    domain::audit::RequestContext, domain::device::DeviceStatus, domain::permissions::Action,
    domain::principal::Principal, domain::principal::authorize_quietly, http::error::ApiError,
    http::extract::UserCaller, http::state::AppState, relay::user_leg::serve, service::auth::permit,
};

#[utoipa::path(
    get,
    path = &api::user_connect_path("{id}"),
    tag = "terminals",
    params(("id" = String, Path, description = "The device id"), api::AttachQuery),
    responses((status = 101, description = "A WebSocket to the device (the Mender protocol: shell, files, forwards); closing it with code 4001 detaches an interactive shell, kept for `?attach=`"))
)]
pub async fn connect(
    State(state): State<AppState>,
    UserCaller(principal): UserCaller,
    context: RequestContext,
    Path(device_id): Path<String>,
    // `?attach=SID&offset=N`: re-attach to a detached terminal, replaying from byte N.
    Query(query): Query<api::AttachQuery>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let device = state
        .store
        .device(&device_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no device with id {device_id}")))?;
    // The upgrade needs at least one session feature; each message is authorized below.
    let features = [
        Action::Terminal,
        Action::FileRead,
        Action::FileWrite,
        Action::PortForward,
    ];
    if !features
        .iter()
        .any(|action| authorize_quietly(&principal, *action, &device))
    {
        permit(&state, &principal, &context, Action::Terminal, Some(&device)).await?;
    }
    if device.status != DeviceStatus::Accepted {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("device {} is {}", device.name, device.status.as_str()),
        ));
    }
    if !state.router.is_online(&device.id).await {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("device {} is offline", device.name),
        ));
    }
    let Principal::User { user, .. } = &principal else {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "only users open sessions"));
    };
    let resume = match &query.attach {
        Some(sid) => {
            // Re-attaching shows the terminal: the terminal permission, checked and audited.
            permit(&state, &principal, &context, Action::Terminal, Some(&device)).await?;
            let session = state.store.resumable_session(sid).await?;
            let session = session
                .filter(|session| session.device_id == device.id && session.ended_at.is_none())
                .ok_or_else(|| {
                    ApiError::not_found(format!("no detached session {sid} on device {}", device.name))
                })?;
            // Only the owner: the shell runs with what they typed, under their name in the audit.
            if session.user_id != user.id {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!("session {sid} belongs to another user"),
                ));
            }
            Some((sid.clone(), query.offset))
        }
        None => None,
    };
    let slot = crate::service::admission::admit(&state, &principal, &context, &device).await?;
    Ok(upgrade
        .max_message_size(state.config.max_user_frame_bytes)
        .on_upgrade(move |socket| async move {
            let _slot = slot;
            let (sid, resume) = match resume {
                Some((sid, offset)) => (sid, Some(offset)),
                None => (uuid::Uuid::new_v4().to_string(), None),
            };
            tracing::info!(
                "session {sid}: {} on device {} from {}",
                principal.describe(),
                device.name,
                context.client
            );
            let reason = serve(&state, &device, &principal, &context, &sid, resume, socket).await;
            tracing::info!("session {sid} ended: {reason}");
        }))
}
