//! Terminal session recordings: every terminal session's output (and window resizes, and input
//! when configured) is written with its timing, compressed, in segments that each start with a
//! keyframe, so that a long session is never cut off and a player can seek without replaying
//! from the start. Segments are kept in the database (every replica sharing it reads them); a
//! live session can be watched, read-only.

pub mod player;
pub mod recorder;
pub mod search;
mod thread_receiver;

use std::{collections::HashMap, sync::Mutex};

use tokio::sync::{broadcast, mpsc, oneshot};

pub use recorder::{LiveEvent, RecordingHandle, Snapshot};

/// Someone started or stopped watching a live session: its user leg tells the terminal's user.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WatchNotice {
    pub sid: String,
    /// The watcher's user name.
    pub user: String,
    pub watching: bool,
}

/// The sessions being recorded right now, for live watchers.
pub struct LiveSessions {
    /// Weak: a recording ends when its session drops the handle, not when the registry does.
    /// Each with the number it was registered under: the part of a re-attached session that
    /// ended is removed, never the part that continues its recording under the same id.
    sessions: Mutex<HashMap<String, (u64, mpsc::WeakSender<recorder::Command>)>>,
    registrations: std::sync::atomic::AtomicU64,
    /// Watchers coming and going, for every session's user leg on this replica (each keeps its
    /// own sid's). A watcher on another replica reaches here through the bus.
    notices: broadcast::Sender<WatchNotice>,
    /// Who watches each session now (by recording id), from the same notices: a user leg that
    /// re-attaches tells its user again.
    watchers: Mutex<HashMap<String, Vec<String>>>,
}

impl Default for LiveSessions {
    fn default() -> Self {
        LiveSessions {
            sessions: Mutex::default(),
            registrations: std::sync::atomic::AtomicU64::new(0),
            notices: broadcast::channel(64).0,
            watchers: Mutex::default(),
        }
    }
}

impl LiveSessions {
    /// Tells the user leg of `notice.sid`, if it is on this replica.
    pub fn announce(&self, notice: WatchNotice) {
        {
            let mut watchers = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
            let users = watchers.entry(notice.sid.clone()).or_default();
            if notice.watching {
                users.push(notice.user.clone());
            } else if let Some(index) = users.iter().position(|user| *user == notice.user) {
                users.remove(index);
            }
            if users.is_empty() {
                watchers.remove(&notice.sid);
            }
        }
        // No receiver: no session on this replica right now; nothing to tell.
        let _ = self.notices.send(notice);
    }

    /// Who watches session `sid` now (a user watching twice is named twice).
    pub fn watchers(&self, sid: &str) -> Vec<String> {
        let watchers = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        watchers
            .iter()
            .filter(|(watched, _)| watches(watched, sid))
            .flat_map(|(_, users)| users.iter().cloned())
            .collect()
    }

    /// The watch notices of every session on this replica, from now on.
    pub fn notices(&self) -> broadcast::Receiver<WatchNotice> {
        self.notices.subscribe()
    }

    /// Registers a recording; returns the number to remove it by.
    fn insert(&self, sid: &str, sender: mpsc::WeakSender<recorder::Command>) -> u64 {
        let number = self
            .registrations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sid.to_owned(), (number, sender));
        number
    }

    fn remove(&self, sid: &str, number: u64) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if sessions
            .get(sid)
            .is_some_and(|(registered, _)| *registered == number)
        {
            sessions.remove(sid);
        }
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
            .1
            .upgrade()?;
        let (reply, answer) = oneshot::channel();
        sender.send(recorder::Command::Subscribe(reply)).await.ok()?;
        answer.await.ok()
    }
}

/// Whether a watcher of recording `watched` watches session `sid`: its recording, or (from hubs
/// before a re-attached session continued its recording) that of a part of it resumed after a
/// drop (`SID-resumed-…`).
pub fn watches(watched: &str, sid: &str) -> bool {
    watched
        .strip_prefix(sid)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("-resumed-"))
}

