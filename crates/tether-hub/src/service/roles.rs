//! Roles and grants as use cases: validating grants against the roles that exist, describing
//! them, and telling live connections that access changed.

use crate::{
    domain::failure::Failure, domain::permissions::Action, domain::permissions::PERMISSIONS,
    domain::principal::Affected, domain::principal::Revocation, domain::roles::RoleGrant,
    domain::roles::Scope, domain::user::UserRecord, relay::Relay, service::Hub, store::Store,
};

/// The live connections `affected` re-check what they may do (on every replica).
pub fn access_changed(state: &Relay, affected: Affected) {
    if matches!(&affected, Affected::Users(ids) if ids.is_empty()) {
        return;
    }
    let _ = state.revocations.send(Revocation::Access { affected });
}

/// Parses permission names, naming the unknown one and the known ones.
pub fn parse_permission_names(names: &[String]) -> Result<Vec<Action>, Failure> {
    names
        .iter()
        .map(|name| {
            Action::parse(name).ok_or_else(|| {
                let known: Vec<&str> = PERMISSIONS.iter().map(|(n, _)| *n).collect();
                Failure::bad_request(format!(
                    "unknown permission {name:?} (known: {})",
                    known.join(", ")
                ))
            })
        })
        .collect()
}

/// A user's grants as shown: the admin flag is the admin role on every device.
pub async fn grants_of(state: &Hub, user: &UserRecord) -> Result<Vec<RoleGrant>, Failure> {
    let mut grants = state.store.role_grants(&user.id).await?;
    if user.admin {
        grants.insert(
            0,
            RoleGrant {
                role: "admin".into(),
                scope: "*".into(),
            },
        );
    }
    Ok(grants)
}

/// A user's grants in words: `operator on tag:a, auditor on *`, or `no role`.
pub fn describe_grants(grants: &[RoleGrant], admin: bool) -> String {
    let mut words: Vec<String> = grants
        .iter()
        .map(|g| format!("{} on {}", g.role, g.scope))
        .collect();
    if admin {
        words.insert(0, "admin on *".to_owned());
    }
    if words.is_empty() {
        return "no role".to_owned();
    }
    words.join(", ")
}

/// The grants of `role` on each of `groups` (every device when there are none).
pub fn role_on_groups(role: &str, groups: &[String]) -> Vec<RoleGrant> {
    let grant = |scope: &str| RoleGrant {
        role: role.to_owned(),
        scope: scope.to_owned(),
    };
    if groups.is_empty() {
        return vec![grant("*")];
    }
    groups.iter().map(|group| grant(group)).collect()
}

/// Checks role names and scopes, and writes them in their canonical form.
pub async fn validate_grants(store: &Store, grants: &[RoleGrant]) -> Result<Vec<RoleGrant>, Failure> {
    let roles = store.roles().await?;
    grants
        .iter()
        .map(|grant| {
            if !roles.iter().any(|r| r.name == grant.role) {
                let known: Vec<&str> = roles.iter().map(|r| r.name.as_str()).collect();
                return Err(Failure::bad_request(format!(
                    "unknown role {:?} (known: {})",
                    grant.role,
                    known.join(", ")
                )));
            }
            let scope = Scope::parse(&grant.scope).map_err(Failure::bad_request)?;
            Ok(RoleGrant {
                role: grant.role.clone(),
                scope: scope.text(),
            })
        })
        .collect()
}
