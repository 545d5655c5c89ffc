//! The storage checks of recording contents (`store/recordings.rs`) and their retention, run on
//! both backends by `store/tests.rs`.

use crate::{store::Store, store::recordings::RecordingChunk};

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
