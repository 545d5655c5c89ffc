//! How devices get in: pending then accepted by an operator, or accepted at once with the hub's
//! provisioning key; and how the hub refuses authentication requests it cannot trust.

use std::time::Duration;

use tether_e2e::{Agent, FakeDevice, Hub, HubOptions, wait_for};
use tether_proto::auth::DeviceClaims;

/// The `error` of a JSON error body (panics with the body if there is none).
fn error_of(body: &str) -> String {
    let value: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("error body is not JSON ({e}): {body}"));
    value
        .get("error")
        .and_then(|e| e.as_str())
        .unwrap_or_else(|| panic!("error body has no `error` string: {body}"))
        .to_owned()
}

fn status_of(body: &str) -> String {
    let value: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("refusal body is not JSON ({e}): {body}"));
    value
        .get("status")
        .and_then(|e| e.as_str())
        .unwrap_or_else(|| panic!("refusal body has no `status` string: {body}"))
        .to_owned()
}

#[test]
fn provisioning_key_accepts_a_new_device_without_an_operator() {
    let hub = Hub::start(HubOptions::default().provisioning_key("e2e-provisioning-secret"));
    let cli = hub.user_cli("admin", true);
    let agent = Agent::start(&hub, "provisioning_key = \"e2e-provisioning-secret\"\n");

    let device = cli.wait_online(&agent.name);
    assert_eq!(device.status, "accepted");
    let output = cli.exec(&agent.name, &["echo", "enrolled"]);
    assert_eq!(output.ok(), "enrolled\n");
}

#[test]
fn wrong_provisioning_key_is_refused_and_the_device_stays_pending() {
    let hub = Hub::start(HubOptions::default().provisioning_key("the-right-key"));
    let cli = hub.user_cli("admin", true);
    let agent = Agent::start(&hub, "provisioning_key = \"a-wrong-key\"\n");

    // The agent says why it is not let in.
    wait_for(
        "the agent to log the provisioning key refusal",
        Duration::from_secs(30),
        || agent.log().to_lowercase().contains("provisioning").then_some(()),
    );
    let device = cli.wait_device(&agent.name, "listed", |_| true);
    assert_eq!(device.status, "pending", "{device:#?}");
    assert!(!device.online, "{device:#?}");
    let refused = cli.exec(&agent.name, &["true"]);
    assert!(
        !refused.success(),
        "a pending device must not run commands:\n{refused}"
    );

    // On the wire: 401, status `invalid`, an error naming the provisioning key.
    let fake = FakeDevice::new(&hub);
    let (status, body) = fake.authenticate(Some("another-wrong-key"));
    assert_eq!(status, 401, "{body}");
    assert_eq!(status_of(&body), "invalid", "{body}");
    assert!(error_of(&body).to_lowercase().contains("provisioning"), "{body}");
    // ... and that device stays pending too.
    let listed = cli.wait_device(&fake.name, "listed", |_| true);
    assert_eq!(listed.status, "pending");
    let (status, body) = fake.authenticate(None);
    assert_eq!((status, status_of(&body)), (401, "pending".to_owned()), "{body}");
}

#[test]
fn an_operator_can_accept_a_device_whose_provisioning_key_is_wrong() {
    // The key enrols newcomers; it must not overrule an administrator's decision (the hub keeps a
    // rejected device rejected whatever key it shows, and likewise an accepted device is in).
    let hub = Hub::start(HubOptions::default().provisioning_key("the-right-key"));
    let cli = hub.user_cli("admin", true);
    let fake = FakeDevice::new(&hub);
    assert_eq!(fake.authenticate(Some("wrong")).0, 401);
    cli.run(&["devices", "accept", &fake.name]).ok();
    let (status, body) = fake.authenticate(Some("wrong"));
    assert_eq!(status, 200, "an accepted device must get its token: {body}");

    // The same for a real agent.
    let agent = Agent::start(&hub, "provisioning_key = \"a-wrong-key\"\n");
    cli.wait_device(&agent.name, "pending", |d| d.status == "pending");

    cli.run(&["devices", "accept", &agent.name]).ok();
    cli.wait_online(&agent.name);
    assert_eq!(cli.exec(&agent.name, &["echo", "in"]).ok(), "in\n");
}

