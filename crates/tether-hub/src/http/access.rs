//! Approval on demand: a user asks for access to a device or group (permissions, duration,
//! reason); another user holding `approve_access` there approves or denies; the grant starts at
//! approval and ends on time or when revoked, ending the live sessions opened under it.

use tether_proto::{api, clock::unix_millis};

use axum::{
    Json,
    extract::{Path, Query, State},
    http::StatusCode,
};

use crate::{
    domain::audit::Actor, domain::audit::NewEvent, domain::audit::Outcome, domain::audit::RequestContext,
    domain::permissions::Action, domain::principal::Affected, domain::principal::Principal,
    domain::principal::authorize, domain::roles::Scope, http::convert, http::error::ApiError,
    http::extract::UserCaller, http::state::AppState, service::access::request_object, service::auth::permit,
    service::roles::access_changed, service::roles::parse_permission_names, store::access::AccessRequest,
};

/// The shortest access one request can ask for.
const MIN_DURATION_SECS: i64 = 10;
/// The longest access one request can ask for.
const MAX_DURATION_SECS: i64 = 7 * 86_400;

#[utoipa::path(
    post,
    path = api::paths::ACCESS_REQUESTS_PATH,
    tag = "access",
    request_body = api::NewAccessRequest,
    responses((status = 201, description = "The request, pending or approved by policy", body = api::AccessRequest))
)]
pub async fn create(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Json(request): Json<api::NewAccessRequest>,
) -> Result<(StatusCode, Json<api::AccessRequest>), ApiError> {
    let Principal::User { user, .. } = &principal else {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "only users request access"));
    };
    let scope = Scope::parse(&request.scope).map_err(ApiError::bad_request)?;
    if let Scope::Device(id) = &scope
        && state.store.device(id).await?.is_none()
    {
        return Err(ApiError::not_found(format!("no device with id {id}")));
    }
    let permissions = parse_permission_names(&request.permissions)?;
    let grantable = [
        Action::Terminal,
        Action::FileRead,
        Action::FileWrite,
        Action::PortForward,
    ];
    if permissions.is_empty() || permissions.iter().any(|p| !grantable.contains(p)) {
        return Err(ApiError::bad_request(
            "request one or more of: terminal, file_read, file_write, port_forward",
        ));
    }
    if !(MIN_DURATION_SECS..=MAX_DURATION_SECS).contains(&request.duration_secs) {
        return Err(ApiError::bad_request(format!(
            "the duration must be between {MIN_DURATION_SECS} s and {MAX_DURATION_SECS} s"
        )));
    }
    let reason = request.reason.trim();
    if reason.is_empty() || reason.len() > 1000 {
        return Err(ApiError::bad_request(
            "a request needs a reason (1 to 1000 characters)",
        ));
    }
    let stored = AccessRequest {
        id: uuid::Uuid::now_v7().to_string(),
        user_id: user.id.clone(),
        user_name: user.name.clone(),
        scope: scope.text(),
        permissions: permissions.iter().map(|p| p.name().to_owned()).collect(),
        duration_secs: request.duration_secs,
        reason: reason.to_owned(),
        status: "pending".into(),
        created_at: unix_millis() / 1000,
        decided_by: None,
        decided_at: None,
        note: None,
        expires_at: None,
    };
    let details = serde_json::json!({
        "scope": stored.scope, "permissions": stored.permissions,
        "duration_secs": stored.duration_secs, "reason": stored.reason,
    });
    crate::service::audit::record_success(
        &state,
        &principal,
        &context,
        "access.request",
        request_object(&stored),
        details,
    )
    .await?;
    state.store.insert_access_request(&stored).await?;
    tracing::info!(
        "{} requests {} on {} for {} s",
        principal.describe(),
        stored.permissions.join(","),
        stored.scope,
        stored.duration_secs
    );
    Ok((StatusCode::CREATED, Json(convert::access_request(stored))))
}

#[utoipa::path(
    get,
    path = api::paths::ACCESS_REQUESTS_PATH,
    tag = "access",
    params(api::AccessRequestQuery),
    responses((status = 200, description = "The access requests the caller may see", body = api::AccessRequestList))
)]
pub async fn list(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Query(query): Query<api::AccessRequestQuery>,
) -> Result<Json<api::AccessRequestList>, ApiError> {
    let Principal::User { user, .. } = &principal else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "only users have access requests",
        ));
    };
    let requests = if query.all {
        permit(&state, &principal, &context, Action::ApproveAccess, None).await?;
        state.store.access_requests(None, 500).await?
    } else {
        state.store.access_requests(Some(&user.id), 500).await?
    };
    Ok(Json(api::AccessRequestList {
        requests: requests.into_iter().map(convert::access_request).collect(),
    }))
}

/// One request: its requester, or anyone who may approve it, may read it.
#[utoipa::path(
    get,
    path = &api::paths::access_request_path("{id}"),
    tag = "access",
    params(("id" = String, Path, description = "The access request id")),
    responses((status = 200, description = "The access request", body = api::AccessRequest))
)]
pub async fn show(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Path(id): Path<String>,
) -> Result<Json<api::AccessRequest>, ApiError> {
    let request = find(&state, &id).await?;
    let own = matches!(&principal, Principal::User { user, .. } if user.id == request.user_id);
    if !own {
        may_approve(&state, &principal, &context, &request).await?;
    }
    Ok(Json(convert::access_request(request)))
}

