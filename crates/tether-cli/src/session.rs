//! The user leg of a session, shared by `tether terminal` and `tether exec`: opening the
//! WebSocket, the handshake (the device's `accept`), keep-alive, and turning protocol messages
//! into the few events a command acts on (see [`crate::messages`]).
//!
//! A session is opened for one protocol, the one its command speaks. A refusal of that protocol
//! ends the command at once, as an error: a tether-agent that does not offer it (its `accept`
//! lists what is enabled), or a control `error` naming it in `msgproto` (the stock agent's
//! "protocol 2 is not enabled on this device", a refused `new`). Refusals of other protocols
//! are only shown.
//!
//! Writes go through a channel to one writer task, so nothing here awaits the socket while a
//! caller's `select!` may cancel it: [`Session::next`] is cancel-safe and [`Session::send`]
//! never blocks.

use std::time::Duration;

use anyhow::{Result, bail};
use futures_util::{SinkExt, StreamExt, stream::SplitStream};
use tether_net::{NetError, Proxy, WebSocket, connect_websocket};
use tether_proto::{
    Envelope,
    api::{Device, user_connect_path},
    protocol,
    shell::Shell,
};
use tokio::{
    sync::mpsc,
    task::JoinHandle,
    time::{Instant, Interval, interval_at, sleep_until, timeout},
};
use tokio_tungstenite::tungstenite::Message;

use crate::{
    api::HttpError,
    failure::{self, refusal, transport},
    hub::Authenticated,
    messages::{Event, Inbound, interpret},
    output::say,
};

/// Far above any frame a session carries (a 256 KiB file chunk, a `file_list` of 10,000
/// entries), yet bounded.
const MAX_MESSAGE: usize = 16 << 20;
/// TCP, TLS and the WebSocket upgrade together.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// The hub waits 5 s for the device's `accept` before assuming version 1; allow for slow links.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Keeps NAT and proxy idle timers from closing a quiet session.
const KEEPALIVE: Duration = Duration::from_secs(30);
/// Two missed keep-alive answers and some slack: the hub is gone.
const SILENCE_LIMIT: Duration = Duration::from_secs(75);

