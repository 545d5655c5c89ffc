//! One forwarded connection, run by its own task: it checks the target against the allow list,
//! dials it, then moves bytes (TCP) or datagrams (UDP) between the target and the hub until
//! either side stops, the connection idles out or the session goes away.
//!
//! The session table holds a [`LinkHandle`]; dropping it ends the connection without a word to
//! the hub (the session is gone, or the caller answers for it).

use std::{
    collections::VecDeque,
    io,
    net::{IpAddr, SocketAddr},
    pin::pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tether_proto::{
    Envelope,
    control::ErrorBody,
    port_forward::{MAX_CHUNK, PortForward, Target, Transport, VERSION_1_CHUNK, WINDOW_BYTES},
    version,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpStream, UdpSocket, lookup_host},
    sync::{mpsc, oneshot},
    task::JoinHandle,
    time::{Instant, sleep, sleep_until, timeout},
};

use super::allow::AllowList;

/// How long dialling a TCP target may take, all resolved addresses together.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Forwards of ours a version-2 hub may leave unacknowledged, whatever their size: tiny reads
/// must not let the bookkeeping grow to a million entries within the byte window.
const MAX_IN_FLIGHT: usize = 256;
/// After the hub's `stop`, how long the target may still send before the connection is closed
/// (the operator's client waits about as long for the echo of its `stop`).
const DRAIN_AFTER_STOP: Duration = Duration::from_secs(10);
/// What one queued `forward` from the hub costs beyond its bytes (the queue entry itself).
const QUEUE_ENTRY_COST: usize = 64;
/// Bytes from the hub that may wait for a slow target. A hub keeping to the window never gets
/// near it; one that does not is cut off instead of filling the device's memory.
const QUEUE_LIMIT: usize = 2 * WINDOW_BYTES;

/// A message from the hub for the target, in the order the hub sent it.
enum ToTarget {
    Data(Vec<u8>),
    Stop,
}

/// What became of a `forward` or `stop` handed to a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    Queued,
    /// The hub sent more than the window allows (or a UDP target is behind): not queued.
    Overflow,
    /// The connection has ended.
    Closed,
}

/// The session table's grip on a forwarded connection.
pub struct LinkHandle {
    pub transport: Transport,
    to_target: mpsc::UnboundedSender<ToTarget>,
    /// Cost of what waits in `to_target`, so that its size stays bounded.
    queued: Arc<AtomicUsize>,
    acks: mpsc::Sender<()>,
    /// Dropping it tells the task to close the connection at once.
    _cancel: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl LinkHandle {
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    pub fn forward(&self, data: Vec<u8>) -> Delivery {
        let cost = data.len() + QUEUE_ENTRY_COST;
        if self.queued.load(Ordering::Relaxed) + cost > QUEUE_LIMIT {
            return Delivery::Overflow;
        }
        self.queued.fetch_add(cost, Ordering::Relaxed);
        match self.to_target.send(ToTarget::Data(data)) {
            Ok(()) => Delivery::Queued,
            Err(_) => Delivery::Closed,
        }
    }

    /// The hub acknowledged our oldest unacknowledged `forward`.
    pub fn acknowledged(&self) {
        // More acks than forwards in flight is the hub's mistake: the extra ones are dropped.
        let _ = self.acks.try_send(());
    }

    /// The hub closes the connection: what it sent before is still written, then the task
    /// shuts the target's write side down, forwards what the target still sends until it
    /// closes (TCP) and echoes `stop`.
    pub fn stop(&self) -> Delivery {
        match self.to_target.send(ToTarget::Stop) {
            Ok(()) => Delivery::Queued,
            Err(_) => Delivery::Closed,
        }
    }
}

/// Where a connection's messages go.
#[derive(Clone)]
pub struct Link {
    pub sid: String,
    pub connection_id: String,
    pub outbound: mpsc::Sender<Envelope>,
}

impl Link {
    /// False once the WebSocket writer is gone.
    pub async fn send(&self, message: PortForward) -> bool {
        self.outbound.send(message.to_envelope(&self.sid)).await.is_ok()
    }

    pub async fn error(&self, err: String, msgtype: &str, code: Option<i64>) -> bool {
        let body = ErrorBody {
            err,
            msgtype: Some(msgtype.to_owned()),
            code,
            ..ErrorBody::default()
        };
        let connection_id = self.connection_id.clone();
        self.send(PortForward::Error { connection_id, body }).await
    }

