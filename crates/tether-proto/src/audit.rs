//! The audit log's hash chain, shared by the hub (which writes it) and the CLI (which verifies
//! an export of it locally): the event as stored, its hash, and the walk that names the first
//! modified, removed or reordered event. Pure computation, no I/O.

use sha2::{Digest as _, Sha256};

/// The hash before the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub use crate::api::audit::AuditEvent;

impl AuditEvent {
    /// The hash of this event's content and its predecessor's hash. Field order is fixed here:
    /// changing it invalidates every stored chain.
    pub fn compute_hash(&self) -> String {
        let content = serde_json::json!([
            self.seq,
            self.id,
            self.time,
            self.actor_kind,
            self.actor_id,
            self.actor_name,
            self.client_address,
            self.user_agent,
            self.action,
            self.object_kind,
            self.object_id,
            self.object_name,
            self.outcome,
            self.details,
            self.session_id,
            self.prev_hash,
        ]);
        hex::encode(Sha256::digest(content.to_string().as_bytes()))
    }
}

pub use crate::api::audit::{Problem, Verification};

impl Problem {
    pub fn new(seq: i64, kind: &str, detail: String) -> Problem {
        Problem {
            seq,
            kind: kind.to_owned(),
            detail,
        }
    }
}

/// Walks the chain one event at a time (so that a verifier can stream an export) and keeps
/// only the previous hash; it stops at the first inconsistency.
#[derive(Debug, Clone)]
pub struct ChainWalk {
    expected_seq: i64,
    previous_hash: String,
    checked: i64,
    problem: Option<Problem>,
}

impl ChainWalk {
    /// A walk from the chain's anchor: the `seq` and hash of the event before the first one
    /// (the genesis, or the last event retention deleted).
    pub fn from_anchor(seq: i64, hash: &str) -> ChainWalk {
        ChainWalk {
            expected_seq: seq + 1,
            previous_hash: hash.to_owned(),
            checked: 0,
            problem: None,
        }
    }

    /// Checks the next event; false once the chain is broken (later events are not checked).
    pub fn step(&mut self, event: &AuditEvent) -> bool {
        if self.problem.is_some() {
            return false;
        }
        let expected = self.expected_seq;
        self.problem = if event.compute_hash() != event.hash {
            Some(Problem::new(
                event.seq,
                "modified",
                format!("event {} does not match its hash", event.seq),
            ))
        } else if event.seq > expected && event.prev_hash != self.previous_hash {
            Some(Problem::new(
                expected,
                "removed",
                format!("events {expected}..{} are missing", event.seq - 1),
            ))
        } else if event.prev_hash != self.previous_hash || event.seq != expected {
            Some(Problem::new(
                event.seq,
                "reordered",
                format!("event {} does not follow event {}", event.seq, expected - 1),
            ))
        } else {
            None
        };
        if self.problem.is_some() {
            return false;
        }
        self.checked += 1;
        self.expected_seq = event.seq + 1;
        self.previous_hash = event.hash.clone();
        true
    }

    /// The `seq` and hash of the last event that verified (the anchor before any).
    pub fn head(&self) -> (i64, &str) {
        (self.expected_seq - 1, &self.previous_hash)
    }

    pub fn problem(&self) -> Option<&Problem> {
        self.problem.as_ref()
    }

    pub fn finish(self) -> Verification {
        Verification {
            ok: self.problem.is_none(),
            checked: self.checked,
            problem: self.problem,
        }
    }
}

/// Walks the chain in `seq` order from its anchor and reports the first inconsistency.
pub fn verify<I: IntoIterator<Item = AuditEvent>>(anchor: (i64, String), events: I) -> Verification {
    let mut walk = ChainWalk::from_anchor(anchor.0, &anchor.1);
    for event in events {
        if !walk.step(&event) {
            break;
        }
    }
    walk.finish()
}

/// Test chains, shared with the checkpoint tests.
#[cfg(test)]
pub(crate) fn test_chain(n: i64) -> Vec<AuditEvent> {
    let mut previous = GENESIS_HASH.to_owned();
    (1..=n)
        .map(|seq| {
            let mut event = AuditEvent {
                seq,
                id: format!("id-{seq}"),
                time: seq * 1000,
                actor_kind: "user".into(),
                actor_id: Some("u".into()),
                actor_name: Some("alice".into()),
                client_address: None,
                user_agent: None,
                action: "login".into(),
                object_kind: None,
                object_id: None,
                object_name: None,
                outcome: "success".into(),
                details: serde_json::json!({"n": seq}),
                session_id: None,
                prev_hash: previous.clone(),
                hash: String::new(),
            };
            event.hash = event.compute_hash();
            previous = event.hash.clone();
            event
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn genesis() -> (i64, String) {
        (0, GENESIS_HASH.to_owned())
    }

    #[test]
    fn an_intact_chain_verifies() {
        let result = verify(genesis(), test_chain(5));
        assert!(result.ok);
        assert_eq!(result.checked, 5);
    }

    #[test]
    fn a_modified_event_is_named() {
        let mut events = test_chain(5);
        events[2].outcome = "failure".into();
        let problem = verify(genesis(), events).problem.unwrap();
        assert_eq!((problem.seq, problem.kind.as_str()), (3, "modified"));
    }

    #[test]
    fn a_removed_event_is_named() {
        let mut events = test_chain(5);
        events.remove(1);
        let problem = verify(genesis(), events).problem.unwrap();
        assert_eq!((problem.seq, problem.kind.as_str()), (2, "removed"));
    }

    #[test]
    fn swapped_events_are_named() {
        let mut events = test_chain(5);
        // Swap the content of rows 2 and 3 while keeping their seq numbers (a row swap in the table).
        let (a, b) = (events[1].clone(), events[2].clone());
        events[1] = AuditEvent { seq: 2, ..b };
        events[2] = AuditEvent { seq: 3, ..a };
        let problem = verify(genesis(), events).problem.unwrap();
        assert_eq!(problem.seq, 2);
        assert!(problem.kind == "modified" || problem.kind == "reordered");
    }

    #[test]
    fn the_walk_reports_its_head() {
        let events = test_chain(3);
        let mut walk = ChainWalk::from_anchor(0, GENESIS_HASH);
        assert_eq!(walk.head(), (0, GENESIS_HASH));
        for event in &events {
            assert!(walk.step(event));
        }
        assert_eq!(walk.head(), (3, events[2].hash.as_str()));
    }
}
