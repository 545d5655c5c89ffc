//! The hub's HTTP file API: download (`GET`, `HEAD`) and upload (`PUT`) of device files, streamed
//! both ways, at Mender's paths (`/api/management/v1/deviceconnect/devices/{id}/download?path=`
//! and `.../upload`, multipart with `path`, `uid`, `gid`, `mode`, `file`; a raw body with the
//! same fields as query parameters works too). The hub speaks the file transfer protocol to the
//! device itself: nothing is buffered whole, the device's window bounds what is in flight, and a
//! slow HTTP client slows the device down.

use std::{sync::Arc, time::Duration};

use axum::{
    body::{Body, Bytes},
    extract::{FromRequest, Multipart, Path, Query, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures_util::{Stream, StreamExt as _};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tether_proto::{
    control::{Control, ErrorBody},
    file_transfer::{self, FileInfo, FileTransfer, PutFile, go_mode},
    protocol, version,
};

use crate::{
    audit::{self, Actor, NewEvent, Object, Outcome, RequestContext},
    auth::{Action, UserCaller, permit},
    http_error::ApiError,
    router::{Lane, Router, SessionEvent, SessionLink},
    state::AppState,
    store::{DeviceRecord, DeviceStatus},
    user_session::handshake,
};

/// How long the device may stay silent in the middle of a transfer.
const DEVICE_TIMEOUT: Duration = Duration::from_secs(60);
/// Version-2 downloads are acknowledged at least this often.
const ACK_EVERY: i64 = 1 << 20;

/// A file-transfer session the hub opened on a device for one HTTP request.
struct DeviceSession {
    link: SessionLink,
    sid: String,
    version: u32,
    router: Arc<Router>,
    device_name: String,
}

impl DeviceSession {
    async fn open(
        state: &AppState,
        device: &DeviceRecord,
        user_name: &str,
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
        })
    }

    async fn send(&self, message: &FileTransfer) -> Result<(), ApiError> {
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
    async fn next(&mut self) -> Result<FileTransfer, ApiError> {
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
struct TransferEvent {
    state: AppState,
    actor: Actor,
    object: Object,
    path: String,
}

impl TransferEvent {
    async fn record(
        &self,
        action: &'static str,
        outcome: Outcome,
        details: serde_json::Value,
    ) -> Result<(), ApiError> {
        let event = NewEvent::new(self.actor.clone(), action, self.object.clone(), outcome).details(details);
        audit::record(&self.state, event).await
    }

    /// Passes `result` through, recording a refusal or failure first.
    async fn refusal<T>(&self, action: &'static str, result: Result<T, ApiError>) -> Result<T, ApiError> {
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

async fn device_for(
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

fn require_accepted(device: &DeviceRecord) -> Result<(), ApiError> {
    if device.status != DeviceStatus::Accepted {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("device {} is {}", device.name, device.status.as_str()),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
pub struct PathQuery {
    path: String,
}

fn header_value(text: impl ToString) -> HeaderValue {
    HeaderValue::from_str(&text.to_string()).unwrap_or_else(|_| HeaderValue::from_static("?"))
}

/// Mender's file headers, plus the usual HTTP ones.
fn file_headers(info: &FileInfo, headers: &mut HeaderMap) {
    let name = info.path.rsplit('/').next().unwrap_or("file").replace('"', "");
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        header_value(format!("attachment; filename=\"{name}\"")),
    );
    headers.insert("X-MEN-File-Path", header_value(&info.path));
    headers.insert("X-MEN-File-UID", header_value(info.uid));
    headers.insert("X-MEN-File-GID", header_value(info.gid));
    headers.insert(
        "X-MEN-File-Mode",
        header_value(format!("{:o}", go_mode::to_unix_permissions(info.mode))),
    );
    headers.insert("X-MEN-File-Size", header_value(info.size));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
}

/// `Range: bytes=N-` (the only form resuming clients need).
fn range_start(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(header::RANGE) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default();
    let start = text
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<i64>().ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "only `Range: bytes=N-` is supported",
            )
        })?;
    Ok(Some(start))
}

/// `GET`/`HEAD .../download`. Each request is one audit event, whatever its end: a `GET` is one
/// `file.download` (success with the bytes sent and, for a whole file, the SHA-256; or failure or
/// refusal with the reason), a `HEAD` one `file.stat` (it reads the file's metadata only). A
/// request without the permission is the `authorization` refusal of [`permit`] instead.
pub async fn download(
    State(state): State<AppState>,
    caller: UserCaller,
    context: RequestContext,
    method: Method,
    Path(id): Path<String>,
    Query(query): Query<PathQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let device = device_for(&state, &caller, &context, &id, Action::FileRead).await?;
    let action = if method == Method::HEAD {
        "file.stat"
    } else {
        "file.download"
    };
    let event = TransferEvent {
        state: state.clone(),
        actor: Actor::principal(&caller.0, &context),
        object: Object::device(&device.id, &device.name),
        path: query.path.clone(),
    };
    let prepared = prepare_download(
        &state,
        &device,
        &event,
        &query.path,
        &headers,
        method == Method::HEAD,
    )
    .await;
    let prepared = event.refusal(action, prepared).await?;
    let Prepared {
        status,
        headers: response_headers,
        session,
        info,
        start,
    } = prepared;
    if method == Method::HEAD || info.size == start {
        // Nothing to stream: the event is complete now (the empty body's SHA-256 when whole).
        let whole = start == 0;
        let details = serde_json::json!({
            "path": event.path,
            "size": info.size,
            "bytes_sent": 0,
            "sha256": (action == "file.download" && whole).then(|| hex::encode(Sha256::digest(b""))),
        });
        event.record(action, Outcome::Success, details).await?;
        return Ok((status, response_headers).into_response());
    }
    tracing::info!("download of {} from device {} started", info.path, device.name);
    let body = Body::from_stream(download_stream(session, start, info.size, event));
    Ok((status, response_headers, body).into_response())
}

/// A download ready to stream: the device session, the file and the response's head.
struct Prepared {
    status: StatusCode,
    headers: HeaderMap,
    session: DeviceSession,
    info: FileInfo,
    start: i64,
}

/// Everything before the first byte: the device's `stat`, the checks, and (for a `GET` with bytes
/// to send) the `get_file` request.
async fn prepare_download(
    state: &AppState,
    device: &DeviceRecord,
    event: &TransferEvent,
    path: &str,
    headers: &HeaderMap,
    head_only: bool,
) -> Result<Prepared, ApiError> {
    require_accepted(device)?;
    let user_name = event.actor.name.clone().unwrap_or_default();
    let mut session = DeviceSession::open(state, device, &user_name).await?;
    session
        .send(&FileTransfer::Stat {
            path: path.to_owned(),
        })
        .await?;
    let info = match session.next().await? {
        FileTransfer::FileInfo(info) => info,
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("unexpected `{}` from the device", other.typ()),
            ));
        }
    };
    if info.mode & go_mode::DIRECTORY != 0 {
        return Err(ApiError::bad_request(format!("{} is a directory", info.path)));
    }
    let start = range_start(headers)?.unwrap_or(0);
    if start > info.size || (start > 0 && session.version < version::TETHER) {
        return Err(ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "cannot resume here (beyond the end, or the device's agent cannot resume)",
        ));
    }
    let mut response_headers = HeaderMap::new();
    file_headers(&info, &mut response_headers);
    response_headers.insert(header::CONTENT_LENGTH, header_value(info.size - start));
    let status = if start > 0 {
        response_headers.insert(
            header::CONTENT_RANGE,
            header_value(format!("bytes {start}-{}/{}", info.size - 1, info.size)),
        );
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    if !head_only && info.size > start {
        let offset = (start > 0).then_some(start);
        session
            .send(&FileTransfer::GetFile {
                path: info.path.clone(),
                offset,
            })
            .await?;
    }
    Ok(Prepared {
        status,
        headers: response_headers,
        session,
        info,
        start,
    })
}

/// A download's progress as its stream is polled. Its event is recorded exactly once: on success
/// before the last chunk is released, on a failure as it happens, and when the HTTP client goes
/// away first, as the stream is dropped.
struct Progress {
    session: DeviceSession,
    start: i64,
    size: i64,
    received: i64,
    acknowledged: i64,
    hasher: Option<Sha256>,
    /// The event was recorded (or is being): nothing more is sent.
    done: bool,
    event: TransferEvent,
}

type Step = Option<(Result<Bytes, std::io::Error>, Progress)>;

impl Progress {
    async fn failed(mut self, why: String) -> Step {
        tracing::warn!("download from device {} failed: {why}", self.session.device_name);
        self.done = true;
        let details = serde_json::json!({ "path": self.event.path, "bytes_sent": self.received - self.start, "reason": why });
        let _ = self
            .event
            .record("file.download", Outcome::Failure, details)
            .await;
        Some((Err(std::io::Error::other(why)), self))
    }

    async fn acknowledge(&mut self) -> Result<(), ApiError> {
        self.acknowledged = self.received;
        self.session
            .send(&FileTransfer::Ack {
                offset: self.received,
            })
            .await
    }

    /// The file's last bytes arrived: waits for the device's end of file (with its checksum),
    /// records the event, and only then releases `last` to the client.
    async fn finish(mut self, last: Vec<u8>) -> Step {
        if self.acknowledged < self.received
            && let Err(error) = self.acknowledge().await
        {
            return self.failed(error.message).await;
        }
        let (offset, sha256) = match self.session.next().await {
            Ok(FileTransfer::FileChunk { offset, data, sha256 }) if data.is_empty() => (offset, sha256),
            Ok(FileTransfer::FileChunk { data, .. }) => {
                let why = format!(
                    "the file grew during the download (beyond {} bytes)",
                    self.size + data.len() as i64
                );
                return self.failed(why).await;
            }
            Ok(other) => {
                return self
                    .failed(format!("unexpected `{}` during a download", other.typ()))
                    .await;
            }
            Err(error) => return self.failed(error.message).await,
        };
        if offset != self.size {
            let why = format!(
                "the device ended the file at {offset} bytes, expected {}",
                self.size
            );
            return self.failed(why).await;
        }
        let mut checksum = None;
        if let Some(hasher) = self.hasher.take() {
            let actual = hex::encode(hasher.finalize());
            if let Some(expected) = sha256
                && actual != expected
            {
                return self
                    .failed(format!(
                        "checksum mismatch: device says {expected}, received {actual}"
                    ))
                    .await;
            }
            checksum = Some(actual);
        }
        self.done = true;
        let details = serde_json::json!({
            "path": self.event.path,
            "size": self.size,
            "bytes_sent": self.size - self.start,
            "sha256": checksum,
        });
        // Fail closed: without its event the client never gets a complete body.
        if let Err(error) = self
            .event
            .record("file.download", Outcome::Success, details)
            .await
        {
            tracing::warn!(
                "download from device {}: {}",
                self.session.device_name,
                error.message
            );
            return Some((Err(std::io::Error::other(error.message)), self));
        }
        Some((Ok(Bytes::from(last)), self))
    }
}

impl Drop for Progress {
    /// The HTTP client went away before the end: the download is recorded as failed.
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let event = TransferEvent {
            state: self.event.state.clone(),
            actor: self.event.actor.clone(),
            object: self.event.object.clone(),
            path: self.event.path.clone(),
        };
        let details = serde_json::json!({
            "path": event.path,
            "bytes_sent": self.received - self.start,
            "reason": "the HTTP client closed the connection before the end",
        });
        tokio::spawn(async move {
            let _ = event.record("file.download", Outcome::Failure, details).await;
        });
    }
}

