//! The SQL of replica liveness (migration 0016): each replica's heartbeat, the replicas taken
//! for dead, and the lock under which one replica at a time closes terminals (and deletes the
//! other live sessions, `active_sessions`) left open. Same rules as `store/mod.rs`: portable
//! SQL, though only PostgreSQL deployments use it.

use sqlx::Row as _;

use crate::store::{Backend, Store};

/// The PostgreSQL advisory lock held while a replica closes interrupted terminals ("close" in
/// ASCII; distinct from the audit chain's and the first administrator's).
const CLOSING_LOCK: i64 = 0x63_6c6f_7365;

/// Held while interrupted terminals are closed, so that two replicas never close the same one
/// (each would record its `terminal.close`). Released when dropped, or by [`ClosingLock::release`].
pub struct ClosingLock {
    /// The transaction that holds the lock (transaction-scoped: it ends with the transaction,
    /// even if this process dies). None on SQLite, where one hub owns the database.
    transaction: Option<sqlx::Transaction<'static, sqlx::Any>>,
}

impl ClosingLock {
    pub async fn release(self) -> anyhow::Result<()> {
        if let Some(transaction) = self.transaction {
            transaction.commit().await?;
        }
        Ok(())
    }
}

impl Store {
    /// Records that `replica_id` is alive at `now` (Unix milliseconds).
    pub async fn replica_heartbeat(&self, replica_id: &str, now: i64) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO replica_heartbeats (replica_id, heartbeat_at) VALUES ($1, $2) \
             ON CONFLICT (replica_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        )
        .bind(replica_id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Waits for the closing lock (PostgreSQL); nothing to wait for on SQLite.
    pub async fn closing_lock(&self) -> anyhow::Result<ClosingLock> {
        if self.backend == Backend::Sqlite {
            return Ok(ClosingLock { transaction: None });
        }
        let mut transaction = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(CLOSING_LOCK)
            .execute(&mut *transaction)
            .await?;
        Ok(ClosingLock {
            transaction: Some(transaction),
        })
    }

    /// The replicas other than `me` that serve open terminals or other live sessions
    /// (`active_sessions`) and whose last heartbeat is older than `alive_since` (Unix
    /// milliseconds). A replica with no heartbeat at all (rows written by
    /// a hub from before heartbeats) is first given one now, so it gets a whole timeout to show
    /// it is alive rather than being taken for dead at once.
    pub async fn dead_replicas(&self, me: &str, now: i64, alive_since: i64) -> anyhow::Result<Vec<String>> {
        // The WHERE clause is there for SQLite's parser (INSERT ... SELECT ... ON CONFLICT).
        sqlx::query(
            "INSERT INTO replica_heartbeats (replica_id, heartbeat_at) \
             SELECT DISTINCT replica_id, $1 FROM (SELECT replica_id FROM open_terminals \
             UNION SELECT replica_id FROM active_sessions) AS serving WHERE replica_id <> '' \
             ON CONFLICT (replica_id) DO NOTHING",
        )
        .bind(now)
        .execute(&self.pool)
        .await?;
        let rows = sqlx::query(
            "SELECT DISTINCT serving.replica_id AS replica_id FROM (SELECT replica_id FROM open_terminals \
             UNION SELECT replica_id FROM active_sessions) AS serving \
             JOIN replica_heartbeats ON replica_heartbeats.replica_id = serving.replica_id \
             WHERE serving.replica_id <> $1 AND replica_heartbeats.heartbeat_at < $2 \
             ORDER BY serving.replica_id",
        )
        .bind(me)
        .bind(alive_since)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| row.try_get("replica_id"))
            .collect::<Result<_, _>>()?)
    }

    /// Forgets replicas dead since before `alive_since` that no longer serve any terminal or
    /// other live session.
    pub async fn forget_dead_replicas(&self, alive_since: i64) -> anyhow::Result<u64> {
        let done = sqlx::query(
            "DELETE FROM replica_heartbeats WHERE heartbeat_at < $1 \
             AND replica_id NOT IN (SELECT replica_id FROM open_terminals) \
             AND replica_id NOT IN (SELECT replica_id FROM active_sessions)",
        )
        .bind(alive_since)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
