//! Dialling the hub: URL parsing, proxy `CONNECT`, TLS, WebSocket upgrade and one-shot HTTP.

use std::{sync::Arc, time::Duration};

use base64::Engine as _;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, client::TlsStream};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{client::IntoClientRequest, http::HeaderValue, protocol::WebSocketConfig},
};

use crate::NetError;

pub type WebSocket = WebSocketStream<TlsStream<TcpStream>>;

/// Sent on every request, so that the hub's audit log can tell clients apart.
const USER_AGENT: &str = concat!("tether/", env!("CARGO_PKG_VERSION"));

/// Limit for reading an HTTP response head or a one-shot response body.
const MAX_RESPONSE: usize = 1 << 20;

/// A hub address: `https://host[:port]` (also `wss://`); the port defaults to 443.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubUrl {
    pub host: String,
    pub port: u16,
}

impl HubUrl {
    pub fn parse(text: &str) -> Result<HubUrl, NetError> {
        let bad = |why| NetError::Url(text.to_owned(), why);
        let rest = text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("wss://"))
            .ok_or_else(|| bad("the hub URL must start with https:// (every leg is TLS)"))?;
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = split_host_port(authority, 443).ok_or_else(|| bad("expected host[:port]"))?;
        Ok(HubUrl { host, port })
    }

    /// `host:port`, with brackets around an IPv6 host.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for HubUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "https://{}", self.authority())
    }
}

fn split_host_port(authority: &str, default_port: u16) -> Option<(String, u16)> {
    if authority.is_empty() {
        return None;
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((host.to_owned(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), port.parse().ok()?)),
        None => Some((authority.to_owned(), default_port)),
    }
}

/// An HTTP proxy for `CONNECT`, from `HTTPS_PROXY`/`https_proxy` (honouring `NO_PROXY`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    pub host: String,
    pub port: u16,
    /// `user:password`, sent as Basic proxy authorization.
    pub credentials: Option<String>,
}

impl Proxy {
    pub fn parse(text: &str) -> Result<Proxy, NetError> {
        let rest = text.strip_prefix("http://").unwrap_or(text);
        let rest = rest.trim_end_matches('/');
        let (credentials, authority) = match rest.rsplit_once('@') {
            Some((c, a)) => (Some(c.to_owned()), a),
            None => (None, rest),
        };
        let (host, port) = split_host_port(authority, 3128)
            .ok_or_else(|| NetError::Url(text.to_owned(), "expected http://host:port"))?;
        Ok(Proxy {
            host,
            port,
            credentials,
        })
    }

    /// The proxy to use for `target_host`, from the environment.
    pub fn from_env(target_host: &str) -> Option<Proxy> {
        let value = ["HTTPS_PROXY", "https_proxy"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))?;
        let no_proxy = ["NO_PROXY", "no_proxy"]
            .iter()
            .find_map(|k| std::env::var(k).ok())
            .unwrap_or_default();
        let bypass = no_proxy
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .any(|pattern| {
                pattern == "*"
                    || target_host == pattern.trim_start_matches('.')
                    || target_host.ends_with(&format!(".{}", pattern.trim_start_matches('.')))
            });
        if bypass {
            return None;
        }
        match Proxy::parse(&value) {
            Ok(proxy) => Some(proxy),
            Err(error) => {
                tracing::warn!("ignoring HTTPS_PROXY: {error}");
                None
            }
        }
    }
}

async fn with_timeout<T>(
    limit: Duration,
    future: impl Future<Output = Result<T, NetError>>,
) -> Result<T, NetError> {
    tokio::time::timeout(limit, future)
        .await
        .map_err(|_| NetError::Timeout(limit))?
}

/// Opens TCP to the hub (through `proxy` if any) and completes the TLS handshake.
pub async fn open_tls(
    hub: &HubUrl,
    tls: Arc<rustls::ClientConfig>,
    proxy: Option<&Proxy>,
    limit: Duration,
) -> Result<TlsStream<TcpStream>, NetError> {
    with_timeout(limit, async {
        let tcp = match proxy {
            None => {
                let address = hub.authority();
                TcpStream::connect((hub.host.as_str(), hub.port))
                    .await
                    .map_err(|source| NetError::Connect { address, source })?
            }
            Some(proxy) => proxy_connect(proxy, hub).await?,
        };
        tcp.set_nodelay(true)?;
        let server_name = rustls::pki_types::ServerName::try_from(hub.host.clone())
            .map_err(|_| NetError::Url(hub.host.clone(), "not a valid TLS server name"))?;
        let stream = TlsConnector::from(tls).connect(server_name, tcp).await?;
        // A resumed handshake (a TLS 1.3 ticket from an earlier connection) skips the
        // certificate chain: what a reconnect over a metered link should cost.
        let kind = stream.get_ref().1.handshake_kind();
        tracing::debug!("TLS handshake with {}: {kind:?}", hub.authority());
        Ok(stream)
    })
    .await
}

