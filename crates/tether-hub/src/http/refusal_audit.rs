//! Every refusal the API answers is in the audit log, whichever handler refused.
//!
//! A layer around every route watches the answer: a `403` that no handler recorded becomes an
//! `authorization` event (refused, with the reason, method and path, and the caller when one was
//! authenticated), a `401` an `authentication` event. Handlers that record a more specific event
//! ([`crate::service::auth::permit`], a refused file transfer, a failed login) mark the request as recorded,
//! so no refusal is written twice. Fail closed: a refusal whose event cannot be written is
//! answered `503` like every other action the audit log cannot hold.
//!
//! Unauthenticated refusals (no or an unknown token) are recorded within bounds, so that a flood
//! of garbage cannot grow the log without limit: per client address at most
//! [`PER_ADDRESS`] and in total at most [`TOTAL`] such events per [`WINDOW`]; beyond that they
//! are counted, and the count is written into the next one recorded (`suppressed_before`).

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, LazyLock, Mutex, atomic::Ordering},
    time::{Duration, Instant},
};

use axum::{
    extract::{FromRequestParts, Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{
    domain::audit::Actor,
    domain::audit::NewEvent,
    domain::audit::Object,
    domain::audit::Outcome,
    domain::audit::RequestContext,
    domain::audit::{REQUEST, RequestAudit, note_recorded},
    http::{error::ApiError, state::AppState},
};

/// The window of the bounds on unauthenticated refusals.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Unauthenticated refusals recorded per client address and window.
pub const PER_ADDRESS: u32 = 20;
/// Unauthenticated refusals recorded in total per window.
pub const TOTAL: u32 = 600;

/// The layer: serves the request, then records its refusal if no handler did.
pub async fn layer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let context = <RequestContext as FromRequestParts<AppState>>::from_request_parts(&mut parts, &state)
        .await
        .unwrap_or_else(|never| match never {});
    let (method, path) = (parts.method.clone(), parts.uri.path().to_owned());
    let request = Request::from_parts(parts, body);
    let audit = Arc::new(RequestAudit::default());
    let response = REQUEST.scope(audit.clone(), next.run(request)).await;
    let status = response.status();
    if !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
        || audit.recorded.load(Ordering::Relaxed)
    {
        return response;
    }
    let reason = response
        .extensions()
        .get::<crate::http::error::Reason>()
        .map(|reason| reason.0.clone())
        .unwrap_or_else(|| status.to_string());
    let caller = audit.caller.lock().unwrap_or_else(|e| e.into_inner()).take();
    let details = serde_json::json!({
        "reason": reason,
        "method": method.as_str(),
        "path": path,
        "request_id": context.request_id,
    });
    let result = match (status, caller) {
        (StatusCode::FORBIDDEN, Some(actor)) => {
            let event = NewEvent::new(actor, "authorization", Object::none(), Outcome::Refused);
            state
                .store
                .record_audit(event.details(details))
                .await
                .map_err(ApiError::from)
        }
        (StatusCode::FORBIDDEN, None) => {
            let event = NewEvent::new(
                context.actor(""),
                "authorization",
                Object::none(),
                Outcome::Refused,
            );
            state
                .store
                .record_audit(event.details(details))
                .await
                .map_err(ApiError::from)
        }
        (_, caller) => {
            let actor = caller.unwrap_or_else(|| context.actor(""));
            record_unauthenticated(&state, &context, actor, "authentication", details).await
        }
    };
    match result {
        Ok(()) => response,
        Err(error) => error.into_response(),
    }
}

/// Records an unauthenticated refusal within the bounds of [`WINDOW`]; events over the bounds
/// are counted instead.
pub async fn record_unauthenticated(
    state: &AppState,
    context: &RequestContext,
    actor: Actor,
    action: &'static str,
    mut details: serde_json::Value,
) -> Result<(), crate::http::error::ApiError> {
    let Some(suppressed) = BOUNDS.admit(context.client.ip(), Instant::now()) else {
        tracing::debug!(
            "unauthenticated refusal from {} not recorded (over the bounds)",
            context.client
        );
        note_recorded(Outcome::Refused);
        return Ok(());
    };
    if suppressed > 0 {
        details["suppressed_before"] = serde_json::json!(suppressed);
    }
    if let Some(id) = &context.request_id {
        details["request_id"] = serde_json::json!(id);
    }
    let event = NewEvent::new(actor, action, Object::none(), Outcome::Refused).details(details);
    state.store.record_audit(event).await.map_err(ApiError::from)
}

/// Fixed-window counters of unauthenticated refusals (per address, in total).
struct Bounds {
    inner: Mutex<Window>,
}

struct Window {
    started: Option<Instant>,
    total: u32,
    per_address: HashMap<IpAddr, u32>,
    /// Refusals not recorded since the last one that was.
    suppressed: u64,
}

static BOUNDS: LazyLock<Bounds> = LazyLock::new(Bounds::new);

impl Bounds {
    fn new() -> Bounds {
        Bounds {
            inner: Mutex::new(Window {
                started: None,
                total: 0,
                per_address: HashMap::new(),
                suppressed: 0,
            }),
        }
    }

    /// `Some(refusals suppressed before)` when this one is to be recorded, `None` when it is over
    /// the bounds (and counted).
    fn admit(&self, address: IpAddr, now: Instant) -> Option<u64> {
        let mut window = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if window
            .started
            .is_none_or(|started| now.duration_since(started) >= WINDOW)
        {
            window.started = Some(now);
            window.total = 0;
            window.per_address.clear();
        }
        // The map holds at most TOTAL addresses: a new one is only counted below the total.
        let over_total = window.total >= TOTAL;
        let count = window.per_address.get(&address).copied().unwrap_or(0);
        if over_total || count >= PER_ADDRESS {
            window.suppressed += 1;
            return None;
        }
        window.per_address.insert(address, count + 1);
        window.total += 1;
        Some(std::mem::take(&mut window.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds() -> Bounds {
        Bounds::new()
    }

    #[test]
    fn one_address_is_bounded_and_the_excess_counted() {
        let bounds = bounds();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let now = Instant::now();
        for _ in 0..PER_ADDRESS {
            assert_eq!(bounds.admit(a, now), Some(0));
        }
        assert_eq!(bounds.admit(a, now), None);
        assert_eq!(bounds.admit(a, now), None);
        // Another address is still recorded, and carries the count.
        assert_eq!(bounds.admit(b, now), Some(2));
        // A new window admits the first address again.
        assert_eq!(bounds.admit(a, now + WINDOW), Some(0));
    }

    #[test]
    fn the_total_is_bounded() {
        let bounds = bounds();
        let now = Instant::now();
        let admitted = (0..TOTAL + 50)
            .filter(|n| {
                let address = IpAddr::from([10, 1, (n / 256) as u8, (n % 256) as u8]);
                bounds.admit(address, now).is_some()
            })
            .count();
        assert_eq!(admitted, TOTAL as usize);
    }
}
