//! Device authentication and management (accept, reject, remove, connect) as audit events.

use tether_e2e::{FakeDevice, HubOptions, block_on};

use crate::common::*;

#[test]
fn device_auth_requests_record_pending_refusals_and_provisioning_key_successes() {
    let key = "audit-provisioning-key";
    let (hub, cli) = hub_and_admin(HubOptions::default().provisioning_key(key));

    let pending = pending_device(&hub);
    let pending_id = cli.device_id_by_name(&pending.name);
    // `--device` takes a name, resolved through the device list.
    let event = exactly_one(
        &cli,
        &["--action", "device.auth_request", "--device", &pending.name],
    );
    assert_eq!(event["actor_kind"], "device", "{event:#}");
    assert_eq!(event["actor_id"], pending_id.as_str(), "{event:#}");
    assert_eq!(event["actor_name"], pending.name.as_str(), "{event:#}");
    assert_device_object(&event, &pending_id, &pending.name);
    assert_eq!(event["outcome"], "refused");
    assert_eq!(event["details"]["status"], "pending", "{event:#}");
    assert_origin(&event);

    let enrolled = FakeDevice::new(&hub);
    enrolled.token(Some(key));
    let enrolled_id = cli.device_id_by_name(&enrolled.name);
    let event = exactly_one(
        &cli,
        &["--action", "device.auth_request", "--device", &enrolled_id],
    );
    assert_eq!(event["actor_kind"], "device", "{event:#}");
    assert_eq!(event["actor_name"], enrolled.name.as_str(), "{event:#}");
    assert_device_object(&event, &enrolled_id, &enrolled.name);
    assert_eq!(event["outcome"], "success");
    assert_eq!(event["details"]["status"], "accepted", "{event:#}");
    assert_eq!(
        event["details"]["accepted_by_provisioning_key"], true,
        "{event:#}"
    );
    assert_origin(&event);

    // A wrong key: refused, status invalid.
    let wrong = FakeDevice::new(&hub);
    let (status, _) = wrong.authenticate(Some("not-the-key"));
    assert_eq!(status, 401);
    let wrong_id = cli.device_id_by_name(&wrong.name);
    let event = exactly_one(&cli, &["--action", "device.auth_request", "--device", &wrong_id]);
    assert_eq!(event["outcome"], "refused");
    assert_eq!(event["details"]["status"], "invalid", "{event:#}");

    assert_eq!(events(&cli, &["--action", "device.auth_request"]).len(), 3);
}

#[test]
fn accepting_a_device_is_one_event() {
    let (hub, cli) = hub_and_admin(HubOptions::default());
    let device = pending_device(&hub);
    let id = cli.device_id_by_name(&device.name);
    cli.run(&["devices", "accept", &device.name]).ok();

    let event = exactly_one(&cli, &["--action", "device.accept"]);
    assert_user_actor(&event, "alice");
    assert_device_object(&event, &id, &device.name);
    assert_eq!(event["outcome"], "success");
    assert_eq!(event["details"]["previous_status"], "pending", "{event:#}");
    assert_origin(&event);
    assert_cli_agent(&event);
}

#[test]
fn rejecting_a_device_is_one_event() {
    let (hub, cli) = hub_and_admin(HubOptions::default());
    let device = pending_device(&hub);
    let id = cli.device_id_by_name(&device.name);
    cli.run(&["devices", "reject", &device.name]).ok();

    let event = exactly_one(&cli, &["--action", "device.reject"]);
    assert_user_actor(&event, "alice");
    assert_device_object(&event, &id, &device.name);
    assert_eq!(event["outcome"], "success");
    assert_eq!(event["details"]["previous_status"], "pending", "{event:#}");
    assert_origin(&event);
    assert_cli_agent(&event);
}

#[test]
fn removing_a_device_is_one_event_still_found_by_its_id() {
    let (hub, cli) = hub_and_admin(HubOptions::default());
    let device = pending_device(&hub);
    let id = cli.device_id_by_name(&device.name);
    cli.run(&["devices", "remove", &device.name]).ok();
    assert!(cli.device(&device.name).is_none());

    let event = exactly_one(&cli, &["--action", "device.remove"]);
    assert_user_actor(&event, "alice");
    assert_device_object(&event, &id, &device.name);
    assert_eq!(event["outcome"], "success");
    assert_origin(&event);
    assert_cli_agent(&event);

    // The removed device's id, passed raw, still finds its history.
    let history = events(&cli, &["--device", &id]);
    let actions: Vec<&str> = history.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(
        actions,
        ["device.remove", "device.auth_request"],
        "{}",
        pretty(&history)
    );
}

#[test]
fn a_bad_device_token_is_a_refused_device_connect() {
    let (hub, cli) = hub_and_admin(HubOptions::default());
    let device = FakeDevice::new(&hub);
    let result = block_on(device.connect("not-a-device-token"));
    assert!(result.is_err(), "a bad device token was let in");

    let event = exactly_one(&cli, &["--action", "device.connect"]);
    assert_eq!(event["actor_kind"], "device", "{event:#}");
    assert_eq!(event["outcome"], "refused");
    assert!(event["details"]["reason"].is_string(), "{event:#}");
    assert_origin(&event);
}
