//! Terminal session recordings: every terminal session's output (and window resizes, and input
//! when configured) is written with its timing, compressed, in segments that each start with a
//! keyframe, so that a long session is never cut off and a player can seek without replaying
//! from the start. A live session can be watched, read-only.

pub mod format;
pub mod player;
pub mod recorder;

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
