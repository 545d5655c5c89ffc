//! `tether-hub`: the server devices dial into and operators connect through.

mod access_api;
mod audit;
mod audit_api;
mod auth;
mod checkpoints;
mod config;
mod config_values;
mod connection_limits;
mod demo;
mod detached_api;
mod device_auth;
mod device_connection;
mod device_key;
mod file_api;
mod file_descriptors;
mod file_download;
mod http_error;
mod install;
mod install_tokens;
mod login_throttle;
mod management;
mod open_terminals;
mod passwords;
mod recording;
mod refusal_audit;
mod relay_audit;
mod roles;
mod roles_api;
mod router;
mod secret_box;
mod secrets;
mod server;
mod session_audit;
mod session_limits;
mod sessions_api;
mod state;
mod store;
mod store_access;
mod store_audit_anchor;
mod store_devices;
mod store_install_tokens;
mod store_terminals;
#[cfg(test)]
mod store_tests;
mod store_tokens;
mod throttle;
mod tokens;
mod two_factor;
mod two_factor_api;
mod user_session;
mod users_api;
mod web_assets;
mod web_session;

use std::{io::Write as _, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::{config::HubConfig, router::Router, state::AppState, store::Store};

#[derive(Parser)]
#[command(
    name = "tether-hub",
    version,
    about = "The Tether hub: devices dial in, operators connect through it"
)]
struct Arguments {
    /// Where the database, TLS certificate and signing key live.
    #[arg(long, global = true, env = "TETHER_HUB_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// TOML configuration file (see docs/configuration.md).
    #[arg(long, global = true, env = "TETHER_HUB_CONFIG")]
    config: Option<PathBuf>,
    /// Database URL: `postgres://...` for replicas sharing PostgreSQL (default: SQLite in the
    /// data directory). Also `database_url` in the file or TETHER_HUB_DATABASE_URL.
    #[arg(long, global = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub.
    Serve(ServeOptions),
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Run a hub on embedded defaults plus a local demo device, on loopback.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
    },
}

#[derive(clap::Args, Default)]
pub struct ServeOptions {
    /// Address to listen on (default 127.0.0.1:8443).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// PEM certificate chain (with --tls-key); default: a self-signed certificate.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Devices presenting this key are accepted on first contact.
    #[arg(long, env = "TETHER_HUB_PROVISIONING_KEY", hide_env_values = true)]
    provisioning_key: Option<String>,
    /// NATS server for routing between replicas (`nats://host:4222`); default: in-process.
    #[arg(long)]
    nats_url: Option<String>,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user, or set the password (and role) of an existing one.
    Add {
        name: String,
        /// The built-in admin role on every device (same as `--role admin`).
        #[arg(long, conflicts_with = "role")]
        admin: bool,
        /// The user's role (admin, operator, auditor, or a custom role). Without one, a new user
        /// can log in but reach nothing (deny by default).
        #[arg(long)]
        role: Option<String>,
        /// Where the role applies: `tag:NAME` or a device id; repeat for several (default: every
        /// device).
        #[arg(long = "group", requires = "role")]
        groups: Vec<String>,
        /// Read the password from standard input (required: passwords never go on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

fn default_data_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/tether-hub");
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("tether-hub")
}

fn main() -> anyhow::Result<()> {
    // Everything the hub creates (database and its -wal/-shm files, recordings, keys) is its
    // own: private from the first byte, whatever the caller's umask.
    // SAFETY: umask only sets the process's file-creation mask; it cannot fail.
    unsafe { libc::umask(0o077) };
    let arguments = Arguments::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TETHER_HUB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // The demo keeps its state apart from a real hub's, in the current directory.
    let data_dir = match (&arguments.data_dir, &arguments.command) {
        (Some(dir), _) => dir.clone(),
        (None, Command::Demo { .. }) => PathBuf::from("tether-demo"),
        (None, _) => default_data_dir(),
    };
    let mut config = HubConfig::load(arguments.config.as_deref())?;
    if arguments.database_url.is_some() {
        config.database_url = arguments.database_url;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match arguments.command {
            Command::Serve(options) => serve(data_dir, config, options, None).await,
            Command::User {
                command:
                    UserCommand::Add {
                        name,
                        admin,
                        role,
                        groups,
                        ..
                    },
            } => {
                let role = if admin { Some("admin".to_owned()) } else { role };
                add_user(&data_dir, &config, &name, role, &groups).await
            }
            Command::Demo { listen } => demo::run(data_dir, config, listen).await,
        }
    })
}

async fn open_store(data_dir: &std::path::Path, config: &HubConfig) -> anyhow::Result<Store> {
    secrets::secure_data_dir(data_dir)?;
    Store::open(config.database_url.as_deref(), &data_dir.join("hub.db")).await
}

