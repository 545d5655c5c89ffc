//! The SQL of the audit log: appending to its hash chain (one writer at a time in this process,
//! an advisory lock across PostgreSQL replicas), querying events by filter for the API and for
//! exports, and the chain's anchor, which retention pruning moves past the deleted events with
//! the hub's signed statement of what it deleted (migration 0012). Same rules as `store/mod.rs`:
//! portable SQL.
//!
//! Appends are group commits (`AuditWriter`): callers queue their events, and whichever caller
//! holds the chain lock writes every queued event in one multi-row INSERT and one commit, so
//! concurrent callers share one disk flush. A commit's flush (about 4 ms here) used to be paid
//! once per event, twice per forwarded connection; now it is paid once per group.

use sqlx::Row as _;
use tether_proto::audit_checkpoint::{Anchor, Statement};

use crate::{
    domain::audit::AuditEvent, domain::audit::NewEvent, domain::failure::Failure, store::Backend,
    store::Store,
};

/// The PostgreSQL advisory lock that serializes audit appends across replicas (any constant
/// works; this one spells "tether" in ASCII).
const AUDIT_CHAIN_LOCK: i64 = 0x7465_7468_6572;

/// Filters of an audit query; every field is optional.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Unix milliseconds, inclusive.
    pub from: Option<i64>,
    /// Unix milliseconds, exclusive.
    pub to: Option<i64>,
    /// A user or device id, or a user name.
    pub actor: Option<String>,
    /// The object's id (a device id for device actions).
    pub device: Option<String>,
    pub action: Option<String>,
    pub session: Option<String>,
    pub outcome: Option<String>,
    /// Return events with `seq` below this (pagination, newest first).
    pub before: Option<i64>,
}

