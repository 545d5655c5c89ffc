//! The SQL of recording contents (migration 0017): the compressed chunks of each recording's
//! segments, appended as the recorder flushes them and read back one segment at a time, so
//! that any replica sharing the database can replay any recording. Same rules as
//! `store/mod.rs`: portable SQL (`$N` placeholders, TEXT, BIGINT, and BYTEA for the bytes).

use sqlx::Row as _;

use crate::store::Store;

/// One flush of a segment's gzip stream: the bytes that follow the previous chunk's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingChunk {
    pub segment: u32,
    pub chunk: u32,
    /// The segment's start, ms since the session began.
    pub start_ms: u64,
    pub data: Vec<u8>,
}

impl Store {
    /// Appends a chunk. Writing the same chunk again (a retry after an error whose write had in
    /// fact committed) changes nothing.
    pub async fn append_recording_chunk(&self, sid: &str, chunk: &RecordingChunk) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO recording_chunks (sid, segment, chunk, start_ms, data) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (sid, segment, chunk) DO NOTHING",
        )
        .bind(sid)
        .bind(chunk.segment as i64)
        .bind(chunk.chunk as i64)
        .bind(chunk.start_ms as i64)
        .bind(chunk.data.as_slice())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The segments stored for `sid`, in order: (segment, start ms). Empty for a recording made
    /// before migration 0017 (its segments are files) or one with no output yet.
    pub async fn recording_segments(&self, sid: &str) -> anyhow::Result<Vec<(u32, u64)>> {
        let rows = sqlx::query(
            "SELECT segment, start_ms FROM recording_chunks WHERE sid = $1 AND chunk = 0 ORDER BY segment",
        )
        .bind(sid)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let segment: i64 = row.try_get("segment")?;
                let start_ms: i64 = row.try_get("start_ms")?;
                Ok((
                    u32::try_from(segment).unwrap_or(u32::MAX),
                    u64::try_from(start_ms).unwrap_or(0),
                ))
            })
            .collect()
    }

    /// One segment's gzip stream as stored so far: its chunks joined in order. A segment is
    /// bounded (recorder.rs), so this is never a whole long recording.
    pub async fn recording_segment(&self, sid: &str, segment: u32) -> anyhow::Result<Vec<u8>> {
        let rows =
            sqlx::query("SELECT data FROM recording_chunks WHERE sid = $1 AND segment = $2 ORDER BY chunk")
                .bind(sid)
                .bind(segment as i64)
                .fetch_all(&self.pool)
                .await?;
        let mut stream = Vec::new();
        for row in &rows {
            let data: Vec<u8> = row.try_get("data")?;
            stream.extend_from_slice(&data);
        }
        Ok(stream)
    }
}
