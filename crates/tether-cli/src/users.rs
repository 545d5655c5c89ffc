//! `tether users ...` (administering the hub's users: list, add, roles, disable, enable, end
//! their sessions) and `tether passwd` (changing one's own password).

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use tether_proto::api::{
    Empty, NewUser, PasswordChange, RevokedSessions, RoleGrant, RoleGrants, UserList, UserSummary,
    paths::{self, PASSWORD_PATH, USERS_PATH, segment},
};

use crate::{
    api::Api,
    hub::{HubOptions, authenticated},
    output::{self, print_listing, tell},
    password,
    tokens::utc,
};

pub const USERS_HELP: &str = "\
Administering users needs the manage_users permission (administrators have it).
A user holds roles (see `tether roles list`) on device groups: --group tag:NAME or a device id,
repeated for several; without --group the role applies to every device. Deny by default: a user
without a role reaches nothing.
Disabling a user ends their live sessions at once, and their logins and tokens stop working;
revoke-sessions ends their live sessions and logins but leaves their tokens working.";

#[derive(Subcommand)]
pub enum UsersCommand {
    /// List the hub's users
    List {
        /// Print the users as JSON
        #[arg(long)]
        json: bool,
    },
    /// Add a user
    Add {
        /// User name
        name: String,
        /// The user's role: admin, operator, auditor or a custom one
        #[arg(long, required_unless_present = "admin")]
        role: Option<String>,
        /// Where the role applies: tag:NAME or a device id (repeat; default: every device)
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
        /// Same as --role admin
        #[arg(long, conflicts_with_all = ["role", "groups"])]
        admin: bool,
        /// Read the password from the first line of stdin instead of prompting
        #[arg(long)]
        password_stdin: bool,
    },
    /// Show a user's roles and where they apply
    Roles {
        /// User name
        name: String,
        /// Print the grants as JSON
        #[arg(long)]
        json: bool,
    },
    /// Replace a user's roles (their live sessions are re-checked at once)
    #[command(name = "set-role")]
    SetRole {
        /// User name
        name: String,
        /// The role: admin, operator, auditor or a custom one
        #[arg(long)]
        role: String,
        /// Where the role applies: tag:NAME or a device id (repeat; default: every device)
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
    },
    /// Disable a user: their sessions end at once, their logins and tokens stop working
    Disable {
        /// User name
        name: String,
    },
    /// Enable a disabled user again
    Enable {
        /// User name
        name: String,
    },
    /// End a user's live sessions and logins (their tokens keep working)
    #[command(name = "revoke-sessions")]
    RevokeSessions {
        /// User name
        name: String,
    },
}

/// `operator on tag:a, auditor on *`, or `-`.
fn describe_grants(grants: &[RoleGrant]) -> String {
    if grants.is_empty() {
        return "-".to_owned();
    }
    let words: Vec<String> = grants
        .iter()
        .map(|g| format!("{} on {}", g.role, g.scope))
        .collect();
    words.join(", ")
}

