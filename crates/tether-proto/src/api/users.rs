//! Users, as administrators manage them: the list, a new user, disabling and enabling, and
//! ending a user's login sessions.

use serde::{Deserialize, Serialize};

use super::roles::RoleGrant;

/// A user as listed (never the password hash): the answer to `POST /users`, `/disable` and
/// `/enable`, and an entry of `GET /users`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserSummary {
    pub id: String,
    pub name: String,
    pub admin: bool,
    pub disabled: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Role grants; the admin flag shows as `admin` on `*`.
    pub roles: Vec<RoleGrant>,
}

/// The answer to `GET /users`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserList {
    pub users: Vec<UserSummary>,
}

/// `POST /users`: a new user with a role on groups (every device without groups), or none.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewUser {
    pub name: String,
    pub password: String,
    /// Same as `role: "admin"`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub admin: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Where the role applies: `tag:NAME` or a device id.
    #[serde(default)]
    pub groups: Vec<String>,
}

fn is_false(value: &bool) -> bool {
    !value
}

/// The answer to `POST /users/{name}/revoke-sessions`: how many login sessions ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevokedSessions {
    pub revoked: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::testing::round_trip;

    #[test]
    fn the_user_shapes_are_pinned() {
        let list: UserList = round_trip(
            r#"{"users":[{"id":"u1","name":"alice","admin":true,"disabled":false,"created_at":1714564800,
                "roles":[{"role":"admin","scope":"*"}]},
                {"id":"u2","name":"bob","admin":false,"disabled":true,"created_at":1714564900,"roles":[]}]}"#,
        );
        assert_eq!(list.users[0].roles[0].scope, "*");
        assert!(list.users[1].disabled);
        let new: NewUser = round_trip(
            r#"{"name":"bob","password":"long enough","role":"operator","groups":["tag:site-a"]}"#,
        );
        assert!(!new.admin);
        let admin: NewUser =
            serde_json::from_str(r#"{"name":"eve","password":"long enough","admin":true}"#).unwrap();
        assert!(admin.admin && admin.role.is_none() && admin.groups.is_empty());
        round_trip::<RevokedSessions>(r#"{"revoked":2}"#);
    }
}
