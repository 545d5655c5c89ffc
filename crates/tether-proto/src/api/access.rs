//! Access on demand: requests for a while on a device or group, their decisions, and the groups
//! that require an approved request.

use serde::{Deserialize, Serialize};

/// An access request and its outcome (every answer of `/access/requests...`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessRequest {
    pub id: String,
    pub user_id: String,
    pub user_name: String,
    /// A device id or `tag:NAME`.
    pub scope: String,
    pub permissions: Vec<String>,
    pub duration_secs: i64,
    pub reason: String,
    /// `pending`, `approved`, `denied`, `revoked` or `expired`.
    pub status: String,
    /// Unix seconds.
    pub created_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub note: Option<String>,
    /// When an approved access ends, Unix seconds.
    pub expires_at: Option<i64>,
}

/// The answer to `GET /access/requests[?all=true]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessRequestList {
    pub requests: Vec<AccessRequest>,
}

/// `POST /access/requests`: what access is wanted, for how long and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewAccessRequest {
    pub scope: String,
    pub permissions: Vec<String>,
    pub duration_secs: i64,
    pub reason: String,
}

/// The query of `GET /access/requests`: everyone's requests (for approvers).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct AccessRequestQuery {
    #[serde(default)]
    pub all: bool,
}

/// `POST /access/requests/{id}/approve` and `/deny`: a note kept with the decision (the body
/// may also be absent).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessDecision {
    #[serde(default)]
    pub note: Option<String>,
}

/// `GET /access/policies` and the answer to `PUT`: the scopes that require approval.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApprovalPolicies {
    pub require_approval: Vec<String>,
}

/// `PUT /access/policies`: require approval on a scope, or stop requiring it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PolicyChange {
    pub scope: String,
    pub require_approval: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::testing::round_trip;

    #[test]
    fn the_access_shapes_are_pinned() {
        let pending = r#"{"id":"r1","user_id":"u2","user_name":"bob","scope":"tag:site-a",
            "permissions":["terminal"],"duration_secs":1800,"reason":"fix the pump","status":"pending",
            "created_at":1714564800,"decided_by":null,"decided_at":null,"note":null,"expires_at":null}"#;
        let request: AccessRequest = round_trip(pending);
        assert_eq!(request.status, "pending");
        let list: AccessRequestList = round_trip(&format!(r#"{{"requests":[{pending}]}}"#));
        assert_eq!(list.requests.len(), 1);
        round_trip::<AccessRequest>(
            r#"{"id":"r1","user_id":"u2","user_name":"bob","scope":"d1","permissions":["file_read"],
            "duration_secs":60,"reason":"logs","status":"approved","created_at":1714564800,
            "decided_by":"alice","decided_at":1714564860,"note":"ok","expires_at":1714564920}"#,
        );
        round_trip::<NewAccessRequest>(
            r#"{"scope":"tag:site-a","permissions":["terminal"],"duration_secs":1800,"reason":"why"}"#,
        );
        round_trip::<AccessDecision>(r#"{"note":null}"#);
        round_trip::<AccessDecision>(r#"{"note":"seen"}"#);
        round_trip::<ApprovalPolicies>(r#"{"require_approval":["tag:prod"]}"#);
        round_trip::<PolicyChange>(r#"{"scope":"tag:prod","require_approval":true}"#);
        round_trip::<AccessRequestQuery>(r#"{"all":true}"#);
    }
}