#[test]
fn device_authentication_follows_the_device_status() {
    let hub = Hub::start_default();
    let cli = hub.user_cli("admin", true);
    let fake = FakeDevice::new(&hub);

    let (status, body) = fake.authenticate(None);
    assert_eq!(status, 401, "{body}");
    assert_eq!(status_of(&body), "pending", "{body}");
    assert!(!error_of(&body).is_empty());
    let device = cli.wait_device(&fake.name, "pending", |d| d.status == "pending");
    assert_eq!(device.agent_version.as_deref(), Some("e2e-fake"));

    // Asking again does not create a second device.
    let (status, _) = fake.authenticate(None);
    assert_eq!(status, 401);
    let same_name = cli.devices().into_iter().filter(|d| d.name == fake.name).count();
    assert_eq!(same_name, 1, "one key, one device");

    cli.run(&["devices", "accept", &fake.name]).ok();
    let token = fake.token(None);
    let claims: DeviceClaims =
        tether_proto::auth::unverified_claims(&token).unwrap_or_else(|| panic!("not a JWT: {token}"));
    assert_eq!(claims.sub, device.id);
    assert_eq!(claims.kind, "device");
    assert!(claims.exp > claims.iat, "{claims:?}");

    cli.run(&["devices", "reject", &fake.name]).ok();
    let (status, body) = fake.authenticate(None);
    assert_eq!(status, 401, "{body}");
    assert_eq!(status_of(&body), "rejected", "{body}");
}

#[test]
fn forged_unsigned_and_wrongly_signed_requests_get_400() {
    let hub = Hub::start_default();
    let cli = hub.user_cli("admin", true);
    let fake = FakeDevice::new(&hub);
    let impostor = FakeDevice::new(&hub);
    let body = fake.auth_body(None);

    let expect_400 = |what: &str, (status, response): (u16, String), mentions: &str| {
        assert_eq!(status, 400, "{what}: expected 400, got {status}: {response}");
        let error = error_of(&response);
        assert!(
            error.to_lowercase().contains(mentions),
            "{what}: the error should name the problem ({mentions}), got: {error}"
        );
    };

    expect_400("unsigned", fake.post_auth(&body, None), "signature");
    expect_400(
        "signature not base64",
        fake.post_auth(&body, Some("!!not base64!!")),
        "signature",
    );
    expect_400(
        "signature of the wrong length",
        fake.post_auth(&body, Some("c2hvcnQ=")),
        "signature",
    );
    expect_400(
        "signed by another key",
        fake.post_auth(&body, Some(&impostor.sign(&body))),
        "signature",
    );
    // A valid signature over other bytes: the body was changed after signing.
    let signature = fake.sign(&body);
    let mut tampered = String::from_utf8(body.clone()).unwrap();
    tampered = tampered.replace(&fake.name, "someone-else");
    expect_400(
        "tampered body",
        fake.post_auth(tampered.as_bytes(), Some(&signature)),
        "signature",
    );
    // A signed body that is not an auth request at all.
    let garbage = b"this is not json".to_vec();
    let (status, response) = fake.post_auth(&garbage, Some(&fake.sign(&garbage)));
    assert_eq!(status, 400, "non-JSON body: {response}");
    assert!(!error_of(&response).is_empty());

    // None of these created a device.
    let names: Vec<String> = cli.devices().into_iter().map(|d| d.name).collect();
    assert!(
        !names.iter().any(|n| n == &fake.name || n == "someone-else"),
        "refused requests must not create devices: {names:?}"
    );

    // The same device, correctly signed, is simply pending.
    let (status, response) = fake.post_auth(&body, Some(&signature));
    assert_eq!(status, 401, "{response}");
    assert_eq!(status_of(&response), "pending");
}
