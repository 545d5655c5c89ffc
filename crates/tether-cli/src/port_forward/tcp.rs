//! TCP mappings: one task per accepted connection, with a helper task that writes the device's
//! data to the local socket and acknowledges each `forward` once written (so a slow local
//! reader slows the device down). [`pump`] takes any reader and writer, so that `tether proxy`
//! relays standard input and output the same way.

use std::{fmt, net::SocketAddr, sync::Arc, time::Duration};

use tether_proto::{
    port_forward::{MAX_CHUNK, PortForward, WINDOW_BYTES, send_window},
    version,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
    time::{Instant, sleep, sleep_until},
};

use super::{Link, Mapping, Shared, open_connection, refused, request_connection, window::Window};
use crate::output::say;

/// How long to wait for the device to echo our `stop` before closing anyway.
const STOP_ECHO: Duration = Duration::from_secs(10);

pub async fn listen(listener: TcpListener, mapping: Mapping, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(connection(stream, peer, mapping.clone(), shared.clone()));
            }
            Err(error) => {
                // Out of file descriptors, typically: wait for some to be freed.
                say!("tether: accepting a connection for {mapping}: {error}");
                sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn connection(stream: TcpStream, peer: SocketAddr, mapping: Mapping, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let Some(link) = shared.link().await else {
        shared.log(format_args!(
            "closing the connection from {peer}: no session to the hub"
        ));
        return;
    };
    let id = shared.connection_id();
    let mut inbound = link.register(&id);
    let opened = if link.version >= version::TETHER {
        // A Tether agent takes a connection's bytes before its dial completes (it writes them
        // once it has): the first bytes go at once, one round trip sooner than waiting.
        request_connection(&link, &id, &mapping);
        Some(Opened::Pending {
            refusal: refused(&shared, &mapping),
        })
    } else {
        open_connection(&link, &shared, &id, &mapping, &mut inbound)
            .await
            .map(Opened::Answered)
    };
    if let Some(opened) = opened {
        shared.log(format_args!(
            "connection {id} from {peer} to {} (tcp) opened",
            mapping.remote()
        ));
        let (reader, writer) = stream.into_split();
        let counts = pump(reader, writer, &id, &link, &mut inbound, opened).await;
        shared.log(format_args!(
            "connection {id} from {peer} closed ({}; sent {} bytes, received {} bytes)",
            counts.end, counts.sent, counts.received
        ));
    }
    link.unregister(&id);
}

/// Where a connection stands with the device when its bytes start to flow.
pub enum Opened {
    /// The device answered `new`, naming this window.
    Answered(usize),
    /// Its answer is still to come: until then the window is the one every version-2 agent
    /// takes ([`WINDOW_BYTES`]); a refusal is printed after `refusal`.
    Pending { refusal: String },
}

/// What a connection moved, and how it ended.
pub struct Counts {
    pub sent: u64,
    pub received: u64,
    pub end: End,
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    SessionLost,
    ClosedByDevice,
    DeviceError,
    ClosedLocally,
    LocalSocketFailed,
}

impl fmt::Display for End {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            End::SessionLost => "session to the hub lost",
            End::ClosedByDevice => "closed by the device",
            End::DeviceError => "device error",
            End::ClosedLocally => "closed locally",
            End::LocalSocketFailed => "local socket failed",
        })
    }
}

