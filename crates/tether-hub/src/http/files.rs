//! The hub's HTTP file API: download (`GET`, `HEAD`) and upload (`PUT`) of device files, streamed
//! both ways, at Mender's paths (`/api/management/v1/deviceconnect/devices/{id}/download?path=`
//! and `.../upload`, multipart with `path`, `uid`, `gid`, `mode`, `file`; a raw body with the
//! same fields as query parameters works too; downloads are in `file_download.rs`). The hub speaks the file transfer protocol to the
//! device itself: nothing is buffered whole, the device's window bounds what is in flight, and a
//! slow HTTP client slows the device down.

use std::{sync::Arc, time::Duration};

use axum::{
    body::Bytes,
    extract::{FromRequest, Multipart, Path, Query, Request, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use futures_util::{Stream, StreamExt as _};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tether_proto::{
    control::{Control, ErrorBody},
    file_transfer::{self, FileTransfer, PutFile, go_mode},
    protocol, version,
};

use crate::{
    domain::audit::Actor, domain::audit::NewEvent, domain::audit::Object, domain::audit::Outcome,
    domain::audit::RequestContext, domain::device::DeviceRecord, domain::device::DeviceStatus,
    domain::permissions::Action, domain::session_limits::SessionSlot, http::error::ApiError,
    http::extract::UserCaller, http::state::AppState, relay::router::Lane, relay::router::Router,
    relay::router::SessionEvent, relay::router::SessionLink, relay::user_leg::handshake,
    service::auth::permit,
};

pub use crate::http::file_download::download;

/// How long the device may stay silent in the middle of a transfer.
const DEVICE_TIMEOUT: Duration = Duration::from_secs(60);

/// A file-transfer session the hub opened on a device for one HTTP request.
pub(crate) struct DeviceSession {
    link: SessionLink,
    sid: String,
    pub(crate) version: u32,
    router: Arc<Router>,
    pub(crate) device_name: String,
    /// Its place under the hub's session caps, held for as long as the transfer runs.
    _slot: SessionSlot,
}

impl DeviceSession {
    pub(crate) async fn open(
        state: &AppState,
        device: &DeviceRecord,
        user_name: &str,
        slot: SessionSlot,
    ) -> Result<DeviceSession, ApiError> {
        let sid = uuid::Uuid::new_v4().to_string();
        let offline = || ApiError::new(StatusCode::CONFLICT, format!("device {} is offline", device.name));
        let mut link = state
            .router
            .open_session(&device.id, &sid)
            .await
            .ok_or_else(offline)?;
        let (_accept, version) = match handshake(&mut link, &sid, user_name, None).await {
            Ok(pair) => pair,
            Err(why) => {
                state.router.close_session(&sid).await;
                return Err(ApiError::new(StatusCode::BAD_GATEWAY, why));
            }
        };
        Ok(DeviceSession {
            link,
            sid,
            version,
            router: state.router.clone(),
            device_name: device.name.clone(),
            _slot: slot,
        })
    }

    pub(crate) async fn send(&self, message: &FileTransfer) -> Result<(), ApiError> {
        let lane = if matches!(message, FileTransfer::FileChunk { .. }) {
            Lane::Bulk
        } else {
            Lane::Interactive
        };
        if self.link.send(lane, message.to_envelope(&self.sid)).await {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("device {} disconnected", self.device_name),
            ))
        }
    }

    /// The device's next file-transfer message; its errors become HTTP errors.
    pub(crate) async fn next(&mut self) -> Result<FileTransfer, ApiError> {
        loop {
            let event = tokio::time::timeout(DEVICE_TIMEOUT, self.link.events.recv())
                .await
                .map_err(|_| {
                    ApiError::new(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!(
                            "device {} did not answer for {} s",
                            self.device_name,
                            DEVICE_TIMEOUT.as_secs()
                        ),
                    )
                })?;
            let envelope = match event {
                Some(SessionEvent::Message(envelope)) => envelope,
                Some(SessionEvent::DeviceGone(reason) | SessionEvent::DeviceKicked(reason)) => {
                    return Err(ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        format!("device {}: {reason}", self.device_name),
                    ));
                }
                Some(SessionEvent::Superseded) | None => {
                    return Err(ApiError::new(StatusCode::BAD_GATEWAY, "the device went away"));
                }
            };
            if envelope.proto == protocol::CONTROL {
                if let Ok(Control::Error(body)) = Control::from_envelope(&envelope) {
                    return Err(device_error(body));
                }
                continue;
            }
            if envelope.proto != protocol::FILE_TRANSFER {
                continue;
            }
            return match FileTransfer::from_envelope(&envelope) {
                Ok(FileTransfer::Error(body)) => Err(device_error(body)),
                Ok(message) => Ok(message),
                Err(error) => Err(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    format!("malformed message from the device: {error}"),
                )),
            };
        }
    }
}

