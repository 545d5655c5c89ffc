//! Gives the memory freed after a wave of connections back to the operating system.
//!
//! When many devices connect at once (every device of the fleet after a hub restart), each
//! connection holds hyper's HTTP buffers, the handler's futures and the TLS handshake's state for
//! a moment, interleaved with what the connection keeps (its TLS and WebSocket buffers, its
//! tasks). glibc's allocator keeps the freed part for reuse and returns it only from the top of
//! its heaps, so an idle hub stayed at the wave's peak: measured with 2,000 idle devices (debug
//! build), 108 MB resident of which `malloc_trim` handed back 20 MB. So once the number of open
//! connections has moved by [`MIN_CHANGE`] and then held still for one [`CHECK_INTERVAL`], the
//! hub trims once. An idle hub whose connections do not change never trims (idle CPU stays 0).

use std::{sync::Arc, time::Duration};

use super::connection_limits::ConnectionLimits;

/// How often the number of open connections is looked at.
const CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// How far the number of open connections must move (up or down) since the last trim.
const MIN_CHANGE: usize = 100;

/// Runs for the life of the hub.
pub async fn run(limits: Arc<ConnectionLimits>) {
    let mut ticker = tokio::time::interval(CHECK_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut at_last_trim = limits.open();
    let mut previous = at_last_trim;
    loop {
        ticker.tick().await;
        let open = limits.open();
        if should_trim(at_last_trim, previous, open) {
            let released = tokio::task::spawn_blocking(trim).await.unwrap_or(false);
            tracing::debug!(
                "{open} connections open (were {at_last_trim}): returned freed memory to the system: {released}"
            );
            at_last_trim = open;
        }
        previous = open;
    }
}

/// Trim when the count moved far enough since the last trim and the wave is over (the count is
/// within a few connections of the previous look).
fn should_trim(at_last_trim: usize, previous: usize, open: usize) -> bool {
    open.abs_diff(at_last_trim) >= MIN_CHANGE && open.abs_diff(previous) < MIN_CHANGE / 10
}

/// Whether the allocator returned memory. Only glibc has `malloc_trim`; elsewhere, nothing.
fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks the allocator's own free lists, under its locks.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_a_wave_of_connections_has_settled() {
        // Devices arriving: still climbing, then settled.
        assert!(!should_trim(0, 500, 1_900));
        assert!(should_trim(0, 1_900, 1_905));
        // Already trimmed at this level, small churn: nothing.
        assert!(!should_trim(1_905, 1_905, 1_950));
        // Most devices gone, settled: trim again.
        assert!(should_trim(1_905, 300, 298));
        // A hub with a handful of connections never trims.
        assert!(!should_trim(0, 3, 5));
    }
}
