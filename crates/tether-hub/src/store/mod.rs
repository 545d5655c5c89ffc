//! Storage: every query the hub makes, on sqlx's Any driver so that one set of queries serves
//! the embedded SQLite default and PostgreSQL (several hub replicas sharing one database).
//!
//! Portability rules for queries here: `$N` placeholders, numbered in order of appearance;
//! TEXT and BIGINT columns only (times in Unix milliseconds, flags as 0/1). The migrations in
//! `migrations/` are written in the same portable subset and run on both backends.

pub mod access;
mod audit_anchor;
mod audit_log;
mod enrolment;
pub mod install_tokens;
pub mod principals;
pub mod terminals;
#[cfg(test)]
mod tests;
mod tokens;

use std::path::Path;

use anyhow::Context as _;
use sqlx::{AnyPool, Row as _, any::AnyPoolOptions};
use tether_proto::clock::unix_millis;

use crate::domain::{
    device::{DeviceRecord, DeviceStatus},
    user::UserRecord,
};

use crate::domain::audit::AuditEvent;

#[derive(Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
    backend: Backend,
    /// Serializes audit appends in this process: each event chains to the previous one.
    audit_chain: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// Which database engine a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default: one file, one hub process.
    Sqlite,
    /// Shared by several hub replicas.
    Postgres,
}

/// The PostgreSQL advisory lock that serializes audit appends across replicas (any constant
/// works; this one spells "tether" in ASCII).
const AUDIT_CHAIN_LOCK: i64 = 0x7465_7468_6572;

/// The device columns, as a macro so that queries stay literal strings (sqlx refuses dynamic SQL).
macro_rules! device_select {
    ($rest:literal) => {
        concat!(
            "SELECT id, public_key, identity, name, status, agent_version, created_at, last_seen_at, tags FROM devices ",
            $rest
        )
    };
}

fn device_from_row(row: &sqlx::any::AnyRow) -> Result<DeviceRecord, sqlx::Error> {
    let status: String = row.try_get("status")?;
    Ok(DeviceRecord {
        id: row.try_get("id")?,
        public_key: row.try_get("public_key")?,
        identity: row.try_get("identity")?,
        name: row.try_get("name")?,
        status: DeviceStatus::parse(&status).unwrap_or(DeviceStatus::Pending),
        agent_version: row.try_get("agent_version")?,
        created_at: row.try_get("created_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
        tags: split_list(&row.try_get::<String, _>("tags")?),
    })
}

/// Splits a stored comma-separated list (tags, permission names).
pub fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

fn user_from_row(row: &sqlx::any::AnyRow) -> Result<UserRecord, sqlx::Error> {
    Ok(UserRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        password_hash: row.try_get("password_hash")?,
        admin: row.try_get::<i64, _>("admin")? != 0,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
    })
}

