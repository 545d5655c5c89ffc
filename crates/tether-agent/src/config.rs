//! The configuration file (TOML): what it may contain, its defaults, and its validation.
//!
//! Every key is optional; unknown keys are an error so that a typo never silently falls back to a
//! default. Command-line flags are applied on top by [`crate::settings`].

use std::{collections::BTreeMap, path::PathBuf};

use anyhow::{Context as _, bail};
use serde::Deserialize;

/// Where the configuration is read from when `--config` is not given (only if it exists).
pub const DEFAULT_CONFIG_PATH: &str = "/etc/tether/agent.toml";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Hub URLs (`https://host[:port]`), tried in turn.
    pub hubs: Vec<String>,
    /// A PEM file of CA certificates (or the hub's self-signed certificate) to trust instead of
    /// the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Pin the hub certificate by SHA-256 fingerprint instead of checking its chain.
    pub hub_fingerprint: Option<String>,
    /// Where the device key and token are kept.
    pub data_dir: Option<PathBuf>,
    /// A shared secret that makes the hub accept this device on first contact.
    pub provisioning_key: Option<String>,
    /// A one-time enrolment token (written by the one-line install): makes the hub accept this
    /// device on first contact, with the token's tags, while the token is live.
    pub enrolment_token: Option<String>,
    /// WebSocket ping interval; the hub is presumed dead after two intervals of silence.
    pub keepalive_interval_secs: u64,
    /// Cap of the exponential reconnect backoff.
    pub reconnect_max_delay_secs: u64,
    /// Identity attributes sent to the hub; when absent, `hostname` and `machine_id`.
    pub identity: Option<BTreeMap<String, String>>,
    pub terminal: TerminalConfig,
    pub file_transfer: FileTransferConfig,
    pub port_forward: PortForwardConfig,
    pub consent: crate::consent::ConsentConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hubs: Vec::new(),
            ca_file: None,
            hub_fingerprint: None,
            data_dir: None,
            provisioning_key: None,
            enrolment_token: None,
            keepalive_interval_secs: 90,
            reconnect_max_delay_secs: 60,
            identity: None,
            terminal: TerminalConfig::default(),
            file_transfer: FileTransferConfig::default(),
            port_forward: PortForwardConfig::default(),
            consent: crate::consent::ConsentConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TerminalConfig {
    pub enabled: bool,
    /// The shell to run; exec requests run `shell -c COMMAND`.
    pub shell: String,
    /// Arguments for interactive shells (e.g. `["-l"]` for a login shell).
    pub args: Vec<String>,
    /// The local user shells run as; `None` means the agent's own user.
    pub user: Option<String>,
    /// Other local users an operator may ask for (`tether terminal USER@DEVICE`); empty = only
    /// `user` (or the agent's own user).
    pub allowed_users: Vec<String>,
    /// Terminal size used when the operator sends none.
    pub width: u16,
    pub height: u16,
    /// Shells on this device in total.
    pub max_sessions: usize,
    /// Shells per operator (`user_id`).
    pub max_sessions_per_user: usize,
    /// No input and no output for this long ends a shell; 0 = never.
    pub idle_timeout_secs: u64,
    /// A shell ends this long after it started, whatever it does; 0 = never.
    pub max_duration_secs: u64,
    /// A version-2 shell whose operator or hub link is gone is kept this long, waiting to be
    /// resumed; 0 = end it at once (as a stock agent does).
    pub grace_period_secs: u64,
    /// Output kept per shell for resuming (the oldest is dropped beyond it, with a marker).
    pub output_buffer_bytes: usize,
}

impl Default for TerminalConfig {
    fn default() -> Self {
        TerminalConfig {
            enabled: true,
            shell: "/bin/sh".into(),
            args: Vec::new(),
            user: None,
            allowed_users: Vec::new(),
            width: 80,
            height: 24,
            max_sessions: 8,
            max_sessions_per_user: 4,
            idle_timeout_secs: 1800,
            max_duration_secs: 28800,
            grace_period_secs: 300,
            output_buffer_bytes: 256 * 1024,
        }
    }
}

/// `[port_forward]`: TCP and UDP connections from the operator to targets the device reaches.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PortForwardConfig {
    pub enabled: bool,
    /// Targets that may be dialled: addresses, CIDR blocks or host names, each optionally with
    /// `:PORT` or `:LOW-HIGH` (see `crate::allow_list::AllowList`).
    pub allow: Vec<String>,
    /// Forwarded connections (TCP and UDP) open at once on this device.
    pub max_connections: usize,
    /// No bytes either way for this long closes a connection; 0 = never.
    pub idle_timeout_secs: u64,
}

