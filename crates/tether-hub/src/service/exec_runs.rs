//! One command across a device group: the accepted devices of the group that the caller may
//! see, with their online state, and the one audit event naming them all. It is written before
//! the answer, so before the CLI opens the per-device sessions, each of which is authorized and
//! audited exactly as a single `exec`.

use crate::{
    domain::audit::Object, domain::audit::RequestContext, domain::device::DeviceRecord,
    domain::device::DeviceStatus, domain::failure::Failure, domain::permissions::Action,
    domain::principal::Principal, domain::principal::authorize_quietly, domain::roles::Scope, service::Hub,
    service::audit::record_success, service::auth::permit,
};

/// A device of a run, as the hub saw it when the run started.
pub struct RunDevice {
    pub device: DeviceRecord,
    pub online: bool,
}

/// A run the caller may start: the group as parsed, and its devices by name.
pub struct GroupRun {
    pub scope: Scope,
    pub devices: Vec<RunDevice>,
}

/// Resolves `group` for `principal` and records the run of `command` on it.
pub async fn start(
    hub: &Hub,
    principal: &Principal,
    context: &RequestContext,
    group: &str,
    command: &str,
) -> Result<GroupRun, Failure> {
    permit(hub, principal, context, Action::ViewDevices, None).await?;
    let scope = Scope::parse(group).map_err(Failure::bad_request)?;
    if command.trim().is_empty() {
        return Err(Failure::bad_request("no command to run"));
    }
    let online = hub.router.online_devices().await;
    // Only the devices the caller may see: the others are not named, not even as refused.
    let devices: Vec<RunDevice> = hub
        .store
        .devices(Some(DeviceStatus::Accepted))
        .await?
        .into_iter()
        .filter(|device| scope.covers(device))
        .filter(|device| authorize_quietly(principal, Action::ViewDevices, device))
        .map(|device| RunDevice {
            online: online.contains(&device.id),
            device,
        })
        .collect();
    let named: Vec<serde_json::Value> = devices
        .iter()
        .map(|run| {
            serde_json::json!({
                "id": run.device.id,
                "name": run.device.name,
                "online": run.online,
            })
        })
        .collect();
    let object = Object {
        kind: Some("group"),
        id: Some(scope.text()),
        name: Some(scope.text()),
    };
    let details = serde_json::json!({ "command": command, "devices": named });
    record_success(hub, principal, context, "exec.group", object, details).await?;
    Ok(GroupRun { scope, devices })
}
