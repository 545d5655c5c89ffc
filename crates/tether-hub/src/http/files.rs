//! Uploads through the hub's HTTP file API (`PUT`/`POST .../deviceconnect/devices/{id}/upload`,
//! Mender's path): multipart with `path`, `uid`, `gid`, `mode`, `file`, or a raw body with the
//! same fields as query parameters. Downloads are in `file_download.rs`, what both share in
//! `file_transfer.rs`. The hub speaks the file transfer protocol to the device itself: nothing is
//! buffered whole, the device's window bounds what is in flight, and a slow HTTP client slows the
//! device down.

use axum::{
    body::Bytes,
    extract::{FromRequest, Multipart, Path, Query, Request, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use futures_util::{Stream, StreamExt as _};
use sha2::{Digest as _, Sha256};
use tether_proto::{
    api,
    file_transfer::{self, FileTransfer, PutFile, go_mode},
    version,
};

use crate::{
    domain::audit::Actor, domain::audit::Object, domain::audit::Outcome, domain::audit::RequestContext,
    domain::device::DeviceRecord, domain::permissions::Action, domain::session_limits::SessionSlot,
    http::error::ApiError, http::extract::UserCaller, http::file_transfer::DeviceSession,
    http::file_transfer::TransferEvent, http::file_transfer::require_accepted, http::state::AppState,
    service::auth::permitted_device,
};

fn parse_mode(text: &str) -> Result<u32, ApiError> {
    u32::from_str_radix(text.trim().trim_start_matches("0o"), 8)
        .ok()
        .filter(|mode| *mode <= 0o7777)
        .ok_or_else(|| {
            ApiError::bad_request(format!("mode {text:?} is not octal permission bits such as 0644"))
        })
}

#[utoipa::path(
    method(put, post),
    path = &api::paths::device_upload_path("{id}"),
    tag = "files",
    params(("id" = String, Path, description = "The device id"), api::UploadFields),
    request_body(content = String, description = "A multipart form with a `file` field (and optionally `path` and `mode`), streamed to the device", content_type = "multipart/form-data"),
    responses((status = 201, description = "The file was written on the device", body = api::UploadSummary))
)]
pub async fn upload(
    State(state): State<AppState>,
    caller: UserCaller,
    context: RequestContext,
    Path(id): Path<String>,
    Query(query): Query<api::UploadFields>,
    request: Request,
) -> Result<Response, ApiError> {
    let device = permitted_device(&state, &caller.0, &context, &id, Action::FileWrite).await?;
    require_accepted(&device)?;
    let slot = crate::service::admission::admit(&state, &caller.0, &context, &device).await?;
    let event = TransferEvent {
        state: state.clone(),
        actor: Actor::principal(&caller.0, &context),
        object: Object::device(&device.id, &device.name),
        path: query.path.clone().unwrap_or_default(),
    };
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let size_hint = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    if !multipart {
        let body = request.into_body().into_data_stream();
        return send_file(&state, &device, query, size_hint, body, event, slot).await;
    }
    let mut form = Multipart::from_request(request, &state)
        .await
        .map_err(|e| ApiError::bad_request(format!("invalid multipart form: {e}")))?;
    let mut fields = query;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| ApiError::bad_request(format!("invalid multipart form: {e}")))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            // The file comes last (as in Mender's API): everything it needs is known by now.
            let stream = field.map(|chunk| chunk.map_err(std::io::Error::other));
            return send_file(&state, &device, fields, None, stream, event, slot).await;
        }
        let text = field
            .text()
            .await
            .map_err(|e| ApiError::bad_request(format!("form field {name}: {e}")))?;
        let number = |text: &str| {
            text.trim()
                .parse::<u32>()
                .map_err(|_| ApiError::bad_request(format!("form field {name} must be a number")))
        };
        match name.as_str() {
            "path" => fields.path = Some(text),
            "uid" => fields.uid = Some(number(&text)?),
            "gid" => fields.gid = Some(number(&text)?),
            "mode" => fields.mode = Some(text),
            _ => {}
        }
    }
    Err(ApiError::bad_request("the multipart form has no `file` field"))
}

