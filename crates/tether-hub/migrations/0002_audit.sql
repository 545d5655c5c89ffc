-- The audit log: one row per security-relevant action, hash-chained. `seq` is assigned by the hub
-- without gaps, so a deleted row shows as a gap; `hash` covers the row and the previous hash.

CREATE TABLE audit_events (
    seq            BIGINT PRIMARY KEY,
    id             TEXT NOT NULL UNIQUE,
    time           BIGINT NOT NULL,
    actor_kind     TEXT NOT NULL,
    actor_id       TEXT,
    actor_name     TEXT,
    client_address TEXT,
    user_agent     TEXT,
    action         TEXT NOT NULL,
    object_kind    TEXT,
    object_id      TEXT,
    object_name    TEXT,
    outcome        TEXT NOT NULL,
    details        TEXT NOT NULL,
    session_id     TEXT,
    prev_hash      TEXT NOT NULL,
    hash           TEXT NOT NULL
);
CREATE INDEX audit_events_time ON audit_events(time);
CREATE INDEX audit_events_actor ON audit_events(actor_id);
CREATE INDEX audit_events_object ON audit_events(object_id);
CREATE INDEX audit_events_action ON audit_events(action);
CREATE INDEX audit_events_session ON audit_events(session_id);

-- Where the chain starts after retention pruned older events: the seq and hash of the last
-- pruned event.
CREATE TABLE audit_anchor (
    id        BIGINT PRIMARY KEY,
    seq       BIGINT NOT NULL,
    hash      TEXT NOT NULL
);
