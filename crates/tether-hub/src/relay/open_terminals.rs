//! Terminals a hub stopped under (SIGKILL, power loss) get their `terminal.close`.
//!
//! While a terminal is open its row in `open_terminals` names the hub process serving it (the
//! replica id, from `DATA_DIR/replica-id`). At start, the hub closes the rows it left: one
//! `terminal.close` with outcome `interrupted` each, the output bytes and duration taken from the
//! recording, and the recording's session row ended with them. A replica sharing a PostgreSQL
//! database closes its own rows at start, and those of replicas taken for dead
//! (`relay::replicas`); never those of a live one. The rows of its other live sessions (file
//! transfers, port forwards: `active_sessions`) are deleted at the same moments.
//!
//! A shell that survives the restart (session survival, `resumable_sessions`) is closed the same
//! way, marked `resumable`: the hub process that relayed it is gone, and a re-attach opens the
//! next part with its own `terminal.open` (`resumed`).

use std::{io, path::Path};
use tether_proto::clock::unix_millis;

use serde_json::json;

use crate::{
    domain::audit::Actor, domain::audit::NewEvent, domain::audit::Object, domain::audit::Outcome,
    relay::Relay, relay::recording::player, store::terminals::OpenTerminal,
};

/// The file in the data directory that names this hub process's replica.
const REPLICA_ID_FILE: &str = "replica-id";

/// This hub's replica id: read from the data directory, or made (and kept, mode 0600) at the
/// first start.
pub fn replica_id(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(REPLICA_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_owned()),
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(anyhow::anyhow!("reading {}: {error}", path.display())),
    }
    let id = uuid::Uuid::new_v4().to_string();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .map_err(|error| anyhow::anyhow!("writing {}: {error}", path.display()))?;
    io::Write::write_all(&mut file, format!("{id}\n").as_bytes())?;
    file.sync_all()?;
    Ok(id)
}

/// What a terminal's audit event means for its row, taken before the event is recorded.
pub enum Tracking {
    Opened(Box<OpenTerminal>),
    Closed { sid: String },
}

impl Tracking {
    /// The row change `event` calls for, if it opens or closes a terminal.
    pub fn of(state: &Relay, event: &NewEvent) -> Option<Tracking> {
        let sid = event.session_id.clone()?;
        match (event.action, event.outcome) {
            ("terminal.open", Outcome::Success) => Some(Tracking::Opened(Box::new(OpenTerminal {
                id: uuid::Uuid::now_v7().to_string(),
                sid,
                replica_id: state.replica_id.to_string(),
                actor_id: event.actor.id.clone(),
                actor_name: event.actor.name.clone(),
                client_address: event.actor.client_address.clone(),
                user_agent: event.actor.user_agent.clone(),
                device_id: event.object.id.clone().unwrap_or_default(),
                device_name: event.object.name.clone().unwrap_or_default(),
                command: event.details["command"].as_str().map(str::to_owned),
                opened_at: unix_millis(),
            }))),
            ("terminal.close", _) => Some(Tracking::Closed { sid }),
            _ => None,
        }
    }

    /// Applies it, once the event is recorded.
    pub async fn apply(self, state: &Relay) -> anyhow::Result<()> {
        match self {
            Tracking::Opened(terminal) => state.store.insert_open_terminal(&terminal).await,
            Tracking::Closed { sid } => state.store.delete_open_terminal(&sid, &state.replica_id).await,
        }
    }
}

/// At start: closes the terminals this replica left open. Returns how many. A terminal whose
/// event cannot be written stays open, to be closed at the next start.
pub async fn close_interrupted(state: &Relay) -> anyhow::Result<usize> {
    // Under the closing lock: a replica that was down long enough may be being swept by another.
    let lock = state.store.closing_lock().await?;
    let closed = close_left_by(
        state,
        &state.replica_id,
        "the hub stopped while the terminal was open (closed at the hub's next start)",
    )
    .await;
    // The file transfers and port forwards it served ended with it too (`active_sessions`).
    let gone = state.store.delete_active_sessions_of(&state.replica_id).await;
    if let Ok(gone @ 1..) = gone {
        tracing::info!("deleted {gone} live session row(s) left by the previous run of this hub");
    }
    lock.release().await?;
    gone?;
    closed
}

/// Closes the terminals `replica_id` left open, each with a `terminal.close` (`interrupted`,
/// `reason` in its details). The caller holds [`crate::store::replicas::ClosingLock`]. Byte
/// counts and durations come from the recordings in the database, whichever replica made them.
pub async fn close_left_by(state: &Relay, replica_id: &str, reason: &str) -> anyhow::Result<usize> {
    let left = state.store.open_terminals(replica_id).await?;
    let mut closed = 0;
    for terminal in left {
        let recordings = state.store.unfinished_terminal_sessions(&terminal.sid).await?;
        let mut bytes_out: Option<u64> = None;
        let mut duration_ms: Option<u64> = None;
        for recording in &recordings {
            let (store, directory, sid) = (
                state.store.clone(),
                state.recordings_dir.clone(),
                recording.sid.clone(),
            );
            // Reading a recording blocks (player.rs): off the runtime's worker threads.
            let totals = tokio::task::spawn_blocking(move || {
                let recording = player::Recording::open(&store, &directory, &sid)?;
                Ok::<_, std::io::Error>((!recording.is_empty()).then(|| player::output_totals(&recording)))
            })
            .await
            .map_err(std::io::Error::other)
            .and_then(|totals| totals);
            let totals = match totals {
                Ok(Some(Ok(totals))) => totals,
                Ok(Some(Err(error))) | Err(error) => {
                    tracing::warn!("recording {}: {error}", recording.sid);
                    (0, 0)
                }
                // Nothing recorded (or files on another replica's disk, from before 0017).
                Ok(None) => {
                    state
                        .store
                        .end_terminal_session(&recording.sid, unix_millis(), 0)
                        .await?;
                    continue;
                }
            };
            let (bytes, last_ms) = totals;
            *bytes_out.get_or_insert(0) += bytes;
            *duration_ms.get_or_insert(0) += last_ms;
            let ended_at = recording.started_at + last_ms as i64;
            state
                .store
                .end_terminal_session(&recording.sid, ended_at, bytes)
                .await?;
        }
        let resumable = state
            .store
            .resumable_session(&terminal.sid)
            .await?
            .is_some_and(|session| session.ended_at.is_none());
        let actor = Actor {
            kind: "user",
            id: terminal.actor_id.clone(),
            name: terminal.actor_name.clone(),
            client_address: terminal.client_address.clone(),
            user_agent: terminal.user_agent.clone(),
        };
        let details = json!({
            "reason": reason,
            "bytes_out": bytes_out,
            "duration_ms": duration_ms,
            "command": terminal.command,
            "resumable": resumable,
            "opened_at": terminal.opened_at,
        });
        let event = NewEvent::new(
            actor,
            "terminal.close",
            Object::device(&terminal.device_id, &terminal.device_name),
            Outcome::Interrupted,
        )
        .details(details)
        .session(&terminal.sid);
        if let Err(error) = state.store.record_audit(event).await {
            tracing::error!(
                "session {}: cannot record its interrupted terminal: {}",
                terminal.sid,
                error.message
            );
            continue;
        }
        state
            .store
            .delete_open_terminal(&terminal.sid, &terminal.replica_id)
            .await?;
        tracing::info!(
            "session {}: closed its terminal, interrupted by the stop of replica {replica_id}",
            terminal.sid
        );
        closed += 1;
    }
    Ok(closed)
}