impl Default for PortForwardConfig {
    fn default() -> Self {
        PortForwardConfig {
            enabled: false,
            // Loopback only: services on the device itself, never its network.
            allow: vec!["127.0.0.0/8".into(), "::1".into()],
            max_connections: 64,
            idle_timeout_secs: 600,
        }
    }
}

/// `[file_transfer]`: `stat`, `list`, downloads, uploads and `mkdir` under the roots only.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileTransferConfig {
    pub enabled: bool,
    /// Absolute directories that files may be read and written under; none = nothing.
    pub roots: Vec<PathBuf>,
    /// Largest file uploaded or downloaded, in bytes; 0 = no limit.
    pub max_file_size: u64,
    /// Whether an upload may replace an existing file.
    pub allow_overwrite: bool,
    /// User (name or uid) and group that uploaded files get; empty = the agent's own.
    pub owner: String,
    pub group: String,
    /// Whether `put_file`'s `uid`/`gid` may name anyone but the owner above.
    pub allow_chown: bool,
    /// Cleared from the mode of uploaded files and created directories.
    pub umask: u32,
    /// Whether uploads may carry the setuid and setgid bits.
    pub allow_setuid: bool,
    /// Bytes per second, device-wide; 0 = unlimited. Throttles, never refuses.
    pub read_rate_limit: u64,
    pub write_rate_limit: u64,
    /// How long an interrupted upload's temporary file is kept for a resume.
    pub resume_window_secs: u64,
}

impl Default for FileTransferConfig {
    fn default() -> Self {
        FileTransferConfig {
            enabled: false,
            roots: Vec::new(),
            max_file_size: 1 << 30,
            allow_overwrite: true,
            owner: String::new(),
            group: String::new(),
            allow_chown: false,
            umask: 0o022,
            allow_setuid: false,
            read_rate_limit: 0,
            write_rate_limit: 0,
            resume_window_secs: 3600,
        }
    }
}

impl Config {
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let config: Config = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    pub fn load(path: &std::path::Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        Config::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.keepalive_interval_secs == 0 {
            bail!("keepalive_interval_secs must be at least 1");
        }
        if self.reconnect_max_delay_secs == 0 {
            bail!("reconnect_max_delay_secs must be at least 1");
        }
        if self.ca_file.is_some() && self.hub_fingerprint.is_some() {
            bail!("set either ca_file or hub_fingerprint, not both");
        }
        let terminal = &self.terminal;
        if terminal.shell.is_empty() {
            bail!("terminal.shell must not be empty");
        }
        if terminal.width == 0 || terminal.height == 0 {
            bail!("terminal.width and terminal.height must be at least 1");
        }
        check_allowed_users(&terminal.allowed_users).map_err(anyhow::Error::msg)?;
        if terminal.output_buffer_bytes < 4096 {
            bail!("terminal.output_buffer_bytes must be at least 4096");
        }
        if terminal.max_sessions == 0 || terminal.max_sessions_per_user == 0 {
            bail!(
                "terminal.max_sessions and terminal.max_sessions_per_user must be at least 1 \
                 (set terminal.enabled = false to turn shells off)"
            );
        }
        let files = &self.file_transfer;
        if let Some(root) = files.roots.iter().find(|root| !root.is_absolute()) {
            bail!("file_transfer.roots: {} is not an absolute path", root.display());
        }
        if files.umask > 0o777 {
            bail!("file_transfer.umask must be at most 0o777");
        }
        crate::allow_list::AllowList::parse(&self.port_forward.allow).map_err(anyhow::Error::msg)?;
        self.consent.validate().map_err(anyhow::Error::msg)?;
        if self.port_forward.max_connections == 0 {
            bail!(
                "port_forward.max_connections must be at least 1 \
                 (set port_forward.enabled = false to turn port forwarding off)"
            );
        }
        Ok(())
    }
}

