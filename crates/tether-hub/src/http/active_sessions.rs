//! `GET /api/management/v1/sessions/active`: every session running now, of every kind and on
//! every replica (it reads the store): terminals and commands from `open_terminals`, file
//! transfers and port forwards from `active_sessions` (migration 0019). Visibility is that of
//! the sessions list: who may view recordings sees everyone's, other users their own.

use axum::{Json, extract::State};
use tether_proto::api;

use crate::{
    http::error::ApiError,
    http::extract::UserCaller,
    http::sessions::own_sessions_only,
    http::state::AppState,
    store::active_sessions::{ActiveSessionRecord, ActivityDetail, LiveTerminal},
};

/// The most sessions one answer lists.
const MAX_LISTED: usize = 1000;

#[utoipa::path(
    get,
    path = api::paths::ACTIVE_SESSIONS_PATH,
    tag = "sessions",
    responses((status = 200, description = "Every live session the caller may see (their own, or everyone's for those who may view recordings), oldest first, at most 1000", body = api::ActiveSessionList))
)]
pub async fn list(
    State(state): State<AppState>,
    UserCaller(principal): UserCaller,
) -> Result<Json<api::ActiveSessionList>, ApiError> {
    let user = own_sessions_only(&principal);
    // One more than listed of each: whether anything was left out.
    let limit = MAX_LISTED as i64 + 1;
    let terminals = state.store.live_terminals(user.as_deref(), limit).await?;
    let others = state.store.active_sessions(user.as_deref(), limit).await?;
    let mut sessions: Vec<api::ActiveSession> = terminals
        .into_iter()
        .map(terminal)
        .chain(others.into_iter().map(activity))
        .collect();
    sessions.sort_by(|a, b| (a.started_at, &a.sid).cmp(&(b.started_at, &b.sid)));
    let truncated = sessions.len() > MAX_LISTED;
    sessions.truncate(MAX_LISTED);
    Ok(Json(api::ActiveSessionList { sessions, truncated }))
}

fn terminal(row: LiveTerminal) -> api::ActiveSession {
    let kind = match row.command {
        Some(_) => api::ActiveSessionKind::Command,
        None => api::ActiveSessionKind::Terminal,
    };
    api::ActiveSession {
        sid: row.sid,
        kind,
        detail: row.command,
        user_id: row.user_id,
        user_name: row.user_name,
        device_id: row.device_id,
        device_name: row.device_name,
        started_at: row.opened_at,
        watch_sid: row.recording_sid,
    }
}

fn activity(row: ActiveSessionRecord) -> api::ActiveSession {
    let (kind, detail) = match row.detail {
        ActivityDetail::FileTransfer { upload: true, path } => (api::ActiveSessionKind::FileUpload, path),
        ActivityDetail::FileTransfer { upload: false, path } => (api::ActiveSessionKind::FileDownload, path),
        ActivityDetail::PortForward { targets } => {
            let targets: Vec<String> = targets
                .iter()
                .map(|target| format!("{} {}", target.protocol.to_uppercase(), target.target))
                .collect();
            (api::ActiveSessionKind::PortForward, targets.join(", "))
        }
    };
    api::ActiveSession {
        sid: row.sid,
        kind,
        detail: Some(detail),
        user_id: row.user_id,
        user_name: row.user_name,
        device_id: row.device_id,
        device_name: row.device_name,
        started_at: row.started_at,
        watch_sid: None,
    }
}
