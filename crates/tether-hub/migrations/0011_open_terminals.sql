-- Terminals open right now, with what their `terminal.close` event needs and the hub process
-- (replica) that serves them. A row lives from the `terminal.open` event to the `terminal.close`;
-- rows left by a hub that stopped without closing them (SIGKILL, power loss) are closed at its
-- next start with outcome `interrupted`. `replica_id`: the `replica-id` file of that hub's data
-- directory, so that a replica sharing a PostgreSQL database closes only its own.

CREATE TABLE open_terminals (
    id             TEXT PRIMARY KEY,
    sid            TEXT NOT NULL,
    replica_id     TEXT NOT NULL,
    actor_id       TEXT,
    actor_name     TEXT,
    client_address TEXT,
    user_agent     TEXT,
    device_id      TEXT NOT NULL,
    device_name    TEXT NOT NULL,
    command        TEXT,
    opened_at      BIGINT NOT NULL
);
CREATE INDEX open_terminals_replica ON open_terminals(replica_id);
CREATE INDEX open_terminals_sid ON open_terminals(sid);