/// Moves bytes both ways until either side stops or the session dies: what `reader` gives goes
/// to the device, what the device sends is written to `writer`. The end of `reader`'s input is
/// a half-close: the device's data is still written until it closes too (or [`STOP_ECHO`]).
pub async fn pump<R, W>(
    mut reader: R,
    writer: W,
    id: &str,
    link: &Arc<Link>,
    inbound: &mut mpsc::UnboundedReceiver<PortForward>,
    opened: Opened,
) -> Counts
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (to_local, local_queue) = mpsc::unbounded_channel();
    let mut writer_task = tokio::spawn(write_local(writer, local_queue, link.clone(), id.to_owned()));
    let mut writer_done = false;
    let (mut window, mut refusal) = match opened {
        Opened::Answered(size) => (Window::new(link.version, size), None),
        Opened::Pending { refusal } => (Window::new(link.version, WINDOW_BYTES), Some(refusal)),
    };
    let mut buffer = vec![0; MAX_CHUNK];
    let mut counts = Counts {
        sent: 0,
        received: 0,
        end: End::ClosedLocally,
    };
    // Set once we sent `stop`: then we only wait for the device's echo.
    let mut stopped_at: Option<Instant> = None;
    let stop = || {
        link.send(PortForward::Stop {
            connection_id: id.to_owned(),
        })
    };
    let session_lost = loop {
        let allowance = if stopped_at.is_some() {
            0
        } else {
            window.allowance()
        };
        let echo_deadline = stopped_at.map_or_else(Instant::now, |at| at + STOP_ECHO);
        tokio::select! {
            message = inbound.recv() => match message {
                None => {
                    counts.end = End::SessionLost;
                    break true;
                }
                Some(PortForward::Forward { data, .. }) => {
                    counts.received += data.len() as u64;
                    // Fails only once the writer gave up; `stop` was sent then.
                    let _ = to_local.send(data);
                }
                Some(PortForward::Ack { .. }) => {
                    window.acked();
                }
                Some(PortForward::Stop { .. }) => {
                    if stopped_at.is_none() {
                        stop();
                        counts.end = End::ClosedByDevice;
                    }
                    break false;
                }
                Some(PortForward::Error { body, .. }) => {
                    match refusal.take() {
                        Some(refusal) => say!("{refusal}: {}", body.err),
                        None => say!("tether: connection {id}: {}", body.err),
                    }
                    if stopped_at.is_none() {
                        stop();
                    }
                    counts.end = End::DeviceError;
                    break false;
                }
                Some(PortForward::New { window: named, .. }) => {
                    if refusal.take().is_some() {
                        window.resize(send_window(named));
                    }
                }
            },
            read = reader.read(&mut buffer[..allowance]), if allowance > 0 => match read {
                Ok(n) if n > 0 => {
                    link.send(PortForward::Forward {
                        connection_id: id.to_owned(),
                        data: buffer[..n].to_vec(),
                    });
                    window.sent(n);
                    counts.sent += n as u64;
                }
                // End of input (or a reset): the device closes its side and echoes `stop`.
                _ => {
                    stop();
                    stopped_at = Some(Instant::now());
                    counts.end = End::ClosedLocally;
                }
            },
            _ = &mut writer_task, if !writer_done => {
                // The local socket cannot be written to any more.
                writer_done = true;
                if stopped_at.is_none() {
                    stop();
                    stopped_at = Some(Instant::now());
                    counts.end = End::LocalSocketFailed;
                }
            }
            _ = sleep_until(echo_deadline), if stopped_at.is_some() => break false,
        }
    };
    drop(to_local);
    if session_lost {
        // The device side is gone; what it sent last is not worth waiting for.
        writer_task.abort();
    } else if !writer_done {
        // Deliver what the device sent before its `stop`, then shut down the write side.
        let _ = writer_task.await;
    }
    counts
}

/// Writes the device's data in order, acknowledging each `forward` once written; at the end
/// of the queue shuts down the write side.
async fn write_local<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut queue: mpsc::UnboundedReceiver<Vec<u8>>,
    link: Arc<Link>,
    id: String,
) {
    while let Some(bytes) = queue.recv().await {
        // Flushed before the ack: a buffered writer (stdout) has not delivered until then.
        if writer.write_all(&bytes).await.is_err() || writer.flush().await.is_err() {
            return;
        }
        link.send(PortForward::Ack {
            connection_id: id.clone(),
        });
    }
    let _ = writer.shutdown().await;
}
