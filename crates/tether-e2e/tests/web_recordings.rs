//! Audit ↔ recordings of issue 19 in real headless Chromium, driven by
//! `web/tests/recordings.e2e.mjs`: a real hub, two real agents and three recorded sessions made
//! with the real CLI (alice's command printing a needle on the first device, bob's command on the
//! second, and alice's interactive shell with over a megabyte of output, so several keyframes,
//! and a 62 s pause). The script checks the recordings list's filters (device by name and by id,
//! user, dates) and the search in the output, the player's user, device, date and duration, the
//! idle gap skipped, seeking through the keyframes (a window from the keyframe, never the whole
//! recording), the player's link to the session's audit events and the audit events' links
//! back; it saves `recordings-filtered` and `player-metadata` screenshots at 1400×900 and
//! 400 px in `target/web-screenshots/`.
//!
//! Needs `node`, `web/node_modules`, Chromium and a hub built after `npm run build`.

use serde_json::Value;
use tether_e2e::{Agent, Cli, Hub, PtySession, WAIT, browser::run_web_script, wait_for};

const SHELL: &str = "[terminal]\nshell = \"/bin/sh\"\n";

/// The id of the ended session of `user` whose command is `command` (None: a shell).
fn ended_session(cli: &Cli, user: &str, command: Option<&str>) -> String {
    wait_for(&format!("{user}'s session {command:?} to end"), WAIT, || {
        let output = cli.run(&["sessions", "list", "--json", "--user", user]);
        let sessions: Vec<Value> = serde_json::from_str(output.ok()).ok()?;
        sessions
            .into_iter()
            .find(|s| s["command"].as_str() == command && s["ended_at"].is_i64())
            .and_then(|s| s["sid"].as_str().map(str::to_owned))
    })
}

#[test]
fn recordings_are_filtered_searched_played_and_linked_to_the_audit_log() {
    let mut hub = Hub::start_default();
    let password = "pw-recordings-auditor-horse";
    hub.add_user("pageauditor", true, password);
    let first = Agent::start(&hub, SHELL);
    let second = Agent::start(&hub, SHELL);
    let alice = hub.user_cli("alice", true);
    let bob = hub.user_cli("bob", false);
    for agent in [&first, &second] {
        alice.accept(&agent.name);
        alice.wait_online(&agent.name);
    }

    // A needle the shell computes: the typed command never contains it.
    let needle_command = "echo start; echo \"needle-$((6*7))-found here\"; echo end";
    alice.exec(&first.name, &[needle_command]).ok();
    bob.exec(&second.name, &["echo other output"]).ok();

    // Over a megabyte of output (several segments, so several keyframes), then 62 s idle: the
    // output after it starts a segment of its own (a segment lasts at most 60 s), so the player
    // reads the recording in two windows, and the gap is one to skip.
    let mut shell = PtySession::terminal(&alice, &first.name);
    shell.expect("Connected to", WAIT);
    shell.send_line("echo player-start-$((1+1)); seq 1 200000; sleep 62; clear; echo player-end-$((2+2))");
    shell.expect("player-end-4", WAIT + std::time::Duration::from_secs(62));
    shell.send_line("exit");
    shell.expect_exit(WAIT);

    let needle_sid = ended_session(&alice, "alice", Some(needle_command));
    let other_sid = ended_session(&alice, "bob", Some("echo other output"));
    let player_sid = ended_session(&alice, "alice", None);
    run_web_script(
        &mut hub,
        "recordings.e2e.mjs",
        &[
            ("TETHER_USER", "pageauditor".into()),
            ("TETHER_PASSWORD", password.into()),
            ("TETHER_DEVICE", first.name.clone()),
            ("TETHER_OTHER_DEVICE", second.name.clone()),
            ("TETHER_NEEDLE_SID", needle_sid),
            ("TETHER_OTHER_SID", other_sid),
            ("TETHER_PLAYER_SID", player_sid),
        ],
    );
}
