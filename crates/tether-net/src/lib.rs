//! Client-side transport shared by the agent and the CLI.
//!
//! Every leg is TLS: [`tls`] builds the trust (system roots, a CA file, or a pinned certificate
//! fingerprint); [`dial`] opens TCP, through an HTTP proxy (`CONNECT`) when `HTTPS_PROXY` says so,
//! then TLS, then either a WebSocket or one small HTTP/1.1 request. [`allocator`] keeps the
//! relay's buffers from being handed back to the system after each message (the hub uses it too).

pub mod allocator;
pub mod dial;
pub mod tls;

pub use dial::{HubUrl, Proxy, WebSocket, connect_websocket, http_request, open_tls};
pub use tls::{TrustOptions, client_config, sha256_fingerprint};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("invalid URL `{0}`: {1}")]
    Url(String, &'static str),
    #[error("cannot read {path}: {source}")]
    File { path: String, source: std::io::Error },
    #[error("no usable certificate in {0}")]
    NoCertificates(String),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("connecting to {address}: {source}")]
    Connect { address: String, source: std::io::Error },
    #[error("proxy {proxy} refused CONNECT: {status}")]
    ProxyRefused { proxy: String, status: String },
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("WebSocket: {0}")]
    WebSocket(#[from] Box<tokio_tungstenite::tungstenite::Error>),
    #[error("HTTP {status}: {body}")]
    Http { status: u16, body: String },
    #[error("malformed HTTP response")]
    MalformedResponse,
}
