//! What the HTTP file API's downloads (`file_download.rs`) and uploads (`files.rs`) share: the
//! file-transfer session the hub opens on a device for one HTTP request, the audit event of one
//! transfer, the device lookup with its permission check, and the mapping of a device's refusal
//! to an HTTP status.

use std::{sync::Arc, time::Duration};

use axum::http::StatusCode;
use tether_proto::{
    control::{Control, ErrorBody},
    file_transfer::FileTransfer,
    protocol,
};

use crate::{
    domain::audit::Actor, domain::audit::NewEvent, domain::audit::Object, domain::audit::Outcome,
    domain::device::DeviceRecord, domain::device::DeviceStatus, domain::session_limits::SessionSlot,
    http::error::ApiError, http::state::AppState, relay::active_sessions, relay::active_sessions::Listed,
    relay::active_sessions::Owner, relay::router::Lane, relay::router::Router, relay::router::SessionEvent,
    relay::router::SessionLink, relay::user_leg::Offer, relay::user_leg::handshake,
};

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
    /// Counted in `tether_sessions_active{kind="file"}` while it runs.
    _counted: crate::metrics::Held,
    /// Its row in the Active sessions list while the transfer runs (`relay::active_sessions`).
    listed: Option<Listed>,
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
        let version = match handshake(
            &mut link,
            &sid,
            user_name,
            Offer::from_config(&state.config),
            None,
        )
        .await
        {
            Ok(accepted) => accepted.version,
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
            _counted: crate::metrics::metrics().session("file"),
            listed: None,
        })
    }

    /// Lists the transfer of `path` (to the device if `upload`) as an active session for as
    /// long as this session lives. A row that cannot be written is logged, never fatal: the list
    /// is a view, the audit event the record.
    pub(crate) async fn list(
        &mut self,
        state: &AppState,
        actor: &Actor,
        device: &DeviceRecord,
        upload: bool,
        path: &str,
    ) {
        let owner = Owner {
            sid: &self.sid,
            user_id: actor.id.as_deref().unwrap_or_default(),
            user_name: actor.name.as_deref().unwrap_or_default(),
            device_id: &device.id,
            device_name: &device.name,
        };
        let detail = active_sessions::file_transfer(upload, path);
        self.listed = Listed::start_logged(&state.store, &state.replica_id, owner, detail).await;
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
            let _ = sender.send(Box::new(close)).await;
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

pub(crate) fn require_accepted(device: &DeviceRecord) -> Result<(), ApiError> {
    if device.status != DeviceStatus::Accepted {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("device {} is {}", device.name, device.status.as_str()),
        ));
    }
    Ok(())
}