    async fn stop(&self) {
        let connection_id = self.connection_id.clone();
        self.send(PortForward::Stop { connection_id }).await;
    }
}

/// What a connection needs besides its target.
pub struct Options {
    pub allow: Arc<AllowList>,
    /// The session's protocol version: sets the chunk size and the window.
    pub version: u32,
    pub idle_timeout: Option<Duration>,
}

/// Starts the task that checks, dials and then runs the connection.
pub fn start(link: Link, target: Target, options: Options) -> LinkHandle {
    let (to_target, to_target_receiver) = mpsc::unbounded_channel();
    let (acks, acks_receiver) = mpsc::channel(MAX_IN_FLIGHT);
    let (cancel, cancelled) = oneshot::channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let transport = target.transport;
    let inbound = Inbound {
        to_target: to_target_receiver,
        queued: queued.clone(),
        acks: acks_receiver,
        cancelled,
    };
    let task = tokio::spawn(run(link, target, options, inbound));
    LinkHandle {
        transport,
        to_target,
        queued,
        acks,
        _cancel: cancel,
        task,
    }
}

/// The task's ends of the handle's channels.
struct Inbound {
    to_target: mpsc::UnboundedReceiver<ToTarget>,
    queued: Arc<AtomicUsize>,
    acks: mpsc::Receiver<()>,
    cancelled: oneshot::Receiver<()>,
}

enum Socket {
    Tcp(TcpStream),
    Udp(UdpSocket),
}

/// A refused or failed `new`, answered with `error` and this code.
struct Refusal {
    code: i64,
    text: String,
}

/// Why a connection ended.
enum End {
    TargetClosed,
    ReadFailed(io::Error),
    WriteFailed(io::Error),
    Idle(Duration),
    StoppedByHub,
    /// The session ended or the hub went away: nobody to tell.
    Dropped,
}

impl End {
    fn describe(&self) -> String {
        match self {
            End::TargetClosed => "closed by the target".into(),
            End::ReadFailed(error) => format!("reading from the target failed: {error}"),
            End::WriteFailed(error) => format!("writing to the target failed: {error}"),
            End::Idle(limit) => format!("idle for {} s (port_forward.idle_timeout_secs)", limit.as_secs()),
            End::StoppedByHub => "stopped by the operator".into(),
            End::Dropped => "session ended".into(),
        }
    }
}

/// When bytes last moved, and how many moved each way (a mutex rather than atomics: 64-bit
/// atomics are missing on some 32-bit devices, and the lock is never held across an await).
struct Traffic {
    last: Instant,
    to_target: u64,
    from_target: u64,
}

fn count(traffic: &Mutex<Traffic>, to_target: usize, from_target: usize) {
    if let Ok(mut traffic) = traffic.lock() {
        traffic.last = Instant::now();
        traffic.to_target += to_target as u64;
        traffic.from_target += from_target as u64;
    }
}

async fn run(link: Link, target: Target, options: Options, mut inbound: Inbound) {
    let shown = show(&target.host, target.port);
    let transport = target.transport.as_str();
    let opened = tokio::select! {
        opened = open(&target, &options.allow) => opened,
        _ = &mut inbound.cancelled => return,
    };
    let (socket, address) = match opened {
        Ok(opened) => opened,
        Err(refusal) => {
            tracing::warn!(
                "port forward {}/{}: {transport} {shown} refused: {}",
                link.sid,
                link.connection_id,
                refusal.text
            );
            link.error(refusal.text, "new", Some(refusal.code)).await;
            return;
        }
    };
    let opened = PortForward::New {
        connection_id: link.connection_id.clone(),
        target: None,
    };
    if !link.send(opened).await {
        return;
    }
    tracing::info!(
        "port forward {}/{}: {transport} connection to {shown} ({address}) opened",
        link.sid,
        link.connection_id
    );
    let chunk = if options.version >= version::TETHER {
        MAX_CHUNK
    } else {
        VERSION_1_CHUNK
    };
    let traffic = Mutex::new(Traffic {
        last: Instant::now(),
        to_target: 0,
        from_target: 0,
    });
    let pump = async {
        match socket {
            Socket::Tcp(stream) => {
                let window = Window::new(options.version, chunk);
                pump_tcp(stream, &link, &mut inbound, window, &traffic).await
            }
            Socket::Udp(socket) => pump_udp(socket, &link, &mut inbound, chunk, &traffic).await,
        }
    };
    let end = tokio::select! {
        end = pump => end,
        limit = idle_expired(options.idle_timeout, &traffic) => End::Idle(limit),
    };
    if !matches!(end, End::Dropped) {
        link.stop().await;
    }
    let (to_target, from_target) = match traffic.lock() {
        Ok(traffic) => (traffic.to_target, traffic.from_target),
        Err(_) => (0, 0),
    };
    tracing::info!(
        "port forward {}/{}: {transport} connection to {shown} closed, {}: \
         {to_target} bytes to the target, {from_target} bytes from it",
        link.sid,
        link.connection_id,
        end.describe()
    );
}

/// `host:port`, with IPv6 addresses in brackets.
fn show(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Resolves the target, keeps the addresses the allow list permits and dials them.
async fn open(target: &Target, allow: &AllowList) -> Result<(Socket, SocketAddr), Refusal> {
    let host = target.host.as_str();
    // An IPv6 literal may come bracketed; the resolver wants it bare.
    let host = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host);
    let port = target.port;
    let shown = show(host, port);
    let refused = || Refusal {
        code: 403,
        text: format!(
            "{shown} is not an allowed target (port_forward.allow: {})",
            allow.describe()
        ),
    };
    let by_name = allow.permits_name(host, port);
    // Nothing could allow it: refuse without even asking the resolver.
    if !by_name && !allow.may_permit_addresses(port) {
        return Err(refused());
    }
    let resolved = lookup_host((host, port)).await.map_err(|error| Refusal {
        code: 502,
        text: format!("cannot resolve {host}: {error}"),
    })?;
    let addresses: Vec<SocketAddr> = resolved
        .filter(|address| by_name || allow.permits_address(address.ip(), port))
        .collect();
    if addresses.is_empty() {
        return Err(refused());
    }
    let failed = |error: io::Error| Refusal {
        code: 502,
        text: format!("cannot connect to {shown}: {error}"),
    };
    match target.transport {
        Transport::Tcp => {
            let dial = async {
                let mut last_error = io::Error::other("no address");
                for address in &addresses {
                    match TcpStream::connect(address).await {
                        Ok(stream) => return Ok((stream, *address)),
                        Err(error) => last_error = error,
                    }
                }
                Err(last_error)
            };
            let (stream, address) = match timeout(CONNECT_TIMEOUT, dial).await {
                Ok(dialled) => dialled.map_err(failed)?,
                Err(_) => {
                    return Err(failed(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
                    )));
                }
            };
            // The operator's keystrokes must not wait for Nagle: chunks are already batched.
            let _ = stream.set_nodelay(true);
            Ok((Socket::Tcp(stream), address))
        }
        Transport::Udp => {
            let address = addresses[0];
            let local: SocketAddr = match address.ip() {
                IpAddr::V4(_) => (IpAddr::from([0u8; 4]), 0).into(),
                IpAddr::V6(_) => (IpAddr::from([0u16; 8]), 0).into(),
            };
            let socket = UdpSocket::bind(local).await.map_err(failed)?;
            socket.connect(address).await.map_err(failed)?;
            Ok((Socket::Udp(socket), address))
        }
    }
}

