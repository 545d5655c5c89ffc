//! Shared pieces of Tether's benchmarks (binaries under `src/bin/`, run by `scripts/bench`).
//!
//! The benchmarks start the real binaries through the `tether-e2e` harness. That harness finds
//! them next to the running executable (`current_exe()/../..`, i.e. `target/<profile>/` for a
//! test in `target/<profile>/deps/`). A benchmark binary lives in `target/release/` itself, and
//! the footprint benchmark wants the *device*-profile agent beside the *release* hub and CLI, so
//! [`stage`] builds a directory of symlinks to the chosen binaries, copies the benchmark into its
//! `deps/` and runs that copy: the harness then finds exactly the binaries chosen here.
//!
//! Benchmarks print figures; they never assert timings. Everything runs on 127.0.0.1.

pub mod cpu;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::Duration,
};

/// Set in the staged copy's environment: the staging directory (removed by the parent).
const STAGED_ENV: &str = "TETHER_BENCH_STAGED";

/// The binaries a benchmark runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub hub: PathBuf,
    pub cli: PathBuf,
    pub agent: PathBuf,
}

impl Binaries {
    /// Hub, CLI and agent from `TETHER_BIN_DIR` (default: the directory of this executable,
    /// i.e. `target/release/` when run from there); the agent from `TETHER_AGENT` if set.
    pub fn from_env() -> Binaries {
        let dir = release_dir();
        let agent = std::env::var_os("TETHER_AGENT")
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.join("tether-agent"));
        Binaries {
            hub: dir.join("tether-hub"),
            cli: dir.join("tether"),
            agent,
        }
    }
}

/// `TETHER_BIN_DIR`, or the directory of the running executable.
pub fn release_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TETHER_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent().expect("executable directory").to_path_buf()
}

/// `target/device/tether-agent` next to the release directory, or `TETHER_DEVICE_AGENT`.
pub fn device_agent() -> PathBuf {
    if let Some(path) = std::env::var_os("TETHER_DEVICE_AGENT") {
        return PathBuf::from(path);
    }
    release_dir()
        .parent()
        .map(|target| target.join("device").join("tether-agent"))
        .unwrap_or_else(|| PathBuf::from("target/device/tether-agent"))
}

/// Whether this process is the staged copy (see [`stage`]).
pub fn is_staged() -> bool {
    std::env::var_os(STAGED_ENV).is_some()
}

/// Makes the harness use `binaries`: in the parent, builds `TMP/{tether-hub,tether,tether-agent}`
/// (symlinks) and `TMP/deps/<this executable>` (a copy), runs the copy with the same arguments,
/// removes `TMP` and returns `Some(exit code)` for `main` to return. In the staged copy, returns
/// `None`: carry on with the benchmark.
pub fn stage(binaries: &Binaries) -> Option<ExitCode> {
    if is_staged() {
        return None;
    }
    for (what, path) in [
        ("tether-hub", &binaries.hub),
        ("tether", &binaries.cli),
        ("tether-agent", &binaries.agent),
    ] {
        if !path.is_file() {
            eprintln!(
                "{what} not found at {}: run `cargo build --release --bins` (and \
                 `cargo build --profile device -p tether-agent`) first, or set TETHER_BIN_DIR",
                path.display()
            );
            return Some(ExitCode::from(2));
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("tether-bench-bin-")
        .tempdir()
        .expect("temp dir");
    let deps = dir.path().join("deps");
    std::fs::create_dir(&deps).expect("deps dir");
    for (name, path) in [
        ("tether-hub", &binaries.hub),
        ("tether", &binaries.cli),
        ("tether-agent", &binaries.agent),
    ] {
        let target = std::fs::canonicalize(path).expect("canonicalize binary path");
        std::os::unix::fs::symlink(&target, dir.path().join(name)).expect("symlink binary");
    }
    let exe = std::env::current_exe().expect("current_exe");
    let copy = deps.join(exe.file_name().expect("executable name"));
    std::fs::copy(&exe, &copy).expect("copy the benchmark executable");
    // The copy runs elsewhere: hand it the directories resolved here.
    let absolute = |path: PathBuf| std::fs::canonicalize(&path).unwrap_or(path);
    let status = Command::new(&copy)
        .args(std::env::args_os().skip(1))
        .env(STAGED_ENV, dir.path())
        .env("TETHER_BIN_DIR", absolute(release_dir()))
        .env("TETHER_DEVICE_AGENT", absolute(device_agent()))
        .status()
        .expect("run the staged benchmark");
    drop(dir);
    Some(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(code.clamp(1, 255) as u8),
        None => ExitCode::FAILURE,
    })
}

/// The environment variable `name` parsed as a `T`, or `default` when it is unset or does not
/// parse (the benchmarks' knobs: `KEYSTROKES`, `ROUNDS`...).
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// File size in bytes.
pub fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len()
}

