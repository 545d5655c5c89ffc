//! The `port_forward.allow` rules: which targets an operator may reach through this device.
//!
//! A rule is an IPv4 or IPv6 address, a CIDR block or a host name, optionally followed by
//! `:PORT` or `:LOW-HIGH` (an IPv6 address or block with a port goes in brackets:
//! `[::1]:22`). Address rules are matched against the addresses a target resolves to, so that a
//! name pointing at a forbidden address is refused; a host-name rule matches only a request for
//! that very name (case-insensitive).

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    ops::RangeInclusive,
};

/// What a rule names, without its ports.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    /// An address block; an exact address is a block of full length.
    Block { network: IpAddr, prefix: u8 },
    /// A host name, lower-cased.
    Name(String),
}

/// One parsed rule; `text` is kept to name it in refusals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    text: String,
    scope: Scope,
    ports: RangeInclusive<u16>,
}

impl fmt::Display for Rule {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.text)
    }
}

impl Rule {
    /// Parses a rule; the error says what is wrong with it (the caller names the setting).
    pub fn parse(text: &str) -> Result<Rule, String> {
        let trimmed = text.trim();
        let problem = |why: &str| format!("bad rule `{text}` in port_forward.allow: {why}");
        if trimmed.is_empty() {
            return Err(problem("it is empty"));
        }
        let (host, ports) = split_port(trimmed).map_err(|why| problem(&why))?;
        let ports = match ports {
            None => 1..=u16::MAX,
            Some(ports) => parse_ports(ports).map_err(|why| problem(&why))?,
        };
        let scope = parse_scope(host).map_err(|why| problem(&why))?;
        Ok(Rule {
            text: trimmed.to_owned(),
            scope,
            ports,
        })
    }

    /// A rule for this very host name and port (address rules never match by name).
    fn matches_name(&self, host: &str, port: u16) -> bool {
        matches!(&self.scope, Scope::Name(name) if name.eq_ignore_ascii_case(host))
            && self.ports.contains(&port)
    }

    fn matches_address(&self, address: IpAddr, port: u16) -> bool {
        let Scope::Block { network, prefix } = self.scope else {
            return false;
        };
        self.ports.contains(&port) && in_block(address.to_canonical(), network, prefix)
    }

    fn is_address_rule_for(&self, port: u16) -> bool {
        matches!(self.scope, Scope::Block { .. }) && self.ports.contains(&port)
    }
}

/// The whole list, as configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    rules: Vec<Rule>,
}

impl AllowList {
    pub fn parse<S: AsRef<str>>(texts: &[S]) -> Result<AllowList, String> {
        let rules = texts
            .iter()
            .map(|text| Rule::parse(text.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AllowList { rules })
    }

    /// True when a host-name rule names `host` for `port`: every address it resolves to may be
    /// dialled (the operator of the device trusts that name, wherever it points).
    pub fn permits_name(&self, host: &str, port: u16) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        self.rules.iter().any(|rule| rule.matches_name(host, port))
    }

    /// False when no address rule covers `port`: then resolving the host is pointless.
    pub fn may_permit_addresses(&self, port: u16) -> bool {
        self.rules.iter().any(|rule| rule.is_address_rule_for(port))
    }

    pub fn permits_address(&self, address: IpAddr, port: u16) -> bool {
        self.rules.iter().any(|rule| rule.matches_address(address, port))
    }

    /// The rules as written, for refusals: `127.0.0.0/8, ::1`.
    pub fn describe(&self) -> String {
        if self.rules.is_empty() {
            return "no rules".to_owned();
        }
        let texts: Vec<&str> = self.rules.iter().map(|rule| rule.text.as_str()).collect();
        texts.join(", ")
    }
}

/// Splits `HOST[:PORTS]`, `[V6]:PORTS` and bare IPv6 (several colons: no port).
fn split_port(text: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or_else(|| "`[` without a closing `]`".to_owned())?;
        return match after {
            "" => Ok((inside, None)),
            _ => match after.strip_prefix(':') {
                Some(ports) => Ok((inside, Some(ports))),
                None => Err(format!("unexpected `{after}` after `]`")),
            },
        };
    }
    match text.matches(':').count() {
        0 => Ok((text, None)),
        1 => {
            let (host, ports) = text.split_once(':').unwrap_or((text, ""));
            Ok((host, Some(ports)))
        }
        _ => Ok((text, None)),
    }
}

