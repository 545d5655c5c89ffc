//! Accounts and credentials: personal access tokens, user administration (create, disable,
//! enable, revoke sessions) and password change. Withdrawing a credential ends the live
//! connections that use it at once (through [`Revocation`]).

use axum::{
    Json,
    extract::{Path, Query, State},
    http::StatusCode,
};
use tether_proto::{api, clock::unix_millis};

use crate::{
    domain::audit::Actor, domain::audit::NewEvent, domain::audit::Object, domain::audit::Outcome,
    domain::audit::RequestContext, domain::passwords, domain::permissions::Action,
    domain::permissions::PERMISSIONS, domain::principal::Credential, domain::principal::Principal,
    domain::principal::Revocation, domain::tokens::hash_token, domain::tokens::new_access_token,
    domain::user::UserRecord, http::convert, http::error::ApiError, http::extract::UserCaller,
    http::state::AppState, service::auth::permit,
};

const DEFAULT_TOKEN_LIFETIME_SECS: i64 = 30 * 86_400;
const MAX_TOKEN_LIFETIME_SECS: i64 = 365 * 86_400;

/// The caller's account, when it is a user's login session (not a token).
fn session_user<'a>(principal: &'a Principal, what: &str) -> Result<(&'a UserRecord, &'a str), ApiError> {
    match principal {
        Principal::User {
            user,
            credential: Credential::Session { token_hash },
            ..
        } => Ok((user, token_hash)),
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{what} needs a login session, not an access token"),
        )),
    }
}

#[utoipa::path(
    post,
    path = api::paths::TOKENS_PATH,
    tag = "tokens",
    request_body = api::NewToken,
    responses((status = 201, description = "The token (its secret is shown only here)", body = api::CreatedToken))
)]
pub async fn create_token(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Json(request): Json<api::NewToken>,
) -> Result<(StatusCode, Json<api::CreatedToken>), ApiError> {
    let (user, _) = session_user(&principal, "creating a token")?;
    let name = request.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::bad_request(
            "a token needs a name of 1 to 100 characters",
        ));
    }
    // Default: everything the user may do now; never more than that.
    let user_may = |action: Action| match &principal {
        Principal::User { grants, .. } => grants.hold_anywhere(action, unix_millis()),
        Principal::Device { .. } => false,
    };
    let permissions: Vec<Action> = match &request.permissions {
        None => PERMISSIONS
            .iter()
            .map(|(_, action)| *action)
            .filter(|a| user_may(*a))
            .collect(),
        Some(names) => {
            let mut chosen = Vec::new();
            for name in names {
                let action = Action::parse(name).ok_or_else(|| {
                    let known: Vec<&str> = PERMISSIONS.iter().map(|(n, _)| *n).collect();
                    ApiError::bad_request(format!(
                        "unknown permission {name:?} (known: {})",
                        known.join(", ")
                    ))
                })?;
                if !user_may(action) {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        format!("you may not {}, so no token of yours may", action.describe()),
                    ));
                }
                chosen.push(action);
            }
            chosen
        }
    };
    let lifetime = request.expires_in_secs.unwrap_or(DEFAULT_TOKEN_LIFETIME_SECS);
    if !(1..=MAX_TOKEN_LIFETIME_SECS).contains(&lifetime) {
        return Err(ApiError::bad_request(format!(
            "expires_in_secs must be between 1 and {MAX_TOKEN_LIFETIME_SECS}"
        )));
    }
    let token = new_access_token();
    let id = uuid::Uuid::now_v7().to_string();
    let expires_at = unix_millis() + lifetime * 1000;
    let names: Vec<&str> = permissions.iter().map(|a| a.name()).collect();
    let details = serde_json::json!({ "token_id": id, "name": name, "permissions": names, "expires_at": expires_at / 1000 });
    crate::service::audit::record_success(
        &state,
        &principal,
        &context,
        "token.create",
        Object::user(Some(&user.id), &user.name),
        details,
    )
    .await?;
    state
        .store
        .create_access_token(
            &id,
            &user.id,
            name,
            &hash_token(&token),
            &names.join(","),
            expires_at,
        )
        .await?;
    let body = api::CreatedToken {
        id,
        name: name.to_owned(),
        token,
        permissions: names.iter().map(|name| (*name).to_owned()).collect(),
        expires_at: expires_at / 1000,
    };
    Ok((StatusCode::CREATED, Json(body)))
}

/// The caller's tokens, or with `?user=NAME` (administrators) that user's.
#[utoipa::path(
    get,
    path = api::paths::TOKENS_PATH,
    tag = "tokens",
    params(api::TokenListQuery),
    responses((status = 200, description = "The tokens", body = api::TokenList))
)]
pub async fn list_tokens(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Query(query): Query<api::TokenListQuery>,
) -> Result<Json<api::TokenList>, ApiError> {
    let Principal::User { user, .. } = &principal else {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "only users have tokens"));
    };
    let owner = match query.user.as_deref() {
        Some(name) if name != user.name => managed_user(&state, &principal, &context, name).await?.id,
        _ => user.id.clone(),
    };
    let tokens = state.store.access_tokens(&owner).await?;
    Ok(Json(api::TokenList {
        tokens: tokens.into_iter().map(convert::access_token).collect(),
    }))
}

