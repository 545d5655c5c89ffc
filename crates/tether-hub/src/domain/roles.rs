//! Roles on device groups: which permissions a user holds, on which devices.
//!
//! A role is a named set of permissions (built-in: admin, operator, auditor; custom roles live in
//! the database). A grant gives a user a role on a [`Scope`]: every device, the devices carrying a
//! tag, or one device. Approved access requests are grants too, but they expire. A device in a
//! scope that requires approval is reached (terminal, files, forwards) only through an approved,
//! unexpired request: nobody has standing access there, administrators included. An approval
//! also lets its requester see the approved devices ([`Grant::approved`]), for its lifetime only.
//!
//! Everything here is pure: [`Grants`] is loaded once per connection and asked per message.

use crate::{domain::device::DeviceRecord, domain::permissions::Action};

/// Which devices a grant covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    AllDevices,
    Tag(String),
    Device(String),
}

impl Scope {
    /// Parses `*` (or `all`), `tag:NAME` or a device id.
    pub fn parse(text: &str) -> Result<Scope, String> {
        let text = text.trim();
        if text == "*" || text == "all" {
            return Ok(Scope::AllDevices);
        }
        if let Some(tag) = text.strip_prefix("tag:") {
            return valid_tag(tag).map(|tag| Scope::Tag(tag.to_owned()));
        }
        if text.is_empty() || text.len() > 100 || text.contains([',', ' ']) {
            return Err(format!(
                "{text:?} is not a device group: write tag:NAME, a device id, or * for every device"
            ));
        }
        Ok(Scope::Device(text.to_owned()))
    }

    /// The stored and displayed form (the inverse of [`Scope::parse`]).
    pub fn text(&self) -> String {
        match self {
            Scope::AllDevices => "*".to_owned(),
            Scope::Tag(tag) => format!("tag:{tag}"),
            Scope::Device(id) => id.clone(),
        }
    }

    pub fn covers(&self, device: &DeviceRecord) -> bool {
        match self {
            Scope::AllDevices => true,
            Scope::Tag(tag) => device.tags.iter().any(|t| t == tag),
            Scope::Device(id) => *id == device.id,
        }
    }
}

/// Checks a tag name: 1 to 64 characters of letters, digits, `-`, `_`, `.`, `=`.
pub fn valid_tag(tag: &str) -> Result<&str, String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=');
    if tag.is_empty() || tag.len() > 64 || !tag.chars().all(allowed) {
        return Err(format!(
            "{tag:?} is not a valid tag (1 to 64 letters, digits, '-', '_', '.', '=')"
        ));
    }
    Ok(tag)
}

/// A named set of permissions.
#[derive(Debug, Clone, PartialEq)]
pub struct Role {
    pub name: String,
    pub permissions: Vec<Action>,
    pub description: String,
    pub builtin: bool,
}

/// The roles every hub has. `admin` is also what the `users.admin` flag grants on every device.
pub fn builtin_roles() -> Vec<Role> {
    use Action::*;
    let role = |name: &str, permissions: Vec<Action>, description: &str| Role {
        name: name.to_owned(),
        permissions,
        description: description.to_owned(),
        builtin: true,
    };
    vec![
        role(
            "admin",
            crate::domain::permissions::PERMISSIONS
                .iter()
                .map(|(_, action)| *action)
                .collect(),
            "every permission",
        ),
        role(
            "operator",
            vec![ViewDevices, Terminal, FileRead, FileWrite, PortForward],
            "reach devices: terminal, files, port forwarding",
        ),
        role(
            "auditor",
            vec![ViewDevices, ViewAudit, ViewRecordings],
            "read the audit log and session recordings",
        ),
    ]
}

/// Parses a comma-separated list of permission names, ignoring unknown ones (a newer hub's).
pub fn parse_permissions(names: &str) -> Vec<Action> {
    names.split(',').filter_map(Action::parse).collect()
}

/// One grant, resolved: permissions on a scope, until an optional expiry (Unix milliseconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub permissions: Vec<Action>,
    pub scope: Scope,
    pub expires_at: Option<i64>,
}

impl Grant {
    /// An approved access request as a grant: the approved permissions, plus seeing the devices
    /// they are on. A requester without a standing grant there could otherwise open a terminal
    /// to a device that no list or device page shows them. Seeing ends with the approval.
    pub fn approved(mut permissions: Vec<Action>, scope: Scope, expires_at: i64) -> Grant {
        if !permissions.contains(&Action::ViewDevices) {
            permissions.push(Action::ViewDevices);
        }
        Grant {
            permissions,
            scope,
            expires_at: Some(expires_at),
        }
    }
}

/// Everything a user holds, as loaded from the database.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grants {
    /// Role grants (the admin flag included, as the admin role on every device).
    pub standing: Vec<Grant>,
    /// Approved access requests, each with its expiry.
    pub approved: Vec<Grant>,
    /// Scopes where session features need an approved request.
    pub approval_required: Vec<Scope>,
    /// The hub requires a second factor the user has not enrolled yet: nothing is allowed.
    pub two_factor_pending: bool,
}

/// Actions that reach into a device: on devices requiring approval, only approved access counts.
fn reaches_into_device(action: Action) -> bool {
    matches!(
        action,
        Action::Terminal | Action::FileRead | Action::FileWrite | Action::PortForward
    )
}