fn parse_ports(text: &str) -> Result<RangeInclusive<u16>, String> {
    let port = |part: &str| match part.trim().parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("`{part}` is not a port (1-65535)")),
        Ok(port) => Ok(port),
    };
    match text.split_once('-') {
        None => port(text).map(|port| port..=port),
        Some((low, high)) => {
            let (low, high) = (port(low)?, port(high)?);
            if low > high {
                return Err(format!("the port range {low}-{high} is empty"));
            }
            Ok(low..=high)
        }
    }
}

fn parse_scope(text: &str) -> Result<Scope, String> {
    if let Some((address, prefix)) = text.split_once('/') {
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("`{address}` is not an IP address"))?;
        let longest = full_length(address);
        let prefix = match prefix.parse::<u8>() {
            Ok(prefix) if prefix <= longest => prefix,
            _ => return Err(format!("`/{prefix}` is not a prefix length (0-{longest})")),
        };
        let network = mask(address, prefix);
        if network != address {
            return Err(format!(
                "{address} has bits set beyond /{prefix} (the block is {network}/{prefix})"
            ));
        }
        let (network, prefix) = canonical_block(network, prefix);
        return Ok(Scope::Block { network, prefix });
    }
    if let Ok(address) = text.parse::<IpAddr>() {
        let (network, prefix) = canonical_block(address, full_length(address));
        return Ok(Scope::Block { network, prefix });
    }
    // Digits and dots only, yet not an address (`127.0.0.256`, `10.1`): a typo, not a name.
    if text.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!("`{text}` is not a valid IPv4 address"));
    }
    let name = text.strip_suffix('.').unwrap_or(text);
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if name.len() > 253 || !name.split('.').all(valid_label) {
        return Err(format!(
            "`{text}` is neither an IP address, a CIDR block nor a host name"
        ));
    }
    Ok(Scope::Name(name.to_ascii_lowercase()))
}

fn full_length(address: IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// IPv4-mapped IPv6 blocks (`::ffff:10.0.0.0/104`) become IPv4 blocks, as requested addresses
/// are made canonical before matching: either spelling of an address meets the same rules.
fn canonical_block(network: IpAddr, prefix: u8) -> (IpAddr, u8) {
    match network {
        IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
            Some(v4) => (IpAddr::V4(v4), prefix - 96),
            None => (network, prefix),
        },
        _ => (network, prefix),
    }
}

fn mask(address: IpAddr, prefix: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4) & u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
    }
}

