//! The mapping syntax of `tether port-forward` (mender-cli's):
//! `[tcp/|udp/]LOCAL_PORT[:[REMOTE_HOST:]REMOTE_PORT]`, IPv6 hosts in brackets.

use std::fmt;

use tether_proto::port_forward::{Target, Transport};

/// One local port forwarded to one target on the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub transport: Transport,
    /// 0 lets the system choose (the chosen port is printed).
    pub local_port: u16,
    pub remote_host: String,
    pub remote_port: u16,
}

/// Where the device connects when nothing else is said: its own loopback.
pub const DEFAULT_REMOTE_HOST: &str = "127.0.0.1";

impl Mapping {
    pub fn target(&self) -> Target {
        Target {
            host: self.remote_host.clone(),
            port: self.remote_port,
            transport: self.transport,
        }
    }

    /// `HOST:PORT`, with an IPv6 host in brackets.
    pub fn remote(&self) -> String {
        host_port(&self.remote_host, self.remote_port)
    }
}

impl fmt::Display for Mapping {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{}/{}:{}",
            self.transport.as_str(),
            self.local_port,
            self.remote()
        )
    }
}

pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Parses one mapping (clap's value parser).
pub fn parse(text: &str) -> Result<Mapping, String> {
    let (transport, rest) = match text.split_once('/') {
        Some(("tcp", rest)) => (Transport::Tcp, rest),
        Some(("udp", rest)) => (Transport::Udp, rest),
        Some((other, _)) => return Err(format!("unknown protocol `{other}` (tcp or udp)")),
        None => (Transport::Tcp, text),
    };
    let (local, remote) = match rest.split_once(':') {
        Some((local, remote)) => (local, Some(remote)),
        None => (rest, None),
    };
    let local_port = port(local, "local port")?;
    let (remote_host, remote_port) = match remote {
        None => (DEFAULT_REMOTE_HOST.to_owned(), local_port),
        Some(remote) => remote_target(remote)?,
    };
    if remote_port == 0 {
        return Err("the remote port must not be 0 (give one when the local port is 0)".into());
    }
    Ok(Mapping {
        transport,
        local_port,
        remote_host,
        remote_port,
    })
}

/// A target as `tether proxy` takes it: `PORT`, `HOST:PORT` or `[IPV6]:PORT`, the port not 0.
pub fn parse_remote(text: &str) -> Result<(String, u16), String> {
    let (host, port) = remote_target(text)?;
    if port == 0 {
        return Err("the port must not be 0".into());
    }
    Ok((host, port))
}

/// `PORT`, `HOST:PORT` or `[IPV6]:PORT`.
fn remote_target(text: &str) -> Result<(String, u16), String> {
    if let Some(bracketed) = text.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(format!("missing `]` in `{text}`"));
        };
        let Some(remote_port) = after.strip_prefix(':') else {
            return Err(format!("expected `:PORT` after `[{host}]`"));
        };
        if host.is_empty() {
            return Err("empty remote host".into());
        }
        return Ok((host.to_owned(), port(remote_port, "remote port")?));
    }
    match text.rsplit_once(':') {
        None => Ok((DEFAULT_REMOTE_HOST.to_owned(), port(text, "remote port")?)),
        Some((host, _)) if host.contains(':') => Err(format!(
            "`{host}` looks like an IPv6 address: write it in brackets, e.g. [{host}]"
        )),
        Some(("", _)) => Err("empty remote host".into()),
        Some((host, remote_port)) => Ok((host.to_owned(), port(remote_port, "remote port")?)),
    }
}

fn port(text: &str, what: &str) -> Result<u16, String> {
    if text.is_empty() {
        return Err(format!("missing {what}"));
    }
    text.parse()
        .map_err(|_| format!("invalid {what} `{text}` (a number from 0 to 65535)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(transport: Transport, local: u16, host: &str, remote: u16) -> Mapping {
        Mapping {
            transport,
            local_port: local,
            remote_host: host.into(),
            remote_port: remote,
        }
    }

    #[test]
    fn local_port_alone_forwards_to_the_same_port_on_the_device() {
        assert_eq!(
            parse("8022"),
            Ok(mapping(Transport::Tcp, 8022, "127.0.0.1", 8022))
        );
    }

    #[test]
    fn remote_port_and_host() {
        assert_eq!(
            parse("8022:22"),
            Ok(mapping(Transport::Tcp, 8022, "127.0.0.1", 22))
        );
        assert_eq!(
            parse("8022:10.0.0.5:22"),
            Ok(mapping(Transport::Tcp, 8022, "10.0.0.5", 22))
        );
        assert_eq!(
            parse("8080:printer.lan:80"),
            Ok(mapping(Transport::Tcp, 8080, "printer.lan", 80))
        );
    }

    #[test]
    fn protocol_prefixes() {
        assert_eq!(
            parse("tcp/8022:22"),
            Ok(mapping(Transport::Tcp, 8022, "127.0.0.1", 22))
        );
        assert_eq!(
            parse("udp/5353:53"),
            Ok(mapping(Transport::Udp, 5353, "127.0.0.1", 53))
        );
        assert_eq!(parse("udp/53"), Ok(mapping(Transport::Udp, 53, "127.0.0.1", 53)));
        assert_eq!(
            parse("udp/5353:192.168.1.1:53"),
            Ok(mapping(Transport::Udp, 5353, "192.168.1.1", 53))
        );
        assert!(parse("sctp/80").unwrap_err().contains("unknown protocol"));
        assert!(parse("TCP/80").is_err());
    }

    #[test]
    fn ipv6_hosts_in_brackets() {
        assert_eq!(
            parse("8022:[::1]:22"),
            Ok(mapping(Transport::Tcp, 8022, "::1", 22))
        );
        assert_eq!(
            parse("udp/5353:[fe80::1%eth0]:53"),
            Ok(mapping(Transport::Udp, 5353, "fe80::1%eth0", 53))
        );
        assert!(parse("8022:::1:22").unwrap_err().contains("brackets"));
        assert!(parse("8022:[::1:22").unwrap_err().contains("]"));
        assert!(parse("8022:[::1]22").is_err());
        assert!(parse("8022:[]:22").is_err());
    }

    #[test]
    fn local_port_zero_needs_a_remote_port() {
        assert_eq!(parse("0:22"), Ok(mapping(Transport::Tcp, 0, "127.0.0.1", 22)));
        assert!(parse("0").is_err());
        assert!(parse("8022:0").is_err());
    }

    #[test]
    fn malformed_ports_are_refused() {
        for text in [
            "",
            ":22",
            "x",
            "70000",
            "8022:",
            "8022:host:",
            "8022:host:x",
            "-1",
            "8022:22:",
        ] {
            assert!(parse(text).is_err(), "{text} should be refused");
        }
        assert!(parse("8022::22").unwrap_err().contains("empty remote host"));
        assert!(parse("80a").unwrap_err().contains("local port"));
    }

    #[test]
    fn display_forms() {
        assert_eq!(parse("8022:[::1]:22").unwrap().remote(), "[::1]:22");
        assert_eq!(parse("udp/53").unwrap().to_string(), "udp/53:127.0.0.1:53");
    }
}