impl Store {
    /// Opens (creating if needed) the embedded SQLite database and applies migrations.
    pub async fn open_sqlite(path: &Path) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .connect(&url)
            .await
            .with_context(|| format!("opening database {}", path.display()))?;
        // WAL lets readers (device listings) proceed while a writer commits; it is persistent.
        sqlx::query("PRAGMA journal_mode=WAL").execute(&pool).await?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .context("applying database migrations")?;
        Ok(Store {
            pool,
            audit_chain: Default::default(),
            backend: Backend::Sqlite,
        })
    }

    /// Connects to a PostgreSQL database (`postgres://...`) and applies migrations. Replicas
    /// starting together are safe: sqlx's migrator holds an advisory lock while it runs.
    pub async fn open_postgres(url: &str) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(url)
            .await
            .context("connecting to PostgreSQL")?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .context("applying database migrations")?;
        Ok(Store {
            pool,
            audit_chain: Default::default(),
            backend: Backend::Postgres,
        })
    }

    /// Opens the database named by `url` (`postgres://` or `postgresql://`), or the embedded
    /// SQLite file `default_path` when there is none.
    pub async fn open(url: Option<&str>, default_path: &Path) -> anyhow::Result<Store> {
        match url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Store::open_postgres(url).await
            }
            Some(url) => match url.strip_prefix("sqlite://") {
                Some(path) => Store::open_sqlite(Path::new(path.split('?').next().unwrap_or(path))).await,
                None => anyhow::bail!("unsupported database URL (postgres:// or sqlite://)"),
            },
            None => Store::open_sqlite(default_path).await,
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    // ---- users ----

    /// Creates the user, or updates password and admin flag of an existing one. Returns true
    /// when the user was created.
    pub async fn upsert_user(&self, name: &str, password_hash: &str, admin: bool) -> anyhow::Result<bool> {
        let updated = sqlx::query("UPDATE users SET password_hash = $1, admin = $2 WHERE name = $3")
            .bind(password_hash)
            .bind(admin as i64)
            .bind(name)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if updated > 0 {
            return Ok(false);
        }
        sqlx::query("INSERT INTO users (id, name, password_hash, admin, disabled, created_at) VALUES ($1, $2, $3, $4, 0, $5)")
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(name)
            .bind(password_hash)
            .bind(admin as i64)
            .bind(unix_millis())
            .execute(&self.pool)
            .await?;
        Ok(true)
    }

    pub async fn count_users(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }

    pub async fn user_by_id(&self, id: &str) -> anyhow::Result<Option<UserRecord>> {
        let row = sqlx::query("SELECT id, name, password_hash, admin, disabled FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    pub async fn user_by_name(&self, name: &str) -> anyhow::Result<Option<UserRecord>> {
        let row = sqlx::query("SELECT id, name, password_hash, admin, disabled FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    // ---- user sessions ----

    pub async fn create_session(
        &self,
        token_hash: &str,
        user_id: &str,
        expires_at: i64,
        client_address: &str,
        user_agent: Option<&str>,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO user_sessions (token_hash, user_id, created_at, expires_at, client_address, user_agent) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(unix_millis())
        .bind(expires_at)
        .bind(client_address)
        .bind(user_agent)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The user behind a live (unexpired) session of an enabled account.
    pub async fn session_user(&self, token_hash: &str) -> anyhow::Result<Option<UserRecord>> {
        let row = sqlx::query(
            "SELECT u.id, u.name, u.password_hash, u.admin, u.disabled FROM user_sessions s \
             JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.disabled = 0",
        )
        .bind(token_hash)
        .bind(unix_millis())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    pub async fn delete_session(&self, token_hash: &str) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM user_sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_expired_sessions(&self) -> anyhow::Result<u64> {
        let done = sqlx::query("DELETE FROM user_sessions WHERE expires_at <= $1")
            .bind(unix_millis())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    // ---- devices ----

    pub async fn device_by_public_key(&self, public_key: &str) -> anyhow::Result<Option<DeviceRecord>> {
        let row = sqlx::query(device_select!("WHERE public_key = $1"))
            .bind(public_key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(device_from_row).transpose()?)
    }

    pub async fn device(&self, id: &str) -> anyhow::Result<Option<DeviceRecord>> {
        let row = sqlx::query(device_select!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(device_from_row).transpose()?)
    }

    pub async fn devices(&self, status: Option<DeviceStatus>) -> anyhow::Result<Vec<DeviceRecord>> {
        let rows = match status {
            Some(status) => {
                sqlx::query(device_select!("WHERE status = $1 ORDER BY name, id"))
                    .bind(status.as_str())
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(device_select!("ORDER BY name, id"))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        Ok(rows.iter().map(device_from_row).collect::<Result<_, _>>()?)
    }

    /// One page of devices (by name) with `status` (any when `None`) whose name, id, agent
    /// version or identity contains `search` (case-insensitive; any when empty), and how many
    /// match in all. The database cuts the page, so a fleet of 10,000 costs one page.
    pub async fn devices_page(
        &self,
        status: Option<DeviceStatus>,
        search: &str,
        offset: i64,
        limit: i64,
    ) -> anyhow::Result<(Vec<DeviceRecord>, i64)> {
        macro_rules! matching {
            () => {
                "WHERE ($1 = '' OR status = $1) AND ($2 = '%%' OR lower(name) LIKE $2 ESCAPE '\\' \
                 OR lower(id) LIKE $2 ESCAPE '\\' OR lower(COALESCE(agent_version, '')) LIKE $2 ESCAPE '\\' \
                 OR lower(identity) LIKE $2 ESCAPE '\\')"
            };
        }
        let status = status.map(|s| s.as_str()).unwrap_or("");
        let escaped = search
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let pattern = format!("%{escaped}%");
        let total: i64 = sqlx::query(concat!("SELECT COUNT(*) AS n FROM devices ", matching!()))
            .bind(status)
            .bind(&pattern)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let rows = sqlx::query(concat!(
            device_select!(""),
            matching!(),
            " ORDER BY name, id LIMIT $3 OFFSET $4"
        ))
        .bind(status)
        .bind(&pattern)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let devices = rows.iter().map(device_from_row).collect::<Result<_, _>>()?;
        Ok((devices, total))
    }

    pub async fn insert_device(&self, device: &DeviceRecord) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO devices (id, public_key, identity, name, status, agent_version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&device.id)
        .bind(&device.public_key)
        .bind(&device.identity)
        .bind(&device.name)
        .bind(device.status.as_str())
        .bind(&device.agent_version)
        .bind(device.created_at)
        .bind(unix_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records what the device reported in its latest authentication request.
    pub async fn update_device_identity(
        &self,
        id: &str,
        identity: &str,
        name: &str,
        agent_version: Option<&str>,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE devices SET identity = $1, name = $2, agent_version = $3, updated_at = $4 WHERE id = $5",
        )
        .bind(identity)
        .bind(name)
        .bind(agent_version)
        .bind(unix_millis())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn set_device_status(&self, id: &str, status: DeviceStatus) -> anyhow::Result<bool> {
        let done = sqlx::query("UPDATE devices SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(status.as_str())
            .bind(unix_millis())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn delete_device(&self, id: &str) -> anyhow::Result<bool> {
        let done = sqlx::query("DELETE FROM devices WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn touch_device(&self, id: &str) -> anyhow::Result<()> {
        sqlx::query("UPDATE devices SET last_seen_at = $1 WHERE id = $2")
            .bind(unix_millis())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Filters of an audit query; every field is optional.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct AuditFilter {
    /// Unix milliseconds, inclusive.
    #[serde(deserialize_with = "optional_number")]
    pub from: Option<i64>,
    /// Unix milliseconds, exclusive.
    #[serde(deserialize_with = "optional_number")]
    pub to: Option<i64>,
    /// A user or device id, or a user name.
    pub actor: Option<String>,
    /// The object's id (a device id for device actions).
    pub device: Option<String>,
    pub action: Option<String>,
    pub session: Option<String>,
    pub outcome: Option<String>,
    /// Return events with `seq` below this (pagination, newest first).
    #[serde(deserialize_with = "optional_number")]
    pub before: Option<i64>,
}

/// An optional integer given as a number or as text: query strings carry only text, and serde
/// cannot tell which a flattened field is.
pub fn optional_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum NumberOrText {
        Number(i64),
        Text(String),
    }
    match <Option<NumberOrText> as serde::Deserialize>::deserialize(deserializer)? {
        None => Ok(None),
        Some(NumberOrText::Number(number)) => Ok(Some(number)),
        Some(NumberOrText::Text(text)) if text.is_empty() => Ok(None),
        Some(NumberOrText::Text(text)) => text
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("{text:?} is not a whole number"))),
    }
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

impl Store {
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
    /// head. On PostgreSQL, one transaction under a transaction-scoped advisory lock serializes
    /// appends from every replica, so the chain stays gapless and linear. On SQLite the caller's
    /// process-wide lock (`Store::audit_chain`, taken by `record_audit`) serializes them; a read-then-write
    /// transaction there would fail with SQLITE_BUSY whenever another write commits in between.
    pub async fn append_audit_event(
        &self,
        make: impl FnOnce(i64, String) -> AuditEvent,
    ) -> anyhow::Result<AuditEvent> {
        if self.backend == Backend::Sqlite {
            let mut connection = self.pool.acquire().await?;
            let (seq, hash) = audit_head(&mut connection).await?;
            let event = make(seq + 1, hash);
            insert_audit_event_query(&event).execute(&mut *connection).await?;
            return Ok(event);
        }
        let mut transaction = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(AUDIT_CHAIN_LOCK)
            .execute(&mut *transaction)
            .await?;
        let (seq, hash) = audit_head(&mut transaction).await?;
        let event = make(seq + 1, hash);
        insert_audit_event_query(&event)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(event)
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

/// A terminal session, as listed.
#[derive(Debug, Clone, serde::Serialize)]
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

    pub async fn terminal_session(&self, sid: &str) -> anyhow::Result<Option<TerminalSessionRecord>> {
        let row = sqlx::query(terminal_session_select!("WHERE sid = $1"))
            .bind(sid)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(terminal_session_from_row).transpose()?)
    }

    /// Sessions newest first, optionally of one device or user.
    pub async fn terminal_sessions(
        &self,
        device: Option<String>,
        user: Option<String>,
        limit: i64,
    ) -> anyhow::Result<Vec<TerminalSessionRecord>> {
        let rows = sqlx::query(terminal_session_select!(
            "WHERE ($1 IS NULL OR device_id = $1) AND ($2 IS NULL OR user_id = $2 OR user_name = $2) \
             ORDER BY started_at DESC LIMIT $3"
        ))
        .bind(device)
        .bind(user)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(terminal_session_from_row)
            .collect::<Result<_, _>>()?)
    }

    /// Deletes the records of sessions that ended before `before` (Unix ms); returns their ids,
    /// whose recordings the caller deletes.
    pub async fn delete_terminal_sessions_ended_before(&self, before: i64) -> anyhow::Result<Vec<String>> {
        let rows =
            sqlx::query("SELECT sid FROM terminal_sessions WHERE ended_at IS NOT NULL AND ended_at < $1")
                .bind(before)
                .fetch_all(&self.pool)
                .await?;
        let sids: Vec<String> = rows
            .iter()
            .map(|row| row.try_get("sid"))
            .collect::<Result<_, _>>()?;
        sqlx::query("DELETE FROM terminal_sessions WHERE ended_at IS NOT NULL AND ended_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(sids)
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

/// A personal access token, as listed (never the token itself).
#[derive(Debug, Clone, serde::Serialize)]
pub struct AccessTokenRecord {
    pub id: String,
    pub name: String,
    pub permissions: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
    pub expires_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked: bool,
}

/// A user, as listed (never the password hash).
#[derive(Debug, Clone, serde::Serialize)]
pub struct UserSummary {
    pub id: String,
    pub name: String,
    pub admin: bool,
    pub disabled: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Role grants (filled in by the API; the admin flag shows as `admin on *`).
    pub roles: Vec<crate::domain::roles::RoleGrant>,
}

impl Store {
    /// The user, token id and permissions behind a live access token.
    pub async fn access_token_user(
        &self,
        token_hash: &str,
    ) -> anyhow::Result<Option<(UserRecord, String, String)>> {
        let now = unix_millis();
        let row = sqlx::query(
            "SELECT u.id, u.name, u.password_hash, u.admin, u.disabled, t.id AS token_id, t.permissions \
             FROM api_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND t.expires_at > $2 AND u.disabled = 0",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let token_id: String = row.try_get("token_id")?;
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(&token_id)
            .execute(&self.pool)
            .await?;
        Ok(Some((
            user_from_row(&row)?,
            token_id,
            row.try_get("permissions")?,
        )))
    }

    pub async fn create_access_token(
        &self,
        id: &str,
        user_id: &str,
        name: &str,
        token_hash: &str,
        permissions: &str,
        expires_at: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO api_tokens (id, user_id, name, token_hash, permissions, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(user_id)
        .bind(name)
        .bind(token_hash)
        .bind(permissions)
        .bind(unix_millis())
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn access_tokens(&self, user_id: &str) -> anyhow::Result<Vec<AccessTokenRecord>> {
        let rows = sqlx::query(
            "SELECT id, name, permissions, created_at, expires_at, last_used_at, revoked_at FROM api_tokens \
             WHERE user_id = $1 ORDER BY created_at",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let permissions: String = row.try_get("permissions")?;
                Ok(AccessTokenRecord {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    permissions: permissions
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    created_at: row.try_get::<i64, _>("created_at")? / 1000,
                    expires_at: row.try_get::<i64, _>("expires_at")? / 1000,
                    last_used_at: row.try_get::<Option<i64>, _>("last_used_at")?.map(|t| t / 1000),
                    revoked: row.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
                })
            })
            .collect()
    }

    /// Whether a token is unrevoked, unexpired and its user enabled.
    pub async fn access_token_active(&self, id: &str) -> anyhow::Result<bool> {
        let row = sqlx::query(
            "SELECT t.id FROM api_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.id = $1 AND t.revoked_at IS NULL AND t.expires_at > $2 AND u.disabled = 0",
        )
        .bind(id)
        .bind(unix_millis())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// The owner of a token, if it exists.
    pub async fn access_token_owner(&self, id: &str) -> anyhow::Result<Option<String>> {
        let row = sqlx::query("SELECT user_id FROM api_tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.try_get("user_id")).transpose()?)
    }

    pub async fn revoke_access_token(&self, id: &str) -> anyhow::Result<()> {
        sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(unix_millis())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn users(&self) -> anyhow::Result<Vec<UserSummary>> {
        let rows = sqlx::query("SELECT id, name, admin, disabled, created_at FROM users ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(UserSummary {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    admin: row.try_get::<i64, _>("admin")? != 0,
                    disabled: row.try_get::<i64, _>("disabled")? != 0,
                    created_at: row.try_get::<i64, _>("created_at")? / 1000,
                    roles: Vec::new(),
                })
            })
            .collect()
    }

    pub async fn set_user_disabled(&self, user_id: &str, disabled: bool) -> anyhow::Result<()> {
        sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
            .bind(disabled as i64)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_password(&self, user_id: &str, password_hash: &str) -> anyhow::Result<()> {
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes a user's login sessions, except `keep` (a token hash); returns how many.
    pub async fn delete_user_sessions(&self, user_id: &str, keep: Option<&str>) -> anyhow::Result<u64> {
        let done = sqlx::query("DELETE FROM user_sessions WHERE user_id = $1 AND token_hash <> $2")
            .bind(user_id)
            .bind(keep.unwrap_or(""))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

/// The insert of one audit event, for the pool or a transaction.
fn insert_audit_event_query(
    event: &AuditEvent,
) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(
        "INSERT INTO audit_events (seq, id, time, actor_kind, actor_id, actor_name, client_address, user_agent, \
         action, object_kind, object_id, object_name, outcome, details, session_id, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(event.seq)
    .bind(&event.id)
    .bind(event.time)
    .bind(&event.actor_kind)
    .bind(&event.actor_id)
    .bind(&event.actor_name)
    .bind(&event.client_address)
    .bind(&event.user_agent)
    .bind(&event.action)
    .bind(&event.object_kind)
    .bind(&event.object_id)
    .bind(&event.object_name)
    .bind(&event.outcome)
    .bind(event.details.to_string())
    .bind(&event.session_id)
    .bind(&event.prev_hash)
    .bind(&event.hash)
}

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
