//! Terminals cut by a crash, with two hub replicas sharing one PostgreSQL: a replica SIGKILLed
//! under a terminal closes it as `interrupted` at its next start, with the bytes of its
//! recording; a replica that stays dead is taken for dead once its heartbeat is older than
//! `replica_timeout_secs`, and a live replica closes its terminal as `interrupted`. Either way
//! the other replica's live terminal is left alone.

use serde_json::Value;
use tether_e2e::{Agent, Cli, Hub, HubOptions, Nats, Postgres, PtySession, WAIT, wait_for};

const PROVISIONING_KEY: &str = "replica-audit-provisioning-key";

/// `tether audit list --json --all ARGS`, parsed.
fn events(cli: &Cli, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["audit", "list", "--json", "--all"];
    all.extend_from_slice(args);
    let output = cli.run(&all);
    serde_json::from_str(output.ok())
        .unwrap_or_else(|e| panic!("`audit list --json` is not a JSON array: {e}\n{output}"))
}

/// The session id of the one `terminal.open` not in `known`.
fn new_terminal(cli: &Cli, known: &[String]) -> String {
    wait_for("a new terminal.open", WAIT, || {
        events(cli, &["--action", "terminal.open"])
            .into_iter()
            .filter_map(|e| e["session_id"].as_str().map(str::to_owned))
            .find(|sid| !known.contains(sid))
    })
}

/// Two replicas on one PostgreSQL and NATS, a device held by B, an exec session through A and a
/// terminal through B. Field order: sessions and hubs go before their database and bus.
struct TwoSessions {
    on_a: PtySession,
    on_b: PtySession,
    sid_a: String,
    sid_b: String,
    cli_a: Cli,
    cli_b: Cli,
    _agent: Agent,
    a: Hub,
    b: Hub,
    options: HubOptions,
    _nats: Nats,
    _postgres: Postgres,
}

fn two_sessions(environment: &[(&str, &str)]) -> TwoSessions {
    let postgres = Postgres::start();
    let database = postgres.create_database("tether");
    let nats = Nats::start();
    let mut options = HubOptions::default()
        .replica(&database, &nats.url())
        .provisioning_key(PROVISIONING_KEY);
    for (key, value) in environment {
        options = options.env(key, value);
    }
    let a = Hub::start(options.clone());
    let b = Hub::start(options.clone().secrets_of(&a));
    let cli_b = b.user_cli("alice", true);
    let cli_a = a.cli();
    cli_a.login("alice", "pw-alice-correct-horse");
    // The device is on B, so that B's terminal outlives A.
    let agent = Agent::start_multi(
        &b,
        &[&b.url, &a.url],
        &format!("provisioning_key = {PROVISIONING_KEY:?}\n[terminal]\nshell = \"/bin/sh\"\n"),
    );
    cli_b.wait_online(&agent.name);
    let on_a = PtySession::spawn(
        &cli_a,
        &[
            "exec",
            &agent.name,
            "--",
            "sh",
            "-c",
            "echo from-a-side; sleep 600",
        ],
        24,
        80,
    );
    on_a.expect("from-a-side", WAIT);
    let sid_a = new_terminal(&cli_b, &[]);
    let on_b = PtySession::terminal(&cli_b, &agent.name);
    on_b.send_line("echo on-b-$((6*7))");
    on_b.expect("on-b-42", WAIT);
    let sid_b = new_terminal(&cli_b, std::slice::from_ref(&sid_a));
    TwoSessions {
        on_a,
        on_b,
        sid_a,
        sid_b,
        cli_a,
        cli_b,
        _agent: agent,
        a,
        b,
        options,
        _nats: nats,
        _postgres: postgres,
    }
}

