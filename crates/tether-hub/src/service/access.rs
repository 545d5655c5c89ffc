//! Approval on demand as use cases: approved access that reaches its end expires on time.

use std::{sync::Arc, time::Duration};

use crate::{
    domain::audit::{Actor, NewEvent, Object, Outcome},
    domain::principal::Affected,
    service::{Hub, roles::access_changed},
    store::access::AccessRequest,
};

/// Expires approved access on time, every second: audited, and live sessions under it end.
pub async fn expire_on_time(state: Arc<Hub>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        ticker.tick().await;
        let expired = match state.store.expire_access_requests().await {
            Ok(expired) => expired,
            Err(error) => {
                tracing::warn!("expiring access requests: {error:#}");
                continue;
            }
        };
        for request in expired {
            tracing::info!("access request {} of {} expired", request.id, request.user_name);
            let event = NewEvent::new(
                Actor::system(),
                "access.expire",
                request_object(&request),
                Outcome::Success,
            );
            if let Err(error) = state.store.record_audit(event).await {
                tracing::warn!("auditing an access expiry: {}", error.message);
            }
            access_changed(&state, Affected::Users(vec![request.user_id.clone()]));
        }
    }
}

pub fn request_object(request: &AccessRequest) -> Object {
    Object {
        kind: Some("access_request"),
        id: Some(request.id.clone()),
        name: Some(format!("{} on {}", request.user_name, request.scope)),
    }
}
