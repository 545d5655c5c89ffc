//! `tether roles ...`: the roles users can hold on device groups (built-in admin, operator and
//! auditor, and custom ones), and `tether devices set-tags` (tags define device groups).

use anyhow::{Context, Result};
use clap::Subcommand;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tether_proto::api::device_path;

use crate::{
    api::Api,
    output::{print_listing, tell},
    resolve::resolve,
    tokens::table,
};

const ROLES_PATH: &str = "/api/management/v1/roles";

pub const ROLES_HELP: &str = "\
Permissions: view_devices, manage_devices, terminal, file_read, file_write, port_forward,
view_audit, view_recordings, approve_access, manage_users.
A role is granted on every device or on device groups (`tether users add NAME --role ROLE
--group tag:NAME`); a device is in group tag:NAME when it carries that tag
(`tether devices set-tags DEVICE NAME...`).";

#[derive(Subcommand)]
pub enum RolesCommand {
    /// List the roles and their permissions
    List {
        /// Print the roles as JSON
        #[arg(long)]
        json: bool,
    },
    /// Create a custom role
    Create {
        /// Role name
        name: String,
        /// A permission of the role (repeat for several)
        #[arg(long = "permission", value_name = "PERMISSION", required = true)]
        permissions: Vec<String>,
        /// What the role is for
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete a custom role (users holding it lose it at once)
    Delete {
        /// Role name
        name: String,
    },
}

#[derive(Serialize, Deserialize)]
struct Role {
    name: String,
    permissions: Vec<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    builtin: bool,
}

#[derive(Deserialize)]
struct RoleList {
    roles: Vec<Role>,
}

pub async fn run(api: &Api, command: RolesCommand) -> Result<()> {
    match command {
        RolesCommand::List { json } => {
            let answer: Value = api.get(ROLES_PATH).await?;
            let text = if json {
                serde_json::to_string_pretty(&answer["roles"])? + "\n"
            } else {
                let list: RoleList =
                    serde_json::from_value(answer).context("unexpected answer to listing roles")?;
                role_table(&list.roles)
            };
            print_listing(&text).context("writing to stdout")?;
        }
        RolesCommand::Create {
            name,
            permissions,
            description,
        } => {
            let request = Role {
                name: name.clone(),
                permissions,
                description,
                builtin: false,
            };
            let created: Role = api.post(ROLES_PATH, &request).await?;
            tell!("Created role {name}: {}.", created.permissions.join(", "));
        }
        RolesCommand::Delete { name } => {
            api.delete(&format!("{ROLES_PATH}/{name}")).await?;
            tell!("Deleted role {name}.");
        }
    }
    Ok(())
}

fn role_table(roles: &[Role]) -> String {
    let mut rows = vec![vec![
        "ROLE".to_owned(),
        "KIND".to_owned(),
        "PERMISSIONS".to_owned(),
    ]];
    for role in roles {
        rows.push(vec![
            role.name.clone(),
            if role.builtin { "built-in" } else { "custom" }.to_owned(),
            role.permissions.join(","),
        ]);
    }
    table(&rows)
}

/// `tether devices set-tags DEVICE [TAG]...`: replaces the device's tags (none: clears them).
pub async fn set_tags(api: &Api, query: &str, tags: Vec<String>) -> Result<()> {
    let devices = api.devices(None).await?;
    let device = resolve(&devices, query)?;
    let answer: Value = api
        .put(
            &format!("{}/tags", device_path(&device.id)),
            &serde_json::json!({ "tags": tags }),
        )
        .await?;
    let tags: Vec<&str> = answer["tags"]
        .as_array()
        .map(|tags| tags.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if tags.is_empty() {
        tell!("Device {} ({}) has no tags.", device.id, device.name);
    } else {
        tell!(
            "Device {} ({}) is tagged {}.",
            device.id,
            device.name,
            tags.join(", ")
        );
    }
    Ok(())
}
