//! Who is calling, and what they may do: the [`Principal`] every HTTP endpoint and WebSocket
//! upgrade resolves its caller to, and [`authorize`] — the one place where permission rules live.
//! A user's roles, device groups and approved access are loaded with the principal
//! ([`crate::domain::roles::Grants`]) and re-loaded by live connections when a
//! [`Revocation::Access`] says they changed.

use crate::{
    domain::device::DeviceRecord, domain::failure::Failure, domain::permissions::Action,
    domain::roles::Grants, domain::user::UserRecord,
};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub enum Principal {
    User {
        user: UserRecord,
        credential: Credential,
        /// What the user holds where, as loaded with the credential.
        grants: Grants,
    },
    Device {
        device_id: String,
    },
}

/// How a user authenticated: which revocations reach the connection, and what it may do.
#[derive(Debug, Clone, PartialEq)]
pub enum Credential {
    /// A login session (its token's hash).
    Session { token_hash: String },
    /// A personal access token, limited to its permissions.
    Token { id: String, permissions: Vec<Action> },
}

/// What an administrator (or the user) withdrew; live connections it reaches end at once (on
/// every replica: the router's NATS bus relays them).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Revocation {
    /// One access token.
    Token { id: String },
    /// Every credential of a user (disabled).
    User { user_id: String },
    /// A user's login sessions, except one (revoke-sessions, password change); tokens stay.
    Sessions { user_id: String, except: Option<String> },
    /// What some users may do changed: roles, grants, device tags, approval policies, or an
    /// approved access that expired. The live connections it [`Affected`] re-check their access.
    Access {
        /// A message without it (from a replica of an older release) reaches everyone.
        #[serde(default)]
        affected: Affected,
    },
}

/// Whose live connections re-check after an access change: only the users it can concern, so
/// that one user's new grant does not make every live session on every replica read the database.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Affected {
    /// Everyone's (the two-factor requirement, approval policies).
    #[default]
    Everyone,
    /// These users' (their grants, a decided or expired access request, holders of a deleted role).
    Users(Vec<String>),
    /// Everyone's on this device (its tags, which groups it is in, changed).
    Device(String),
}

impl Revocation {
    /// What a connection it ends is told.
    pub fn describe(&self) -> &'static str {
        match self {
            Revocation::Token { .. } => "access revoked: the access token was revoked",
            Revocation::User { .. } => "access revoked: the account was disabled",
            Revocation::Sessions { .. } => "access revoked: the login session was revoked",
            Revocation::Access { .. } => "access revoked: the user's roles or access grants changed",
        }
    }
    /// Whether this revocation concerns `principal`'s connection to device `device_id`: ends it
    /// (withdrawn credentials) or makes it re-check ([`Revocation::Access`]).
    pub fn reaches(&self, principal: &Principal, device_id: &str) -> bool {
        let Principal::User { user, credential, .. } = principal else {
            return false;
        };
        match (self, credential) {
            (Revocation::Token { id }, Credential::Token { id: used, .. }) => id == used,
            (Revocation::User { user_id }, _) => *user_id == user.id,
            (Revocation::Sessions { user_id, except }, Credential::Session { token_hash }) => {
                *user_id == user.id && except.as_ref() != Some(token_hash)
            }
            (Revocation::Access { affected }, _) => match affected {
                Affected::Everyone => true,
                Affected::Users(ids) => ids.contains(&user.id),
                Affected::Device(id) => id == device_id,
            },
            _ => false,
        }
    }
}

impl Principal {
    pub fn describe(&self) -> String {
        match self {
            Principal::User {
                user,
                credential: Credential::Token { .. },
                ..
            } => {
                format!("the access token of user {}", user.name)
            }
            Principal::User { user, .. } => format!("user {}", user.name),
            Principal::Device { device_id } => format!("device {device_id}"),
        }
    }
}

/// The single authorization decision. Deny unless a rule allows.
pub fn authorize(
    principal: &Principal,
    action: Action,
    device: Option<&DeviceRecord>,
) -> Result<(), Failure> {
    if decide(principal, action, device) {
        return Ok(());
    }
    if let Principal::User { grants, .. } = principal
        && grants.two_factor_pending
    {
        return Err(Failure::forbidden(
            "this hub requires two-factor authentication: enrol with `tether 2fa enrol` first",
        ));
    }
    let target = device
        .map(|d| format!(" on device {}", d.name))
        .unwrap_or_default();
    tracing::warn!(
        "refused: {} may not {}{}",
        principal.describe(),
        action.describe(),
        target
    );
    Err(Failure::forbidden(format!(
        "{} may not {}{}",
        principal.describe(),
        action.describe(),
        target
    )))
}

/// The rules. Deny unless one allows.
fn decide(principal: &Principal, action: Action, device: Option<&DeviceRecord>) -> bool {
    match principal {
        // A device token grants the device leg of that one device and nothing else.
        Principal::Device { device_id } => {
            action == Action::ConnectAsDevice && device.is_some_and(|d| &d.id == device_id)
        }
        Principal::User {
            user,
            credential,
            grants,
        } => {
            // An access token can do at most what it names.
            if let Credential::Token { permissions, .. } = credential
                && !permissions.contains(&action)
            {
                return false;
            }
            !user.disabled && grants.allow(action, device, tether_proto::clock::unix_millis())
        }
    }
}

/// The same decision, without logging a refusal (for probing which features a caller has).
pub fn authorize_quietly(principal: &Principal, action: Action, device: &DeviceRecord) -> bool {
    decide(principal, action, Some(device))
}

