//! `tether port-forward DEVICE MAPPING... [--bind ADDR]`: local TCP and UDP ports forwarded to
//! targets reached from the device (port forward protocol 3).
//!
//! One user session (one `sid`) carries every connection of the command; each has its own
//! `connection_id` and its own task ([`tcp`], [`udp`]). The supervisor here owns the session's
//! reading side and routes each inbound message to its connection's channel; writing goes
//! through the session's one writer task ([`Outgoing`]). When the session dies its
//! connections close, the listeners stay open, and the supervisor reconnects with backoff.

mod mapping;
mod tcp;
mod udp;
mod window;

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result};
use tether_proto::{
    Envelope,
    api::Device,
    control::Control,
    port_forward::{ADVERTISED_WINDOW_BYTES, PortForward, Transport, send_window},
    protocol, version,
};
use tokio::{
    net::{TcpListener, UdpSocket},
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
    time::{sleep, timeout},
};

pub use mapping::{Mapping, host_port, parse as parse_mapping, parse_remote};
pub use tcp::{End, Opened, pump};

use crate::{
    api::{Api, HttpError},
    failure,
    hub::{Authenticated, HubOptions, authenticated},
    output::say,
    resolve::find,
    session::{Outgoing, Session},
};

/// How long a connection accepted while the hub is unreachable waits for the session.
const SESSION_WAIT: Duration = Duration::from_secs(10);
const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// What the command line asked for.
pub struct Request {
    pub device: String,
    pub mappings: Vec<Mapping>,
    pub bind: IpAddr,
    pub verbose: bool,
}

/// One live session: where to send, and where each connection's inbound messages go.
pub struct Link {
    outgoing: Outgoing,
    pub version: u32,
    routes: Mutex<HashMap<String, mpsc::UnboundedSender<PortForward>>>,
}

impl Link {
    /// A link over `outgoing`, for a session that negotiated `version`.
    pub fn new(outgoing: Outgoing, version: u32) -> Link {
        Link {
            outgoing,
            version,
            routes: Mutex::new(HashMap::new()),
        }
    }

    pub fn send(&self, message: PortForward) {
        self.outgoing
            .send_envelope(&message.into_envelope(self.outgoing.sid()));
    }

    /// Routes the device's messages for `connection_id` to the returned channel. The channel
    /// closes when the session dies.
    pub fn register(&self, connection_id: &str) -> mpsc::UnboundedReceiver<PortForward> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.routes
            .lock()
            .expect("routes lock")
            .insert(connection_id.to_owned(), sender);
        receiver
    }

    pub fn unregister(&self, connection_id: &str) {
        self.routes.lock().expect("routes lock").remove(connection_id);
    }

    fn route(&self, message: PortForward) {
        let routes = self.routes.lock().expect("routes lock");
        match routes.get(message.connection_id()) {
            Some(sender) => {
                let _ = sender.send(message);
            }
            None => tracing::debug!(
                "{} for unknown connection {}",
                message.typ(),
                message.connection_id()
            ),
        }
    }

    /// The session died: every connection's channel closes.
    fn sever(&self) {
        self.routes.lock().expect("routes lock").clear();
    }
}

/// What every connection task shares.
pub struct Shared {
    pub device: String,
    pub verbose: bool,
    link: watch::Sender<Option<Arc<Link>>>,
    next_id: AtomicU64,
}

impl Shared {
    /// What the connections to `device` share, before any session is up.
    pub fn new(device: String, verbose: bool) -> Shared {
        Shared {
            device,
            verbose,
            link: watch::Sender::new(None),
            next_id: AtomicU64::new(1),
        }
    }

    /// A fresh `connection_id`, unique for the life of the command.
    pub fn connection_id(&self) -> String {
        self.next_id.fetch_add(1, Ordering::Relaxed).to_string()
    }

