-- Approval on demand. A scope listed in approval_policies ('tag:NAME' or a device id) is reached
-- (terminal, files, forwards) only through an approved access request, which expires.

CREATE TABLE approval_policies (
    scope      TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);

CREATE TABLE access_requests (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    user_name     TEXT NOT NULL,
    scope         TEXT NOT NULL,
    -- Comma-separated permission names.
    permissions   TEXT NOT NULL,
    duration_secs BIGINT NOT NULL,
    reason        TEXT NOT NULL,
    -- pending, approved, denied, revoked, expired
    status        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    decided_by    TEXT,
    decided_at    BIGINT,
    note          TEXT,
    expires_at    BIGINT
);
CREATE INDEX access_requests_user ON access_requests(user_id, status);
CREATE INDEX access_requests_status ON access_requests(status, expires_at);
