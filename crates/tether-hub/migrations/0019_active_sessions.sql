-- Live sessions that are not terminals (those are in `open_terminals`): a file transfer (one row
-- per transfer, `detail` its direction and path) or a port forward (one row per `tether
-- port-forward` run however many connections it carries, `detail` its targets and protocols),
-- for the Active sessions list. A row lives from the start of the transfer or the first
-- forwarded connection to the end of the transfer or session. `replica_id`: the hub process
-- serving it (as in `open_terminals`); rows left by a hub that stopped under them are deleted
-- at its next start, or by a surviving replica once it is taken for dead (`replica_heartbeats`).
-- `detail` is a JSON object; times are Unix milliseconds.

CREATE TABLE active_sessions (
    id          TEXT PRIMARY KEY,
    sid         TEXT NOT NULL,
    kind        TEXT NOT NULL,
    detail      TEXT NOT NULL,
    replica_id  TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    user_name   TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    device_name TEXT NOT NULL,
    started_at  BIGINT NOT NULL
);
CREATE INDEX active_sessions_replica ON active_sessions(replica_id);
CREATE INDEX active_sessions_user ON active_sessions(user_id);
