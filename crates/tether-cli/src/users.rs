//! `tether users ...` (administering the hub's users: list, add, roles, disable, enable, end
//! their sessions) and `tether passwd` (changing one's own password).

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    api::Api,
    hub::{HubOptions, authenticated},
    output::{print_listing, tell},
    password,
    tokens::{table, utc},
};

const USERS_PATH: &str = "/api/management/v1/users";
const PASSWORD_PATH: &str = "/api/management/v1/auth/password";

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

#[derive(Deserialize)]
struct UserList {
    users: Vec<UserInfo>,
}

#[derive(Deserialize)]
struct UserInfo {
    id: String,
    name: String,
    #[serde(default)]
    disabled: bool,
    #[serde(default)]
    created_at: Option<i64>,
    #[serde(default)]
    roles: Vec<RoleGrant>,
}

#[derive(Serialize, Deserialize)]
struct RoleGrant {
    role: String,
    scope: String,
}

#[derive(Serialize, Deserialize)]
struct RoleGrants {
    grants: Vec<RoleGrant>,
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

#[derive(Serialize)]
struct NewUser<'a> {
    name: &'a str,
    password: &'a str,
    role: &'a str,
    groups: &'a [String],
}

#[derive(Deserialize)]
struct Revoked {
    revoked: u64,
}

#[derive(Serialize)]
struct PasswordChange {
    current_password: String,
    new_password: String,
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
                name: &name,
                password: &password,
                role: &role,
                groups: &groups,
            };
            let added: UserInfo = api.post(USERS_PATH, &request).await?;
            tell!("Added user {name} ({}).", describe_grants(&added.roles));
        }
        UsersCommand::Roles { name, json } => {
            let answer: RoleGrants = api.get(&user_path(&name, "roles")).await?;
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
                table(&rows)
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
                .put(&user_path(&name, "roles"), &RoleGrants { grants })
                .await?;
            tell!("{name} now holds: {}.", describe_grants(&answer.grants));
        }
        UsersCommand::Disable { name } => {
            let _: Value = api
                .post(&user_path(&name, "disable"), &serde_json::json!({}))
                .await?;
            tell!("Disabled user {name}; their sessions were ended.");
        }
        UsersCommand::Enable { name } => {
            let _: Value = api
                .post(&user_path(&name, "enable"), &serde_json::json!({}))
                .await?;
            tell!("Enabled user {name}.");
        }
        UsersCommand::RevokeSessions { name } => {
            let answer: Revoked = api
                .post(&user_path(&name, "revoke-sessions"), &serde_json::json!({}))
                .await?;
            tell!("Revoked {} login session(s) of {name}.", answer.revoked);
        }
    }
    Ok(0)
}

fn user_path(name: &str, action: &str) -> String {
    format!("{USERS_PATH}/{}/{action}", encode_segment(name))
}

/// Percent-encodes a user name for one path segment (or a query value).
pub fn encode_segment(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

async fn list(api: &Api, json: bool) -> Result<()> {
    let answer: Value = api.get(USERS_PATH).await?;
    let text = if json {
        serde_json::to_string_pretty(&answer["users"])? + "\n"
    } else {
        let list: UserList =
            serde_json::from_value(answer).context("unexpected answer from the hub to listing users")?;
        user_table(&list.users)
    };
    print_listing(&text).context("writing to stdout")
}

fn user_table(users: &[UserInfo]) -> String {
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
            user.created_at.map(utc).unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    table(&rows)
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
            user_path("bob", "disable"),
            "/api/management/v1/users/bob/disable"
        );
        assert_eq!(
            user_path("a b/c", "enable"),
            "/api/management/v1/users/a%20b%2Fc/enable"
        );
    }

    #[test]
    fn the_user_table_shows_role_and_state() {
        let user = |name: &str, role: &str, disabled| UserInfo {
            id: "u1".into(),
            name: name.into(),
            disabled,
            created_at: Some(0),
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