/// Bytes as `N bytes (X.XX MB)`, MB = 10^6 bytes (MiB also shown).
pub fn human_bytes(bytes: u64) -> String {
    format!(
        "{bytes} bytes ({:.2} MB, {:.2} MiB)",
        bytes as f64 / 1e6,
        bytes as f64 / (1024.0 * 1024.0)
    )
}

/// A field of `/proc/PID/status` in kB (e.g. `VmRSS`, `VmHWM`), or the plain value (`Threads`).
pub fn proc_status_field(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Latency statistics over samples.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub count: usize,
    pub min: Duration,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub mean: Duration,
}

impl Stats {
    /// Nearest-rank percentiles. Panics on an empty slice.
    pub fn of(samples: &[Duration]) -> Stats {
        assert!(!samples.is_empty(), "no samples");
        let mut sorted = samples.to_vec();
        sorted.sort();
        let rank = |p: f64| {
            let index = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
            sorted[index.clamp(1, sorted.len()) - 1]
        };
        let total: Duration = sorted.iter().sum();
        Stats {
            count: sorted.len(),
            min: sorted[0],
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: sorted[sorted.len() - 1],
            mean: total / sorted.len() as u32,
        }
    }
}

/// Microseconds, for tables.
pub fn us(duration: Duration) -> u128 {
    duration.as_micros()
}

/// In the staged copy: points the harness's `tether-agent` at `path` (for agents started later;
/// running agents keep their binary).
pub fn point_agent(path: &Path) {
    let dir = PathBuf::from(std::env::var_os(STAGED_ENV).expect("only in the staged copy"));
    let link = dir.join("tether-agent");
    let target = std::fs::canonicalize(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(target, link).expect("symlink tether-agent");
}

/// A command line the shell computes, and what it prints: `echo mark-$((N+1))` prints
/// `mark-{N+1}`, so the echo of the typed command never matches what is awaited.
pub fn marker() -> (String, String) {
    let n = std::process::id() % 100_000 + 1000 + u32::from(rand_u16());
    (format!("echo mark-$(({n}+1))"), format!("mark-{}", n + 1))
}

fn rand_u16() -> u16 {
    let name = tether_e2e::unique_name("r");
    let hex = name.rsplit('-').next().unwrap_or("0");
    u16::from_str_radix(hex, 16).unwrap_or(0)
}

/// The prompt the keystroke benchmarks set (`PS1='@''@> '`: its typed form does not contain it).
pub const PROMPT: &str = "@@> ";
/// How long a benchmark waits for a terminal before giving up.
const TERMINAL_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Waits until nothing new arrives for a while, consuming what did.
pub fn settle(session: &tether_e2e::PtySession) {
    loop {
        std::thread::sleep(std::time::Duration::from_millis(150));
        let pending = session.pending_output();
        if pending.is_empty() {
            return;
        }
        session.expect(&pending, TERMINAL_WAIT);
    }
}

/// Types `n` letters one at a time, timing each echo; then clears the line and waits for the
/// prompt.
pub fn type_block(session: &tether_e2e::PtySession, n: usize) -> Vec<std::time::Duration> {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let letter = (b'a' + (i % 26) as u8) as char;
        let start = std::time::Instant::now();
        session.send([letter as u8]);
        if session.try_expect(&letter.to_string(), TERMINAL_WAIT).is_none() {
            panic!(
                "`{}` did not echo {letter:?} within {TERMINAL_WAIT:?}; it showed:\n{}",
                session.label(),
                session.output()
            );
        }
        samples.push(start.elapsed());
    }
    session.send(b"\x15\r");
    session.expect(PROMPT, TERMINAL_WAIT);
    settle(session);
    samples
}
