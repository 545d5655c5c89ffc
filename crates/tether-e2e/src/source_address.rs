//! HTTP requests to a hub from a chosen loopback source address (127.0.0.2, 127.0.0.3, ...), so
//! that tests can play several clients: the hub keys its throttles by client address.

use std::{net::IpAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpSocket,
};

use crate::Hub;

/// One request (`Connection: close`) to `hub` from `source`; returns the status and body text.
pub fn request_from(
    hub: &Hub,
    source: IpAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let tls = hub.tls();
    let port = hub.port;
    crate::block_on(async move {
        tokio::time::timeout(
            Duration::from_secs(30),
            exchange(tls, source, port, method, path, headers, body),
        )
        .await
        .unwrap_or_else(|_| panic!("{method} {path} from {source}: no answer in 30 s"))
    })
}

async fn exchange(
    tls: Arc<rustls::ClientConfig>,
    source: IpAddr,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let socket = TcpSocket::new_v4().expect("TCP socket");
    socket
        .bind((source, 0).into())
        .unwrap_or_else(|e| panic!("binding a client socket to {source}: {e}"));
    let tcp = socket
        .connect(([127, 0, 0, 1], port).into())
        .await
        .unwrap_or_else(|e| panic!("connecting from {source} to the hub: {e}"));
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("server name");
    let mut stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .unwrap_or_else(|e| panic!("TLS from {source}: {e}"));
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    stream.write_all(body).await.expect("send the body");
    stream.flush().await.expect("flush");
    let mut response = Vec::new();
    if let Err(error) = stream.read_to_end(&mut response).await
        && error.kind() != std::io::ErrorKind::UnexpectedEof
    {
        panic!("reading the answer from {source}: {error}");
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("malformed answer: {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_owned())
}

/// `POST /api/management/v1/auth/login` from `source`: the status and body text.
pub fn login_from(
    hub: &Hub,
    source: IpAddr,
    user: &str,
    password: &str,
    code: Option<&str>,
) -> (u16, String) {
    let mut request = serde_json::json!({ "username": user, "password": password });
    if let Some(code) = code {
        request["code"] = code.into();
    }
    request_from(
        hub,
        source,
        "POST",
        "/api/management/v1/auth/login",
        &[("Content-Type", "application/json")],
        request.to_string().as_bytes(),
    )
}