/// Revokes a token: the caller's own, or (administrators) anyone's.
#[utoipa::path(
    delete,
    path = &api::paths::token_path("{id}"),
    tag = "tokens",
    params(("id" = String, Path, description = "The token id")),
    responses((status = 204, description = "Done"))
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let Principal::User { user, .. } = &principal else {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "only users have tokens"));
    };
    let owner = state
        .store
        .access_token_owner(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no token {id}")))?;
    if owner != user.id {
        permit(&state, &principal, &context, Action::ManageUsers, None).await?;
    }
    let owner_name = match state.store.user_by_id(&owner).await? {
        Some(record) => record.name,
        None => owner.clone(),
    };
    crate::service::audit::record_success(
        &state,
        &principal,
        &context,
        "token.revoke",
        Object::user(Some(&owner), &owner_name),
        serde_json::json!({ "token_id": id }),
    )
    .await?;
    state.store.revoke_access_token(&id).await?;
    let _ = state.revocations.send(Revocation::Token { id });
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = api::paths::USERS_PATH,
    tag = "users",
    responses((status = 200, description = "The users", body = api::UserList))
)]
pub async fn list_users(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
) -> Result<Json<api::UserList>, ApiError> {
    permit(&state, &principal, &context, Action::ManageUsers, None).await?;
    let mut users = Vec::new();
    for user in state.store.users().await? {
        let grants = roles_of(&state, &user.id).await?;
        users.push(convert::user_summary(user, &grants));
    }
    Ok(Json(api::UserList { users }))
}

#[utoipa::path(
    post,
    path = api::paths::USERS_PATH,
    tag = "users",
    request_body = api::NewUser,
    responses((status = 201, description = "The new user", body = api::UserSummary))
)]
pub async fn create_user(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Json(request): Json<api::NewUser>,
) -> Result<(StatusCode, Json<api::UserSummary>), ApiError> {
    permit(&state, &principal, &context, Action::ManageUsers, None).await?;
    let name = request.name.trim();
    // Control characters would reach terminals and audit exports as they are.
    if name.is_empty() || name.len() > 64 || name.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(ApiError::bad_request(
            "a user name is 1 to 64 characters without spaces or control characters",
        ));
    }
    if request.password.len() < 8 {
        return Err(ApiError::bad_request(
            "the password must have at least 8 characters",
        ));
    }
    if state.store.user_by_name(name).await?.is_some() {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("user {name} exists")));
    }
    let role = if request.admin {
        Some("admin")
    } else {
        request.role.as_deref()
    };
    if role.is_none() && !request.groups.is_empty() {
        return Err(ApiError::bad_request("groups need a role"));
    }
    let grants = match role {
        Some(role) => {
            let wanted = crate::service::roles::role_on_groups(role, &request.groups);
            crate::service::roles::validate_grants(&state.store, &wanted).await?
        }
        None => Vec::new(),
    };
    let details = serde_json::json!({ "grants": convert::role_grants(&grants) });
    crate::service::audit::record_success(
        &state,
        &principal,
        &context,
        "user.create",
        Object::user(None, name),
        details,
    )
    .await?;
    let password = request.password.clone();
    let hash = tokio::task::spawn_blocking(move || passwords::hash(&password))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))??;
    state.store.upsert_user(name, &hash, false).await?;
    let user = state
        .store
        .user_by_name(name)
        .await?
        .ok_or_else(|| anyhow::anyhow!("user vanished"))?;
    state.store.set_role_grants(&user.id, &grants).await?;
    Ok((
        StatusCode::CREATED,
        Json(account_summary(&state, &user.id).await?),
    ))
}

/// The user `name`, when the caller may manage users.
pub(crate) async fn managed_user(
    state: &AppState,
    principal: &Principal,
    context: &RequestContext,
    name: &str,
) -> Result<UserRecord, ApiError> {
    permit(state, principal, context, Action::ManageUsers, None).await?;
    state
        .store
        .user_by_name(name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no user {name}")))
}

/// The account as listed, read back from the store.
async fn account_summary(state: &AppState, user_id: &str) -> Result<api::UserSummary, ApiError> {
    let users = state.store.users().await?;
    let found = users.into_iter().find(|user| user.id == user_id);
    let user = found.ok_or_else(|| anyhow::anyhow!("user {user_id} vanished"))?;
    let grants = roles_of(state, user_id).await?;
    Ok(convert::user_summary(user, &grants))
}

async fn roles_of(state: &AppState, user_id: &str) -> Result<Vec<crate::domain::roles::RoleGrant>, ApiError> {
    let user = state
        .store
        .user_by_id(user_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("user {user_id} vanished"))?;
    crate::service::roles::grants_of(state, &user)
        .await
        .map_err(ApiError::from)
}

#[utoipa::path(
    post,
    path = &api::paths::user_disable_path("{name}"),
    tag = "users",
    params(("name" = String, Path, description = "The user name")),
    responses((status = 200, description = "The disabled user", body = api::UserSummary))
)]
pub async fn disable_user(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Path(name): Path<String>,
) -> Result<Json<api::UserSummary>, ApiError> {
    set_account_enabled(&state, &principal, &context, &name, false).await
}

