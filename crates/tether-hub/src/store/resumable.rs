//! The SQL of resumable sessions (migration 0008): terminal sessions that may be re-attached,
//! with their owner and device, detached while no operator is attached. Same rules as
//! `store/mod.rs`: portable SQL.

use sqlx::Row as _;

use crate::store::Store;

/// The resumable-session columns, as a macro so that queries stay literal strings.
macro_rules! resumable_select {
    ($rest:literal) => {
        concat!(
            "SELECT sid, device_id, user_id, created_at, detached_at, ended_at FROM resumable_sessions ",
            $rest
        )
    };
}

/// A terminal session that may be re-attached (migration 0008): its owner and device.
#[derive(Debug, Clone, PartialEq)]
pub struct ResumableSession {
    pub sid: String,
    pub device_id: String,
    pub user_id: String,
    pub created_at: i64,
    /// Set while no operator is attached.
    pub detached_at: Option<i64>,
    pub ended_at: Option<i64>,
}

fn resumable_from_row(row: &sqlx::any::AnyRow) -> anyhow::Result<ResumableSession> {
    Ok(ResumableSession {
        sid: row.try_get("sid")?,
        device_id: row.try_get("device_id")?,
        user_id: row.try_get("user_id")?,
        created_at: row.try_get("created_at")?,
        detached_at: row.try_get("detached_at")?,
        ended_at: row.try_get("ended_at")?,
    })
}

impl Store {
    pub async fn insert_resumable_session(
        &self,
        sid: &str,
        device_id: &str,
        user_id: &str,
        created_at: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO resumable_sessions (sid, device_id, user_id, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(sid)
        .bind(device_id)
        .bind(user_id)
        .bind(created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn resumable_session(&self, sid: &str) -> anyhow::Result<Option<ResumableSession>> {
        let row = sqlx::query(resumable_select!("WHERE sid = $1"))
            .bind(sid)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(resumable_from_row).transpose()
    }

    /// Marks a session detached (`Some(time)`) or attached again (`None`).
    pub async fn set_session_detached(&self, sid: &str, detached_at: Option<i64>) -> anyhow::Result<()> {
        sqlx::query("UPDATE resumable_sessions SET detached_at = $1 WHERE sid = $2 AND ended_at IS NULL")
            .bind(detached_at)
            .bind(sid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn end_resumable_session(&self, sid: &str, ended_at: i64) -> anyhow::Result<()> {
        sqlx::query("UPDATE resumable_sessions SET ended_at = $1 WHERE sid = $2 AND ended_at IS NULL")
            .bind(ended_at)
            .bind(sid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// At start: sessions attached when the previous hub process ended are detached now.
    pub async fn detach_all_resumable_sessions(&self, now: i64) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE resumable_sessions SET detached_at = $1 WHERE detached_at IS NULL AND ended_at IS NULL",
        )
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Sessions on a device that have not ended (attached or detached).
    pub async fn open_resumable_sessions(&self, device_id: &str) -> anyhow::Result<Vec<ResumableSession>> {
        let rows = sqlx::query(resumable_select!("WHERE device_id = $1 AND ended_at IS NULL"))
            .bind(device_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(resumable_from_row).collect()
    }

    /// Detached sessions not ended and detached since `since`, of one user (or all), oldest first.
    pub async fn detached_sessions(
        &self,
        user_id: Option<&str>,
        since: i64,
    ) -> anyhow::Result<Vec<ResumableSession>> {
        let rows = sqlx::query(resumable_select!(
            "WHERE ended_at IS NULL AND detached_at IS NOT NULL AND detached_at >= $1 \
             AND ($2 = '' OR user_id = $3) ORDER BY created_at"
        ))
        .bind(since)
        .bind(user_id.unwrap_or(""))
        .bind(user_id.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(resumable_from_row).collect()
    }
}
