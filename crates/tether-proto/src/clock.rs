//! The wall clock, read in one place: Unix time in seconds or milliseconds.
//!
//! A clock set before 1970 reads as 0 rather than failing: callers compare times, and an
//! early clock should make things look expired, not crash.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch.
pub fn unix_seconds() -> i64 {
    unix_millis() / 1000
}

/// Milliseconds since the Unix epoch.
pub fn unix_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| {
        i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_millis_agree() {
        let millis = unix_millis();
        let seconds = unix_seconds();
        assert!(millis > 1_600_000_000_000);
        assert!((seconds - millis / 1000).abs() <= 1);
    }
}
