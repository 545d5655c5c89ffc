//! One-time enrolment tokens: the credential of the one-line install, replacing the fleet-wide
//! provisioning key. An administrator (the permission to manage every device) creates one with
//! the tags the device gets, an expiry and a number of uses; only its SHA-256 is stored. A new
//! device presenting a live token is accepted on first contact with the token's tags, and one
//! use is spent. Creation, revocation and every use (or refused use) are audited.
//!
//! API: `POST/GET /api/management/v1/install-tokens`, `DELETE .../install-tokens/{id}`.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use tether_proto::{api, clock::unix_millis};

use crate::{
    domain::audit::NewEvent, domain::audit::Object, domain::audit::Outcome, domain::audit::RequestContext,
    domain::device::DeviceRecord, domain::device::DeviceStatus, domain::permissions::Action,
    domain::principal::Principal, domain::roles::valid_tag, domain::tokens::hash_token,
    domain::tokens::new_enrolment_token, http::convert, http::error::ApiError, http::extract::UserCaller,
    http::state::AppState, service::auth::permit, store::install_tokens::Spend,
};

const DEFAULT_LIFETIME_SECS: i64 = 86_400;
const MAX_LIFETIME_SECS: i64 = 365 * 86_400;
const MAX_USES: i64 = 100_000;

fn creator(principal: &Principal) -> String {
    match principal {
        Principal::User { user, .. } => user.name.clone(),
        Principal::Device { device_id } => device_id.clone(),
    }
}

#[utoipa::path(
    post,
    path = api::paths::INSTALL_TOKENS_PATH,
    tag = "install-tokens",
    request_body = api::NewInstallToken,
    responses((status = 201, description = "The token (its secret is shown only here)", body = api::CreatedInstallToken))
)]
pub async fn create(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Json(request): Json<api::NewInstallToken>,
) -> Result<(StatusCode, Json<api::CreatedInstallToken>), ApiError> {
    // The token can put a device into any group: only who manages every device may make one.
    permit(&state, &principal, &context, Action::ManageDevices, None).await?;
    let public_key_pin = state.installer.public_key_pin()?.to_owned();
    let mut tags = Vec::new();
    for tag in &request.tags {
        tags.push(valid_tag(tag.trim()).map_err(ApiError::bad_request)?.to_owned());
    }
    tags.sort();
    tags.dedup();
    let lifetime = request.expires_in_secs.unwrap_or(DEFAULT_LIFETIME_SECS);
    if !(1..=MAX_LIFETIME_SECS).contains(&lifetime) {
        return Err(ApiError::bad_request(format!(
            "expires_in_secs must be between 1 and {MAX_LIFETIME_SECS}"
        )));
    }
    let uses = request.uses.unwrap_or(1);
    if !(1..=MAX_USES).contains(&uses) {
        return Err(ApiError::bad_request(format!(
            "uses must be between 1 and {MAX_USES}"
        )));
    }
    let token = new_enrolment_token();
    let id = uuid::Uuid::now_v7().to_string();
    let now = unix_millis();
    let expires_at = now + lifetime * 1000;
    let details = serde_json::json!({
        "install_token_id": id, "tags": tags, "max_uses": uses, "expires_at": expires_at / 1000,
    });
    crate::service::audit::record_success(
        &state,
        &principal,
        &context,
        "install_token.create",
        Object::none(),
        details,
    )
    .await?;
    state
        .store
        .create_install_token(
            &id,
            &hash_token(&token),
            &tags,
            uses,
            &creator(&principal),
            now,
            expires_at,
        )
        .await?;
    tracing::info!(
        "{} created enrolment token {id} (tags {}, {uses} use(s))",
        principal.describe(),
        tags.join(",")
    );
    Ok((
        StatusCode::CREATED,
        Json(api::CreatedInstallToken {
            id,
            token,
            tags,
            max_uses: uses,
            expires_at: expires_at / 1000,
            public_key_pin,
            certificate_fingerprint: state.installer.certificate_fingerprint.clone(),
        }),
    ))
}

