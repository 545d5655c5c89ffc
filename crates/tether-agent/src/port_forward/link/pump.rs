//! Moving data once a connection is open: both directions at once for TCP (with the window
//! of what the hub has not yet acknowledged), datagram by datagram for UDP, and the idle clock
//! over both.

use std::{
    collections::VecDeque,
    io,
    pin::pin,
    sync::{Mutex, atomic::Ordering},
    time::Duration,
};

use tether_proto::{port_forward::PortForward, version};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpStream, UdpSocket},
    sync::mpsc,
    time::{Instant, sleep, sleep_until},
};

use super::{End, Inbound, Link, MAX_IN_FLIGHT, QUEUE_ENTRY_COST, ToTarget};

/// After the hub's `stop`, how long the target may still send before the connection is closed
/// (the operator's client waits about as long for the echo of its `stop`).
const DRAIN_AFTER_STOP: Duration = Duration::from_secs(10);

/// When bytes last moved, and how many moved each way (a mutex rather than atomics: 64-bit
/// atomics are missing on some 32-bit devices, and the lock is never held across an await).
pub(super) struct Traffic {
    pub(super) last: Instant,
    pub(super) to_target: u64,
    pub(super) from_target: u64,
}

fn count(traffic: &Mutex<Traffic>, to_target: usize, from_target: usize) {
    if let Ok(mut traffic) = traffic.lock() {
        traffic.last = Instant::now();
        traffic.to_target += to_target as u64;
        traffic.from_target += from_target as u64;
    }
}

/// Flow control of what we send to the hub: version 1 waits for each ack, version 2 keeps up
/// to the operator's window in flight. Acks come in order, each for the oldest forward.
pub(super) struct Window {
    version_1: bool,
    chunk: usize,
    size: usize,
    in_flight: VecDeque<usize>,
    unacknowledged: usize,
}

impl Window {
    pub(super) fn new(session_version: u32, chunk: usize, size: usize) -> Window {
        Window {
            version_1: session_version < version::TETHER,
            chunk,
            size,
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
        self.chunk.min(self.size.saturating_sub(self.unacknowledged))
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

pub(super) async fn pump_tcp(
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

pub(super) async fn pump_udp(
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
pub(super) async fn idle_expired(limit: Option<Duration>, traffic: &Mutex<Traffic>) -> Duration {
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
