//! `tether port-forward DEVICE MAPPING...` running in the background for a test.

use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{Cli, WAIT, process::Proc};

/// One `Forwarding BIND:LOCAL -> HOST:PORT (tcp|udp) on DEVICE` line the CLI printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarding {
    pub bind: String,
    pub local_port: u16,
    pub target: String,
    pub transport: String,
    pub device: String,
}

impl Forwarding {
    /// Parses one stdout line; `None` if it is not a `Forwarding` line.
    pub fn parse(line: &str) -> Option<Forwarding> {
        let rest = line.trim().strip_prefix("Forwarding ")?;
        let (local, rest) = rest.split_once(" -> ")?;
        let (target, rest) = rest.split_once(' ')?;
        let (transport, rest) = rest.split_once(')')?;
        let transport = transport.strip_prefix('(')?.to_owned();
        let device = rest.trim().strip_prefix("on ")?.trim().to_owned();
        let (bind, port) = local.rsplit_once(':')?;
        Some(Forwarding {
            bind: bind.to_owned(),
            local_port: port.parse().ok()?,
            target: target.to_owned(),
            transport,
            device,
        })
    }
}

/// A running `tether port-forward`; killed (with its logs printed if the test failed) on drop.
pub struct PortForward {
    process: Proc,
    /// What the CLI announced, in order.
    pub forwardings: Vec<Forwarding>,
    _dir: TempDir,
}

impl PortForward {
    /// Starts `tether port-forward DEVICE MAPPINGS... EXTRA...` and waits until it printed one
    /// `Forwarding` line per mapping (panics, with its logs, if it exits or gives up first).
    pub fn start(cli: &Cli, device: &str, mappings: &[&str], extra: &[&str]) -> PortForward {
        let mut forward = PortForward::spawn(cli, device, mappings, extra);
        forward.wait_forwarding(mappings.len());
        forward
    }

    /// Starts it without waiting for anything.
    pub fn spawn(cli: &Cli, device: &str, mappings: &[&str], extra: &[&str]) -> PortForward {
        let dir = tempfile::Builder::new()
            .prefix("tether-e2e-forward-")
            .tempdir()
            .expect("temp dir");
        let mut args = vec!["port-forward", device];
        args.extend_from_slice(mappings);
        args.extend_from_slice(extra);
        let process = Proc::spawn("tether-port-forward", cli.command(&args), dir.path());
        PortForward {
            process,
            forwardings: Vec::new(),
            _dir: dir,
        }
    }

    /// Waits for `count` `Forwarding` lines.
    pub fn wait_forwarding(&mut self, count: usize) {
        let deadline = Instant::now() + WAIT;
        loop {
            let lines: Vec<Forwarding> = self
                .process
                .stdout()
                .lines()
                .filter_map(Forwarding::parse)
                .collect();
            if lines.len() >= count {
                self.forwardings = lines;
                return;
            }
            if let Some(status) = self.process.try_wait() {
                panic!(
                    "`tether port-forward` exited ({status}) before announcing {count} forwarding(s)\n{}",
                    self.process.logs()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "gave up after {WAIT:?} waiting for {count} `Forwarding` line(s)\n{}",
                    self.process.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The local port of the `index`th mapping.
    pub fn local_port(&self, index: usize) -> u16 {
        self.forwardings[index].local_port
    }

    pub fn stdout(&self) -> String {
        self.process.stdout()
    }

    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// Waits until stderr contains `needle` (at least `count` times).
    pub fn wait_stderr(&self, needle: &str, count: usize, limit: Duration) -> bool {
        self.process.wait_stderr_count(needle, count, limit)
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    pub fn process(&mut self) -> &mut Proc {
        &mut self.process
    }

    pub fn logs(&self) -> String {
        self.process.logs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forwarding_lines() {
        let line = "Forwarding 127.0.0.1:2222 -> 127.0.0.1:22 (tcp) on dev-1";
        assert_eq!(
            Forwarding::parse(line),
            Some(Forwarding {
                bind: "127.0.0.1".into(),
                local_port: 2222,
                target: "127.0.0.1:22".into(),
                transport: "tcp".into(),
                device: "dev-1".into(),
            })
        );
        let v6 = Forwarding::parse("Forwarding [::1]:53 -> localhost:53 (udp) on d").unwrap();
        assert_eq!((v6.bind.as_str(), v6.local_port), ("[::1]", 53));
        assert_eq!(Forwarding::parse("tether: something"), None);
    }
}
