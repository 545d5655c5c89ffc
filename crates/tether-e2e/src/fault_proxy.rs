//! A fault-injecting TCP proxy on a loopback port: everything it accepts is forwarded to one
//! target, and the test can cut, stall, slow down or delay the traffic while it flows.
//!
//! Point an agent at it with [`crate::Agent::start_via`] and `proxy.url_for(&hub)`: the hub's
//! certificate names `127.0.0.1`, so TLS still verifies through the proxy (it only sees bytes).

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{
        TcpListener, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::watch,
    task::AbortHandle,
};

use crate::Hub;

#[derive(Default)]
struct Faults {
    /// Close a connection once this many bytes (both directions together) passed; 0 = never.
    drop_after: AtomicU64,
    /// Stop forwarding (without closing) while set.
    blackhole: AtomicBool,
    /// Close new connections at once while set (with `cut_all`: the link is down).
    refuse: AtomicBool,
    /// Bytes per second per connection and direction; 0 = unlimited.
    throttle: AtomicU64,
    /// Milliseconds to hold every chunk before forwarding it.
    delay_ms: AtomicU64,
    /// Connections accepted so far.
    accepted: AtomicU64,
    /// Connections closed by a fault (cut, or dropped after N bytes).
    dropped: AtomicU64,
    /// Bytes forwarded so far, both directions, all connections.
    bytes: AtomicU64,
    /// Bytes forwarded so far from the clients to the target (the rest went back).
    bytes_up: AtomicU64,
}

/// A running proxy. Dropping it stops it and closes every connection.
pub struct FaultProxy {
    /// The proxy's own address (`127.0.0.1:PORT`).
    pub addr: SocketAddr,
    pub target: SocketAddr,
    faults: Arc<Faults>,
    /// Every live connection's pumps, so that `cut_all` can end them.
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    /// Bumped by `blackhole(false)` to wake stalled pumps.
    wake: watch::Sender<u64>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port forwarding to `target`.
    pub fn start(target: SocketAddr) -> FaultProxy {
        FaultProxy::start_on(std::net::Ipv4Addr::LOCALHOST.into(), target)
    }

