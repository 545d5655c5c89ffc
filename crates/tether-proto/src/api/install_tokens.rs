//! One-time enrolment tokens for the one-line install: creating one (its secret is shown once),
//! listing and revoking them.

use serde::{Deserialize, Serialize};

/// `POST /install-tokens`: tags the enrolled devices get, how long the token lives (1 day
/// without it) and how many devices may use it (1 without it).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewInstallToken {
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_secs: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses: Option<i64>,
}

/// The answer to `POST /install-tokens` (201): the token, shown only here, and what an install
/// line needs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedInstallToken {
    pub id: String,
    pub token: String,
    pub tags: Vec<String>,
    pub max_uses: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// For curl's `--pinnedpubkey` (base64 SHA-256 of the hub's public key).
    pub public_key_pin: String,
    /// The hub certificate's SHA-256 (hex), the agent's `hub_fingerprint`.
    pub certificate_fingerprint: String,
}

/// An enrolment token as listed (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstallToken {
    pub id: String,
    pub tags: Vec<String>,
    pub max_uses: i64,
    pub uses: i64,
    /// The user who created it.
    pub created_by: String,
    /// Unix seconds.
    pub created_at: i64,
    pub expires_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// The answer to `GET /install-tokens`, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstallTokenList {
    pub install_tokens: Vec<InstallToken>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::testing::round_trip;

    #[test]
    fn the_install_token_shapes_are_pinned() {
        round_trip::<NewInstallToken>(r#"{"tags":[]}"#);
        round_trip::<NewInstallToken>(r#"{"tags":["site-a"],"expires_in_secs":3600,"uses":5}"#);
        let bare: NewInstallToken = serde_json::from_str("{}").unwrap();
        assert!(bare.tags.is_empty());
        round_trip::<CreatedInstallToken>(
            r#"{"id":"i1","token":"tte_secret","tags":["site-a"],"max_uses":1,"expires_at":1714651200,
            "public_key_pin":"abc=","certificate_fingerprint":"00ff"}"#,
        );
        let list: InstallTokenList = round_trip(
            r#"{"install_tokens":[{"id":"i1","tags":[],"max_uses":1,"uses":0,"created_by":"alice",
            "created_at":1714564800,"expires_at":1714651200,"last_used_at":null,"revoked_at":null}]}"#,
        );
        assert_eq!(list.install_tokens[0].created_by, "alice");
    }
}