async fn proxy_connect(proxy: &Proxy, hub: &HubUrl) -> Result<TcpStream, NetError> {
    let proxy_address = format!("{}:{}", proxy.host, proxy.port);
    let mut tcp = TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .map_err(|source| NetError::Connect {
            address: proxy_address.clone(),
            source,
        })?;
    let target = hub.authority();
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(credentials) = &proxy.credentials {
        let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
        request.push_str(&format!("Proxy-Authorization: Basic {encoded}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes()).await?;
    // Read byte by byte up to the end of the head: nothing after it may be consumed here,
    // because the TLS handshake follows on the same socket.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err(NetError::MalformedResponse);
        }
        let mut byte = [0u8];
        if tcp.read(&mut byte).await? == 0 {
            return Err(NetError::ProxyRefused {
                proxy: proxy_address,
                status: "connection closed".into(),
            });
        }
        head.push(byte[0]);
    }
    let status_line = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    if status_line.split_whitespace().nth(1) != Some("200") {
        return Err(NetError::ProxyRefused {
            proxy: proxy_address,
            status: status_line,
        });
    }
    Ok(tcp)
}

/// Opens a WebSocket to `path` on the hub with `Authorization: Bearer <token>`.
pub async fn connect_websocket(
    hub: &HubUrl,
    path: &str,
    token: &str,
    tls: Arc<rustls::ClientConfig>,
    proxy: Option<&Proxy>,
    max_message: usize,
    limit: Duration,
) -> Result<WebSocket, NetError> {
    let stream = open_tls(hub, tls, proxy, limit).await?;
    let mut request = format!("wss://{}{}", hub.authority(), path)
        .into_client_request()
        .map_err(|e| NetError::WebSocket(Box::new(e)))?;
    let bearer = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| NetError::Url(path.into(), "token is not a valid header value"))?;
    request.headers_mut().insert("Authorization", bearer);
    request
        .headers_mut()
        .insert("User-Agent", HeaderValue::from_static(USER_AGENT));
    let config = WebSocketConfig::default()
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message));
    let handshake = tokio_tungstenite::client_async_with_config(request, stream, Some(config));
    let (socket, _response) = with_timeout(limit, async {
        handshake.await.map_err(|error| match error {
            tokio_tungstenite::tungstenite::Error::Http(response) => NetError::Http {
                status: response.status().as_u16(),
                body: response
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default(),
            },
            other => NetError::WebSocket(Box::new(other)),
        })
    })
    .await?;
    Ok(socket)
}

/// One HTTP/1.1 request with a small body, read until the hub closes (`Connection: close`).
/// Returns the status and body. Meant for the agent's few control requests, not for bulk data.
#[allow(clippy::too_many_arguments)]
pub async fn http_request(
    hub: &HubUrl,
    tls: Arc<rustls::ClientConfig>,
    proxy: Option<&Proxy>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    limit: Duration,
) -> Result<(u16, Vec<u8>), NetError> {
    let mut stream = open_tls(hub, tls, proxy, limit).await?;
    with_timeout(limit, async move {
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: {USER_AGENT}\r\nContent-Length: {}\r\n",
            hub.authority(),
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await?;
        stream.write_all(body).await?;
        stream.flush().await?;
        let mut response = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) => break,
                Ok(n) => response.extend_from_slice(&buffer[..n]),
                // A peer that closes without TLS close_notify still sent a complete response.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e.into()),
            }
            if response.len() > MAX_RESPONSE {
                return Err(NetError::MalformedResponse);
            }
        }
        parse_response(&response)
    })
    .await
}

fn parse_response(response: &[u8]) -> Result<(u16, Vec<u8>), NetError> {
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(NetError::MalformedResponse)?;
    let head = std::str::from_utf8(&response[..head_end]).map_err(|_| NetError::MalformedResponse)?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(NetError::MalformedResponse)?;
    let raw_body = &response[head_end + 4..];
    let chunked = head.lines().any(|line| {
        let lower = line.to_ascii_lowercase();
        lower.starts_with("transfer-encoding:") && lower.contains("chunked")
    });
    let body = if chunked {
        dechunk(raw_body).ok_or(NetError::MalformedResponse)?
    } else {
        raw_body.to_vec()
    };
    Ok((status, body))
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_urls_parse() {
        assert_eq!(
            HubUrl::parse("https://hub.example:8443/x").unwrap(),
            HubUrl {
                host: "hub.example".into(),
                port: 8443
            }
        );
        assert_eq!(
            HubUrl::parse("wss://[::1]").unwrap(),
            HubUrl {
                host: "::1".into(),
                port: 443
            }
        );
        assert!(HubUrl::parse("http://insecure").is_err());
    }

    #[test]
    fn proxies_parse() {
        let proxy = Proxy::parse("http://u:p@127.0.0.1:3128/").unwrap();
        assert_eq!(
            proxy,
            Proxy {
                host: "127.0.0.1".into(),
                port: 3128,
                credentials: Some("u:p".into())
            }
        );
    }

    #[test]
    fn responses_parse_plain_and_chunked() {
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\ntoken").unwrap(),
            (200, b"token".to_vec())
        );
        let chunked = b"HTTP/1.1 401 X\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (401, b"abcde".to_vec()));
        assert!(parse_response(b"garbage").is_err());
    }
}
