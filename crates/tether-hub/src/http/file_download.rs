//! Downloads through the HTTP file API (`GET`/`HEAD .../download?path=`): the device's `stat`,
//! then its `get_file` chunks streamed to the client as it takes them. Each request is exactly
//! one audit event, and a download's success is recorded before its last chunk is released.

use axum::{
    body::{Body, Bytes},
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures_util::Stream;
use sha2::{Digest as _, Sha256};
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

/// Version-2 downloads are acknowledged at least this often.
const ACK_EVERY: i64 = 1 << 20;

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
#[utoipa::path(
    method(get, head),
    path = &api::paths::device_download_path("{id}"),
    tag = "files",
    params(("id" = String, Path, description = "The device id"), api::DownloadQuery),
    responses((status = 200, description = "The file, streamed from the device", body = Vec<u8>, content_type = "application/octet-stream"), (status = 206, description = "The requested range of the file", body = Vec<u8>, content_type = "application/octet-stream"))
)]
pub async fn download(
    State(state): State<AppState>,
    caller: UserCaller,
    context: RequestContext,
    method: Method,
    Path(id): Path<String>,
    Query(query): Query<api::DownloadQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let device = permitted_device(&state, &caller.0, &context, &id, Action::FileRead).await?;
    let slot = crate::service::admission::admit(&state, &caller.0, &context, &device).await?;
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
        slot,
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
    slot: SessionSlot,
) -> Result<Prepared, ApiError> {
    require_accepted(device)?;
    let user_name = event.actor.name.clone().unwrap_or_default();
    let mut session = DeviceSession::open(state, device, &user_name, slot).await?;
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
    // A FIFO or device would stream nothing (or block); the agent refuses them too.
    if !go_mode::is_regular(info.mode) {
        return Err(ApiError::bad_request(format!(
            "{} is a {}: only regular files are transferred",
            info.path,
            go_mode::kind(info.mode)
        )));
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
        session.list(state, &event.actor, device, false, &info.path).await;
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
