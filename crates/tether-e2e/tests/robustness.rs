//! The hub facing misbehaving clients: malformed and oversized frames from a device, wrong and
//! expired device tokens, wrong user tokens. A misbehaving device loses its own connection and
//! nothing else: a real agent on the same hub keeps working.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::SinkExt as _;
use tether_e2e::{
    Agent, Cli, FakeDevice, Hub, HubOptions, Received, block_on, receive_until_end, send_binary,
};
use tether_net::NetError;
use tether_proto::{api, auth::DeviceClaims, control::Control, protocol};
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "e2e-robustness-key";

/// A hub with a provisioning key, an admin CLI and a working real agent.
fn hub_with_agent(options: HubOptions) -> (Hub, Cli, Agent) {
    let hub = Hub::start(options.provisioning_key(KEY));
    let cli = hub.user_cli("admin", true);
    let agent = Agent::start(&hub, &format!("provisioning_key = {KEY:?}\n"));
    cli.wait_online(&agent.name);
    (hub, cli, agent)
}

fn assert_agent_still_works(cli: &Cli, agent: &Agent) {
    let output = cli.exec(&agent.name, &["echo", "still-serving"]);
    assert_eq!(
        output.ok(),
        "still-serving\n",
        "the hub must keep serving other devices"
    );
}

/// The control `error` messages among `received`.
fn control_errors(received: &[Received]) -> Vec<tether_proto::control::ErrorBody> {
    received
        .iter()
        .filter_map(|r| match r {
            Received::Message(envelope) if envelope.proto == protocol::CONTROL => {
                match Control::from_envelope(envelope) {
                    Ok(Control::Error(body)) => Some(body),
                    _ => None,
                }
            }
            _ => None,
        })
        .collect()
}

fn connection_ended(received: &[Received]) -> bool {
    matches!(received.last(), Some(Received::Close(_) | Received::Ended(_)))
}

/// Sends one frame from a newly connected fake device; returns everything the hub sent back
/// until it closed the connection (or 20 s passed).
fn send_frame_and_collect(hub: &Hub, frame: Vec<u8>) -> Vec<Received> {
    send_message_and_collect(hub, Message::Binary(frame.into()))
}

fn send_message_and_collect(hub: &Hub, message: Message) -> Vec<Received> {
    let fake = FakeDevice::new(hub);
    let token = fake.token(Some(KEY));
    block_on(async {
        let mut socket = fake
            .connect(&token)
            .await
            .unwrap_or_else(|e| panic!("a provisioned device must be able to connect: {e}"));
        // The hub may also drop the connection while the frame is being written.
        let _ = socket.send(message).await;
        receive_until_end(&mut socket, Duration::from_secs(20)).await
    })
}

#[test]
fn malformed_frames_get_an_error_and_close_only_that_connection() {
    let (hub, cli, agent) = hub_with_agent(HubOptions::default());

    let cases: [(&str, Vec<u8>); 3] = [
        (
            "not msgpack",
            vec![0xc1, 0xc1, b'n', b'o', b't', b' ', b'm', b's', b'g'],
        ),
        ("msgpack, not an envelope", vec![0x93, 0x01, 0x02, 0x03]),
        // A map without `hdr`.
        (
            "envelope without a header",
            vec![0x81, 0xa4, b'b', b'o', b'd', b'y', 0xc4, 0x01, 0x00],
        ),
    ];
    for (what, frame) in cases {
        let received = send_frame_and_collect(&hub, frame);
        let errors = control_errors(&received);
        let error = errors
            .first()
            .unwrap_or_else(|| panic!("{what}: the hub sent no control error; it sent {received:?}"));
        eprintln!("{what}: the hub said {:?}, then {:?}", error.err, received.last());
        assert!(
            error.close,
            "{what}: the error must say the connection closes: {error:?}"
        );
        assert!(
            !error.err.trim().is_empty(),
            "{what}: the error must name the problem"
        );
        assert!(
            connection_ended(&received),
            "{what}: the hub must close the connection; it sent {received:?}"
        );
        assert_agent_still_works(&cli, &agent);
    }

    // Text frames are not part of the protocol either.
    let received = send_message_and_collect(&hub, Message::Text("hello".into()));
    eprintln!("text frame: the hub sent {received:?}");
    assert!(
        connection_ended(&received),
        "text frame: the hub must close the connection: {received:?}"
    );
    let mut explanations: Vec<String> = control_errors(&received).into_iter().map(|e| e.err).collect();
    if let Some(Received::Close(Some((_, reason)))) = received.last() {
        explanations.push(reason.clone());
    }
    assert!(
        explanations.iter().any(|e| e.to_lowercase().contains("text")),
        "text frame: the hub should say text frames are not allowed: {received:?}"
    );
    assert_agent_still_works(&cli, &agent);
}

