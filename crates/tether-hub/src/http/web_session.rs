//! Browser sessions: the web UI logs in with a cookie instead of a bearer token.
//!
//! - The login session token lives in a `__Host-` cookie (`Secure`, `HttpOnly`,
//!   `SameSite=Strict`, `Path=/`), so page scripts never see it.
//! - Cross-site request forgery: a cookie-authenticated request that changes state (any method
//!   but GET/HEAD/OPTIONS) must carry `X-CSRF-Token`, a value derived from the session token and
//!   given to the page at login (and by `GET /auth/web/session`); another site can neither read
//!   it nor set the header.
//! - A cookie-authenticated request with an `Origin` header must come from the hub's own origin
//!   (`https://` + `Host`); a WebSocket upgrade must carry a matching `Origin` (browsers always
//!   send one), which refuses cross-site WebSocket hijacking.
//!
//! The session's answer names the permissions the user holds in general, so that the page
//! offers only what the user can use (the hub still decides every request).
//!
//! Bearer tokens (the CLI) are untouched: a request with `Authorization` never looks at cookies.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use tether_proto::api;

use crate::{
    domain::audit::RequestContext,
    domain::permissions::PERMISSIONS,
    domain::principal::Credential,
    domain::principal::Principal,
    http::convert::user,
    http::cookies::{COOKIE, csrf_token, origin_matches, refuse, session_cookie},
    http::error::ApiError,
    http::extract::UserCaller,
    http::state::AppState,
    service::login,
};

/// What the page may offer: the permissions `principal` holds without naming a device (as the
/// hub decides for a listing or an administration request).
fn permissions(principal: &Principal) -> Vec<String> {
    let Principal::User { user, grants, .. } = principal else {
        return Vec::new();
    };
    if user.disabled {
        return Vec::new();
    }
    let now = tether_proto::clock::unix_millis();
    PERMISSIONS
        .iter()
        .filter(|(_, action)| grants.allow(*action, None, now))
        .map(|(name, _)| (*name).to_owned())
        .collect()
}

fn cookie_header(value: &str, max_age_secs: i64) -> HeaderValue {
    let cookie =
        format!("{COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}");
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `POST /auth/web/login`: the password login of `POST /auth/login`, answered with a cookie.
/// (When a second factor exists, this is where its step goes: answer "second factor needed"
/// without a cookie, and set the cookie once the factor is checked.)
#[utoipa::path(
    post,
    path = api::paths::WEB_LOGIN_PATH,
    tag = "auth",
    request_body = api::LoginRequest,
    responses((status = 200, description = "The session, with its cookie set", body = api::WebSession)),
    security(())
)]
pub async fn login(
    State(state): State<AppState>,
    context: RequestContext,
    headers: HeaderMap,
    Json(request): Json<api::LoginRequest>,
) -> Result<Response, ApiError> {
    // Login CSRF: another site must not log the browser into an account of its choosing.
    if origin_matches(&headers) == Some(false) {
        return Err(refuse("cross-origin login refused"));
    }
    let session = login::login(
        &state,
        &context,
        &request.username,
        &request.password,
        request.code.as_deref(),
    )
    .await?;
    let expires_at = session.expires_at / 1000;
    let principal = state.store.principal_for_token(&session.token).await?;
    let body = api::WebSession {
        user: user(&session.user),
        csrf_token: csrf_token(&session.token),
        expires_at: Some(expires_at),
        permissions: principal.as_ref().map(permissions).unwrap_or_default(),
    };
    let max_age = (expires_at - tether_proto::clock::unix_seconds()).max(0);
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie_header(&session.token, max_age));
    Ok(response)
}

/// `GET /auth/web/session`: who the cookie belongs to, and the page's CSRF token (a page that
/// was reloaded lost it). 401 when there is no live session: the page shows the login form.
#[utoipa::path(
    get,
    path = api::paths::WEB_SESSION_PATH,
    tag = "auth",
    responses((status = 200, description = "The browser's session", body = api::WebSession)),
    security(())
)]
pub async fn session(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<api::WebSession>, ApiError> {
    let expired = || ApiError::new(StatusCode::UNAUTHORIZED, "not logged in or session expired");
    let token = session_cookie(&headers).ok_or_else(expired)?;
    match state.store.principal_for_token(&token).await? {
        Some(
            principal @ Principal::User {
                credential: Credential::Session { .. },
                ..
            },
        ) => {
            let Principal::User { user: record, .. } = &principal else {
                return Err(expired());
            };
            Ok(Json(api::WebSession {
                user: user(record),
                csrf_token: csrf_token(&token),
                expires_at: None,
                permissions: permissions(&principal),
            }))
        }
        _ => Err(expired()),
    }
}

/// `POST /auth/web/logout`: ends the session (CSRF-checked like every state change) and
/// clears the cookie.
#[utoipa::path(
    post,
    path = api::paths::WEB_LOGOUT_PATH,
    tag = "auth",
    responses((status = 204, description = "Done"))
)]
pub async fn logout(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
) -> Result<Response, ApiError> {
    login::logout(&state, &principal, &context).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie_header("", 0));
    Ok(response)
}