#[utoipa::path(
    get,
    path = api::paths::INSTALL_TOKENS_PATH,
    tag = "install-tokens",
    responses((status = 200, description = "The install tokens", body = api::InstallTokenList))
)]
pub async fn list(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
) -> Result<Json<api::InstallTokenList>, ApiError> {
    permit(&state, &principal, &context, Action::ManageDevices, None).await?;
    let tokens = state.store.install_tokens().await?;
    Ok(Json(api::InstallTokenList {
        install_tokens: tokens.into_iter().map(convert::install_token).collect(),
    }))
}

#[utoipa::path(
    delete,
    path = &api::paths::install_token_path("{id}"),
    tag = "install-tokens",
    params(("id" = String, Path, description = "The install token id")),
    responses((status = 204, description = "Done"))
)]
pub async fn revoke(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    permit(&state, &principal, &context, Action::ManageDevices, None).await?;
    let Some(token) = state.store.install_token(&id).await? else {
        return Err(ApiError::not_found(format!("no enrolment token {id}")));
    };
    if token.revoked_at.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("enrolment token {id} is already revoked"),
        ));
    }
    let details = serde_json::json!({ "install_token_id": id, "uses": token.uses });
    crate::service::audit::record_success(
        &state,
        &principal,
        &context,
        "install_token.revoke",
        Object::none(),
        details,
    )
    .await?;
    state.store.revoke_install_token(&id, unix_millis()).await?;
    tracing::info!("{} revoked enrolment token {id}", principal.describe());
    Ok(StatusCode::NO_CONTENT)
}

/// The hook of `device_auth`: a pending `device` presents enrolment token `offered`. A live
/// token accepts it and gives it the token's tags (one use spent); otherwise the reason, to send
/// back (the device stays pending). Both are audited (`install_token.use`).
pub async fn enrol(
    state: &AppState,
    context: &RequestContext,
    device: &DeviceRecord,
    offered: &str,
) -> Result<Result<(), String>, ApiError> {
    let spend = state
        .store
        .spend_install_token(&hash_token(offered), unix_millis())
        .await?;
    let mut actor = context.actor("device");
    actor.id = Some(device.id.clone());
    actor.name = Some(device.name.clone());
    let object = Object::device(&device.id, &device.name);
    let (token_id, reason) = match spend {
        Spend::Spent { id, tags } => {
            let details = serde_json::json!({ "install_token_id": id, "tags": tags });
            let event = NewEvent::new(actor, "install_token.use", object, Outcome::Success).details(details);
            state.store.record_audit(event).await?;
            accept_with_tags(state, device, &tags).await?;
            tracing::info!(
                "device {} ({}) accepted by enrolment token {id} with tags {}",
                device.name,
                device.id,
                tags.join(",")
            );
            return Ok(Ok(()));
        }
        Spend::Unknown => (None, "unknown enrolment token".to_owned()),
        Spend::Revoked { id } => (Some(id.clone()), format!("enrolment token {id} was revoked")),
        Spend::Expired { id } => (Some(id.clone()), format!("enrolment token {id} has expired")),
        Spend::UsedUp { id, max_uses } => (
            Some(id.clone()),
            format!("enrolment token {id} is used up (all {max_uses} use(s) taken)"),
        ),
    };
    let reason = format!("{reason}; the device stays pending");
    tracing::warn!(
        "device {} ({}) from {}: {reason}",
        device.name,
        device.id,
        context.client
    );
    let details = serde_json::json!({ "install_token_id": token_id, "reason": reason });
    let event = NewEvent::new(actor, "install_token.use", object, Outcome::Refused).details(details);
    state.store.record_audit(event).await?;
    Ok(Err(reason))
}

async fn accept_with_tags(state: &AppState, device: &DeviceRecord, tags: &[String]) -> Result<(), ApiError> {
    state
        .store
        .set_device_status(&device.id, DeviceStatus::Accepted)
        .await?;
    if !tags.is_empty() {
        let mut all = device.tags.clone();
        all.extend(tags.iter().cloned());
        all.sort();
        all.dedup();
        state.store.set_device_tags(&device.id, &all).await?;
        crate::service::roles::access_changed(
            state,
            crate::domain::principal::Affected::Device(device.id.clone()),
        );
    }
    Ok(())
}
