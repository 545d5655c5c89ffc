//! The management API for operators: login, logout, devices. JSON in and out. Every action is
//! recorded in the audit log before it is confirmed.

use std::time::Duration;
use tether_proto::clock::unix_millis;

use axum::{
    Json,
    extract::{Path, Query, State},
    http::StatusCode,
};
use serde::Deserialize;
use tether_proto::api;

use crate::{
    domain::audit::Actor, domain::audit::NewEvent, domain::audit::Object, domain::audit::Outcome,
    domain::audit::RequestContext, domain::device::DeviceRecord, domain::device::DeviceStatus,
    domain::passwords, domain::permissions::Action, domain::principal::Credential,
    domain::principal::Principal, domain::principal::authorize_quietly, domain::roles::Scope,
    domain::tokens::hash_token, domain::tokens::new_session_token, http::error::ApiError,
    http::extract::UserCaller, http::state::AppState, service::auth::permit,
};

/// Refuses a throttled login attempt (429, audited as a refused `login`).
async fn refuse_throttled(
    state: &AppState,
    context: &RequestContext,
    object: Object,
    account: &str,
    throttled: crate::domain::login_throttle::Throttled,
) -> Result<ApiError, ApiError> {
    let message = throttled.message();
    tracing::warn!(
        "login of {account:?} from {} throttled: {message}",
        context.client
    );
    let event =
        NewEvent::new(context.actor(""), "login", object, Outcome::Refused).details(serde_json::json!({
            "reason": format!("too many failed logins for {}", throttled.whom),
            "retry_after_secs": throttled.wait.as_secs().max(1),
        }));
    state.store.record_audit(event).await?;
    Ok(ApiError::new(StatusCode::TOO_MANY_REQUESTS, message))
}

pub async fn login(
    State(state): State<AppState>,
    context: RequestContext,
    Json(request): Json<api::LoginRequest>,
) -> Result<Json<api::LoginResponse>, ApiError> {
    let config = &state.config;
    let client = context.client;
    let attempted = Object::user(None, &request.username);
    if let Err(throttled) = state
        .login_throttle
        .check_password(client.ip(), &request.username)
    {
        return Err(refuse_throttled(&state, &context, attempted, &request.username, throttled).await?);
    }

    let user = state.store.user_by_name(&request.username).await?;
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let password = request.password.clone();
    let valid = tokio::task::spawn_blocking(move || passwords::verify(&password, stored.as_deref()))
        .await
        .map_err(|e| anyhow::anyhow!("password check: {e}"))?;
    let user = match user {
        Some(user) if valid && !user.disabled => user,
        other => {
            state
                .login_throttle
                .password_failed(client.ip(), &request.username);
            tracing::warn!("failed login for {:?} from {client}", request.username);
            let reason = match &other {
                Some(user) if user.disabled => "account disabled",
                Some(_) => "wrong password",
                None => "unknown user",
            };
            let object = Object::user(other.as_ref().map(|u| u.id.as_str()), &request.username);
            let event = NewEvent::new(context.actor(""), "login", object, Outcome::Failure)
                .details(serde_json::json!({ "reason": reason }));
            state.store.record_audit(event).await?;
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid username or password",
            ));
        }
    };
    if state.store.two_factor(&user.id).await?.enabled {
        let object = Object::user(Some(&user.id), &user.name);
        if let Err(throttled) = state.login_throttle.check_second_factor(&user.name) {
            return Err(refuse_throttled(&state, &context, object, &user.name, throttled).await?);
        }
    }
    match crate::service::two_factor::second_factor(&state, &user, request.code.as_deref()).await? {
        None => {}
        Some((why, counts)) => {
            if counts {
                state.login_throttle.second_factor_failed(client.ip(), &user.name);
                tracing::warn!(
                    "failed second factor for {:?} from {client}: {why}",
                    request.username
                );
                let object = Object::user(Some(&user.id), &user.name);
                let event = NewEvent::new(context.actor(""), "login", object, Outcome::Failure)
                    .details(serde_json::json!({ "reason": why }));
                state.store.record_audit(event).await?;
            }
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, why));
        }
    }
    state.login_throttle.succeeded(client.ip(), &user.name);

    let token = new_session_token();
    let lifetime = Duration::from_secs(config.session_lifetime_secs);
    let expires_at = unix_millis() + lifetime.as_millis() as i64;
    let principal = Principal::User {
        user: user.clone(),
        grants: state.store.grants(&user).await?,
        credential: Credential::Session {
            token_hash: hash_token(&token),
        },
    };
    let event = NewEvent::new(
        Actor::principal(&principal, &context),
        "login",
        Object::user(Some(&user.id), &user.name),
        Outcome::Success,
    );
    state.store.record_audit(event).await?;
    state
        .store
        .create_session(
            &hash_token(&token),
            &user.id,
            expires_at,
            &client.to_string(),
            context.user_agent.as_deref(),
        )
        .await?;
    tracing::info!("user {} logged in from {client}", user.name);
    Ok(Json(api::LoginResponse {
        token,
        expires_at: expires_at / 1000,
        user: api::User {
            id: user.id,
            name: user.name,
            admin: user.admin,
        },
    }))
}

