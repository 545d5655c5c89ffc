//! Opening a forwarded connection: resolve the target, keep the addresses the allow list
//! permits, and dial them (TCP) or connect a socket to the first (UDP).

use std::{
    io,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use tether_proto::port_forward::{Target, Transport};
use tokio::{
    net::{TcpStream, UdpSocket, lookup_host},
    time::timeout,
};

use crate::allow_list::AllowList;

/// How long dialling a TCP target may take, all resolved addresses together.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) enum Socket {
    Tcp(TcpStream),
    Udp(UdpSocket),
}

/// A refused or failed `new`, answered with `error` and this code.
pub(super) struct Refusal {
    pub(super) code: i64,
    pub(super) text: String,
}

/// `host:port`, with IPv6 addresses in brackets.
pub(super) fn show(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Resolves the target, keeps the addresses the allow list permits and dials them.
pub(super) async fn open(target: &Target, allow: &AllowList) -> Result<(Socket, SocketAddr), Refusal> {
    let host = target.host.as_str();
    // An IPv6 literal may come bracketed; the resolver wants it bare.
    let host = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host);
    let port = target.port;
    let shown = show(host, port);
    let refused = || Refusal {
        code: 403,
        text: format!(
            "{shown} is not an allowed target (port_forward.allow: {})",
            allow.describe()
        ),
    };
    let by_name = allow.permits_name(host, port);
    // Nothing could allow it: refuse without even asking the resolver.
    if !by_name && !allow.may_permit_addresses(port) {
        return Err(refused());
    }
    let resolved = lookup_host((host, port)).await.map_err(|error| Refusal {
        code: 502,
        text: format!("cannot resolve {host}: {error}"),
    })?;
    let addresses: Vec<SocketAddr> = resolved
        .filter(|address| by_name || allow.permits_address(address.ip(), port))
        .collect();
    if addresses.is_empty() {
        return Err(refused());
    }
    let failed = |error: io::Error| Refusal {
        code: 502,
        text: format!("cannot connect to {shown}: {error}"),
    };
    match target.transport {
        Transport::Tcp => {
            let dial = async {
                let mut last_error = io::Error::other("no address");
                for address in &addresses {
                    match TcpStream::connect(address).await {
                        Ok(stream) => return Ok((stream, *address)),
                        Err(error) => last_error = error,
                    }
                }
                Err(last_error)
            };
            let (stream, address) = match timeout(CONNECT_TIMEOUT, dial).await {
                Ok(dialled) => dialled.map_err(failed)?,
                Err(_) => {
                    return Err(failed(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
                    )));
                }
            };
            // The operator's keystrokes must not wait for Nagle: chunks are already batched.
            let _ = stream.set_nodelay(true);
            Ok((Socket::Tcp(stream), address))
        }
        Transport::Udp => {
            let address = addresses[0];
            let local: SocketAddr = match address.ip() {
                IpAddr::V4(_) => (IpAddr::from([0u8; 4]), 0).into(),
                IpAddr::V6(_) => (IpAddr::from([0u16; 8]), 0).into(),
            };
            let socket = UdpSocket::bind(local).await.map_err(failed)?;
            socket.connect(address).await.map_err(failed)?;
            Ok((Socket::Udp(socket), address))
        }
    }
}
