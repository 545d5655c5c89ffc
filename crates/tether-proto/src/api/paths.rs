//! The paths of the management API, in one place: constants for fixed paths and functions for
//! paths with an id or name in them.
//!
//! The functions put a segment in as given, so that the hub can pass `{id}` to get its route
//! template; a client percent-encodes what it did not get from the hub with [`segment`].

/// The prefix of every management path.
pub const MANAGEMENT: &str = "/api/management/v1";

pub const LOGIN_PATH: &str = "/api/management/v1/auth/login";
pub const LOGOUT_PATH: &str = "/api/management/v1/auth/logout";
pub const PASSWORD_PATH: &str = "/api/management/v1/auth/password";
pub const WEB_LOGIN_PATH: &str = "/api/management/v1/auth/web/login";
pub const WEB_LOGOUT_PATH: &str = "/api/management/v1/auth/web/logout";
pub const WEB_SESSION_PATH: &str = "/api/management/v1/auth/web/session";

pub const TWO_FACTOR_ENROL_PATH: &str = "/api/management/v1/auth/2fa/enrol";
pub const TWO_FACTOR_CONFIRM_PATH: &str = "/api/management/v1/auth/2fa/confirm";
pub const TWO_FACTOR_DISABLE_PATH: &str = "/api/management/v1/auth/2fa/disable";
pub const TWO_FACTOR_SETTING_PATH: &str = "/api/management/v1/settings/two-factor";

pub const DEVICES_PATH: &str = "/api/management/v1/devices";
pub const INSTALL_TOKENS_PATH: &str = "/api/management/v1/install-tokens";
pub const TOKENS_PATH: &str = "/api/management/v1/tokens";
pub const USERS_PATH: &str = "/api/management/v1/users";
pub const ROLES_PATH: &str = "/api/management/v1/roles";
pub const ACCESS_POLICIES_PATH: &str = "/api/management/v1/access/policies";
pub const ACCESS_REQUESTS_PATH: &str = "/api/management/v1/access/requests";
pub const SESSIONS_PATH: &str = "/api/management/v1/sessions";
pub const DETACHED_SESSIONS_PATH: &str = "/api/management/v1/sessions/detached";
/// `GET`: every live session of any kind (see [`super::active_sessions`]).
pub const ACTIVE_SESSIONS_PATH: &str = "/api/management/v1/sessions/active";
/// `POST`: one command across a device group (see [`super::exec_runs`]).
pub const EXEC_RUNS_PATH: &str = "/api/management/v1/exec-runs";

pub const AUDIT_EVENTS_PATH: &str = "/api/management/v1/audit/events";
pub const AUDIT_EXPORT_PATH: &str = "/api/management/v1/audit/export";
pub const AUDIT_VERIFY_PATH: &str = "/api/management/v1/audit/verify";
pub const AUDIT_CHECKPOINTS_PATH: &str = "/api/management/v1/audit/checkpoints";
pub const AUDIT_ANCHOR_PATH: &str = "/api/management/v1/audit/anchor";

/// `GET` and `DELETE /devices/{id}`; the base of the device's other paths.
pub fn device_path(id: &str) -> String {
    format!("{DEVICES_PATH}/{id}")
}

/// `POST /devices/{id}/accept`.
pub fn device_accept_path(id: &str) -> String {
    format!("{DEVICES_PATH}/{id}/accept")
}

/// `POST /devices/{id}/reject`.
pub fn device_reject_path(id: &str) -> String {
    format!("{DEVICES_PATH}/{id}/reject")
}

/// `PUT /devices/{id}/tags`.
pub fn device_tags_path(id: &str) -> String {
    format!("{DEVICES_PATH}/{id}/tags")
}

/// `GET /devices/{id}/files?path=DIR`: a directory listing of the device.
pub fn device_files_path(id: &str) -> String {
    format!("{DEVICES_PATH}/{id}/files")
}

/// The user leg of a session: a WebSocket carrying protocol messages to one device.
pub fn user_connect_path(device_id: &str) -> String {
    format!("{MANAGEMENT}/deviceconnect/devices/{device_id}/connect")
}

/// `GET`/`HEAD .../download?path=P`: a file from the device over HTTP.
pub fn device_download_path(device_id: &str) -> String {
    format!("{MANAGEMENT}/deviceconnect/devices/{device_id}/download")
}

