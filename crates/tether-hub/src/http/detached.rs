//! `GET /api/management/v1/sessions/detached`: terminals whose operator left without ending
//! them (a dropped connection, a closed laptop lid), which the device keeps for its grace period
//! and the owner can re-attach (`?attach=SID` on the session WebSocket). Users see their own;
//! those who may view every recording see everyone's.

use axum::{Json, extract::State};
use tether_proto::{api, clock::unix_millis};

use crate::{
    http::error::ApiError, http::extract::UserCaller, http::sessions::own_sessions_only,
    http::state::AppState,
};

#[utoipa::path(
    get,
    path = api::paths::DETACHED_SESSIONS_PATH,
    tag = "sessions",
    responses((status = 200, description = "The caller's detached terminals, which can be re-attached", body = api::DetachedList))
)]
pub async fn list(
    State(state): State<AppState>,
    UserCaller(principal): UserCaller,
) -> Result<Json<api::DetachedList>, ApiError> {
    let user = own_sessions_only(&principal);
    let grace = (state.config.terminal_grace_period_secs as i64).saturating_mul(1000);
    let since = unix_millis() - grace;
    let rows = state.store.detached_sessions(user.as_deref(), since).await?;
    let mut sessions = Vec::with_capacity(rows.len());
    for row in rows {
        let device_name = state
            .store
            .device(&row.device_id)
            .await?
            .map(|device| device.name)
            .unwrap_or_default();
        let detached_at = row.detached_at.unwrap_or(row.created_at);
        sessions.push(api::DetachedSession {
            sid: row.sid,
            device_id: row.device_id,
            device_name,
            user_id: row.user_id,
            created_at: row.created_at,
            detached_at,
            expires_at: detached_at + grace,
        });
    }
    Ok(Json(api::DetachedList { sessions }))
}
