//! A fake device for protocol-level tests: it authenticates like an agent (Ed25519-signed
//! request) or like a Mender client (RSA or ECDSA key made by openssl, see [`OpensslKey`]) and
//! opens the device WebSocket, then sends whatever the test wants, raw.

use std::{sync::Arc, time::Duration};

use base64::Engine as _;
use ed25519_dalek::{
    Signer as _, SigningKey,
    pkcs8::{EncodePublicKey as _, spki::der::pem::LineEnding},
};
use futures_util::{SinkExt as _, StreamExt as _};
use tether_net::{HubUrl, NetError, WebSocket};
use tether_proto::{
    Envelope,
    auth::{AUTH_PATH, AuthRequest, DEVICE_CONNECT_PATH, SIGNATURE_HEADER},
};
use tokio_tungstenite::tungstenite::Message;

use crate::{Hub, OpensslKey, WAIT, unique_name};

/// The key a fake device signs its auth requests with.
#[derive(Clone)]
enum DeviceKey {
    /// tether-agent's kind of key.
    Ed25519(Box<SigningKey>),
    /// A Mender client's kind of key (RSA or ECDSA), used through the openssl command line.
    Openssl(Arc<OpensslKey>),
}

/// A device identity (key + `hostname`) speaking to one hub.
pub struct FakeDevice {
    key: DeviceKey,
    /// The `hostname` attribute: the device's name in listings.
    pub name: String,
    hub: HubUrl,
    tls: Arc<rustls::ClientConfig>,
}

/// What the hub sent next on a device WebSocket.
#[derive(Debug)]
pub enum Received {
    /// A binary frame holding a protocol message.
    Message(Envelope),
    /// A binary frame that is not a protocol message.
    Undecodable(Vec<u8>),
    Text(String),
    /// A close frame: code and reason.
    Close(Option<(u16, String)>),
    /// The connection ended without a close frame (EOF or a transport error).
    Ended(String),
    /// Nothing came before the deadline.
    Nothing,
}

impl FakeDevice {
    /// A new device with a fresh key and a unique name.
    pub fn new(hub: &Hub) -> FakeDevice {
        FakeDevice::named(hub, &unique_name("fake"))
    }

    pub fn named(hub: &Hub, name: &str) -> FakeDevice {
        FakeDevice {
            key: DeviceKey::Ed25519(Box::new(SigningKey::from_bytes(&rand::random::<[u8; 32]>()))),
            name: name.to_owned(),
            hub: hub.hub_url(),
            tls: hub.tls(),
        }
    }

    /// A new device with a unique name that signs with `key` (made by openssl), as a Mender
    /// client does.
    pub fn with_openssl_key(hub: &Hub, key: OpensslKey) -> FakeDevice {
        FakeDevice {
            key: DeviceKey::Openssl(Arc::new(key)),
            name: unique_name("mender"),
            hub: hub.hub_url(),
            tls: hub.tls(),
        }
    }

    /// The same device (key and name) speaking to another hub, e.g. another replica.
    pub fn at(&self, hub: &Hub) -> FakeDevice {
        FakeDevice {
            key: self.key.clone(),
            name: self.name.clone(),
            hub: hub.hub_url(),
            tls: hub.tls(),
        }
    }

    /// The public key, SPKI PEM, as the agent sends it.
    pub fn pubkey_pem(&self) -> String {
        match &self.key {
            DeviceKey::Ed25519(key) => key
                .verifying_key()
                .to_public_key_pem(LineEnding::LF)
                .expect("encode the public key"),
            DeviceKey::Openssl(key) => key.public_pem().to_owned(),
        }
    }

    /// The JSON body of an authentication request for this device.
    pub fn auth_body(&self, provisioning_key: Option<&str>) -> Vec<u8> {
        let request = AuthRequest {
            id_data: serde_json::json!({ "hostname": self.name, "machine_id": self.name }).to_string(),
            pubkey: self.pubkey_pem(),
            provisioning_key: provisioning_key.map(str::to_owned),
            enrolment_token: None,
            agent_version: Some("e2e-fake".into()),
        };
        serde_json::to_vec(&request).expect("serialize the auth request")
    }

