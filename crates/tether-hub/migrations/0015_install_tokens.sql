-- One-time enrolment tokens for the one-line install: stored hashed, scoped to the tags the
-- device gets, expiring, limited in uses, revocable.

CREATE TABLE install_tokens (
    id           TEXT PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE,
    -- Comma-separated tag names the enrolled device gets.
    tags         TEXT NOT NULL,
    max_uses     BIGINT NOT NULL,
    uses         BIGINT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