/// Sends a stream of bytes to the device as `put_file`, within the device's window.
async fn send_file<S, E>(
    state: &AppState,
    device: &DeviceRecord,
    fields: api::UploadFields,
    size: Option<i64>,
    body: S,
    mut event: TransferEvent,
    slot: SessionSlot,
) -> Result<Response, ApiError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    event.path = fields.path.clone().unwrap_or_default();
    let result = upload_to_device(state, device, &event.actor, fields, size, body, slot).await;
    match &result {
        Ok((path, sent, sha256)) => {
            let details = serde_json::json!({ "path": path, "size": sent, "sha256": sha256 });
            event.record("file.upload", Outcome::Success, details).await?;
        }
        Err(error) => {
            let outcome = if error.status == StatusCode::FORBIDDEN {
                Outcome::Refused
            } else {
                Outcome::Failure
            };
            let details = serde_json::json!({ "path": event.path, "reason": error.message });
            event.record("file.upload", outcome, details).await?;
        }
    }
    let (path, sent, sha256) = result?;
    let summary = api::UploadSummary {
        path,
        size: sent,
        sha256,
    };
    Ok((StatusCode::CREATED, axum::Json(summary)).into_response())
}

/// Streams the upload to the device; returns the path, size and SHA-256 of what was written.
async fn upload_to_device<S, E>(
    state: &AppState,
    device: &DeviceRecord,
    actor: &Actor,
    fields: api::UploadFields,
    size: Option<i64>,
    body: S,
    slot: SessionSlot,
) -> Result<(String, i64, String), ApiError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let path = fields
        .path
        .clone()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ApiError::bad_request("missing `path`"))?;
    let mode = fields.mode.as_deref().map(parse_mode).transpose()?;
    let user_name = actor.name.clone().unwrap_or_default();
    let mut session = DeviceSession::open(state, device, &user_name, slot).await?;
    let tether = session.version >= version::TETHER;
    let (chunk_size, window) = if tether {
        (file_transfer::MAX_CHUNK, file_transfer::WINDOW_BYTES as i64)
    } else {
        let chunk = file_transfer::VERSION_1_CHUNK;
        (chunk, (chunk * file_transfer::VERSION_1_WINDOW_CHUNKS) as i64)
    };
    let request = PutFile {
        path: path.clone(),
        size,
        uid: fields.uid,
        gid: fields.gid,
        mode: mode.map(|bits| go_mode::from_unix(0o100000 | bits)),
        upload_id: tether.then(|| uuid::Uuid::new_v4().simple().to_string()),
        ..Default::default()
    };
    session.send(&FileTransfer::PutFile(request)).await?;
    expect_ack(&mut session).await?;
    session.list(state, actor, device, true, &path).await;

    let mut hasher = Sha256::new();
    let mut sent: i64 = 0;
    let mut acknowledged: i64 = 0;
    let mut pending = Vec::with_capacity(chunk_size);
    let mut body = body;
    let mut body_done = false;
    while !body_done || !pending.is_empty() {
        // Fill one chunk from the request body.
        while !body_done && pending.len() < chunk_size {
            match body.next().await {
                Some(Ok(bytes)) => pending.extend_from_slice(&bytes),
                Some(Err(error)) => {
                    return Err(ApiError::bad_request(format!("reading the upload: {error}")));
                }
                None => body_done = true,
            }
        }
        while !pending.is_empty() {
            // Wait for the device to catch up before exceeding its window.
            while sent - acknowledged >= window {
                acknowledged = acknowledged.max(expect_ack(&mut session).await?);
            }
            let take = pending.len().min(chunk_size);
            if take < chunk_size && !body_done {
                break;
            }
            let data: Vec<u8> = pending.drain(..take).collect();
            hasher.update(&data);
            let length = data.len() as i64;
            session
                .send(&FileTransfer::FileChunk {
                    offset: sent,
                    data,
                    sha256: None,
                })
                .await?;
            sent += length;
        }
    }
    let sha256 = hex::encode(hasher.finalize());
    session
        .send(&FileTransfer::FileChunk {
            offset: sent,
            data: Vec::new(),
            sha256: tether.then(|| sha256.clone()),
        })
        .await?;
    while acknowledged < sent || sent == 0 {
        acknowledged = expect_ack(&mut session).await?;
        if sent == 0 {
            break;
        }
    }
    tracing::info!("upload of {path} ({sent} bytes) to device {} done", device.name);
    Ok((path, sent, sha256))
}

async fn expect_ack(session: &mut DeviceSession) -> Result<i64, ApiError> {
    match session.next().await? {
        FileTransfer::Ack { offset } => Ok(offset),
        other => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("unexpected `{}` from the device", other.typ()),
        )),
    }
}
