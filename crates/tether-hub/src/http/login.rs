//! `POST /auth/login` and `POST /auth/logout`: the bearer login of the CLI and scripts (the
//! use case is `service::login`; the browser's cookie login is `http::web_session`).

use axum::{Json, extract::State, http::StatusCode};
use tether_proto::api;

use crate::{
    domain::audit::RequestContext, http::convert::user, http::error::ApiError, http::extract::UserCaller,
    http::state::AppState, service::login,
};

#[utoipa::path(
    post,
    path = api::LOGIN_PATH,
    tag = "auth",
    request_body = api::LoginRequest,
    responses((status = 200, description = "A session token", body = api::LoginResponse)),
    security(())
)]
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

#[utoipa::path(
    post,
    path = api::LOGOUT_PATH,
    tag = "auth",
    responses((status = 204, description = "Done"))
)]
pub async fn logout(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
) -> Result<StatusCode, ApiError> {
    login::logout(&state, &principal, &context).await?;
    Ok(StatusCode::NO_CONTENT)
}
