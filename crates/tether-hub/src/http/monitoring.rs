//! What watches the hub: `/healthz` (the process answers), `/readyz` (it can serve: the database
//! answers and is migrated, NATS is connected when configured, the last audit write succeeded)
//! and `/metrics` (Prometheus text, behind the scrape token). See docs/operations.md.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};

use crate::{
    domain::device::DeviceStatus,
    http::{error::ApiError, extract::bearer_token, state::AppState},
    metrics::metrics,
};

/// The process is up and answering (a liveness probe: restart it if not).
pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready to serve (a readiness probe: send it traffic only if so). 200 with every check `ok`,
/// or 503 naming what failed.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let database = state.store.check_ready().await.map(|()| "ok");
    let nats = match state.router.bus() {
        None => Ok("not configured"),
        Some(bus) if bus.is_connected() => Ok("ok"),
        Some(_) => Err("the NATS connection is down".to_owned()),
    };
    let audit = match metrics().audit_failing() {
        false => Ok("ok"),
        true => Err("the last audit write failed (see the hub's log)".to_owned()),
    };
    let ready = database.is_ok() && nats.is_ok() && audit.is_ok();
    let text = |check: Result<&str, String>| check.map(str::to_owned).unwrap_or_else(|why| why);
    let body = serde_json::json!({
        "ready": ready,
        "checks": { "database": text(database), "nats": text(nats), "audit": text(audit) },
    });
    let status = if ready {
        StatusCode::OK
    } else {
        tracing::warn!("not ready: {body}");
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// The Prometheus metrics, for a caller presenting the scrape token (`metrics_token_file`).
pub async fn scrape(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    // Digests compared, not the tokens: how long `==` takes says nothing about the token.
    let digest = |text: &str| <sha2::Sha256 as sha2::Digest>::digest(text.as_bytes());
    let presented = bearer_token(&headers).unwrap_or_default();
    if digest(presented) != digest(&state.metrics_token) {
        metrics().auth_failed("token");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "scraping /metrics needs the metrics token as a bearer token (DATA_DIR/metrics.token, \
             or metrics_token_file)",
        ));
    }
    metrics()
        .devices_pending
        .set(state.store.count_devices(DeviceStatus::Pending).await?);
    let (size, idle) = state.store.pool_figures();
    metrics().database_pool(size, idle);
    let bus = state.router.bus();
    if let Some(bus) = bus {
        metrics().nats_connected.set(i64::from(bus.is_connected()));
    }
    let text = metrics().encode(bus.is_some());
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    Ok(([(header::CONTENT_TYPE, content_type)], text).into_response())
}