pub async fn run(options: &HubOptions, command: UsersCommand) -> Result<i32> {
    let login = authenticated(options)?;
    let api = Api::new(&login.hub, Some(login.token))?;
    match command {
        UsersCommand::List { json } => list(&api, json).await?,
        UsersCommand::Add {
            name,
            role,
            groups,
            admin,
            password_stdin,
        } => {
            let password = if password_stdin {
                password::from_stdin()?
            } else {
                let first = password::prompt_interruptible("Password: ").await?;
                let again = password::prompt_interruptible("Password (again): ").await?;
                if first != again {
                    bail!("the passwords do not match");
                }
                first
            };
            let role = if admin {
                "admin".to_owned()
            } else {
                role.unwrap_or_default()
            };
            let request = NewUser {
                name: name.clone(),
                password,
                admin: false,
                role: Some(role),
                groups,
            };
            let added: UserSummary = api.post(USERS_PATH, &request).await?;
            tell!("Added user {name} ({}).", describe_grants(&added.roles));
        }
        UsersCommand::Roles { name, json } => {
            let answer: RoleGrants = api.get(&paths::user_roles_path(&segment(&name))).await?;
            let text = if json {
                serde_json::to_string_pretty(&answer.grants)? + "\n"
            } else {
                let mut rows = vec![vec!["ROLE".to_owned(), "GROUP".to_owned()]];
                rows.extend(
                    answer
                        .grants
                        .iter()
                        .map(|g| vec![g.role.clone(), g.scope.clone()]),
                );
                output::table(&rows, None)
            };
            print_listing(&text).context("writing to stdout")?;
        }
        UsersCommand::SetRole { name, role, groups } => {
            let scopes = if groups.is_empty() {
                vec!["*".to_owned()]
            } else {
                groups
            };
            let grants = scopes
                .into_iter()
                .map(|scope| RoleGrant {
                    role: role.clone(),
                    scope,
                })
                .collect();
            let answer: RoleGrants = api
                .put(&paths::user_roles_path(&segment(&name)), &RoleGrants { grants })
                .await?;
            tell!("{name} now holds: {}.", describe_grants(&answer.grants));
        }
        UsersCommand::Disable { name } => {
            let _: UserSummary = api
                .post(&paths::user_disable_path(&segment(&name)), &Empty {})
                .await?;
            tell!("Disabled user {name}; their sessions were ended.");
        }
        UsersCommand::Enable { name } => {
            let _: UserSummary = api
                .post(&paths::user_enable_path(&segment(&name)), &Empty {})
                .await?;
            tell!("Enabled user {name}.");
        }
        UsersCommand::RevokeSessions { name } => {
            let answer: RevokedSessions = api
                .post(&paths::user_revoke_sessions_path(&segment(&name)), &Empty {})
                .await?;
            tell!("Revoked {} login session(s) of {name}.", answer.revoked);
        }
    }
    Ok(0)
}

async fn list(api: &Api, json: bool) -> Result<()> {
    let list: UserList = api.get(USERS_PATH).await?;
    let text = if json {
        serde_json::to_string_pretty(&list.users)? + "\n"
    } else {
        user_table(&list.users)
    };
    print_listing(&text).context("writing to stdout")
}

fn user_table(users: &[UserSummary]) -> String {
    let mut rows = vec![
        ["ID", "NAME", "ROLES", "STATE", "CREATED"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for user in users {
        rows.push(vec![
            user.id.clone(),
            user.name.clone(),
            describe_grants(&user.roles),
            if user.disabled { "disabled" } else { "active" }.to_owned(),
            utc(user.created_at),
        ]);
    }
    output::table(&rows, None)
}

/// `tether passwd`: the current password, then the new one (two lines of stdin with
/// `--password-stdin`, else two prompts without echo).
pub async fn passwd(options: &HubOptions, password_stdin: bool) -> Result<i32> {
    let login = authenticated(options)?;
    let (current_password, new_password) = if password_stdin {
        let current = password::from_stdin().context("reading the current password")?;
        let new = password::from_stdin().context("reading the new password")?;
        (current, new)
    } else {
        let current = password::prompt_interruptible("Current password: ").await?;
        let new = password::prompt_interruptible("New password: ").await?;
        (current, new)
    };
    let api = Api::new(&login.hub, Some(login.token))?;
    let request = PasswordChange {
        current_password,
        new_password,
    };
    api.post_no_content(PASSWORD_PATH, &request).await?;
    tell!("Password changed; your other login sessions were ended.");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_encoded_for_the_path() {
        assert_eq!(
            paths::user_disable_path(&segment("bob")),
            "/api/management/v1/users/bob/disable"
        );
        assert_eq!(
            paths::user_enable_path(&segment("a b/c")),
            "/api/management/v1/users/a%20b%2Fc/enable"
        );
    }

    #[test]
    fn the_user_table_shows_role_and_state() {
        let user = |name: &str, role: &str, disabled| UserSummary {
            id: "u1".into(),
            name: name.into(),
            admin: false,
            disabled,
            created_at: 0,
            roles: vec![RoleGrant {
                role: role.into(),
                scope: "*".into(),
            }],
        };
        assert_eq!(
            user_table(&[user("alice", "admin", false), user("bob", "operator", true)]),
            "ID  NAME   ROLES          STATE     CREATED\n\
             u1  alice  admin on *     active    1970-01-01 00:00:00 UTC\n\
             u1  bob    operator on *  disabled  1970-01-01 00:00:00 UTC\n"
        );
    }
}
