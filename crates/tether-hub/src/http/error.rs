//! The one error type of HTTP handlers: a status and a message, sent as `{"error": "..."}`;
//! and the layer that gives the same shape to the errors axum itself answers (a body over the
//! limit, bad JSON, a wrong content type, a wrong method, a bad path or query).

use axum::{
    Json,
    body::Body,
    extract::Request,
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use tether_proto::api;

use crate::{domain::failure::Failure, domain::failure::Kind};

/// The reason of an error answer, for the refusal audit layer (`http::refusal_audit`).
#[derive(Clone)]
pub struct Reason(pub String);

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
}

/// Internal failures (database, I/O) are logged in full and answered without details.
impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        tracing::error!("internal error: {error:#}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error (see the hub's log)",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let reason = Reason(self.message.clone());
        let mut response = (self.status, Json(api::ApiError { error: self.message })).into_response();
        // For the refusal audit layer, which records the refusals no handler recorded.
        response.extensions_mut().insert(reason);
        response
    }
}

/// Largest error body read back to be rewrapped (axum's rejections are one line).
const MAX_REWRAPPED_BODY: usize = 16 * 1024;

/// Rewrites every error response that is not JSON yet into the documented `{"error": "..."}`
/// shape, keeping its status and headers. Extractor rejections (413, 400, 415, 422), the 405 of
/// a route, and anything a future layer answers in plain text all pass through here, so no
/// handler has to remember it.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_REWRAPPED_BODY)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_lowercase()
    } else {
        text
    };
    // The message can quote a fragment of the request (serde names the value it choked on), so
    // it goes to the debug log only.
    if status == StatusCode::NOT_FOUND {
        tracing::debug!("{method} {path}: {status}: {message}");
    } else {
        tracing::info!("{method} {path} refused: {status}");
        tracing::debug!("{method} {path}: {message}");
    }
    let body = serde_json::to_vec(&api::ApiError { error: message }).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, Body::from(body))
}

/// The layers below HTTP say what kind of failure; here it becomes a status.
impl From<Failure> for ApiError {
    fn from(failure: Failure) -> Self {
        let status = match failure.kind {
            Kind::BadRequest => StatusCode::BAD_REQUEST,
            Kind::Unauthorized => StatusCode::UNAUTHORIZED,
            Kind::Forbidden => StatusCode::FORBIDDEN,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::Conflict => StatusCode::CONFLICT,
            Kind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
            Kind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Kind::BadGateway => StatusCode::BAD_GATEWAY,
            Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Kind::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            Kind::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
        };
        ApiError::new(status, failure.message)
    }
}
