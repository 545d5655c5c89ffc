-- Terminal recordings in the database (from 0017 on; before, segment files under
-- DATA_DIR/recordings/<sid>/ on the replica that relayed the session, still read from there):
-- every replica sharing the database lists, replays and exports every recording, and a SQLite
-- backup holds them.
--
-- A recording is a sequence of segments (`segment`, from 0), each one gzip stream that starts
-- with a keyframe (domain/recording_format.rs). The recorder appends a segment's compressed
-- bytes as they are flushed (about once a second), one row per flush (`chunk`, from 0): the
-- segment is its chunks' `data` joined in `chunk` order, so no row is ever rewritten and a
-- crash loses at most the last flush. `start_ms`: the segment's start, ms since the session
-- began (the same in every chunk of a segment). Rows go with their `terminal_sessions` row
-- (retention).
--
-- BYTEA is PostgreSQL's binary type; SQLite gives the name NUMERIC affinity, which stores a
-- BLOB value as it is.

CREATE TABLE recording_chunks (
    sid      TEXT NOT NULL,
    segment  BIGINT NOT NULL,
    chunk    BIGINT NOT NULL,
    start_ms BIGINT NOT NULL,
    data     BYTEA NOT NULL,
    PRIMARY KEY (sid, segment, chunk)
);
