//! A real PostgreSQL server for tests: a fresh cluster in a temporary directory, on a free
//! loopback port, owned by a guard that kills it on drop.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root the cluster belongs to
//! `nobody` (directory, `initdb` and `postgres` all run with that uid).

use std::{
    ffi::CString,
    os::unix::process::CommandExt as _,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use tempfile::TempDir;

use crate::{WAIT, peers::free_port, process::Proc};

/// A running PostgreSQL cluster; every database in it is reachable without a password from
/// loopback as user `postgres`.
pub struct Postgres {
    // Field order matters: the server is killed before its directory is removed.
    process: Proc,
    pub port: u16,
    bin_dir: PathBuf,
    user: Option<(u32, u32)>,
    _dir: TempDir,
}

/// The newest installed server binaries (Debian: /usr/lib/postgresql/N/bin).
fn server_bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.flatten().map(|entry| entry.path().join("bin")).collect())
        .unwrap_or_default();
    versions.retain(|dir| dir.join("postgres").is_file());
    versions.sort();
    versions.pop().expect(
        "PostgreSQL server binaries not found in /usr/lib/postgresql (scripts/test installs `postgresql`)",
    )
}

/// The uid and gid of `nobody` when running as root (PostgreSQL refuses root), else None.
fn unprivileged_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = CString::new("nobody").expect("no NUL");
    // SAFETY: getpwnam returns a pointer into static storage or null; read at once.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(!entry.is_null(), "user nobody is missing");
    // SAFETY: checked non-null above.
    unsafe { Some(((*entry).pw_uid, (*entry).pw_gid)) }
}

impl Postgres {
    /// Creates and starts a cluster (a few seconds on a loaded machine).
    pub fn start() -> Postgres {
        let bin_dir = server_bin_dir();
        let user = unprivileged_user();
        let dir = tempfile::Builder::new()
            .prefix("tether-e2e-postgres-")
            .tempdir()
            .expect("temp dir");
        let data = dir.path().join("data");
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the cluster directory");
        }
        let mut initdb = Command::new(bin_dir.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ])
            .env("LC_ALL", "C");
        if let Some((uid, gid)) = user {
            initdb.uid(uid).gid(gid);
        }
        let output = initdb.output().expect("run initdb");
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let port = free_port();
        let mut server = Command::new(bin_dir.join("postgres"));
        server
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .arg("-k")
            .arg(dir.path())
            // A test cluster: durability is not needed, speed is.
            .args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ])
            .args(["-c", "max_connections=200"])
            .env("LC_ALL", "C");
        if let Some((uid, gid)) = user {
            server.uid(uid).gid(gid);
        }
        let process = Proc::spawn("postgres", server, dir.path());
        let postgres = Postgres {
            process,
            port,
            bin_dir,
            user,
            _dir: dir,
        };
        postgres.wait_ready();
        postgres
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let ready = Command::new(self.bin_dir.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres"])
                .output()
                .is_ok_and(|output| output.status.success());
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not become ready\n{}",
                self.process.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Creates database `name` and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        let mut command = Command::new(self.bin_dir.join("createdb"));
        command.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            name,
        ]);
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        let output = command.output().expect("run createdb");
        assert!(
            output.status.success(),
            "createdb {name} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        self.url(name)
    }

    /// `postgres://postgres@127.0.0.1:PORT/NAME`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub fn logs(&self) -> String {
        self.process.logs()
    }
}
