//! Directory listings through the HTTP file API (`GET /devices/{id}/files?path=DIR`, what the
//! web UI's file browser shows): the device's version-2 `list`, with the permission, admission
//! and audit of a download (`file_read`, one `file.list` event per request). The path is checked
//! here first (absolute, no `..`), then confined by the device (`file_transfer.roots`).

use axum::{
    Json,
    extract::{Path, Query, State},
    http::StatusCode,
};
use tether_proto::{
    api,
    file_transfer::{FileInfo, FileTransfer, go_mode},
    version,
};

use crate::{
    domain::audit::Actor, domain::audit::Object, domain::audit::Outcome, domain::audit::RequestContext,
    domain::device::DeviceRecord, domain::permissions::Action, domain::session_limits::SessionSlot,
    http::error::ApiError, http::extract::UserCaller, http::file_transfer::DeviceSession,
    http::file_transfer::TransferEvent, http::file_transfer::require_accepted, http::state::AppState,
    service::auth::permitted_device,
};

/// Refuses a path that is not absolute or climbs with `..` (the device would confine it too;
/// saying so here is clearer and costs the device nothing).
pub(crate) fn check_path(path: &str) -> Result<(), ApiError> {
    let bad = |why: &str| Err(ApiError::bad_request(format!("path {path:?} {why}")));
    if path.contains('\0') {
        return bad("contains a NUL byte");
    }
    if !path.starts_with('/') {
        return bad("is not absolute (start it with /, e.g. /data)");
    }
    if path.split('/').any(|segment| segment == "..") {
        return bad("climbs with `..`: give the directory itself");
    }
    Ok(())
}

fn entry(info: FileInfo, directory: &str) -> api::FileEntry {
    // A version-2 agent names entries by their path; keep the last segment as the name.
    let name = info.path.rsplit('/').next().unwrap_or_default().to_owned();
    let path = if info.path.starts_with('/') {
        info.path.clone()
    } else {
        format!("{}/{}", directory.trim_end_matches('/'), info.path)
    };
    api::FileEntry {
        name,
        path,
        kind: go_mode::kind(info.mode).to_owned(),
        size: info.size,
        mode: format!("{:o}", go_mode::to_unix_permissions(info.mode)),
        uid: info.uid,
        gid: info.gid,
        modified: info.modtime.0,
    }
}

#[utoipa::path(
    get,
    path = &api::paths::device_files_path("{id}"),
    tag = "files",
    params(("id" = String, Path, description = "The device id"), api::ListQuery),
    responses(
        (status = 200, description = "The directory's entries, in name order", body = api::FileListing),
        (status = 400, description = "The path is not absolute or climbs with `..`", body = api::ApiError),
        (status = 403, description = "Refused by the caller's permissions or the device's policy (file_transfer.roots)", body = api::ApiError),
        (status = 404, description = "No such device or directory", body = api::ApiError),
        (status = 409, description = "The device is offline, not accepted, or its agent cannot list", body = api::ApiError)
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: UserCaller,
    context: RequestContext,
    Path(id): Path<String>,
    Query(query): Query<api::ListQuery>,
) -> Result<Json<api::FileListing>, ApiError> {
    let device = permitted_device(&state, &caller.0, &context, &id, Action::FileRead).await?;
    let event = TransferEvent {
        state: state.clone(),
        actor: Actor::principal(&caller.0, &context),
        object: Object::device(&device.id, &device.name),
        path: query.path.clone(),
    };
    event.refusal("file.list", check_path(&query.path)).await?;
    let slot = crate::service::admission::admit(&state, &caller.0, &context, &device).await?;
    let listed = list_on_device(&state, &device, &event, &query.path, slot).await;
    let listing = event.refusal("file.list", listed).await?;
    let details = serde_json::json!({ "path": listing.path, "entries": listing.entries.len() });
    event.record("file.list", Outcome::Success, details).await?;
    Ok(Json(listing))
}

async fn list_on_device(
    state: &AppState,
    device: &DeviceRecord,
    event: &TransferEvent,
    path: &str,
    slot: SessionSlot,
) -> Result<api::FileListing, ApiError> {
    require_accepted(device)?;
    let user_name = event.actor.name.clone().unwrap_or_default();
    let mut session = DeviceSession::open(state, device, &user_name, slot).await?;
    if session.version < version::TETHER {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "device {} cannot list directories: its agent speaks file transfer version 1 (a stock mender-connect)",
                device.name
            ),
        ));
    }
    session
        .send(&FileTransfer::List {
            path: path.to_owned(),
        })
        .await?;
    match session.next().await? {
        FileTransfer::FileList { path, entries } => Ok(api::FileListing {
            entries: entries.into_iter().map(|info| entry(info, &path)).collect(),
            path,
        }),
        other => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("unexpected `{}` from the device", other.typ()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::check_path;

    #[test]
    fn paths_must_be_absolute_without_climbing() {
        assert!(check_path("/data").is_ok());
        assert!(check_path("/data/logs/").is_ok());
        assert!(check_path("/").is_ok());
        for bad in ["data", "", "/data/../etc", "/..", "../x", "/data/\0x"] {
            let error = check_path(bad).unwrap_err();
            assert_eq!(error.status, axum::http::StatusCode::BAD_REQUEST, "{bad:?}");
            assert!(error.message.contains("path"), "{}", error.message);
        }
    }
}
