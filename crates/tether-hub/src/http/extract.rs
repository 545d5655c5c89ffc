//! Extractors: who is calling (a user by bearer token or browser cookie) and from where.

use std::net::SocketAddr;

use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, StatusCode, header, request::Parts},
};

use crate::{
    domain::audit::Actor, domain::audit::RequestContext, domain::principal::Principal, http::error::ApiError,
    http::state::AppState,
};

/// The bearer token of a request, if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    Some(token.trim())
}

/// Extracts an authenticated *user* from `Authorization: Bearer <session token>` (or a browser's
/// session cookie, see [`crate::http::web_session`]).
pub struct UserCaller(pub Principal);

impl FromRequestParts<AppState> for UserCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let unauthorized = |why: &str| ApiError::new(StatusCode::UNAUTHORIZED, why);
        // Browsers authenticate with a cookie instead (checked for CSRF and Origin there).
        let context = RequestContext::from_request_parts(parts, state)
            .await
            .unwrap_or_else(|never| match never {});
        let from_cookie = match bearer_token(&parts.headers) {
            Some(_) => None,
            None => match crate::http::cookies::cookie_session(parts) {
                Ok(token) => token,
                Err(refusal) => {
                    // The refusal's event names the cookie's user when the cookie is a live session.
                    if let Some(token) = crate::http::cookies::session_cookie(&parts.headers)
                        && let Ok(Some(principal)) = state.store.principal_for_token(&token).await
                    {
                        crate::domain::audit::note_caller(Actor::principal(&principal, &context));
                    }
                    return Err(refusal);
                }
            },
        };
        let token = bearer_token(&parts.headers).or(from_cookie.as_deref());
        if let Some(token) = token
            && let Some(principal) = state.store.principal_for_token(token).await?
        {
            crate::domain::audit::note_caller(Actor::principal(&principal, &context));
            return Ok(UserCaller(principal));
        }
        let reason = if token.is_some() {
            "invalid or expired token"
        } else {
            "missing bearer token"
        };
        tracing::info!("refused a request to {}: {reason}", parts.uri.path());
        crate::metrics::metrics().auth_failed("token");
        let details = serde_json::json!({ "reason": reason, "path": parts.uri.path() });
        crate::http::refusal_audit::record_unauthenticated(
            state,
            &context,
            context.actor(""),
            "authentication",
            details,
        )
        .await?;
        Err(unauthorized(reason))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let client = parts
            .extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|info| info.0)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(200).collect());
        let request_id = parts
            .extensions
            .get::<crate::http::observe::RequestId>()
            .map(|id| id.0.clone());
        Ok(RequestContext {
            client,
            user_agent,
            request_id,
        })
    }
}
