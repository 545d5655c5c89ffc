//! Signing in: the login (CLI and scripts), the browser's cookie session, logout and the
//! password change.

use serde::{Deserialize, Serialize};

/// `POST /auth/login` and `POST /auth/web/login`: a user name and password, and the second
/// factor when the user has one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    /// The second factor, when the user has one: a TOTP code or a recovery code. A login
    /// without it is refused with "two-factor code required" (then ask and send again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// The answer to `POST /auth/login`: a bearer token for the user.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginResponse {
    pub token: String,
    /// Unix seconds.
    pub expires_at: i64,
    pub user: User,
}

/// Who is logged in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    pub id: String,
    pub name: String,
    pub admin: bool,
}

/// The answer to `POST /auth/web/login` and `GET /auth/web/session`: what the page learns of its
/// session (never the session token, which stays in the cookie).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebSession {
    pub user: User,
    pub csrf_token: String,
    /// Unix seconds; `null` from `GET /auth/web/session`.
    pub expires_at: Option<i64>,
    /// The permissions the user holds in general (on every device, or for `view_devices` and
    /// `approve_access` on any): which pages the UI offers. The hub still checks every request.
    #[serde(default)]
    pub permissions: Vec<String>,
}

/// `POST /auth/password`: the current password and the new one (answered 204).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::testing::round_trip;

    #[test]
    fn the_login_shapes_are_pinned() {
        let request: LoginRequest = round_trip(r#"{"username":"alice","password":"secret"}"#);
        assert_eq!(request.code, None);
        round_trip::<LoginRequest>(r#"{"username":"alice","password":"secret","code":"123456"}"#);
        let response: LoginResponse = round_trip(
            r#"{"token":"tts_abc","expires_at":1714564800,"user":{"id":"u1","name":"alice","admin":true}}"#,
        );
        assert!(response.user.admin);
        round_trip::<WebSession>(
            r#"{"user":{"id":"u1","name":"alice","admin":false},"csrf_token":"c0ffee","expires_at":null,"permissions":[]}"#,
        );
        round_trip::<WebSession>(
            r#"{"user":{"id":"u1","name":"alice","admin":false},"csrf_token":"c0ffee","expires_at":1714564800,"permissions":["manage_users"]}"#,
        );
        round_trip::<PasswordChange>(r#"{"current_password":"old","new_password":"new-secret"}"#);
    }
}
