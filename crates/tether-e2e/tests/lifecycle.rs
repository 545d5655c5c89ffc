//! Devices and hubs coming and going under an operator's feet: rejecting or removing a device
//! ends its open terminal, a hub crash is survived by the agent and by the terminal, an agent
//! crash ends the terminal with a clear message once the agent is back without the shell.

use std::time::{Duration, Instant};

use tether_e2e::{Agent, Hub, PtySession};

const LONG: Duration = Duration::from_secs(20);

/// The bound for "within a second": generous, because the machine may be loaded.
const WITHIN_A_SECOND: Duration = Duration::from_secs(5);

fn marker() -> (String, String) {
    let n: u32 = rand::random::<u32>() % 1_000_000 + 1000;
    (format!("echo mark-$(({n}+1))"), format!("mark-{}", n + 1))
}

fn open_working_terminal(cli: &tether_e2e::Cli, device: &str) -> PtySession {
    let terminal = PtySession::terminal(cli, device);
    let (command, expected) = marker();
    terminal.send_line(&command);
    terminal.expect(&expected, LONG);
    terminal
}

/// The text the terminal showed after the last expected marker, for checking exit messages.
fn tail(terminal: &PtySession) -> String {
    terminal.pending_output()
}

#[test]
fn rejecting_a_connected_device_ends_its_terminal_within_a_second() {
    let hub = Hub::start_default();
    let cli = hub.user_cli("alice", true);
    let agent = Agent::start(&hub, "[terminal]\nshell = \"/bin/sh\"\n");
    cli.accept(&agent.name);
    let mut terminal = open_working_terminal(&cli, &agent.name);

    cli.run(&["devices", "reject", &agent.name]).ok();
    let rejected_at = Instant::now();
    let status = terminal.wait_exit(LONG);
    let took = rejected_at.elapsed();
    let status = status.unwrap_or_else(|| {
        panic!(
            "the terminal is still open {LONG:?} after the device was rejected:\n{}",
            terminal.output()
        )
    });
    assert!(
        took <= WITHIN_A_SECOND,
        "the terminal should end within a second of the rejection (bound {WITHIN_A_SECOND:?}), took {took:?}"
    );
    terminal.expect_exit(LONG);
    assert!(!status.success(), "an ended terminal must exit non-zero");
    let message = tail(&terminal);
    eprintln!("after the rejection ({took:?}), {status}; the terminal showed: {message:?}");
    assert!(
        message.contains("tether:"),
        "the CLI should say why the terminal ended:\n{message}"
    );

    let device = cli.wait_device(&agent.name, "rejected", |d| d.status == "rejected");
    assert_eq!(device.status, "rejected");
    let refused = cli.exec(&agent.name, &["true"]);
    assert!(
        !refused.success(),
        "a rejected device must not run commands:\n{refused}"
    );
}

#[test]
fn removing_a_connected_device_ends_its_terminal() {
    let hub = Hub::start_default();
    let cli = hub.user_cli("alice", true);
    let agent = Agent::start(&hub, "[terminal]\nshell = \"/bin/sh\"\n");
    let id = cli.accept(&agent.name).id;
    let mut terminal = open_working_terminal(&cli, &agent.name);

    cli.run(&["devices", "remove", &agent.name]).ok();
    let status = terminal.expect_exit(LONG);
    assert!(!status.success(), "an ended terminal must exit non-zero");
    assert!(tail(&terminal).contains("tether:"), "{}", terminal.output());
    assert!(
        !cli.devices().iter().any(|d| d.id == id),
        "a removed device must not be listed as itself"
    );
}

#[test]
fn agent_reconnects_after_the_hub_is_killed_and_restarted() {
    let mut hub = Hub::start_default();
    let cli = hub.user_cli("alice", true);
    let agent = Agent::start(&hub, "[terminal]\nshell = \"/bin/sh\"\n");
    cli.accept(&agent.name);
    assert_eq!(cli.exec(&agent.name, &["echo", "before"]).ok(), "before\n");

    hub.kill();
    hub.restart();

    // The agent finds the hub again by itself (it retries with at most 2 s between attempts);
    // the operator's login survives the restart (same data directory).
    let after = cli.exec_when_ready(&agent.name, &["echo", "after"], Duration::from_secs(60));
    assert_eq!(after.ok(), "after\n", "agent log:\n{}", agent.log());
    let device = cli.wait_online(&agent.name);
    assert_eq!(device.status, "accepted");
}

#[test]
fn killing_the_agent_ends_the_terminal_with_a_message() {
    let hub = Hub::start_default();
    let cli = hub.user_cli("alice", true);
    let mut agent = Agent::start(&hub, "[terminal]\nshell = \"/bin/sh\"\n");
    cli.accept(&agent.name);
    let mut terminal = open_working_terminal(&cli, &agent.name);

    // The device leg dropping is not the end: the terminal waits for the device...
    agent.kill();
    terminal.expect("reconnecting", Duration::from_secs(30));
    cli.wait_device(&agent.name, "offline", |d| !d.online);
    // ...which comes back without the shell (it was killed with the agent): the terminal ends.
    agent.restart();
    let status = terminal.expect_exit(Duration::from_secs(60));
    assert!(
        !status.success(),
        "a terminal whose shell died with the agent must exit non-zero"
    );
    let message = tail(&terminal);
    eprintln!("after the agent was killed, {status}; the terminal showed: {message:?}");
    assert!(
        message.contains("tether:"),
        "the CLI should say why the terminal ended:\n{message}"
    );
    let lower = message.to_lowercase();
    assert!(
        ["disconnect", "offline", "went away", "gone", "lost", "closed"]
            .iter()
            .any(|w| lower.contains(w)),
        "the message should say the shell is gone:\n{message}"
    );
    // The operator should read what happened, not the transport library's error.
    assert!(
        !["close_notify", "docs.rs", "IO error"]
            .iter()
            .any(|w| message.contains(w)),
        "the message should be plain, not a raw TLS/IO error:\n{message}"
    );
}

#[test]
fn a_restarted_agent_keeps_its_identity_and_acceptance() {
    let hub = Hub::start_default();
    let cli = hub.user_cli("alice", true);
    let mut agent = Agent::start(&hub, "[terminal]\nshell = \"/bin/sh\"\n");
    let id = cli.accept(&agent.name).id;

    agent.restart();
    let after = cli.exec_when_ready(&agent.name, &["echo", "back"], Duration::from_secs(60));
    assert_eq!(after.ok(), "back\n", "agent log:\n{}", agent.log());
    let same: Vec<_> = cli
        .devices()
        .into_iter()
        .filter(|d| d.name == agent.name)
        .collect();
    assert_eq!(same.len(), 1, "a restarted agent must not enrol again: {same:#?}");
    assert_eq!(same[0].id, id);
    assert_eq!(same[0].status, "accepted");
}

#[test]
fn an_open_terminal_survives_the_hub_dying_and_works_again_after_restart() {
    let mut hub = Hub::start_default();
    let cli = hub.user_cli("alice", true);
    let agent = Agent::start(&hub, "[terminal]\nshell = \"/bin/sh\"\n");
    cli.accept(&agent.name);
    let mut terminal = open_working_terminal(&cli, &agent.name);

    hub.kill();
    terminal.expect("reconnecting", Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    assert!(terminal.is_running(), "the terminal must wait for the hub");

    hub.restart();
    let (command, expected) = marker();
    terminal.send_line(&command);
    terminal.expect(&expected, Duration::from_secs(60));
}
