//! Hub configuration: a TOML file, overlaid by `TETHER_HUB_*` environment variables, overlaid by
//! command-line flags. Every field has a documented default (see `docs/configuration.md`).

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

pub mod values;

use values::Source;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubConfig {
    /// Where the database, TLS certificate, keys and recordings live: from `--data-dir` (or
    /// `TETHER_HUB_DATA_DIR`), never from the file.
    #[serde(skip)]
    pub data_dir: PathBuf,
    /// Address to listen on (HTTPS and WebSockets).
    pub listen: SocketAddr,
    /// PEM certificate chain and key; when absent, a self-signed certificate is created in the
    /// data directory.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// A shared secret that accepts devices on first contact (balena style). None: every new
    /// device waits for an administrator.
    pub provisioning_key: Option<String>,
    /// Lifetime of device tokens; agents renew before expiry.
    pub device_token_lifetime_secs: u64,
    /// Lifetime of user login sessions.
    pub session_lifetime_secs: u64,
    /// Largest frame accepted from a device; a larger one closes its connection.
    pub max_device_frame_bytes: usize,
    /// Largest frame accepted from a user's session.
    pub max_user_frame_bytes: usize,
    /// The hub pings a device (or user) connection it has not heard from for this long, and
    /// closes it after two intervals of silence.
    pub keepalive_interval_secs: u64,
    /// Offer devices protocol version 3 (version 2 in the compact encoding, see
    /// docs/protocol.md): a keystroke costs a few bytes instead of a hundred. Off: devices are
    /// offered versions 1 and 2 only, as by hubs before it.
    pub compact_device_leg: bool,
    /// Offer devices to deflate their terminal output (a burst in one stream) and file chunks on
    /// the compact device leg (docs/protocol.md, *Compression*). Needs `compact_device_leg`.
    pub compress_device_leg: bool,
    /// Failed logins allowed for one account from one client address (IPv6: its /64) within
    /// the window; beyond it that account is throttled from that address only (one more attempt
    /// every `window / limit`). Failures never lock an account for everyone.
    pub login_failures_per_account: u32,
    /// Failed logins allowed from one client address (IPv6: its /64), whatever the accounts.
    pub login_failures_per_address: u32,
    pub login_failure_window_secs: u64,
    /// Wrong or replayed second-factor codes allowed per account (from any address) within the
    /// window; only reached with the right password.
    pub login_code_failures_per_account: u32,
    /// Most failed-login buckets kept per kind (client addresses; account+address pairs): bounds
    /// the memory an attacker can make the hub spend (a bucket is well under 100 bytes). At the
    /// cap, buckets that have refilled go first, then the least active; never all at once.
    pub login_throttle_capacity: usize,
    /// Authentication requests from unknown device keys (new enrolments) allowed per client
    /// address (IPv6: its /64) within `enrolment_window_secs` (refilled evenly over it). Known
    /// devices are never throttled; a valid provisioning key is not either.
    pub enrolments_per_address: u32,
    /// The same, from all addresses together.
    pub enrolments_in_total: u32,
    pub enrolment_window_secs: u64,
    /// Most devices waiting for acceptance; a new one beyond it drops the oldest pending device
    /// (audited as `device.pending_dropped`).
    pub max_pending_devices: u64,
    /// Most concurrent sessions (terminal, exec, file, port forward) one user holds through
    /// this hub replica.
    pub max_sessions_per_user: usize,
    /// Most concurrent user sessions to one device through this hub replica.
    pub max_sessions_per_device: usize,
    /// Audit events older than this are deleted (0 = keep for ever). The chain stays verifiable:
    /// the last deleted event's hash becomes its anchor.
    pub audit_retention_days: u64,
    /// The Ed25519 key that signs audit checkpoints and retention anchors, in a file of its own
    /// (mode 0600, created at first start); put it on another volume than the database so that
    /// whoever can write the database cannot sign. None: `DATA_DIR/audit-signing.key`.
    pub audit_signing_key: Option<PathBuf>,
    /// Seconds between signed checkpoints of the audit chain's head, made only when the chain
    /// moved (0: only at start, on graceful shutdown and on request).
    pub audit_checkpoint_interval_secs: u64,
    /// A file every checkpoint the hub makes is appended to, one JSON line each (for
    /// `tether audit verify --checkpoint`); keep it, or a copy, away from the database.
    pub audit_checkpoint_file: Option<PathBuf>,
    /// A local syslog socket (usually `/dev/log`) every checkpoint is also sent to.
    pub audit_checkpoint_syslog: Option<PathBuf>,
    /// Record operators' keystrokes too (they can contain passwords typed at prompts; output is
    /// always recorded).
    pub record_input: bool,
    /// Record terminal sessions (default on). When on, a terminal whose recording cannot be
    /// written is refused. Turning it off is meant for measurements; audit events still record
    /// every terminal's opening and closing.
    pub record_sessions: bool,
    /// Recordings of sessions that ended more than this many days ago are deleted (0 = keep
    /// for ever). Their audit events stay.
    pub recording_retention_days: u64,
    /// Whether a device may set its own tags (device groups) with the identity attribute `tags`
    /// (comma-separated). Off by default: a device could otherwise move itself into a group.
    pub device_reported_tags: bool,
    /// The database: `postgres://user:password@host/db` for several replicas sharing one
    /// PostgreSQL; None: the embedded SQLite file `DATA_DIR/hub.db`.
    pub database_url: Option<String>,
    /// The NATS server replicas route through (`nats://host:4222`, `tls://...`); None: in-process
    /// routing (one hub).
    pub nats_url: Option<String>,
    /// A graceful shutdown asks its devices to reconnect spread over this many seconds, so that
    /// the other replicas are not hit by all of them at once.
    pub shutdown_spread_secs: u64,
    /// With PostgreSQL: a replica that has not written its heartbeat for this many seconds is
    /// taken for dead, and another replica closes the terminals it left open (`interrupted`).
    /// Each replica beats every quarter of it.
    pub replica_timeout_secs: u64,
    /// How long the hub keeps a terminal whose operator or device leg dropped, waiting for it to
    /// come back, and lists it as detached (the agent's `terminal.grace_period_secs` decides
    /// whether the shell is still there; keep the two alike).
    pub terminal_grace_period_secs: u64,
    /// A new connection must complete its TLS handshake and send the headers of its first
    /// request within this many seconds of being accepted, or it is closed.
    pub request_deadline_secs: u64,
    /// An HTTP connection is closed when it is idle between requests (keep-alive), or takes
    /// longer to send a later request's headers, for this many seconds. Upgraded WebSockets
    /// are not concerned (their keep-alive is `keepalive_interval_secs`).
    pub http_idle_timeout_secs: u64,
    /// Concurrent client connections in total (WebSockets included); beyond it new connections
    /// are closed at once. 0: derived from the open-file limit (half of it after a reserve of
    /// 256 for the hub's own files, see docs/configuration.md); a larger value is lowered to
    /// the open-file limit minus the reserve.
    pub max_connections: usize,
    /// Concurrent connections speaking HTTP from one client address (IPv6: one /64); beyond it
    /// new connections from there are closed at once. A connection upgraded to an authenticated
    /// WebSocket (device or user session) no longer counts.
    pub max_connections_per_address: usize,
    /// The directory the one-line install serves agent binaries from (`GET /install/agents/ARCH`
    /// serves `tether-agent-ARCH-linux`, as `scripts/build-agents` names them).
    pub agents_dir: PathBuf,
    /// How log lines are written to standard error: `text` for people, `json` (one object per
    /// line, stable field names, docs/operations.md) for a log pipeline. `--log-format` too.
    pub log_format: LogFormat,
    /// The bearer token Prometheus must present to scrape `/metrics`, in a file of its own;
    /// None: `DATA_DIR/metrics.token`, created (mode 0600) at first start.
    pub metrics_token_file: Option<PathBuf>,
}

