//! The Tether device agent: it keeps one WebSocket open to a hub and runs the shells, file
//! transfers and port forwards that operators ask for, speaking Mender's remote-terminal
//! protocol plus Tether's negotiated extensions (see `docs/protocol.md`).
//!
//! `main.rs` parses the command line ([`args`]) and calls [`run`] for the agent itself, or
//! [`answer`] and [`pending`] for the local consent commands; every other module is private.
//!
//! The modules, roughly from the bottom up: `state`, `account`, `backoff`, `identity` and
//! `allow_list` (files, users, retry delays, the device key, forwarding rules); `consent`
//! (local approval of sessions, whose settings `config` embeds); `config`, `args` and
//! `settings` (what the agent may do); `auth` (device tokens); `shell`, `file_transfer` and
//! `port_forward` (the features); `sessions` (the session table routing to them); `connection`
//! (the link to the hub). `layers_tests.rs` fails on an import cycle between them.

mod account;
mod allow_list;
pub mod args;
mod auth;
mod backoff;
mod config;
mod connection;
mod consent;
mod file_transfer;
mod identity;
mod inventory;
mod port_forward;
mod sessions;
mod settings;
mod shell;
mod state;

use anyhow::Context as _;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::watch,
};

use crate::settings::Settings;

/// Runs the agent until SIGTERM or SIGINT: loads the settings and the device key, then keeps
/// the connection to the hub, reconnecting as needed.
pub async fn run(args: args::Args) -> anyhow::Result<()> {
    let settings = Settings::load(args)?;
    state::ensure_private_dir(&settings.data_dir)
        .with_context(|| format!("cannot create the data directory {}", settings.data_dir.display()))?;
    let key = identity::load_or_create_key(&settings.data_dir)?;
    let attributes = identity::attributes(settings.identity.as_ref());
    let id_data = serde_json::to_string(&attributes)?;
    let tls = tether_net::client_config(&settings.trust).context("cannot set up TLS")?;
    let public_key_pem = key.public_key_pem();
    let authenticator = auth::Authenticator::new(
        key,
        public_key_pem,
        id_data.clone(),
        settings.provisioning_key.clone(),
        tls.clone(),
    )?
    .with_enrolment_token(settings.enrolment_token.clone())?;
    if settings.terminal.enabled
        && let Err(problem) = account::shell_account(settings.terminal.user.as_deref())
    {
        tracing::warn!("shells will be refused: {problem}");
    }
    if settings.file_transfer.enabled {
        // Resolved again when serving; checked here so that a bad owner or group stops the start.
        file_transfer::Policy::new(&settings.file_transfer).map_err(anyhow::Error::msg)?;
    }
    tracing::info!(
        "tether-agent {} starting: identity {id_data}, data in {}",
        env!("CARGO_PKG_VERSION"),
        settings.data_dir.display()
    );
    let tokens = auth::TokenStore::load(&settings.data_dir);
    let shutdown = shutdown_signal()?;
    let agent = connection::Agent {
        settings,
        tls,
        authenticator,
        tokens,
    };
    connection::run(agent, shutdown).await;
    Ok(())
}

/// `approve` or `deny`: answers a session waiting for local consent.
pub fn answer(args: args::Args, sid: &str, approve: bool) -> anyhow::Result<()> {
    consent::answer(&Settings::data_dir(args)?, sid, approve)
}

/// `pending`: the sessions waiting for local consent, one text block each.
pub fn pending(args: args::Args) -> anyhow::Result<Vec<String>> {
    consent::pending(&Settings::data_dir(args)?)
}

/// A flag that turns true on SIGTERM or SIGINT.
fn shutdown_signal() -> anyhow::Result<watch::Receiver<bool>> {
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let (sender, receiver) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
        let _ = sender.send(true);
        // Keep the sender alive: a dropped sender would read as "never".
        std::future::pending::<()>().await
    });
    Ok(receiver)
}

#[cfg(test)]
#[path = "layers_tests.rs"]
mod layers_tests;
