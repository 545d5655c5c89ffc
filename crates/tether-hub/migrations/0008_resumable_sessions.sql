-- Terminal sessions that can be re-attached after a drop of either leg or a hub restart: what
-- the hub needs to authorize a re-attach (owner and device) survives the hub's memory.
-- `detached_at`: set while no operator is attached; `ended_at`: the shell is gone.

CREATE TABLE resumable_sessions (
    sid         TEXT PRIMARY KEY,
    device_id   TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    detached_at BIGINT,
    ended_at    BIGINT
);
CREATE INDEX resumable_sessions_user ON resumable_sessions(user_id);