/// Deletes the recordings of sessions that ended before `before` (Unix ms): their rows and
/// chunks in the database, then the files of those made before the database held them. Returns
/// how many this call deleted: with replicas sharing a database, each recording is deleted (and
/// counted) by exactly one of the replicas running this, at once or not.
pub async fn prune(
    store: &crate::store::Store,
    directory: &std::path::Path,
    before: i64,
) -> anyhow::Result<usize> {
    let sids = store.delete_terminal_sessions_ended_before(before).await?;
    for sid in &sids {
        // Session ids are UUIDs the hub made; never a path from outside.
        remove_files(&directory.join(sid));
    }
    // Files whose session another replica deleted (or one deleted before a crash here).
    let Ok(entries) = std::fs::read_dir(directory) else {
        return Ok(sids.len());
    };
    for entry in entries.filter_map(Result::ok) {
        let sid = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() && store.terminal_session(&sid).await?.is_none() {
            remove_files(&entry.path());
        }
    }
    Ok(sids.len())
}

fn remove_files(path: &std::path::Path) {
    if let Err(error) = std::fs::remove_dir_all(path)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("recording retention: deleting {}: {error}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::{LiveSessions, WatchNotice};
    use crate::{domain::recording_format::SessionInfo, store::Store, store::recordings::RecordingChunk};

    #[test]
    fn watchers_come_and_go_and_a_resumed_part_counts() {
        let live = LiveSessions::default();
        let notice = |sid: &str, user: &str, watching| WatchNotice {
            sid: sid.into(),
            user: user.into(),
            watching,
        };
        live.announce(notice("s1", "bob", true));
        live.announce(notice("s1", "bob", true));
        live.announce(notice("s1-resumed-17", "carol", true));
        live.announce(notice("s10", "dave", true));
        assert_eq!(live.watchers("s1").len(), 3);
        live.announce(notice("s1", "bob", false));
        live.announce(notice("s1-resumed-17", "carol", false));
        assert_eq!(live.watchers("s1"), ["bob"]);
        live.announce(notice("s1", "bob", false));
        assert!(live.watchers("s1").is_empty());
        assert_eq!(live.watchers("s10"), ["dave"]);
    }

    #[tokio::test]
    async fn retention_deletes_only_old_ended_recordings_once() {
        let directory = tempfile::tempdir().unwrap();
        let recordings = directory.path().join("recordings");
        std::fs::create_dir_all(&recordings).unwrap();
        let store = Store::open_sqlite(&directory.path().join("hub.db"))
            .await
            .unwrap();
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
            let chunk = RecordingChunk {
                segment: 0,
                chunk: 0,
                start_ms: 0,
                data: b"gz".to_vec(),
            };
            store.append_recording_chunk(sid, &chunk).await.unwrap();
            if let Some(at) = ended {
                store.end_terminal_session(sid, at, 0).await.unwrap();
            }
        }
        // Files of recordings from before the database held them: one of a kept session, one
        // of the deleted one, one whose session is gone already (deleted by another replica).
        for sid in ["recent", "old", "gone"] {
            std::fs::create_dir_all(recordings.join(sid)).unwrap();
        }
        // Two runs at once (two replicas): one deletes, the other finds nothing more.
        let (first, second) = tokio::join!(
            super::prune(&store, &recordings, 2_000),
            super::prune(&store, &recordings, 2_000)
        );
        assert_eq!(first.unwrap() + second.unwrap(), 1);
        assert!(!recordings.join("old").exists() && !recordings.join("gone").exists());
        assert!(recordings.join("recent").exists());
        assert!(store.terminal_session("old").await.unwrap().is_none());
        assert!(store.recording_segments("old").await.unwrap().is_empty());
        assert!(store.terminal_session("recent").await.unwrap().is_some());
        assert_eq!(store.recording_segments("live").await.unwrap(), [(0, 0)]);
    }
}
