//! `tether profiles list|use|remove`: several hubs (or several users of one), each login stored
//! as a named profile, one of them current — like kubectl's contexts. `tether login` stores the
//! login as the chosen profile (`--profile`, `TETHER_PROFILE`, else the current one, else
//! `default`) and makes it current, so the hub last logged in to is the one commands use.

use anyhow::{Result, bail};
use clap::Subcommand;
use serde::Serialize;

use crate::{
    config,
    hub::HubOptions,
    login,
    output::{print_listing, table, tell},
};

pub const PROFILES_HELP: &str = "\
A profile is one stored login (hub, user, token). Log in as a new one with
`tether --profile NAME login USER --hub URL`; choose one per command with --profile NAME or
TETHER_PROFILE=NAME; otherwise commands use the current profile (the one last logged in to
or chosen with `tether profiles use`). A login from an earlier version is the profile default.";

#[derive(Subcommand)]
pub enum ProfilesCommand {
    /// List the stored profiles: name, hub, user, and which is current
    List {
        /// Print the profiles as JSON
        #[arg(long)]
        json: bool,
    },
    /// Make a profile the current one
    Use {
        #[arg(value_parser = config::parse_profile_name)]
        name: String,
    },
    /// Log out of a profile (revoking its token when the hub is reachable) and delete it
    Remove {
        #[arg(value_parser = config::parse_profile_name)]
        name: String,
    },
}

/// One line of `tether profiles list --json`.
#[derive(Serialize)]
struct ProfileEntry {
    name: String,
    hub: Option<String>,
    user: Option<String>,
    /// Unix seconds.
    expires_at: Option<i64>,
    current: bool,
}

pub async fn run(options: &HubOptions, command: ProfilesCommand) -> Result<i32> {
    let dir = config::config_dir()?;
    match command {
        ProfilesCommand::List { json } => {
            let current = config::current(&dir)?;
            let entries: Vec<ProfileEntry> = config::list(&dir)?
                .into_iter()
                .map(|(name, credentials)| ProfileEntry {
                    current: current.as_deref() == Some(name.as_str()),
                    hub: credentials.as_ref().map(|c| c.hub.clone()),
                    user: credentials.as_ref().map(|c| c.user.clone()),
                    expires_at: credentials.as_ref().map(|c| c.expires_at),
                    name,
                })
                .collect();
            if json {
                print_listing(&format!("{}\n", serde_json::to_string_pretty(&entries)?))?;
            } else if entries.is_empty() {
                tell!("No profiles: log in with `tether login USER --hub URL`.");
            } else {
                print_listing(&listing(&entries))?;
            }
        }
        ProfilesCommand::Use { name } => {
            if config::load(&dir, &name)?.is_none() {
                bail!("no profile {name}: log in to it with `tether --profile {name} login USER`");
            }
            config::set_current(&dir, Some(&name))?;
            tell!("Now using the profile {name}.");
        }
        ProfilesCommand::Remove { name } => {
            if !config::list(&dir)?.iter().any(|(stored, _)| *stored == name) {
                bail!("no profile {name}");
            }
            let profile_options = HubOptions {
                profile: Some(name.clone()),
                ..options.clone()
            };
            if config::load(&dir, &name).is_err() {
                // A damaged file has no token to revoke: it only goes.
                config::remove(&dir, &name)?;
                tell!("Logged out.");
            } else {
                login::logout(&profile_options).await?;
            }
            if config::current(&dir)?.as_deref() == Some(name.as_str()) {
                config::set_current(&dir, None)?;
            }
        }
    }
    Ok(0)
}

fn listing(entries: &[ProfileEntry]) -> String {
    let mut rows = vec![["CURRENT", "NAME", "HUB", "USER"].map(String::from).to_vec()];
    for entry in entries {
        rows.push(vec![
            if entry.current { "*".into() } else { String::new() },
            entry.name.clone(),
            entry.hub.clone().unwrap_or_else(|| "(damaged)".into()),
            entry.user.clone().unwrap_or_default(),
        ]);
    }
    table(&rows, None)
}
