//! One forwarded connection, run by its own task: it checks the target against the allow list,
//! dials it ([`dial`]), then moves bytes (TCP) or datagrams (UDP) between the target and the
//! hub ([`pump`]) until either side stops, the connection idles out or the session goes away.
//!
//! The session table holds a [`LinkHandle`]; dropping it ends the connection without a word to
//! the hub (the session is gone, or the caller answers for it).

mod dial;
mod pump;

use std::{
    io,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tether_proto::{
    Envelope,
    control::ErrorBody,
    port_forward::{ADVERTISED_WINDOW_BYTES, MAX_CHUNK, PortForward, Target, Transport, VERSION_1_CHUNK},
    version,
};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
    time::Instant,
};

use self::{
    dial::{Socket, open, show},
    pump::{Traffic, Window, idle_expired, pump_tcp, pump_udp},
};
use crate::allow_list::AllowList;

/// Forwards of ours a version-2 hub may leave unacknowledged, whatever their size: tiny reads
/// must not let the bookkeeping grow to a million entries within the byte window.
const MAX_IN_FLIGHT: usize = 256;
/// What one queued `forward` from the hub costs beyond its bytes (the queue entry itself).
const QUEUE_ENTRY_COST: usize = 64;
/// Bytes from the hub that may wait for a slow target. A hub keeping to the window we name in
/// our `new` never gets near it; one that does not is cut off instead of filling the device's
/// memory.
const QUEUE_LIMIT: usize = 2 * ADVERTISED_WINDOW_BYTES;

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
        self.outbound.send(message.into_envelope(&self.sid)).await.is_ok()
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
    /// The session's protocol version: sets the chunk size and whether there is a window.
    pub version: u32,
    /// The bytes the operator's side takes unacknowledged (version 2; see `send_window`).
    pub peer_window: usize,
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
        window: (options.version >= version::TETHER).then_some(ADVERTISED_WINDOW_BYTES as u32),
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
                let window = Window::new(options.version, chunk, options.peer_window);
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