fn audit_from_row(row: &sqlx::any::AnyRow) -> Result<AuditEvent, sqlx::Error> {
    let details: String = row.try_get("details")?;
    Ok(AuditEvent {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        time: row.try_get("time")?,
        actor_kind: row.try_get("actor_kind")?,
        actor_id: row.try_get("actor_id")?,
        actor_name: row.try_get("actor_name")?,
        client_address: row.try_get("client_address")?,
        user_agent: row.try_get("user_agent")?,
        action: row.try_get("action")?,
        object_kind: row.try_get("object_kind")?,
        object_id: row.try_get("object_id")?,
        object_name: row.try_get("object_name")?,
        outcome: row.try_get("outcome")?,
        // A row edited into invalid JSON still loads; its hash will not match.
        details: serde_json::from_str(&details).unwrap_or(serde_json::Value::String(details)),
        session_id: row.try_get("session_id")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

macro_rules! audit_select {
    ($rest:literal) => {
        concat!(
            "SELECT seq, id, time, actor_kind, actor_id, actor_name, client_address, user_agent, action, \
             object_kind, object_id, object_name, outcome, details, session_id, prev_hash, hash FROM audit_events ",
            $rest
        )
    };
}

/// Columns of an audit event row, in the order [`insert_audit_events`] binds them.
const AUDIT_COLUMNS: &str = "seq, id, time, actor_kind, actor_id, actor_name, client_address, user_agent, \
     action, object_kind, object_id, object_name, outcome, details, session_id, prev_hash, hash";
const AUDIT_COLUMN_COUNT: usize = 17;

/// One `INSERT` of `events` (at least one), for the pool or a transaction: a single statement is
/// atomic on SQLite without a transaction.
fn insert_audit_events(
    events: &[AuditEvent],
) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    let rows: Vec<String> = (0..events.len())
        .map(|row| {
            let placeholders: Vec<String> = (1..=AUDIT_COLUMN_COUNT)
                .map(|column| format!("${}", row * AUDIT_COLUMN_COUNT + column))
                .collect();
            format!("({})", placeholders.join(", "))
        })
        .collect();
    let sql = format!(
        "INSERT INTO audit_events ({AUDIT_COLUMNS}) VALUES {}",
        rows.join(", ")
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for event in events {
        query = query
            .bind(event.seq)
            .bind(event.id.clone())
            .bind(event.time)
            .bind(event.actor_kind.clone())
            .bind(event.actor_id.clone())
            .bind(event.actor_name.clone())
            .bind(event.client_address.clone())
            .bind(event.user_agent.clone())
            .bind(event.action.clone())
            .bind(event.object_kind.clone())
            .bind(event.object_id.clone())
            .bind(event.object_name.clone())
            .bind(event.outcome.clone())
            .bind(event.details.to_string())
            .bind(event.session_id.clone())
            .bind(event.prev_hash.clone())
            .bind(event.hash.clone());
    }
    query
}

/// The last event's `seq` and hash, else the anchor's, else the genesis.
async fn audit_head(connection: &mut sqlx::AnyConnection) -> anyhow::Result<(i64, String)> {
    let head = sqlx::query("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *connection)
        .await?;
    if let Some(row) = head {
        return Ok((row.try_get("seq")?, row.try_get("hash")?));
    }
    let anchor = sqlx::query("SELECT seq, hash FROM audit_anchor WHERE id = 1")
        .fetch_optional(&mut *connection)
        .await?;
    Ok(match anchor {
        Some(row) => (row.try_get("seq")?, row.try_get("hash")?),
        None => (0, crate::domain::audit::GENESIS_HASH.to_owned()),
    })
}

/// At most this many events go into one statement (17 parameters each, well under SQLite's
/// limit of 32,766), unless one caller's own events are more.
const MAX_BATCH: usize = 256;

/// The process's audit writer: one append at a time (each event chains to the previous one), and
/// the events that arrive while an append commits wait here to be committed together in the next
/// one (group commit). An event is still committed before its caller hears so (fail closed); what
/// batching saves is one synchronous disk flush per event: about 4 ms each on this machine's
/// disk, which made the audit log the limit of forwarded connections per second.
#[derive(Default)]
pub(crate) struct AuditWriter {
    chain: tokio::sync::Mutex<()>,
    waiting: std::sync::Mutex<Vec<Waiting>>,
    /// The last commit failed: callers that could go on without waiting must wait again.
    failing: std::sync::atomic::AtomicBool,
}

/// Events waiting for the writer (one caller's, committed together), and whom to tell whether
/// they were committed.
struct Waiting {
    events: Vec<NewEvent>,
    committed: tokio::sync::oneshot::Sender<bool>,
}

/// The stored form of `event` at `seq`, chained to `prev_hash`.
fn chained(event: NewEvent, seq: i64, prev_hash: String) -> AuditEvent {
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
}

impl Store {
    /// Appends an event to the chain and commits it. Errors mean the action must not proceed.
    pub async fn record_audit(&self, event: NewEvent) -> Result<(), Failure> {
        self.record_audits(vec![event]).await
    }

    /// Appends events to the chain, in this order, and commits them (all or none). Errors mean
    /// the actions must not proceed.
    ///
    /// The caller queues its events, then waits for the writer; whoever holds the writer commits
    /// every queued event in one transaction and tells each caller. Events keep their queue
    /// order in the chain.
    pub async fn record_audits(&self, events: Vec<NewEvent>) -> Result<(), Failure> {
        if events.is_empty() {
            return Ok(());
        }
        for event in &events {
            crate::domain::audit::note_recorded(event.outcome);
        }
        let count = events.len();
        // Timed from before the wait for the chain: what the audited action waits.
        let started = std::time::Instant::now();
        let (committed, outcome) = tokio::sync::oneshot::channel();
        let writer = &self.audit_writer;
        writer
            .waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(Waiting { events, committed });
        {
            let _chain = writer.chain.lock().await;
            loop {
                let batch: Vec<Waiting> = {
                    let mut waiting = writer
                        .waiting
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    // Whole callers only (their events commit together), at least one.
                    let mut events = 0;
                    let take = waiting
                        .iter()
                        .take_while(|caller| {
                            events += caller.events.len();
                            events <= MAX_BATCH
                        })
                        .count()
                        .max(1)
                        .min(waiting.len());
                    waiting.drain(..take).collect()
                };
                if batch.is_empty() {
                    break;
                }
                let mut callers = Vec::with_capacity(batch.len());
                let mut events = Vec::new();
                for caller in batch {
                    events.extend(caller.events);
                    callers.push(caller.committed);
                }
                let mut events = events.into_iter();
                let appended = self
                    .append_audit_events(events.len(), |seq, prev_hash| {
                        chained(events.next().expect("one event per seq"), seq, prev_hash)
                    })
                    .await;
                if let Err(error) = &appended {
                    tracing::error!("audit log unavailable: {error:#}");
                }
                writer
                    .failing
                    .store(appended.is_err(), std::sync::atomic::Ordering::Relaxed);
                for caller in callers {
                    let _ = caller.send(appended.is_ok());
                }
            }
        }
        // No answer means the writer holding our event was cancelled mid-write: not committed.
        let committed = outcome.await.unwrap_or(false);
        for _ in 0..count {
            crate::metrics::metrics().audit_written(started.elapsed().as_secs_f64(), committed);
        }
        if committed {
            Ok(())
        } else {
            Err(crate::domain::audit::unavailable())
        }
    }

    /// Whether the last audit commit failed (until one succeeds again): events that may be
    /// written behind an action are then written before it, as all others are.
    pub fn audit_failing(&self) -> bool {
        self.audit_writer
            .failing
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Where the chain starts: the anchor left by retention pruning, or the genesis.
    pub async fn audit_anchor(&self) -> anyhow::Result<(i64, String)> {
        let row = sqlx::query("SELECT seq, hash FROM audit_anchor WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => (row.try_get("seq")?, row.try_get("hash")?),
            None => (0, crate::domain::audit::GENESIS_HASH.to_owned()),
        })
    }

    /// Appends one event to the hash chain: `make(seq, prev_hash)` builds it from the current
    /// head.
    pub async fn append_audit_event(
        &self,
        make: impl FnOnce(i64, String) -> AuditEvent,
    ) -> anyhow::Result<AuditEvent> {
        let mut make = Some(make);
        let mut appended = self
            .append_audit_events(1, |seq, prev_hash| {
                make.take().expect("one event")(seq, prev_hash)
            })
            .await?;
        Ok(appended.remove(0))
    }

    /// Appends `count` events to the hash chain in one commit: `make(seq, prev_hash)` builds each
    /// from the one before (the first from the current head). On PostgreSQL, one transaction
    /// under a transaction-scoped advisory lock serializes appends from every replica, so the
    /// chain stays gapless and linear. On SQLite the caller's process-wide lock (the audit
    /// writer, taken by `record_audit`) serializes them and one multi-row `INSERT` commits them
    /// atomically; a read-then-write transaction there would fail with SQLITE_BUSY whenever
    /// another write commits in between.
    pub async fn append_audit_events(
        &self,
        count: usize,
        mut make: impl FnMut(i64, String) -> AuditEvent,
    ) -> anyhow::Result<Vec<AuditEvent>> {
        let build = |(mut seq, mut hash): (i64, String), make: &mut dyn FnMut(i64, String) -> AuditEvent| {
            (0..count)
                .map(|_| {
                    seq += 1;
                    let event = make(seq, std::mem::take(&mut hash));
                    hash = event.hash.clone();
                    event
                })
                .collect::<Vec<_>>()
        };
        if self.backend == Backend::Sqlite {
            let mut connection = self.pool.acquire().await?;
            let events = build(audit_head(&mut connection).await?, &mut make);
            insert_audit_events(&events).execute(&mut *connection).await?;
            return Ok(events);
        }
        let mut transaction = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(AUDIT_CHAIN_LOCK)
            .execute(&mut *transaction)
            .await?;
        let events = build(audit_head(&mut transaction).await?, &mut make);
        insert_audit_events(&events).execute(&mut *transaction).await?;
        transaction.commit().await?;
        Ok(events)
    }

    /// Events matching `filter`, newest first, at most `limit`.
    pub async fn audit_events(&self, filter: &AuditFilter, limit: i64) -> anyhow::Result<Vec<AuditEvent>> {
        let newest_first = sqlx::query(audit_select!(
            "WHERE ($1 IS NULL OR time >= $1) AND ($2 IS NULL OR time < $2) \
             AND ($3 IS NULL OR actor_id = $3 OR actor_name = $3) AND ($4 IS NULL OR object_id = $4) \
             AND ($5 IS NULL OR action = $5) AND ($6 IS NULL OR session_id = $6) \
                          AND ($7 IS NULL OR outcome = $7) AND ($8 IS NULL OR seq < $8) ORDER BY seq DESC LIMIT $9"
        ));
        self.filtered_audit(newest_first, filter, filter.before, limit)
            .await
    }

    /// Events matching `filter` with `seq` above `after`, oldest first (exports).
    pub async fn audit_events_oldest_first(
        &self,
        filter: &AuditFilter,
        after: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<AuditEvent>> {
        let oldest_first = sqlx::query(audit_select!(
            "WHERE ($1 IS NULL OR time >= $1) AND ($2 IS NULL OR time < $2) \
             AND ($3 IS NULL OR actor_id = $3 OR actor_name = $3) AND ($4 IS NULL OR object_id = $4) \
             AND ($5 IS NULL OR action = $5) AND ($6 IS NULL OR session_id = $6) \
             AND ($7 IS NULL OR outcome = $7) AND seq > $8 ORDER BY seq LIMIT $9"
        ));
        self.filtered_audit(oldest_first, filter, Some(after), limit)
            .await
    }

    async fn filtered_audit(
        &self,
        query: sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments>,
        filter: &AuditFilter,
        seq_bound: Option<i64>,
        limit: i64,
    ) -> anyhow::Result<Vec<AuditEvent>> {
        let rows = query
            .bind(filter.from)
            .bind(filter.to)
            .bind(filter.actor.clone())
            .bind(filter.device.clone())
            .bind(filter.action.clone())
            .bind(filter.session.clone())
            .bind(filter.outcome.clone())
            .bind(seq_bound)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(audit_from_row).collect::<Result<_, _>>()?)
    }

    /// Events in chain order with `seq` above `after`, at most `limit` (for verification).
    pub async fn audit_events_after(&self, after: i64, limit: i64) -> anyhow::Result<Vec<AuditEvent>> {
        let rows = sqlx::query(audit_select!("WHERE seq > $1 ORDER BY seq LIMIT $2"))
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(audit_from_row).collect::<Result<_, _>>()?)
    }
}

impl Store {
    /// The chain's anchor with its signed statement (the genesis when nothing was pruned). A
    /// statement that does not parse is returned as absent: verification then names the anchor.
    pub async fn audit_anchor_statement(&self) -> anyhow::Result<Anchor> {
        let row = sqlx::query("SELECT seq, hash, statement FROM audit_anchor WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(Anchor::genesis());
        };
        let statement: Option<String> = row.try_get("statement")?;
        Ok(Anchor {
            seq: row.try_get("seq")?,
            hash: row.try_get("hash")?,
            statement: statement.and_then(|text| serde_json::from_str(&text).ok()),
        })
    }

    /// Deletes events older than `before` (Unix ms) and moves the chain's anchor past them, with
    /// `attest(seq, hash)`'s signed statement of the last deleted event, in one transaction.
    pub async fn prune_audit(
        &self,
        before: i64,
        attest: impl FnOnce(i64, &str) -> Statement,
    ) -> anyhow::Result<u64> {
        let mut transaction = self.pool.begin().await?;
        let last =
            sqlx::query("SELECT seq, hash FROM audit_events WHERE time < $1 ORDER BY seq DESC LIMIT 1")
                .bind(before)
                .fetch_optional(&mut *transaction)
                .await?;
        let Some(last) = last else { return Ok(0) };
        let (seq, hash): (i64, String) = (last.try_get("seq")?, last.try_get("hash")?);
        let statement = serde_json::to_string(&attest(seq, &hash))?;
        let deleted = sqlx::query("DELETE FROM audit_events WHERE seq <= $1")
            .bind(seq)
            .execute(&mut *transaction)
            .await?;
        sqlx::query("DELETE FROM audit_anchor")
            .execute(&mut *transaction)
            .await?;
        sqlx::query("INSERT INTO audit_anchor (id, seq, hash, statement) VALUES (1, $1, $2, $3)")
            .bind(seq)
            .bind(hash)
            .bind(statement)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(deleted.rows_affected())
    }
}