    /// The current session, waiting up to [`SESSION_WAIT`] while reconnecting.
    pub async fn link(&self) -> Option<Arc<Link>> {
        let mut current = self.link.subscribe();
        let found = timeout(SESSION_WAIT, current.wait_for(Option::is_some)).await;
        match found {
            Ok(Ok(link)) => link.clone(),
            _ => None,
        }
    }

    /// Verbose-mode diagnostics on stderr.
    pub fn log(&self, text: std::fmt::Arguments<'_>) {
        if self.verbose {
            say!("tether: {text}");
        }
    }
}

/// How long the device may take to dial a target.
const OPEN_TIMEOUT: Duration = Duration::from_secs(60);

/// How a refusal of `mapping`'s target starts: "tether: DEVICE refused HOST:PORT" (the device's
/// reason follows).
pub fn refused(shared: &Shared, mapping: &Mapping) -> String {
    format!("tether: {} refused {}", shared.device, mapping.remote())
}

/// Asks the device to open `mapping`'s target as `connection_id`, without waiting.
pub fn request_connection(link: &Link, connection_id: &str, mapping: &Mapping) {
    // What the device sends us waits only for the local socket: name a window that keeps a
    // fast link busy (a stock agent ignores the prop and keeps to its one 4 KiB message).
    let window = (link.version >= version::TETHER).then_some(ADVERTISED_WINDOW_BYTES as u32);
    link.send(PortForward::New {
        connection_id: connection_id.to_owned(),
        target: Some(mapping.target()),
        window,
    });
}

/// Asks the device to open `mapping`'s target as `connection_id` and waits for its answer;
/// once it is open, returns the window to keep to when sending to it. Refusals are printed
/// (the device's text names the rule).
pub async fn open_connection(
    link: &Link,
    shared: &Shared,
    connection_id: &str,
    mapping: &Mapping,
    inbound: &mut mpsc::UnboundedReceiver<PortForward>,
) -> Option<usize> {
    request_connection(link, connection_id, mapping);
    let stop = || {
        link.send(PortForward::Stop {
            connection_id: connection_id.to_owned(),
        })
    };
    match timeout(OPEN_TIMEOUT, inbound.recv()).await {
        Ok(Some(PortForward::New {
            target: None, window, ..
        })) => Some(send_window(window)),
        Ok(Some(PortForward::Error { body, .. })) => {
            say!("{}: {}", refused(shared, mapping), body.err);
            None
        }
        Ok(Some(PortForward::Stop { .. })) => {
            shared.log(format_args!(
                "connection {connection_id}: {} closed {} at once",
                shared.device,
                mapping.remote()
            ));
            None
        }
        Ok(Some(other)) => {
            shared.log(format_args!(
                "connection {connection_id}: unexpected `{}` instead of the device's answer",
                other.typ()
            ));
            stop();
            None
        }
        Ok(None) => {
            shared.log(format_args!(
                "connection {connection_id}: the session ended before {} answered",
                shared.device
            ));
            None
        }
        Err(_) => {
            say!(
                "tether: {} did not open {} within {} s",
                shared.device,
                mapping.remote(),
                OPEN_TIMEOUT.as_secs()
            );
            stop();
            None
        }
    }
}

