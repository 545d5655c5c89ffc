//! `GET /sessions/active`: every session running now, whatever its kind — terminals and
//! commands (with the recording a watcher can follow), file transfers (with their path) and
//! port forwards (with their targets) — on any replica.

use serde::{Deserialize, Serialize};

/// What a live session does.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ActiveSessionKind {
    /// An interactive shell.
    Terminal,
    /// A command (`tether exec`), `detail` its command line.
    Command,
    /// A file on its way to the device, `detail` its path there.
    FileUpload,
    /// A file on its way from the device, `detail` its path there.
    FileDownload,
    /// A port forward, `detail` its targets (`TCP host:port, UDP host:port`).
    PortForward,
}

/// One live session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActiveSession {
    /// The session id (of the user's connection; a port forward's many connections share it).
    pub sid: String,
    pub kind: ActiveSessionKind,
    /// The command, the file's path or the forward's targets; `null` for a terminal.
    pub detail: Option<String>,
    pub user_id: String,
    pub user_name: String,
    pub device_id: String,
    pub device_name: String,
    /// Unix milliseconds.
    pub started_at: i64,
    /// The recording to watch live (`GET /sessions/{sid}/watch`): terminals and commands that
    /// are recorded; `null` otherwise.
    pub watch_sid: Option<String>,
}

/// The answer to `GET /sessions/active`, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActiveSessionList {
    pub sessions: Vec<ActiveSession>,
    /// More sessions run than the list holds (at most 1000).
    pub truncated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::testing::round_trip;

    #[test]
    fn the_active_session_shapes_are_pinned() {
        let list: ActiveSessionList = round_trip(
            r#"{"sessions":[{"sid":"s1","kind":"terminal","detail":null,"user_id":"u1","user_name":"alice",
                "device_id":"d1","device_name":"pump","started_at":1714564800000,"watch_sid":"s1"},
               {"sid":"s2","kind":"port_forward","detail":"TCP 127.0.0.1:22","user_id":"u1","user_name":"alice",
                "device_id":"d1","device_name":"pump","started_at":1714564800001,"watch_sid":null},
               {"sid":"s3","kind":"file_upload","detail":"/tmp/a","user_id":"u1","user_name":"alice",
                "device_id":"d1","device_name":"pump","started_at":1714564800002,"watch_sid":null}],
              "truncated":false}"#,
        );
        assert_eq!(list.sessions[1].kind, ActiveSessionKind::PortForward);
        assert_eq!(list.sessions[2].kind, ActiveSessionKind::FileUpload);
    }
}
