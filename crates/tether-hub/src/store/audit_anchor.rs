//! The SQL of the audit chain's anchor: retention pruning, which deletes the oldest events and
//! stores, with the new anchor, the hub's signed statement of what it deleted (migration 0012),
//! and reading that anchor back for verification. Same rules as `store.rs`: portable SQL.

use sqlx::Row;
use tether_proto::audit_checkpoint::{Anchor, Statement};

use crate::store::Store;

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