/// A session id as a URL query value (ids are UUIDs; anything else is percent-encoded).
fn url_component(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (byte as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A cloneable way to queue messages on a session from any task; sending never blocks, and
/// fails silently once the session is gone (its reader reports the loss).
#[derive(Clone)]
pub struct Outgoing {
    channel: mpsc::UnboundedSender<Message>,
    sid: String,
}

impl Outgoing {
    pub fn send_envelope(&self, envelope: &Envelope) {
        let _ = self.channel.send(Message::binary(envelope.encode()));
    }

    pub fn sid(&self) -> &str {
        &self.sid
    }
}

pub struct Session {
    incoming: SplitStream<WebSocket>,
    outgoing: mpsc::UnboundedSender<Message>,
    writer: JoinHandle<()>,
    sid: String,
    /// The protocol version the device accepted (1: stock Mender agent, 2: tether-agent).
    pub version: u32,
    /// The protocol the command speaks (shell, file transfer, port forward).
    protocol: u16,
    /// The device's name, for messages.
    device: String,
    keepalive: Interval,
    last_heard: Instant,
}

impl Session {
    /// Opens the session to `device` for a command that speaks `protocol`, and waits for the
    /// device's `accept`.
    pub async fn open(login: &Authenticated, device: &Device, protocol: u16) -> Result<Session> {
        Session::connect(login, device, &user_connect_path(&device.id), protocol).await
    }

    /// Re-attaches to detached terminal `sid` on `device`; the device replays its output from
    /// byte `offset` of the stream on (after answering `new`).
    pub async fn attach(login: &Authenticated, device: &Device, sid: &str, offset: u64) -> Result<Session> {
        let path = format!(
            "{}?attach={}&offset={offset}",
            user_connect_path(&device.id),
            url_component(sid)
        );
        Session::connect(login, device, &path, protocol::SHELL).await
    }

    async fn connect(login: &Authenticated, device: &Device, path: &str, protocol: u16) -> Result<Session> {
        let hub = &login.hub;
        let proxy = Proxy::from_env(&hub.url.host);
        let socket = connect_websocket(
            &hub.url,
            path,
            &login.token,
            hub.tls.clone(),
            proxy.as_ref(),
            MAX_MESSAGE,
            CONNECT_TIMEOUT,
        )
        .await
        .map_err(|error| match error {
            // A refusal before the upgrade: offline device, bad token, no permission.
            NetError::Http { status, body } => {
                let status =
                    reqwest::StatusCode::from_u16(status).unwrap_or(reqwest::StatusCode::BAD_GATEWAY);
                anyhow::Error::new(HttpError::from_body(status, body.as_bytes()))
            }
            other => failure::unreachable(&hub.url.to_string(), &other),
        })?;
        let (mut sink, incoming) = socket.split();
        let (outgoing, mut queue) = mpsc::unbounded_channel::<Message>();
        let writer = tokio::spawn(async move {
            while let Some(message) = queue.recv().await {
                let closing = matches!(message, Message::Close(_));
                if let Err(error) = sink.send(message).await {
                    // The reading side sees the connection die and reports it.
                    tracing::debug!("writing to the hub: {error}");
                    return;
                }
                if closing {
                    return;
                }
            }
        });
        let now = Instant::now();
        let mut session = Session {
            incoming,
            outgoing,
            writer,
            sid: String::new(),
            version: tether_proto::version::MENDER,
            protocol,
            device: device.name.clone(),
            keepalive: interval_at(now + KEEPALIVE, KEEPALIVE),
            last_heard: now,
        };
        if let Err(error) = session.await_accept(&device.name).await {
            session.close().await;
            return Err(error);
        }
        Ok(session)
    }

    /// The handshake: the first control message is the device's `accept`, or an `error`. A
    /// device that asks for local approval first (`wait`) gets the time it announced.
    async fn await_accept(&mut self, device: &str) -> Result<()> {
        let mut deadline = Instant::now() + ACCEPT_TIMEOUT;
        loop {
            let Ok(envelope) =
                timeout(deadline.saturating_duration_since(Instant::now()), self.receive()).await
            else {
                bail!("{device} did not answer the session handshake in time");
            };
            let envelope = envelope?;
            match interpret(&envelope) {
                Inbound::Waiting { reason, timeout_secs } => {
                    say!("tether: {device}: {reason} (up to {timeout_secs} s)...");
                    deadline = Instant::now() + Duration::from_secs(timeout_secs) + ACCEPT_TIMEOUT;
                }
                Inbound::Accepted { version, protocols } => {
                    self.sid = envelope.sid;
                    self.version = version;
                    // A tether-agent lists what it offers; the stock agent's list (or the one
                    // the hub makes up for it) is not to be trusted to be complete.
                    if version >= tether_proto::version::TETHER && !protocols.contains(&self.protocol) {
                        return Err(refusal(not_offered(device, self.protocol)));
                    }
                    return Ok(());
                }
                // Not a transport failure: the hub or device said no, in words.
                Inbound::Closed(text) | Inbound::Event(Event::Notice(text)) => bail!("{text}"),
                Inbound::Refused { text, .. } => return Err(refusal(format!("{device}: {text}"))),
                Inbound::Reply(answer) => self.send_envelope(&answer),
                Inbound::Event(_) | Inbound::Ignore => continue,
            }
        }
    }

    /// The session's id, for messages built by the caller.
    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// A handle other tasks can send messages on (the session's one writer task sends them).
    pub fn outgoing(&self) -> Outgoing {
        Outgoing {
            channel: self.outgoing.clone(),
            sid: self.sid.clone(),
        }
    }

    /// Queues one shell message for the device.
    pub fn send(&self, message: Shell) {
        self.send_envelope(&message.to_envelope(&self.sid));
    }

    fn send_envelope(&self, envelope: &Envelope) {
        // A closed channel means the writer already failed; `next` reports the loss.
        let _ = self.outgoing.send(Message::binary(envelope.encode()));
    }

    /// Ends the session from this side: `stop` to the shell, then a WebSocket close, waiting
    /// briefly so both leave before the process exits.
    pub async fn stop(self) {
        self.send(Shell::Stop {
            user_id: None,
            status: None,
            text: Vec::new(),
            exit_status: None,
        });
        self.close().await;
    }

    /// Closes the WebSocket politely (the hub then tells the device the user left).
    pub async fn close(self) {
        let _ = self.outgoing.send(Message::Close(None));
        let _ = timeout(Duration::from_secs(2), self.writer).await;
    }

    /// A refusal of another protocol than the command's is only worth showing.
    fn refused(&self, protocol: u16, text: String) -> Result<Event> {
        if protocol == self.protocol {
            Err(refusal(format!("{}: {text}", self.device)))
        } else {
            Ok(Event::Notice(text))
        }
    }

    /// The next event; errors are transport failures (or the hub ending the session), and
    /// refusals of the command's protocol. Cancel-safe.
    pub async fn next(&mut self) -> Result<Event> {
        loop {
            let envelope = self.receive().await?;
            match interpret(&envelope) {
                Inbound::Event(event) => return Ok(event),
                Inbound::Reply(answer) => self.send_envelope(&answer),
                Inbound::Closed(text) => return Err(transport(text)),
                Inbound::Refused { protocol, text } => return self.refused(protocol, text),
                Inbound::Accepted { .. } | Inbound::Waiting { .. } | Inbound::Ignore => continue,
            }
        }
    }

    /// The next message that is not the shell's business (port forward, file transfer, or a
    /// control `error` that does not end the session), with pings answered and the end of the
    /// session reported as in [`Session::next`]. Cancel-safe.
    pub async fn next_envelope(&mut self) -> Result<Envelope> {
        loop {
            let envelope = self.receive().await?;
            if envelope.proto != protocol::CONTROL {
                return Ok(envelope);
            }
            match interpret(&envelope) {
                Inbound::Reply(answer) => self.send_envelope(&answer),
                Inbound::Closed(text) => return Err(transport(text)),
                Inbound::Refused { protocol, text } => {
                    self.refused(protocol, text)?;
                    return Ok(envelope);
                }
                Inbound::Event(_) => return Ok(envelope),
                Inbound::Accepted { .. } | Inbound::Waiting { .. } | Inbound::Ignore => continue,
            }
        }
    }

    /// The next protocol message, keeping the connection alive on the way.
    async fn receive(&mut self) -> Result<Envelope> {
        loop {
            let silence_deadline = self.last_heard + SILENCE_LIMIT;
            let frame = tokio::select! {
                frame = self.incoming.next() => frame,
                _ = self.keepalive.tick() => {
                    let _ = self.outgoing.send(Message::Ping(Vec::new().into()));
                    continue;
                }
                _ = sleep_until(silence_deadline) => {
                    return Err(failure::lost(format!(
                        "the hub stopped answering (nothing heard for {} s)",
                        SILENCE_LIMIT.as_secs()
                    )));
                }
            };
            self.last_heard = Instant::now();
            let bytes = match frame {
                Some(Ok(Message::Binary(bytes))) => bytes,
                Some(Ok(Message::Close(Some(frame)))) if !frame.reason.trim().is_empty() => {
                    return Err(transport(format!(
                        "the hub closed the connection: {}",
                        frame.reason.trim()
                    )));
                }
                Some(Ok(Message::Close(_))) | None => {
                    return Err(failure::lost("connection to the hub lost"));
                }
                Some(Err(error)) => {
                    tracing::debug!("reading from the hub: {}", failure::describe(&error));
                    return Err(failure::lost("connection to the hub lost"));
                }
                // WebSocket pings are answered by tungstenite; pongs only prove liveness.
                Some(Ok(_)) => continue,
            };
            let envelope = match Envelope::decode(&bytes) {
                Ok(envelope) => envelope,
                Err(error) => {
                    tracing::debug!("ignoring an undecodable message: {error}");
                    continue;
                }
            };
            return Ok(envelope);
        }
    }
}

/// A tether-agent left `protocol` out of its `accept`: it is disabled in the agent's
/// configuration, and every message of it would be refused.
fn not_offered(device: &str, protocol: u16) -> String {
    let (what, setting) = match protocol {
        protocol::SHELL => ("a terminal", "[terminal] enabled"),
        protocol::FILE_TRANSFER => ("file transfer", "[file_transfer] enabled"),
        protocol::PORT_FORWARD => ("port forwarding", "[port_forward] enabled"),
        _ => ("this protocol", "its configuration"),
    };
    format!(
        "{device} does not offer {what}: it is disabled on the device ({setting} in the agent's configuration)"
    )
}
