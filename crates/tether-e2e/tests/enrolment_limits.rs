//! Unauthenticated enrolment is bounded: new device keys are rate-limited per client address
//! and in total (known devices and a valid provisioning key are not), the pending devices are
//! capped (the oldest is dropped, audited), names over 255 bytes are refused, and a pending
//! device never shadows an accepted one of the same name.

use std::net::IpAddr;

use serde_json::Value;
use tether_e2e::{Agent, Cli, FakeDevice, Hub, HubOptions, source_address::request_from};
use tether_proto::auth::{AUTH_PATH, SIGNATURE_HEADER};

fn loopback(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// A signed authentication request of `device` from `source`.
fn enrol_from(
    hub: &Hub,
    device: &FakeDevice,
    source: IpAddr,
    provisioning_key: Option<&str>,
) -> (u16, String) {
    let body = device.auth_body(provisioning_key);
    let signature = device.sign(&body);
    request_from(
        hub,
        source,
        "POST",
        AUTH_PATH,
        &[
            ("Content-Type", "application/json"),
            (SIGNATURE_HEADER, &signature),
        ],
        &body,
    )
}

fn error_of(body: &str) -> String {
    let value: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    value["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no `error` in {body}"))
        .to_owned()
}

fn events(cli: &Cli, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["audit", "list", "--json", "--all"];
    all.extend_from_slice(args);
    let output = cli.run(&all);
    serde_json::from_str(output.ok()).unwrap_or_else(|e| panic!("not a JSON array: {e}\n{output}"))
}

#[test]
fn an_enrolment_flood_is_limited_per_address_and_in_total() {
    let hub = Hub::start(
        HubOptions::default()
            .provisioning_key("e2e-provisioning-secret")
            .config("enrolments_per_address = 5\nenrolments_in_total = 9\nenrolment_window_secs = 3600"),
    );
    let admin = hub.user_cli("admin", true);
    // A device enrolled (pending), then accepted by the administrator.
    let known = FakeDevice::named(&hub, "known-device");
    assert_eq!(enrol_from(&hub, &known, loopback(5), None).0, 401);
    admin.run(&["devices", "accept", "known-device"]).ok();

    // A flood of new keys from one address: five get in (pending), then 429.
    let mut statuses = Vec::new();
    for n in 0..8 {
        let device = FakeDevice::named(&hub, &format!("flood-a-{n}"));
        let (status, body) = enrol_from(&hub, &device, loopback(2), None);
        statuses.push(status);
        if status == 429 {
            assert!(error_of(&body).contains("enrolments_per_address"), "{body}");
        }
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429, 429]);
    // Other addresses share the total (nine an hour, one used by the known device).
    let mut statuses = Vec::new();
    for (n, last) in [3, 3, 3, 4, 4].into_iter().enumerate() {
        let device = FakeDevice::named(&hub, &format!("flood-b-{n}"));
        let (status, body) = enrol_from(&hub, &device, loopback(last), None);
        statuses.push(status);
        if status == 429 {
            assert!(error_of(&body).contains("enrolments_in_total"), "{body}");
        }
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429]);

    // A known, accepted device re-authenticating is never throttled, from any address.
    for _ in 0..3 {
        let (status, body) = enrol_from(&hub, &known, loopback(2), None);
        assert_eq!(status, 200, "an accepted device was throttled: {body}");
    }
    // A device with the valid provisioning key is not throttled either.
    let provisioned = FakeDevice::named(&hub, "provisioned");
    let (status, body) = enrol_from(&hub, &provisioned, loopback(2), Some("e2e-provisioning-secret"));
    assert_eq!(status, 200, "{body}");

    let pending = admin
        .devices()
        .into_iter()
        .filter(|d| d.status == "pending")
        .count();
    assert_eq!(pending, 8, "five from the first address, three from the others");
    let refused = events(
        &admin,
        &["--action", "device.auth_request", "--outcome", "refused"],
    );
    let throttled = refused
        .iter()
        .filter(|e| {
            e["details"]["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("too many new devices"))
        })
        .count();
    assert_eq!(throttled, 5, "{refused:#?}");
}

#[test]
fn the_pending_cap_drops_the_oldest_pending_device() {
    let hub = Hub::start(HubOptions::default().config("max_pending_devices = 3"));
    let admin = hub.user_cli("admin", true);
    let accepted = FakeDevice::named(&hub, "accepted-one");
    assert_eq!(accepted.authenticate(None).0, 401);
    admin.run(&["devices", "accept", "accepted-one"]).ok();
    for n in 1..=4 {
        let (status, body) = FakeDevice::named(&hub, &format!("pending-{n}")).authenticate(None);
        assert_eq!(status, 401, "{body}");
    }
    let mut names: Vec<String> = admin.devices().into_iter().map(|d| d.name).collect();
    names.sort();
    assert_eq!(names, ["accepted-one", "pending-2", "pending-3", "pending-4"]);

    let dropped = events(&admin, &["--action", "device.pending_dropped"]);
    assert_eq!(dropped.len(), 1, "{dropped:#?}");
    assert_eq!(dropped[0]["object_name"], "pending-1", "{:#}", dropped[0]);
    assert!(
        dropped[0]["details"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("max_pending_devices"),
        "{:#}",
        dropped[0]
    );
}

#[test]
fn a_device_name_over_255_bytes_is_refused() {
    let hub = Hub::start_default();
    let admin = hub.user_cli("admin", true);
    let (status, body) = FakeDevice::named(&hub, &"n".repeat(256)).authenticate(None);
    assert_eq!(status, 400, "{body}");
    let error = error_of(&body);
    assert!(
        error.contains("256 bytes") && error.contains("at most 255"),
        "{error}"
    );
    // Multi-byte characters count in bytes: 128 two-byte characters are 256 bytes.
    let (status, body) = FakeDevice::named(&hub, &"é".repeat(128)).authenticate(None);
    assert_eq!(status, 400, "{body}");
    // 255 bytes are fine.
    let (status, body) = FakeDevice::named(&hub, &"n".repeat(255)).authenticate(None);
    assert_eq!(status, 401, "{body}");
    assert_eq!(admin.devices().len(), 1);
}

#[test]
fn a_pending_namesake_does_not_shadow_the_accepted_device() {
    let hub = Hub::start_default();
    let admin = hub.user_cli("admin", true);
    let _agent = Agent::start_named(&hub, "dev-b", "");
    admin.accept("dev-b");
    // Anyone can enrol a pending device called dev-b.
    let (status, body) = FakeDevice::named(&hub, "dev-b").authenticate(None);
    assert_eq!(status, 401, "{body}");
    let namesakes = admin.devices().into_iter().filter(|d| d.name == "dev-b").count();
    assert_eq!(namesakes, 2);

    let output = admin.exec("dev-b", &["echo", "the real dev-b"]);
    assert_eq!(output.ok(), "the real dev-b\n");
    // The audit filter resolves the name the same way.
    let output = admin.run(&["audit", "list", "--json", "--device", "dev-b"]);
    let listed: Vec<Value> = serde_json::from_str(output.ok()).expect("JSON");
    assert!(!listed.is_empty(), "{output}");
}
