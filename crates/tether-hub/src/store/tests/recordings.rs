//! The storage checks of recordings, run on both backends by `store/tests.rs`: the terminal
//! session rows and their filters (`store/terminals.rs`), recording contents
//! (`store/recordings.rs`) and their retention.

use crate::{store::Store, store::recordings::RecordingChunk, store::terminals::TerminalSessionFilter};

fn chunk(segment: u32, chunk: u32, start_ms: u64, data: &[u8]) -> RecordingChunk {
    RecordingChunk {
        segment,
        chunk,
        start_ms,
        data: data.to_vec(),
    }
}

/// A recorded session whose row ended at `ended_at`, with one chunk.
pub(super) async fn recorded_session(store: &Store, sid: &str, ended_at: i64) {
    let info = super::session_info(sid);
    store.insert_terminal_session(&info, 0).await.unwrap();
    store
        .append_recording_chunk(sid, &chunk(0, 0, 0, b"x"))
        .await
        .unwrap();
    store.end_terminal_session(sid, ended_at, 1).await.unwrap();
}

/// Chunks are appended once, read back joined by segment, and deleted with their session.
pub(super) async fn recording_chunks(store: &Store) {
    // Bytes of every value, NUL and 0xff included, survive the BYTEA column.
    let all: Vec<u8> = (0..=255).collect();
    for written in [
        chunk(0, 0, 0, b"ab"),
        chunk(0, 1, 0, &all),
        chunk(1, 0, 60_000, b"next"),
        chunk(0, 1, 0, b"a retry changes nothing"),
    ] {
        store.append_recording_chunk("r1", &written).await.unwrap();
    }
    assert_eq!(
        store.recording_segments("r1").await.unwrap(),
        [(0, 0), (1, 60_000)]
    );
    let mut first = b"ab".to_vec();
    first.extend_from_slice(&all);
    assert_eq!(store.recording_segment("r1", 0).await.unwrap(), first);
    assert_eq!(store.recording_segment("r1", 1).await.unwrap(), b"next");
    assert!(store.recording_segments("none").await.unwrap().is_empty());

    recorded_session(store, "r-old", 1_000).await;
    recorded_session(store, "r-new", 9_000).await;
    assert_eq!(
        store.delete_terminal_sessions_ended_before(5_000).await.unwrap(),
        ["r-old"]
    );
    assert!(store.recording_segments("r-old").await.unwrap().is_empty());
    assert_eq!(store.recording_segments("r-new").await.unwrap(), [(0, 0)]);
    // Deleting again finds nothing: retention is idempotent.
    assert!(
        store
            .delete_terminal_sessions_ended_before(5_000)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Terminal session rows: listed with each filter (device and user by id or name, dates),
/// ended, and deleted after retention.
pub(super) async fn terminal_sessions(store: &Store) {
    let info = super::session_info("s1");
    store.insert_terminal_session(&info, 1_000).await.unwrap();
    let mut other = super::session_info("s2");
    (other.device_id, other.device_name, other.user_id, other.user_name) =
        ("d2".into(), "delta".into(), "u2".into(), "bob".into());
    store.insert_terminal_session(&other, 5_000).await.unwrap();
    let listed = |filter: TerminalSessionFilter| async move {
        let filter = TerminalSessionFilter { limit: 10, ..filter };
        let sessions = store.terminal_sessions(&filter).await.unwrap();
        sessions
            .into_iter()
            .map(|session| session.sid)
            .collect::<Vec<_>>()
    };
    let text = |value: &str| Some(value.to_owned());
    assert_eq!(
        listed(TerminalSessionFilter::default()).await,
        ["s2", "s1"],
        "newest first"
    );
    // A device by id or by name, a user by id or by name.
    for device in ["d1", "gamma"] {
        let filter = TerminalSessionFilter {
            device: text(device),
            ..Default::default()
        };
        assert_eq!(listed(filter).await, ["s1"], "device {device}");
    }
    for user in ["u2", "bob"] {
        let filter = TerminalSessionFilter {
            user: text(user),
            ..Default::default()
        };
        assert_eq!(listed(filter).await, ["s2"], "user {user}");
    }
    // Started at or after `from`, before `to`.
    let filter = TerminalSessionFilter {
        from: Some(5_000),
        ..Default::default()
    };
    assert_eq!(listed(filter).await, ["s2"]);
    let filter = TerminalSessionFilter {
        to: Some(5_000),
        ..Default::default()
    };
    assert_eq!(listed(filter).await, ["s1"]);
    let filter = TerminalSessionFilter {
        from: Some(1_000),
        to: Some(1_001),
        user: text("alice"),
        ..Default::default()
    };
    assert_eq!(listed(filter).await, ["s1"]);
    let filter = TerminalSessionFilter {
        limit: 1,
        ..Default::default()
    };
    assert_eq!(store.terminal_sessions(&filter).await.unwrap().len(), 1);
    store.end_terminal_session("s1", 2_000, 4096).await.unwrap();
    let stored = store.terminal_session("s1").await.unwrap().unwrap();
    assert_eq!(
        (stored.ended_at, stored.bytes_out, stored.width),
        (Some(2_000), 4096, 80)
    );
    assert_eq!(
        store.delete_terminal_sessions_ended_before(3_000).await.unwrap(),
        ["s1"]
    );
}
