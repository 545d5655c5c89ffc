//! The agent's effective settings: the configuration file with the command-line flags applied,
//! hub URLs parsed and the data directory resolved.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use tether_net::{HubUrl, TrustOptions};

use crate::{
    args::Args,
    config::{Config, DEFAULT_CONFIG_PATH, FileTransferConfig, PortForwardConfig, TerminalConfig},
};

#[derive(Debug, Clone)]
pub struct Settings {
    pub hubs: Vec<HubUrl>,
    pub trust: TrustOptions,
    pub data_dir: PathBuf,
    pub provisioning_key: Option<String>,
    pub enrolment_token: Option<String>,
    pub keepalive_interval: Duration,
    pub reconnect_max_delay: Duration,
    pub identity: Option<std::collections::BTreeMap<String, String>>,
    pub terminal: TerminalConfig,
    pub port_forward: PortForwardConfig,
    pub file_transfer: FileTransferConfig,
    pub consent: crate::consent::ConsentConfig,
}

impl Settings {
    /// Reads the configuration file (the one named by `--config`, else the default one if it
    /// exists) and applies the flags.
    pub fn load(args: Args) -> anyhow::Result<Settings> {
        let config = match &args.config {
            Some(path) => Config::load(path)?,
            None if std::path::Path::new(DEFAULT_CONFIG_PATH).exists() => {
                Config::load(DEFAULT_CONFIG_PATH.as_ref())?
            }
            None => Config::default(),
        };
        Settings::resolve(config, args)
    }

    pub fn resolve(config: Config, args: Args) -> anyhow::Result<Settings> {
        let hub_texts = if args.hubs.is_empty() {
            config.hubs
        } else {
            args.hubs
        };
        if hub_texts.is_empty() {
            bail!(
                "no hub configured: pass --hub https://HOST[:PORT] or set `hubs` in the configuration file"
            );
        }
        let hubs = hub_texts
            .iter()
            .map(|text| HubUrl::parse(text).with_context(|| format!("hub `{text}`")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        // A CA given on the command line replaces a pinned fingerprint from the file.
        let (ca_file, fingerprint) = match args.ca_file {
            Some(ca) => (Some(ca), None),
            None => (config.ca_file, config.hub_fingerprint),
        };
        let data_dir = match args.data_dir.or(config.data_dir) {
            Some(dir) => dir,
            None => default_data_dir()?,
        };
        Ok(Settings {
            hubs,
            trust: TrustOptions {
                ca_file: ca_file.map(|path| path.to_string_lossy().into_owned()),
                fingerprint,
            },
            data_dir,
            provisioning_key: args.provisioning_key.or(config.provisioning_key),
            enrolment_token: config.enrolment_token,
            keepalive_interval: Duration::from_secs(config.keepalive_interval_secs),
            reconnect_max_delay: Duration::from_secs(config.reconnect_max_delay_secs),
            identity: config.identity,
            terminal: config.terminal,
            port_forward: config.port_forward,
            file_transfer: config.file_transfer,
            consent: config.consent,
        })
    }

    /// Only the data directory (for local commands such as `tether-agent approve`, which need
    /// no hub).
    pub fn data_dir(args: Args) -> anyhow::Result<PathBuf> {
        let config = match &args.config {
            Some(path) => Config::load(path)?,
            None if std::path::Path::new(DEFAULT_CONFIG_PATH).exists() => {
                Config::load(DEFAULT_CONFIG_PATH.as_ref())?
            }
            None => Config::default(),
        };
        match args.data_dir.or(config.data_dir) {
            Some(dir) => Ok(dir),
            None => default_data_dir(),
        }
    }
}

/// `/var/lib/tether-agent` for root, else `$HOME/.local/share/tether-agent`.
fn default_data_dir() -> anyhow::Result<PathBuf> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return Ok("/var/lib/tether-agent".into());
    }
    match std::env::var_os("HOME").filter(|home| !home.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/tether-agent")),
        None => bail!("HOME is not set: pass --data-dir DIR"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file() {
        let config = Config::parse(
            "hubs = [\"https://file.example\"]\nhub_fingerprint = \"sha256:00\"\n\
             data_dir = \"/file\"\nprovisioning_key = \"file\"",
        )
        .unwrap();
        let args = Args {
            hubs: vec!["https://flag.example:8443".into()],
            ca_file: Some("/ca.pem".into()),
            data_dir: Some("/flag".into()),
            provisioning_key: Some("flag".into()),
            ..Args::default()
        };
        let settings = Settings::resolve(config, args).unwrap();
        assert_eq!(settings.hubs.len(), 1);
        assert_eq!(settings.hubs[0].host, "flag.example");
        assert_eq!(settings.hubs[0].port, 8443);
        assert_eq!(settings.trust.ca_file.as_deref(), Some("/ca.pem"));
        assert_eq!(settings.trust.fingerprint, None);
        assert_eq!(settings.data_dir, PathBuf::from("/flag"));
        assert_eq!(settings.provisioning_key.as_deref(), Some("flag"));
        assert_eq!(settings.keepalive_interval, Duration::from_secs(90));
    }

    #[test]
    fn the_file_applies_without_flags() {
        let config = Config::parse(
            "hubs = [\"https://a\", \"https://b\"]\ndata_dir = \"/file\"\nhub_fingerprint = \"x\"",
        )
        .unwrap();
        let settings = Settings::resolve(config, Args::default()).unwrap();
        assert_eq!(settings.hubs.len(), 2);
        assert_eq!(settings.trust.fingerprint.as_deref(), Some("x"));
        assert_eq!(settings.data_dir, PathBuf::from("/file"));
    }

    #[test]
    fn no_hub_or_a_bad_hub_is_an_error() {
        let error = Settings::resolve(Config::default(), Args::default()).unwrap_err();
        assert!(error.to_string().contains("no hub configured"), "{error}");
        let args = Args {
            hubs: vec!["http://plain".into()],
            ..Args::default()
        };
        assert!(Settings::resolve(Config::default(), args).is_err());
    }
}
