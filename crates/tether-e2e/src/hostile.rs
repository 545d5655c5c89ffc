//! Hostile clients for the connection-level tests and benchmarks: many idle TLS connections from
//! one chosen loopback source address (so that the CLI on 127.0.0.1 counts as another client), and
//! a client that sends its request a byte at a time. Each runs on its own tokio runtime and
//! counts what the hub did to its connections.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpSocket, TcpStream},
};
use tokio_rustls::{TlsConnector, client::TlsStream};

use crate::Hub;

/// Where a hostile client dials: the hub's TLS configuration and port.
#[derive(Clone)]
pub struct Target {
    tls: Arc<rustls::ClientConfig>,
    port: u16,
}

impl Target {
    pub fn of(hub: &Hub) -> Target {
        Target {
            tls: hub.tls(),
            port: hub.port,
        }
    }

    /// TCP from `source` (any port) to the hub, then the TLS handshake.
    pub async fn connect(&self, source: Ipv4Addr) -> std::io::Result<TlsStream<TcpStream>> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((source, 0)))?;
        let tcp = socket
            .connect(SocketAddr::from(([127, 0, 0, 1], self.port)))
            .await?;
        tcp.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::from(std::net::IpAddr::from([127, 0, 0, 1]));
        TlsConnector::from(self.tls.clone()).connect(name, tcp).await
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Counters of [`IdleConnections`].
#[derive(Debug, Default)]
struct Counts {
    attempted: AtomicUsize,
    /// TCP or TLS failed: the hub closed the connection before the handshake completed.
    refused: AtomicUsize,
    /// The TLS handshake completed.
    held: AtomicUsize,
    /// Held, then closed by the hub.
    closed: AtomicUsize,
}

