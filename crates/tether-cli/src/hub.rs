//! Which hub to talk to, what to trust, and which token to present: the `--hub`/`--ca` flags
//! (or `TETHER_HUB`/`TETHER_CA`), `TETHER_TOKEN`, and what `tether login` stored as the profile
//! chosen (`--profile`/`TETHER_PROFILE`, else the current one).

use std::{path::PathBuf, sync::Arc};

use anyhow::{Context, Result, bail};
use tether_net::{HubUrl, TrustOptions, client_config};

use crate::config::{self, Credentials};

/// The global options as given on the command line or in the environment.
#[derive(Debug, Clone, Default)]
pub struct HubOptions {
    pub hub: Option<String>,
    pub ca: Option<PathBuf>,
    /// The profile asked for; `None` means the current one.
    pub profile: Option<String>,
}

impl HubOptions {
    /// The configuration directory and the name of the profile this command uses.
    pub fn profile(&self) -> Result<(PathBuf, String)> {
        let dir = config::config_dir()?;
        let profile = config::selected_profile(&dir, self.profile.as_deref())?;
        Ok((dir, profile))
    }
}

/// A hub address with the TLS trust to reach it.
#[derive(Clone)]
pub struct Hub {
    pub url: HubUrl,
    /// The PEM file trusted, as an absolute path (stored at login).
    pub ca: Option<String>,
    /// One TLS configuration for both HTTPS and WebSocket, so both trust the same thing.
    pub tls: Arc<rustls::ClientConfig>,
}

/// A hub plus the bearer token for it.
#[derive(Clone)]
pub struct Authenticated {
    pub hub: Hub,
    pub token: String,
}

impl Hub {
    /// Resolves the hub from the options, falling back to the stored login. The stored CA file
    /// is only reused for the hub it was stored with.
    pub fn resolve(options: &HubOptions, stored: Option<&Credentials>) -> Result<Hub> {
        let url = match (&options.hub, stored) {
            (Some(text), _) => HubUrl::parse(text)?,
            (None, Some(credentials)) => HubUrl::parse(&credentials.hub)
                .context("the stored hub address is invalid; log in again with `tether login`")?,
            (None, None) => bail!("no hub: pass --hub or set TETHER_HUB (or log in first)"),
        };
        let ca = match (&options.ca, stored) {
            (Some(path), _) => Some(absolute(path)?),
            (None, Some(credentials)) if credentials.hub == url.to_string() => credentials.ca.clone(),
            (None, _) => None,
        };
        let trust = TrustOptions {
            ca_file: ca.clone(),
            fingerprint: None,
        };
        let tls = client_config(&trust)?;
        Ok(Hub { url, ca, tls })
    }
}

fn absolute(path: &std::path::Path) -> Result<String> {
    let absolute =
        std::path::absolute(path).with_context(|| format!("cannot resolve the path {}", path.display()))?;
    absolute
        .into_os_string()
        .into_string()
        .map_err(|_| anyhow::anyhow!("the CA path {} is not valid UTF-8", path.display()))
}

/// The hub and token for a command that needs a login: `TETHER_TOKEN` if set, else the stored
/// token — but only for the hub it was issued by, so a `--hub` pointing elsewhere never
/// receives it.
pub fn authenticated(options: &HubOptions) -> Result<Authenticated> {
    let (dir, profile) = options.profile()?;
    let stored = config::load(&dir, &profile)?;
    let hub = Hub::resolve(options, stored.as_ref())?;
    if let Some(token) = std::env::var("TETHER_TOKEN").ok().filter(|t| !t.is_empty()) {
        return Ok(Authenticated { hub, token });
    }
    let Some(credentials) = stored.filter(|c| c.hub == hub.url.to_string()) else {
        bail!(
            "not logged in to {}: run `tether login USER` (or set TETHER_TOKEN)",
            hub.url
        );
    };
    if credentials.expires_at <= tether_proto::clock::unix_seconds() {
        bail!(
            "your login to {} as {} has expired; log in again with `tether login`",
            hub.url,
            credentials.user
        );
    }
    Ok(Authenticated {
        hub,
        token: credentials.token,
    })
}