#[test]
fn a_restarted_replica_closes_only_its_own_interrupted_terminals() {
    // Every field is bound: what `..` would leave out is dropped (killed) at once.
    let TwoSessions {
        on_a: _on_a,
        on_b,
        sid_a,
        sid_b,
        cli_a: _cli_a,
        cli_b,
        _agent,
        mut a,
        b: _b,
        options: _,
        _nats,
        _postgres,
    } = two_sessions(&[]);
    // A's recording holds the output before the kill (stored every second), read through B.
    wait_for("A's recording stored", WAIT, || {
        let output = cli_b.run(&["sessions", "export", &sid_a]);
        // Past the header line, which names the command (and so the marker) from the start.
        let recorded = output
            .stdout
            .lines()
            .skip(1)
            .any(|line| line.contains("from-a-side"));
        (output.success() && recorded).then_some(())
    });

    a.kill();
    a.restart();
    let interrupted = wait_for("A's terminal closed as interrupted", WAIT, || {
        let found = events(
            &cli_b,
            &["--action", "terminal.close", "--outcome", "interrupted"],
        );
        (!found.is_empty()).then_some(found)
    });
    assert_eq!(interrupted.len(), 1, "{interrupted:#?}");
    assert_eq!(
        interrupted[0]["session_id"],
        sid_a.as_str(),
        "{:#}",
        interrupted[0]
    );
    assert!(
        interrupted[0]["details"]["bytes_out"].as_u64().unwrap_or(0) > 0,
        "{:#}",
        interrupted[0]
    );
    // B's terminal is live, and nobody closed it.
    on_b.send_line("echo still-$((6*7))");
    on_b.expect("still-42", WAIT);
    let closes_of_b: Vec<Value> = events(&cli_b, &["--action", "terminal.close", "--session", &sid_b]);
    assert!(closes_of_b.is_empty(), "{closes_of_b:#?}");
    let sessions: Vec<Value> = serde_json::from_str(cli_b.run(&["sessions", "list", "--json"]).ok()).unwrap();
    let row_b = sessions
        .iter()
        .find(|s| s["sid"] == sid_b.as_str())
        .expect("B's session row");
    assert!(
        row_b["ended_at"].is_null(),
        "B's live session row stays open: {row_b:#}"
    );
    let row_a = sessions
        .iter()
        .find(|s| s["sid"] == sid_a.as_str())
        .expect("A's session row");
    assert!(!row_a["ended_at"].is_null(), "{row_a:#}");
    assert!(row_a["bytes_out"].as_u64().unwrap_or(0) > 0, "{row_a:#}");
}

#[test]
fn a_live_replica_closes_the_terminals_of_a_dead_one() {
    let TwoSessions {
        on_a,
        on_b,
        sid_a,
        sid_b,
        cli_a: _cli_a,
        cli_b,
        _agent,
        mut a,
        b,
        options,
        _nats,
        _postgres,
    } = two_sessions(&[("TETHER_HUB_REPLICA_TIMEOUT_SECS", "3")]);
    // A dies and stays dead: B notices by A's heartbeat.
    a.kill();
    let interrupted = wait_for("A's terminal closed by B", WAIT, || {
        let found = events(
            &cli_b,
            &["--action", "terminal.close", "--outcome", "interrupted"],
        );
        (!found.is_empty()).then_some(found)
    });
    assert_eq!(interrupted.len(), 1, "{interrupted:#?}");
    assert_eq!(
        interrupted[0]["session_id"],
        sid_a.as_str(),
        "{:#}",
        interrupted[0]
    );
    let reason = interrupted[0]["details"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("no heartbeat"), "{:#}", interrupted[0]);

    // A replica starting now sweeps too: nothing is closed twice, and B's terminal is left alone.
    let c = Hub::start(options.secrets_of(&b));
    let cli_c = c.cli();
    cli_c.login("alice", "pw-alice-correct-horse");
    on_b.send_line("echo still-$((6*7))");
    on_b.expect("still-42", WAIT);
    let closes = events(&cli_c, &["--action", "terminal.close"]);
    assert_eq!(closes.len(), 1, "{closes:#?}");
    let sessions: Vec<Value> = serde_json::from_str(cli_c.run(&["sessions", "list", "--json"]).ok()).unwrap();
    let row = |sid: &str| {
        sessions
            .iter()
            .find(|s| s["sid"] == sid)
            .unwrap_or_else(|| panic!("no session row {sid}: {sessions:#?}"))
            .clone()
    };
    assert!(!row(&sid_a)["ended_at"].is_null(), "{:#}", row(&sid_a));
    assert!(row(&sid_b)["ended_at"].is_null(), "{:#}", row(&sid_b));
    drop(on_a);
}
