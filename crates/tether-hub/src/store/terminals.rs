//! The SQL of open terminals (migration 0011): which terminals a hub process serves, so that the
//! next start of a hub that stopped under them can close them. Same rules as `store.rs`: portable
//! SQL (`$N` placeholders, TEXT and BIGINT).

use sqlx::Row;

use crate::store::Store;

/// A terminal whose `terminal.open` was recorded and whose `terminal.close` was not (yet).
#[derive(Debug, Clone, PartialEq)]
pub struct OpenTerminal {
    pub id: String,
    /// The session id of its audit events.
    pub sid: String,
    pub replica_id: String,
    pub actor_id: Option<String>,
    pub actor_name: Option<String>,
    pub client_address: Option<String>,
    pub user_agent: Option<String>,
    pub device_id: String,
    pub device_name: String,
    pub command: Option<String>,
    /// Unix milliseconds.
    pub opened_at: i64,
}

/// A terminal session row (recording) closed by [`Store::end_unfinished_terminal_sessions`].
#[derive(Debug, Clone, PartialEq)]
pub struct UnfinishedRecording {
    pub sid: String,
    pub started_at: i64,
}

fn open_terminal_from_row(row: &sqlx::any::AnyRow) -> Result<OpenTerminal, sqlx::Error> {
    Ok(OpenTerminal {
        id: row.try_get("id")?,
        sid: row.try_get("sid")?,
        replica_id: row.try_get("replica_id")?,
        actor_id: row.try_get("actor_id")?,
        actor_name: row.try_get("actor_name")?,
        client_address: row.try_get("client_address")?,
        user_agent: row.try_get("user_agent")?,
        device_id: row.try_get("device_id")?,
        device_name: row.try_get("device_name")?,
        command: row.try_get("command")?,
        opened_at: row.try_get("opened_at")?,
    })
}

impl Store {
    pub async fn insert_open_terminal(&self, terminal: &OpenTerminal) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO open_terminals (id, sid, replica_id, actor_id, actor_name, client_address, user_agent, \
             device_id, device_name, command, opened_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&terminal.id)
        .bind(&terminal.sid)
        .bind(&terminal.replica_id)
        .bind(&terminal.actor_id)
        .bind(&terminal.actor_name)
        .bind(&terminal.client_address)
        .bind(&terminal.user_agent)
        .bind(&terminal.device_id)
        .bind(&terminal.device_name)
        .bind(&terminal.command)
        .bind(terminal.opened_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The terminal of session `sid` served by `replica_id` is closed (a session has one
    /// terminal at a time).
    pub async fn delete_open_terminal(&self, sid: &str, replica_id: &str) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM open_terminals WHERE sid = $1 AND replica_id = $2")
            .bind(sid)
            .bind(replica_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The open terminals served by `replica_id`, oldest first.
    pub async fn open_terminals(&self, replica_id: &str) -> anyhow::Result<Vec<OpenTerminal>> {
        let rows = sqlx::query(
            "SELECT id, sid, replica_id, actor_id, actor_name, client_address, user_agent, device_id, \
             device_name, command, opened_at FROM open_terminals WHERE replica_id = $1 ORDER BY opened_at",
        )
        .bind(replica_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(open_terminal_from_row)
            .collect::<Result<_, _>>()?)
    }

    /// The unfinished recordings of session `sid` (its first one, `sid`, and those of its
    /// re-attaches, `sid-resumed-…`), oldest first.
    pub async fn unfinished_terminal_sessions(&self, sid: &str) -> anyhow::Result<Vec<UnfinishedRecording>> {
        let rows = sqlx::query(
            "SELECT sid, started_at FROM terminal_sessions WHERE ended_at IS NULL \
             AND (sid = $1 OR sid LIKE $2) ORDER BY started_at",
        )
        .bind(sid)
        .bind(format!("{sid}-resumed-%"))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(UnfinishedRecording {
                    sid: row.try_get("sid")?,
                    started_at: row.try_get("started_at")?,
                })
            })
            .collect()
    }
}