fn in_block(address: IpAddr, network: IpAddr, prefix: u8) -> bool {
    match (address, network) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => mask(address, prefix) == network,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(rules: &[&str]) -> AllowList {
        AllowList::parse(rules).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ipv4_blocks_and_exact_addresses() {
        let allow = list(&["127.0.0.0/8", "10.1.2.3", "192.168.1.7/32:22"]);
        assert!(allow.permits_address(ip("127.0.0.1"), 80));
        assert!(allow.permits_address(ip("127.255.255.254"), 65535));
        assert!(!allow.permits_address(ip("128.0.0.1"), 80));
        assert!(allow.permits_address(ip("10.1.2.3"), 1));
        assert!(!allow.permits_address(ip("10.1.2.30"), 1));
        assert!(allow.permits_address(ip("192.168.1.7"), 22));
        assert!(!allow.permits_address(ip("192.168.1.7"), 23));
        assert!(!allow.permits_address(ip("192.168.1.70"), 22));
    }

    #[test]
    fn a_slash_32_is_not_a_prefix_of_the_text() {
        let allow = list(&["127.0.0.1/32"]);
        assert!(allow.permits_address(ip("127.0.0.1"), 22));
        assert!(!allow.permits_address(ip("127.0.0.10"), 22));
        assert!(!allow.permits_address(ip("127.0.0.100"), 22));
        let allow = list(&["10.0.0.0/24"]);
        assert!(allow.permits_address(ip("10.0.0.255"), 22));
        assert!(!allow.permits_address(ip("10.0.1.0"), 22));
    }

    #[test]
    fn ipv6_blocks_ports_and_mapped_addresses() {
        let allow = list(&["::1", "[fd00::/8]:8000-8100", "[2001:db8::5]:443"]);
        assert!(allow.permits_address(ip("::1"), 22));
        assert!(!allow.permits_address(ip("::2"), 22));
        assert!(allow.permits_address(ip("fd12:3456::1"), 8000));
        assert!(allow.permits_address(ip("fdff::1"), 8100));
        assert!(!allow.permits_address(ip("fd12::1"), 8101));
        assert!(!allow.permits_address(ip("fe00::1"), 8000));
        assert!(allow.permits_address(ip("2001:db8::5"), 443));
        assert!(!allow.permits_address(ip("2001:db8::5"), 444));
        // An IPv4 address never meets an IPv6 rule unless it is mapped, and vice versa.
        assert!(!allow.permits_address(ip("0.0.0.1"), 22));
        let loopback = list(&["127.0.0.0/8"]);
        assert!(loopback.permits_address(ip("::ffff:127.0.0.1"), 22));
        assert!(!loopback.permits_address(ip("::ffff:10.0.0.1"), 22));
        assert!(!loopback.permits_address(ip("::1"), 22));
        let mapped = list(&["::ffff:10.0.0.0/104"]);
        assert!(mapped.permits_address(ip("10.9.9.9"), 22));
        assert!(!mapped.permits_address(ip("11.0.0.1"), 22));
    }

    #[test]
    fn everything_blocks() {
        let allow = list(&["0.0.0.0/0", "::/0"]);
        assert!(allow.permits_address(ip("8.8.8.8"), 53));
        assert!(allow.permits_address(ip("2001:4860::8888"), 53));
    }

    #[test]
    fn host_names_match_the_requested_name_only() {
        let allow = list(&["Printer.LAN:631", "db.example:5000-5432"]);
        assert!(allow.permits_name("printer.lan", 631));
        assert!(allow.permits_name("PRINTER.lan.", 631));
        assert!(!allow.permits_name("printer.lan", 632));
        assert!(!allow.permits_name("evil-printer.lan", 631));
        assert!(!allow.permits_name("printer.lan.evil", 631));
        assert!(allow.permits_name("db.example", 5432));
        assert!(!allow.permits_name("db.example", 4999));
        // A name rule says nothing about addresses, and address rules nothing about names.
        assert!(!allow.may_permit_addresses(631));
        assert!(!allow.permits_address(ip("127.0.0.1"), 631));
        assert!(!list(&["127.0.0.1"]).permits_name("127.0.0.1", 22));
        assert!(!list(&["localhost"]).permits_name("127.0.0.1", 22));
    }

    #[test]
    fn address_rules_for_a_port() {
        let allow = list(&["127.0.0.1:22", "host.lan"]);
        assert!(allow.may_permit_addresses(22));
        assert!(!allow.may_permit_addresses(23));
    }

    #[test]
    fn the_description_lists_the_rules_as_written() {
        assert_eq!(list(&["127.0.0.0/8", "::1"]).describe(), "127.0.0.0/8, ::1");
        assert_eq!(list(&[]).describe(), "no rules");
    }

    #[test]
    fn bad_rules_are_refused_with_a_reason() {
        for (text, reason) in [
            ("", "empty"),
            ("10.0.0.1/8", "bits set beyond /8"),
            ("10.0.0.0/33", "prefix length"),
            ("::/129", "prefix length"),
            ("10.0.0.0/x", "prefix length"),
            ("bad/8", "not an IP address"),
            ("127.0.0.256", "not a valid IPv4 address"),
            ("10.1", "not a valid IPv4 address"),
            ("127.0.0.1:0", "not a port"),
            ("127.0.0.1:65536", "not a port"),
            ("127.0.0.1:", "not a port"),
            ("127.0.0.1:22-", "not a port"),
            ("127.0.0.1:30-20", "empty"),
            ("[::1", "closing"),
            ("[::1]22", "after `]`"),
            ("*.example", "neither"),
            ("-host", "neither"),
            ("a..b", "neither"),
            ("host name", "neither"),
        ] {
            let error = Rule::parse(text).unwrap_err();
            assert!(error.contains(reason), "{text:?}: {error}");
            assert!(error.contains("port_forward.allow"), "{error}");
        }
    }

    #[test]
    fn good_rules_parse() {
        for text in [
            "127.0.0.1",
            "127.0.0.0/8",
            "::1",
            "[::1]",
            "[::1]:22",
            "fe80::/10",
            "[fe80::/10]:1-1024",
            "localhost",
            "localhost:22",
            "my_host.example.",
            "127.0.0.1:1-65535",
        ] {
            assert!(Rule::parse(text).is_ok(), "{text}");
        }
    }
}