/// `PUT`/`POST .../upload`: a file to the device over HTTP.
pub fn device_upload_path(device_id: &str) -> String {
    format!("{MANAGEMENT}/deviceconnect/devices/{device_id}/upload")
}

/// `DELETE /install-tokens/{id}`.
pub fn install_token_path(id: &str) -> String {
    format!("{INSTALL_TOKENS_PATH}/{id}")
}

/// `DELETE /tokens/{id}`.
pub fn token_path(id: &str) -> String {
    format!("{TOKENS_PATH}/{id}")
}

/// `POST /users/{name}/disable`.
pub fn user_disable_path(name: &str) -> String {
    format!("{USERS_PATH}/{name}/disable")
}

/// `POST /users/{name}/enable`.
pub fn user_enable_path(name: &str) -> String {
    format!("{USERS_PATH}/{name}/enable")
}

/// `POST /users/{name}/revoke-sessions`.
pub fn user_revoke_sessions_path(name: &str) -> String {
    format!("{USERS_PATH}/{name}/revoke-sessions")
}

/// `GET`/`PUT /users/{name}/roles`.
pub fn user_roles_path(name: &str) -> String {
    format!("{USERS_PATH}/{name}/roles")
}

/// `DELETE /roles/{name}`.
pub fn role_path(name: &str) -> String {
    format!("{ROLES_PATH}/{name}")
}

/// `GET /access/requests/{id}`.
pub fn access_request_path(id: &str) -> String {
    format!("{ACCESS_REQUESTS_PATH}/{id}")
}

/// `POST /access/requests/{id}/approve`.
pub fn access_approve_path(id: &str) -> String {
    format!("{ACCESS_REQUESTS_PATH}/{id}/approve")
}

/// `POST /access/requests/{id}/deny`.
pub fn access_deny_path(id: &str) -> String {
    format!("{ACCESS_REQUESTS_PATH}/{id}/deny")
}

/// `POST /access/requests/{id}/revoke`.
pub fn access_revoke_path(id: &str) -> String {
    format!("{ACCESS_REQUESTS_PATH}/{id}/revoke")
}

/// `GET /sessions/{sid}/recording?from_ms=N`: JSON Lines.
pub fn session_recording_path(sid: &str) -> String {
    format!("{SESSIONS_PATH}/{sid}/recording")
}

/// `GET /sessions/{sid}/segments`: the keyframes of a recording.
pub fn session_segments_path(sid: &str) -> String {
    format!("{SESSIONS_PATH}/{sid}/segments")
}

/// `GET /sessions/{sid}/asciicast`: asciicast v2.
pub fn session_asciicast_path(sid: &str) -> String {
    format!("{SESSIONS_PATH}/{sid}/asciicast")
}

/// `GET /sessions/{sid}/watch`: a read-only WebSocket.
pub fn session_watch_path(sid: &str) -> String {
    format!("{SESSIONS_PATH}/{sid}/watch")
}

/// Percent-encodes text for one path segment or one query value (everything but ASCII letters,
/// digits and `-._~`).
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `key=value&...` with every value percent-encoded (keys are the API's own names).
pub fn query<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    pairs
        .iter()
        .map(|(key, value)| format!("{}={}", key.as_ref(), segment(value.as_ref())))
        .collect::<Vec<_>>()
        .join("&")
}

/// `path?query`, or `path` alone when there are no pairs.
pub fn with_query<K: AsRef<str>, V: AsRef<str>>(path: &str, pairs: &[(K, V)]) -> String {
    if pairs.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", query(pairs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_queries_are_encoded() {
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
        assert_eq!(segment("bob-1.x_~"), "bob-1.x_~");
        assert_eq!(
            query(&[("actor", "a b&c"), ("action", "device.accept")]),
            "actor=a%20b%26c&action=device.accept"
        );
        assert_eq!(with_query::<&str, &str>(SESSIONS_PATH, &[]), SESSIONS_PATH);
    }

    #[test]
    fn templates_stay_templates() {
        assert_eq!(
            user_connect_path("{id}"),
            "/api/management/v1/deviceconnect/devices/{id}/connect"
        );
        assert_eq!(
            user_disable_path(&segment("a b")),
            "/api/management/v1/users/a%20b/disable"
        );
        assert!(LOGIN_PATH.starts_with(MANAGEMENT) && AUDIT_ANCHOR_PATH.starts_with(MANAGEMENT));
        assert!(EXEC_RUNS_PATH.starts_with(MANAGEMENT));
    }
}