async fn add_user(
    data_dir: &std::path::Path,
    config: &HubConfig,
    name: &str,
    role: Option<String>,
    groups: &[String],
) -> anyhow::Result<()> {
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(!password.is_empty(), "the password is empty");
    let store = open_store(data_dir, config).await?;
    let grants = match &role {
        Some(role) => {
            let wanted = roles_api::role_on_groups(role, groups);
            Some(
                roles_api::validate_grants(&store, &wanted)
                    .await
                    .map_err(|error| anyhow::anyhow!(error.message))?,
            )
        }
        None => None,
    };
    let hash = passwords::hash(password)?;
    let admin = role.as_deref() == Some("admin") && groups.is_empty();
    let created = store.upsert_user(name, &hash, admin).await?;
    let user = store.user_by_name(name).await?.context("the user vanished")?;
    if let Some(grants) = &grants {
        store.set_role_grants(&user.id, grants).await?;
    }
    let held = roles_api::describe_grants(&store.role_grants(&user.id).await?, user.admin || admin);
    println!(
        "{} user {name} ({held})",
        if created { "created" } else { "updated" }
    );
    Ok(())
}

/// What `serve` reports once it listens (used by `demo`).
pub struct Listening {
    pub url: String,
    pub certificate: PathBuf,
}

pub async fn serve(
    data_dir: PathBuf,
    mut config: HubConfig,
    options: ServeOptions,
    ready: Option<tokio::sync::oneshot::Sender<Listening>>,
) -> anyhow::Result<()> {
    if let Some(listen) = options.listen {
        config.listen = listen;
    }
    if options.tls_cert.is_some() {
        config.tls_cert = options.tls_cert;
        config.tls_key = options.tls_key;
    }
    if options.provisioning_key.is_some() {
        config.provisioning_key = options.provisioning_key;
    }
    if options.nats_url.is_some() {
        config.nats_url = options.nats_url;
    }
    // Before anything is opened: the connection cap is derived from the limit.
    let open_file_limit = file_descriptors::raise_open_file_limit();
    let store = open_store(&data_dir, &config).await?;
    // Operators attached when the previous process ended are gone: their sessions wait for them.
    store.detach_all_resumable_sessions(store::now_millis()).await?;
    let tls = secrets::tls_files(&data_dir, config.tls_cert.as_deref(), config.tls_key.as_deref())?;
    let acceptor = server::tls_acceptor(&tls)?;
    let signing_key = secrets::signing_key(&data_dir)?;
    let audit_key_path = config
        .audit_signing_key
        .clone()
        .unwrap_or_else(|| data_dir.join("audit-signing.key"));
    let audit_key = checkpoints::signing_key(&audit_key_path, &signing_key)?;
    let secret_box = secret_box::SecretBox::load_or_create(&data_dir)?;
    two_factor_api::seal_stored_secrets(&store, &secret_box, &data_dir.join(secret_box::KEY_FILE)).await?;
    if store.count_users().await? == 0 && ready.is_none() {
        let password = passwords::generate();
        store
            .upsert_user("admin", &passwords::hash(&password)?, true)
            .await?;
        println!("created the first administrator: user admin, password {password} (shown once)");
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let address = listener.local_addr()?;
    let certificate_der = std::fs::read(&tls.certificate)?;
    let fingerprint =
        <rustls::pki_types::CertificateDer as rustls::pki_types::pem::PemObject>::pem_slice_iter(
            &certificate_der,
        )
        .next()
        .and_then(Result::ok)
        .map(|der| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(der.as_ref())))
        .unwrap_or_default();
    let url = format!("https://{address}");
    println!("listening on {url}");
    println!("certificate: {}", tls.certificate.display());
    println!("fingerprint: sha256:{fingerprint}");
    std::io::stdout().flush()?;

    let router = match &config.nats_url {
        Some(url) => Router::with_nats(url).await?,
        None => Arc::new(Router::new()),
    };
    let checkpointer = Arc::new(checkpoints::Checkpointer::new(audit_key, &config));
    tracing::info!("audit signing key: ed25519:{}", checkpointer.public_key());
    let installer = install::Installer::new(&tls.certificate, config.agents_dir.clone())?;
    let state = AppState {
        installer: Arc::new(installer),
        login_throttle: Arc::new(login_throttle::LoginThrottle::new(&config)),
        enrolment_limits: Arc::new(device_auth::EnrolmentLimits::new(&config)),
        session_limits: Arc::new(session_limits::SessionLimits::new(&config)),
        config: Arc::new(config),
        store: store.clone(),
        router,
        tokens: Arc::new(tokens::TokenSigner::new(signing_key)),
        audit_chain: Arc::new(tokio::sync::Mutex::new(())),
        recordings_dir: data_dir.join("recordings"),
        live: Arc::new(recording::LiveSessions::default()),
        revocations: tokio::sync::broadcast::channel(64).0,
        checkpoints: checkpointer.clone(),
        replica_id: open_terminals::replica_id(&data_dir)?.into(),
        secret_box: Arc::new(secret_box),
    };
    revoke_sleeping_tokens(&state).await?;
    // Terminals this hub's previous run left open (SIGKILL, power loss) get their close event.
    let interrupted = open_terminals::close_interrupted(&state).await?;
    if interrupted > 0 {
        tracing::info!("closed {interrupted} terminal(s) interrupted by the previous stop of the hub");
    }
    // With a shared database, other replicas' sessions are live: only a lone hub may close them.
    if store.backend() == store::Backend::Sqlite {
        store.close_abandoned_terminal_sessions().await?;
    }
    if let Some(bus) = state.router.bus() {
        bus.relay_revocations(state.revocations.clone()).await?;
        router::live_watch::serve(bus.clone(), state.live.clone()).await?;
    }
    tokio::spawn(maintenance(state.clone()));
    tokio::spawn(checkpoints::run(state.clone()));
    tokio::spawn(access_api::expire_on_time(state.clone()));
    if let Some(ready) = ready {
        let _ = ready.send(Listening {
            url,
            certificate: tls.certificate.clone(),
        });
    }
    let router = state.router.clone();
    let checkpoint_store = state.store.clone();
    let shutdown_spread_secs = state.config.shutdown_spread_secs;
    let connections = connection_settings(&state.config, open_file_limit);
    server::serve(
        listener,
        acceptor,
        server::routes(state),
        connections,
        shutdown_signal(),
    )
    .await?;
    tracing::info!("shutting down: closing device connections");
    let spread = Duration::from_secs(shutdown_spread_secs);
    router.kick_all("the hub is shutting down", spread).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The last word on the chain: a verifier holding it sees anything done after this process.
    checkpoints::log_failure(checkpointer.checkpoint(&checkpoint_store, false).await);
    Ok(())
}

