//! The SQL of backups: a consistent copy of a live SQLite database (`VACUUM INTO`, one read
//! transaction, so it sees one committed state while the hub keeps writing in WAL mode), and
//! the check of a copy before it is restored. Connects to the file directly, without the
//! store's migrations: a backup must not change the database it copies.

use std::path::Path;

use anyhow::Context as _;
use sqlx::{ConnectOptions as _, Connection as _, Row as _, sqlite::SqliteConnectOptions};

/// How long a backup waits for a writer's lock (a checkpoint, a migration) before giving up.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

async fn connect(path: &Path) -> anyhow::Result<sqlx::SqliteConnection> {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .busy_timeout(BUSY_TIMEOUT)
        .connect()
        .await
        .with_context(|| format!("opening the database {}", path.display()))
}

/// Copies the SQLite database `database` into the new file `copy` (which must not exist).
pub async fn copy_sqlite(database: &Path, copy: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        database.is_file(),
        "there is no database at {} (is --data-dir the hub's?)",
        database.display()
    );
    let mut connection = connect(database).await?;
    let target = copy
        .to_str()
        .with_context(|| format!("{} is not UTF-8", copy.display()))?;
    sqlx::query("VACUUM INTO $1")
        .bind(target)
        .execute(&mut connection)
        .await
        .with_context(|| format!("copying {} into {}", database.display(), copy.display()))?;
    connection.close().await?;
    check_sqlite(copy).await
}

/// Checks that `path` is a sound SQLite database of a hub (SQLite's `quick_check`, and the
/// tables of the first migration).
pub async fn check_sqlite(path: &Path) -> anyhow::Result<()> {
    let mut connection = connect(path).await?;
    let verdict: String = sqlx::query("PRAGMA quick_check")
        .fetch_one(&mut connection)
        .await
        .with_context(|| format!("checking {}", path.display()))?
        .try_get(0)?;
    anyhow::ensure!(
        verdict == "ok",
        "the database {} is damaged: {verdict}",
        path.display()
    );
    let tables: i64 = sqlx::query(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('users', 'devices', 'audit_events')",
    )
    .fetch_one(&mut connection)
    .await?
    .try_get(0)?;
    anyhow::ensure!(tables == 3, "{} is not a Tether hub database", path.display());
    connection.close().await?;
    Ok(())
}
