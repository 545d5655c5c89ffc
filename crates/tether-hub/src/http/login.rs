//! `POST /auth/login` and `POST /auth/logout`: the bearer login of the CLI and scripts (the
//! use case is `service::login`; the browser's cookie login is `http::web_session`).

use axum::{Json, extract::State, http::StatusCode};
use tether_proto::api;

use crate::{
    domain::audit::RequestContext, domain::user::UserRecord, http::error::ApiError,
    http::extract::UserCaller, http::state::AppState, service::login,
};

/// Who is logged in, as the API shows a user.
pub fn user(record: &UserRecord) -> api::User {
    api::User {
        id: record.id.clone(),
        name: record.name.clone(),
        admin: record.admin,
    }
}

pub async fn login(
    State(state): State<AppState>,
    context: RequestContext,
    Json(request): Json<api::LoginRequest>,
) -> Result<Json<api::LoginResponse>, ApiError> {
    let session = login::login(
        &state,
        &context,
        &request.username,
        &request.password,
        request.code.as_deref(),
    )
    .await?;
    Ok(Json(api::LoginResponse {
        user: user(&session.user),
        token: session.token,
        expires_at: session.expires_at / 1000,
    }))
}

pub async fn logout(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
) -> Result<StatusCode, ApiError> {
    login::logout(&state, &principal, &context).await?;
    Ok(StatusCode::NO_CONTENT)
}