    /// Starts a proxy on a free port of `address` (e.g. a [`crate::Namespace`]'s host end).
    pub fn start_on(address: std::net::IpAddr, target: SocketAddr) -> FaultProxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fault-proxy")
            .enable_all()
            .build()
            .expect("tokio runtime for the fault proxy");
        let listener = runtime
            .block_on(TcpListener::bind(SocketAddr::new(address, 0)))
            .expect("bind the fault proxy");
        let addr = listener.local_addr().expect("proxy address");
        let faults = Arc::new(Faults::default());
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (wake, _) = watch::channel(0u64);
        {
            let faults = Arc::clone(&faults);
            let connections = Arc::clone(&connections);
            let wake = wake.clone();
            runtime.spawn(async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    faults.accepted.fetch_add(1, Ordering::SeqCst);
                    if faults.refuse.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let faults = Arc::clone(&faults);
                    let wake = wake.subscribe();
                    let task = tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(target).await else {
                            return;
                        };
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        let (client_read, client_write) = client.into_split();
                        let (server_read, server_write) = server.into_split();
                        let passed = Arc::new(AtomicU64::new(0));
                        let up = pump(
                            client_read,
                            server_write,
                            Arc::clone(&faults),
                            Arc::clone(&passed),
                            wake.clone(),
                            true,
                        );
                        let down = pump(
                            server_read,
                            client_write,
                            Arc::clone(&faults),
                            passed,
                            wake,
                            false,
                        );
                        // Either direction ending (EOF, error or fault) ends the connection.
                        tokio::select! {
                            _ = up => {}
                            _ = down => {}
                        }
                    });
                    let mut list = connections.lock().unwrap();
                    list.retain(|handle| !handle.is_finished());
                    list.push(task.abort_handle());
                }
            });
        }
        FaultProxy {
            addr,
            target,
            faults,
            connections,
            wake,
            runtime: Some(runtime),
        }
    }

    /// A proxy in front of `hub`.
    pub fn for_hub(hub: &Hub) -> FaultProxy {
        FaultProxy::start(format!("127.0.0.1:{}", hub.port).parse().expect("hub address"))
    }

    /// `https://127.0.0.1:PORT` of the proxy: a hub URL for an agent or a CLI.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Closes every current connection at once (new ones are still accepted).
    pub fn cut_all(&self) {
        let handles: Vec<AbortHandle> = std::mem::take(&mut *self.connections.lock().unwrap());
        let live = handles.iter().filter(|h| !h.is_finished()).count() as u64;
        for handle in handles {
            handle.abort();
        }
        self.faults.dropped.fetch_add(live, Ordering::SeqCst);
    }

    /// Takes the link down (every connection cut, new ones closed at once) or brings it back up.
    pub fn link_down(&self, down: bool) {
        self.faults.refuse.store(down, Ordering::SeqCst);
        if down {
            self.cut_all();
        }
    }

    /// Closes each connection once `bytes` (both directions together) went through it;
    /// 0 turns this off.
    pub fn drop_every(&self, bytes: u64) {
        self.faults.drop_after.store(bytes, Ordering::SeqCst);
    }

    /// While `on`, nothing is forwarded and nothing is closed: the peers see silence.
    pub fn blackhole(&self, on: bool) {
        self.faults.blackhole.store(on, Ordering::SeqCst);
        if !on {
            self.wake.send_modify(|n| *n += 1);
        }
    }

    /// Limits every connection to `bytes_per_sec` in each direction; 0 = unlimited.
    pub fn throttle(&self, bytes_per_sec: u64) {
        self.faults.throttle.store(bytes_per_sec, Ordering::SeqCst);
    }

    /// Holds every chunk `ms` milliseconds before forwarding it; 0 = no delay.
    pub fn delay(&self, ms: u64) {
        self.faults.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Connections accepted so far (a reconnecting peer makes this grow).
    pub fn accepted(&self) -> u64 {
        self.faults.accepted.load(Ordering::SeqCst)
    }

    /// Connections closed by a fault so far.
    pub fn dropped(&self) -> u64 {
        self.faults.dropped.load(Ordering::SeqCst)
    }

    /// Bytes forwarded so far (both directions, all connections).
    pub fn bytes(&self) -> u64 {
        self.faults.bytes.load(Ordering::SeqCst)
    }

    /// Bytes forwarded so far from the clients to the target, and back (all connections).
    pub fn bytes_each_way(&self) -> (u64, u64) {
        let up = self.faults.bytes_up.load(Ordering::SeqCst);
        (up, self.bytes() - up)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.cut_all();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Copies `from` to `to` until EOF, an error, or a fault ends it.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    faults: Arc<Faults>,
    // Bytes of this connection so far, both directions (shared by its two pumps).
    passed: Arc<AtomicU64>,
    mut wake: watch::Receiver<u64>,
    // Client to target: counted in `bytes_up` too.
    up: bool,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        while faults.blackhole.load(Ordering::SeqCst) {
            let _ = tokio::time::timeout(Duration::from_millis(50), wake.changed()).await;
        }
        let limit = faults.throttle.load(Ordering::SeqCst);
        let want = if limit > 0 {
            buffer.len().min((limit as usize / 10).max(1))
        } else {
            buffer.len()
        };
        let n = match from.read(&mut buffer[..want]).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        // A stall that began while we were reading holds this chunk too.
        while faults.blackhole.load(Ordering::SeqCst) {
            let _ = tokio::time::timeout(Duration::from_millis(50), wake.changed()).await;
        }
        let delay = faults.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let drop_after = faults.drop_after.load(Ordering::SeqCst);
        let mut chunk = &buffer[..n];
        let mut cut = false;
        let before = passed.fetch_add(n as u64, Ordering::SeqCst);
        if drop_after > 0 && before + n as u64 >= drop_after {
            chunk = &chunk[..(drop_after.saturating_sub(before)).min(n as u64) as usize];
            cut = true;
        }
        if to.write_all(chunk).await.is_err() {
            return;
        }
        faults.bytes.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        if up {
            faults.bytes_up.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
        if cut {
            faults.dropped.fetch_add(1, Ordering::SeqCst);
            return;
        }
        if limit > 0 {
            tokio::time::sleep(Duration::from_secs_f64(n as f64 / limit as f64)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read, Write},
        net::{TcpListener, TcpStream},
    };

    use super::*;

    fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                std::thread::spawn(move || {
                    let mut reader = stream.try_clone().unwrap();
                    let _ = std::io::copy(&mut reader, &mut stream);
                });
            }
        });
        addr
    }

    fn round_trip(stream: &mut TcpStream, payload: &[u8]) -> std::io::Result<Vec<u8>> {
        stream.write_all(payload)?;
        let mut back = vec![0u8; payload.len()];
        stream.read_exact(&mut back)?;
        Ok(back)
    }

    #[test]
    fn forwards_cuts_and_drops_after_n_bytes() {
        let proxy = FaultProxy::start(echo_server());
        let timeout = Some(Duration::from_secs(10));
        let mut stream = TcpStream::connect(proxy.addr).unwrap();
        stream.set_read_timeout(timeout).unwrap();
        assert_eq!(round_trip(&mut stream, b"hello").unwrap(), b"hello");

        proxy.cut_all();
        let mut rest = Vec::new();
        // The cut connection ends (EOF or reset), it does not hang.
        let _ = stream.read_to_end(&mut rest);
        assert!(rest.is_empty());

        // New connections still work; each is closed after 1000 bytes, both directions together.
        proxy.drop_every(1000);
        let mut stream = TcpStream::connect(proxy.addr).unwrap();
        stream.set_read_timeout(timeout).unwrap();
        assert_eq!(round_trip(&mut stream, &[7u8; 400]).unwrap(), vec![7u8; 400]);
        let _ = stream.write_all(&[8u8; 600]);
        let mut back = Vec::new();
        let _ = stream.read_to_end(&mut back);
        assert!(
            back.len() <= 200,
            "at most the 200 bytes below the limit come back"
        );
        assert!(proxy.dropped() >= 1);
        assert_eq!(proxy.accepted(), 2);
    }

    #[test]
    fn blackhole_holds_data_until_released() {
        let proxy = FaultProxy::start(echo_server());
        let mut stream = TcpStream::connect(proxy.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(round_trip(&mut stream, b"one").unwrap(), b"one");
        proxy.blackhole(true);
        stream.write_all(b"two").unwrap();
        stream.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut byte = [0u8; 1];
        assert!(stream.read(&mut byte).is_err(), "nothing passes a blackhole");
        proxy.blackhole(false);
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut back = [0u8; 3];
        stream.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"two");
        // Throttled and delayed traffic still arrives whole.
        proxy.throttle(100_000);
        proxy.delay(5);
        let payload: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
        assert_eq!(round_trip(&mut stream, &payload).unwrap(), payload);
    }
}