enum Listener {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

pub async fn run(options: &HubOptions, request: Request) -> Result<i32> {
    let login = authenticated(options)?;
    let api = Api::new(&login.hub, Some(login.token.clone()))?;
    let device = find(&api, &request.device).await?;

    // Listen before the session, so a port in use fails fast; connections wait in the backlog.
    let mut listeners = Vec::new();
    for mapping in &request.mappings {
        let address = SocketAddr::new(request.bind, mapping.local_port);
        let listener = match mapping.transport {
            Transport::Tcp => Listener::Tcp(
                TcpListener::bind(address)
                    .await
                    .with_context(|| format!("cannot listen on {address} (tcp)"))?,
            ),
            Transport::Udp => Listener::Udp(
                UdpSocket::bind(address)
                    .await
                    .with_context(|| format!("cannot listen on {address} (udp)"))?,
            ),
        };
        listeners.push((listener, mapping.clone()));
    }

    let mut session = Session::open(&login, &device, protocol::PORT_FORWARD).await?;
    // Only now: until the session is up, Ctrl-C ends the process the default way.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let shared = Arc::new(Shared::new(device.name.clone(), request.verbose));
    for (listener, mapping) in listeners {
        let (local, transport) = match &listener {
            Listener::Tcp(socket) => (socket.local_addr()?, "tcp"),
            Listener::Udp(socket) => (socket.local_addr()?, "udp"),
        };
        print_stdout(format_args!(
            "Forwarding {local} -> {} ({transport}) on {}",
            mapping.remote(),
            device.name
        ));
        match listener {
            Listener::Tcp(socket) => {
                tokio::spawn(tcp::listen(socket, mapping, shared.clone()));
            }
            Listener::Udp(socket) => {
                tokio::spawn(udp::listen(socket, mapping, shared.clone()));
            }
        }
    }

    loop {
        let link = Arc::new(Link::new(session.outgoing(), session.version));
        tracing::debug!("session {} speaks version {}", session.sid(), session.version);
        shared.link.send_replace(Some(link.clone()));
        let lost = tokio::select! {
            error = dispatch(&mut session, &link) => error,
            _ = interrupt.recv() => return finish(session).await,
            _ = terminate.recv() => return finish(session).await,
            _ = hangup.recv() => return finish(session).await,
        };
        shared.link.send_replace(None);
        link.sever();
        drop(session);
        // Refused, not lost: a new session would be refused the same way.
        if failure::is_refusal(&lost) {
            return Err(lost);
        }
        shared.log(format_args!("session ended: {lost:#}"));
        say!("tether: session ended ({lost:#}); reconnecting…");
        session = tokio::select! {
            reopened = reconnect(&login, &device, &shared) => reopened?,
            _ = interrupt.recv() => return Ok(0),
            _ = terminate.recv() => return Ok(0),
            _ = hangup.recv() => return Ok(0),
        };
        say!("tether: reconnected");
    }
}

/// Routes the session's messages until it dies; returns why.
pub async fn dispatch(session: &mut Session, link: &Link) -> anyhow::Error {
    loop {
        let envelope = match session.next_envelope().await {
            Ok(envelope) => envelope,
            Err(error) => return error,
        };
        match envelope.proto {
            protocol::PORT_FORWARD => match PortForward::from_owned(envelope) {
                Ok(message) => link.route(message),
                Err(error) => tracing::debug!("ignoring a malformed port forward message: {error}"),
            },
            protocol::CONTROL => notice(&envelope),
            other => tracing::debug!("ignoring a message of protocol {other}"),
        }
    }
}

fn notice(envelope: &Envelope) {
    if let Ok(Control::Error(body)) = Control::from_envelope(envelope) {
        say!("tether: {}", body.err);
    }
}

/// Opens a new session, retrying with backoff. Gives up only when retrying cannot help: the
/// login or the permission is gone, or the device was removed.
async fn reconnect(login: &Authenticated, device: &Device, shared: &Shared) -> Result<Session> {
    let mut delay = BACKOFF_START;
    loop {
        sleep(delay).await;
        match Session::open(login, device, protocol::PORT_FORWARD).await {
            Ok(session) => return Ok(session),
            Err(error) => {
                let status = error.downcast_ref::<HttpError>().map(|e| e.status.as_u16());
                if matches!(status, Some(401 | 403 | 404)) || failure::is_refusal(&error) {
                    return Err(error);
                }
                shared.log(format_args!("reconnecting: {error:#}"));
            }
        }
        delay = (delay * 2).min(BACKOFF_MAX);
    }
}

/// Ctrl-C or SIGTERM: leave politely (the hub tells the device, which closes its sockets).
async fn finish(session: Session) -> Result<i32> {
    session.close().await;
    Ok(0)
}

/// One line on stdout, flushed at once (scripts wait for the `Forwarding` lines).
fn print_stdout(text: std::fmt::Arguments<'_>) {
    crate::output::answer(&text.to_string());
}
