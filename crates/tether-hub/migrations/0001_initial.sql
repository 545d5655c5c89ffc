-- Users, their login sessions, and devices. Times are Unix milliseconds; flags are 0/1 integers
-- so that the same queries run on SQLite and PostgreSQL through sqlx's Any driver.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    admin         BIGINT NOT NULL DEFAULT 0,
    disabled      BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL
);

CREATE TABLE user_sessions (
    token_hash     TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    client_address TEXT,
    user_agent     TEXT
);
CREATE INDEX user_sessions_user ON user_sessions(user_id);

CREATE TABLE devices (
    id            TEXT PRIMARY KEY,
    public_key    TEXT NOT NULL UNIQUE,
    identity      TEXT NOT NULL,
    name          TEXT NOT NULL,
    status        TEXT NOT NULL,
    agent_version TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    last_seen_at  BIGINT
);
CREATE INDEX devices_status ON devices(status);
CREATE INDEX devices_name ON devices(name);
