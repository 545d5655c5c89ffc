//! Who is calling, and what they may do. Every HTTP endpoint and WebSocket upgrade resolves its
//! caller to a [`Principal`] and asks [`authorize`] — the one place where permission rules live
//! (roles, device groups and access approval will be added here).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, StatusCode, header, request::Parts},
};

use crate::{
    audit::{self, Actor, NewEvent, Object, Outcome, RequestContext},
    http_error::ApiError,
    state::AppState,
    store::{DeviceRecord, UserRecord},
    tokens::hash_token,
};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub enum Principal {
    User { user: UserRecord, token_hash: String },
    Device { device_id: String },
}

impl Principal {
    pub fn describe(&self) -> String {
        match self {
            Principal::User { user, .. } => format!("user {}", user.name),
            Principal::Device { device_id } => format!("device {device_id}"),
        }
    }
}

/// Everything a caller can ask to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    ViewDevices,
    ManageDevices,
    Terminal,
    FileRead,
    FileWrite,
    PortForward,
    ViewAudit,
    ViewRecordings,
    /// Hold the device leg of a device (only that device itself may).
    ConnectAsDevice,
}

impl Action {
    pub fn describe(self) -> &'static str {
        match self {
            Action::ViewDevices => "view devices",
            Action::ManageDevices => "manage devices",
            Action::Terminal => "open a terminal",
            Action::FileRead => "read files",
            Action::FileWrite => "write files",
            Action::PortForward => "forward ports",
            Action::ViewAudit => "view the audit log",
            Action::ViewRecordings => "view session recordings",
            Action::ConnectAsDevice => "connect as the device",
        }
    }
}

/// The single authorization decision. Deny unless a rule allows.
pub fn authorize(
    principal: &Principal,
    action: Action,
    device: Option<&DeviceRecord>,
) -> Result<(), ApiError> {
    if decide(principal, action, device) {
        return Ok(());
    }
    let target = device
        .map(|d| format!(" on device {}", d.name))
        .unwrap_or_default();
    tracing::warn!(
        "refused: {} may not {}{}",
        principal.describe(),
        action.describe(),
        target
    );
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        format!("{} may not {}{}", principal.describe(), action.describe(), target),
    ))
}

/// The rules. Deny unless one allows.
fn decide(principal: &Principal, action: Action, device: Option<&DeviceRecord>) -> bool {
    match principal {
        // A device token grants the device leg of that one device and nothing else.
        Principal::Device { device_id } => {
            action == Action::ConnectAsDevice && device.is_some_and(|d| &d.id == device_id)
        }
        Principal::User { .. } if action == Action::ConnectAsDevice => false,
        Principal::User { user, .. } if user.disabled => false,
        Principal::User { user, .. } if user.admin => true,
        // Until roles exist (access-control issue), every user may use every device feature,
        // and only administrators manage devices.
        Principal::User { .. } => matches!(
            action,
            Action::ViewDevices
                | Action::Terminal
                | Action::FileRead
                | Action::FileWrite
                | Action::PortForward
        ),
    }
}

/// [`authorize`], recording a refusal in the audit log.
pub async fn permit(
    state: &AppState,
    principal: &Principal,
    context: &RequestContext,
    action: Action,
    device: Option<&DeviceRecord>,
) -> Result<(), ApiError> {
    let Err(refusal) = authorize(principal, action, device) else {
        return Ok(());
    };
    let object = device
        .map(|d| Object::device(&d.id, &d.name))
        .unwrap_or_else(Object::none);
    let event = NewEvent::new(
        Actor::principal(principal, context),
        "authorization",
        object,
        Outcome::Refused,
    )
    .details(serde_json::json!({ "permission": action.describe(), "reason": refusal.message }));
    audit::record(state, event).await?;
    Err(refusal)
}

/// The same decision, without logging a refusal (for probing which features a caller has).
pub fn authorize_quietly(principal: &Principal, action: Action, device: &DeviceRecord) -> bool {
    decide(principal, action, Some(device))
}

/// The bearer token of a request, if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    Some(token.trim())
}

/// Extracts an authenticated *user* from `Authorization: Bearer <session token>`.
pub struct UserCaller(pub Principal);