#[test]
fn oversized_frames_close_the_connection() {
    let (hub, cli, agent) = hub_with_agent(HubOptions::default().config("max_device_frame_bytes = 65536"));

    // A well-formed message whose only fault is its size.
    let frame = tether_proto::shell::Shell::Data(vec![b'x'; 200 * 1024])
        .to_envelope("00000000-0000-0000-0000-000000000000")
        .encode();
    let received = send_frame_and_collect(&hub, frame);
    assert!(
        connection_ended(&received),
        "the hub must close the connection after an oversized frame; it sent {received:?}"
    );
    eprintln!("oversized frame: the hub sent {received:?}");
    let mut explanations: Vec<String> = control_errors(&received).into_iter().map(|e| e.err).collect();
    if let Some(Received::Close(Some((_, reason)))) = received.last() {
        explanations.push(reason.clone());
    }
    assert!(
        explanations.iter().any(|text| {
            let text = text.to_lowercase();
            ["too large", "too big", "size", "limit", "exceed"]
                .iter()
                .any(|w| text.contains(w))
        }),
        "the hub should say the frame was too large (close reason or error message); it sent {received:?}"
    );
    assert_agent_still_works(&cli, &agent);

    // A frame under the limit is fine: the device stays connected.
    let fake = FakeDevice::new(&hub);
    let token = fake.token(Some(KEY));
    let received = block_on(async {
        let mut socket = fake.connect(&token).await.expect("connect");
        let ping = Control::Ping.to_envelope("");
        send_binary(&mut socket, ping.encode()).await.expect("send");
        receive_until_end(&mut socket, Duration::from_secs(2)).await
    });
    assert!(
        !connection_ended(&received),
        "a small well-formed frame must not close the connection: {received:?}"
    );
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn expect_401(result: Result<tether_net::WebSocket, NetError>, what: &str) {
    match result {
        Err(NetError::Http { status: 401, .. }) => {}
        Err(other) => panic!("{what}: expected HTTP 401, got {other}"),
        Ok(_) => panic!("{what}: the hub accepted the WebSocket"),
    }
}

/// Replaces the last character of the JWT's signature with another base64url character.
fn tamper_signature(token: &str) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    let last = chars.len() - 2;
    chars[last] = if chars[last] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

/// Replaces the claims of a JWT (keeping its header and signature).
fn forge_claims(token: &str, claims: &serde_json::Value) -> String {
    use base64::Engine as _;
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT has three parts: {token}");
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{}.{}.{}", parts[0], payload, parts[2])
}

fn login_token(hub: &Hub, user: &str, password: &str) -> (u16, String) {
    let body = serde_json::to_vec(&api::LoginRequest {
        username: user.into(),
        password: password.into(),
        code: None,
    })
    .unwrap();
    hub.request(
        "POST",
        api::LOGIN_PATH,
        &[("Content-Type", "application/json")],
        &body,
    )
}

#[test]
fn wrong_and_expired_device_tokens_get_401_on_the_device_websocket() {
    let hub = Hub::start(
        HubOptions::default()
            .provisioning_key(KEY)
            .env("TETHER_HUB_DEVICE_TOKEN_LIFETIME_SECS", "1"),
    );
    hub.add_user("admin", true, "admin-password");
    let fake = FakeDevice::new(&hub);
    let token = fake.token(Some(KEY));
    let claims: DeviceClaims = tether_proto::auth::unverified_claims(&token).expect("a JWT");
    assert_eq!(
        claims.exp - claims.iat,
        1,
        "TETHER_HUB_DEVICE_TOKEN_LIFETIME_SECS=1 must give one-second tokens: {claims:?}"
    );

    block_on(async {
        expect_401(fake.connect("not-a-token").await, "garbage token");
        expect_401(
            fake.connect(&tamper_signature(&token)).await,
            "token with a bad signature",
        );
        let mut forged = serde_json::to_value(&claims).unwrap();
        forged["exp"] = serde_json::json!(now() + 3600);
        expect_401(
            fake.connect(&forge_claims(&token, &forged)).await,
            "token with forged claims",
        );
    });

    // A user's token is not a device token.
    let (status, body) = login_token(&hub, "admin", "admin-password");
    assert_eq!(status, 200, "{body}");
    let login: api::LoginResponse = serde_json::from_str(&body).expect("login response");
    block_on(async {
        expect_401(
            fake.connect(&login.token).await,
            "a user's token on the device WebSocket",
        );
    });

    // Wait until the token has expired (with a margin for clocks rounding to seconds).
    while now() <= claims.exp + 1 {
        std::thread::sleep(Duration::from_millis(200));
    }
    block_on(async {
        expect_401(fake.connect(&token).await, "expired token");
    });

    // A fresh token still works: the 401s were about the tokens, not the device.
    let fresh = fake.token(Some(KEY));
    block_on(async {
        if let Err(e) = fake.connect(&fresh).await {
            // One second is short on a loaded machine: allow one retry with another token.
            let again = fake.token(Some(KEY));
            fake.connect(&again)
                .await
                .unwrap_or_else(|e2| panic!("a fresh token must be accepted: {e}; then {e2}"));
        }
    });
}

#[test]
fn wrong_user_tokens_get_401_on_the_api() {
    let hub = Hub::start(HubOptions::default().provisioning_key(KEY));
    hub.add_user("admin", true, "admin-password");

    let list = |token: Option<&str>| {
        let header = token.map(|t| format!("Bearer {t}"));
        let mut headers = Vec::new();
        if let Some(h) = &header {
            headers.push(("Authorization", h.as_str()));
        }
        hub.request("GET", api::DEVICES_PATH, &headers, b"")
    };
    let expect_401 = |what: &str, (status, body): (u16, String)| {
        assert_eq!(status, 401, "{what}: {body}");
        let error: api::ApiError =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: not an API error ({e}): {body}"));
        assert!(!error.error.is_empty(), "{what}: the error must say why");
    };

    expect_401("no token", list(None));
    expect_401("garbage token", list(Some("garbage")));

    let (status, body) = login_token(&hub, "admin", "admin-password");
    assert_eq!(status, 200, "{body}");
    let login: api::LoginResponse = serde_json::from_str(&body).expect("login response");
    assert_eq!(login.user.name, "admin");
    assert!(login.user.admin);
    assert!(login.expires_at > now(), "{body}");
    let (status, body) = list(Some(&login.token));
    assert_eq!(status, 200, "{body}");
    let devices: api::DeviceList = serde_json::from_str(&body).expect("device list");
    assert!(devices.devices.is_empty());

    expect_401("tampered token", list(Some(&tamper_signature(&login.token))));
    let fake = FakeDevice::new(&hub);
    let device_token = fake.token(Some(KEY));
    expect_401("a device token on the management API", list(Some(&device_token)));
    expect_401("bad password", login_token(&hub, "admin", "wrong-password"));
    expect_401("unknown user", login_token(&hub, "nobody-here", "admin-password"));

    // The CLI reports a refused token clearly and exits 1.
    let mut cli = hub.cli();
    cli.set_env("TETHER_TOKEN", "garbage");
    let output = cli.run(&["devices", "list"]);
    assert_eq!(output.code, Some(1), "{output}");
    assert!(!output.stderr.trim().is_empty(), "{output}");
}

#[test]
fn repeated_bad_logins_are_rate_limited() {
    let hub = Hub::start_default();
    hub.add_user("admin", true, "admin-password");
    let mut statuses = Vec::new();
    for _ in 0..50 {
        let (status, _) = login_token(&hub, "admin", "wrong-password");
        statuses.push(status);
        if status == 429 {
            break;
        }
    }
    assert_eq!(
        statuses.last(),
        Some(&429),
        "50 bad logins in a row should be rate limited (429); got {statuses:?}"
    );
    assert!(statuses.iter().all(|s| *s == 401 || *s == 429), "{statuses:?}");
}

#[test]
fn silent_devices_are_dropped_by_the_keepalive() {
    let (hub, cli, agent) =
        hub_with_agent(HubOptions::default().env("TETHER_HUB_KEEPALIVE_INTERVAL_SECS", "1"));
    let fake = FakeDevice::new(&hub);
    let token = fake.token(Some(KEY));
    // Connect, then never read again: the hub's pings go unanswered.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let socket = runtime.block_on(fake.connect(&token)).expect("connect");
    cli.wait_device(&fake.name, "online", |d| d.online);
    cli.wait_device(&fake.name, "dropped as silent", |d| !d.online);
    drop(socket);

    // The real agent answers pings (or pings itself) and stays.
    let agent_device = cli.wait_online(&agent.name);
    assert!(agent_device.online);
    assert_agent_still_works(&cli, &agent);
}

#[test]
fn logout_revokes_the_token_on_the_hub() {
    let hub = Hub::start_default();
    hub.add_user("admin", true, "admin-password");
    let (status, body) = login_token(&hub, "admin", "admin-password");
    assert_eq!(status, 200, "{body}");
    let login: api::LoginResponse = serde_json::from_str(&body).expect("login response");
    let bearer = format!("Bearer {}", login.token);
    let (status, body) = hub.request("GET", api::DEVICES_PATH, &[("Authorization", &bearer)], b"");
    assert_eq!(status, 200, "{body}");

    let (status, body) = hub.request("POST", api::LOGOUT_PATH, &[("Authorization", &bearer)], b"");
    assert!((200..300).contains(&status), "logout: {status} {body}");
    let (status, body) = hub.request("GET", api::DEVICES_PATH, &[("Authorization", &bearer)], b"");
    assert_eq!(status, 401, "a token must not work after logout: {body}");

    // The CLI's logout does the same for its stored token.
    let mut cli = hub.cli();
    cli.login("admin", "admin-password");
    cli.run(&["devices", "list"]).ok();
    let second = login_token(&hub, "admin", "admin-password");
    let second: api::LoginResponse = serde_json::from_str(&second.1).expect("login response");
    cli.run(&["logout"]).ok();
    let after = cli.run(&["devices", "list"]);
    assert!(!after.success(), "{after}");
    // Logging out one session does not end the user's others.
    cli.set_env("TETHER_TOKEN", &second.token);
    cli.run(&["devices", "list"]).ok();
}

#[test]
fn user_sessions_expire() {
    let hub = Hub::start(HubOptions::default().env("TETHER_HUB_SESSION_LIFETIME_SECS", "1"));
    hub.add_user("admin", true, "admin-password");
    let (status, body) = login_token(&hub, "admin", "admin-password");
    assert_eq!(status, 200, "{body}");
    let login: api::LoginResponse = serde_json::from_str(&body).expect("login response");
    assert!(
        login.expires_at <= now() + 2,
        "a one-second session expires at once: {body}"
    );
    while now() <= login.expires_at + 1 {
        std::thread::sleep(Duration::from_millis(200));
    }
    let bearer = format!("Bearer {}", login.token);
    let (status, body) = hub.request("GET", api::DEVICES_PATH, &[("Authorization", &bearer)], b"");
    assert_eq!(status, 401, "an expired session must be refused: {body}");
}
