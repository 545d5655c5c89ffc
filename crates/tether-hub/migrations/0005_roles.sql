-- Roles on device groups. Built-in roles (admin, operator, auditor) live in the code; custom
-- roles here. A grant gives a user a role on a scope: '*' (every device), 'tag:NAME' (the
-- devices carrying that tag) or a device id. `users.admin` stays the grant of the built-in admin
-- role on every device.

CREATE TABLE roles (
    name        TEXT PRIMARY KEY,
    -- Comma-separated permission names.
    permissions TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL
);

CREATE TABLE role_grants (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role       TEXT NOT NULL,
    scope      TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX role_grants_user ON role_grants(user_id);

-- Comma-separated, sorted tag names; matched as ',' || tags || ',' LIKE '%,NAME,%'.
ALTER TABLE devices ADD COLUMN tags TEXT NOT NULL DEFAULT '';

-- Existing non-admin users kept every device feature before roles existed: they become
-- operators on every device, so an upgrade changes nobody's access.
INSERT INTO role_grants (id, user_id, role, scope, created_at)
    SELECT 'migrated-' || id, id, 'operator', '*', created_at FROM users WHERE admin = 0;
