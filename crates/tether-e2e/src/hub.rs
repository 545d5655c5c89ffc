//! A real `tether-hub` on a free loopback port, with its own data directory.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::Duration,
};

use tempfile::TempDir;
use tether_net::{HubUrl, TrustOptions};

use crate::{
    Cli, WAIT, binary,
    process::{Proc, hermetic, run_with_deadline},
};

/// How to start a hub.
#[derive(Debug, Clone, Default)]
pub struct HubOptions {
    /// Passed as `--provisioning-key`.
    pub provisioning_key: Option<String>,
    /// Extra TOML written to a file passed with `--config` (when not empty).
    pub config_toml: String,
    /// Extra environment, e.g. `("TETHER_HUB_DEVICE_TOKEN_LIFETIME_SECS", "1")`.
    pub env: Vec<(String, String)>,
    /// A data directory whose TLS certificate, key and signing keys this hub uses too (another
    /// replica of the same deployment).
    pub secrets_from: Option<PathBuf>,
    /// A backup (`tether-hub backup`) restored into the new data directory before the start.
    pub restore_from: Option<PathBuf>,
}

impl HubOptions {
    pub fn provisioning_key(mut self, key: &str) -> Self {
        self.provisioning_key = Some(key.to_owned());
        self
    }

    pub fn config(mut self, toml: &str) -> Self {
        self.config_toml.push_str(toml);
        self.config_toml.push('\n');
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// A replica: PostgreSQL database `database_url` and NATS `nats_url` (through the
    /// environment, `TETHER_HUB_DATABASE_URL` and `TETHER_HUB_NATS_URL`).
    pub fn replica(self, database_url: &str, nats_url: &str) -> Self {
        self.env("TETHER_HUB_DATABASE_URL", database_url)
            .env("TETHER_HUB_NATS_URL", nats_url)
    }

    /// Restores the backup `file` into the data directory before the hub starts.
    pub fn restored_from(mut self, file: &Path) -> Self {
        self.restore_from = Some(file.to_owned());
        self
    }

    /// Uses the certificate, key and signing key of `hub` (replicas share them).
    pub fn secrets_of(mut self, hub: &Hub) -> Self {
        self.secrets_from = Some(hub.data_dir());
        self
    }
}

/// Copies the files replicas share (TLS certificate and key, token and audit signing keys, the
/// key that encrypts secrets in the database).
fn copy_secrets(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("tls")).expect("tls dir");
    for name in [
        "tls/hub.crt",
        "tls/hub.key",
        "signing.key",
        "audit-signing.key",
        "encryption.key",
    ] {
        std::fs::copy(from.join(name), to.join(name))
            .unwrap_or_else(|e| panic!("copying {name} from {}: {e}", from.display()));
    }
}

/// A running hub. Dropping it kills the process and removes its directory.
pub struct Hub {
    // Field order matters: the process is killed before its directory is removed.
    process: Option<Proc>,
    options: HubOptions,
    /// `https://127.0.0.1:PORT`, as the hub printed it.
    pub url: String,
    pub port: u16,
    /// The PEM certificate to trust, as the hub printed it.
    pub cert_path: PathBuf,
    /// `sha256:HEX`, as the hub printed it.
    pub fingerprint: String,
    starts: u32,
    /// Killed processes of earlier runs (see [`Hub::restart`]), kept for their logs.
    previous_runs: Vec<Proc>,
    dir: TempDir,
}

