//! Rate limits keyed by client address (and account): the shared mechanism behind login
//! throttling ([`crate::domain::login_throttle`]) and the enrolment limits ([`crate::http::device_auth`]).
//!
//! Each key holds one GCRA bucket (the "generic cell rate algorithm", a token bucket stored as a
//! single instant): `burst` events pass at once, then one per `window / burst`. A bucket that
//! has refilled holds no information and is dropped, so memory follows the attackers' recent
//! activity; it is also capped, and at the cap the bucket closest to refilled goes first, never
//! all of them (the limiter cannot be reset by spraying new keys).
//!
//! The buckets live in this process: with several replicas, each counts on its own (see
//! `docs/security.md`, "Login throttling and enrolment limits").

use std::{
    collections::HashMap,
    hash::Hash,
    net::{IpAddr, Ipv6Addr},
    sync::Mutex,
    time::{Duration, Instant},
};

/// The address a client is counted under: IPv4 as is, IPv6 by its /64 (one subscriber's prefix;
/// an attacker holding a /64 has 2^64 addresses), IPv4-mapped IPv6 as IPv4.
pub fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

/// `burst` events per `window`: all at once, then one every `window / burst`.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    burst: u32,
    interval: Duration,
}

impl Rate {
    pub fn new(burst: u32, window: Duration) -> Rate {
        let burst = burst.max(1);
        Rate {
            burst,
            interval: (window / burst).max(Duration::from_millis(1)),
        }
    }
}

/// GCRA buckets by key, at most `capacity` of them.
pub struct KeyedLimiter<K> {
    rate: Rate,
    capacity: usize,
    /// Per key, the instant at which its bucket is full again ("theoretical arrival time").
    buckets: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    pub fn new(rate: Rate, capacity: usize) -> Self {
        KeyedLimiter {
            rate,
            capacity: capacity.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Instant>> {
        self.buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How long `key` must wait before its next event is allowed; `None` when it may go now.
    pub fn wait(&self, key: &K) -> Option<Duration> {
        let buckets = self.lock();
        let full_at = *buckets.get(key)?;
        self.wait_for(full_at, Instant::now())
    }

    fn wait_for(&self, full_at: Instant, now: Instant) -> Option<Duration> {
        // The bucket's level, as time: an event is allowed while one more fits under the burst.
        let level = full_at.saturating_duration_since(now);
        let tolerance = self.rate.interval * (self.rate.burst - 1);
        level.checked_sub(tolerance).filter(|wait| !wait.is_zero())
    }

    /// Counts one event for `key` (whether or not it was allowed).
    pub fn charge(&self, key: K) {
        let now = Instant::now();
        let mut buckets = self.lock();
        if !buckets.contains_key(&key) {
            self.make_room(&mut buckets, now);
        }
        let full_at = buckets.entry(key).or_insert(now);
        *full_at = (*full_at).max(now) + self.rate.interval;
    }

    /// Forgets `key` (it proved itself, e.g. a successful login).
    pub fn forget(&self, key: &K) {
        self.lock().remove(key);
    }

    /// Buckets held now (refilled ones included until the next clean-up).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes room for one more bucket: drops the refilled ones and, if still full, the one
    /// closest to refilled (the least active key), never everyone.
    fn make_room(&self, buckets: &mut HashMap<K, Instant>, now: Instant) {
        if buckets.len() < self.capacity {
            return;
        }
        buckets.retain(|_, full_at| *full_at > now);
        if buckets.len() < self.capacity {
            return;
        }
        let least_active = buckets
            .iter()
            .min_by_key(|(_, full_at)| **full_at)
            .map(|(key, _)| key.clone());
        if let Some(key) = least_active {
            buckets.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_blocked() {
        let limiter = KeyedLimiter::new(Rate::new(3, Duration::from_secs(60)), 10);
        for _ in 0..3 {
            assert!(limiter.wait(&"k").is_none());
            limiter.charge("k");
        }
        let wait = limiter.wait(&"k").expect("blocked after the burst");
        assert!(wait <= Duration::from_secs(20), "{wait:?}");
        assert!(limiter.wait(&"other").is_none(), "other keys are untouched");
        limiter.forget(&"k");
        assert!(limiter.wait(&"k").is_none());
    }

    #[test]
    fn spraying_new_keys_keeps_the_most_active_buckets() {
        let limiter = KeyedLimiter::new(Rate::new(3, Duration::from_secs(3600)), 100);
        for _ in 0..3 {
            limiter.charge(0u32);
        }
        assert!(limiter.wait(&0).is_some());
        for key in 1..10_000u32 {
            limiter.charge(key);
        }
        assert!(limiter.len() <= 100);
        assert!(
            limiter.wait(&0).is_some(),
            "the attacker's bucket survived the spray"
        );
    }

    #[test]
    fn ipv6_is_keyed_by_its_64_prefix() {
        let one: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let two: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(one), address_key(two));
        assert_ne!(address_key(one), address_key(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }
}
