//! Caps on concurrent client connections, in total and per client address, checked right after
//! `accept` so that unauthenticated clients can neither exhaust the hub's file descriptors nor
//! crowd out everybody else. Refusals are logged at a bounded rate.
//!
//! A connection holds a [`ConnectionPermit`] (counted in the total) for as long as its socket is
//! open, upgraded WebSockets included: every one of them holds a file descriptor. It also holds
//! an [`AddressSlot`] while it speaks HTTP; the slot is released when the connection is upgraded
//! to a WebSocket, which the hub only does for an authenticated device or user (whose sessions
//! are capped per user and per device), so that a fleet behind one NAT address is not limited
//! by the per-address cap.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

/// How often, at most, refusals are logged at warning level (with the count since the last line).
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The key a client address is counted under: IPv4 addresses as they are (IPv4-mapped IPv6
/// addresses as IPv4), IPv6 addresses by their /64 prefix, since one host or customer gets a
/// whole /64 and can pick any address in it.
pub fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let segments = v6.segments();
                IpAddr::V6(Ipv6Addr::new(
                    segments[0],
                    segments[1],
                    segments[2],
                    segments[3],
                    0,
                    0,
                    0,
                    0,
                ))
            }
        },
    }
}

/// Why a new connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` connections are open.
    Total,
    /// `max_connections_per_address` connections from this address (or /64) speak HTTP.
    PerAddress,
}

/// The counters shared by the accept loop and the connections.
#[derive(Debug)]
pub struct ConnectionLimits {
    max_total: usize,
    max_per_address: usize,
    open: AtomicUsize,
    per_address: Mutex<HashMap<IpAddr, usize>>,
    refusals: Mutex<RefusalLog>,
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_address: usize) -> Arc<ConnectionLimits> {
        Arc::new(ConnectionLimits {
            max_total,
            max_per_address,
            open: AtomicUsize::new(0),
            per_address: Mutex::new(HashMap::new()),
            refusals: Mutex::new(RefusalLog::default()),
        })
    }

    /// Connections open now (for logs and tests).
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Admits a connection from `client`, or says which cap refuses it.
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Result<(ConnectionPermit, AddressSlot), Refusal> {
        // Only the accept loop admits, so checking and then adding cannot overshoot.
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Total);
        }
        let permit = ConnectionPermit { limits: self.clone() };
        let key = address_key(client);
        let mut per_address = self.per_address.lock().unwrap_or_else(|e| e.into_inner());
        let count = per_address.entry(key).or_insert(0);
        if *count >= self.max_per_address {
            return Err(Refusal::PerAddress);
        }
        *count += 1;
        drop(per_address);
        Ok((
            permit,
            AddressSlot {
                limits: self.clone(),
                key,
            },
        ))
    }

    /// Counts a refusal; logs a warning with the totals at most every [`REFUSAL_LOG_INTERVAL`].
    pub fn log_refusal(&self, client: IpAddr, refusal: Refusal) {
        let mut log = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(summary) = log.count(refusal, Instant::now()) {
            tracing::warn!(
                "refused {summary} new connections (latest from {client}): {} of {} connections open \
                 (max_connections), at most {} per client address (max_connections_per_address)",
                self.open(),
                self.max_total,
                self.max_per_address
            );
        } else {
            tracing::debug!("refused a connection from {client}: {refusal:?} cap");
        }
    }

    fn release_address(&self, key: IpAddr) {
        let mut per_address = self.per_address.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = per_address.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                per_address.remove(&key);
            }
        }
    }
}

/// One open connection in the total count; released when dropped (with the socket).
#[derive(Debug)]
pub struct ConnectionPermit {
    limits: Arc<ConnectionLimits>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.limits.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One HTTP connection counted against its client address; released when dropped.
#[derive(Debug)]
pub struct AddressSlot {
    limits: Arc<ConnectionLimits>,
    key: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        self.limits.release_address(self.key);
    }
}

/// Refusals counted between two log lines.
#[derive(Debug, Default)]
struct RefusalLog {
    last_line: Option<Instant>,
    total: u64,
    per_address: u64,
}

impl RefusalLog {
    /// Counts one refusal; returns what to log when a line is due (the first refusal, then at
    /// most one line per interval).
    fn count(&mut self, refusal: Refusal, now: Instant) -> Option<String> {
        match refusal {
            Refusal::Total => self.total += 1,
            Refusal::PerAddress => self.per_address += 1,
        }
        let due = self
            .last_line
            .is_none_or(|last| now.duration_since(last) >= REFUSAL_LOG_INTERVAL);
        if !due {
            return None;
        }
        let summary = format!(
            "{} (total cap: {}, per-address cap: {})",
            self.total + self.per_address,
            self.total,
            self.per_address
        );
        self.last_line = Some(now);
        self.total = 0;
        self.per_address = 0;
        Some(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ipv6_is_keyed_by_its_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(address_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            address_key(ip("2001:db8:1:2:ffff:1:2:3")),
            address_key(ip("2001:db8:1:2::9"))
        );
        assert_ne!(
            address_key(ip("2001:db8:1:3::1")),
            address_key(ip("2001:db8:1:2::1"))
        );
        assert_eq!(address_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(address_key(ip("192.0.2.7")), ip("192.0.2.7"));
    }

    #[test]
    fn caps_refuse_and_released_slots_are_reused() {
        let limits = ConnectionLimits::new(3, 2);
        let a = ip("10.0.0.1");
        let first = limits.admit(a).unwrap();
        let second = limits.admit(a).unwrap();
        assert_eq!(limits.admit(a).unwrap_err(), Refusal::PerAddress);
        // A refused connection holds nothing.
        assert_eq!(limits.open(), 2);
        let other = limits.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(limits.admit(ip("10.0.0.3")).unwrap_err(), Refusal::Total);
        // An upgraded connection gives its address slot back but stays in the total.
        let (upgraded_permit, upgraded_slot) = first;
        drop(upgraded_slot);
        assert_eq!(limits.admit(a).unwrap_err(), Refusal::Total);
        drop(upgraded_permit);
        let again = limits.admit(a).unwrap();
        assert_eq!(limits.open(), 3);
        drop((second, other, again));
        assert_eq!(limits.open(), 0);
        assert!(limits.per_address.lock().unwrap().is_empty());
    }

    #[test]
    fn refusals_are_logged_at_most_once_per_interval() {
        let mut log = RefusalLog::default();
        let start = Instant::now();
        assert!(log.count(Refusal::PerAddress, start).is_some());
        for _ in 0..20_000 {
            assert!(
                log.count(Refusal::PerAddress, start + Duration::from_secs(1))
                    .is_none()
            );
        }
        log.count(Refusal::Total, start + Duration::from_secs(2));
        let line = log.count(Refusal::Total, start + REFUSAL_LOG_INTERVAL).unwrap();
        assert_eq!(line, "20002 (total cap: 2, per-address cap: 20000)");
    }
}