impl Hub {
    /// Starts a hub on `127.0.0.1:0` with a fresh data directory.
    pub fn start(options: HubOptions) -> Hub {
        let dir = tempfile::Builder::new()
            .prefix("tether-e2e-hub-")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir_all(dir.path().join("data")).expect("data dir");
        if let Some(from) = &options.secrets_from {
            copy_secrets(from, &dir.path().join("data"));
        }
        if !options.config_toml.is_empty() {
            std::fs::write(dir.path().join("hub.toml"), &options.config_toml).expect("hub.toml");
        }
        let mut hub = Hub {
            process: None,
            options,
            url: String::new(),
            port: 0,
            cert_path: PathBuf::new(),
            fingerprint: String::new(),
            starts: 0,
            previous_runs: Vec::new(),
            dir,
        };
        if let Some(backup) = hub.options.restore_from.clone() {
            let output = hub.run_hub(&["restore".as_ref(), backup.as_os_str()]);
            assert!(
                output.status.success(),
                "`tether-hub restore {}` failed ({}):\nstdout: {}\nstderr: {}",
                backup.display(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        hub.spawn("127.0.0.1:0");
        hub
    }

    /// Runs `tether-hub --data-dir DIR [--config FILE] ARGS` (with this hub's environment) to its
    /// end, giving up after [`WAIT`].
    pub fn run_hub(&self, args: &[&std::ffi::OsStr]) -> std::process::Output {
        let mut command = self.base_command();
        command.args(args);
        let (output, timed_out) = run_with_deadline(command, None, WAIT);
        assert!(!timed_out, "`tether-hub {args:?}` timed out");
        output
    }

    /// Starts a hub with default options.
    pub fn start_default() -> Hub {
        Hub::start(HubOptions::default())
    }

    /// The hub's temporary directory (data dir, config, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `tether-hub --data-dir DIR [--config FILE]` with the test's environment.
    fn base_command(&self) -> Command {
        let mut command = Command::new(binary("tether-hub"));
        hermetic(&mut command);
        command.arg("--data-dir").arg(self.data_dir());
        let config = self.dir.path().join("hub.toml");
        if config.is_file() {
            command.arg("--config").arg(config);
        }
        for (key, value) in &self.options.env {
            command.env(key, value);
        }
        command
    }

    fn spawn(&mut self, listen: &str) {
        self.starts += 1;
        let mut command = self.base_command();
        command.args(["serve", "--listen", listen]);
        if let Some(key) = &self.options.provisioning_key {
            command.args(["--provisioning-key", key]);
        }
        let name = if self.starts == 1 {
            "hub".to_owned()
        } else {
            format!("hub-run{}", self.starts)
        };
        let mut process = Proc::spawn(&name, command, self.dir.path());
        let url = process.wait_stdout_line("listening on ", WAIT);
        let cert = process.wait_stdout_line("certificate: ", WAIT);
        let fingerprint = process.wait_stdout_line("fingerprint: ", WAIT);
        let parsed = HubUrl::parse(url.trim())
            .unwrap_or_else(|e| panic!("hub printed an unusable URL `{url}`: {e}\n{}", process.logs()));
        self.url = url.trim().to_owned();
        self.port = parsed.port;
        self.cert_path = PathBuf::from(cert.trim());
        self.fingerprint = fingerprint.trim().to_owned();
        assert!(
            self.cert_path.is_file(),
            "the hub's certificate {} does not exist\n{}",
            self.cert_path.display(),
            process.logs()
        );
        self.process = Some(process);
    }

    /// SIGKILLs the hub (no graceful shutdown).
    pub fn kill(&mut self) {
        if let Some(process) = self.process.as_mut() {
            process.kill();
        }
    }

    /// Starts the hub again on the same data directory and the same port. The previous process,
    /// if still running, is SIGKILLed first; the logs of every run are kept (and printed if the
    /// test fails).
    pub fn restart(&mut self) {
        self.kill();
        if let Some(previous) = self.process.take() {
            self.previous_runs.push(previous);
        }
        let old_port = self.port;
        let listen = format!("127.0.0.1:{old_port}");
        // Binding the same port again can fail for a moment after a kill: retry a few times.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.spawn(&listen)));
            match result {
                Ok(()) => break,
                Err(panic) if attempt >= 5 => std::panic::resume_unwind(panic),
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
        assert_eq!(self.port, old_port, "the restarted hub listens on another port");
    }

    /// The running hub process.
    pub fn process(&mut self) -> &mut Proc {
        self.process.as_mut().expect("hub is running")
    }

    /// The hub's stderr (its log) of the current run.
    pub fn log(&self) -> String {
        self.process.as_ref().map(Proc::stderr).unwrap_or_default()
    }

    /// `tether-hub user add NAME --role admin|operator --password-stdin` (every device).
    pub fn add_user(&self, name: &str, admin: bool, password: &str) {
        let role = if admin { "admin" } else { "operator" };
        self.add_user_with(name, &["--role", role], password);
    }

    /// `tether-hub user add NAME ROLE_ARGUMENTS --password-stdin`, e.g. with
    /// `["--role", "operator", "--group", "tag:a"]`.
    pub fn add_user_with(&self, name: &str, role_arguments: &[&str], password: &str) {
        let mut command = self.base_command();
        command.args(["user", "add", name]);
        command.args(role_arguments);
        command.arg("--password-stdin");
        let (output, timed_out) = run_with_deadline(command, Some(format!("{password}\n").as_bytes()), WAIT);
        assert!(
            !timed_out && output.status.success(),
            "`tether-hub user add {name}` failed ({}{}):\nstdout: {}\nstderr: {}",
            output.status,
            if timed_out { ", timed out" } else { "" },
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// A CLI for this hub with its own (empty) credentials directory.
    pub fn cli(&self) -> Cli {
        Cli::new(self)
    }

    /// A CLI logged in as a new user `name` (created here: an administrator if `admin`, else an
    /// operator on every device).
    pub fn user_cli(&self, name: &str, admin: bool) -> Cli {
        let role = if admin { "admin" } else { "operator" };
        self.user_cli_with(name, &["--role", role])
    }

    /// A CLI logged in as a new user `name` created with `role_arguments` (see
    /// [`Hub::add_user_with`]); the password is `pw-NAME-correct-horse`.
    pub fn user_cli_with(&self, name: &str, role_arguments: &[&str]) -> Cli {
        let password = format!("pw-{name}-correct-horse");
        self.add_user_with(name, role_arguments, &password);
        let cli = self.cli();
        cli.login(name, &password);
        cli
    }

    pub fn hub_url(&self) -> HubUrl {
        HubUrl::parse(&self.url).expect("hub URL")
    }

    /// A TLS client configuration trusting this hub's certificate.
    pub fn tls(&self) -> Arc<rustls::ClientConfig> {
        tether_net::client_config(&TrustOptions {
            ca_file: Some(self.cert_path.display().to_string()),
            fingerprint: None,
        })
        .expect("TLS client configuration for the hub's certificate")
    }

    /// One HTTP request to the hub (`Connection: close`); returns the status and body text.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
        let hub = self.hub_url();
        let tls = self.tls();
        let (status, body) = crate::block_on(tether_net::http_request(
            &hub,
            tls,
            None,
            method,
            path,
            headers,
            body,
            Duration::from_secs(20),
        ))
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}