/// Streams `get_file` chunks as they come, acknowledging as the HTTP client takes them.
fn download_stream(
    session: DeviceSession,
    start: i64,
    size: i64,
    event: TransferEvent,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    let progress = Progress {
        session,
        start,
        size,
        received: start,
        acknowledged: start,
        // The device's checksum covers the whole file: only a whole download can check it.
        hasher: (start == 0).then(Sha256::new),
        done: false,
        event,
    };
    futures_util::stream::unfold(progress, move |mut p| async move {
        if p.done {
            return None;
        }
        let message = match p.session.next().await {
            Ok(message) => message,
            Err(error) => return p.failed(error.message).await,
        };
        let FileTransfer::FileChunk { offset, data, .. } = message else {
            return p
                .failed(format!("unexpected `{}` during a download", message.typ()))
                .await;
        };
        if offset != p.received {
            let why = format!("the device sent offset {offset}, expected {}", p.received);
            return p.failed(why).await;
        }
        if data.is_empty() {
            let why = format!("the file changed size during the download ({size} → {offset} bytes)");
            return p.failed(why).await;
        }
        p.received += data.len() as i64;
        if p.received > size {
            let why = format!("the file grew during the download (beyond {size} bytes)");
            return p.failed(why).await;
        }
        if let Some(hasher) = &mut p.hasher {
            hasher.update(&data);
        }
        if p.received == size {
            return p.finish(data).await;
        }
        if (p.session.version == version::MENDER || p.received - p.acknowledged >= ACK_EVERY)
            && let Err(error) = p.acknowledge().await
        {
            return p.failed(error.message).await;
        }
        Some((Ok(Bytes::from(data)), p))
    })
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
        return send_file(&state, &device, query, size_hint, body, event).await;
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
            return send_file(&state, &device, fields, None, stream, event).await;
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
) -> Result<Response, ApiError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    event.path = fields.path.clone().unwrap_or_default();
    let user_name = event.actor.name.clone().unwrap_or_default();
    let result = upload_to_device(state, device, &user_name, fields, size, body).await;
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
    let mut session = DeviceSession::open(state, device, user_name).await?;
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
