//! Login throttling that slows a password guesser without locking the owner out.
//!
//! - Password failures count per client address (IPv6 by /64) and per account *from that
//!   address*. Nothing counts per account alone: failures from other addresses never refuse the
//!   owner, and a correct password from an address that has not failed is never refused.
//! - Second-factor failures (wrong or replayed codes) count there too, and also per account
//!   across all addresses: only someone who knows the password reaches that step, and the code
//!   space is small enough to search from many addresses. So a user with two-factor
//!   authentication is never locked by password failures alone.
//! - Buckets refill (one failure forgiven every `window / limit`), so a throttled guesser is
//!   slowed rather than shut out for a fixed time; memory is bounded without clearing anyone's
//!   bucket (see [`crate::domain::throttle`]).

use std::{net::IpAddr, time::Duration};

use sha2::{Digest as _, Sha256};

use crate::{
    config::HubConfig, domain::throttle::KeyedLimiter, domain::throttle::Rate, domain::throttle::address_key,
};

/// A refused attempt: who is throttled, and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct Throttled {
    /// "your address", "this account from your address", "this account's second factor".
    pub whom: &'static str,
    pub wait: Duration,
}

impl Throttled {
    pub fn message(&self) -> String {
        format!(
            "too many failed logins for {}; try again in {} s",
            self.whom,
            self.wait.as_secs().max(1)
        )
    }
}

/// An account name as a fixed-size key: sprayed names of any length cost the same.
type AccountKey = [u8; 16];

fn account_key(name: &str) -> AccountKey {
    let digest = Sha256::digest(name.as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

pub struct LoginThrottle {
    by_address: KeyedLimiter<IpAddr>,
    by_account_and_address: KeyedLimiter<(AccountKey, IpAddr)>,
    second_factor_by_account: KeyedLimiter<AccountKey>,
}

impl LoginThrottle {
    pub fn new(config: &HubConfig) -> Self {
        let window = Duration::from_secs(config.login_failure_window_secs.max(1));
        // Each kind of bucket holds at most this many keys (refilled ones are dropped first).
        let capacity = config.login_throttle_capacity;
        LoginThrottle {
            by_address: KeyedLimiter::new(Rate::new(config.login_failures_per_address, window), capacity),
            by_account_and_address: KeyedLimiter::new(
                Rate::new(config.login_failures_per_account, window),
                capacity,
            ),
            second_factor_by_account: KeyedLimiter::new(
                Rate::new(config.login_code_failures_per_account, window),
                capacity,
            ),
        }
    }

    /// Before checking a password: refused only when this address (or this account from this
    /// address) has failed too often.
    pub fn check_password(&self, client: IpAddr, account: &str) -> Result<(), Throttled> {
        let address = address_key(client);
        if let Some(wait) = self.by_address.wait(&address) {
            return Err(Throttled {
                whom: "your address",
                wait,
            });
        }
        if let Some(wait) = self.by_account_and_address.wait(&(account_key(account), address)) {
            return Err(Throttled {
                whom: "this account from your address",
                wait,
            });
        }
        Ok(())
    }

    pub fn password_failed(&self, client: IpAddr, account: &str) {
        let address = address_key(client);
        self.by_address.charge(address);
        self.by_account_and_address
            .charge((account_key(account), address));
    }

    /// Before checking a second-factor code (the password was right).
    pub fn check_second_factor(&self, account: &str) -> Result<(), Throttled> {
        match self.second_factor_by_account.wait(&account_key(account)) {
            Some(wait) => Err(Throttled {
                whom: "this account's second factor",
                wait,
            }),
            None => Ok(()),
        }
    }

    pub fn second_factor_failed(&self, client: IpAddr, account: &str) {
        self.password_failed(client, account);
        self.second_factor_by_account.charge(account_key(account));
    }

    /// A complete login: the account's own buckets start afresh. The address bucket stays (an
    /// attacker with one account of their own must not reset their address by logging in).
    pub fn succeeded(&self, client: IpAddr, account: &str) {
        let key = account_key(account);
        self.by_account_and_address.forget(&(key, address_key(client)));
        self.second_factor_by_account.forget(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> LoginThrottle {
        LoginThrottle::new(&HubConfig::default())
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn failures_elsewhere_never_refuse_the_owner() {
        let throttle = throttle();
        for attacker in 2..=9 {
            let address = ip(&format!("127.0.0.{attacker}"));
            for _ in 0..10 {
                throttle.password_failed(address, "admin");
            }
            assert!(throttle.check_password(address, "admin").is_err());
        }
        assert!(throttle.check_password(ip("127.0.0.1"), "admin").is_ok());
    }

    #[test]
    fn an_address_is_throttled_across_accounts() {
        let throttle = throttle();
        let attacker = ip("2001:db8::1");
        for n in 0..20 {
            throttle.password_failed(attacker, &format!("user{n}"));
        }
        let refused = throttle
            .check_password(ip("2001:db8::ffff"), "admin")
            .unwrap_err();
        assert_eq!(refused.whom, "your address", "the same /64");
        assert!(throttle.check_password(ip("2001:db8:0:1::1"), "admin").is_ok());
    }

    #[test]
    fn second_factor_failures_count_per_account() {
        let throttle = throttle();
        for attacker in 0..10 {
            throttle.second_factor_failed(ip(&format!("10.0.0.{attacker}")), "admin");
        }
        assert!(throttle.check_password(ip("10.0.1.1"), "admin").is_ok());
        assert!(throttle.check_second_factor("admin").is_err());
        throttle.succeeded(ip("10.0.1.1"), "admin");
        assert!(throttle.check_second_factor("admin").is_ok());
    }
}
