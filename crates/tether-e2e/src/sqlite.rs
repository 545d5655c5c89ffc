//! The `sqlite3` command on a hub's database (Debian package `sqlite3`, installed by
//! `scripts/test`): what tests read from it, or do to it behind the hub's back (a trigger that
//! refuses inserts stands in for a broken disk).

use std::{path::Path, process::Command};

/// Runs `sql` on the database at `db`; its standard output. Panics, with sqlite3's error, when
/// it fails.
pub fn sqlite(db: &Path, sql: &str) -> String {
    sqlite_with(db, &[], sql)
}

/// [`sqlite`] with command-line options before the database (`-json`, ...).
pub fn sqlite_with(db: &Path, options: &[&str], sql: &str) -> String {
    // The hub holds the database open: wait for its locks rather than fail on them.
    let output = Command::new("sqlite3")
        .args(options)
        .args(["-cmd", ".timeout 20000"])
        .arg(db)
        .arg(sql)
        .output()
        .expect("run sqlite3 (Debian: sqlite3)");
    assert!(
        output.status.success(),
        "sqlite3 {sql:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
