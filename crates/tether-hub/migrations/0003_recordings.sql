-- Terminal sessions and their recordings (files under DATA_DIR/recordings/<sid>/).

CREATE TABLE terminal_sessions (
    sid         TEXT PRIMARY KEY,
    device_id   TEXT NOT NULL,
    device_name TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    user_name   TEXT NOT NULL,
    command     TEXT,
    started_at  BIGINT NOT NULL,
    ended_at    BIGINT,
    bytes_out   BIGINT NOT NULL DEFAULT 0,
    width       BIGINT NOT NULL,
    height      BIGINT NOT NULL
);
CREATE INDEX terminal_sessions_started ON terminal_sessions(started_at);
CREATE INDEX terminal_sessions_device ON terminal_sessions(device_id);
