//! JSON types and paths of the hub's management API, shared by the hub and the CLI.

use serde::{Deserialize, Serialize};

pub const LOGIN_PATH: &str = "/api/management/v1/auth/login";
pub const LOGOUT_PATH: &str = "/api/management/v1/auth/logout";
pub const DEVICES_PATH: &str = "/api/management/v1/devices";

/// `POST /devices/{id}/accept`, `/reject`; `DELETE /devices/{id}`.
pub fn device_path(id: &str) -> String {
    format!("{DEVICES_PATH}/{id}")
}

/// The user leg of a session: a WebSocket carrying protocol messages to one device.
pub fn user_connect_path(device_id: &str) -> String {
    format!("/api/management/v1/deviceconnect/devices/{device_id}/connect")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    /// The second factor, when the user has one: a TOTP code or a recovery code. A login
    /// without it is refused with "two-factor code required" (then ask and send again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginResponse {
    pub token: String,
    /// Unix seconds.
    pub expires_at: i64,
    pub user: User,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct User {
    pub id: String,
    pub name: String,
    pub admin: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Device {
    pub id: String,
    /// The `hostname` identity attribute, or the id when there is none.
    pub name: String,
    /// `pending`, `accepted` or `rejected`.
    pub status: String,
    pub online: bool,
    pub identity: serde_json::Map<String, serde_json::Value>,
    pub agent_version: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    pub last_seen_at: Option<i64>,
    /// Tags (device groups are written `tag:NAME`).
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceList {
    pub devices: Vec<Device>,
    /// How many devices matched the filters, before `offset` and `limit` cut the page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

/// Every error response of the API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}