#[utoipa::path(
    post,
    path = &api::paths::user_enable_path("{name}"),
    tag = "users",
    params(("name" = String, Path, description = "The user name")),
    responses((status = 200, description = "The enabled user", body = api::UserSummary))
)]
pub async fn enable_user(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Path(name): Path<String>,
) -> Result<Json<api::UserSummary>, ApiError> {
    set_account_enabled(&state, &principal, &context, &name, true).await
}

/// Disables or enables an account. Disabling also ends its logins and every live session of
/// the user, and revokes its access tokens for good: enabling the account again does not bring
/// them back.
async fn set_account_enabled(
    state: &AppState,
    principal: &Principal,
    context: &RequestContext,
    name: &str,
    enabled: bool,
) -> Result<Json<api::UserSummary>, ApiError> {
    let user = managed_user(state, principal, context, name).await?;
    if !enabled && matches!(principal, Principal::User { user: me, .. } if me.id == user.id) {
        return Err(ApiError::bad_request("you cannot disable your own account"));
    }
    let action = if enabled { "user.enable" } else { "user.disable" };
    let object = Object::user(Some(&user.id), &user.name);
    let details = if enabled {
        serde_json::json!({})
    } else {
        // Recorded before the change: the tokens this disabling revokes.
        let tokens = state.store.access_tokens(&user.id).await?;
        let live: Vec<&str> = tokens
            .iter()
            .filter(|token| !token.revoked)
            .map(|token| token.id.as_str())
            .collect();
        serde_json::json!({ "revoked_tokens": live })
    };
    crate::service::audit::record_success(state, principal, context, action, object, details).await?;
    if enabled {
        state.store.set_user_disabled(&user.id, false).await?;
    } else {
        state.store.disable_user(&user.id).await?;
        state.store.delete_user_sessions(&user.id, None).await?;
        let _ = state.revocations.send(Revocation::User {
            user_id: user.id.clone(),
        });
    }
    Ok(Json(account_summary(state, &user.id).await?))
}

#[utoipa::path(
    post,
    path = &api::paths::user_revoke_sessions_path("{name}"),
    tag = "users",
    params(("name" = String, Path, description = "The user name")),
    responses((status = 200, description = "How many sessions were ended", body = api::RevokedSessions))
)]
pub async fn revoke_sessions(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Path(name): Path<String>,
) -> Result<Json<api::RevokedSessions>, ApiError> {
    let user = managed_user(&state, &principal, &context, &name).await?;
    crate::service::audit::record_success(
        &state,
        &principal,
        &context,
        "user.revoke_sessions",
        Object::user(Some(&user.id), &user.name),
        serde_json::json!({}),
    )
    .await?;
    let revoked = state.store.delete_user_sessions(&user.id, None).await?;
    let _ = state.revocations.send(Revocation::Sessions {
        user_id: user.id.clone(),
        except: None,
    });
    Ok(Json(api::RevokedSessions { revoked }))
}

#[utoipa::path(
    post,
    path = api::paths::PASSWORD_PATH,
    tag = "auth",
    request_body = api::PasswordChange,
    responses((status = 204, description = "Done"))
)]
pub async fn change_password(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Json(request): Json<api::PasswordChange>,
) -> Result<StatusCode, ApiError> {
    let (user, token_hash) = session_user(&principal, "changing the password")?;
    if request.new_password.len() < 8 {
        return Err(ApiError::bad_request(
            "the new password must have at least 8 characters",
        ));
    }
    let (current, stored) = (request.current_password.clone(), user.password_hash.clone());
    let valid = tokio::task::spawn_blocking(move || passwords::verify(&current, Some(&stored)))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if !valid {
        let event = NewEvent::new(
            Actor::principal(&principal, &context),
            "password.change",
            Object::user(Some(&user.id), &user.name),
            Outcome::Failure,
        )
        .details(serde_json::json!({ "reason": "wrong current password" }));
        state.store.record_audit(event).await?;
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the current password is wrong",
        ));
    }
    crate::service::audit::record_success(
        &state,
        &principal,
        &context,
        "password.change",
        Object::user(Some(&user.id), &user.name),
        serde_json::json!({}),
    )
    .await?;
    let new_password = request.new_password.clone();
    let hash = tokio::task::spawn_blocking(move || passwords::hash(&new_password))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))??;
    state.store.set_password(&user.id, &hash).await?;
    // Whoever else held a login of this account loses it; this session stays.
    state
        .store
        .delete_user_sessions(&user.id, Some(token_hash))
        .await?;
    let _ = state.revocations.send(Revocation::Sessions {
        user_id: user.id.clone(),
        except: Some(token_hash.to_owned()),
    });
    Ok(StatusCode::NO_CONTENT)
}
