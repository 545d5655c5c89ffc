//! Roles (built-in and custom) and the grants of a role on a scope that users hold.

use serde::{Deserialize, Serialize};

/// A user's role on a scope: `*` (every device), `tag:NAME` (a group) or a device id.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoleGrant {
    pub role: String,
    pub scope: String,
}

/// `GET`/`PUT /users/{name}/roles` (request and answer): all of a user's grants.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoleGrants {
    pub grants: Vec<RoleGrant>,
}

/// A role and its permissions: an entry of `GET /roles`, and the answer to `POST /roles`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Role {
    pub name: String,
    /// Permission names, e.g. `terminal`, `file_read`.
    pub permissions: Vec<String>,
    pub description: String,
    pub builtin: bool,
}

/// The answer to `GET /roles`: admin, operator, auditor, then the custom roles.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoleList {
    pub roles: Vec<Role>,
}

/// `POST /roles`: a custom role.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewRole {
    pub name: String,
    pub permissions: Vec<String>,
    #[serde(default)]
    pub description: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::testing::round_trip;

    #[test]
    fn the_role_shapes_are_pinned() {
        let list: RoleList = round_trip(
            r#"{"roles":[{"name":"auditor","permissions":["view_devices","view_audit","view_recordings"],
                "description":"reads the audit log and recordings","builtin":true},
                {"name":"deployer","permissions":["file_write"],"description":"","builtin":false}]}"#,
        );
        assert!(list.roles[0].builtin);
        round_trip::<RoleGrants>(
            r#"{"grants":[{"role":"operator","scope":"tag:site-a"},{"role":"auditor","scope":"*"}]}"#,
        );
        round_trip::<NewRole>(
            r#"{"name":"deployer","permissions":["file_write"],"description":"ships files"}"#,
        );
        let bare: NewRole = serde_json::from_str(r#"{"name":"x","permissions":["terminal"]}"#).unwrap();
        assert_eq!(bare.description, "");
    }
}
