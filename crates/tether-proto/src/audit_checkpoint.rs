//! Signed statements about the audit chain, and the verification of a chain against them.
//!
//! The hub signs, with an Ed25519 key kept outside its database, two kinds of statement:
//! - a *checkpoint*: "at `time` the chain's head was event `seq`, whose hash was `hash`";
//! - an *anchor*: "retention deleted every event up to `seq`, the last of which had `hash`"
//!   (stored with the chain's anchor, so that legitimate pruning can be told from deletion).
//!
//! The kind is part of the signed message: a checkpoint's signature can never pass for an
//! anchor's (else anyone holding a checkpoint could delete every event up to it).
//!
//! [`CheckpointWalk`] checks a chain (streamed from its anchor) against checkpoints a verifier
//! holds: an event rewritten and every later hash recomputed no longer has the signed hash at a
//! checkpoint's `seq`; deleted newest events leave the head below a checkpoint; deleted oldest
//! events need an anchor signed by a key the verifier trusts (one that signed its checkpoints).

use std::collections::BTreeSet;

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::audit::{AuditEvent, ChainWalk, GENESIS_HASH, Problem};

pub use crate::api::audit::{Anchor, Statement, StatementKind};

impl StatementKind {
    fn as_str(self) -> &'static str {
        match self {
            StatementKind::Checkpoint => "checkpoint",
            StatementKind::Anchor => "anchor",
        }
    }
}

/// Why a statement is not acceptable.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StatementError {
    #[error("its public key is not a valid Ed25519 key")]
    BadKey,
    #[error("its signature is malformed")]
    MalformedSignature,
    #[error("its signature does not match its content")]
    BadSignature,
}

impl Statement {
    /// Signs a statement of `kind` about event `seq` with `hash`, at `time`.
    pub fn sign(kind: StatementKind, seq: i64, hash: &str, time: i64, key: &SigningKey) -> Statement {
        let signature = key.sign(&message(kind, seq, hash, time));
        Statement {
            kind,
            seq,
            hash: hash.to_owned(),
            time,
            public_key: hex::encode(key.verifying_key().as_bytes()),
            signature: hex::encode(signature.to_bytes()),
        }
    }

    /// The bytes the signature covers.
    pub fn message(&self) -> Vec<u8> {
        message(self.kind, self.seq, &self.hash, self.time)
    }

    /// Checks the signature against the statement's own public key. Whether that key is one
    /// to trust is the caller's decision.
    pub fn check_signature(&self) -> Result<(), StatementError> {
        let key: [u8; 32] = hex::decode(&self.public_key)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(StatementError::BadKey)?;
        let key = VerifyingKey::from_bytes(&key).map_err(|_| StatementError::BadKey)?;
        let signature = hex::decode(&self.signature)
            .ok()
            .and_then(|bytes| Signature::from_slice(&bytes).ok())
            .ok_or(StatementError::MalformedSignature)?;
        key.verify(&self.message(), &signature)
            .map_err(|_| StatementError::BadSignature)
    }
}

fn message(kind: StatementKind, seq: i64, hash: &str, time: i64) -> Vec<u8> {
    format!(
        "tether audit {} v1\nseq {seq}\nhash {hash}\ntime {time}\n",
        kind.as_str()
    )
    .into_bytes()
}

impl Anchor {
    pub fn genesis() -> Anchor {
        Anchor {
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
            statement: None,
        }
    }

    fn is_genesis(&self) -> bool {
        self.seq == 0 && self.hash == GENESIS_HASH
    }
}

/// What a verification against checkpoints found.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckpointVerification {
    pub ok: bool,
    /// Events whose chain links verified.
    pub checked: i64,
    /// The last event seen (the anchor's `seq` when there is none).
    pub head: i64,
    /// Checkpoints held, found with their signed hash, and before the anchor (pruned by
    /// retention, which the signed anchor attests).
    pub checkpoints: usize,
    pub matched: usize,
    pub pruned: usize,
    /// Every problem found, in `seq` order of discovery.
    pub problems: Vec<Problem>,
}

