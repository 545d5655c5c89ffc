//! Roles on device groups, end to end: every HTTP endpoint and WebSocket upgrade answers each
//! built-in role (and a user without one) as the permission table says; a device token reaches
//! no user endpoint; an operator of group A reaches nothing on a device of group B, and every
//! refusal is in the audit log; changing a user's role ends their live terminal at once.

use std::{path::Path, time::Duration};

use serde_json::Value;
use tether_e2e::{Agent, Cli, FakeDevice, Hub, PtySession, WAIT, wait_for};

/// The roles of the matrix, weakest first (so that destructive calls succeed last, as admin).
const ROLES: [&str; 4] = ["none", "auditor", "operator", "admin"];

/// A hub with an accepted agent (file transfer under a temporary root, port forwarding on) and
/// one logged-in user per role of [`ROLES`], named after it.
struct Fleet {
    hub: Hub,
    _agent: Agent,
    admin: Cli,
    root: tempfile::TempDir,
    device_id: String,
}

fn agent_config(root: &Path) -> String {
    format!(
        "[terminal]\nshell = \"/bin/sh\"\n\n[file_transfer]\nenabled = true\nroots = [{:?}]\n\n\
         [port_forward]\nenabled = true\n",
        root.display().to_string()
    )
}

impl Fleet {
    fn start() -> Fleet {
        let hub = Hub::start_default();
        let admin = hub.user_cli("admin", true);
        let root = tempfile::tempdir().expect("temporary directory");
        std::fs::write(root.path().join("hello.txt"), "hello\n").expect("write a device file");
        let agent = Agent::start(&hub, &agent_config(root.path()));
        admin.accept(&agent.name);
        let device_id = admin.device_id_by_name(&agent.name);
        Fleet {
            hub,
            _agent: agent,
            admin,
            root,
            device_id,
        }
    }
}

/// One call of the matrix.
struct Call {
    method: &'static str,
    path: String,
    body: String,
    websocket: bool,
    /// The roles that get past authorization.
    allowed: &'static [&'static str],
}

fn call(method: &'static str, path: impl Into<String>, body: &str, allowed: &'static [&'static str]) -> Call {
    Call {
        method,
        path: path.into(),
        body: body.to_owned(),
        websocket: false,
        allowed,
    }
}

fn upgrade(path: impl Into<String>, allowed: &'static [&'static str]) -> Call {
    Call {
        websocket: true,
        ..call("GET", path, "", allowed)
    }
}

const ALL: &[&str] = &["none", "auditor", "operator", "admin"];
const VIEWERS: &[&str] = &["auditor", "operator", "admin"];
const OPERATORS: &[&str] = &["operator", "admin"];
const AUDITORS: &[&str] = &["auditor", "admin"];
const ADMINS: &[&str] = &["admin"];

/// Sends `call` with `token`; returns the status (101 for an accepted upgrade) and body.
fn send(hub: &Hub, call: &Call, token: &str) -> (u16, String) {
    if call.websocket {
        let opened = tether_e2e::block_on(tether_net::connect_websocket(
            &hub.hub_url(),
            &call.path,
            token,
            hub.tls(),
            None,
            1 << 20,
            Duration::from_secs(20),
        ));
        return match opened {
            Ok(_socket) => (101, String::new()),
            Err(tether_net::NetError::Http { status, body }) => (status, body),
            Err(error) => panic!("upgrading {}: {error}", call.path),
        };
    }
    let bearer = format!("Bearer {token}");
    let mut headers = vec![("Authorization", bearer.as_str())];
    if call.body.starts_with('{') {
        headers.push(("Content-Type", "application/json"));
    }
    hub.request(call.method, &call.path, &headers, call.body.as_bytes())
}

/// Whether the hub refused the caller (authentication or authorization), rather than answering
/// or failing for another reason (404, 409, ...).
fn refused(status: u16) -> bool {
    status == 401 || status == 403
}

