//! The real `tether` CLI, run with `TETHER_HUB`, `TETHER_CA` and a private `TETHER_CONFIG_DIR`.

use std::{ffi::OsString, path::PathBuf, process::Command, time::Duration};

use tempfile::TempDir;
use tether_proto::api::Device;

use crate::{
    Hub, WAIT, binary,
    process::{hermetic, run_with_deadline},
};

/// One finished run of `tether`.
#[derive(Debug, Clone)]
pub struct CliOutput {
    pub args: Vec<String>,
    /// The exit code; `None` if killed by a signal (or by the harness after its deadline).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

impl CliOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics (with everything the command printed) unless it exited 0; returns stdout.
    pub fn ok(&self) -> &str {
        assert!(self.success(), "`tether {}` failed:\n{self}", self.args.join(" "));
        &self.stdout
    }
}

impl std::fmt::Display for CliOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$ tether {}\nexit code: {:?}{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args.join(" "),
            self.code,
            if self.timed_out {
                " (killed by the harness: did not finish in time)"
            } else {
                ""
            },
            self.stdout,
            self.stderr
        )
    }
}

/// A `tether` user with its own credentials directory.
pub struct Cli {
    pub hub_url: String,
    pub ca: PathBuf,
    config_dir: TempDir,
    env: Vec<(String, String)>,
}

impl Cli {
    pub fn new(hub: &Hub) -> Cli {
        Cli::with(&hub.url, &hub.cert_path)
    }

    /// A CLI for the hub at `url` whose certificate is `ca`.
    pub fn with(url: &str, ca: &std::path::Path) -> Cli {
        Cli {
            hub_url: url.to_owned(),
            ca: ca.to_path_buf(),
            config_dir: tempfile::Builder::new()
                .prefix("tether-e2e-cli-")
                .tempdir()
                .expect("temp dir"),
            env: Vec::new(),
        }
    }

    /// Sets an extra environment variable for every later command (e.g. `TETHER_TOKEN`).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// The credentials directory (`TETHER_CONFIG_DIR`).
    pub fn config_dir(&self) -> PathBuf {
        self.config_dir.path().to_path_buf()
    }

    /// `tether ARGS` with the test environment, not yet started.
    pub fn command<S: Into<OsString> + Clone>(&self, args: &[S]) -> Command {
        let mut command = Command::new(binary("tether"));
        hermetic(&mut command);
        command
            .env("TETHER_HUB", &self.hub_url)
            .env("TETHER_CA", &self.ca)
            .env("TETHER_CONFIG_DIR", self.config_dir.path());
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command.args(args.iter().cloned().map(Into::into));
        command
    }

    /// Runs `tether ARGS` with stdin closed (gives up after [`WAIT`]).
    pub fn run(&self, args: &[&str]) -> CliOutput {
        self.run_with_stdin(args, None)
    }

    /// Runs `tether ARGS` with stdin closed, giving up after `limit` (for long transfers).
    pub fn run_for(&self, args: &[&str], limit: Duration) -> CliOutput {
        self.run_with_stdin_for(args, None, limit)
    }

    /// Runs `tether ARGS` with `stdin` as its input.
    pub fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> CliOutput {
        self.run_with_stdin_for(args, stdin, WAIT)
    }

    fn run_with_stdin_for(&self, args: &[&str], stdin: Option<&str>, limit: Duration) -> CliOutput {
        let (output, timed_out) = run_with_deadline(self.command(args), stdin.map(str::as_bytes), limit);
        CliOutput {
            args: args.iter().map(|a| a.to_string()).collect(),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            timed_out,
        }
    }

    /// `tether login USER --password-stdin`; panics unless it succeeds.
    pub fn login(&self, user: &str, password: &str) {
        self.run_with_stdin(
            &["login", user, "--password-stdin"],
            Some(&format!("{password}\n")),
        )
        .ok();
    }

    /// The bearer token `tether login` stored (for calling the hub's HTTP API directly).
    pub fn token(&self) -> String {
        // The current profile's login (`default` unless a test switched profiles).
        let current = std::fs::read_to_string(self.config_dir.path().join("current-profile"));
        let profile = current.as_deref().map(str::trim).unwrap_or("default");
        let path = self.config_dir.path().join(format!("profiles/{profile}.json"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("no stored login in {}: {e}", path.display()));
        let value: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        value["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token in {}", path.display()))
            .to_owned()
    }

    /// `tether devices list --json`, parsed; panics unless it succeeds.
    pub fn devices(&self) -> Vec<Device> {
        let output = self.run(&["devices", "list", "--json"]);
        let text = output.ok();
        serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("`devices list --json` is not a JSON array of devices: {e}\n{output}"))
    }

    /// The device named `name`, if listed.
    pub fn device(&self, name: &str) -> Option<Device> {
        self.devices().into_iter().find(|d| d.name == name)
    }

    /// Polls the device list until `name` appears; returns its id.
    pub fn device_id_by_name(&self, name: &str) -> String {
        self.wait_device(name, "to be listed", |_| true).id
    }

    /// Polls the device list until the device `name` satisfies `check` (gives up after [`WAIT`],
    /// showing the last listing).
    pub fn wait_device(&self, name: &str, what: &str, check: impl Fn(&Device) -> bool) -> Device {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let devices = self.devices();
            if let Some(device) = devices.iter().find(|d| d.name == name && check(d)) {
                return device.clone();
            }
            if std::time::Instant::now() >= deadline {
                panic!("gave up after {WAIT:?} waiting for device {name} {what}; last listing: {devices:#?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Polls until the device `name` is listed as accepted and online.
    pub fn wait_online(&self, name: &str) -> Device {
        self.wait_device(name, "accepted and online", |d| {
            d.status == "accepted" && d.online
        })
    }

    /// `tether devices accept NAME`, then waits until the device is online.
    pub fn accept(&self, name: &str) -> Device {
        self.device_id_by_name(name);
        self.run(&["devices", "accept", name]).ok();
        self.wait_online(name)
    }

    /// `tether exec DEVICE -- COMMAND...`
    pub fn exec(&self, device: &str, command: &[&str]) -> CliOutput {
        let mut args = vec!["exec", device, "--"];
        args.extend_from_slice(command);
        self.run(&args)
    }

    /// Runs `exec` until it succeeds or `limit` passes (a device that just (re)connected may be
    /// briefly unknown to the hub); returns the last output.
    pub fn exec_when_ready(&self, device: &str, command: &[&str], limit: Duration) -> CliOutput {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let output = self.exec(device, command);
            if output.success() || std::time::Instant::now() >= deadline {
                return output;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}