pub async fn logout(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
) -> Result<StatusCode, ApiError> {
    if let Principal::User {
        user,
        credential: Credential::Session { token_hash },
        ..
    } = &principal
    {
        let event = NewEvent::new(
            Actor::principal(&principal, &context),
            "logout",
            Object::user(Some(&user.id), &user.name),
            Outcome::Success,
        );
        state.store.record_audit(event).await?;
        state.store.delete_session(token_hash).await?;
        tracing::info!("user {} logged out", user.name);
    }
    Ok(StatusCode::NO_CONTENT)
}

fn device_json(device: DeviceRecord, online: bool) -> api::Device {
    api::Device {
        identity: serde_json::from_str(&device.identity).unwrap_or_default(),
        id: device.id,
        name: device.name,
        status: device.status.as_str().to_owned(),
        online,
        agent_version: device.agent_version,
        created_at: device.created_at / 1000,
        last_seen_at: device.last_seen_at.map(|t| t / 1000),
        tags: device.tags,
    }
}

/// Largest page of devices one request may ask for.
const MAX_DEVICE_PAGE: usize = 1000;

#[derive(Deserialize)]
pub struct DeviceFilter {
    status: Option<String>,
    /// Case-insensitive text to find in the name, id, agent version or identity.
    search: Option<String>,
    /// Only online (`true`) or offline (`false`) devices.
    online: Option<bool>,
    /// Only the devices of exactly this name (the CLI's lookup of a name it was given).
    name: Option<String>,
    /// Only the devices whose id starts with this (a full id is its own prefix).
    id_prefix: Option<String>,
    /// Pagination: without `limit`, every matching device (what the CLI asks for).
    #[serde(default)]
    offset: usize,
    limit: Option<usize>,
}

fn matches_search(device: &DeviceRecord, needle: &str) -> bool {
    [
        device.name.as_str(),
        device.id.as_str(),
        device.agent_version.as_deref().unwrap_or(""),
        device.identity.as_str(),
    ]
    .iter()
    .any(|field| field.to_lowercase().contains(needle))
}

pub async fn list_devices(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Query(filter): Query<DeviceFilter>,
) -> Result<Json<api::DeviceList>, ApiError> {
    permit(&state, &principal, &context, Action::ViewDevices, None).await?;
    let status = match filter.status.as_deref() {
        None | Some("") => None,
        Some(text) => Some(DeviceStatus::parse(text).ok_or_else(|| {
            ApiError::bad_request(format!("unknown status {text:?} (pending, accepted or rejected)"))
        })?),
    };
    let online = state.router.online_devices().await;
    let needle = filter.search.unwrap_or_default().trim().to_lowercase();
    // A page without the online filter is cut by the database (the web UI's common case), when
    // the caller sees every device; a user of some groups gets theirs filtered here.
    let sees_all = matches!(&principal, Principal::User { grants, .. }
        if grants.allow_on_scope(Action::ViewDevices, &Scope::AllDevices, unix_millis()) && !grants.two_factor_pending);
    let looks_up = filter.name.is_some() || filter.id_prefix.is_some();
    if let (Some(limit), None, true, false) = (filter.limit, filter.online, sees_all, looks_up) {
        let limit = limit.clamp(1, MAX_DEVICE_PAGE) as i64;
        let offset = i64::try_from(filter.offset).unwrap_or(i64::MAX);
        let (page, total) = state.store.devices_page(status, &needle, offset, limit).await?;
        let devices = page
            .into_iter()
            .map(|d| {
                let is_online = online.contains(&d.id);
                device_json(d, is_online)
            })
            .collect();
        return Ok(Json(api::DeviceList {
            devices,
            total: Some(total as u64),
        }));
    }
    // Online-ness lives in the router, not the database: that filter (and the CLI's whole
    // list) is applied here, still cutting the page before any JSON is built.
    let matching: Vec<DeviceRecord> = state
        .store
        .devices(status)
        .await?
        .into_iter()
        // Each user sees the devices they hold view_devices on (their groups).
        .filter(|d| authorize_quietly(&principal, Action::ViewDevices, d))
        .filter(|d| needle.is_empty() || matches_search(d, &needle))
        .filter(|d| filter.name.as_ref().is_none_or(|name| &d.name == name))
        .filter(|d| {
            filter
                .id_prefix
                .as_ref()
                .is_none_or(|prefix| d.id.starts_with(prefix.as_str()))
        })
        .filter(|d| {
            filter
                .online
                .is_none_or(|wanted| online.contains(&d.id) == wanted)
        })
        .collect();
    let total = matching.len();
    let limit = filter.limit.map_or(total, |limit| limit.min(MAX_DEVICE_PAGE));
    let devices = matching
        .into_iter()
        .skip(filter.offset)
        .take(limit)
        .map(|d| {
            let is_online = online.contains(&d.id);
            device_json(d, is_online)
        })
        .collect();
    Ok(Json(api::DeviceList {
        devices,
        total: Some(total as u64),
    }))
}

