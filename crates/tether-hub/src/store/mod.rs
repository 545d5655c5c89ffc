//! Storage: every query the hub makes, on sqlx's Any driver so that one set of queries serves
//! the embedded SQLite default and PostgreSQL (several hub replicas sharing one database).
//!
//! Portability rules for queries here: `$N` placeholders, numbered in order of appearance;
//! TEXT and BIGINT columns only (times in Unix milliseconds, flags as 0/1). The migrations in
//! `migrations/` are written in the same portable subset and run on both backends.
//!
//! This file opens the database (`backup` copies a live SQLite one); each table family adds its
//! own `impl Store` block in a file of its own: `users` (users and login sessions), `devices` (devices, tags, enrolment bounds),
//! `audit` (the audit chain), `terminals` (recordings and open terminals), `recordings` (what
//! recordings hold), `tokens` (personal
//! access tokens), `resumable` (re-attachable sessions), `access` (roles, grants, approvals),
//! `two_factor` (second factor and settings), `install_tokens` (enrolment tokens), `replicas`
//! (heartbeats of replicas sharing PostgreSQL), `active_sessions` (live file transfers and port
//! forwards), and `principals` (callers from their
//! credentials).

pub mod access;
pub mod active_sessions;
mod audit;
pub mod backup;
pub mod devices;
mod health;
pub mod install_tokens;
pub mod principals;
pub mod recordings;
pub mod replicas;
mod resumable;
pub mod terminals;
#[cfg(test)]
mod tests;
mod tokens;
mod two_factor;
mod users;

use std::path::Path;

use anyhow::Context as _;
use sqlx::{AnyPool, any::AnyPoolOptions};

// The row types keep their `store::` paths, which callers use.
pub use audit::AuditFilter;
pub use resumable::ResumableSession;
pub use terminals::TerminalSessionRecord;
pub use tokens::AccessTokenRecord;
pub use users::UserSummary;

/// The migrations of this build, applied at open (and counted by `/readyz`).
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
    backend: Backend,
    /// Serializes audit appends in this process (each event chains to the previous one) and
    /// commits the events that queue meanwhile together.
    audit_writer: std::sync::Arc<audit::AuditWriter>,
}

/// Which database engine a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default: one file, one hub process.
    Sqlite,
    /// Shared by several hub replicas.
    Postgres,
}

/// Splits a stored comma-separated list (tags, permission names).
pub fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
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
        MIGRATOR
            .run(&pool)
            .await
            .context("applying database migrations")?;
        Ok(Store {
            pool,
            audit_writer: Default::default(),
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
        MIGRATOR
            .run(&pool)
            .await
            .context("applying database migrations")?;
        Ok(Store {
            pool,
            audit_writer: Default::default(),
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
}
