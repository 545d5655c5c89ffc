//! Replicas sharing a PostgreSQL database watch each other: each writes a heartbeat every
//! quarter of `replica_timeout_secs`, and a replica whose heartbeat is older than the timeout is
//! taken for dead (SIGKILL, power loss, a lost host). The replica that notices first closes the
//! terminals the dead one left open, as `interrupted` (as that replica itself would at its next
//! start, see `open_terminals`), under the closing lock so that none is closed twice, and
//! deletes its rows of other live sessions (`active_sessions`: file transfers, port forwards).
//!
//! A live replica's rows are never closed while its heartbeats reach the database; one cut off
//! from the database for longer than the timeout cannot record audit events either. Clocks of
//! the replicas must agree to well within the timeout (NTP).

use std::time::Duration;

use tether_proto::clock::unix_millis;

use crate::relay::{Relay, open_terminals};

/// How often a replica beats for a given timeout (a quarter of it, at least a second).
pub fn heartbeat_interval(timeout_secs: u64) -> Duration {
    Duration::from_millis((timeout_secs.max(1) * 1000 / 4).max(1000))
}

/// Writes this replica's heartbeat now.
pub async fn beat(state: &Relay) -> anyhow::Result<()> {
    state
        .store
        .replica_heartbeat(&state.replica_id, unix_millis())
        .await
}

/// Closes the terminals of every replica taken for dead; returns how many were closed.
pub async fn close_terminals_of_dead_replicas(state: &Relay) -> anyhow::Result<usize> {
    let timeout_ms = (state.config.replica_timeout_secs.max(1) * 1000) as i64;
    let lock = state.store.closing_lock().await?;
    // Read under the lock: another replica may have just closed them, or come back.
    let now = unix_millis();
    let alive_since = now - timeout_ms;
    let result = async {
        let mut closed = 0;
        for replica in state
            .store
            .dead_replicas(&state.replica_id, now, alive_since)
            .await?
        {
            let reason = format!(
                "hub replica {replica} stopped while the terminal was open (no heartbeat for {}s; \
                 closed by replica {})",
                timeout_ms / 1000,
                state.replica_id
            );
            closed += open_terminals::close_left_by(state, &replica, &reason).await?;
            // Its file transfers and port forwards ended with it: no event, just off the list.
            let gone = state.store.delete_active_sessions_of(&replica).await?;
            if gone > 0 {
                tracing::info!("deleted {gone} live session row(s) of stopped replica {replica}");
            }
        }
        state.store.forget_dead_replicas(alive_since).await?;
        anyhow::Ok(closed)
    }
    .await;
    lock.release().await?;
    result
}

/// Beats and sweeps for ever (spawned at start with PostgreSQL).
pub async fn watch(state: Relay) {
    let mut ticker = tokio::time::interval(heartbeat_interval(state.config.replica_timeout_secs));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(error) = beat(&state).await {
            tracing::warn!("writing this replica's heartbeat: {error:#}");
            continue;
        }
        match close_terminals_of_dead_replicas(&state).await {
            Ok(0) => {}
            Ok(closed) => tracing::info!("closed {closed} terminal(s) left open by stopped replicas"),
            Err(error) => tracing::warn!("closing the terminals of stopped replicas: {error:#}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_replica_beats_four_times_per_timeout_and_at_most_every_second() {
        assert_eq!(super::heartbeat_interval(60).as_millis(), 15_000);
        assert_eq!(super::heartbeat_interval(2).as_millis(), 1000);
        assert_eq!(super::heartbeat_interval(0).as_millis(), 1000);
    }
}
