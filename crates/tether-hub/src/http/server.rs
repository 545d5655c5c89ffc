//! The HTTPS server: routes, the TLS accept loop (connection caps and deadlines), and graceful
//! shutdown.

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use anyhow::Context as _;
use axum::{
    Router,
    extract::{ConnectInfo, DefaultBodyLimit},
    routing::{get, post},
};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
use tether_proto::auth;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
};
use tower::ServiceExt as _;

use crate::{
    http::connection_limits::AddressSlot, http::connection_limits::ConnectionLimits,
    http::connection_limits::ConnectionPermit, http::device_auth, http::device_connect, http::error,
    http::install, http::monitoring, http::observe, http::openapi, http::refusal_audit,
    http::state::AppState, http::web_assets, service::secrets::TlsFiles,
};

/// Largest JSON body the API accepts (authentication requests, logins).
const MAX_JSON_BODY: usize = 64 * 1024;

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(monitoring::healthz))
        .route("/readyz", get(monitoring::readyz))
        .route("/metrics", get(monitoring::scrape))
        .route("/install/agent.sh", get(install::script))
        .route("/install/agents/{arch}", get(install::agent_binary))
        .route(auth::AUTH_PATH, post(device_auth::auth_request))
        .route(auth::DEVICE_CONNECT_PATH, get(device_connect::connect))
        // The management API and its OpenAPI description (`http::openapi`).
        .merge(openapi::management_routes())
        .fallback(web_assets::serve)
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            refusal_audit::layer,
        ))
        // Whatever answered an error in plain text, the client gets the JSON shape.
        .layer(axum::middleware::from_fn(error::json_errors))
        // Outermost: the request id, its log span and the request metrics.
        .layer(axum::middleware::from_fn(observe::layer))
        .with_state(state)
}

pub fn tls_acceptor(files: &TlsFiles) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(&files.certificate)
        .with_context(|| format!("reading {}", files.certificate.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", files.certificate.display()))?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("reading {}", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("loading the TLS certificate and key")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // TLS 1.3 resumption with stateless tickets: a device on a flaky link reconnects without
    // the certificate chain and key exchange signature, and the hub keeps nothing per client (a
    // stateful cache of a few hundred entries would forget a fleet's devices). The ticket keys
    // live in memory and rotate every 6 hours: a restarted hub, or another replica, makes the
    // next handshake a full one. One ticket per connection: a device resumes one connection.
    config.ticketer = rustls::crypto::ring::Ticketer::new().context("creating the TLS ticket keys")?;
    config.send_tls13_tickets = 1;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// How the accept loop treats connections (from the configuration).
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// From accept to the headers of the first request (TLS handshake included).
    pub request_deadline: Duration,
    /// Idle time between two requests of a keep-alive connection, and time to send a later
    /// request's headers.
    pub idle_timeout: Duration,
    pub limits: Arc<ConnectionLimits>,
}

/// Accepts TLS connections and serves `app` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    settings: ConnectionSettings,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (tcp, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // The connection caps keep a reserve of file descriptors, so this is not
                    // expected; it must not end the server either.
                    tracing::warn!("accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return Ok(()),
        };
        // Refused connections are closed before any TLS work: they cost one accept.
        let (permit, address_slot) = match settings.limits.admit(client.ip()) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                settings.limits.log_refusal(client.ip(), refusal);
                drop(tcp);
                continue;
            }
        };
        tokio::spawn(serve_connection(
            tcp,
            client,
            permit,
            address_slot,
            acceptor.clone(),
            app.clone(),
            settings.clone(),
        ));
    }
}

/// Serves one accepted connection: TLS, then HTTP/1.1 (with WebSocket upgrades).
async fn serve_connection(
    tcp: TcpStream,
    client: SocketAddr,
    permit: ConnectionPermit,
    // Held while the connection speaks HTTP: hyper's future ends when it closes or upgrades.
    _address_slot: AddressSlot,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    settings: ConnectionSettings,
) {
    let deadline = tokio::time::Instant::now() + settings.request_deadline;
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => return tracing::debug!("TLS handshake with {client} failed: {error}"),
        Err(_) => return tracing::debug!("TLS handshake with {client} timed out"),
    };
    let first_request = Arc::new(AtomicBool::new(false));
    let seen = first_request.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        seen.store(true, Ordering::Relaxed);
        request.extensions_mut().insert(ConnectInfo::<SocketAddr>(client));
        app.clone().oneshot(request)
    });
    // HTTP/1.1 only (the only protocol offered by ALPN): hyper's header read timeout, which
    // also runs while a keep-alive connection waits for its next request, is HTTP/1's.
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.idle_timeout);
    let stream = CountedStream {
        inner: tls,
        _permit: permit,
        linger: Linger::Open,
    };
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = &mut connection => result,
        _ = tokio::time::sleep_until(deadline) => {
            if !first_request.load(Ordering::Relaxed) {
                // Dropping the connection closes its socket.
                return tracing::debug!(
                    "closed the connection from {client}: no complete request within {:?}",
                    settings.request_deadline
                );
            }
            (&mut connection).await
        }
    };
    if let Err(error) = result {
        tracing::debug!("connection from {client} ended: {error}");
    }
}

/// A client's stream with its place in the connection count, which it keeps for as long as the
/// socket is open, also after an upgrade to a WebSocket (hyper hands this stream over).
struct CountedStream<S> {
    inner: S,
    _permit: ConnectionPermit,
    /// Once the hub has closed its side, what the client still sends is read and dropped for a
    /// moment (a "lingering close"). Closing a socket with unread bytes resets the connection,
    /// and a reset can reach the client before it reads the answer: a refused upload's 403 or a
    /// 413 would then show up as "connection reset" or "broken pipe" instead of the error.
    linger: Linger,
}

/// The state of a lingering close.
enum Linger {
    Open,
    Draining {
        deadline: Pin<Box<tokio::time::Sleep>>,
        budget: usize,
    },
}

/// How long, and how many bytes, a closed connection keeps reading what its client still sends.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 4 << 20;

impl<S: AsyncRead + Unpin> AsyncRead for CountedStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(context, buffer)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for CountedStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(context, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(context, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if let Linger::Open = this.linger {
            // Our side first (TLS close_notify, then FIN): the client sees the end of the answer.
            std::task::ready!(Pin::new(&mut this.inner).poll_shutdown(context))?;
            this.linger = Linger::Draining {
                deadline: Box::pin(tokio::time::sleep(LINGER_TIME)),
                budget: LINGER_BYTES,
            };
        }
        let Linger::Draining { deadline, budget } = &mut this.linger else {
            unreachable!("set just above");
        };
        let mut scratch = [0u8; 8192];
        loop {
            if *budget == 0 || deadline.as_mut().poll(context).is_ready() {
                return Poll::Ready(Ok(()));
            }
            let mut buffer = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.inner).poll_read(context, &mut buffer) {
                // The client closed too, or the connection failed: nothing more to wait for.
                Poll::Ready(Ok(())) if buffer.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => *budget = budget.saturating_sub(buffer.filled().len()),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
