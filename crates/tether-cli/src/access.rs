//! `tether access ...`: approval on demand. A user requests access to a device or group for a
//! while, with a reason; an approver (not the requester) approves or denies it; the access ends
//! on time or when revoked, and so do the sessions opened under it.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use tether_proto::api::{
    AccessDecision, AccessRequest, AccessRequestList, ApprovalPolicies, Empty, NewAccessRequest,
    PolicyChange,
    paths::{
        ACCESS_POLICIES_PATH, ACCESS_REQUESTS_PATH, access_approve_path, access_deny_path,
        access_request_path, access_revoke_path, segment,
    },
};

use crate::{
    api::Api,
    output::{self, print_listing, say, tell},
    resolve::find,
    tokens::{hub_integer, parse_duration_secs, utc},
};

pub const ACCESS_HELP: &str = "\
A group that requires approval (`tether access require tag:NAME`) is reached (terminal, files,
port forwarding) only through an approved request, by everyone. Approving needs the
approve_access permission on the device or group, and nobody approves their own request.
PERMISSION: terminal, file_read, file_write, port_forward. DURATION: 30m, 2h, 1d...";

#[derive(Subcommand)]
pub enum AccessCommand {
    /// Ask for access to a device or group
    Request {
        /// The device (id or name)
        #[arg(long, conflicts_with = "group", required_unless_present = "group")]
        device: Option<String>,
        /// The group: tag:NAME
        #[arg(long)]
        group: Option<String>,
        /// A permission to ask for (repeat for several)
        #[arg(long = "permission", value_name = "PERMISSION", required = true)]
        permissions: Vec<String>,
        /// How long the access lasts once approved, e.g. 30m, 2h
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_secs)]
        duration: u64,
        /// Why you need it (shown to approvers, kept in the audit log)
        #[arg(long)]
        reason: String,
        /// Wait for the decision and exit 0 when approved, 1 when denied
        #[arg(long)]
        wait: bool,
        /// Print the request as JSON
        #[arg(long)]
        json: bool,
    },
    /// List your requests (or everyone's, for approvers)
    List {
        /// Everyone's requests (needs approve_access)
        #[arg(long)]
        all: bool,
        /// Print the requests as JSON
        #[arg(long)]
        json: bool,
    },
    /// Approve a pending request
    Approve {
        id: String,
        /// A note kept with the decision
        #[arg(long)]
        note: Option<String>,
    },
    /// Deny a pending request
    Deny {
        id: String,
        /// A note kept with the decision
        #[arg(long)]
        note: Option<String>,
    },
    /// End an approved access now (its sessions end)
    Revoke { id: String },
    /// Require approval on a group (tag:NAME) or device
    Require { group: String },
    /// Stop requiring approval on a group or device
    Unrequire { group: String },
    /// List the groups that require approval
    Policies,
}

pub async fn run(api: &Api, command: AccessCommand) -> Result<i32> {
    match command {
        AccessCommand::Request {
            device,
            group,
            permissions,
            duration,
            reason,
            wait,
            json,
        } => {
            let scope = match (device, group) {
                (Some(device), _) => find(api, &device).await?.id,
                (None, Some(group)) => group,
                (None, None) => bail!("name a --device or a --group"),
            };
            let body = NewAccessRequest {
                scope,
                permissions,
                duration_secs: hub_integer(duration),
                reason,
            };
            let mut request: AccessRequest = api.post(ACCESS_REQUESTS_PATH, &body).await?;
            if !json {
                tell!("Requested access {} (pending).", request.id);
            }
            if wait {
                if !json {
                    say!("Waiting for an approver to decide...");
                }
                while request.status == "pending" {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    request = api.get(&access_request_path(&segment(&request.id))).await?;
                }
            }
            if json {
                print_listing(&(serde_json::to_string_pretty(&request)? + "\n"))?;
            } else if wait {
                tell!("{}", outcome(&request));
            }
            return Ok(if wait && request.status != "approved" {
                1
            } else {
                0
            });
        }
        AccessCommand::List { all, json } => {
            let path = if all {
                format!("{ACCESS_REQUESTS_PATH}?all=true")
            } else {
                ACCESS_REQUESTS_PATH.to_owned()
            };
            let list: AccessRequestList = api.get(&path).await?;
            let text = if json {
                serde_json::to_string_pretty(&list.requests)? + "\n"
            } else {
                request_table(&list.requests)
            };
            print_listing(&text).context("writing to stdout")?;
        }
        AccessCommand::Approve { id, note } => {
            let request: AccessRequest = api
                .post(&access_approve_path(&segment(&id)), &AccessDecision { note })
                .await?;
            tell!("{}", outcome(&request));
        }
        AccessCommand::Deny { id, note } => {
            let request: AccessRequest = api
                .post(&access_deny_path(&segment(&id)), &AccessDecision { note })
                .await?;
            tell!("{}", outcome(&request));
        }
        AccessCommand::Revoke { id } => {
            let request: AccessRequest = api.post(&access_revoke_path(&segment(&id)), &Empty {}).await?;
            tell!("{}", outcome(&request));
        }
        AccessCommand::Require { group } => set_policy(api, &group, true).await?,
        AccessCommand::Unrequire { group } => set_policy(api, &group, false).await?,
        AccessCommand::Policies => {
            let policies: ApprovalPolicies = api.get(ACCESS_POLICIES_PATH).await?;
            for scope in &policies.require_approval {
                tell!("{scope}");
            }
        }
    }
    Ok(0)
}

async fn set_policy(api: &Api, group: &str, require: bool) -> Result<()> {
    let body = PolicyChange {
        scope: group.to_owned(),
        require_approval: require,
    };
    let _: ApprovalPolicies = api.put(ACCESS_POLICIES_PATH, &body).await?;
    if require {
        tell!("Access to {group} now needs an approved request.");
    } else {
        tell!("Access to {group} no longer needs approval.");
    }
    Ok(())
}

/// One line on what happened to a request.
fn outcome(request: &AccessRequest) -> String {
    let by = request.decided_by.as_deref().unwrap_or("?");
    match request.status.as_str() {
        "approved" => format!(
            "Access {} approved by {by}: {} on {} until {}.",
            request.id,
            request.permissions.join(","),
            request.scope,
            request.expires_at.map(utc).unwrap_or_default()
        ),
        "denied" => format!(
            "Access {} denied by {by}{}.",
            request.id,
            request
                .note
                .as_deref()
                .map(|n| format!(": {n}"))
                .unwrap_or_default()
        ),
        status => format!("Access {} is {status}.", request.id),
    }
}

fn request_table(requests: &[AccessRequest]) -> String {
    let mut rows = vec![
        [
            "ID",
            "USER",
            "GROUP",
            "PERMISSIONS",
            "DURATION",
            "STATUS",
            "EXPIRES",
            "REASON",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for request in requests {
        rows.push(vec![
            request.id.clone(),
            request.user_name.clone(),
            request.scope.clone(),
            request.permissions.join(","),
            format!("{}m", request.duration_secs / 60),
            request.status.clone(),
            request.expires_at.map(utc).unwrap_or_else(|| "-".to_owned()),
            request.reason.clone(),
        ]);
    }
    output::table(&rows, None)
}
