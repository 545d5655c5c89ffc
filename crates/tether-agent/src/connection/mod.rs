//! The link to the hub: get a device token, open the WebSocket, serve it (reader, writer,
//! keep-alive, token renewal, the device's inventory when it changes), and reconnect with backoff
//! when it fails, hub after hub.

use std::{
    cell::{Cell, RefCell},
    sync::Arc,
    time::Duration,
};

use futures_util::{SinkExt as _, StreamExt as _};
use tether_net::{HubUrl, NetError, Proxy, WebSocket};
use tether_proto::{
    Envelope,
    auth::DEVICE_CONNECT_PATH,
    clock::unix_seconds,
    compact::{self, Link},
    control::Control,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::{mpsc, watch},
    time::{Instant, sleep, sleep_until, timeout},
};
use tokio_tungstenite::{WebSocketStream, tungstenite::Message};

use crate::{
    auth::{Authenticator, TokenStore},
    backoff::Backoff,
    inventory,
    sessions::Sessions,
    settings::Settings,
};

/// Messages queued for the hub before shells and replies wait for the writer.
const OUTBOUND_QUEUE: usize = 64;
/// Largest frame accepted from the hub.
const MAX_MESSAGE: usize = 1 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// A connection that stayed up this long resets the backoff.
const STABLE_CONNECTION: Duration = Duration::from_secs(30);
/// How long shutdown waits for shells to be reaped and for the close frame to go out.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Retry delay of a failed token renewal while connected.
const RENEWAL_RETRY: Duration = Duration::from_secs(60);

/// The agent's state across connections.
pub struct Agent {
    pub settings: Settings,
    pub tls: Arc<rustls::ClientConfig>,
    pub authenticator: Authenticator,
    pub tokens: TokenStore,
}

/// How one attempt at a connection ended.
enum Outcome {
    /// SIGTERM or SIGINT: stop for good.
    Shutdown,
    /// Connected, then lost the connection.
    Lost(String),
    /// Never got connected.
    Failed(String),
}