    /// `base64(signature of body)` with this device's key: Ed25519, or `openssl dgst -sha256
    /// -sign` for an openssl key.
    pub fn sign(&self, body: &[u8]) -> String {
        let signature = match &self.key {
            DeviceKey::Ed25519(key) => key.sign(body).to_bytes().to_vec(),
            DeviceKey::Openssl(key) => key.sign(body),
        };
        base64::engine::general_purpose::STANDARD.encode(signature)
    }

    /// POSTs `body` to the authentication endpoint with `signature` (none: no header at all).
    /// Returns the status and body text.
    pub fn post_auth(&self, body: &[u8], signature: Option<&str>) -> (u16, String) {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(signature) = signature {
            headers.push((SIGNATURE_HEADER, signature));
        }
        let (status, body) = crate::block_on(tether_net::http_request(
            &self.hub,
            Arc::clone(&self.tls),
            None,
            "POST",
            AUTH_PATH,
            &headers,
            body,
            Duration::from_secs(20),
        ))
        .unwrap_or_else(|e| panic!("POST {AUTH_PATH}: {e}"));
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// A correctly signed authentication request; returns the status and body text.
    pub fn authenticate(&self, provisioning_key: Option<&str>) -> (u16, String) {
        let body = self.auth_body(provisioning_key);
        let signature = self.sign(&body);
        self.post_auth(&body, Some(&signature))
    }

    /// Authenticates and returns the device token; panics unless the hub answers 200.
    pub fn token(&self, provisioning_key: Option<&str>) -> String {
        let (status, body) = self.authenticate(provisioning_key);
        assert_eq!(status, 200, "device authentication refused: {body}");
        body.trim().to_owned()
    }

    /// Opens the device WebSocket with `token` (call inside [`crate::block_on`]).
    pub async fn connect(&self, token: &str) -> Result<WebSocket, NetError> {
        tether_net::connect_websocket(
            &self.hub,
            DEVICE_CONNECT_PATH,
            token,
            Arc::clone(&self.tls),
            None,
            16 << 20,
            Duration::from_secs(20),
        )
        .await
    }
}

/// Sends one binary frame.
pub async fn send_binary(socket: &mut WebSocket, bytes: Vec<u8>) -> Result<(), String> {
    socket
        .send(Message::Binary(bytes.into()))
        .await
        .map_err(|e| e.to_string())
}

/// The next thing the hub sends that is not a ping or pong, waiting up to `limit`.
pub async fn receive(socket: &mut WebSocket, limit: Duration) -> Received {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let next = match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return Received::Nothing,
            Ok(next) => next,
        };
        return match next {
            None => Received::Ended("end of stream".into()),
            Some(Err(e)) => Received::Ended(e.to_string()),
            Some(Ok(Message::Binary(bytes))) => match Envelope::decode(&bytes) {
                Ok(envelope) => Received::Message(envelope),
                Err(_) => Received::Undecodable(bytes.to_vec()),
            },
            Some(Ok(Message::Text(text))) => Received::Text(text.to_string()),
            Some(Ok(Message::Close(frame))) => {
                Received::Close(frame.map(|f| (u16::from(f.code), f.reason.to_string())))
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
        };
    }
}

/// Everything the hub sends until the connection ends or `limit` passes (pings skipped).
pub async fn receive_until_end(socket: &mut WebSocket, limit: Duration) -> Vec<Received> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut received = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let next = receive(socket, left).await;
        let end = matches!(next, Received::Close(_) | Received::Ended(_) | Received::Nothing);
        received.push(next);
        if end {
            return received;
        }
    }
}

/// The next envelope on `socket` (a device's or a user's session), skipping pings; panics when
/// nothing comes within [`WAIT`] or the socket closes.
pub async fn next_envelope(socket: &mut WebSocket) -> Envelope {
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("the hub answers")
            .expect("the session stays open")
            .expect("a frame");
        if let Message::Binary(bytes) = message {
            return Envelope::decode(&bytes).expect("an envelope");
        }
    }
}