#[test]
fn every_endpoint_answers_each_role_as_the_permission_table_says() {
    let fleet = Fleet::start();
    let hub = &fleet.hub;
    let mut tokens = Vec::new();
    for role in ROLES {
        let token = match role {
            "admin" => fleet.admin.token(),
            "none" => hub.user_cli_with(role, &[]).token(),
            _ => hub.user_cli_with(role, &["--role", role]).token(),
        };
        tokens.push((role, token));
    }
    let device = fleet.device_id.clone();
    // A terminal session to view, and an access request (by the operator) to decide.
    let operator = hub.cli();
    operator.login("operator", "pw-operator-correct-horse");
    operator.exec(&device, &["true"]).ok();
    let sessions: Value =
        serde_json::from_str(fleet.admin.run(&["sessions", "list", "--json"]).ok()).unwrap();
    let sid = sessions[0]["sid"].as_str().expect("a session id").to_owned();
    let request: Value = serde_json::from_str(
        operator
            .run(&[
                "access",
                "request",
                "--group",
                "tag:lab",
                "--permission",
                "terminal",
                "--duration",
                "10m",
                "--reason",
                "matrix",
                "--json",
            ])
            .ok(),
    )
    .unwrap();
    let request_id = request["id"].as_str().expect("a request id").to_owned();
    let (devices, management) = ("/api/management/v1/devices", "/api/management/v1");
    let files = format!("{management}/deviceconnect/devices/{device}");
    let hello = fleet.root.path().join("hello.txt");
    let calls = vec![
        call("GET", devices, "", VIEWERS),
        call("GET", format!("{management}/roles"), "", ADMINS),
        call(
            "POST",
            format!("{management}/roles"),
            r#"{"name":"viewer","permissions":["view_devices"]}"#,
            ADMINS,
        ),
        call("DELETE", format!("{management}/roles/viewer"), "", ADMINS),
        call("GET", format!("{management}/users"), "", ADMINS),
        call(
            "POST",
            format!("{management}/users"),
            r#"{"name":"zed","password":"zed-password-1","role":"operator"}"#,
            ADMINS,
        ),
        call("GET", format!("{management}/users/zed/roles"), "", ADMINS),
        call(
            "PUT",
            format!("{management}/users/zed/roles"),
            r#"{"grants":[{"role":"auditor","scope":"*"}]}"#,
            ADMINS,
        ),
        call("POST", format!("{management}/users/zed/disable"), "", ADMINS),
        call("POST", format!("{management}/users/zed/enable"), "", ADMINS),
        call(
            "POST",
            format!("{management}/users/zed/revoke-sessions"),
            "",
            ADMINS,
        ),
        call("GET", format!("{management}/tokens"), "", ALL),
        call(
            "POST",
            format!("{management}/tokens"),
            r#"{"name":"matrix"}"#,
            ALL,
        ),
        call("DELETE", format!("{management}/tokens/no-such-token"), "", ALL),
        call("GET", format!("{management}/audit/events"), "", AUDITORS),
        call("GET", format!("{management}/audit/export"), "", AUDITORS),
        call("GET", format!("{management}/audit/verify"), "", AUDITORS),
        call("GET", format!("{management}/sessions"), "", ALL),
        call(
            "GET",
            format!("{management}/sessions/{sid}/recording"),
            "",
            AUDITORS,
        ),
        call(
            "GET",
            format!("{management}/sessions/{sid}/asciicast"),
            "",
            AUDITORS,
        ),
        upgrade(format!("{management}/sessions/{sid}/watch"), AUDITORS),
        call("GET", format!("{management}/access/policies"), "", VIEWERS),
        call(
            "PUT",
            format!("{management}/access/policies"),
            r#"{"scope":"tag:vault","require_approval":true}"#,
            ADMINS,
        ),
        call("GET", format!("{management}/access/requests"), "", ALL),
        call(
            "GET",
            format!("{management}/access/requests?all=true"),
            "",
            ADMINS,
        ),
        call(
            "POST",
            format!("{management}/access/requests"),
            r#"{"scope":"tag:lab","permissions":["terminal"],"duration_secs":600,"reason":"matrix"}"#,
            ALL,
        ),
        call(
            "GET",
            format!("{management}/access/requests/{request_id}"),
            "",
            OPERATORS,
        ),
        call(
            "POST",
            format!("{management}/access/requests/{request_id}/approve"),
            "{}",
            ADMINS,
        ),
        call(
            "POST",
            format!("{management}/access/requests/{request_id}/revoke"),
            "",
            OPERATORS,
        ),
        call(
            "GET",
            format!("{files}/download?path={}", hello.display()),
            "",
            OPERATORS,
        ),
        call(
            "PUT",
            format!(
                "{files}/upload?path={}",
                fleet.root.path().join("up.txt").display()
            ),
            "data",
            OPERATORS,
        ),
        upgrade(format!("{files}/connect"), OPERATORS),
        call(
            "PUT",
            format!("{devices}/{device}/tags"),
            r#"{"tags":["lab"]}"#,
            ADMINS,
        ),
        call("POST", format!("{devices}/{device}/accept"), "", ADMINS),
        call("POST", format!("{devices}/{device}/reject"), "", ADMINS),
        call("DELETE", format!("{devices}/{device}"), "", ADMINS),
        // Browser sessions go by cookie only: a bearer token (of any role) opens none.
        call("GET", format!("{management}/auth/web/session"), "", &[]),
        call("POST", format!("{management}/auth/password"), "", ALL),
        call("POST", format!("{management}/auth/logout"), "", ALL),
    ];
    // A device's own token reaches no user endpoint.
    let fake = FakeDevice::named(hub, "matrix-device");
    fake.authenticate(None);
    fleet.admin.run(&["devices", "accept", "matrix-device"]).ok();
    let device_token = fake.token(None);
    for call in &calls {
        let (status, body) = send(hub, call, &device_token);
        assert!(
            refused(status),
            "{} {} with a device token: HTTP {status}: {body}",
            call.method,
            call.path
        );
    }

    let mut failures = Vec::new();
    for call in &calls {
        for (role, token) in &tokens {
            let (status, body) = send(hub, call, token);
            let expected = call.allowed.contains(role);
            if refused(status) == expected {
                failures.push(format!(
                    "{} {} as {role}: HTTP {status} ({}expected to pass authorization): {}",
                    call.method,
                    call.path,
                    if expected { "" } else { "not " },
                    body.chars().take(160).collect::<String>()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "the permission table does not hold:\n{}",
        failures.join("\n")
    );
    // The browser's logout ends the caller's own session, like /auth/logout, for every role.
    let web_logout = call("POST", format!("{management}/auth/web/logout"), "", ALL);
    for role in ROLES {
        let cli = hub.cli();
        cli.login(role, &format!("pw-{role}-correct-horse"));
        let (status, body) = send(hub, &web_logout, &cli.token());
        assert!(!refused(status), "web logout as {role}: HTTP {status}: {body}");
        let (status, _) = send(
            hub,
            &call("GET", format!("{management}/tokens"), "", ALL),
            &cli.token(),
        );
        assert_eq!(status, 401, "the session ended");
    }
}

/// An operator of group A (tag:site-a): everything on A's device, nothing on B's.
#[test]
fn an_operator_of_one_group_reaches_nothing_on_another() {
    let hub = Hub::start_default();
    let admin = hub.user_cli("admin", true);
    let (root_a, root_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for root in [&root_a, &root_b] {
        std::fs::write(root.path().join("secret.txt"), "secret\n").unwrap();
    }
    let agent_a = Agent::start_named(&hub, "device-a", &agent_config(root_a.path()));
    let agent_b = Agent::start_named(&hub, "device-b", &agent_config(root_b.path()));
    for (agent, tag) in [(&agent_a, "site-a"), (&agent_b, "site-b")] {
        admin.accept(&agent.name);
        admin.run(&["devices", "set-tags", &agent.name, tag]).ok();
    }
    // A custom role, listed beside the built-in ones.
    admin
        .run(&[
            "roles",
            "create",
            "reader",
            "--permission",
            "view_devices",
            "--permission",
            "file_read",
        ])
        .ok();
    let roles: Value = serde_json::from_str(admin.run(&["roles", "list", "--json"]).ok()).unwrap();
    let names: Vec<&str> = roles
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["admin", "operator", "auditor", "reader"], "{roles:#}");
    let carol = hub.user_cli_with("carol", &["--role", "operator", "--group", "tag:site-a"]);
    let held = admin.run(&["users", "roles", "carol"]);
    assert!(
        held.ok().contains("operator") && held.ok().contains("tag:site-a"),
        "{held}"
    );

    // Carol sees and reaches device A only.
    let visible: Vec<String> = carol.devices().into_iter().map(|d| d.name).collect();
    assert_eq!(visible, vec!["device-a".to_owned()], "carol sees only her group");
    let on_a = carol.exec_when_ready("device-a", &["echo", "on-a"], WAIT);
    assert!(on_a.ok().contains("on-a"), "{on_a}");

    // On B, by id (she cannot even see it by name): terminal, file read, file write, forward.
    let b = admin.device_id_by_name("device-b");
    let secret = root_b.path().join("secret.txt");
    let local = tempfile::tempdir().unwrap();
    let upload = local.path().join("upload.txt");
    std::fs::write(&upload, "x").unwrap();
    let attempts: Vec<Vec<String>> = vec![
        vec!["exec".into(), b.clone(), "true".into()],
        vec![
            "cp".into(),
            format!("{b}:{}", secret.display()),
            local.path().display().to_string(),
        ],
        vec![
            "cp".into(),
            upload.display().to_string(),
            format!("{b}:{}", root_b.path().join("new.txt").display()),
        ],
        vec!["port-forward".into(), b.clone(), "0:127.0.0.1:22".into()],
    ];
    for attempt in &attempts {
        let args: Vec<&str> = attempt.iter().map(String::as_str).collect();
        let output = carol.run(&args);
        assert!(
            !output.success(),
            "`tether {}` on group B must fail:\n{output}",
            args.join(" ")
        );
        assert!(
            output.stderr.contains("no device matches"),
            "`tether {}` should say B is not hers to see:\n{output}",
            args.join(" ")
        );
    }
    // Straight to the hub: a session (terminal, forwards), a download and an upload on B are
    // refused and recorded.
    let files = format!("/api/management/v1/deviceconnect/devices/{b}");
    let direct = [
        upgrade(format!("{files}/connect"), &[]),
        call(
            "GET",
            format!("{files}/download?path={}", secret.display()),
            "",
            &[],
        ),
        call(
            "PUT",
            format!("{files}/upload?path={}", root_b.path().join("new.txt").display()),
            "x",
            &[],
        ),
    ];
    let token = carol.token();
    for attempt in &direct {
        let (status, body) = send(&hub, attempt, &token);
        assert_eq!(status, 403, "{} {}: {body}", attempt.method, attempt.path);
        assert!(body.contains("may not"), "the refusal says why: {body}");
    }
    assert!(
        !root_b.path().join("new.txt").exists(),
        "nothing was written on B"
    );
    let refusals = wait_for("refusals in the audit log", WAIT, || {
        let output = admin.run(&["audit", "list", "--json", "--all", "--action", "authorization"]);
        let events: Vec<Value> = serde_json::from_str(output.ok()).ok()?;
        let on_b: Vec<Value> = events
            .into_iter()
            .filter(|e| e["actor_name"] == "carol" && e["object_id"] == b.as_str())
            .collect();
        (on_b.len() >= direct.len()).then_some(on_b)
    });
    for event in &refusals {
        assert_eq!(event["outcome"], "refused", "{event:#}");
    }

    // Moving device A out of her group ends carol's open terminal on it at once.
    let terminal = PtySession::terminal(&carol, "device-a");
    terminal.send_line("echo still-$((40+2))");
    terminal.expect("still-42", WAIT);
    admin.run(&["devices", "set-tags", "device-a", "site-b"]).ok();
    terminal.expect("may no longer", WAIT);
}

/// A device's own `tags` identity attribute sets its groups only where the hub allows it.
#[test]
fn devices_report_their_tags_only_when_the_hub_allows_it() {
    for allowed in [false, true] {
        let options =
            tether_e2e::HubOptions::default().config(&format!("device_reported_tags = {allowed}\n"));
        let hub = Hub::start(options);
        let admin = hub.user_cli("admin", true);
        let name = format!("reporter-{allowed}");
        let agent = Agent::start_named(
            &hub,
            &name,
            &format!(
                "[terminal]\nshell = \"/bin/sh\"\n\n[identity]\nhostname = {name:?}\ntags = \"site-c, bad tag\"\n"
            ),
        );
        let device = admin.accept(&agent.name);
        let expected: Vec<String> = if allowed {
            vec!["site-c".into()]
        } else {
            Vec::new()
        };
        assert_eq!(device.tags, expected, "device_reported_tags = {allowed}");
    }
}
