//! Approval on demand, end to end: on a group that requires approval nobody has standing
//! access; a request is approved (not by its requester) and used, and its expiry ends the open
//! terminal; a denied request is told to the waiting CLI; every step is in the audit log. An
//! approval also shows its devices to a requester who has no standing grant on them, until it
//! is revoked.

use std::time::Duration;

use serde_json::Value;
use tether_e2e::{Agent, Cli, Hub, PtySession, WAIT, wait_for};

const SHELL: &str = "[terminal]\nshell = \"/bin/sh\"\n";

/// `tether access ... --json`, parsed.
fn json(cli: &Cli, args: &[&str]) -> Value {
    let output = cli.run(args);
    serde_json::from_str(output.ok()).unwrap_or_else(|e| panic!("not JSON ({e}):\n{output}"))
}

fn request(cli: &Cli, device: &str, duration: &str) -> String {
    let answer = json(
        cli,
        &[
            "access",
            "request",
            "--device",
            device,
            "--permission",
            "terminal",
            "--duration",
            duration,
            "--reason",
            "fix the pump",
            "--json",
        ],
    );
    assert_eq!(answer["status"], "pending", "{answer:#}");
    answer["id"].as_str().expect("an id").to_owned()
}

fn audit_actions(cli: &Cli) -> Vec<String> {
    let events = json(cli, &["audit", "list", "--json", "--all"]);
    events
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["action"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn approval_lifecycle_request_approve_use_expire_and_deny() {
    let hub = Hub::start_default();
    let alice = hub.user_cli("alice", true);
    let bob = hub.user_cli("bob", false);
    let agent = Agent::start(&hub, SHELL);
    alice.accept(&agent.name);
    alice.run(&["devices", "set-tags", &agent.name, "prod"]).ok();
    alice.run(&["access", "require", "tag:prod"]).ok();

    // Standing access (operator on every device) no longer reaches the device.
    let refused = bob.exec(&agent.name, &["true"]);
    assert!(
        !refused.success() && refused.stderr.contains("may not"),
        "{refused}"
    );

    // Nobody approves their own request, administrators included.
    let own = request(&alice, &agent.name, "1h");
    let output = alice.run(&["access", "approve", &own]);
    assert!(
        !output.success() && output.stderr.contains("your own"),
        "{output}"
    );
    // An operator without approve_access cannot approve anyone's.
    let id = request(&bob, &agent.name, "20s");
    let output = bob.run(&["access", "approve", &id]);
    assert!(
        !output.success() && output.stderr.contains("may not approve"),
        "{output}"
    );

    // Approved: the terminal opens, and the expiry ends it while it is open.
    alice.run(&["access", "approve", &id, "--note", "go ahead"]).ok();
    let terminal = PtySession::terminal(&bob, &agent.name);
    terminal.send_line("echo approved-$((40+2))");
    terminal.expect("approved-42", WAIT);
    terminal.expect("may no longer", Duration::from_secs(60));
    let after = bob.exec(&agent.name, &["true"]);
    assert!(!after.success(), "expired access opens nothing: {after}");
    let listed = json(&bob, &["access", "list", "--json"]);
    let mine = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .unwrap();
    assert_eq!(mine["status"], "expired", "{mine:#}");

    // Denied, while the requester waits for the decision.
    let waiting = {
        let mut waiter = hub.cli();
        waiter.set_env("TETHER_TOKEN", &bob.token());
        let device = agent.name.clone();
        std::thread::spawn(move || {
            waiter.run_for(
                &[
                    "access",
                    "request",
                    "--device",
                    &device,
                    "--permission",
                    "terminal",
                    "--duration",
                    "5m",
                    "--reason",
                    "again",
                    "--wait",
                ],
                Duration::from_secs(90),
            )
        })
    };
    let pending = wait_for("bob's second request", WAIT, || {
        let all = json(&alice, &["access", "list", "--all", "--json"]);
        all.as_array()?
            .iter()
            .find(|r| r["status"] == "pending" && r["user_name"] == "bob")
            .and_then(|r| r["id"].as_str().map(str::to_owned))
    });
    alice.run(&["access", "deny", &pending, "--note", "not now"]).ok();
    let told = waiting.join().expect("the waiting CLI");
    assert_eq!(told.code, Some(1), "a denied wait exits 1: {told}");
    assert!(told.stdout.contains("denied by alice: not now"), "{told}");

    let actions = audit_actions(&alice);
    for action in [
        "policy.approval",
        "access.request",
        "access.approve",
        "access.expire",
        "access.deny",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "no {action} in the audit log: {actions:?}"
        );
    }
}

#[test]
fn an_approval_shows_its_devices_to_the_requester_until_revoked() {
    let hub = Hub::start_default();
    let alice = hub.user_cli("alice", true);
    // Carol operates another group: nothing standing reaches or shows the prod device.
    let carol = hub.user_cli_with("carol", &["--role", "operator", "--group", "tag:site-a"]);
    let agent = Agent::start(&hub, SHELL);
    alice.accept(&agent.name);
    alice.run(&["devices", "set-tags", &agent.name, "prod"]).ok();
    alice.run(&["access", "require", "tag:prod"]).ok();
    assert!(carol.device(&agent.name).is_none(), "deny by default");

    let answer = json(
        &carol,
        &[
            "access",
            "request",
            "--group",
            "tag:prod",
            "--permission",
            "terminal",
            "--duration",
            "1h",
            "--reason",
            "fix the pump",
            "--json",
        ],
    );
    let id = answer["id"].as_str().expect("an id").to_owned();
    assert!(
        carol.device(&agent.name).is_none(),
        "a pending request shows nothing"
    );

    alice.run(&["access", "approve", &id]).ok();
    let listed = carol
        .device(&agent.name)
        .expect("the approved device is listed for its requester");
    assert!(listed.online, "{listed:#?}");
    // The web UI's device page looks its device up by id.
    let token = carol.token();
    let (status, body) = hub.request(
        "GET",
        &format!(
            "{}?id_prefix={}",
            tether_proto::api::paths::DEVICES_PATH,
            listed.id
        ),
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&listed.id), "the device page finds it: {body}");
    let reached = carol.exec(&agent.name, &["echo", "reached"]);
    assert!(
        reached.success() && reached.stdout.contains("reached"),
        "{reached}"
    );

    alice.run(&["access", "revoke", &id]).ok();
    assert!(
        carol.device(&agent.name).is_none(),
        "a revoked approval shows nothing"
    );
    assert!(!carol.exec(&agent.name, &["true"]).success());
}
