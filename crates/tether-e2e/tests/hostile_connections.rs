//! Unauthenticated denial of service at the connection level: idle TLS connections, a client
//! trickling its request header, and an idle keep-alive connection are refused by the caps or
//! closed by the deadlines, while an operator's `tether exec`, an open terminal (a WebSocket,
//! which the deadlines never cut) and `/healthz` keep working.

use std::{net::Ipv4Addr, time::Duration};

use tether_e2e::{
    Agent, Cli, Hub, HubOptions, PtySession,
    hostile::{IdleConnections, Target, TrickleClient},
    wait_for,
};

const LONG: Duration = Duration::from_secs(20);
/// The hostile clients' address: the CLI and the agent use 127.0.0.1, another client.
const HOSTILE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// A request header long enough never to complete at a byte per second.
const SLOW_HEADER: &[u8] =
    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: one-byte-every-second\r\n\r\n";

fn marker() -> (String, String) {
    let n: u32 = rand::random::<u32>() % 1_000_000 + 1000;
    (format!("echo mark-$(({n}+1))"), format!("mark-{}", n + 1))
}

fn open_working_terminal(cli: &Cli, device: &str) -> PtySession {
    let terminal = PtySession::terminal(cli, device);
    assert_terminal_works(&terminal);
    terminal
}

fn assert_terminal_works(terminal: &PtySession) {
    let (command, expected) = marker();
    terminal.send_line(&command);
    terminal.expect(&expected, LONG);
}

/// `tether exec`, the open terminal and `/healthz` all answer.
fn assert_served(hub: &Hub, cli: &Cli, device: &str, terminal: &PtySession, when: &str) {
    let exec = cli.exec(device, &["echo", "exec-works"]);
    assert_eq!(exec.stdout, "exec-works\n", "`tether exec` {when}:\n{exec}");
    assert_terminal_works(terminal);
    let (status, body) = hub.request("GET", "/healthz", &[], b"");
    assert_eq!((status, body.as_str()), (200, "ok"), "/healthz {when}");
}

fn assert_log_is_clean(hub: &Hub) {
    let log = hub.log();
    assert!(!log.contains("panicked"), "the hub panicked:\n{log}");
    assert!(
        !log.contains("accept failed"),
        "the hub ran out of file descriptors:\n{log}"
    );
}

#[test]
fn idle_and_slow_connections_from_one_address_are_refused_or_closed_while_others_are_served() {
    let hub = Hub::start(
        HubOptions::default()
            .config("request_deadline_secs = 2")
            .config("http_idle_timeout_secs = 3")
            .config("max_connections_per_address = 100"),
    );
    let cli = hub.user_cli("alice", true);
    let agent = Agent::start(&hub, "[terminal]\nshell = \"/bin/sh\"\n");
    cli.accept(&agent.name);
    let terminal = open_working_terminal(&cli, &agent.name);
    let target = Target::of(&hub);

    // A keep-alive client that asks once and then stays silent.
    let keep_alive = TrickleClient::start(
        &target,
        HOSTILE,
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"",
        Duration::from_secs(1),
    );
    let slow = TrickleClient::start(&target, HOSTILE, b"", SLOW_HEADER, Duration::from_secs(1));
    let idle = IdleConnections::open(&target, HOSTILE, 2000, 64);

    assert_served(
        &hub,
        &cli,
        &agent.name,
        &terminal,
        "while 2,000 idle connections open",
    );
    wait_for(
        "the 2,000 idle connections to be attempted",
        Duration::from_secs(120),
        || (idle.attempted() == 2000).then_some(()),
    );
    eprintln!("after opening: {}", idle.summary());
    assert_served(
        &hub,
        &cli,
        &agent.name,
        &terminal,
        "once 2,000 idle connections were opened",
    );

    // Every idle connection was refused at once or closed by the deadline.
    wait_for(
        "the hub to close every idle connection",
        Duration::from_secs(60),
        || (idle.open_now() == 0).then_some(()),
    );
    eprintln!("in the end: {}", idle.summary());
    assert_eq!(idle.refused() + idle.closed_by_hub(), 2000, "{}", idle.summary());

    let slow_report = wait_for("the hub to close the slow-header client", LONG, || {
        let report = slow.report();
        report.closed_by_hub.then_some(report)
    });
    assert!(
        slow_report.trickled < SLOW_HEADER.len(),
        "the slow header was allowed to complete: {slow_report:?}"
    );
    assert!(
        slow_report.received.is_empty() || String::from_utf8_lossy(&slow_report.received).contains("408"),
        "the slow header got an answer: {:?}",
        String::from_utf8_lossy(&slow_report.received)
    );

    // The keep-alive client got its answer, then was closed for idling between requests.
    let keep_alive_report = wait_for("the hub to close the idle keep-alive connection", LONG, || {
        let report = keep_alive.report();
        report.closed_by_hub.then_some(report)
    });
    let answer = String::from_utf8_lossy(&keep_alive_report.received);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "keep-alive answer: {answer:?}"
    );

    // The terminal (a WebSocket, idle for longer than both deadlines) was never cut.
    assert_served(&hub, &cli, &agent.name, &terminal, "after the hostile clients");
    assert_log_is_clean(&hub);
    let refusal_lines = hub.log().matches("new connections (latest from").count();
    assert!(
        refusal_lines <= 15,
        "{refusal_lines} refusal lines: refusals must be logged at a bounded rate"
    );
}

#[test]
fn the_total_cap_refuses_new_connections_while_an_open_terminal_keeps_working() {
    let hub = Hub::start(
        HubOptions::default()
            .config("max_connections = 40")
            .config("request_deadline_secs = 120"),
    );
    let cli = hub.user_cli("alice", true);
    let agent = Agent::start(&hub, "[terminal]\nshell = \"/bin/sh\"\n");
    cli.accept(&agent.name);
    let terminal = open_working_terminal(&cli, &agent.name);
    let target = Target::of(&hub);

    // Idle connections from many addresses (the per-address cap does not stop them): the
    // total cap does.
    let (idle, held) =
        IdleConnections::open_until_refused(&target, |index| Ipv4Addr::new(127, 0, 3, 1 + index as u8), 200);
    eprintln!("held {held} before a refusal: {}", idle.summary());
    assert_eq!(idle.refused(), 1, "{}", idle.summary());
    assert!(
        held < 40,
        "the hub held {held} connections beyond max_connections = 40"
    );

    // New connections are refused while the cap is reached, and the terminal keeps working.
    let refused_exec = cli.exec(&agent.name, &["echo", "refused"]);
    assert!(
        !refused_exec.success(),
        "an exec got through the total cap:\n{refused_exec}"
    );
    assert_terminal_works(&terminal);
    let log = hub.log();
    assert!(
        log.contains("new connections (latest from 127.0.0.1")
            || log.contains("new connections (latest from 127.0.3."),
        "the refusal is not logged:\n{log}"
    );

    // Once the idle connections are gone, new ones are served again.
    drop(idle);
    wait_for("the hub to serve `tether exec` again", LONG, || {
        let exec = cli.exec(&agent.name, &["echo", "again"]);
        (exec.stdout == "again\n").then_some(())
    });
    assert_terminal_works(&terminal);
    assert_log_is_clean(&hub);
}
