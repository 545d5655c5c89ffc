//! Several users at once, and the agent's shell limits: how many shells, per user and in total,
//! how long a shell may stay idle, and how long it may live.

use std::time::{Duration, Instant};

use tether_e2e::{Agent, Hub, PtySession};

const LONG: Duration = Duration::from_secs(20);

fn marker() -> (String, String) {
    let n: u32 = rand::random::<u32>() % 1_000_000 + 1000;
    (format!("echo mark-$(({n}+1))"), format!("mark-{}", n + 1))
}

/// Opens a terminal and waits until its shell answers.
fn open_working_terminal(cli: &tether_e2e::Cli, device: &str) -> PtySession {
    let terminal = PtySession::terminal(cli, device);
    let (command, expected) = marker();
    terminal.send_line(&command);
    terminal.expect(&expected, LONG);
    terminal
}

#[test]
fn two_users_each_have_their_own_terminal() {
    let hub = Hub::start_default();
    let alice = hub.user_cli("alice", true);
    let bob = hub.user_cli("bob", false);
    let agent = Agent::start(&hub, "[terminal]\nshell = \"/bin/sh\"\n");
    alice.accept(&agent.name);

    let alice_terminal = open_working_terminal(&alice, &agent.name);
    let bob_terminal = open_working_terminal(&bob, &agent.name);

    let (alice_command, alice_out) = marker();
    let (bob_command, bob_out) = marker();
    alice_terminal.send_line(&alice_command);
    bob_terminal.send_line(&bob_command);
    alice_terminal.expect(&alice_out, LONG);
    bob_terminal.expect(&bob_out, LONG);

    // Each shell is separate: state set in one is not seen in the other.
    alice_terminal.send_line("WHO=alice-$((1+1))");
    alice_terminal.send_line("echo who-is-$WHO");
    alice_terminal.expect("who-is-alice-2", LONG);
    bob_terminal.send_line("echo who-is-${WHO:-nobody}-$((2+2))");
    bob_terminal.expect("who-is-nobody-4", LONG);

    assert!(
        !bob_terminal.output().contains(&alice_out),
        "bob saw alice's output"
    );
    assert!(
        !alice_terminal.output().contains(&bob_out),
        "alice saw bob's output"
    );
}

#[test]
fn per_user_and_total_shell_limits_refuse_the_next_shell() {
    let hub = Hub::start_default();
    let alice = hub.user_cli("alice", true);
    let bob = hub.user_cli("bob", false);
    let carol = hub.user_cli("carol", false);
    let agent = Agent::start(
        &hub,
        "[terminal]\nshell = \"/bin/sh\"\nmax_sessions = 2\nmax_sessions_per_user = 1\n",
    );
    alice.accept(&agent.name);

    let mut alice_first = open_working_terminal(&alice, &agent.name);

    // A second shell for alice: over the per-user limit.
    let mut alice_second = PtySession::terminal(&alice, &agent.name);
    alice_second.expect("terminal.max_sessions_per_user", LONG);
    let status = alice_second.expect_exit(LONG);
    eprintln!("alice's second terminal ({status}): {:?}", alice_second.output());
    assert!(!status.success(), "a refused terminal must exit non-zero");

    // Bob may have one: two shells in total now.
    let _bob_terminal = open_working_terminal(&bob, &agent.name);

    // Carol's would be the third: over the total limit.
    let mut carol_terminal = PtySession::terminal(&carol, &agent.name);
    carol_terminal.expect("terminal.max_sessions)", LONG);
    let status = carol_terminal.expect_exit(LONG);
    eprintln!("carol's terminal ({status}): {:?}", carol_terminal.output());
    assert!(!status.success(), "a refused terminal must exit non-zero");
    assert!(
        !carol_terminal.output().contains("max_sessions_per_user"),
        "carol has no shell: the total limit, not the per-user one, refused her:\n{}",
        carol_terminal.output()
    );

    // Limits count live shells: once alice leaves, carol gets one.
    alice_first.send_line("exit");
    alice_first.expect_exit(LONG);
    let mut carol_again = None;
    let deadline = Instant::now() + LONG;
    while carol_again.is_none() {
        let attempt = PtySession::terminal(&carol, &agent.name);
        let (command, expected) = marker();
        attempt.send_line(&command);
        if attempt.try_expect(&expected, Duration::from_secs(5)).is_some() {
            carol_again = Some(attempt);
        } else {
            assert!(
                Instant::now() < deadline,
                "carol never got a shell after alice left; last attempt showed:\n{}",
                attempt.output()
            );
        }
    }
}

#[test]
fn idle_shells_end_with_a_message() {
    let hub = Hub::start_default();
    let cli = hub.user_cli("alice", true);
    let agent = Agent::start(
        &hub,
        "[terminal]\nshell = \"/bin/sh\"\nidle_timeout_secs = 2\nmax_duration_secs = 600\n",
    );
    cli.accept(&agent.name);

    let mut terminal = open_working_terminal(&cli, &agent.name);
    // Say nothing: the agent ends the shell after 2 s without input.
    terminal.expect("idle timeout", Duration::from_secs(30));
    let status = terminal.expect_exit(LONG);
    eprintln!("idle terminal ({status}): {:?}", terminal.pending_output());
    assert!(
        terminal.output().contains("tether: session ended: "),
        "the CLI should say the session ended:\n{}",
        terminal.output()
    );
}

#[test]
fn shells_expire_even_when_busy() {
    let hub = Hub::start_default();
    let cli = hub.user_cli("alice", true);
    let agent = Agent::start(
        &hub,
        "[terminal]\nshell = \"/bin/sh\"\nidle_timeout_secs = 2\nmax_duration_secs = 4\n",
    );
    cli.accept(&agent.name);

    let mut terminal = open_working_terminal(&cli, &agent.name);
    // Keep typing (so the idle timeout never fires) until the 4 s lifetime runs out.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let _ = terminal.try_send(":\r");
        if terminal
            .try_expect("session expired", Duration::from_millis(500))
            .is_some()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the shell never expired; the terminal showed:\n{}",
            terminal.output()
        );
    }
    terminal.expect_exit(LONG);
    let output = terminal.output();
    assert!(output.contains("tether: session ended: "), "{output}");
    assert!(
        !output.contains("idle timeout"),
        "a busy shell must not time out as idle:\n{output}"
    );
}
