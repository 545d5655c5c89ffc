//! Audit events written behind the relay. A port-forward session's per-connection events
//! (`port_forward.open`, `port_forward.close`) go to the audit log while the connection's bytes
//! already flow, instead of holding every message of the session, all its connections' data
//! included, for one disk flush per connection (4 ms here: connections per second were bound by
//! `fsync`). The session itself was audited before it could do anything; a connection's target
//! was checked by the device before it was dialled.
//!
//! Still fail closed: a write that fails ends the session at once. Events keep their order: one
//! task per session appends them in the order they came, and the session's other events wait
//! for it ([`AuditBehind::flush`]).

use std::future::pending;

use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

use crate::{domain::audit::NewEvent, relay::Relay};

/// Whether `event` may be written behind the relay.
pub(super) fn writes_behind(event: &NewEvent) -> bool {
    matches!(event.action, "port_forward.open" | "port_forward.close")
}

enum Item {
    Event(Box<NewEvent>),
    /// Answered once everything queued before it is committed.
    Flush(oneshot::Sender<()>),
}

/// One session's queue of events written behind.
pub(crate) struct AuditBehind {
    queue: mpsc::UnboundedSender<Item>,
    /// Taken once it answered (a finished receiver must not be polled again).
    failed: Option<oneshot::Receiver<String>>,
    task: JoinHandle<()>,
}

impl AuditBehind {
    pub(super) fn start(state: &Relay) -> AuditBehind {
        let (queue, items) = mpsc::unbounded_channel();
        let (failure, failed) = oneshot::channel();
        let task = tokio::spawn(append(state.clone(), items, failure));
        AuditBehind {
            queue,
            failed: Some(failed),
            task,
        }
    }

    pub(super) fn write(&self, event: NewEvent) {
        // Fails only once the task gave up after a failed write, which `failed` reports.
        let _ = self.queue.send(Item::Event(Box::new(event)));
    }

    /// Before a session writes an event of its own: waits until the events its queue holds
    /// (if it has one) are committed, so that the chain keeps the session's order.
    pub(super) async fn before_own_event(queue: &Option<AuditBehind>) {
        if let Some(queue) = queue {
            queue.flush().await;
        }
    }

    /// Waits until every event written so far is committed.
    async fn flush(&self) {
        let (done, committed) = oneshot::channel();
        if self.queue.send(Item::Flush(done)).is_ok() {
            let _ = committed.await;
        }
    }

    /// Resolves with the reason once a write failed; never otherwise.
    pub(super) async fn failed(&mut self) -> String {
        if let Some(receiver) = &mut self.failed {
            let answer = receiver.await;
            self.failed = None;
            if let Ok(why) = answer {
                return why;
            }
        }
        pending().await
    }

    /// Commits what is queued and stops (the session ends: its last events come after these).
    pub(super) async fn finish(self) {
        drop(self.queue);
        let _ = self.task.await;
    }
}

/// Appends queued events, everything waiting at once in one call (one group commit).
async fn append(state: Relay, mut items: mpsc::UnboundedReceiver<Item>, failure: oneshot::Sender<String>) {
    let mut events = Vec::new();
    let mut flushes = Vec::new();
    while let Some(first) = items.recv().await {
        let mut next = Some(first);
        while let Some(item) = next {
            match item {
                Item::Event(event) => events.push(*event),
                Item::Flush(done) => flushes.push(done),
            }
            next = items.try_recv().ok();
        }
        if let Err(error) = state.store.record_audits(std::mem::take(&mut events)).await {
            tracing::error!("audit log: {}", error.message);
            let _ = failure.send(error.message);
            return;
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}
