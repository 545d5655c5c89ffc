//! The end-to-end test harness of Tether.
//!
//! Every test starts the real binaries (`tether-hub`, `tether-agent`, `tether`) built by
//! `cargo build --workspace --bins`, each in its own temporary directory, on its own port
//! (`--listen 127.0.0.1:0`), over real TLS, WebSockets and PTYs. Nothing is mocked: where a test
//! needs to misbehave on the wire it uses [`FakeDevice`], which speaks the device protocol with
//! `tether-proto` and `tether-net`.
//!
//! Processes are owned by guards that SIGKILL them on drop (also when a test panics); a guard
//! dropped while its thread panics prints the logs of its process, so a failing test shows what
//! the hub and the agent said.
//!
//! Timing: deadlines here are only "give up" limits (generous, for a loaded 2-core machine);
//! no helper asserts how fast something happened.

mod agent;
pub mod browser;
mod cli;
mod device;
mod fault_proxy;
mod forward;
pub mod hostile;
mod hub;
mod nats;
mod netns;
mod openssl_key;
pub mod peers;
mod postgres;
mod process;
mod pty;
pub mod source_address;
mod sqlite;
mod stock_forwarder;
mod stock_terminal;
mod tool;

use std::{
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

pub use agent::{Agent, Emulated};
pub use cli::{Cli, CliOutput};
pub use device::{FakeDevice, Received, next_envelope, receive, receive_until_end, send_binary};
pub use fault_proxy::FaultProxy;
pub use forward::{Forwarding, PortForward};
pub use hub::{Hub, HubOptions};
pub use nats::Nats;
pub use netns::Namespace;
pub use openssl_key::OpensslKey;
pub use postgres::Postgres;
pub use process::{Proc, hermetic, run_with_deadline};
pub use pty::PtySession;
pub use sqlite::{sqlite, sqlite_with};
pub use stock_forwarder::StockForwarder;
pub use stock_terminal::stock_terminal_device;
pub use tool::{ToolRun, run_tool};

/// How long a helper waits for something expected (a line, a device, a process) before giving up.
pub const WAIT: Duration = Duration::from_secs(30);

/// The directory holding the workspace's binaries: the test executable is
/// `target/debug/deps/<test>-<hash>`, so they are in its parent's parent.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable is in target/<profile>/deps")
        .to_path_buf()
}

/// The path of the workspace binary `name`; panics with the command to run when it is missing.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    if !path.is_file() {
        panic!(
            "{} not found: run `cargo build --workspace --bins` first",
            path.display()
        );
    }
    path
}

/// A name no other test (or test run on this machine) uses: `prefix-PID-N-RANDOM`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{prefix}-{}-{n}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `limit` with `what`.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("gave up after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `future` to completion on a fresh single-threaded tokio runtime. Sockets opened inside
/// belong to that runtime: keep a whole conversation with the hub inside one call.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(future)
}

/// Whether the tests run as root (needed to run shells as another user).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
