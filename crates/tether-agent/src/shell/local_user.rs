//! Which local user a shell runs as: the configured `terminal.user` (or the agent's own user),
//! or another one the operator asks for (`local_user` on `new`, version 2) when
//! `terminal.allowed_users` lists it. Anything else is refused, naming the setting to change.

use tether_proto::shell::valid_local_user;

use crate::{
    account::{self, Account},
    config::TerminalConfig,
};

/// What a request for a local user comes to.
#[derive(Debug, PartialEq)]
enum Choice {
    /// The configured user (`terminal.user`, or the agent's own).
    Configured,
    /// Another user `terminal.allowed_users` lists.
    Allowed(String),
    /// Not allowed: why.
    Refused(String),
}

/// The account a shell runs as when the operator asks for `requested` (None: the default).
pub fn shell_account(config: &TerminalConfig, requested: Option<&str>) -> Result<Account, String> {
    let own_name = || account::own_account().name;
    match decide(requested, config.user.as_deref(), &config.allowed_users, own_name) {
        Choice::Configured => account::shell_account(config.user.as_deref()),
        Choice::Allowed(name) => {
            tracing::info!("the operator asks for local user {name} (terminal.allowed_users)");
            account::named_account(&name, &format!("{name} (terminal.allowed_users)"))
        }
        Choice::Refused(reason) => Err(reason),
    }
}

/// The decision alone: `configured` is `terminal.user`; `own_name` gives the agent's own user
/// name (looked up only when needed).
fn decide(
    requested: Option<&str>,
    configured: Option<&str>,
    allowed: &[String],
    own_name: impl FnOnce() -> String,
) -> Choice {
    let Some(name) = requested else {
        return Choice::Configured;
    };
    let default = configured.map_or_else(own_name, str::to_owned);
    if name == default {
        return Choice::Configured;
    }
    if valid_local_user(name) && allowed.iter().any(|user| user == name) {
        return Choice::Allowed(name.to_owned());
    }
    let mut permitted = allowed
        .iter()
        .filter(|user| **user != default)
        .cloned()
        .collect::<Vec<_>>();
    permitted.insert(0, default);
    Choice::Refused(format!(
        "local user {name:?} is not allowed on this device (terminal.allowed_users; allowed: {})",
        permitted.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<String> {
        vec!["daemon".into()]
    }

    fn unused() -> String {
        panic!("the agent's own name is not needed here")
    }

    #[test]
    fn no_request_runs_as_the_configured_user() {
        assert_eq!(
            decide(None, Some("nobody"), &allowed(), unused),
            Choice::Configured
        );
        assert_eq!(decide(None, None, &[], unused), Choice::Configured);
    }

    #[test]
    fn the_configured_or_own_user_may_be_named() {
        assert_eq!(
            decide(Some("nobody"), Some("nobody"), &[], unused),
            Choice::Configured
        );
        assert_eq!(
            decide(Some("agent"), None, &[], || "agent".into()),
            Choice::Configured
        );
    }

    #[test]
    fn listed_users_are_allowed() {
        assert_eq!(
            decide(Some("daemon"), Some("nobody"), &allowed(), unused),
            Choice::Allowed("daemon".into())
        );
    }

    #[test]
    fn other_users_are_refused_naming_the_setting() {
        let Choice::Refused(reason) = decide(Some("root"), Some("nobody"), &allowed(), unused) else {
            panic!("root must be refused");
        };
        assert!(reason.contains("\"root\""), "{reason}");
        assert!(reason.contains("terminal.allowed_users"), "{reason}");
        assert!(reason.contains("nobody, daemon"), "{reason}");
        // Without a list, only the agent's own user.
        let Choice::Refused(reason) = decide(Some("root"), None, &[], || "agent".into()) else {
            panic!("root must be refused");
        };
        assert!(reason.ends_with("allowed: agent)"), "{reason}");
    }

    #[test]
    fn a_wildcard_is_no_pattern() {
        assert!(matches!(
            decide(Some("root"), Some("nobody"), &["*".into()], unused),
            Choice::Refused(_)
        ));
    }
}