/// Whether the caller may do `action` on every device, without logging a refusal: for choosing
/// what a listing shows (a page asking every few seconds must not fill the log).
pub fn holds_everywhere(principal: &Principal, action: Action) -> bool {
    decide(principal, action, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The grants the store loads for an administrator, or an operator on every device.
    fn grants(admin: bool) -> Grants {
        let role = &crate::domain::roles::builtin_roles()[if admin { 0 } else { 1 }];
        Grants {
            standing: vec![crate::domain::roles::Grant {
                permissions: role.permissions.clone(),
                scope: crate::domain::roles::Scope::AllDevices,
                expires_at: None,
            }],
            ..Default::default()
        }
    }

    fn user(admin: bool, disabled: bool) -> Principal {
        Principal::User {
            grants: grants(admin),
            user: UserRecord {
                id: "u".into(),
                name: "u".into(),
                password_hash: String::new(),
                admin,
                disabled,
            },
            credential: Credential::Session {
                token_hash: String::new(),
            },
        }
    }

    #[test]
    fn deny_by_default() {
        let device = Principal::Device {
            device_id: "d".into(),
        };
        for action in [Action::ViewDevices, Action::ManageDevices, Action::Terminal] {
            assert!(authorize(&device, action, None).is_err());
            assert!(authorize(&device, action, Some(&record("d"))).is_err());
            assert!(authorize(&user(true, true), action, None).is_err());
            assert!(authorize(&user(true, false), action, None).is_ok());
        }
        assert!(authorize(&user(false, false), Action::Terminal, None).is_ok());
        assert!(authorize(&user(false, false), Action::ManageDevices, None).is_err());
    }

    fn record(id: &str) -> DeviceRecord {
        DeviceRecord::accepted_for_test(id, &[])
    }

    #[test]
    fn holds_everywhere_decides_like_authorize() {
        assert!(holds_everywhere(&user(true, false), Action::ViewRecordings));
        assert!(!holds_everywhere(&user(false, false), Action::ViewRecordings));
        assert!(!holds_everywhere(&user(true, true), Action::ViewRecordings));
        assert!(holds_everywhere(&user(false, false), Action::Terminal));
    }

    #[test]
    fn a_device_token_reaches_only_its_own_device_leg() {
        let device = Principal::Device {
            device_id: "d".into(),
        };
        assert!(authorize(&device, Action::ConnectAsDevice, Some(&record("d"))).is_ok());
        assert!(authorize(&device, Action::ConnectAsDevice, Some(&record("e"))).is_err());
        assert!(authorize(&user(true, false), Action::ConnectAsDevice, Some(&record("d"))).is_err());
    }

    #[test]
    fn a_token_does_at_most_what_it_names() {
        let Principal::User { user, .. } = user(false, false) else {
            unreachable!()
        };
        let token = Principal::User {
            user,
            grants: grants(false),
            credential: Credential::Token {
                id: "t".into(),
                permissions: vec![Action::ViewDevices, Action::ManageDevices],
            },
        };
        assert!(authorize(&token, Action::ViewDevices, None).is_ok());
        assert!(
            authorize(&token, Action::Terminal, None).is_err(),
            "not named by the token"
        );
        assert!(
            authorize(&token, Action::ManageDevices, None).is_err(),
            "named, but not the user's"
        );
    }

    #[test]
    fn revocations_reach_the_right_connections() {
        let session = user(false, false);
        let Principal::User { user: account, .. } = session.clone() else {
            unreachable!()
        };
        let token = Principal::User {
            user: account,
            grants: grants(false),
            credential: Credential::Token {
                id: "t".into(),
                permissions: vec![],
            },
        };
        assert!(Revocation::Token { id: "t".into() }.reaches(&token, "d"));
        assert!(!Revocation::Token { id: "t".into() }.reaches(&session, "d"));
        assert!(Revocation::User { user_id: "u".into() }.reaches(&token, "d"));
        assert!(
            Revocation::Sessions {
                user_id: "u".into(),
                except: None
            }
            .reaches(&session, "d")
        );
        assert!(
            !Revocation::Sessions {
                user_id: "u".into(),
                except: None
            }
            .reaches(&token, "d")
        );
        assert!(
            !Revocation::Sessions {
                user_id: "u".into(),
                except: Some(String::new())
            }
            .reaches(&session, "d")
        );
    }

    #[test]
    fn access_changes_reach_only_whom_they_concern() {
        let session = user(false, false);
        let access = |affected| Revocation::Access { affected };
        assert!(access(Affected::Everyone).reaches(&session, "d"));
        assert!(access(Affected::Users(vec!["x".into(), "u".into()])).reaches(&session, "d"));
        assert!(!access(Affected::Users(vec!["x".into()])).reaches(&session, "d"));
        assert!(access(Affected::Device("d".into())).reaches(&session, "d"));
        assert!(!access(Affected::Device("e".into())).reaches(&session, "d"));
        let device = Principal::Device {
            device_id: "d".into(),
        };
        assert!(!access(Affected::Everyone).reaches(&device, "d"));
    }

    #[test]
    fn access_changes_from_older_replicas_reach_everyone() {
        // An older release sent `{"Access":{"user_id":...}}`; this one reads it as everyone's.
        let old: Revocation = serde_json::from_str(r#"{"Access":{"user_id":"u"}}"#).unwrap();
        assert_eq!(
            old,
            Revocation::Access {
                affected: Affected::Everyone
            }
        );
        let new = Revocation::Access {
            affected: Affected::Users(vec!["u".into()]),
        };
        let text = serde_json::to_string(&new).unwrap();
        assert_eq!(serde_json::from_str::<Revocation>(&text).unwrap(), new);
    }
}
