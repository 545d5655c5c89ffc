//! The role and device-group API: roles (built-in and custom), a user's role grants, device
//! tags, and which groups require approval. Every change is audited before it takes effect and
//! re-checks live connections at once ([`Revocation::Access`]).

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use tether_proto::api;

use crate::{
    domain::audit::Object,
    domain::audit::RequestContext,
    domain::permissions::Action,
    domain::principal::Affected,
    domain::roles::Scope,
    domain::roles::valid_tag,
    http::convert,
    http::error::ApiError,
    http::extract::UserCaller,
    http::state::AppState,
    http::users::managed_user,
    service::auth::permit,
    service::auth::permitted_device,
    service::roles::{access_changed, grants_of, parse_permission_names, validate_grants},
};

fn role_object(name: &str) -> Object {
    Object {
        kind: Some("role"),
        id: Some(name.to_owned()),
        name: Some(name.to_owned()),
    }
}

#[utoipa::path(
    get,
    path = api::paths::ROLES_PATH,
    tag = "roles",
    responses((status = 200, description = "The built-in and custom roles", body = api::RoleList))
)]
pub async fn list_roles(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
) -> Result<Json<api::RoleList>, ApiError> {
    permit(&state, &principal, &context, Action::ManageUsers, None).await?;
    let roles = state.store.roles().await?;
    Ok(Json(api::RoleList {
        roles: roles.into_iter().map(convert::role).collect(),
    }))
}

#[utoipa::path(
    post,
    path = api::paths::ROLES_PATH,
    tag = "roles",
    request_body = api::NewRole,
    responses((status = 201, description = "The new role", body = api::Role))
)]
pub async fn create_role(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Json(request): Json<api::NewRole>,
) -> Result<(StatusCode, Json<api::Role>), ApiError> {
    permit(&state, &principal, &context, Action::ManageUsers, None).await?;
    let name = request.name.trim();
    if valid_tag(name).is_err() || name.contains('=') {
        return Err(ApiError::bad_request(
            "a role name is 1 to 64 letters, digits, '-', '_' or '.'",
        ));
    }
    let permissions = parse_permission_names(&request.permissions)?;
    if permissions.is_empty() {
        return Err(ApiError::bad_request("a role needs at least one permission"));
    }
    if state.store.roles().await?.iter().any(|r| r.name == name) {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("role {name} exists")));
    }
    let details =
        serde_json::json!({ "permissions": request.permissions, "description": request.description });
    crate::service::audit::record_success(
        &state,
        &principal,
        &context,
        "role.create",
        role_object(name),
        details,
    )
    .await?;
    state
        .store
        .create_role(name, &permissions, &request.description)
        .await?;
    let role = api::Role {
        name: name.to_owned(),
        permissions: permissions
            .iter()
            .map(|action| action.name().to_owned())
            .collect(),
        description: request.description,
        builtin: false,
    };
    Ok((StatusCode::CREATED, Json(role)))
}

#[utoipa::path(
    delete,
    path = &api::paths::role_path("{name}"),
    tag = "roles",
    params(("name" = String, Path, description = "The role name")),
    responses((status = 204, description = "Done"))
)]
pub async fn delete_role(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    permit(&state, &principal, &context, Action::ManageUsers, None).await?;
    let roles = state.store.roles().await?;
    match roles.iter().find(|r| r.name == name) {
        None => return Err(ApiError::not_found(format!("no role {name}"))),
        Some(role) if role.builtin => {
            return Err(ApiError::bad_request(format!(
                "{name} is a built-in role and cannot be deleted"
            )));
        }
        Some(_) => {}
    }
    crate::service::audit::record_success(
        &state,
        &principal,
        &context,
        "role.delete",
        role_object(&name),
        serde_json::json!({}),
    )
    .await?;
    let holders = state.store.delete_role(&name).await?.unwrap_or_default();
    access_changed(&state, Affected::Users(holders));
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = &api::paths::user_roles_path("{name}"),
    tag = "roles",
    params(("name" = String, Path, description = "The user name")),
    responses((status = 200, description = "The user's role grants", body = api::RoleGrants))
)]
pub async fn user_roles(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Path(name): Path<String>,
) -> Result<Json<api::RoleGrants>, ApiError> {
    let user = managed_user(&state, &principal, &context, &name).await?;
    Ok(Json(api::RoleGrants {
        grants: convert::role_grants(&grants_of(&state, &user).await?),
    }))
}

