-- Hub replicas sharing a PostgreSQL database, and when each last said it was alive (Unix
-- milliseconds, by its own clock). A replica whose heartbeat is older than
-- `replica_timeout_secs` is taken for dead: another replica closes the terminals it left in
-- `open_terminals` (outcome `interrupted`), then deletes its row. Unused with SQLite (one hub).

CREATE TABLE replica_heartbeats (
    replica_id   TEXT PRIMARY KEY,
    heartbeat_at BIGINT NOT NULL
);
