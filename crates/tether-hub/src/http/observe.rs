//! The outermost layer of every request: gives it a request id (the client's `X-Request-Id`
//! when it is a sane one, else a new one), runs it inside a `request` span that carries the id
//! (so every log line of the request names it), returns the id in the `X-Request-Id` header,
//! logs refusals and errors with their reason, and counts the request in the metrics by route.

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request},
    http::HeaderValue,
    middleware::Next,
    response::Response,
};
use tracing::Instrument as _;

use crate::{http::error::Reason, metrics::metrics};

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The request's id, in the request's extensions (for the refusal audit's events).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub async fn layer(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|value| is_sane(value))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    // The route's pattern, not the path: ids in paths must not make a metric label each.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "other".to_owned());
    let span = tracing::info_span!("request", request_id = %id, method = %request.method(), route = %route);
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        let reason = response
            .extensions()
            .get::<Reason>()
            .map(|reason| reason.0.as_str())
            .unwrap_or_else(|| status.canonical_reason().unwrap_or(""));
        span.in_scope(|| match status.is_server_error() {
            true => tracing::warn!(status = status.as_u16(), "answered {status}: {reason}"),
            false => tracing::info!(status = status.as_u16(), "refused with {status}: {reason}"),
        });
    }
    metrics().http_answered(&route, status.as_u16(), started.elapsed().as_secs_f64());
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// A client's request id is kept when it is 1 to 64 characters of letters, digits and `-_.:`.
fn is_sane(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_.:".contains(&byte))
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_sane_request_ids_are_kept() {
        assert!(super::is_sane("3f2a-lb.17:9"));
        assert!(!super::is_sane(""));
        assert!(!super::is_sane("a b"));
        assert!(!super::is_sane("id\n2026 INFO forged log line"));
        assert!(!super::is_sane(&"x".repeat(65)));
    }
}