async fn find(state: &AppState, id: &str) -> Result<AccessRequest, ApiError> {
    state
        .store
        .access_request(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no access request {id}")))
}

/// Whether the caller holds `approve_access` on the request's device or group.
async fn may_approve(
    state: &AppState,
    principal: &Principal,
    context: &RequestContext,
    request: &AccessRequest,
) -> Result<(), ApiError> {
    let scope = Scope::parse(&request.scope).map_err(ApiError::bad_request)?;
    let allowed = match (&scope, principal) {
        (Scope::Device(id), _) => match state.store.device(id).await? {
            Some(device) => {
                return permit(state, principal, context, Action::ApproveAccess, Some(&device))
                    .await
                    .map_err(ApiError::from);
            }
            None => false,
        },
        // A group's requests are approved by whoever holds approve_access on that group (or on
        // every device): holding it on some of the group's devices is not enough.
        (_, Principal::User { grants, .. }) => {
            authorize(principal, Action::ApproveAccess, None).is_ok()
                && grants.allow_on_scope(Action::ApproveAccess, &scope, unix_millis())
        }
        _ => false,
    };
    if allowed {
        return Ok(());
    }
    let why = format!(
        "{} may not approve access to {}",
        principal.describe(),
        request.scope
    );
    Err(refuse(state, principal, context, request, &why).await?)
}

/// Records an approver's refusal in the audit log; returns the 403 to answer.
async fn refuse(
    state: &AppState,
    principal: &Principal,
    context: &RequestContext,
    request: &AccessRequest,
    why: &str,
) -> Result<ApiError, ApiError> {
    let event = NewEvent::new(
        Actor::principal(principal, context),
        "authorization",
        request_object(request),
        Outcome::Refused,
    )
    .details(serde_json::json!({ "permission": Action::ApproveAccess.describe(), "reason": why }));
    state.store.record_audit(event).await?;
    Ok(ApiError::new(StatusCode::FORBIDDEN, why))
}

#[utoipa::path(
    post,
    path = &api::paths::access_approve_path("{id}"),
    tag = "access",
    params(("id" = String, Path, description = "The access request id")),
    request_body = Option<api::AccessDecision>,
    responses((status = 200, description = "The approved request", body = api::AccessRequest))
)]
pub async fn approve(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Path(id): Path<String>,
    decision: Option<Json<api::AccessDecision>>,
) -> Result<Json<api::AccessRequest>, ApiError> {
    decide(&state, &principal, &context, &id, "approved", decision).await
}

#[utoipa::path(
    post,
    path = &api::paths::access_deny_path("{id}"),
    tag = "access",
    params(("id" = String, Path, description = "The access request id")),
    request_body = Option<api::AccessDecision>,
    responses((status = 200, description = "The denied request", body = api::AccessRequest))
)]
pub async fn deny(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Path(id): Path<String>,
    decision: Option<Json<api::AccessDecision>>,
) -> Result<Json<api::AccessRequest>, ApiError> {
    decide(&state, &principal, &context, &id, "denied", decision).await
}

/// Approves or denies a pending request. Nobody decides their own request.
async fn decide(
    state: &AppState,
    principal: &Principal,
    context: &RequestContext,
    id: &str,
    outcome: &'static str,
    decision: Option<Json<api::AccessDecision>>,
) -> Result<Json<api::AccessRequest>, ApiError> {
    let request = find(state, id).await?;
    may_approve(state, principal, context, &request).await?;
    let Principal::User { user, .. } = principal else {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "only users approve access"));
    };
    if user.id == request.user_id {
        let why = "you cannot approve or deny your own access request";
        return Err(refuse(state, principal, context, &request, why).await?);
    }
    if request.status != "pending" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("the request is {}, not pending", request.status),
        ));
    }
    let note = decision.and_then(|Json(d)| d.note);
    let expires_at = (outcome == "approved").then(|| unix_millis() + request.duration_secs * 1000);
    let action = if outcome == "approved" {
        "access.approve"
    } else {
        "access.deny"
    };
    let details = serde_json::json!({ "note": note, "expires_at": expires_at.map(|t| t / 1000) });
    crate::service::audit::record_success(
        state,
        principal,
        context,
        action,
        request_object(&request),
        details,
    )
    .await?;
    let changed = state
        .store
        .decide_access_request(id, "pending", outcome, &user.name, note.as_deref(), expires_at)
        .await?;
    if !changed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "the request was decided meanwhile",
        ));
    }
    access_changed(state, Affected::Users(vec![request.user_id.clone()]));
    tracing::info!(
        "{} {outcome} access request {id} of {}",
        principal.describe(),
        request.user_name
    );
    Ok(Json(convert::access_request(find(state, id).await?)))
}

/// Ends an approved access before its time: by an approver, or by the requester.
#[utoipa::path(
    post,
    path = &api::paths::access_revoke_path("{id}"),
    tag = "access",
    params(("id" = String, Path, description = "The access request id")),
    responses((status = 200, description = "The revoked request", body = api::AccessRequest))
)]
pub async fn revoke(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Path(id): Path<String>,
) -> Result<Json<api::AccessRequest>, ApiError> {
    let request = find(&state, &id).await?;
    let Principal::User { user, .. } = &principal else {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "only users revoke access"));
    };
    if user.id != request.user_id {
        may_approve(&state, &principal, &context, &request).await?;
    }
    let from = request.status.as_str();
    if from != "approved" && from != "pending" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("the request is {}: nothing to revoke", request.status),
        ));
    }
    crate::service::audit::record_success(
        &state,
        &principal,
        &context,
        "access.revoke",
        request_object(&request),
        serde_json::json!({}),
    )
    .await?;
    state
        .store
        .decide_access_request(
            &id,
            from,
            "revoked",
            &user.name,
            None,
            request.expires_at.map(|t| t * 1000),
        )
        .await?;
    access_changed(&state, Affected::Users(vec![request.user_id.clone()]));
    Ok(Json(convert::access_request(find(&state, &id).await?)))
}