impl Drop for DeviceSession {
    /// Ends the device's side (which deletes an unfinished upload's temporary file).
    fn drop(&mut self) {
        let close = Control::Close.to_envelope(&self.sid);
        let sender = self.link.sender(Lane::Interactive);
        let router = self.router.clone();
        let sid = std::mem::take(&mut self.sid);
        tokio::spawn(async move {
            let _ = sender.send(close).await;
            router.close_session(&sid).await;
        });
    }
}

/// The audit record of one HTTP transfer.
pub(crate) struct TransferEvent {
    pub(crate) state: AppState,
    pub(crate) actor: Actor,
    pub(crate) object: Object,
    pub(crate) path: String,
}

impl TransferEvent {
    pub(crate) async fn record(
        &self,
        action: &'static str,
        outcome: Outcome,
        details: serde_json::Value,
    ) -> Result<(), ApiError> {
        let event = NewEvent::new(self.actor.clone(), action, self.object.clone(), outcome).details(details);
        self.state.store.record_audit(event).await.map_err(ApiError::from)
    }

    /// Passes `result` through, recording a refusal or failure first.
    pub(crate) async fn refusal<T>(
        &self,
        action: &'static str,
        result: Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        if let Err(error) = &result {
            let outcome = if error.status == StatusCode::FORBIDDEN {
                Outcome::Refused
            } else {
                Outcome::Failure
            };
            let details = serde_json::json!({ "path": self.path, "reason": error.message });
            self.record(action, outcome, details).await?;
        }
        result
    }
}

/// Maps a device's refusal to an HTTP status: its `code` when it has one (Tether agents), or the
/// error text of a stock agent.
fn device_error(body: ErrorBody) -> ApiError {
    let status = body
        .code
        .and_then(|code| u16::try_from(code).ok())
        .filter(|code| (400..600).contains(code))
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or_else(|| {
            let text = body.err.to_ascii_lowercase();
            if text.contains("no such file") || text.contains("not found") {
                StatusCode::NOT_FOUND
            } else if text.contains("permission denied")
                || text.contains("not allowed")
                || text.contains("forbidden")
            {
                StatusCode::FORBIDDEN
            } else if text.contains("too large") {
                StatusCode::PAYLOAD_TOO_LARGE
            } else if text.contains("no space") {
                StatusCode::INSUFFICIENT_STORAGE
            } else {
                StatusCode::BAD_REQUEST
            }
        });
    ApiError::new(status, body.err)
}

pub(crate) async fn device_for(
    state: &AppState,
    caller: &UserCaller,
    context: &RequestContext,
    id: &str,
    action: Action,
) -> Result<DeviceRecord, ApiError> {
    let device = state
        .store
        .device(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no device with id {id}")))?;
    permit(state, &caller.0, context, action, Some(&device)).await?;
    Ok(device)
}

pub(crate) fn require_accepted(device: &DeviceRecord) -> Result<(), ApiError> {
    if device.status != DeviceStatus::Accepted {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("device {} is {}", device.name, device.status.as_str()),
        ));
    }
    Ok(())
}

/// What an upload carries besides its data.
#[derive(Debug, Default, Deserialize)]
pub struct UploadFields {
    path: Option<String>,
    uid: Option<u32>,
    gid: Option<u32>,
    /// Octal permission bits, e.g. `644` or `0644`.
    mode: Option<String>,
}

fn parse_mode(text: &str) -> Result<u32, ApiError> {
    u32::from_str_radix(text.trim().trim_start_matches("0o"), 8)
        .ok()
        .filter(|mode| *mode <= 0o7777)
        .ok_or_else(|| {
            ApiError::bad_request(format!("mode {text:?} is not octal permission bits such as 0644"))
        })
}

pub async fn upload(
    State(state): State<AppState>,
    caller: UserCaller,
    context: RequestContext,
    Path(id): Path<String>,
    Query(query): Query<UploadFields>,
    request: Request,
) -> Result<Response, ApiError> {
    let device = device_for(&state, &caller, &context, &id, Action::FileWrite).await?;
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
    fields: UploadFields,
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
    let user_name = event.actor.name.clone().unwrap_or_default();
    let result = upload_to_device(state, device, &user_name, fields, size, body, slot).await;
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
    let summary = serde_json::json!({ "path": path, "size": sent, "sha256": sha256 });
    Ok((StatusCode::CREATED, axum::Json(summary)).into_response())
}

/// Streams the upload to the device; returns the path, size and SHA-256 of what was written.
async fn upload_to_device<S, E>(
    state: &AppState,
    device: &DeviceRecord,
    user_name: &str,
    fields: UploadFields,
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
    let mut session = DeviceSession::open(state, device, user_name, slot).await?;
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
