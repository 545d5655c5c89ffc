//! Device-side consent, end to end: with `[consent] mode = "command"` a session opens only after
//! `tether-agent approve SESSION` on the device (the operator is told to wait); `deny` and
//! silence refuse it; with `mode = "hook"` a program on the device decides.

use std::process::Command;
use std::time::Duration;

use tether_e2e::{Agent, Cli, Hub, WAIT, binary, wait_for};

const SHELL: &str = "[terminal]\nshell = \"/bin/sh\"\n";

/// `tether-agent ARGS --config` of `agent` (on the device), returning stdout.
fn on_device(agent: &Agent, args: &[&str]) -> String {
    let output = Command::new(binary("tether-agent"))
        .args(args)
        .arg("--config")
        .arg(agent.dir().join("agent.toml"))
        .output()
        .expect("run tether-agent");
    assert!(
        output.status.success(),
        "tether-agent {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The id of the one session waiting for consent on `agent`.
fn pending_session(agent: &Agent) -> String {
    wait_for("a session waiting for consent", WAIT, || {
        let listing = on_device(agent, &["pending"]);
        let line = listing.lines().next()?.to_owned();
        line.strip_prefix("session ")?
            .split(',')
            .next()
            .map(str::to_owned)
    })
}

/// Starts `tether exec DEVICE -- echo TEXT` as `cli` in the background.
fn exec_in_background(
    cli: &Cli,
    hub: &Hub,
    device: &str,
    text: &str,
) -> std::thread::JoinHandle<tether_e2e::CliOutput> {
    let mut runner = hub.cli();
    runner.set_env("TETHER_TOKEN", &cli.token());
    let (device, text) = (device.to_owned(), text.to_owned());
    std::thread::spawn(move || {
        runner.run_for(&["exec", &device, "--", "echo", &text], Duration::from_secs(90))
    })
}

#[test]
fn a_session_opens_only_after_local_approval() {
    let hub = Hub::start_default();
    let alice = hub.user_cli("alice", true);
    let agent = Agent::start(
        &hub,
        &format!("{SHELL}\n[consent]\nmode = \"command\"\ntimeout_secs = 60\n"),
    );
    alice.accept(&agent.name);

    // Approved on the device: the command runs, and the operator was told to wait.
    let waiting = exec_in_background(&alice, &hub, &agent.name, "approved-here");
    let sid = pending_session(&agent);
    assert!(
        on_device(&agent, &["pending"]).contains("user alice"),
        "the device sees who asks"
    );
    on_device(&agent, &["approve", &sid]);
    let output = waiting.join().unwrap();
    assert!(output.ok().contains("approved-here"), "{output}");
    assert!(
        output.stderr.contains("waiting for approval on the device"),
        "{output}"
    );

    // Denied on the device: nothing runs, and the operator is told why.
    let waiting = exec_in_background(&alice, &hub, &agent.name, "never-printed");
    let sid = pending_session(&agent);
    on_device(&agent, &["deny", &sid]);
    let output = waiting.join().unwrap();
    assert!(
        !output.success() && !output.stdout.contains("never-printed"),
        "{output}"
    );
    assert!(output.stderr.contains("denied on the device"), "{output}");
}

#[test]
fn without_confirmation_the_session_does_not_open() {
    let hub = Hub::start_default();
    let alice = hub.user_cli("alice", true);
    let agent = Agent::start(
        &hub,
        &format!("{SHELL}\n[consent]\nmode = \"command\"\ntimeout_secs = 3\n"),
    );
    alice.accept(&agent.name);
    let output = alice.run_for(
        &["exec", &agent.name, "--", "echo", "never-printed"],
        Duration::from_secs(60),
    );
    assert!(
        !output.success() && !output.stdout.contains("never-printed"),
        "{output}"
    );
    assert!(
        output
            .stderr
            .contains("nobody approved the session on the device within 3 s"),
        "{output}"
    );
}

#[test]
fn a_hook_program_decides() {
    let hub = Hub::start_default();
    let alice = hub.user_cli("alice", true);
    let bob = hub.user_cli("bob", true);
    let hook_dir = tempfile::tempdir().unwrap();
    let hook = hook_dir.path().join("consent-hook");
    std::fs::write(&hook, "#!/bin/sh\n[ \"$TETHER_USER\" = alice ]\n").unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = format!(
        "{SHELL}\n[consent]\nmode = \"hook\"\nhook = {:?}\n",
        hook.display().to_string()
    );
    let agent = Agent::start(&hub, &config);
    alice.accept(&agent.name);
    let allowed = alice.exec_when_ready(&agent.name, &["echo", "hook-said-yes"], WAIT);
    assert!(allowed.ok().contains("hook-said-yes"), "{allowed}");
    let refused = bob.exec(&agent.name, &["echo", "never-printed"]);
    assert!(
        !refused.success() && refused.stderr.contains("the consent hook refused"),
        "{refused}"
    );
}
