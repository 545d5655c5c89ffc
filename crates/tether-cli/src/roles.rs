//! `tether roles ...`: the roles users can hold on device groups (built-in admin, operator and
//! auditor, and custom ones), and `tether devices set-tags` (tags define device groups).

use anyhow::{Context, Result};
use clap::Subcommand;
use tether_proto::api::{
    DeviceTags, NewRole, Role, RoleList,
    paths::{ROLES_PATH, device_tags_path, role_path, segment},
};

use crate::{
    api::Api,
    output::{self, print_listing, tell},
    resolve::find,
};

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

pub async fn run(api: &Api, command: RolesCommand) -> Result<()> {
    match command {
        RolesCommand::List { json } => {
            let list: RoleList = api.get(ROLES_PATH).await?;
            let text = if json {
                serde_json::to_string_pretty(&list.roles)? + "\n"
            } else {
                role_table(&list.roles)
            };
            print_listing(&text).context("writing to stdout")?;
        }
        RolesCommand::Create {
            name,
            permissions,
            description,
        } => {
            let request = NewRole {
                name: name.clone(),
                permissions,
                description,
            };
            let created: Role = api.post(ROLES_PATH, &request).await?;
            tell!("Created role {name}: {}.", created.permissions.join(", "));
        }
        RolesCommand::Delete { name } => {
            api.delete(&role_path(&segment(&name))).await?;
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
    output::table(&rows, None)
}

/// `tether devices set-tags DEVICE [TAG]...`: replaces the device's tags (none: clears them).
pub async fn set_tags(api: &Api, query: &str, tags: Vec<String>) -> Result<()> {
    let device = find(api, query).await?;
    let answer: DeviceTags = api
        .put(&device_tags_path(&segment(&device.id)), &DeviceTags { tags })
        .await?;
    let tags = answer.tags;
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
