//! `tether-hub` as a library: the layers of the hub and [`serve`], which runs one.
//!
//! Layers, lowest first; each may use the ones below it, never one above (a test checks):
//! - [`metrics`]: the Prometheus metrics every layer counts into;
//! - [`config`]: the configuration, plain serde structs with documented defaults;
//! - [`domain`]: rules and data shapes, with no HTTP, SQL or network;
//! - [`store`]: every SQL query (sqlx), one file per table family;
//! - [`relay`]: device and user legs, the router between them (in process or over NATS), the
//!   terminal recorder;
//! - [`service`]: use cases over the store and the relay;
//! - [`http`]: axum routes, extractors, error mapping and the TLS accept loop.

pub mod config;
pub mod demo;
pub mod domain;
pub mod http;
pub mod metrics;
pub mod relay;
pub mod service;
pub mod store;

use std::{io::Write as _, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;

use crate::{
    config::HubConfig, domain::audit, domain::enrolment_limits::EnrolmentLimits, domain::login_throttle,
    domain::passwords, domain::session_limits, domain::tokens, http::connection_limits,
    http::file_descriptors, http::installer::Installer, http::server, http::state::AppState,
    relay::open_terminals, relay::recording, relay::replicas, relay::router, relay::router::Router,
    service::checkpoints, service::data_lock, service::secret_box, service::secrets, store::Store,
};

#[derive(clap::Args, Default)]
pub struct ServeOptions {
    /// Address to listen on (default 127.0.0.1:8443).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain (with --tls-key); default: a self-signed certificate.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Devices presenting this key are accepted on first contact.
    #[arg(long, env = "TETHER_HUB_PROVISIONING_KEY", hide_env_values = true)]
    pub provisioning_key: Option<String>,
    /// NATS server for routing between replicas (`nats://host:4222`); default: in-process.
    #[arg(long)]
    pub nats_url: Option<String>,
}

pub async fn open_store(data_dir: &std::path::Path, config: &HubConfig) -> anyhow::Result<Store> {
    secrets::secure_data_dir(data_dir)?;
    Store::open(config.database_url.as_deref(), &data_dir.join("hub.db")).await
}

pub async fn add_user(
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
            let wanted = crate::service::roles::role_on_groups(role, groups);
            Some(
                crate::service::roles::validate_grants(&store, &wanted)
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
    let held =
        crate::service::roles::describe_grants(&store.role_grants(&user.id).await?, user.admin || admin);
    println!(
        "{} user {name} ({held})",
        if created { "created" } else { "updated" }
    );
    Ok(())
}

/// `tether-hub backup FILE`: a consistent copy of the live SQLite database and the key files, in
/// one archive (mode 0600).
pub async fn backup(config: &HubConfig, output: &std::path::Path) -> anyhow::Result<()> {
    let manifest = service::backup::backup(config, output).await?;
    let bytes: u64 = manifest.files.iter().map(|file| file.bytes).sum();
    println!(
        "wrote {} ({} files, {bytes} bytes): {}",
        output.display(),
        manifest.files.len(),
        manifest
            .files
            .iter()
            .map(|file| file.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if config.tls_cert.is_some() {
        println!("the configured TLS certificate and key (tls_cert, tls_key) are not in it: keep them too");
    }
    Ok(())
}

/// `tether-hub restore FILE`: a backup into the (new) data directory.
pub async fn restore(config: &HubConfig, input: &std::path::Path) -> anyhow::Result<()> {
    let manifest = service::restore::restore(config, input).await?;
    println!(
        "restored {} files of a backup made by tether-hub {} into {}; start the hub on it",
        manifest.files.len(),
        manifest.hub_version,
        config.data_dir.display()
    );
    Ok(())
}

/// What `serve` reports once it listens (used by `demo`).
pub struct Listening {
    pub url: String,
    pub certificate: PathBuf,
}

impl ServeOptions {
    /// Command-line flags win over the file and the environment.
    pub fn apply(self, config: &mut HubConfig) {
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if self.tls_cert.is_some() {
            config.tls_cert = self.tls_cert;
            config.tls_key = self.tls_key;
        }
        if self.provisioning_key.is_some() {
            config.provisioning_key = self.provisioning_key;
        }
        if self.nats_url.is_some() {
            config.nats_url = self.nats_url;
        }
    }
}

/// `tether-hub serve`: binds `config.listen` and serves until SIGINT or SIGTERM.
pub async fn run(mut config: HubConfig, options: ServeOptions) -> anyhow::Result<()> {
    options.apply(&mut config);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    serve(config, listener).await
}

/// Runs a hub on `listener` (its data in `config.data_dir`) until SIGINT or SIGTERM.
pub async fn serve(config: HubConfig, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    serve_until(config, listener, shutdown_signal(), None).await
}

/// [`serve`] until `shutdown` resolves; `ready` hears once the hub accepts connections (and
/// means that the caller creates the users: no first administrator is made).
pub async fn serve_until(
    config: HubConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ready: Option<tokio::sync::oneshot::Sender<Listening>>,
) -> anyhow::Result<()> {
    let data_dir = config.data_dir.clone();
    // Before anything is opened: the connection cap is derived from the limit.
    let open_file_limit = file_descriptors::raise_open_file_limit();
    secrets::secure_data_dir(&data_dir)?;
    // Held while this hub runs: a second hub or a restore on the directory is refused.
    let _data_lock = data_lock::DataDirLock::acquire(&data_dir)?;
    let store = open_store(&data_dir, &config).await?;
    // Operators attached when the previous process ended are gone: their sessions wait for them.
    store
        .detach_all_resumable_sessions(tether_proto::clock::unix_millis())
        .await?;
    let tls = secrets::tls_files(&data_dir, config.tls_cert.as_deref(), config.tls_key.as_deref())?;
    let acceptor = server::tls_acceptor(&tls)?;
    let signing_key = secrets::signing_key(&data_dir)?;
    let audit_key_path = config
        .audit_signing_key
        .clone()
        .unwrap_or_else(|| data_dir.join("audit-signing.key"));
    let audit_key = checkpoints::signing_key(&audit_key_path, &signing_key)?;
    let secret_box = secret_box::SecretBox::load_or_create(&data_dir)?;
    crate::service::two_factor::seal_stored_secrets(
        &store,
        &secret_box,
        &data_dir.join(secret_box::KEY_FILE),
    )
    .await?;
    if ready.is_none() && store.count_users().await? == 0 {
        let password = passwords::generate();
        // The count above only spares a hash at every start; this decides, in one transaction.
        if store
            .create_first_administrator(&passwords::hash(&password)?)
            .await?
        {
            println!("created the first administrator: user admin, password {password} (shown once)");
        }
    }
    let address = listener.local_addr()?;
    let certificate_pem = std::fs::read(&tls.certificate)?;
    let leaf = <rustls::pki_types::CertificateDer as rustls::pki_types::pem::PemObject>::pem_slice_iter(
        &certificate_pem,
    )
    .next()
    .and_then(Result::ok);
    let fingerprint = leaf
        .as_ref()
        .map(|der| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(der.as_ref())))
        .unwrap_or_default();
    if let Some(Ok((_, certificate))) = leaf.as_ref().map(|der| x509_parser::parse_x509_certificate(der)) {
        let expiry = certificate.validity().not_after.timestamp();
        crate::metrics::metrics().certificate_expiry.set(expiry);
    }
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
    let installer = Installer::new(&tls.certificate, config.agents_dir.clone())?;
    let relay = relay::Relay {
        config: Arc::new(config),
        store: store.clone(),
        router,
        recordings_dir: data_dir.join("recordings"),
        live: Arc::new(recording::LiveSessions::default()),
        revocations: tokio::sync::broadcast::channel(64).0,
        replica_id: open_terminals::replica_id(&data_dir)?.into(),
    };
    let hub = Arc::new(service::Hub {
        login_throttle: Arc::new(login_throttle::LoginThrottle::new(&relay.config)),
        enrolment_limits: Arc::new(EnrolmentLimits::new(&relay.config)),
        session_limits: Arc::new(session_limits::SessionLimits::new(&relay.config)),
        tokens: Arc::new(tokens::TokenSigner::new(signing_key)),
        checkpoints: checkpointer.clone(),
        secret_box: Arc::new(secret_box),
        relay,
    });
    let metrics_token_path =
        (hub.config.metrics_token_file.clone()).unwrap_or_else(|| data_dir.join("metrics.token"));
    let state = AppState {
        hub,
        installer: Arc::new(installer),
        metrics_token: secrets::metrics_token(&metrics_token_path)?.into(),
    };
    revoke_sleeping_tokens(&state).await?;
    let shared = store.backend() == store::Backend::Postgres;
    if shared {
        // Alive before anything else: the others must not take this replica for dead.
        replicas::beat(&state).await?;
    }
    // Terminals this hub's previous run left open (SIGKILL, power loss) get their close event.
    let interrupted = open_terminals::close_interrupted(&state).await?;
    if interrupted > 0 {
        tracing::info!("closed {interrupted} terminal(s) interrupted by the previous stop of the hub");
    }
    if shared {
        // And those of replicas that died: by heartbeat, never those of a live one.
        let closed = replicas::close_terminals_of_dead_replicas(&state).await?;
        if closed > 0 {
            tracing::info!("closed {closed} terminal(s) left open by stopped replicas");
        }
        tokio::spawn(replicas::watch(state.hub.relay.clone()));
    } else {
        // A lone hub: every unfinished session row is its own.
        store.close_abandoned_terminal_sessions().await?;
    }
    if let Some(bus) = state.router.bus() {
        bus.relay_revocations(state.revocations.clone()).await?;
        router::live_watch::serve(bus.clone(), state.live.clone()).await?;
    }
    tokio::spawn(maintenance(state.hub.clone()));
    tokio::spawn(checkpoints::run(state.hub.clone()));
    tokio::spawn(crate::service::access::expire_on_time(state.hub.clone()));
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
    tokio::spawn(http::memory_trim::run(connections.limits.clone()));
    notify_systemd_ready();
    server::serve(listener, acceptor, server::routes(state), connections, shutdown).await?;
    tracing::info!("shutting down: closing device connections");
    let spread = Duration::from_secs(shutdown_spread_secs);
    router.kick_all("the hub is shutting down", spread).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The last word on the chain: a verifier holding it sees anything done after this process.
    checkpoints::log_failure(checkpointer.checkpoint(&checkpoint_store, false).await);
    Ok(())
}

/// Tells systemd (a `Type=notify` unit, which sets `NOTIFY_SOCKET`) that the hub is ready: the
/// database is open and migrated and the listener is bound. Elsewhere, nothing.
fn notify_systemd_ready() {
    use std::os::{linux::net::SocketAddrExt as _, unix::net};
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let socket = socket.to_string_lossy().into_owned();
    let address = match socket.strip_prefix('@') {
        Some(name) => net::SocketAddr::from_abstract_name(name.as_bytes()),
        None => net::SocketAddr::from_pathname(&socket),
    };
    let sent = address.and_then(|address| net::UnixDatagram::unbound()?.send_to_addr(b"READY=1", &address));
    if let Err(error) = sent {
        tracing::warn!("cannot tell systemd the hub is ready ({socket}): {error}");
    }
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
        state
            .store
            .record_audit(event)
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
pub(crate) async fn shutdown_signal() {
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
async fn maintenance(state: Arc<service::Hub>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(600));
    loop {
        ticker.tick().await;
        if let Err(error) = state.store.delete_expired_sessions().await {
            tracing::warn!("deleting expired sessions: {error:#}");
        }
        let recording_days = state.config.recording_retention_days;
        if recording_days > 0 {
            let before = tether_proto::clock::unix_millis() - (recording_days as i64) * 86_400_000;
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
                    let _ = state.store.record_audit(event).await;
                }
                Err(error) => tracing::warn!("recording retention: {error:#}"),
            }
        }
        let days = state.config.audit_retention_days;
        if days == 0 {
            continue;
        }
        let before = tether_proto::clock::unix_millis() - (days as i64) * 86_400_000;
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
                let _ = state.store.record_audit(event).await;
            }
            Err(error) => tracing::warn!("audit retention: {error:#}"),
        }
    }
}
