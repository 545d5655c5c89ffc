//! Personal access tokens: creating one (its secret is shown once), listing and revoking them.

use serde::{Deserialize, Serialize};

/// `POST /tokens`: a token named `name`, with some of the caller's permissions (all of them
/// without `permissions`), valid for `expires_in_secs` (30 days without it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewToken {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_secs: Option<i64>,
}

/// The answer to `POST /tokens` (201): the only time the secret `token` is shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedToken {
    pub id: String,
    pub name: String,
    pub token: String,
    pub permissions: Vec<String>,
    /// Unix seconds.
    pub expires_at: i64,
}

/// A token as listed (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessToken {
    pub id: String,
    pub name: String,
    pub permissions: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
    pub expires_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked: bool,
}

/// The answer to `GET /tokens[?user=NAME]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenList {
    pub tokens: Vec<AccessToken>,
}

/// The query of `GET /tokens`: another user's tokens (needs `manage_users`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct TokenListQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::testing::round_trip;

    #[test]
    fn the_token_shapes_are_pinned() {
        round_trip::<NewToken>(r#"{"name":"ci"}"#);
        round_trip::<NewToken>(r#"{"name":"ci","permissions":["view_devices"],"expires_in_secs":3600}"#);
        let created: CreatedToken = round_trip(
            r#"{"id":"t1","name":"ci","token":"ttp_secret","permissions":["view_devices","terminal"],"expires_at":1717156800}"#,
        );
        assert_eq!(created.token, "ttp_secret");
        let list: TokenList = round_trip(
            r#"{"tokens":[{"id":"t1","name":"ci","permissions":["terminal"],"created_at":1714564800,
                "expires_at":1717156800,"last_used_at":null,"revoked":false}]}"#,
        );
        assert!(!list.tokens[0].revoked);
        round_trip::<TokenListQuery>(r#"{"user":"bob"}"#);
    }
}
