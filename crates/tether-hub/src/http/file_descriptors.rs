//! File-descriptor headroom: the hub raises its soft `RLIMIT_NOFILE` to the hard limit at start,
//! and derives the default cap on client connections from it, keeping a reserve for what the hub
//! itself opens (the database and its connection pool, recordings, PostgreSQL/NATS, logs), so that
//! clients can never make it fail with "Too many open files".

/// File descriptors kept for the hub's own use whatever the load: SQLite (database, WAL, shared
/// memory, per pooled connection), PostgreSQL and NATS sockets, the listener, standard streams,
/// the runtime's own descriptors, and the socket `accept` needs to refuse a connection.
pub const FIXED_RESERVE: u64 = 256;

/// Raises the soft limit on open files to the hard limit; returns the soft limit in force
/// afterwards (the old one if raising failed, which is logged).
pub fn raise_open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; no other preconditions.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        tracing::warn!("reading the open-file limit: {}", std::io::Error::last_os_error());
        return 1024;
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own; raising the soft limit up to the hard limit
        // needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = limit.rlim_max;
        } else {
            tracing::warn!(
                "raising the open-file limit from {before} to {}: {}",
                limit.rlim_max,
                std::io::Error::last_os_error()
            );
        }
    }
    // RLIM_INFINITY is u64::MAX: no caps are derived from that.
    let current = limit.rlim_cur;
    if current != before {
        tracing::info!("open-file limit raised from {before} to {current}");
    }
    current
}

/// The default `max_connections` for an open-file limit: half of what the fixed reserve leaves,
/// because every connection can be a terminal whose recording holds one more file open.
pub fn default_max_connections(open_file_limit: u64) -> usize {
    let usable = open_file_limit.saturating_sub(FIXED_RESERVE) / 2;
    // An absurdly large limit (RLIM_INFINITY) would make no cap at all: memory bounds it first.
    usable.clamp(1, 1 << 20) as usize
}

/// The connection cap in force: the configured one (0 = derived), but never more than the open
/// files leave after the reserve.
pub fn max_connections(configured: usize, open_file_limit: u64) -> usize {
    let derived = default_max_connections(open_file_limit);
    if configured == 0 {
        return derived;
    }
    let ceiling = open_file_limit.saturating_sub(FIXED_RESERVE).max(1) as usize;
    if configured > ceiling {
        tracing::warn!(
            "max_connections = {configured} leaves no file descriptors for the hub's own files \
             (open-file limit {open_file_limit}): using {ceiling}"
        );
        return ceiling;
    }
    configured
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_the_reserve_and_a_file_per_connection() {
        assert_eq!(default_max_connections(20_000), (20_000 - 256) / 2);
        assert_eq!(default_max_connections(1024), 384);
        assert_eq!(default_max_connections(100), 1);
        assert_eq!(default_max_connections(u64::MAX), 1 << 20);
    }

    #[test]
    fn a_configured_cap_is_bounded_by_the_open_file_limit() {
        assert_eq!(max_connections(0, 20_000), 9872);
        assert_eq!(max_connections(50, 20_000), 50);
        assert_eq!(max_connections(100_000, 20_000), 20_000 - 256);
    }

    #[test]
    fn raising_keeps_or_increases_the_soft_limit() {
        let raised = raise_open_file_limit();
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
        assert_eq!(raised, limit.rlim_cur);
        assert_eq!(limit.rlim_cur, limit.rlim_max);
    }
}