/// Connects and reconnects until shutdown is requested.
pub async fn run(mut agent: Agent, mut shutdown: watch::Receiver<bool>) {
    let (outbound, mut outbound_receiver) = mpsc::channel(OUTBOUND_QUEUE);
    let mut sessions = Sessions::new(agent.settings.terminal.clone(), outbound)
        .with_port_forward(&agent.settings.port_forward)
        .with_file_transfer(&agent.settings.file_transfer)
        .with_consent(&agent.settings.consent, &agent.settings.data_dir);
    let mut backoff = Backoff::new(agent.settings.reconnect_max_delay);
    let hubs = agent.settings.hubs.clone();
    for hub in hubs.iter().cycle() {
        let attempt_started = Instant::now();
        let connected = tokio::select! {
            connected = agent.connect(hub) => connected,
            _ = requested(&mut shutdown) => return,
        };
        let outcome = match connected {
            Ok(socket) => {
                tracing::info!("connected to {hub}");
                agent
                    .serve(socket, hub, &mut sessions, &mut outbound_receiver, &mut shutdown)
                    .await
            }
            Err(reason) => Outcome::Failed(reason),
        };
        let delay = match outcome {
            Outcome::Shutdown => return,
            Outcome::Lost(reason) => {
                tracing::warn!("connection lost: {reason}");
                if attempt_started.elapsed() > STABLE_CONNECTION {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                tracing::info!("reconnecting in {:.1}s", delay.as_secs_f64());
                delay
            }
            Outcome::Failed(reason) => {
                let delay = backoff.next_delay();
                tracing::warn!("{reason}; retrying in {:.1}s", delay.as_secs_f64());
                delay
            }
        };
        tokio::select! {
            _ = sleep(delay) => {}
            _ = requested(&mut shutdown) => return,
        }
    }
}

/// Resolves once shutdown is requested (never, if the sender is gone).
async fn requested(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl Agent {
    /// A token that is neither near expiry nor due for renewal; asks the hub for one if needed.
    async fn token_for(&mut self, hub: &HubUrl) -> Result<String, String> {
        let now = unix_seconds();
        if let Some(token) = self.tokens.usable(now)
            && now < token.renew_at()
        {
            return Ok(token.text.clone());
        }
        match self.authenticator.authenticate(hub).await {
            Ok(text) => {
                tracing::info!("authenticated with {hub}");
                self.tokens.store(&text);
                Ok(text)
            }
            Err(error) => match self.tokens.usable(now) {
                Some(token) => {
                    tracing::warn!("cannot renew the device token ({error}); using the current one");
                    Ok(token.text.clone())
                }
                None => Err(error.to_string()),
            },
        }
    }

    async fn connect(&mut self, hub: &HubUrl) -> Result<WebSocket, String> {
        let token = self.token_for(hub).await?;
        let proxy = Proxy::from_env(&hub.host);
        let result = tether_net::connect_websocket(
            hub,
            DEVICE_CONNECT_PATH,
            &token,
            self.tls.clone(),
            proxy.as_ref(),
            MAX_MESSAGE,
            CONNECT_TIMEOUT,
        )
        .await;
        match result {
            Ok(socket) => Ok(socket),
            Err(NetError::Http { status: 401, .. }) => {
                self.tokens.invalidate();
                Err(format!(
                    "{hub} refused the device token (HTTP 401); re-authenticating"
                ))
            }
            Err(error) => Err(format!("cannot connect to {hub}: {error}")),
        }
    }

    /// Serves one connection until it fails or shutdown is requested; ends all shells then.
    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        socket: WebSocketStream<S>,
        hub: &HubUrl,
        sessions: &mut Sessions,
        outbound: &mut mpsc::Receiver<Envelope>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Outcome {
        let (mut sink, mut stream) = socket.split();
        // Whatever ended shells queued for the previous connection is stale.
        while outbound.try_recv().is_ok() {}
        // File data has a queue of its own, served only when `outbound` is empty, so that shell
        // output never waits behind it; the reader needs `sessions`, so the writer takes it.
        let mut bulk = sessions.take_bulk();
        if let Some(bulk) = bulk.as_mut() {
            while bulk.try_recv().is_ok() {}
        }
        // Which sessions speak compact frames (version 3): the reader and the writer pass every
        // frame through it, in order; neither holds it across an await.
        let link = RefCell::new(Link::new());
        let announcement = link.borrow_mut().encode(&sessions.announcement());
        for sid in sessions.compact_shells() {
            link.borrow_mut().speak_compact(sid);
        }
        if sink.send(Message::binary(announcement)).await.is_err() {
            sessions.return_bulk(bulk);
            return Outcome::Lost("the connection failed at once".into());
        }
        // Then what the device is (a hub may have restarted: every connection gets it once).
        let (features, versions) = sessions.features();
        let mut reported = inventory::collect(features.clone(), versions.clone());
        let frame = link
            .borrow_mut()
            .encode(&Control::Inventory(reported.clone()).to_envelope(""));
        if sink.send(Message::binary(frame)).await.is_err() {
            sessions.return_bulk(bulk);
            return Outcome::Lost("the connection failed at once".into());
        }
        let interval = self.settings.keepalive_interval;
        let last_received = Cell::new(Instant::now());
        let reader = async {
            loop {
                let message = match stream.next().await {
                    None => return "the hub closed the connection".to_owned(),
                    Some(Err(error)) => return error.to_string(),
                    Some(Ok(message)) => message,
                };
                last_received.set(Instant::now());
                match message {
                    Message::Binary(frame) => {
                        let decoded = link.borrow_mut().decode(&frame);
                        match decoded {
                            Ok(envelope) => sessions.handle(envelope).await,
                            // The hub's compact tables may have moved on: start afresh.
                            Err(error) if compact::is_compact(&frame) => {
                                tracing::warn!("malformed compact frame from the hub: {error}");
                                return format!("malformed compact frame from the hub: {error}");
                            }
                            Err(error) => sessions.malformed(&error).await,
                        }
                    }
                    Message::Text(text) => tracing::debug!("ignoring a text frame of {} bytes", text.len()),
                    Message::Close(frame) => {
                        let why = frame
                            .map(|f| format!(": {} {}", f.code, f.reason))
                            .unwrap_or_default();
                        return format!("the hub closed the connection{why}");
                    }
                    // Pongs to the hub's pings are queued and flushed by tungstenite itself.
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                }
            }
        };
        let encode = |envelope: &Envelope, next: Option<&Envelope>| {
            let mut frame = Vec::with_capacity(envelope.body.len() + 16);
            link.borrow_mut().encode_followed_into(envelope, next, &mut frame);
            Message::binary(frame)
        };
        let writer = async {
            let mut ping = tokio::time::interval_at(Instant::now() + interval, interval);
            let mut recheck =
                tokio::time::interval_at(Instant::now() + inventory::RECHECK, inventory::RECHECK);
            // The next message of `outbound`, taken early so that the frame before it knows what
            // follows (a burst of output is then one deflate stream); it is always sent next.
            let mut ahead: Option<Envelope> = None;
            loop {
                let message = match ahead.take() {
                    Some(envelope) => {
                        ahead = outbound.try_recv().ok();
                        encode(&envelope, ahead.as_ref())
                    }
                    None => tokio::select! {
                        biased;
                        _ = ping.tick() => Message::Ping(Default::default()),
                        _ = recheck.tick() => {
                            let mut current = inventory::collect(features.clone(), versions.clone());
                            if !inventory::changed(&reported, &mut current) {
                                continue;
                            }
                            tracing::info!("the device's inventory changed; reporting it");
                            let envelope = Control::Inventory(current.clone()).to_envelope("");
                            reported = current;
                            encode(&envelope, None)
                        }
                        envelope = outbound.recv() => match envelope {
                            Some(envelope) => {
                                ahead = outbound.try_recv().ok();
                                encode(&envelope, ahead.as_ref())
                            }
                            None => return "the outbound queue closed".to_owned(),
                        },
                        Some(envelope) = crate::file_transfer::next_bulk(&mut bulk) => encode(&envelope, None),
                    },
                };
                if let Err(error) = sink.send(message).await {
                    return error.to_string();
                }
            }
        };
        let watchdog = async {
            loop {
                sleep_until(last_received.get() + interval * 2).await;
                let silent = last_received.get().elapsed();
                if silent >= interval * 2 {
                    tracing::warn!("hub silent for {}s, reconnecting", silent.as_secs());
                    return format!("hub silent for {}s", silent.as_secs());
                }
            }
        };
        let outcome = tokio::select! {
            reason = reader => Outcome::Lost(reason),
            reason = writer => Outcome::Lost(reason),
            reason = watchdog => Outcome::Lost(reason),
            _ = renew_when_due(&self.authenticator, &mut self.tokens, hub) => unreachable!(),
            _ = requested(shutdown) => Outcome::Shutdown,
        };
        sessions.return_bulk(bulk);
        let shells = match outcome {
            Outcome::Shutdown => sessions.end_all(),
            _ => sessions.detach_all(),
        };
        if let Outcome::Shutdown = outcome {
            tracing::info!("shutting down");
            let reaped = futures_util::future::join_all(shells);
            if timeout(SHUTDOWN_GRACE, reaped).await.is_err() {
                tracing::warn!("some shells did not end in time");
            }
            let close = async {
                sink.send(Message::Close(None)).await?;
                sink.close().await
            };
            let _ = timeout(SHUTDOWN_GRACE, close).await;
        }
        outcome
    }
}

/// Fetches a new token once 3/4 of the current one's lifetime has passed. The live connection
/// is unaffected (the hub checks the token only at the upgrade); the new token serves the next.
async fn renew_when_due(authenticator: &Authenticator, tokens: &mut TokenStore, hub: &HubUrl) -> ! {
    // Never hammer the hub, whatever the token says.
    const MIN_WAIT: Duration = Duration::from_secs(10);
    loop {
        let wait = match tokens.current() {
            Some(token) => Duration::from_secs((token.renew_at() - unix_seconds()).max(0) as u64),
            None => Duration::from_secs(u32::MAX.into()),
        };
        sleep(wait.max(MIN_WAIT)).await;
        match authenticator.authenticate(hub).await {
            Ok(text) => {
                tokens.store(&text);
                tracing::info!("device token renewed");
            }
            Err(error) => {
                tracing::warn!(
                    "cannot renew the device token: {error}; retrying in {}s",
                    RENEWAL_RETRY.as_secs()
                );
                sleep(RENEWAL_RETRY).await;
            }
        }
    }
}

#[cfg(test)]
mod tests;