/// Loads a device the caller may manage.
async fn managed_device(
    state: &AppState,
    principal: &Principal,
    context: &RequestContext,
    id: &str,
) -> Result<DeviceRecord, ApiError> {
    let device = state
        .store
        .device(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no device with id {id}")))?;
    permit(state, principal, context, Action::ManageDevices, Some(&device)).await?;
    Ok(device)
}

/// Records a device-management action (before it takes effect).
async fn record_device_action(
    state: &AppState,
    principal: &Principal,
    context: &RequestContext,
    action: &'static str,
    device: &DeviceRecord,
) -> Result<(), ApiError> {
    let details = serde_json::json!({ "previous_status": device.status.as_str() });
    let object = Object::device(&device.id, &device.name);
    crate::service::audit::record_success(state, principal, context, action, object, details)
        .await
        .map_err(ApiError::from)
}

pub async fn accept_device(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Path(id): Path<String>,
) -> Result<Json<api::Device>, ApiError> {
    let mut device = managed_device(&state, &principal, &context, &id).await?;
    record_device_action(&state, &principal, &context, "device.accept", &device).await?;
    state.store.set_device_status(&id, DeviceStatus::Accepted).await?;
    device.status = DeviceStatus::Accepted;
    tracing::info!("{} accepted device {} ({id})", principal.describe(), device.name);
    let online = state.router.is_online(&id).await;
    Ok(Json(device_json(device, online)))
}

pub async fn reject_device(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Path(id): Path<String>,
) -> Result<Json<api::Device>, ApiError> {
    let mut device = managed_device(&state, &principal, &context, &id).await?;
    record_device_action(&state, &principal, &context, "device.reject", &device).await?;
    state.store.set_device_status(&id, DeviceStatus::Rejected).await?;
    device.status = DeviceStatus::Rejected;
    // The status is stored first, so a reconnect racing with the kick is refused.
    state
        .router
        .kick_device(
            &id,
            &format!("the device was rejected by {}", principal.describe()),
        )
        .await;
    tracing::info!("{} rejected device {} ({id})", principal.describe(), device.name);
    Ok(Json(device_json(device, false)))
}

pub async fn remove_device(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let device = managed_device(&state, &principal, &context, &id).await?;
    record_device_action(&state, &principal, &context, "device.remove", &device).await?;
    state.store.delete_device(&id).await?;
    state
        .router
        .kick_device(
            &id,
            &format!("the device was removed by {}", principal.describe()),
        )
        .await;
    tracing::info!("{} removed device {} ({id})", principal.describe(), device.name);
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use crate::{domain::device::DeviceRecord, domain::device::DeviceStatus, store::Store};

    fn device(n: usize, status: DeviceStatus) -> DeviceRecord {
        DeviceRecord {
            id: format!("id-{n:02}"),
            public_key: format!("key-{n:02}"),
            identity: format!(
                "{{\"hostname\":\"host-{n:02}\",\"site\":\"{}\"}}",
                if n.is_multiple_of(2) { "Plant_A" } else { "plantXA" }
            ),
            name: format!("device-{n:02}"),
            status,
            agent_version: Some("0.1.0".into()),
            created_at: 0,
            last_seen_at: None,
            tags: Vec::new(),
        }
    }

    #[tokio::test]
    async fn the_database_cuts_pages_searches_and_filters() {
        let directory = std::env::temp_dir().join(format!("tether-device-page-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let store = Store::open_sqlite(&directory.join("hub.db")).await.unwrap();
        for n in 0..30 {
            let status = if n < 10 {
                DeviceStatus::Pending
            } else {
                DeviceStatus::Accepted
            };
            store.insert_device(&device(n, status)).await.unwrap();
        }
        let (page, total) = store.devices_page(None, "", 25, 10).await.unwrap();
        assert_eq!(total, 30);
        let names: Vec<_> = page.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            ["device-25", "device-26", "device-27", "device-28", "device-29"]
        );
        let (page, total) = store
            .devices_page(Some(DeviceStatus::Pending), "", 0, 3)
            .await
            .unwrap();
        assert_eq!((page.len(), total), (3, 10));
        // Case-insensitive, over the identity; `_` is a character, not a wildcard.
        let (_, total) = store.devices_page(None, "plant_a", 0, 50).await.unwrap();
        assert_eq!(total, 15);
        let (page, total) = store.devices_page(None, "DEVICE-07", 0, 50).await.unwrap();
        assert_eq!((page[0].id.as_str(), total), ("id-07", 1));
        let (_, total) = store.devices_page(None, "100%", 0, 50).await.unwrap();
        assert_eq!(total, 0);
        std::fs::remove_dir_all(&directory).ok();
    }
}
