//! An operator logs in, sees a new device pending, accepts it, runs commands on it and opens an
//! interactive terminal on it.

use std::time::Duration;

use tether_e2e::{Agent, Hub, PtySession};

const LONG: Duration = Duration::from_secs(20);

/// A marker the shell computes, so that the typed command (echoed by the terminal) never
/// matches what the test waits for: `echo mark-$((N+1))` prints `mark-{N+1}`.
fn marker() -> (String, String) {
    let n: u32 = rand::random::<u32>() % 1_000_000 + 1000;
    (format!("echo mark-$(({n}+1))"), format!("mark-{}", n + 1))
}

#[test]
fn login_accept_and_exec() {
    let hub = Hub::start_default();
    hub.add_user("alice", true, "alice-password-1");
    let cli = hub.cli();

    // Wrong password: refused with a message, nothing stored.
    let refused = cli.run_with_stdin(
        &["login", "alice", "--password-stdin"],
        Some("not-her-password\n"),
    );
    assert_eq!(
        refused.code,
        Some(1),
        "a wrong password must fail with exit 1:\n{refused}"
    );
    assert!(
        !refused.stderr.trim().is_empty(),
        "a refused login must say why:\n{refused}"
    );
    let listing = cli.run(&["devices", "list", "--json"]);
    assert!(
        !listing.success(),
        "listing devices without logging in must fail:\n{listing}"
    );

    cli.login("alice", "alice-password-1");

    // A new agent without a provisioning key shows up as pending.
    let agent = Agent::start(&hub, "");
    let pending = cli.wait_device(&agent.name, "pending", |d| d.status == "pending");
    assert!(!pending.id.is_empty());
    assert_eq!(
        pending.identity.get("hostname").and_then(|h| h.as_str()),
        Some(agent.name.as_str())
    );
    let filtered = cli.run(&["devices", "list", "--json", "--status", "pending"]);
    let filtered: Vec<tether_proto::api::Device> =
        serde_json::from_str(filtered.ok()).expect("devices list --json --status pending");
    assert!(filtered.iter().any(|d| d.id == pending.id));
    assert!(filtered.iter().all(|d| d.status == "pending"), "{filtered:#?}");

    // A pending device cannot be used.
    let early = cli.exec(&agent.name, &["echo", "hello"]);
    assert!(!early.success(), "exec on a pending device must fail:\n{early}");

    // Accept it: it connects and runs commands.
    let accepted = cli.accept(&agent.name);
    assert_eq!(accepted.id, pending.id);
    let accepted_list = cli.run(&["devices", "list", "--json", "--status", "accepted"]);
    assert!(accepted_list.ok().contains(&pending.id));

    let hello = cli.exec(&agent.name, &["echo", "hello-from-device"]);
    assert_eq!(hello.ok(), "hello-from-device\n", "{hello}");

    // The device can also be named by its id or a unique prefix of it.
    let by_id = cli.exec(&pending.id, &["echo", "by-id"]);
    assert_eq!(by_id.ok(), "by-id\n", "{by_id}");
    let by_prefix = cli.exec(&pending.id[..8], &["echo", "by-prefix"]);
    assert_eq!(by_prefix.ok(), "by-prefix\n", "{by_prefix}");

    // Exit status and merged stderr come back.
    let failing = cli.exec(&agent.name, &["exit 7"]);
    assert_eq!(
        failing.code,
        Some(7),
        "exec must exit with the command's status:\n{failing}"
    );
    let stderr = cli.exec(&agent.name, &["echo out; echo err >&2; exit 3"]);
    assert_eq!(stderr.code, Some(3), "{stderr}");
    assert!(
        stderr.stdout.contains("out") && stderr.stdout.contains("err"),
        "stdout and stderr are merged:\n{stderr}"
    );

    // Unknown device: a clear error.
    let unknown = cli.exec("no-such-device-xyz", &["true"]);
    assert_eq!(unknown.code, Some(1), "{unknown}");
    assert!(!unknown.stderr.trim().is_empty(), "{unknown}");

    // After logout the CLI no longer has access.
    cli.run(&["logout"]).ok();
    let after = cli.run(&["devices", "list"]);
    assert!(!after.success(), "devices list after logout must fail:\n{after}");
}

#[test]
fn interactive_terminal_runs_commands_and_follows_resizes() {
    let hub = Hub::start_default();
    let cli = hub.user_cli("alice", true);
    let agent = Agent::start(&hub, "[terminal]\nshell = \"/bin/sh\"\n");
    cli.accept(&agent.name);

    let mut terminal = PtySession::terminal(&cli, &agent.name);

    let (command, expected) = marker();
    terminal.send_line(&command);
    terminal.expect(&expected, LONG);

    // The shell's terminal has the size of the operator's terminal (24 x 80 here).
    terminal.send_line("stty size");
    terminal.expect("24 80", LONG);

    // Resizing the local terminal (SIGWINCH to the CLI) resizes the remote one. The resize and the
    // next keystrokes travel separately, so ask again until the new size shows (or give up).
    terminal.resize(33, 101);
    let mut resized = false;
    for _ in 0..10 {
        terminal.send_line("stty size");
        if terminal.try_expect("33 101", Duration::from_secs(2)).is_some() {
            resized = true;
            break;
        }
    }
    assert!(
        resized,
        "the remote terminal never became 33 x 101; it showed:\n{}",
        terminal.output()
    );

    // Several commands in a row, output in order.
    let (first, first_out) = marker();
    let (second, second_out) = marker();
    terminal.send_line(&format!("{first}; {second}"));
    terminal.expect(&first_out, LONG);
    terminal.expect(&second_out, LONG);

    // Control characters reach the remote terminal: Ctrl-C interrupts a running command (without
    // it, `sleep 1000` would hold the shell past every deadline here). Keystrokes typed right
    // around an interrupt may be flushed by the remote terminal's line discipline, so the marker
    // is typed again until the shell answers.
    terminal.send_line("echo started-$((1+1)); sleep 1000");
    terminal.expect("started-2", LONG);
    terminal.send("\x03");
    let mut interrupted = false;
    for _ in 0..5 {
        let (command, expected) = marker();
        terminal.send_line(&command);
        if terminal.try_expect(&expected, Duration::from_secs(3)).is_some() {
            interrupted = true;
            break;
        }
    }
    assert!(
        interrupted,
        "Ctrl-C did not interrupt `sleep 1000`:\n{}",
        terminal.output()
    );

    // UTF-8 passes through unchanged.
    terminal.send_line("printf '\\342\\234\\223 ok-%s\\n' $((3*3))");
    terminal.expect("\u{2713} ok-9", LONG);

    // `exit` ends the shell and the CLI.
    terminal.send_line("exit");
    terminal.expect_exit(LONG);
}

#[test]
fn escape_sequence_leaves_the_terminal() {
    let hub = Hub::start_default();
    let cli = hub.user_cli("alice", true);
    let agent = Agent::start(&hub, "[terminal]\nshell = \"/bin/sh\"\n");
    cli.accept(&agent.name);

    let mut terminal = PtySession::terminal(&cli, &agent.name);
    let (command, expected) = marker();
    terminal.send_line(&command);
    terminal.expect(&expected, LONG);

    // `~.` at the start of a line disconnects, whatever the remote shell is doing.
    terminal.send_line("sleep 1000");
    terminal.send("\r~.");
    terminal.expect_exit(LONG);

    // The device is still usable afterwards.
    let after = cli.exec(&agent.name, &["echo", "still-there"]);
    assert_eq!(after.ok(), "still-there\n");
}
