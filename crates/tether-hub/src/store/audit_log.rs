//! Appending to the audit chain: one writer at a time in this process (the chain needs the
//! previous hash), and the store's transaction serializes replicas.

use crate::{domain::audit::AuditEvent, domain::audit::NewEvent, domain::failure::Failure, store::Store};

impl Store {
    /// Appends an event to the chain and commits it. Errors mean the action must not proceed.
    pub async fn record_audit(&self, event: NewEvent) -> Result<(), Failure> {
        crate::domain::audit::note_recorded(event.outcome);
        // One writer at a time in this process; the store serializes replicas (the chain needs the
        // previous hash).
        let _chain = self.audit_chain.lock().await;
        let build = |seq: i64, prev_hash: String| {
            let mut stored = AuditEvent {
                seq,
                id: uuid::Uuid::now_v7().to_string(),
                time: tether_proto::clock::unix_millis(),
                actor_kind: event.actor.kind.to_owned(),
                actor_id: event.actor.id,
                actor_name: event.actor.name,
                client_address: event.actor.client_address,
                user_agent: event.actor.user_agent,
                action: event.action.to_owned(),
                object_kind: event.object.kind.map(str::to_owned),
                object_id: event.object.id,
                object_name: event.object.name,
                outcome: event.outcome.as_str().to_owned(),
                details: event.details,
                session_id: event.session_id,
                prev_hash,
                hash: String::new(),
            };
            stored.hash = stored.compute_hash();
            stored
        };
        match self.append_audit_event(build).await {
            Ok(_) => Ok(()),
            Err(error) => {
                tracing::error!("audit log unavailable: {error:#}");
                Err(crate::domain::audit::unavailable())
            }
        }
    }
}