/// Verifies a chain, fed one event at a time in `seq` order from its anchor, against the
/// checkpoints a verifier holds.
pub struct CheckpointWalk {
    chain: ChainWalk,
    anchor: Anchor,
    /// Valid checkpoints, sorted by `seq`; those before `next` are settled (found or missing).
    checkpoints: Vec<Statement>,
    next: usize,
    last_seen: i64,
    matched: usize,
    pruned: usize,
    problems: Vec<Problem>,
}

impl CheckpointWalk {
    pub fn new(anchor: Anchor, checkpoints: Vec<Statement>) -> CheckpointWalk {
        let mut problems = Vec::new();
        let mut valid = Vec::new();
        for checkpoint in checkpoints {
            let refused = if checkpoint.kind != StatementKind::Checkpoint {
                Some("it is not a checkpoint".to_owned())
            } else {
                checkpoint.check_signature().err().map(|error| error.to_string())
            };
            match refused {
                Some(reason) => problems.push(Problem::new(
                    checkpoint.seq,
                    "checkpoint",
                    format!(
                        "the checkpoint of event {} is not valid: {reason}",
                        checkpoint.seq
                    ),
                )),
                None => valid.push(checkpoint),
            }
        }
        valid.sort_by_key(|checkpoint| checkpoint.seq);
        let trusted: BTreeSet<&str> = valid.iter().map(|c| c.public_key.as_str()).collect();
        if let Some(problem) = anchor_problem(&anchor, &trusted) {
            problems.push(problem);
        }
        let mut walk = CheckpointWalk {
            chain: ChainWalk::from_anchor(anchor.seq, &anchor.hash),
            checkpoints: valid,
            next: 0,
            last_seen: anchor.seq,
            matched: 0,
            pruned: 0,
            problems,
            anchor,
        };
        // Checkpoints at or before the anchor: the anchor's hash is the only one left to compare.
        while walk.next < walk.checkpoints.len() && walk.checkpoints[walk.next].seq <= walk.anchor.seq {
            let checkpoint = &walk.checkpoints[walk.next];
            if checkpoint.seq < walk.anchor.seq {
                walk.pruned += 1;
            } else if checkpoint.hash == walk.anchor.hash {
                walk.matched += 1;
            } else {
                walk.problems.push(rewritten(checkpoint, &walk.anchor.hash));
            }
            walk.next += 1;
        }
        walk
    }

    /// Checks the next event (in `seq` order).
    pub fn step(&mut self, event: &AuditEvent) {
        self.chain.step(event);
        self.last_seen = self.last_seen.max(event.seq);
        // Every checkpoint at or before this event is settled now: found here, or missing.
        while self.next < self.checkpoints.len() && self.checkpoints[self.next].seq <= event.seq {
            let checkpoint = &self.checkpoints[self.next];
            if checkpoint.seq == event.seq {
                if checkpoint.hash == event.hash {
                    self.matched += 1;
                } else {
                    self.problems.push(rewritten(checkpoint, &event.hash));
                }
            } else {
                self.problems.push(Problem::new(
                    checkpoint.seq,
                    "missing",
                    format!(
                        "event {} is attested by a checkpoint but is not in the log",
                        checkpoint.seq
                    ),
                ));
            }
            self.next += 1;
        }
    }

    pub fn finish(mut self) -> CheckpointVerification {
        if let Some(problem) = self.chain.problem() {
            self.problems.insert(0, problem.clone());
        }
        let head = self.last_seen;
        if let Some(highest) = self.checkpoints[self.next..].last() {
            // Events the verifier holds a signature for are gone from the end of the log.
            self.problems.push(Problem::new(
                highest.seq,
                "truncated",
                format!(
                    "the log ends at event {head}, but a checkpoint attests event {}: events {}..{} \
                     were deleted (or the database was rolled back)",
                    highest.seq,
                    head + 1,
                    highest.seq
                ),
            ));
        }
        let verification = self.chain.finish();
        CheckpointVerification {
            ok: self.problems.is_empty(),
            checked: verification.checked,
            head,
            checkpoints: self.checkpoints.len(),
            matched: self.matched,
            pruned: self.pruned,
            problems: self.problems,
        }
    }
}

