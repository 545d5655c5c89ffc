//! The SQL of terminals: the terminal session rows of recordings (listed, ended, deleted after
//! retention with their chunks, `store/recordings.rs`), and open terminals (migration 0011): which terminals a hub process serves, so that
//! the next start of a hub that stopped under them can close them. Same rules as `store/mod.rs`:
//! portable SQL (`$N` placeholders, TEXT and BIGINT).

use sqlx::Row as _;
use tether_proto::clock::unix_millis;

use crate::store::Store;

/// A terminal session, as listed.
#[derive(Debug, Clone)]
pub struct TerminalSessionRecord {
    pub sid: String,
    pub device_id: String,
    pub device_name: String,
    pub user_id: String,
    pub user_name: String,
    pub command: Option<String>,
    /// Unix milliseconds.
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub bytes_out: i64,
    pub width: i64,
    pub height: i64,
}

/// Which sessions [`Store::terminal_sessions`] lists.
#[derive(Debug, Clone, Default)]
pub struct TerminalSessionFilter {
    /// A device id or name.
    pub device: Option<String>,
    /// A user id or name.
    pub user: Option<String>,
    /// Started at or after / before (Unix ms).
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub limit: i64,
}

fn terminal_session_from_row(row: &sqlx::any::AnyRow) -> Result<TerminalSessionRecord, sqlx::Error> {
    Ok(TerminalSessionRecord {
        sid: row.try_get("sid")?,
        device_id: row.try_get("device_id")?,
        device_name: row.try_get("device_name")?,
        user_id: row.try_get("user_id")?,
        user_name: row.try_get("user_name")?,
        command: row.try_get("command")?,
        started_at: row.try_get("started_at")?,
        ended_at: row.try_get("ended_at")?,
        bytes_out: row.try_get("bytes_out")?,
        width: row.try_get("width")?,
        height: row.try_get("height")?,
    })
}

macro_rules! terminal_session_select {
    ($rest:literal) => {
        concat!(
            "SELECT sid, device_id, device_name, user_id, user_name, command, started_at, ended_at, bytes_out, \
             width, height FROM terminal_sessions ",
            $rest
        )
    };
}

impl Store {
    pub async fn insert_terminal_session(
        &self,
        info: &crate::domain::recording_format::SessionInfo,
        started_at: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO terminal_sessions (sid, device_id, device_name, user_id, user_name, command, started_at, \
             bytes_out, width, height) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9)",
        )
        .bind(&info.sid)
        .bind(&info.device_id)
        .bind(&info.device_name)
        .bind(&info.user_id)
        .bind(&info.user_name)
        .bind(&info.command)
        .bind(started_at)
        .bind(info.width as i64)
        .bind(info.height as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn end_terminal_session(&self, sid: &str, ended_at: i64, bytes_out: u64) -> anyhow::Result<()> {
        sqlx::query("UPDATE terminal_sessions SET ended_at = $1, bytes_out = $2 WHERE sid = $3")
            .bind(ended_at)
            .bind(bytes_out as i64)
            .bind(sid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A session re-attached after a drop continues its recording: its row is open again (the
    /// time it was detached is an idle gap in the recording). False when there is no such row.
    pub async fn reopen_terminal_session(&self, sid: &str) -> anyhow::Result<bool> {
        let done = sqlx::query("UPDATE terminal_sessions SET ended_at = NULL WHERE sid = $1")
            .bind(sid)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn terminal_session(&self, sid: &str) -> anyhow::Result<Option<TerminalSessionRecord>> {
        let row = sqlx::query(terminal_session_select!("WHERE sid = $1"))
            .bind(sid)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(terminal_session_from_row).transpose()?)
    }

    /// Sessions newest first, with the filters that are set.
    pub async fn terminal_sessions(
        &self,
        filter: &TerminalSessionFilter,
    ) -> anyhow::Result<Vec<TerminalSessionRecord>> {
        let rows = sqlx::query(terminal_session_select!(
            "WHERE ($1 IS NULL OR device_id = $1 OR device_name = $1) \
             AND ($2 IS NULL OR user_id = $2 OR user_name = $2) \
             AND ($3 IS NULL OR started_at >= $3) AND ($4 IS NULL OR started_at < $4) \
             ORDER BY started_at DESC LIMIT $5"
        ))
        .bind(&filter.device)
        .bind(&filter.user)
        .bind(filter.from)
        .bind(filter.to)
        .bind(filter.limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(terminal_session_from_row)
            .collect::<Result<_, _>>()?)
    }

    /// Deletes the sessions that ended before `before` (Unix ms), their recordings' chunks
    /// first; returns the ids of the sessions this call deleted (a recording made before
    /// migration 0017 has files the caller deletes). Several replicas may run this at once:
    /// each row is deleted, and so counted, by exactly one of them (`DELETE ... RETURNING`
    /// returns only the rows that statement removed).
    pub async fn delete_terminal_sessions_ended_before(&self, before: i64) -> anyhow::Result<Vec<String>> {
        // Chunks before their session: a stop in between leaves the session row, which the
        // next run finds again, never chunks without a session.
        sqlx::query(
            "DELETE FROM recording_chunks WHERE sid IN \
             (SELECT sid FROM terminal_sessions WHERE ended_at IS NOT NULL AND ended_at < $1)",
        )
        .bind(before)
        .execute(&self.pool)
        .await?;
        let rows = sqlx::query(
            "DELETE FROM terminal_sessions WHERE ended_at IS NOT NULL AND ended_at < $1 RETURNING sid",
        )
        .bind(before)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| row.try_get("sid"))
            .collect::<Result<_, _>>()?)
    }

    /// Sessions that never ended (the hub stopped under them): marked ended now.
    pub async fn close_abandoned_terminal_sessions(&self) -> anyhow::Result<u64> {
        let done = sqlx::query("UPDATE terminal_sessions SET ended_at = $1 WHERE ended_at IS NULL")
            .bind(unix_millis())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

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

    /// The unfinished recordings of session `sid`, oldest first: its own and, from hubs before
    /// a re-attached session continued its recording, those of its re-attaches
    /// (`sid-resumed-…`).
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
