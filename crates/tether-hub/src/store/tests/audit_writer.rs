//! The audit writer's group commit: events recorded at once are committed together, and the
//! chain stays gapless, linear and in each caller's order.

use crate::{
    domain::audit::Actor, domain::audit::NewEvent, domain::audit::Object, domain::audit::Outcome,
    domain::audit::verify, store::Store,
};

/// Many callers record at once (each several events in a row); every event is in the chain once,
/// the chain verifies, and each caller's events keep their order.
pub async fn concurrent_records(store: &Store) {
    let before = store.audit_events_after(0, 100_000).await.unwrap().len();
    let callers = 16;
    let each = 5;
    let tasks: Vec<_> = (0..callers)
        .map(|caller| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..each {
                    let mut event = NewEvent::new(
                        Actor::system(),
                        "login",
                        Object::user(None, "group"),
                        Outcome::Success,
                    );
                    event.details = serde_json::json!({"caller": caller, "n": n});
                    store.record_audit(event).await.expect("recorded");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let events = store.audit_events_after(0, 100_000).await.unwrap();
    assert_eq!(events.len(), before + callers * each);
    assert!(verify(store.audit_anchor().await.unwrap(), events.clone()).ok);
    for caller in 0..callers {
        let order: Vec<i64> = events
            .iter()
            .filter(|event| event.details["caller"] == caller)
            .map(|event| event.details["n"].as_i64().unwrap())
            .collect();
        assert_eq!(order, (0..each as i64).collect::<Vec<_>>(), "caller {caller}");
    }
}