/// Flow control of what we send to the hub: version 1 waits for each ack, version 2 keeps up
/// to [`WINDOW_BYTES`] in flight. Acks come in order, each for the oldest forward.
struct Window {
    version_1: bool,
    chunk: usize,
    in_flight: VecDeque<usize>,
    unacknowledged: usize,
}

impl Window {
    fn new(session_version: u32, chunk: usize) -> Window {
        Window {
            version_1: session_version < version::TETHER,
            chunk,
            in_flight: VecDeque::new(),
            unacknowledged: 0,
        }
    }

    /// How many bytes may be read and sent now.
    fn allowance(&self) -> usize {
        if self.version_1 {
            return if self.in_flight.is_empty() { self.chunk } else { 0 };
        }
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            return 0;
        }
        self.chunk.min(WINDOW_BYTES.saturating_sub(self.unacknowledged))
    }

    fn sent(&mut self, bytes: usize) {
        self.in_flight.push_back(bytes);
        self.unacknowledged += bytes;
    }

    fn acknowledged(&mut self) {
        if let Some(bytes) = self.in_flight.pop_front() {
            self.unacknowledged -= bytes;
        }
    }
}

async fn pump_tcp(
    stream: TcpStream,
    link: &Link,
    inbound: &mut Inbound,
    mut window: Window,
    traffic: &Mutex<Traffic>,
) -> End {
    let (mut reader, mut writer) = stream.into_split();
    let Inbound {
        to_target,
        queued,
        acks,
        cancelled,
    } = inbound;
    // Both directions run at once: a target that only reads once its output is taken must not
    // deadlock against a write of ours.
    let hub_to_target = async {
        while let Some(message) = to_target.recv().await {
            let data = match message {
                ToTarget::Data(data) => data,
                ToTarget::Stop => {
                    let _ = writer.shutdown().await;
                    return End::StoppedByHub;
                }
            };
            let written = writer.write_all(&data).await;
            queued.fetch_sub(data.len() + QUEUE_ENTRY_COST, Ordering::Relaxed);
            if let Err(error) = written {
                return End::WriteFailed(error);
            }
            count(traffic, data.len(), 0);
            // Acknowledged only once written: a slow target slows the operator down.
            let connection_id = link.connection_id.clone();
            if !link.send(PortForward::Ack { connection_id }).await {
                return End::Dropped;
            }
        }
        End::Dropped
    };
    let target_to_hub = async {
        let mut buffer = vec![0; window.chunk];
        loop {
            let allowance = window.allowance();
            tokio::select! {
                ack = acks.recv() => match ack {
                    Some(()) => window.acknowledged(),
                    None => return End::Dropped,
                },
                read = reader.read(&mut buffer[..allowance]), if allowance > 0 => match read {
                    Ok(0) => return End::TargetClosed,
                    Ok(read) => {
                        count(traffic, 0, read);
                        let forward = PortForward::Forward {
                            connection_id: link.connection_id.clone(),
                            data: buffer[..read].to_vec(),
                        };
                        if !link.send(forward).await {
                            return End::Dropped;
                        }
                        window.sent(read);
                    }
                    Err(error) => return End::ReadFailed(error),
                },
            }
        }
    };
    let mut hub_to_target = pin!(hub_to_target);
    let mut target_to_hub = pin!(target_to_hub);
    let first = tokio::select! {
        end = &mut hub_to_target => end,
        end = &mut target_to_hub => return end,
        _ = &mut *cancelled => return End::Dropped,
    };
    if !matches!(first, End::StoppedByHub) {
        return first;
    }
    // The operator's `stop` may be a half-close (its client shut down its write side): what the
    // target still sends is forwarded until the target closes too, for a while at most. Our
    // `stop` then serves as the echo.
    tokio::select! {
        end = &mut target_to_hub => match end {
            End::TargetClosed => End::StoppedByHub,
            other => other,
        },
        _ = &mut *cancelled => End::Dropped,
        _ = sleep(DRAIN_AFTER_STOP) => End::StoppedByHub,
    }
}

