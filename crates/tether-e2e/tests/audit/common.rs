//! What every audit test shares: reading events back with `tether audit list --json`, asserting
//! their actor, object and origin, and starting hubs, admins, agents and pending devices.

use std::path::Path;

use serde_json::Value;
use tether_e2e::{Agent, Cli, FakeDevice, Hub, HubOptions, WAIT, wait_for};

pub(crate) const SHELL: &str = "[terminal]\nshell = \"/bin/sh\"\n";

/// `tether audit list --json --all ARGS`, parsed.
pub(crate) fn events(cli: &Cli, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["audit", "list", "--json", "--all"];
    all.extend_from_slice(args);
    let output = cli.run(&all);
    serde_json::from_str(output.ok())
        .unwrap_or_else(|e| panic!("`audit list --json` is not a JSON array: {e}\n{output}"))
}

pub(crate) fn pretty(events: &[Value]) -> String {
    serde_json::to_string_pretty(events).unwrap_or_default()
}

/// Waits until the filter matches at least one event, then asserts it matches exactly one.
pub(crate) fn exactly_one(cli: &Cli, args: &[&str]) -> Value {
    wait_for(&format!("an audit event for {args:?}"), WAIT, || {
        Some(events(cli, args)).filter(|e| !e.is_empty())
    });
    let found = events(cli, args);
    assert_eq!(
        found.len(),
        1,
        "expected exactly one event for {args:?}, got:\n{}",
        pretty(&found)
    );
    found.into_iter().next().unwrap()
}

/// Every event records where the request came from (loopback here).
pub(crate) fn assert_origin(event: &Value) {
    let address = event["client_address"].as_str().unwrap_or_default();
    assert!(
        address.starts_with("127.0.0.1:"),
        "client_address should be the loopback peer: {event:#}"
    );
}

/// The event came from the `tether` CLI (its user agent).
pub(crate) fn assert_cli_agent(event: &Value) {
    let agent = event["user_agent"].as_str().unwrap_or_default();
    assert!(agent.starts_with("tether/"), "user_agent: {event:#}");
}

pub(crate) fn assert_user_actor(event: &Value, name: &str) {
    assert_eq!(event["actor_kind"], "user", "{event:#}");
    assert_eq!(event["actor_name"], name, "{event:#}");
    assert!(event["actor_id"].is_string(), "{event:#}");
}

pub(crate) fn assert_device_object(event: &Value, id: &str, name: &str) {
    assert_eq!(event["object_kind"], "device", "{event:#}");
    assert_eq!(event["object_id"], id, "{event:#}");
    assert_eq!(event["object_name"], name, "{event:#}");
}

/// The id of the user `name`, from its successful login event.
pub(crate) fn user_id(cli: &Cli, name: &str) -> String {
    let logins = events(
        cli,
        &["--action", "login", "--outcome", "success", "--actor", name],
    );
    logins[0]["actor_id"].as_str().expect("user id").to_owned()
}

/// A hub with an admin `alice` whose CLI is logged in.
pub(crate) fn hub_and_admin(options: HubOptions) -> (Hub, Cli) {
    let hub = Hub::start(options);
    let cli = hub.user_cli("alice", true);
    (hub, cli)
}

/// A hub, the admin's CLI and an accepted, online agent with `agent_toml`.
pub(crate) fn with_agent(agent_toml: &str) -> (Hub, Cli, Agent) {
    let (hub, cli) = hub_and_admin(HubOptions::default());
    let agent = Agent::start(&hub, agent_toml);
    cli.accept(&agent.name);
    (hub, cli, agent)
}

/// A device that asked to authenticate and is pending.
pub(crate) fn pending_device(hub: &Hub) -> FakeDevice {
    let device = FakeDevice::new(hub);
    let (status, body) = device.authenticate(None);
    assert_eq!(status, 401, "a new device should be pending: {body}");
    device
}

pub(crate) fn file_transfer_config(root: &Path) -> String {
    format!(
        "{SHELL}\n[file_transfer]\nenabled = true\nroots = [{:?}]\n",
        root.display().to_string()
    )
}
