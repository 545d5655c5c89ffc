//! `tether-agent`: the Tether device agent. It keeps one WebSocket open to a hub and runs the
//! shells that operators ask for, speaking Mender's remote-terminal protocol plus Tether's
//! negotiated extensions (see `docs/protocol.md`).
//!
//! This file reads the command line, sets up logging and the device identity, and runs the
//! connection loop on a single-threaded runtime until SIGTERM or SIGINT.

mod account;
mod args;
mod auth;
mod backoff;
mod config;
mod connection;
mod consent;
mod file_transfer;
mod identity;
mod port_forward;
mod sessions;
mod settings;
mod shell;
mod state;

use std::process::ExitCode;

use anyhow::Context as _;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::watch,
};

use crate::{args::Command, settings::Settings};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(Command::Run(args)) => args,
        Ok(Command::Answer { sid, approve, args }) => {
            return local(|| {
                consent::answer(&Settings::data_dir(args)?, &sid, approve)?;
                println!("session {sid} {}", if approve { "approved" } else { "denied" });
                Ok(())
            });
        }
        Ok(Command::Pending(args)) => {
            return local(|| {
                for request in consent::pending(&Settings::data_dir(args)?)? {
                    println!("{}", request.trim().replace('\n', ", "));
                }
                Ok(())
            });
        }
        Ok(Command::Help) => {
            print!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            print!("{}", version_text());
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("tether-agent: {error}");
            return ExitCode::from(2);
        }
    };
    init_logging();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

/// What `--version` prints: the version, the target the binary was built for, and what it can
/// do (every feature is compiled in; the configuration decides which are on).
fn version_text() -> String {
    format!(
        "tether-agent {}\ntarget: {}\nfeatures: terminal, session-survival, file-transfer, \
         port-forward (tcp, udp), consent\nprotocols: 1 (Mender remote terminal), 2 (Tether extensions)\n",
        env!("CARGO_PKG_VERSION"),
        env!("TETHER_AGENT_TARGET"),
    )
}

/// Runs a local command (no hub involved) and turns its outcome into an exit status.
fn local(command: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    match command() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tether-agent: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: args::Args) -> anyhow::Result<()> {
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

/// Logs to stderr; the filter comes from TETHER_AGENT_LOG, else RUST_LOG, else `info`.
fn init_logging() {
    use std::io::IsTerminal as _;
    use tracing_subscriber::{filter::Targets, layer::SubscriberExt as _, util::SubscriberInitExt as _};
    let text = std::env::var("TETHER_AGENT_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let filter = text.parse::<Targets>().unwrap_or_else(|error| {
        eprintln!("tether-agent: ignoring the log filter `{text}`: {error}");
        Targets::new().with_default(tracing::Level::INFO)
    });
    let output = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    tracing_subscriber::registry().with(output).with(filter).init();
}
