//! Port forwarding (protocol 3): the table of forwarded connections, per session and
//! `connection_id`, and the checks made before one is opened (feature switch, duplicates,
//! `port_forward.max_connections`). Each connection runs in its own task ([`link`]); the table
//! only routes the hub's messages to it and ends it with its session.

mod link;

use std::{borrow::Cow, collections::HashMap, sync::Arc, time::Duration};

use tether_proto::{
    Envelope, Error as ProtoError,
    port_forward::{PortForward, Transport, send_window},
};
use tokio::sync::mpsc;

use self::link::{Delivery, Link, LinkHandle, Options};
use crate::{allow_list::AllowList, config::PortForwardConfig};

pub struct PortForwards {
    enabled: bool,
    allow: Arc<AllowList>,
    max_connections: usize,
    idle_timeout: Option<Duration>,
    outbound: mpsc::Sender<Envelope>,
    /// Keyed by session id and connection id: ids are chosen by each operator's client.
    connections: HashMap<(String, String), LinkHandle>,
}

impl PortForwards {
    pub fn new(config: &PortForwardConfig, outbound: mpsc::Sender<Envelope>) -> PortForwards {
        // The configuration was validated on load; should a rule still not parse, allowing
        // nothing is the safe reading.
        let allow = AllowList::parse(&config.allow).unwrap_or_default();
        PortForwards {
            enabled: config.enabled,
            allow: Arc::new(allow),
            max_connections: config.max_connections,
            idle_timeout: (config.idle_timeout_secs > 0)
                .then(|| Duration::from_secs(config.idle_timeout_secs)),
            outbound,
            connections: HashMap::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Handles one protocol-3 message of session `envelope.sid`, negotiated at `version`, whose
    /// body the caller took out (a forward's data moves on, it is not copied). A message that
    /// does not decode is returned for the caller to refuse.
    pub async fn dispatch(
        &mut self,
        envelope: &Envelope,
        body: Vec<u8>,
        version: u32,
    ) -> Result<(), ProtoError> {
        let message = PortForward::from_parts(envelope, Cow::Owned(body))?;
        let sid = envelope.sid.clone();
        let typ = message.typ();
        let key = (sid.clone(), message.connection_id().to_owned());
        let link = Link {
            sid,
            connection_id: key.1.clone(),
            outbound: self.outbound.clone(),
        };
        match message {
            PortForward::New {
                target: Some(target),
                window,
                ..
            } => {
                if let Err((text, code)) = self.admit(&key) {
                    tracing::warn!("port forward {}/{}: refused: {text}", key.0, key.1);
                    link.error(text, typ, Some(code)).await;
                    return Ok(());
                }
                let options = Options {
                    allow: self.allow.clone(),
                    version,
                    peer_window: send_window(window),
                    idle_timeout: self.idle_timeout,
                };
                self.connections.insert(key, link::start(link, target, options));
            }
            PortForward::New { target: None, .. } => {
                let text = "new without remote_host and remote_port".to_owned();
                link.error(text, typ, Some(400)).await;
            }
            PortForward::Forward { data, .. } => {
                let Some(connection) = self.connections.get(&key) else {
                    link.error("unknown connection".into(), typ, Some(404)).await;
                    return Ok(());
                };
                let transport = connection.transport;
                match connection.forward(data) {
                    Delivery::Queued | Delivery::Closed => {}
                    // A datagram dropped as a congested network would; still acked, since a
                    // stock-style sender waits for the ack before sending the next.
                    Delivery::Overflow if transport == Transport::Udp => {
                        let connection_id = key.1.clone();
                        link.send(PortForward::Ack { connection_id }).await;
                    }
                    Delivery::Overflow => {
                        tracing::warn!(
                            "port forward {}/{}: the hub exceeded the flow-control window; \
                             closing the connection",
                            key.0,
                            key.1
                        );
                        self.connections.remove(&key);
                        let text = "flow-control window exceeded".to_owned();
                        link.error(text, typ, Some(400)).await;
                        let connection_id = key.1.clone();
                        link.send(PortForward::Stop { connection_id }).await;
                    }
                }
            }
            PortForward::Ack { .. } => match self.connections.get(&key) {
                Some(connection) => connection.acknowledged(),
                None => {
                    link.error("unknown connection".into(), typ, Some(404)).await;
                }
            },
            PortForward::Stop { .. } => {
                // Unknown: most likely the echo of our own `stop`; nothing to answer.
                if let Some(connection) = self.connections.get(&key)
                    && connection.stop() == Delivery::Closed
                {
                    self.connections.remove(&key);
                }
            }
            PortForward::Error { body, .. } => {
                tracing::warn!(
                    "port forward {}/{}: the hub reports an error: {}",
                    key.0,
                    key.1,
                    body.err
                );
                self.connections.remove(&key);
            }
        }
        Ok(())
    }

    /// The checks before a connection is dialled, in order; the target is checked by its task.
    fn admit(&mut self, key: &(String, String)) -> Result<(), (String, i64)> {
        if !self.enabled {
            return Err((
                "port forwarding is disabled on this device (port_forward.enabled)".into(),
                403,
            ));
        }
        // Ended connections free their slot (and their id) here.
        self.connections.retain(|_, connection| !connection.is_finished());
        if self.connections.contains_key(key) {
            return Err((format!("connection {} is already open", key.1), 409));
        }
        if self.connections.len() >= self.max_connections {
            return Err((
                format!(
                    "too many forwarded connections: limit of {} reached \
                     (port_forward.max_connections)",
                    self.max_connections
                ),
                429,
            ));
        }
        Ok(())
    }

    /// Closes the connections of one session (control `close`), without telling the hub.
    pub fn close_session(&mut self, sid: &str) {
        self.connections.retain(|(session, _), _| session != sid);
    }

    /// Closes every connection (the WebSocket is gone).
    pub fn close_all(&mut self) {
        let open = self.connections.values().filter(|c| !c.is_finished()).count();
        if open > 0 {
            tracing::info!("closing {open} forwarded connection(s)");
        }
        self.connections.clear();
    }

    /// Whether a session has forwarded connections (its negotiated version is still needed).
    pub fn has_session(&self, sid: &str) -> bool {
        self.connections.keys().any(|(session, _)| session == sid)
    }
}

#[cfg(test)]
mod tests;