/// Tokens of accounts disabled by an older hub only slept behind the `disabled` flag: they are
/// revoked now, as disabling does today (audited).
async fn revoke_sleeping_tokens(state: &AppState) -> anyhow::Result<()> {
    let revoked = state.store.revoke_tokens_of_disabled_users().await?;
    if revoked > 0 {
        tracing::info!("revoked {revoked} access tokens of disabled accounts");
        let event = audit::NewEvent::new(
            audit::Actor::system(),
            "token.revoke",
            audit::Object::none(),
            audit::Outcome::Success,
        )
        .details(serde_json::json!({ "revoked": revoked, "reason": "the account is disabled" }));
        audit::record(state, event)
            .await
            .map_err(|error| anyhow::anyhow!(error.message))?;
    }
    Ok(())
}

/// The accept loop's deadlines and caps, from the configuration and the open-file limit.
fn connection_settings(config: &HubConfig, open_file_limit: u64) -> server::ConnectionSettings {
    let max_total = file_descriptors::max_connections(config.max_connections, open_file_limit);
    let max_per_address = config.max_connections_per_address.max(1);
    tracing::info!(
        "accepting at most {max_total} connections ({max_per_address} per client address) \
         with an open-file limit of {open_file_limit}"
    );
    server::ConnectionSettings {
        request_deadline: Duration::from_secs(config.request_deadline_secs.max(1)),
        idle_timeout: Duration::from_secs(config.http_idle_timeout_secs.max(1)),
        limits: connection_limits::ConnectionLimits::new(max_total, max_per_address),
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

/// Periodic housekeeping: expired login sessions, audit retention.
async fn maintenance(state: AppState) {
    let mut ticker = tokio::time::interval(Duration::from_secs(600));
    loop {
        ticker.tick().await;
        if let Err(error) = state.store.delete_expired_sessions().await {
            tracing::warn!("deleting expired sessions: {error:#}");
        }
        let recording_days = state.config.recording_retention_days;
        if recording_days > 0 {
            let before = store::now_millis() - (recording_days as i64) * 86_400_000;
            match recording::prune(&state.store, &state.recordings_dir, before).await {
                Ok(0) => {}
                Ok(pruned) => {
                    tracing::info!(
                        "recording retention: deleted {pruned} recordings older than {recording_days} days"
                    );
                    let event = audit::NewEvent::new(
                        audit::Actor::system(),
                        "recording.prune",
                        audit::Object::none(),
                        audit::Outcome::Success,
                    )
                    .details(serde_json::json!({ "deleted": pruned, "retention_days": recording_days }));
                    let _ = audit::record(&state, event).await;
                }
                Err(error) => tracing::warn!("recording retention: {error:#}"),
            }
        }
        let days = state.config.audit_retention_days;
        if days == 0 {
            continue;
        }
        let before = store::now_millis() - (days as i64) * 86_400_000;
        let attest = |seq, hash: &str| state.checkpoints.attest_anchor(seq, hash);
        match state.store.prune_audit(before, attest).await {
            Ok(0) => {}
            Ok(pruned) => {
                tracing::info!("audit retention: deleted {pruned} events older than {days} days");
                let event = audit::NewEvent::new(
                    audit::Actor::system(),
                    "audit.prune",
                    audit::Object::none(),
                    audit::Outcome::Success,
                )
                .details(serde_json::json!({ "deleted": pruned, "retention_days": days }));
                let _ = audit::record(&state, event).await;
            }
            Err(error) => tracing::warn!("audit retention: {error:#}"),
        }
    }
}
