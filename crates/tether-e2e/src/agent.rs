//! A real `tether-agent` dialling a test hub, with its own data directory and a unique name.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use tempfile::TempDir;

use crate::{
    Hub, binary,
    process::{Proc, hermetic},
    unique_name,
};

/// An agent built for another architecture, run under qemu's user-mode emulation.
#[derive(Debug, Clone)]
pub struct Emulated {
    /// `qemu-aarch64`, `qemu-arm`, ...
    pub qemu: PathBuf,
    /// The foreign binary.
    pub agent: PathBuf,
    /// The root of the target's shared libraries (`qemu -L`), for a dynamically linked binary.
    pub sysroot: Option<PathBuf>,
}

/// How an agent's process is started.
#[derive(Debug, Clone)]
enum Launch {
    Native,
    /// Inside this network namespace, with `ip netns exec`.
    Namespace(String),
    Emulated(Emulated),
}

/// A running agent. Dropping it kills the process and removes its directory.
pub struct Agent {
    process: Proc,
    /// Killed processes of earlier runs (see [`Agent::restart`]), kept for their logs.
    previous_runs: Vec<Proc>,
    config_path: std::path::PathBuf,
    /// How its process is started (natively, in a network namespace, under an emulator).
    launch: Launch,
    /// The device's `hostname` identity attribute: its name in device listings.
    pub name: String,
    dir: TempDir,
}

impl Agent {
    /// Starts an agent for `hub` named `unique_name("dev")`.
    ///
    /// `extra_toml` is inserted into the configuration file after the generated top-level keys
    /// (`hubs`, `ca_file`, `data_dir`, `reconnect_max_delay_secs = 2`): it may add top-level keys
    /// first, then tables such as `[terminal]`. An `[identity]` table with the unique `hostname`
    /// is appended unless `extra_toml` has its own.
    pub fn start(hub: &Hub, extra_toml: &str) -> Agent {
        Agent::start_named(hub, &unique_name("dev"), extra_toml)
    }

    /// Like [`Agent::start`] with the given device name.
    pub fn start_named(hub: &Hub, name: &str, extra_toml: &str) -> Agent {
        Agent::start_at(hub, &hub.url, name, extra_toml)
    }

    /// Like [`Agent::start`], dialling `hub_url` instead of the hub's own URL (e.g. a
    /// [`crate::FaultProxy`] in front of it); the hub's certificate is still trusted.
    pub fn start_via(hub: &Hub, hub_url: &str, extra_toml: &str) -> Agent {
        Agent::start_at(hub, hub_url, &unique_name("dev"), extra_toml)
    }