fn rewritten(checkpoint: &Statement, found: &str) -> Problem {
    Problem::new(
        checkpoint.seq,
        "rewritten",
        format!(
            "event {} has hash {} but its checkpoint signed {}: an event up to {} was changed and \
             the later hashes recomputed",
            checkpoint.seq,
            short(found),
            short(&checkpoint.hash),
            checkpoint.seq
        ),
    )
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// Whether the anchor is the genesis or attested by a trusted key's signed anchor statement.
fn anchor_problem(anchor: &Anchor, trusted: &BTreeSet<&str>) -> Option<Problem> {
    if anchor.is_genesis() {
        return None;
    }
    let problem = |detail: String| Some(Problem::new(anchor.seq, "anchor", detail));
    let Some(statement) = &anchor.statement else {
        return problem(format!(
            "the log starts after event {}, but no signed statement says retention deleted \
             events up to it: the oldest events were deleted and the anchor rewritten",
            anchor.seq
        ));
    };
    if statement.kind != StatementKind::Anchor {
        return problem(format!(
            "the anchor at event {} carries a {} signature, not a retention statement",
            anchor.seq,
            statement.kind.as_str()
        ));
    }
    if let Err(error) = statement.check_signature() {
        return problem(format!("the anchor's statement is not valid: {error}"));
    }
    if statement.seq != anchor.seq || statement.hash != anchor.hash {
        return problem(format!(
            "the anchor is event {} but its signed statement is about event {}: the anchor was \
             rewritten",
            anchor.seq, statement.seq
        ));
    }
    if !trusted.contains(statement.public_key.as_str()) {
        return problem(format!(
            "the anchor at event {} is signed by key {}, which signed none of the checkpoints held",
            anchor.seq,
            short(&statement.public_key)
        ));
    }
    None
}

/// Verifies `events` (in `seq` order from `anchor`) against `checkpoints`.
pub fn verify_with_checkpoints<I: IntoIterator<Item = AuditEvent>>(
    anchor: Anchor,
    events: I,
    checkpoints: Vec<Statement>,
) -> CheckpointVerification {
    let mut walk = CheckpointWalk::new(anchor, checkpoints);
    for event in events {
        walk.step(&event);
    }
    walk.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::test_chain;

    fn key(byte: u8) -> SigningKey {
        SigningKey::from_bytes(&[byte; 32])
    }

    fn checkpoint(events: &[AuditEvent], seq: i64, key: &SigningKey) -> Statement {
        let hash = &events[(seq - 1) as usize].hash;
        Statement::sign(StatementKind::Checkpoint, seq, hash, 1_000, key)
    }

    /// Recomputes every hash from `from` (1-based) on, as someone with write access would.
    fn recompute(events: &mut [AuditEvent], from: i64) {
        for index in (from - 1) as usize..events.len() {
            if index > 0 {
                events[index].prev_hash = events[index - 1].hash.clone();
            }
            events[index].hash = events[index].compute_hash();
        }
    }

    fn kinds(result: &CheckpointVerification) -> Vec<(i64, &str)> {
        result.problems.iter().map(|p| (p.seq, p.kind.as_str())).collect()
    }

    #[test]
    fn signatures_verify_and_cover_every_field() {
        let statement = Statement::sign(StatementKind::Checkpoint, 7, "ab", 99, &key(1));
        assert_eq!(statement.check_signature(), Ok(()));
        for altered in [
            Statement {
                seq: 8,
                ..statement.clone()
            },
            Statement {
                hash: "ac".into(),
                ..statement.clone()
            },
            Statement {
                time: 100,
                ..statement.clone()
            },
            Statement {
                kind: StatementKind::Anchor,
                ..statement.clone()
            },
        ] {
            assert_eq!(altered.check_signature(), Err(StatementError::BadSignature));
        }
        let other_key = Statement {
            public_key: hex::encode(key(2).verifying_key().as_bytes()),
            ..statement.clone()
        };
        assert_eq!(other_key.check_signature(), Err(StatementError::BadSignature));
        let garbage = Statement {
            signature: "zz".into(),
            ..statement
        };
        assert_eq!(garbage.check_signature(), Err(StatementError::MalformedSignature));
    }

    #[test]
    fn an_intact_chain_matches_its_checkpoints() {
        let events = test_chain(10);
        let held = vec![checkpoint(&events, 4, &key(1)), checkpoint(&events, 10, &key(1))];
        let result = verify_with_checkpoints(Anchor::genesis(), events, held);
        assert!(result.ok, "{result:?}");
        assert_eq!((result.checked, result.head, result.matched), (10, 10, 2));
    }

    #[test]
    fn an_edit_with_recomputed_hashes_is_found_at_the_checkpoint() {
        let mut events = test_chain(10);
        let held = vec![checkpoint(&events, 8, &key(1))];
        events[4].outcome = "failure".into();
        recompute(&mut events, 5);
        assert!(crate::audit::verify((0, GENESIS_HASH.into()), events.clone()).ok);
        let result = verify_with_checkpoints(Anchor::genesis(), events, held);
        assert_eq!(kinds(&result), [(8, "rewritten")]);
    }

    #[test]
    fn deleted_newest_events_are_found() {
        let mut events = test_chain(10);
        let held = vec![checkpoint(&events, 10, &key(1))];
        events.truncate(7);
        let result = verify_with_checkpoints(Anchor::genesis(), events, held);
        assert_eq!(kinds(&result), [(10, "truncated")]);
        assert_eq!(result.head, 7);
    }

    #[test]
    fn deleted_oldest_events_need_a_trusted_signed_anchor() {
        let events = test_chain(10);
        let held = vec![checkpoint(&events, 9, &key(1))];
        let rest = || events[3..].to_vec();
        let anchor = |statement| Anchor {
            seq: 3,
            hash: events[2].hash.clone(),
            statement,
        };
        // Forged: no statement.
        let result = verify_with_checkpoints(anchor(None), rest(), held.clone());
        assert_eq!(kinds(&result), [(3, "anchor")]);
        // Forged: signed by a key that signed no checkpoint held.
        let foreign = Statement::sign(StatementKind::Anchor, 3, &events[2].hash, 5, &key(2));
        let result = verify_with_checkpoints(anchor(Some(foreign)), rest(), held.clone());
        assert_eq!(kinds(&result), [(3, "anchor")]);
        // Forged: a checkpoint's signature reused as the anchor's.
        let reused = checkpoint(&events, 3, &key(1));
        let result = verify_with_checkpoints(anchor(Some(reused)), rest(), held.clone());
        assert_eq!(kinds(&result), [(3, "anchor")]);
        // Forged: a real anchor statement of an earlier retention, the anchor moved further.
        let earlier = Statement::sign(StatementKind::Anchor, 2, &events[1].hash, 5, &key(1));
        let result = verify_with_checkpoints(anchor(Some(earlier)), rest(), held.clone());
        assert_eq!(kinds(&result), [(3, "anchor")]);
        // Retention: signed by the hub's key.
        let real = Statement::sign(StatementKind::Anchor, 3, &events[2].hash, 5, &key(1));
        let result = verify_with_checkpoints(anchor(Some(real)), rest(), held);
        assert!(result.ok, "{result:?}");
    }

    #[test]
    fn checkpoints_before_the_anchor_count_as_pruned() {
        let events = test_chain(10);
        let held = vec![
            checkpoint(&events, 2, &key(1)),
            checkpoint(&events, 5, &key(1)),
            checkpoint(&events, 9, &key(1)),
        ];
        let anchor = Anchor {
            seq: 5,
            hash: events[4].hash.clone(),
            statement: Some(Statement::sign(
                StatementKind::Anchor,
                5,
                &events[4].hash,
                5,
                &key(1),
            )),
        };
        let result = verify_with_checkpoints(anchor, events[5..].to_vec(), held);
        assert!(result.ok, "{result:?}");
        assert_eq!((result.pruned, result.matched, result.checked), (1, 2, 5));
    }

    #[test]
    fn invalid_checkpoints_are_reported_not_trusted() {
        let events = test_chain(3);
        let mut forged = checkpoint(&events, 3, &key(1));
        forged.hash = "00".into();
        let result = verify_with_checkpoints(Anchor::genesis(), events, vec![forged]);
        assert_eq!(kinds(&result), [(3, "checkpoint")]);
    }

    #[test]
    fn a_removed_middle_event_at_a_checkpoint_is_missing() {
        let mut events = test_chain(6);
        let held = vec![checkpoint(&events, 3, &key(1))];
        events.remove(2);
        let result = verify_with_checkpoints(Anchor::genesis(), events, held);
        assert_eq!(kinds(&result), [(3, "removed"), (3, "missing")]);
    }
}
