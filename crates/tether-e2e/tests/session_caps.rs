//! Caps on concurrent sessions at the hub: per user (`max_sessions_per_user`) and per device
//! (`max_sessions_per_device`), refused with a message naming the limit, audited, and freed
//! when a session ends.

use std::time::Duration;

use serde_json::Value;
use tether_e2e::{Agent, Cli, Hub, HubOptions, Proc, WAIT};

/// `tether exec DEVICE -- sleep 120` in the background: one session held open.
fn hold_session(cli: &Cli, device: &str, name: &str, log_dir: &std::path::Path) -> Proc {
    Proc::spawn(
        name,
        cli.command(&["exec", device, "--", "sleep", "120"]),
        log_dir,
    )
}

/// Waits until the hub has opened `count` sessions for `who` (its log line per session).
fn wait_sessions(hub: &Hub, who: &str, count: usize) {
    let needle = format!("{who} on device");
    let deadline = std::time::Instant::now() + WAIT;
    while hub.log().matches(&needle).count() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting for {count} sessions of {who}:\n{}",
            hub.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn events(cli: &Cli, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["audit", "list", "--json", "--all"];
    all.extend_from_slice(args);
    let output = cli.run(&all);
    serde_json::from_str(output.ok()).unwrap_or_else(|e| panic!("not a JSON array: {e}\n{output}"))
}

#[test]
fn sessions_beyond_the_caps_are_refused_with_the_limit_named() {
    let hub =
        Hub::start(HubOptions::default().config("max_sessions_per_user = 2\nmax_sessions_per_device = 3"));
    let alice = hub.user_cli("alice", true);
    let bob = hub.user_cli("bob", false);
    let agent = Agent::start(&hub, "");
    alice.accept(&agent.name);
    let logs = tempfile::tempdir().expect("temp dir");

    let mut held = vec![
        hold_session(&alice, &agent.name, "alice-1", logs.path()),
        hold_session(&alice, &agent.name, "alice-2", logs.path()),
    ];
    wait_sessions(&hub, "user alice", 2);
    let output = alice.exec(&agent.name, &["echo", "third"]);
    assert!(!output.success(), "{output}");
    assert!(
        output.stderr.contains("max_sessions_per_user = 2"),
        "the refusal does not name the limit: {output}"
    );
    // A transfer through the HTTP file API is a session too.
    let device_id = alice.device_id_by_name(&agent.name);
    let download = std::process::Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "--cacert"])
        .arg(&hub.cert_path)
        .arg("-H")
        .arg(format!("Authorization: Bearer {}", alice.token()))
        .arg(format!(
            "{}/api/management/v1/deviceconnect/devices/{device_id}/download?path=/etc/hostname",
            hub.url
        ))
        .output()
        .expect("curl");
    let answer = String::from_utf8_lossy(&download.stdout);
    assert!(answer.ends_with("\n429"), "{answer}");
    assert!(answer.contains("max_sessions_per_user = 2"), "{answer}");

    // Bob has sessions of his own, until the device's cap.
    held.push(hold_session(&bob, &agent.name, "bob-1", logs.path()));
    wait_sessions(&hub, "user bob", 1);
    let output = bob.exec(&agent.name, &["echo", "fourth on the device"]);
    assert!(!output.success(), "{output}");
    assert!(output.stderr.contains("max_sessions_per_device = 3"), "{output}");

    // Both refusals are audited.
    let refused = events(&alice, &["--action", "authorization", "--outcome", "refused"]);
    let limits: Vec<&str> = refused
        .iter()
        .filter_map(|e| e["details"]["limit"].as_str())
        .collect();
    assert_eq!(
        limits,
        [
            "max_sessions_per_device",
            "max_sessions_per_user",
            "max_sessions_per_user"
        ],
        "{refused:#?}"
    );

    // A session that ends frees its place.
    held.remove(0).kill();
    let output = tether_e2e::wait_for("a freed session slot", WAIT, || {
        let output = alice.exec(&agent.name, &["echo", "again"]);
        output.success().then_some(output)
    });
    assert_eq!(output.stdout, "again\n");
    assert!(!hub.log().contains("panicked"), "{}", hub.log());
}