/// The format of the hub's log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            data_dir: PathBuf::from("tether-hub"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            tls_cert: None,
            tls_key: None,
            provisioning_key: None,
            device_token_lifetime_secs: 3600,
            session_lifetime_secs: 12 * 3600,
            max_device_frame_bytes: 1 << 20,
            max_user_frame_bytes: 1 << 20,
            keepalive_interval_secs: 100,
            compact_device_leg: true,
            compress_device_leg: true,
            login_failures_per_account: 5,
            login_failures_per_address: 20,
            login_failure_window_secs: 300,
            login_code_failures_per_account: 10,
            login_throttle_capacity: 200_000,
            enrolments_per_address: 30,
            enrolments_in_total: 120,
            enrolment_window_secs: 60,
            max_pending_devices: 1000,
            max_sessions_per_user: 256,
            max_sessions_per_device: 256,
            audit_retention_days: 0,
            audit_signing_key: None,
            audit_checkpoint_interval_secs: 300,
            audit_checkpoint_file: None,
            audit_checkpoint_syslog: None,
            record_input: false,
            record_sessions: true,
            recording_retention_days: 0,
            device_reported_tags: false,
            database_url: None,
            nats_url: None,
            shutdown_spread_secs: 0,
            replica_timeout_secs: 60,
            terminal_grace_period_secs: 300,
            request_deadline_secs: 10,
            http_idle_timeout_secs: 60,
            max_connections: 0,
            max_connections_per_address: 256,
            agents_dir: PathBuf::from(DEFAULT_AGENTS_DIR),
            log_format: LogFormat::Text,
            metrics_token_file: None,
        }
    }
}