impl Grants {
    /// Whether `action` is allowed, on `device` or (with `None`) in general. Deny by default.
    ///
    /// Without a device: viewing devices and approving access need the permission on any
    /// scope (listings and approvals are then narrowed per device); every other permission
    /// needs a grant on every device.
    pub fn allow(&self, action: Action, device: Option<&DeviceRecord>, now: i64) -> bool {
        let Some(device) = device else {
            let anywhere = matches!(action, Action::ViewDevices | Action::ApproveAccess);
            return self.live(now).any(|grant| {
                grant.permissions.contains(&action) && (anywhere || grant.scope == Scope::AllDevices)
            });
        };
        let needs_approval =
            reaches_into_device(action) && self.approval_required.iter().any(|s| s.covers(device));
        let grants: Box<dyn Iterator<Item = &Grant>> = if needs_approval {
            Box::new(
                self.approved
                    .iter()
                    .filter(|g| g.expires_at.is_some_and(|t| t > now)),
            )
        } else {
            Box::new(self.live(now))
        };
        grants
            .into_iter()
            .any(|grant| grant.permissions.contains(&action) && grant.scope.covers(device))
    }

    /// Whether a grant of `action` covers all of `scope` (on it, or on every device).
    pub fn allow_on_scope(&self, action: Action, scope: &Scope, now: i64) -> bool {
        self.live(now).any(|grant| {
            grant.permissions.contains(&action) && (grant.scope == *scope || grant.scope == Scope::AllDevices)
        })
    }

    /// Whether the user holds `action` anywhere (what a token of theirs may carry).
    pub fn hold_anywhere(&self, action: Action, now: i64) -> bool {
        self.live(now).any(|grant| grant.permissions.contains(&action))
    }

    fn live(&self, now: i64) -> impl Iterator<Item = &Grant> {
        self.standing
            .iter()
            .chain(self.approved.iter())
            .filter(move |grant| grant.expires_at.is_none_or(|t| t > now))
    }
}

/// A user's role on a scope, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleGrant {
    pub role: String,
    pub scope: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str, tags: &[&str]) -> DeviceRecord {
        DeviceRecord::accepted_for_test(id, tags)
    }

    fn operator_on(scope: &str) -> Grant {
        Grant {
            permissions: builtin_roles()[1].permissions.clone(),
            scope: Scope::parse(scope).unwrap(),
            expires_at: None,
        }
    }

    #[test]
    fn scopes_parse_and_print() {
        for text in ["*", "tag:site-a", "3f2a-device"] {
            assert_eq!(Scope::parse(text).unwrap().text(), text);
        }
        assert!(Scope::parse("tag:").is_err());
        assert!(Scope::parse("tag:a b").is_err());
        assert!(Scope::parse("a,b").is_err());
    }

    #[test]
    fn a_group_grant_reaches_only_its_group() {
        let grants = Grants {
            standing: vec![operator_on("tag:a")],
            ..Default::default()
        };
        let (in_a, in_b) = (device("d1", &["a"]), device("d2", &["b"]));
        assert!(grants.allow(Action::Terminal, Some(&in_a), 0));
        assert!(!grants.allow(Action::Terminal, Some(&in_b), 0));
        assert!(!grants.allow(Action::ManageDevices, Some(&in_a), 0));
        assert!(
            grants.allow(Action::ViewDevices, None, 0),
            "listing, narrowed per device"
        );
        assert!(!grants.allow(Action::ViewAudit, None, 0));
        assert!(
            !Grants::default().allow(Action::ViewDevices, None, 0),
            "deny by default"
        );
    }

    #[test]
    fn approval_replaces_standing_access() {
        let sensitive = device("d1", &["prod"]);
        let mut grants = Grants {
            standing: vec![operator_on("*")],
            approval_required: vec![Scope::parse("tag:prod").unwrap()],
            ..Default::default()
        };
        assert!(!grants.allow(Action::Terminal, Some(&sensitive), 0));
        assert!(grants.allow(Action::ViewDevices, Some(&sensitive), 0));
        grants.approved.push(Grant {
            permissions: vec![Action::Terminal],
            scope: Scope::Device("d1".into()),
            expires_at: Some(1000),
        });
        assert!(grants.allow(Action::Terminal, Some(&sensitive), 999));
        assert!(!grants.allow(Action::Terminal, Some(&sensitive), 1000), "expired");
        assert!(
            !grants.allow(Action::FileWrite, Some(&sensitive), 0),
            "not approved"
        );
    }

    #[test]
    fn an_approval_shows_its_devices_while_it_lasts() {
        let (approved, other) = (device("d1", &["prod"]), device("d2", &["prod"]));
        let mut grants = Grants {
            standing: vec![operator_on("tag:site-a")],
            approval_required: vec![Scope::parse("tag:prod").unwrap()],
            ..Default::default()
        };
        assert!(
            !grants.allow(Action::ViewDevices, Some(&approved), 0),
            "deny by default"
        );
        grants.approved.push(Grant::approved(
            vec![Action::Terminal],
            Scope::Device("d1".into()),
            1000,
        ));
        assert!(grants.allow(Action::ViewDevices, Some(&approved), 999));
        assert!(grants.allow(Action::Terminal, Some(&approved), 999));
        assert!(
            !grants.allow(Action::ViewDevices, Some(&other), 999),
            "not approved"
        );
        assert!(
            !grants.allow(Action::ViewDevices, Some(&approved), 1000),
            "expired"
        );
        assert!(
            !grants.allow(Action::FileRead, Some(&approved), 999),
            "only what was approved"
        );
        let without_standing = Grants {
            approved: grants.approved.clone(),
            ..Default::default()
        };
        assert!(
            without_standing.allow(Action::ViewDevices, None, 999),
            "a listing, narrowed"
        );
        assert!(
            !without_standing.allow(Action::ViewDevices, None, 1000),
            "expired"
        );
        assert!(
            !without_standing.allow_on_scope(Action::ViewDevices, &Scope::AllDevices, 999),
            "one device is not every device"
        );
    }
}