/// Idle TLS connections: each completes its handshake (if the hub lets it) and then sends
/// nothing, waiting for the hub to close it.
pub struct IdleConnections {
    counts: Arc<Counts>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl IdleConnections {
    /// Starts opening `count` connections from `source`, at most `parallel` handshakes at a time
    /// (in the background: see [`IdleConnections::wait_attempted`]).
    pub fn open(target: &Target, source: Ipv4Addr, count: usize, parallel: usize) -> IdleConnections {
        let counts = Arc::new(Counts::default());
        let runtime = runtime();
        let handshakes = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
        for _ in 0..count {
            let (target, counts, handshakes) = (target.clone(), counts.clone(), handshakes.clone());
            runtime.spawn(async move {
                let permit = handshakes.acquire_owned().await.expect("semaphore");
                let connected = target.connect(source).await;
                counts.attempted.fetch_add(1, Ordering::SeqCst);
                drop(permit);
                let Ok(mut stream) = connected else {
                    counts.refused.fetch_add(1, Ordering::SeqCst);
                    return;
                };
                counts.held.fetch_add(1, Ordering::SeqCst);
                // Whatever ends the read (end of stream, reset, a TLS alert) is the hub's doing.
                let mut buffer = [0u8; 256];
                while let Ok(read) = stream.read(&mut buffer).await {
                    if read == 0 {
                        break;
                    }
                }
                counts.closed.fetch_add(1, Ordering::SeqCst);
            });
        }
        IdleConnections {
            counts,
            runtime: Some(runtime),
        }
    }

    /// Opens connections one after the other until the hub refuses one (or `limit` are held);
    /// returns them and how many were held when the first refusal came.
    pub fn open_until_refused(
        target: &Target,
        source: impl Fn(usize) -> Ipv4Addr,
        limit: usize,
    ) -> (IdleConnections, usize) {
        let counts = Arc::new(Counts::default());
        let runtime = runtime();
        let held = runtime.block_on(async {
            for index in 0..limit {
                let connected = target.connect(source(index)).await;
                counts.attempted.fetch_add(1, Ordering::SeqCst);
                let Ok(mut stream) = connected else {
                    counts.refused.fetch_add(1, Ordering::SeqCst);
                    return index;
                };
                counts.held.fetch_add(1, Ordering::SeqCst);
                let counts = counts.clone();
                tokio::spawn(async move {
                    let mut buffer = [0u8; 256];
                    while let Ok(read) = stream.read(&mut buffer).await {
                        if read == 0 {
                            break;
                        }
                    }
                    counts.closed.fetch_add(1, Ordering::SeqCst);
                });
            }
            limit
        });
        (
            IdleConnections {
                counts,
                runtime: Some(runtime),
            },
            held,
        )
    }

    pub fn attempted(&self) -> usize {
        self.counts.attempted.load(Ordering::SeqCst)
    }

    pub fn refused(&self) -> usize {
        self.counts.refused.load(Ordering::SeqCst)
    }

    pub fn held(&self) -> usize {
        self.counts.held.load(Ordering::SeqCst)
    }

    /// Held connections the hub has closed.
    pub fn closed_by_hub(&self) -> usize {
        self.counts.closed.load(Ordering::SeqCst)
    }

    /// Held connections still open.
    pub fn open_now(&self) -> usize {
        self.held() - self.closed_by_hub()
    }

    pub fn summary(&self) -> String {
        format!(
            "{} attempted: {} refused at once, {} held ({} since closed by the hub, {} open)",
            self.attempted(),
            self.refused(),
            self.held(),
            self.closed_by_hub(),
            self.open_now()
        )
    }
}

impl Drop for IdleConnections {
    fn drop(&mut self) {
        // Closes every socket without waiting for the tasks.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// What a [`TrickleClient`] saw.
#[derive(Debug, Clone, Default)]
pub struct TrickleReport {
    /// The TLS handshake completed.
    pub connected: bool,
    /// Bytes of the trickled part sent before the hub closed the connection.
    pub trickled: usize,
    /// Everything the hub sent.
    pub received: Vec<u8>,
    /// The hub closed the connection (end of stream, reset, or a failed write).
    pub closed_by_hub: bool,
}

/// One TLS connection that sends `upfront` at once, then `trickle` one byte per `interval`
/// (e.g. a request header, so that it never completes in time), reading whatever comes back.
pub struct TrickleClient {
    report: Arc<Mutex<TrickleReport>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TrickleClient {
    pub fn start(
        target: &Target,
        source: Ipv4Addr,
        upfront: &[u8],
        trickle: &[u8],
        interval: Duration,
    ) -> TrickleClient {
        let report = Arc::new(Mutex::new(TrickleReport::default()));
        let runtime = runtime();
        let (target, upfront, trickle, shared) =
            (target.clone(), upfront.to_vec(), trickle.to_vec(), report.clone());
        runtime.spawn(async move {
            let Ok(stream) = target.connect(source).await else {
                shared.lock().unwrap().closed_by_hub = true;
                return;
            };
            shared.lock().unwrap().connected = true;
            let (mut reader, mut writer) = tokio::io::split(stream);
            let reading = {
                let shared = shared.clone();
                async move {
                    let mut buffer = [0u8; 4096];
                    while let Ok(read) = reader.read(&mut buffer).await {
                        if read == 0 {
                            break;
                        }
                        shared.lock().unwrap().received.extend_from_slice(&buffer[..read]);
                    }
                }
            };
            let writing = {
                let shared = shared.clone();
                async move {
                    if writer.write_all(&upfront).await.is_err() {
                        return;
                    }
                    for byte in trickle {
                        tokio::time::sleep(interval).await;
                        if writer.write_all(&[byte]).await.is_err() || writer.flush().await.is_err() {
                            return;
                        }
                        shared.lock().unwrap().trickled += 1;
                    }
                    std::future::pending::<()>().await
                }
            };
            // The hub closing either direction ends the conversation.
            tokio::select! {
                _ = reading => {}
                _ = writing => {}
            }
            shared.lock().unwrap().closed_by_hub = true;
        });
        TrickleClient {
            report,
            runtime: Some(runtime),
        }
    }

    pub fn report(&self) -> TrickleReport {
        self.report.lock().unwrap().clone()
    }
}

impl Drop for TrickleClient {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
