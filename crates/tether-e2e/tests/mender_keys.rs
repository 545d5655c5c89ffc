//! Devices that already run Mender: their client's key is RSA (3072 bits by default) or ECDSA
//! P-256, made and used here by the openssl command line. Such a device enrols (pending, then
//! accepted by an administrator), re-authenticates as the same device, and connects; keys
//! too small or of another kind, and tampered requests, are refused with a clear 400.

use std::{sync::mpsc, time::Duration};

use tether_e2e::{FakeDevice, Hub, OpensslKey, Received, WAIT, block_on, receive, send_binary, wait_for};
use tether_proto::{auth::DeviceClaims, control::Control, protocol};

/// The `error` of a JSON error or refusal body (panics with the body if there is none).
fn field_of(body: &str, field: &str) -> String {
    let value: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {body}"));
    value
        .get(field)
        .and_then(|e| e.as_str())
        .unwrap_or_else(|| panic!("body has no `{field}` string: {body}"))
        .to_owned()
}

/// Enrols a device signing with `key` and shows it connected, answering on its WebSocket.
fn enrols_and_connects(hub: &Hub, key: OpensslKey, log_names: &str) {
    let admin = hub.user_cli("admin", true);
    let description = key.description.clone();
    let fake = FakeDevice::with_openssl_key(hub, key);

    // First contact: pending, listed once.
    let (status, body) = fake.authenticate(None);
    assert_eq!(status, 401, "{description}: {body}");
    assert_eq!(field_of(&body, "status"), "pending", "{description}: {body}");
    let pending = admin.wait_device(&fake.name, "pending", |d| d.status == "pending");
    assert!(
        hub.log().contains(log_names),
        "the hub logs the key type ({log_names}):\n{}",
        hub.log()
    );

    // Asking again with the same key (a fresh signature) is the same device.
    let (status, body) = fake.authenticate(None);
    assert_eq!(
        (status, field_of(&body, "status")),
        (401, "pending".into()),
        "{body}"
    );
    let listed = admin
        .devices()
        .into_iter()
        .filter(|d| d.name == fake.name)
        .count();
    assert_eq!(listed, 1, "{description}: one key, one device");

    admin.run(&["devices", "accept", &fake.name]).ok();
    // Once accepted, a request shaped as the Mender client sends it (its identity attributes,
    // `tenant_token`, no Tether fields) gets the device token.
    let mender_body = serde_json::json!({
        "id_data": serde_json::json!({ "hostname": fake.name, "mac": "02:00:00:00:00:01" }).to_string(),
        "pubkey": fake.pubkey_pem(),
        "tenant_token": "",
    })
    .to_string();
    let (status, token) = fake.post_auth(mender_body.as_bytes(), Some(&fake.sign(mender_body.as_bytes())));
    assert_eq!(
        status, 200,
        "{description}: the accepted device gets its token: {token}"
    );
    let token = token.trim().to_owned();
    let claims: DeviceClaims =
        tether_proto::auth::unverified_claims(&token).unwrap_or_else(|| panic!("not a JWT: {token}"));
    assert_eq!(
        claims.sub, pending.id,
        "{description}: re-authenticated as the same device"
    );

    // The device WebSocket: connects, answers a ping, and is listed online while connected.
    let (ponged, pong) = mpsc::channel();
    let (stop, stopped) = mpsc::channel::<()>();
    let device = std::thread::spawn(move || {
        block_on(async move {
            let mut socket = fake.connect(&token).await.expect("the device connects");
            let ping = Control::Ping.to_envelope("");
            send_binary(&mut socket, ping.encode())
                .await
                .expect("send a ping");
            let answer = receive(&mut socket, WAIT).await;
            ponged.send(format!("{answer:?}")).unwrap();
            // Stay connected (answering pings and session opens) until the test is done.
            while stopped.try_recv().is_err() {
                let Received::Message(envelope) = receive(&mut socket, Duration::from_millis(200)).await
                else {
                    continue;
                };
                let reply = match Control::from_envelope(&envelope) {
                    Ok(Control::Ping) if envelope.proto == protocol::CONTROL => Control::Pong,
                    _ => continue,
                };
                let _ = send_binary(&mut socket, reply.to_envelope(&envelope.sid).encode()).await;
            }
        })
    });
    let answer = pong.recv_timeout(WAIT).expect("the device thread answers");
    assert!(
        answer.contains("pong"),
        "{description}: the hub answers the device: {answer}"
    );
    let online = admin.wait_online(&pending.name);
    assert_eq!(online.id, pending.id);
    stop.send(()).unwrap();
    device.join().expect("the device thread");
}

#[test]
fn a_mender_device_with_an_rsa_3072_key_enrols_and_connects() {
    let hub = Hub::start_default();
    enrols_and_connects(&hub, OpensslKey::rsa(3072), "RSA-3072 key");
}

#[test]
fn a_mender_device_with_an_ecdsa_p256_key_enrols_and_connects() {
    let hub = Hub::start_default();
    enrols_and_connects(&hub, OpensslKey::ecdsa("P-256"), "ECDSA-P256 key");
}

#[test]
fn small_rsa_keys_other_curves_and_tampered_requests_get_400() {
    let hub = Hub::start_default();
    let admin = hub.user_cli("admin", true);
    let expect_400 = |what: &str, (status, body): (u16, String), mentions: &[&str]| {
        assert_eq!(status, 400, "{what}: expected 400, got {status}: {body}");
        let error = field_of(&body, "error");
        for needle in mentions {
            assert!(
                error.contains(needle),
                "{what}: the error should name {needle:?}: {error}"
            );
        }
    };

    let small = FakeDevice::with_openssl_key(&hub, OpensslKey::rsa(1024));
    expect_400("RSA 1024", small.authenticate(None), &["RSA", "1024 bits"]);

    let p384 = FakeDevice::with_openssl_key(&hub, OpensslKey::ecdsa("P-384"));
    expect_400("ECDSA P-384", p384.authenticate(None), &["P-384"]);

    // A body changed after signing, for each accepted Mender key type.
    let mut refused = vec![small.name.clone(), p384.name.clone()];
    for key in [OpensslKey::rsa(3072), OpensslKey::ecdsa("P-256")] {
        let description = key.description.clone();
        let fake = FakeDevice::with_openssl_key(&hub, key);
        let body = fake.auth_body(None);
        let signature = fake.sign(&body);
        let tampered = String::from_utf8(body)
            .unwrap()
            .replace(&fake.name, "someone-else");
        expect_400(
            &format!("{description}, tampered body"),
            fake.post_auth(tampered.as_bytes(), Some(&signature)),
            &["signature does not match"],
        );
        refused.push(fake.name.clone());
    }

    // None of them is a device, and the refusals are logged and audited.
    let names: Vec<String> = admin.devices().into_iter().map(|d| d.name).collect();
    for name in refused.iter().chain([&"someone-else".to_owned()]) {
        assert!(!names.contains(name), "{name} was refused: {names:?}");
    }
    wait_for("the hub to log the refusal of the RSA 1024 key", WAIT, || {
        hub.log().contains("RSA key of 1024 bits").then_some(())
    });
    let audit = admin.run(&["audit", "list", "--json"]);
    assert!(
        audit.ok().contains("RSA key of 1024 bits") && audit.ok().contains("P-384"),
        "the refusals are audited with their reason:\n{audit}"
    );
}