    /// Like [`Agent::start`], with several hub URLs that the agent tries in turn (replicas);
    /// `hub`'s certificate is trusted.
    pub fn start_multi(hub: &Hub, hub_urls: &[&str], extra_toml: &str) -> Agent {
        let urls = hub_urls
            .iter()
            .map(|url| format!("{url:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let trust = format!("ca_file = {:?}\n", hub.cert_path.display().to_string());
        Agent::start_with(&urls, &trust, Launch::Native, &unique_name("dev"), extra_toml)
    }

    /// An agent inside network namespace `namespace` (run with `ip netns exec`), dialling
    /// `hub_url` (an address the namespace reaches) and pinning the hub's certificate by its
    /// fingerprint (the certificate names 127.0.0.1 only).
    pub fn start_in_namespace(hub: &Hub, namespace: &str, hub_url: &str, extra_toml: &str) -> Agent {
        let trust = format!("hub_fingerprint = {:?}\n", hub.fingerprint);
        Agent::start_with(
            &format!("{hub_url:?}"),
            &trust,
            Launch::Namespace(namespace.to_owned()),
            &unique_name("dev"),
            extra_toml,
        )
    }

    /// An agent for another architecture (`emulated.agent`) run under qemu, dialling `hub`.
    pub fn start_emulated(hub: &Hub, emulated: Emulated, extra_toml: &str) -> Agent {
        let trust = format!("ca_file = {:?}\n", hub.cert_path.display().to_string());
        Agent::start_with(
            &format!("{:?}", hub.url),
            &trust,
            Launch::Emulated(emulated),
            &unique_name("dev"),
            extra_toml,
        )
    }

    fn start_at(hub: &Hub, hub_url: &str, name: &str, extra_toml: &str) -> Agent {
        let trust = format!("ca_file = {:?}\n", hub.cert_path.display().to_string());
        Agent::start_with(&format!("{hub_url:?}"), &trust, Launch::Native, name, extra_toml)
    }

    /// `hubs_toml`: the inside of the `hubs = [...]` array; `trust`: the `ca_file` or
    /// `hub_fingerprint` line.
    fn start_with(hubs_toml: &str, trust: &str, launch: Launch, name: &str, extra_toml: &str) -> Agent {
        let dir = tempfile::Builder::new()
            .prefix("tether-e2e-agent-")
            .tempdir()
            .expect("temp dir");
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir).expect("agent data dir");
        let mut config = format!(
            "hubs = [{hubs_toml}]\n{trust}data_dir = {data:?}\nreconnect_max_delay_secs = 2\n",
            data = data_dir.display().to_string(),
        );
        config.push_str(extra_toml);
        config.push('\n');
        if !extra_toml.contains("[identity]") {
            config.push_str(&format!("\n[identity]\nhostname = {name:?}\n"));
        }
        let config_path = dir.path().join("agent.toml");
        std::fs::write(&config_path, &config).expect("agent.toml");
        let process = spawn(&config_path, &launch, &format!("agent-{name}"), dir.path());
        Agent {
            launch,
            process,
            previous_runs: Vec::new(),
            config_path,
            name: name.to_owned(),
            dir,
        }
    }

    /// SIGKILLs the agent (if running) and starts it again with the same configuration and data
    /// directory (so the same device key).
    pub fn restart(&mut self) {
        self.process.kill();
        let run = self.previous_runs.len() + 2;
        let process = spawn(
            &self.config_path,
            &self.launch,
            &format!("agent-{}-run{run}", self.name),
            self.dir.path(),
        );
        self.previous_runs
            .push(std::mem::replace(&mut self.process, process));
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The agent's stderr (its log) so far.
    pub fn log(&self) -> String {
        self.process.stderr()
    }

    /// Waits until the agent's log contains `needle` at least `count` times.
    pub fn wait_log(&self, needle: &str, count: usize, limit: Duration) -> bool {
        self.process.wait_stderr_count(needle, count, limit)
    }

    /// Sends `signal` to the agent (e.g. SIGSTOP to freeze it, SIGCONT to resume).
    pub fn signal(&self, signal: i32) {
        self.process.signal(signal);
    }

    /// SIGKILLs the agent.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    pub fn process(&mut self) -> &mut Proc {
        &mut self.process
    }
}

fn spawn(config_path: &Path, launch: &Launch, name: &str, log_dir: &Path) -> Proc {
    let mut command = match launch {
        Launch::Native => Command::new(binary("tether-agent")),
        // `ip netns exec` runs the agent itself (exec), so the process is the agent's.
        Launch::Namespace(namespace) => {
            let mut command = Command::new("ip");
            command
                .args(["netns", "exec", namespace])
                .arg(binary("tether-agent"));
            command
        }
        // qemu-user runs the foreign binary in its own process, so signals reach the agent.
        Launch::Emulated(emulated) => {
            let mut command = Command::new(&emulated.qemu);
            if let Some(sysroot) = &emulated.sysroot {
                command.arg("-L").arg(sysroot);
            }
            command.arg(&emulated.agent);
            command
        }
    };
    hermetic(&mut command);
    command.arg("--config").arg(config_path);
    Proc::spawn(name, command, log_dir)
}
