//! Replicas sharing one real PostgreSQL (and NATS) as a production deployment starts and loses
//! them: two replicas started at once on an empty database create exactly one first
//! administrator; a replica SIGKILLed under a terminal is taken for dead once its heartbeat is
//! older than `replica_timeout_secs`, and a live replica closes that terminal as `interrupted`
//! while its own terminal stays open; `tether-hub backup` refuses PostgreSQL, pointing at the
//! pg_dump procedure.

use serde_json::Value;
use tether_e2e::{Agent, Cli, Hub, HubOptions, Nats, Postgres, PtySession, WAIT, wait_for};

const PROVISIONING_KEY: &str = "replicas-provisioning-key";
const FIRST_ADMINISTRATOR: &str = "created the first administrator: user admin, password ";

/// `tether audit list --json --all ARGS`, parsed.
fn events(cli: &Cli, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["audit", "list", "--json", "--all"];
    all.extend_from_slice(args);
    let output = cli.run(&all);
    serde_json::from_str(output.ok()).unwrap_or_else(|e| panic!("audit list: {e}\n{output}"))
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

#[test]
fn two_replicas_starting_at_once_create_one_first_administrator() {
    let postgres = Postgres::start();
    let database = postgres.create_database("tether");
    let options = HubOptions::default().env("TETHER_HUB_DATABASE_URL", &database);
    let (mut a, mut b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| Hub::start(options.clone()));
        let b = scope.spawn(|| Hub::start(options.clone()));
        (a.join().expect("replica A"), b.join().expect("replica B"))
    });
    let printed: Vec<String> = [a.process().stdout(), b.process().stdout()]
        .iter()
        .flat_map(|text| {
            text.lines()
                .filter_map(|line| line.strip_prefix(FIRST_ADMINISTRATOR).map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        printed.len(),
        1,
        "exactly one replica creates the administrator: {printed:?}\nA: {}\nB: {}",
        a.log(),
        b.log()
    );
    let password = printed[0].trim_end_matches(" (shown once)");
    let cli = a.cli();
    cli.login("admin", password);
    let users: Vec<Value> = serde_json::from_str(cli.run(&["users", "list", "--json"]).ok()).unwrap();
    assert_eq!(users.len(), 1, "{users:#?}");
    assert_eq!(users[0]["name"], "admin");

    // Backups of PostgreSQL are pg_dump's.
    let backup = a.dir().join("backup.tar");
    let refused = a.run_hub(&["backup".as_ref(), backup.as_os_str()]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("pg_dump") && stderr.contains("docs/operations.md"),
        "{stderr}"
    );
    assert!(!backup.exists());
}

#[test]
fn a_live_replica_closes_the_terminals_of_a_dead_one() {
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
