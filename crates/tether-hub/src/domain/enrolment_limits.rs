//! Rate limits on enrolments: how many unknown device keys may ask to enrol, per client address
//! and in total, per window.

use crate::{
    config::HubConfig, domain::throttle::KeyedLimiter, domain::throttle::Rate, domain::throttle::address_key,
};

/// Most client addresses whose enrolment buckets are tracked at once.
const ENROLMENT_ADDRESSES: usize = 100_000;

/// Rate limits on enrolments (authentication requests from unknown keys).
pub struct EnrolmentLimits {
    by_address: KeyedLimiter<std::net::IpAddr>,
    total: KeyedLimiter<()>,
}

impl EnrolmentLimits {
    pub fn new(config: &HubConfig) -> Self {
        let window = std::time::Duration::from_secs(config.enrolment_window_secs.max(1));
        EnrolmentLimits {
            by_address: KeyedLimiter::new(
                Rate::new(config.enrolments_per_address, window),
                ENROLMENT_ADDRESSES,
            ),
            total: KeyedLimiter::new(Rate::new(config.enrolments_in_total, window), 1),
        }
    }

    /// Admits one enrolment from `client`, or says why not (and for how long).
    pub fn admit(&self, client: std::net::IpAddr) -> Result<(), String> {
        let address = address_key(client);
        let wait = |wait: std::time::Duration| wait.as_secs().max(1);
        if let Some(pause) = self.by_address.wait(&address) {
            return Err(format!(
                "too many new devices from your address (enrolments_per_address); try again in {} s",
                wait(pause)
            ));
        }
        if let Some(pause) = self.total.wait(&()) {
            return Err(format!(
                "too many new devices are enrolling (enrolments_in_total); try again in {} s",
                wait(pause)
            ));
        }
        self.by_address.charge(address);
        self.total.charge(());
        Ok(())
    }
}