async fn pump_udp(
    socket: UdpSocket,
    link: &Link,
    inbound: &mut Inbound,
    chunk: usize,
    traffic: &Mutex<Traffic>,
) -> End {
    let Inbound {
        to_target,
        queued,
        cancelled,
        ..
    } = inbound;
    let socket = &socket;
    let hub_to_target = async {
        while let Some(message) = to_target.recv().await {
            let data = match message {
                ToTarget::Data(data) => data,
                ToTarget::Stop => return End::StoppedByHub,
            };
            queued.fetch_sub(data.len() + QUEUE_ENTRY_COST, Ordering::Relaxed);
            match socket.send(&data).await {
                Ok(_) => count(traffic, data.len(), 0),
                // UDP promises nothing: a datagram the target refuses is lost, not fatal.
                Err(error) => tracing::debug!(
                    "port forward {}/{}: datagram not sent: {error}",
                    link.sid,
                    link.connection_id
                ),
            }
            // A stock-style sender waits for this ack before sending the next datagram.
            let connection_id = link.connection_id.clone();
            if !link.send(PortForward::Ack { connection_id }).await {
                return End::Dropped;
            }
        }
        End::Dropped
    };
    let target_to_hub = async {
        // One byte more than a chunk, to tell a datagram too large to forward.
        let mut buffer = vec![0; chunk + 1];
        loop {
            let received = match socket.recv(&mut buffer).await {
                Ok(received) => received,
                // An ICMP "port unreachable" for an earlier datagram: the target may listen later.
                Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(error) => return End::ReadFailed(error),
            };
            if received > chunk {
                tracing::debug!(
                    "port forward {}/{}: datagram over {chunk} bytes dropped",
                    link.sid,
                    link.connection_id
                );
                continue;
            }
            count(traffic, 0, received);
            let forward = PortForward::Forward {
                connection_id: link.connection_id.clone(),
                data: buffer[..received].to_vec(),
            };
            // No window for datagrams: when the hub is behind, drop them as a network would.
            match link.outbound.try_send(forward.to_envelope(&link.sid)) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => return End::Dropped,
            }
        }
    };
    tokio::select! {
        end = hub_to_target => end,
        end = target_to_hub => end,
        _ = cancelled => End::Dropped,
    }
}

/// Resolves with the limit once no byte moved either way for that long; never without one.
async fn idle_expired(limit: Option<Duration>, traffic: &Mutex<Traffic>) -> Duration {
    let Some(limit) = limit else {
        return std::future::pending().await;
    };
    loop {
        let last = match traffic.lock() {
            Ok(traffic) => traffic.last,
            Err(_) => return limit,
        };
        if Instant::now() >= last + limit {
            return limit;
        }
        sleep_until(last + limit).await;
    }
}
