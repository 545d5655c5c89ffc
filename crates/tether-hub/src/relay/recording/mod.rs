//! Terminal session recordings: every terminal session's output (and window resizes, and input
//! when configured) is written with its timing, compressed, in segments that each start with a
//! keyframe, so that a long session is never cut off and a player can seek without replaying
//! from the start. A live session can be watched, read-only.

pub mod player;
pub mod recorder;
mod thread_receiver;

use std::{collections::HashMap, sync::Mutex};

use tokio::sync::{mpsc, oneshot};

pub use recorder::{LiveEvent, RecordingHandle, Snapshot};

/// The sessions being recorded right now, for live watchers.
#[derive(Default)]
pub struct LiveSessions {
    /// Weak: a recording ends when its session drops the handle, not when the registry does.
    sessions: Mutex<HashMap<String, mpsc::WeakSender<recorder::Command>>>,
}

impl LiveSessions {
    fn insert(&self, sid: &str, sender: mpsc::WeakSender<recorder::Command>) {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sid.to_owned(), sender);
    }

    fn remove(&self, sid: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(sid);
    }

    pub fn is_live(&self, sid: &str) -> bool {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(sid)
    }

    /// The screen as it is now, and the live events that follow it; None if the session is not
    /// live.
    pub async fn watch(&self, sid: &str) -> Option<Snapshot> {
        let sender = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(sid)?
            .upgrade()?;
        let (reply, answer) = oneshot::channel();
        sender.send(recorder::Command::Subscribe(reply)).await.ok()?;
        answer.await.ok()
    }
}

/// Deletes the recordings of sessions that ended before `before` (Unix ms): the files first,
/// then the records. Returns how many were deleted.
pub async fn prune(
    store: &crate::store::Store,
    directory: &std::path::Path,
    before: i64,
) -> anyhow::Result<usize> {
    let sids = store.delete_terminal_sessions_ended_before(before).await?;
    for sid in &sids {
        // Session ids are UUIDs the hub made; never a path from outside.
        let path = directory.join(sid);
        if let Err(error) = std::fs::remove_dir_all(&path)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("recording retention: deleting {}: {error}", path.display());
        }
    }
    Ok(sids.len())
}

#[cfg(test)]
mod tests {
    use crate::{domain::recording_format::SessionInfo, store::Store};

    #[tokio::test]
    async fn retention_deletes_only_old_ended_recordings() {
        let directory = std::env::temp_dir().join(format!("tether-prune-{}", std::process::id()));
        let recordings = directory.join("recordings");
        std::fs::create_dir_all(&recordings).unwrap();
        let store = Store::open_sqlite(&directory.join("hub.db")).await.unwrap();
        for (sid, ended) in [("old", Some(1_000)), ("recent", Some(5_000)), ("live", None)] {
            let info = SessionInfo {
                sid: sid.into(),
                device_id: "d".into(),
                device_name: "d".into(),
                user_id: "u".into(),
                user_name: "u".into(),
                command: None,
                width: 80,
                height: 24,
            };
            store.insert_terminal_session(&info, 0).await.unwrap();
            if let Some(at) = ended {
                store.end_terminal_session(sid, at, 0).await.unwrap();
            }
            std::fs::create_dir_all(recordings.join(sid)).unwrap();
        }
        assert_eq!(super::prune(&store, &recordings, 2_000).await.unwrap(), 1);
        assert!(!recordings.join("old").exists());
        assert!(recordings.join("recent").exists() && recordings.join("live").exists());
        assert!(store.terminal_session("old").await.unwrap().is_none());
        assert!(store.terminal_session("recent").await.unwrap().is_some());
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