/// Keys that may come from the environment as `TETHER_HUB_<KEY>`.
const KEYS: &[&str] = &[
    "listen",
    "tls_cert",
    "tls_key",
    "provisioning_key",
    "device_token_lifetime_secs",
    "session_lifetime_secs",
    "max_device_frame_bytes",
    "max_user_frame_bytes",
    "keepalive_interval_secs",
    "compact_device_leg",
    "compress_device_leg",
    "login_failures_per_account",
    "login_failures_per_address",
    "login_failure_window_secs",
    "login_code_failures_per_account",
    "login_throttle_capacity",
    "enrolments_per_address",
    "enrolments_in_total",
    "enrolment_window_secs",
    "max_pending_devices",
    "max_sessions_per_user",
    "max_sessions_per_device",
    "audit_retention_days",
    "audit_signing_key",
    "audit_checkpoint_interval_secs",
    "audit_checkpoint_file",
    "audit_checkpoint_syslog",
    "record_input",
    "record_sessions",
    "recording_retention_days",
    "device_reported_tags",
    "database_url",
    "nats_url",
    "shutdown_spread_secs",
    "replica_timeout_secs",
    "terminal_grace_period_secs",
    "request_deadline_secs",
    "http_idle_timeout_secs",
    "max_connections",
    "max_connections_per_address",
    "agents_dir",
    "log_format",
    "metrics_token_file",
];

/// Where the packages put the agent binaries the hub serves.
pub const DEFAULT_AGENTS_DIR: &str = "/usr/lib/tether/agents";

impl HubConfig {
    /// Reads the file (if any), then the environment. An environment value takes the type of
    /// its field (see [`crate::config::values`]): string settings stay strings, whatever they
    /// look like.
    pub fn load(file: Option<&std::path::Path>) -> anyhow::Result<HubConfig> {
        let table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading configuration {}", path.display()))?;
                toml::from_str::<toml::Table>(&text)
                    .with_context(|| format!("parsing configuration {}", path.display()))?
            }
            None => toml::Table::new(),
        };
        let mut values: BTreeMap<String, Source> = table
            .into_iter()
            .map(|(key, value)| (key, Source::File(value)))
            .collect();
        for key in KEYS {
            let variable = format!("TETHER_HUB_{}", key.to_ascii_uppercase());
            if let Ok(text) = std::env::var(&variable) {
                values.insert((*key).to_owned(), Source::Environment { variable, text });
            }
        }
        values::deserialize(values).context("invalid hub configuration")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_file_values() {
        let dir = std::env::temp_dir().join(format!("tether-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("hub.toml");
        std::fs::write(
            &path,
            "listen = \"0.0.0.0:443\"\ndevice_token_lifetime_secs = 60\n",
        )
        .unwrap();
        let config = HubConfig::load(Some(&path)).unwrap();
        assert_eq!(config.listen.port(), 443);
        assert_eq!(config.device_token_lifetime_secs, 60);
        assert_eq!(config.keepalive_interval_secs, 100);
        std::fs::write(&path, "no_such_key = 1\n").unwrap();
        assert!(HubConfig::load(Some(&path)).is_err());
    }
}