/// Replaces a user's role grants.
#[utoipa::path(
    put,
    path = &api::paths::user_roles_path("{name}"),
    tag = "roles",
    params(("name" = String, Path, description = "The user name")),
    request_body = api::RoleGrants,
    responses((status = 200, description = "The user's role grants", body = api::RoleGrants))
)]
pub async fn set_user_roles(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Path(name): Path<String>,
    Json(request): Json<api::RoleGrants>,
) -> Result<Json<api::RoleGrants>, ApiError> {
    let user = managed_user(&state, &principal, &context, &name).await?;
    let grants = validate_grants(&state.store, &convert::stored_grants(request.grants)).await?;
    let previous = grants_of(&state, &user).await?;
    let details = serde_json::json!({
        "grants": convert::role_grants(&grants), "previous": convert::role_grants(&previous),
    });
    crate::service::audit::record_success(
        &state,
        &principal,
        &context,
        "user.roles",
        Object::user(Some(&user.id), &user.name),
        details,
    )
    .await?;
    state.store.set_role_grants(&user.id, &grants).await?;
    access_changed(&state, Affected::Users(vec![user.id.clone()]));
    let user = state.store.user_by_id(&user.id).await?.unwrap_or(user);
    Ok(Json(api::RoleGrants {
        grants: convert::role_grants(&grants_of(&state, &user).await?),
    }))
}

/// Sets a device's tags (its groups).
#[utoipa::path(
    put,
    path = &api::paths::device_tags_path("{id}"),
    tag = "devices",
    params(("id" = String, Path, description = "The device id")),
    request_body = api::DeviceTags,
    responses((status = 200, description = "The device's tags", body = api::DeviceTags))
)]
pub async fn set_device_tags(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Path(id): Path<String>,
    Json(request): Json<api::DeviceTags>,
) -> Result<Json<api::DeviceTags>, ApiError> {
    let device = permitted_device(&state, &principal, &context, &id, Action::ManageDevices).await?;
    for tag in &request.tags {
        valid_tag(tag).map_err(ApiError::bad_request)?;
    }
    let mut tags = request.tags.clone();
    tags.sort();
    tags.dedup();
    let details = serde_json::json!({ "tags": tags, "previous": device.tags });
    crate::service::audit::record_success(
        &state,
        &principal,
        &context,
        "device.tags",
        Object::device(&device.id, &device.name),
        details,
    )
    .await?;
    state.store.set_device_tags(&id, &tags).await?;
    access_changed(&state, Affected::Device(id.clone()));
    Ok(Json(api::DeviceTags { tags }))
}

#[utoipa::path(
    get,
    path = api::paths::ACCESS_POLICIES_PATH,
    tag = "access",
    responses((status = 200, description = "The approval policies", body = api::ApprovalPolicies))
)]
pub async fn list_policies(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
) -> Result<Json<api::ApprovalPolicies>, ApiError> {
    permit(&state, &principal, &context, Action::ViewDevices, None).await?;
    Ok(Json(api::ApprovalPolicies {
        require_approval: state.store.approval_policies().await?,
    }))
}

/// Requires approval on a group (or stops requiring it).
#[utoipa::path(
    put,
    path = api::paths::ACCESS_POLICIES_PATH,
    tag = "access",
    request_body = api::PolicyChange,
    responses((status = 200, description = "The approval policies", body = api::ApprovalPolicies))
)]
pub async fn set_policy(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Json(request): Json<api::PolicyChange>,
) -> Result<Json<api::ApprovalPolicies>, ApiError> {
    permit(&state, &principal, &context, Action::ManageUsers, None).await?;
    let scope = Scope::parse(&request.scope).map_err(ApiError::bad_request)?;
    if scope == Scope::AllDevices {
        return Err(ApiError::bad_request(
            "approval is required per group (tag:NAME) or device, not on every device at once",
        ));
    }
    let object = Object {
        kind: Some("group"),
        id: Some(scope.text()),
        name: Some(scope.text()),
    };
    let details = serde_json::json!({ "require_approval": request.require_approval });
    crate::service::audit::record_success(&state, &principal, &context, "policy.approval", object, details)
        .await?;
    state
        .store
        .set_approval_policy(&scope.text(), request.require_approval)
        .await?;
    // Which devices a policy covers is not worth computing for a rare change: everyone re-checks.
    access_changed(&state, Affected::Everyone);
    Ok(Json(api::ApprovalPolicies {
        require_approval: state.store.approval_policies().await?,
    }))
}
