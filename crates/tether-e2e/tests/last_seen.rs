//! A device's last-seen time, end to end: a device that connected, stayed connected and left is
//! listed as last seen no earlier than when it left, not when it arrived (the web UI shows an
//! offline device's last-seen time, and "online now" for an online one).

use std::time::{SystemTime, UNIX_EPOCH};

use tether_e2e::{Agent, Hub, WAIT, wait_for};

/// Unix seconds, the unit of the API's `last_seen_at`.
fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs() as i64
}

#[test]
fn a_device_that_leaves_was_last_seen_when_it_left() {
    let hub = Hub::start_default();
    let alice = hub.user_cli("alice", true);
    let mut agent = Agent::start(&hub, "[terminal]\nshell = \"/bin/sh\"\n");
    let connected = alice.accept(&agent.name);
    let at_connect = connected.last_seen_at.expect("a last-seen time at connect");
    // The device stays connected and is used, into a later second than its connection (the API
    // counts seconds), so that a time written at connect alone would be earlier than `before`.
    let used = alice.exec(&agent.name, &["echo", "still-here"]);
    assert!(used.success() && used.stdout.contains("still-here"), "{used}");
    let before = wait_for("a second later than the connection", WAIT, || {
        let now = now_secs();
        (now > at_connect).then_some(now)
    });
    assert!(alice.device(&agent.name).is_some_and(|d| d.online));

    agent.kill();
    let gone = alice.wait_device(&agent.name, "offline", |d| !d.online);
    let last_seen = gone.last_seen_at.expect("a last-seen time");
    assert!(
        last_seen >= before,
        "last seen at {last_seen}, before its disconnection at {before} (connected at {at_connect})"
    );
}
