//! The compact device leg (protocol version 3, issue #16): an agent of this release and a hub
//! that offers version 3 speak it, and a keystroke and its echo then cost a fraction of what they
//! cost in version 2, counted as TCP payload through a proxy between the agent and the hub. A
//! hub with `compact_device_leg = false` offers versions 1 and 2 only, and the same agent serves
//! it in version 2. (Every other end-to-end test runs on the default, version 3; the stock
//! `mender-connect` tests keep version 1.)

use std::time::Duration;

use tether_e2e::{Agent, FaultProxy, Hub, HubOptions, PtySession, wait_for};

const LIMIT: Duration = Duration::from_secs(30);
/// Keystrokes typed one at a time, each waited for: enough that keep-alives do not matter.
const KEYSTROKES: usize = 100;

/// Device-leg bytes (both directions) per keystroke and echo, typed at `cat` in a terminal.
fn bytes_per_keystroke(hub_config: &str) -> (f64, String) {
    let hub = Hub::start(HubOptions::default().config(hub_config));
    let cli = hub.user_cli("alice", true);
    let device_leg = FaultProxy::for_hub(&hub);
    let agent = Agent::start_via(&hub, &device_leg.url(), "");
    cli.accept(&agent.name);
    cli.wait_online(&agent.name);
    let terminal = PtySession::terminal(&cli, &agent.name);
    terminal.expect("Connected to", LIMIT);
    terminal.send("cat\r");
    // Settled: the prompt and the `cat` line are through before counting starts.
    terminal.send("ready\r");
    terminal.expect("ready\r\nready", LIMIT);
    std::thread::sleep(Duration::from_millis(300));
    let echoes = |terminal: &PtySession| terminal.output().matches('x').count();
    let before = device_leg.bytes_each_way();
    let seen = echoes(&terminal);
    for typed in 1..=KEYSTROKES {
        terminal.send("x");
        wait_for("the echo of a keystroke", LIMIT, || {
            (echoes(&terminal) >= seen + typed).then_some(())
        });
    }
    let after = device_leg.bytes_each_way();
    let (up, down) = (after.0 - before.0, after.1 - before.1);
    println!(
        "{hub_config:?}: per keystroke {:.1} bytes from the device, {:.1} to it",
        up as f64 / KEYSTROKES as f64,
        down as f64 / KEYSTROKES as f64
    );
    let per_keystroke = (up + down) as f64 / KEYSTROKES as f64;
    terminal.send("\r\x04");
    terminal.send("exit\r");
    (per_keystroke, hub.log())
}

#[test]
fn a_keystroke_costs_far_fewer_device_leg_bytes_in_version_3_than_in_version_2() {
    let (compact, compact_log) = bytes_per_keystroke("");
    let (version_2, version_2_log) = bytes_per_keystroke("compact_device_leg = false");
    println!(
        "device-leg bytes per keystroke and echo: {compact:.1} in version 3, {version_2:.1} in version 2"
    );
    assert!(
        compact * 2.0 < version_2,
        "version 3 should cost less than half of version 2 per keystroke: {compact:.1} against \
         {version_2:.1}\nhub log (version 3):\n{compact_log}\nhub log (version 2):\n{version_2_log}"
    );
}
