//! The Active sessions list with two hub replicas sharing one PostgreSQL and NATS: a port
//! forward served by replica A and a terminal served by replica B are both listed by either
//! replica; when A is SIGKILLed and stays dead, B takes it for dead by its heartbeat and its
//! forward leaves the list, while B's own terminal stays listed.

use serde_json::Value;
use tether_e2e::{
    Agent, Cli, Hub, HubOptions, Nats, PortForward, Postgres, PtySession, WAIT,
    peers::{TcpEcho, echo_round_trip},
    wait_for,
};

const PROVISIONING_KEY: &str = "replica-active-provisioning-key";

/// `tether sessions active --json` as `cli`'s user.
fn active(cli: &Cli) -> Vec<Value> {
    let output = cli.run(&["sessions", "active", "--json"]);
    serde_json::from_str(output.ok()).unwrap_or_else(|e| panic!("not JSON ({e}):\n{output}"))
}

fn kinds(sessions: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = sessions
        .iter()
        .filter_map(|s| s["kind"].as_str().map(str::to_owned))
        .collect();
    kinds.sort();
    kinds
}

#[test]
fn every_replica_lists_every_session_and_a_dead_replicas_forward_leaves_the_list() {
    let postgres = Postgres::start();
    let database = postgres.create_database("tether");
    let nats = Nats::start();
    let options = HubOptions::default()
        .replica(&database, &nats.url())
        .provisioning_key(PROVISIONING_KEY)
        .env("TETHER_HUB_REPLICA_TIMEOUT_SECS", "3");
    let mut a = Hub::start(options.clone());
    let b = Hub::start(options.clone().secrets_of(&a));
    let cli_b = b.user_cli("alice", true);
    let cli_a = a.cli();
    cli_a.login("alice", "pw-alice-correct-horse");
    // The device is on B, so that B's terminal outlives A.
    let agent = Agent::start_multi(
        &b,
        &[&b.url, &a.url],
        &format!(
            "provisioning_key = {PROVISIONING_KEY:?}\n[terminal]\nshell = \"/bin/sh\"\n\n\
             [port_forward]\nenabled = true\n"
        ),
    );
    cli_b.wait_online(&agent.name);

    let echo = TcpEcho::start();
    let target = format!("127.0.0.1:{}", echo.addr.port());
    let forward = PortForward::start(&cli_a, &agent.name, &[&format!("0:{target}")], &[]);
    echo_round_trip(forward.local_port(0), b"across replicas").expect("through the forward");
    let terminal = PtySession::terminal(&cli_b, &agent.name);
    terminal.send_line("echo on-b-$((6*7))");
    terminal.expect("on-b-42", WAIT);

    for cli in [&cli_a, &cli_b] {
        let listed = wait_for("both sessions listed", WAIT, || {
            let listed = active(cli);
            (kinds(&listed) == ["port_forward", "terminal"]).then_some(listed)
        });
        let forward_row = listed.iter().find(|s| s["kind"] == "port_forward").unwrap();
        assert_eq!(forward_row["detail"], format!("TCP {target}"), "{forward_row:#}");
    }

    // A dies and stays dead; its forward's CLI gives up with it. B notices by A's heartbeat.
    a.kill();
    drop(forward);
    let left = wait_for("A's forward gone from B's list", WAIT, || {
        let listed = active(&cli_b);
        (kinds(&listed) == ["terminal"]).then_some(listed)
    });
    assert_eq!(left[0]["user_name"], "alice");
    terminal.send_line("echo still-$((6*7))");
    terminal.expect("still-42", WAIT);
}
