//! Device authentication, Mender style: the agent POSTs an [`AuthRequest`] whose exact bytes it
//! signs with its Ed25519 key (signature in [`SIGNATURE_HEADER`], base64); the hub answers 200
//! with a device token (a JWT signed by the hub) once the device is accepted, 401 otherwise.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

pub const AUTH_PATH: &str = "/api/devices/v1/authentication/auth_requests";
pub const DEVICE_CONNECT_PATH: &str = "/api/devices/v1/deviceconnect/connect";
pub const SIGNATURE_HEADER: &str = "X-MEN-Signature";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuthRequest {
    /// Identity attributes as a JSON object, serialized to a string (Mender's `id_data`).
    pub id_data: String,
    /// The device's Ed25519 public key, SPKI PEM.
    pub pubkey: String,
    /// A shared secret that accepts the device on first contact, when the hub has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_key: Option<String>,
    /// A one-time enrolment token (the one-line install): accepts the device on first contact
    /// with the token's tags, while the token is live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrolment_token: Option<String>,
    /// The agent's version, for the device list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
}

/// The body of a refused authentication request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuthRefusal {
    pub error: String,
    /// `pending`, `rejected` or `invalid`.
    pub status: String,
}

/// Claims of a device token. The agent reads `exp` (without verifying) to renew in time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeviceClaims {
    /// The device id.
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    /// Always `device`: keeps device tokens from being mistaken for anything else.
    pub kind: String,
}

/// Reads a JWT's claims without checking its signature (only the hub can check it).
pub fn unverified_claims<T: for<'de> Deserialize<'de>>(token: &str) -> Option<T> {
    let payload = token.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&json).ok()
}