/// Checks `terminal.allowed_users` at start: explicit, valid user names only.
fn check_allowed_users(allowed: &[String]) -> Result<(), String> {
    for name in allowed {
        if name == "*" {
            return Err(
                "terminal.allowed_users: \"*\" is not supported; list the local users operators may ask for"
                    .into(),
            );
        }
        if !tether_proto::shell::valid_local_user(name) {
            return Err(format!(
                "terminal.allowed_users: {name:?} is not a valid user name (letters, digits, '.', '_' \
                 and '-', at most 32 bytes, not starting with '-')"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_the_documented_defaults() {
        let config = Config::parse("").unwrap();
        assert_eq!(config, Config::default());
        assert!(config.hubs.is_empty());
        assert_eq!(config.keepalive_interval_secs, 90);
        assert_eq!(config.reconnect_max_delay_secs, 60);
        assert!(config.identity.is_none());
        let terminal = &config.terminal;
        assert!(terminal.enabled);
        assert_eq!(terminal.shell, "/bin/sh");
        assert!(terminal.args.is_empty());
        assert_eq!(terminal.user, None);
        assert!(terminal.allowed_users.is_empty());
        assert_eq!((terminal.width, terminal.height), (80, 24));
        assert_eq!(terminal.max_sessions, 8);
        assert_eq!(terminal.max_sessions_per_user, 4);
        assert_eq!(terminal.idle_timeout_secs, 1800);
        assert_eq!(terminal.max_duration_secs, 28800);
        assert!(!config.file_transfer.enabled);
        assert!(config.file_transfer.roots.is_empty());
        assert_eq!(config.file_transfer.max_file_size, 1 << 30);
        assert!(config.file_transfer.allow_overwrite);
        assert_eq!(config.file_transfer.umask, 0o022);
        assert_eq!(config.file_transfer.resume_window_secs, 3600);
        assert!(!config.port_forward.enabled);
    }

    #[test]
    fn full_file_parses() {
        let config = Config::parse(
            r#"
            hubs = ["https://a.example", "https://b.example:8443"]
            ca_file = "/etc/tether/hub.crt"
            data_dir = "/tmp/x"
            provisioning_key = "secret"
            keepalive_interval_secs = 10
            reconnect_max_delay_secs = 30

            [identity]
            serial = "ABC123"

            [terminal]
            shell = "/bin/bash"
            args = ["-l"]
            user = "nobody"
            allowed_users = ["daemon", "svc-backup"]
            width = 100
            height = 30
            max_sessions = 2
            max_sessions_per_user = 1
            idle_timeout_secs = 0
            max_duration_secs = 0

            [file_transfer]
            enabled = true
            roots = ["/data", "/var/log"]
            max_file_size = 0
            allow_overwrite = false
            owner = "nobody"
            umask = 0o077
            read_rate_limit = 1000000
            "#,
        )
        .unwrap();
        assert_eq!(config.hubs.len(), 2);
        assert_eq!(config.identity.unwrap()["serial"], "ABC123");
        assert_eq!(config.terminal.user.as_deref(), Some("nobody"));
        assert_eq!(config.terminal.allowed_users, ["daemon", "svc-backup"]);
        assert_eq!(config.terminal.args, ["-l"]);
        assert_eq!(config.terminal.idle_timeout_secs, 0);
        assert_eq!(config.file_transfer.roots.len(), 2);
        assert_eq!(config.file_transfer.umask, 0o077);
        assert!(!config.file_transfer.allow_overwrite);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let error = Config::parse("hub = \"https://typo\"").unwrap_err();
        assert!(format!("{error:#}").contains("unknown field `hub`"), "{error:#}");
        assert!(Config::parse("[terminal]\nshel = \"/bin/sh\"").is_err());
        assert!(Config::parse("[port_forward]\nenabled = false\nextra = 1").is_err());
    }

    #[test]
    fn invalid_values_are_errors() {
        for text in [
            "keepalive_interval_secs = 0",
            "reconnect_max_delay_secs = 0",
            "[terminal]\nmax_sessions = 0",
            "[terminal]\nwidth = 0",
            "[terminal]\nshell = \"\"",
            "[file_transfer]\nroots = [\"relative/dir\"]",
            "[file_transfer]\numask = 0o7777",
            "[file_transfer]\nroot = []",
            "[port_forward]\nmax_connections = 0",
            "[port_forward]\nallow = [\"10.0.0.1/8\"]",
            "[port_forward]\nallow = [\"127.0.0.1:0\"]",
            "ca_file = \"a\"\nhub_fingerprint = \"b\"",
            "keepalive_interval_secs = -1",
            "[terminal]\nallowed_users = [\"*\"]",
            "[terminal]\nallowed_users = [\"a b\"]",
            "[terminal]\nallowed_users = [\"\"]",
        ] {
            assert!(Config::parse(text).is_err(), "{text}");
        }
        let wildcard = Config::parse("[terminal]\nallowed_users = [\"*\"]").unwrap_err();
        assert!(format!("{wildcard:#}").contains("not supported"), "{wildcard:#}");
    }
}