impl FromRequestParts<AppState> for UserCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let unauthorized = |why: &str| ApiError::new(StatusCode::UNAUTHORIZED, why);
        let token = bearer_token(&parts.headers);
        let token_hash = token.map(hash_token);
        if let Some(hash) = &token_hash
            && let Some(user) = state.store.session_user(hash).await?
        {
            return Ok(UserCaller(Principal::User {
                user,
                token_hash: hash.clone(),
            }));
        }
        let reason = if token.is_some() {
            "invalid or expired token"
        } else {
            "missing bearer token"
        };
        tracing::info!("refused a request to {}: {reason}", parts.uri.path());
        let context = RequestContext::from_request_parts(parts, state)
            .await
            .unwrap_or_else(|never| match never {});
        let event = NewEvent::new(
            context.actor(""),
            "authentication",
            Object::none(),
            Outcome::Refused,
        )
        .details(serde_json::json!({ "reason": reason, "path": parts.uri.path() }));
        audit::record(state, event).await?;
        Err(unauthorized(reason))
    }
}

/// Counts failed logins per key (account, client address) in a sliding window.
pub struct FailureLimiter {
    window: Duration,
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

impl FailureLimiter {
    pub fn new(window: Duration) -> Self {
        FailureLimiter {
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// How long `key` must wait, if it has reached `limit` failures in the window.
    pub fn blocked_for(&self, key: &str, limit: u32) -> Option<Duration> {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let entry = failures.get_mut(key)?;
        entry.retain(|t| now.duration_since(*t) < self.window);
        if entry.len() < limit as usize {
            return None;
        }
        entry
            .first()
            .map(|oldest| self.window.saturating_sub(now.duration_since(*oldest)))
    }

    pub fn record_failure(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        // Bound memory against address-spraying attackers: forget everyone when too large.
        if failures.len() > 100_000 {
            failures.clear();
        }
        failures.entry(key.to_owned()).or_default().push(Instant::now());
    }

    pub fn clear(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(admin: bool, disabled: bool) -> Principal {
        Principal::User {
            user: UserRecord {
                id: "u".into(),
                name: "u".into(),
                password_hash: String::new(),
                admin,
                disabled,
            },
            token_hash: String::new(),
        }
    }

    #[test]
    fn deny_by_default() {
        let device = Principal::Device {
            device_id: "d".into(),
        };
        for action in [Action::ViewDevices, Action::ManageDevices, Action::Terminal] {
            assert!(authorize(&device, action, None).is_err());
            assert!(authorize(&device, action, Some(&record("d"))).is_err());
            assert!(authorize(&user(true, true), action, None).is_err());
            assert!(authorize(&user(true, false), action, None).is_ok());
        }
        assert!(authorize(&user(false, false), Action::Terminal, None).is_ok());
        assert!(authorize(&user(false, false), Action::ManageDevices, None).is_err());
    }

    fn record(id: &str) -> DeviceRecord {
        DeviceRecord {
            id: id.into(),
            public_key: String::new(),
            identity: "{}".into(),
            name: id.into(),
            status: crate::store::DeviceStatus::Accepted,
            agent_version: None,
            created_at: 0,
            last_seen_at: None,
        }
    }

    #[test]
    fn a_device_token_reaches_only_its_own_device_leg() {
        let device = Principal::Device {
            device_id: "d".into(),
        };
        assert!(authorize(&device, Action::ConnectAsDevice, Some(&record("d"))).is_ok());
        assert!(authorize(&device, Action::ConnectAsDevice, Some(&record("e"))).is_err());
        assert!(authorize(&user(true, false), Action::ConnectAsDevice, Some(&record("d"))).is_err());
    }

    #[test]
    fn limiter_blocks_after_the_limit() {
        let limiter = FailureLimiter::new(Duration::from_secs(60));
        for _ in 0..3 {
            assert!(limiter.blocked_for("k", 3).is_none());
            limiter.record_failure("k");
        }
        assert!(limiter.blocked_for("k", 3).is_some());
        limiter.clear("k");
        assert!(limiter.blocked_for("k", 3).is_none());
    }
}
