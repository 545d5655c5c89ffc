//! The SQL of live non-terminal sessions (migration 0019): file transfers and port forwards
//! while they run, for the Active sessions list (terminals are in `open_terminals`, whose rows
//! the list reads too). A row names the replica serving it, so that the rows of a hub that
//! stopped under them are deleted at its next start or by a surviving replica (the same sweep
//! as `open_terminals`, `relay::open_terminals` and `relay::replicas`). Same rules as
//! `store/mod.rs`: portable SQL, TEXT and BIGINT.

use serde::{Deserialize, Serialize};
use sqlx::Row as _;

use crate::store::Store;

/// What a live non-terminal session is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ActivityDetail {
    /// One file on its way to (`upload`) or from (`download`) the device.
    FileTransfer { upload: bool, path: String },
    /// One `tether port-forward` run: the distinct targets its connections reached so far.
    PortForward { targets: Vec<ForwardTarget> },
}

/// A target of a port forward, as `host:port` and `tcp` or `udp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardTarget {
    pub target: String,
    pub protocol: String,
}

impl ActivityDetail {
    /// The `kind` column: `file_transfer` or `port_forward`.
    pub fn kind(&self) -> &'static str {
        match self {
            ActivityDetail::FileTransfer { .. } => "file_transfer",
            ActivityDetail::PortForward { .. } => "port_forward",
        }
    }
}

/// A row of `active_sessions`.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveSessionRecord {
    pub id: String,
    /// The session id (the user leg's, or the one the hub opened for an HTTP transfer).
    pub sid: String,
    pub detail: ActivityDetail,
    pub replica_id: String,
    pub user_id: String,
    pub user_name: String,
    pub device_id: String,
    pub device_name: String,
    /// Unix milliseconds.
    pub started_at: i64,
}

fn active_session_from_row(row: &sqlx::any::AnyRow) -> anyhow::Result<ActiveSessionRecord> {
    let detail: String = row.try_get("detail")?;
    Ok(ActiveSessionRecord {
        id: row.try_get("id")?,
        sid: row.try_get("sid")?,
        detail: serde_json::from_str(&detail)?,
        replica_id: row.try_get("replica_id")?,
        user_id: row.try_get("user_id")?,
        user_name: row.try_get("user_name")?,
        device_id: row.try_get("device_id")?,
        device_name: row.try_get("device_name")?,
        started_at: row.try_get("started_at")?,
    })
}

/// An open terminal as the Active sessions list shows it (from `open_terminals`, any replica).
#[derive(Debug, Clone, PartialEq)]
pub struct LiveTerminal {
    pub sid: String,
    pub user_id: String,
    pub user_name: String,
    pub device_id: String,
    pub device_name: String,
    pub command: Option<String>,
    pub opened_at: i64,
    /// Its recording still running (the newest part after re-attaches), if it is recorded.
    pub recording_sid: Option<String>,
}

impl Store {
    pub async fn insert_active_session(&self, session: &ActiveSessionRecord) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO active_sessions (id, sid, kind, detail, replica_id, user_id, user_name, device_id, \
             device_name, started_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&session.id)
        .bind(&session.sid)
        .bind(session.detail.kind())
        .bind(serde_json::to_string(&session.detail)?)
        .bind(&session.replica_id)
        .bind(&session.user_id)
        .bind(&session.user_name)
        .bind(&session.device_id)
        .bind(&session.device_name)
        .bind(session.started_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// What session `id` does now (a port forward reached another target).
    pub async fn update_active_session(&self, id: &str, detail: &ActivityDetail) -> anyhow::Result<()> {
        sqlx::query("UPDATE active_sessions SET detail = $1 WHERE id = $2")
            .bind(serde_json::to_string(detail)?)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_active_session(&self, id: &str) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM active_sessions WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes the rows `replica_id` left (it stopped under them); returns how many.
    pub async fn delete_active_sessions_of(&self, replica_id: &str) -> anyhow::Result<u64> {
        let done = sqlx::query("DELETE FROM active_sessions WHERE replica_id = $1")
            .bind(replica_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Live non-terminal sessions of every replica, oldest first, optionally of one user.
    pub async fn active_sessions(
        &self,
        user_id: Option<&str>,
        limit: i64,
    ) -> anyhow::Result<Vec<ActiveSessionRecord>> {
        let rows = sqlx::query(
            "SELECT id, sid, detail, replica_id, user_id, user_name, device_id, device_name, started_at \
             FROM active_sessions WHERE ($1 IS NULL OR user_id = $1) ORDER BY started_at, id LIMIT $2",
        )
        .bind(user_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(active_session_from_row).collect()
    }

    /// Open terminals of every replica, oldest first, optionally of one user.
    pub async fn live_terminals(
        &self,
        user_id: Option<&str>,
        limit: i64,
    ) -> anyhow::Result<Vec<LiveTerminal>> {
        let rows = sqlx::query(
            "SELECT sid, actor_id, actor_name, device_id, device_name, command, opened_at, \
             (SELECT recording.sid FROM terminal_sessions AS recording WHERE recording.ended_at IS NULL \
              AND (recording.sid = open_terminals.sid OR recording.sid LIKE open_terminals.sid || '-resumed-%') \
              ORDER BY recording.started_at DESC LIMIT 1) AS recording_sid \
             FROM open_terminals WHERE ($1 IS NULL OR actor_id = $1) ORDER BY opened_at, id LIMIT $2",
        )
        .bind(user_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let user_id: Option<String> = row.try_get("actor_id")?;
                let user_name: Option<String> = row.try_get("actor_name")?;
                Ok(LiveTerminal {
                    sid: row.try_get("sid")?,
                    user_id: user_id.unwrap_or_default(),
                    user_name: user_name.unwrap_or_default(),
                    device_id: row.try_get("device_id")?,
                    device_name: row.try_get("device_name")?,
                    command: row.try_get("command")?,
                    opened_at: row.try_get("opened_at")?,
                    recording_sid: row.try_get("recording_sid")?,
                })
            })
            .collect()
    }
}
