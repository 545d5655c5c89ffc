//! Reconnect delays: exponential with jitter, so that a fleet that lost its hub at the same
//! moment does not come back at the same moment.

use std::time::Duration;

const FIRST: Duration = Duration::from_secs(1);

pub struct Backoff {
    /// The upper bound of the next delay (before jitter).
    ceiling: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(max: Duration) -> Backoff {
        Backoff {
            ceiling: FIRST.min(max),
            max,
        }
    }

    /// The next delay: uniformly random in [ceiling/2, ceiling]; the ceiling then doubles, up
    /// to the maximum. The first delay is therefore within 0.5–1 s.
    pub fn next_delay(&mut self) -> Duration {
        let high = self.ceiling;
        let low = high / 2;
        let span = (high - low).as_millis() as u64;
        let jitter = Duration::from_millis(rand::random_range(0..=span));
        self.ceiling = (self.ceiling * 2).min(self.max);
        low + jitter
    }

    /// Back to the first delay (after a connection that stayed up).
    pub fn reset(&mut self) {
        self.ceiling = FIRST.min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_within_bounds_and_cap() {
        for _ in 0..50 {
            let mut backoff = Backoff::new(Duration::from_secs(60));
            let first = backoff.next_delay();
            assert!(
                first >= Duration::from_millis(500) && first <= Duration::from_secs(1),
                "{first:?}"
            );
            let second = backoff.next_delay();
            assert!(
                second >= Duration::from_secs(1) && second <= Duration::from_secs(2),
                "{second:?}"
            );
            for _ in 0..20 {
                let delay = backoff.next_delay();
                assert!(delay <= Duration::from_secs(60), "{delay:?}");
            }
            let capped = backoff.next_delay();
            assert!(capped >= Duration::from_secs(30), "{capped:?}");
            backoff.reset();
            assert!(backoff.next_delay() <= Duration::from_secs(1));
        }
    }

    #[test]
    fn a_small_maximum_caps_even_the_first_delay() {
        let mut backoff = Backoff::new(Duration::from_millis(200));
        for _ in 0..5 {
            assert!(backoff.next_delay() <= Duration::from_millis(200));
        }
    }
}
