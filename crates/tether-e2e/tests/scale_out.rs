//! Scale-out: two hub replicas sharing one real PostgreSQL and one real nats-server (both
//! started here on free ports), one TLS certificate and one signing key. A device attached to
//! replica A is used by an operator logged in on replica B: terminal, file copies both ways,
//! port forwarding; replica A is SIGKILLed and the device moves to B; a rejection through B
//! ends the device's sessions wherever they run; a recording made on A is listed, replayed,
//! exported and, once old, deleted (once) from both; a session on A watched from B tells its
//! user so.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::Value;
use tempfile::TempDir;
use tether_e2e::{
    Agent, Cli, FakeDevice, Hub, HubOptions, Nats, PortForward, Postgres, PtySession, Received, WAIT,
    block_on,
    peers::{TcpEcho, deterministic_bytes, echo_round_trip, sha256_file, write_deterministic_file},
    receive_until_end, wait_for,
};

const PROVISIONING_KEY: &str = "scale-out-provisioning-key";

/// Two replicas and what they share. Field order: hubs go before their database and bus.
struct Cluster {
    a: Hub,
    b: Hub,
    /// The shared database's URL.
    database: String,
    _nats: Nats,
    _postgres: Postgres,
}

impl Cluster {
    fn start() -> Cluster {
        Cluster::start_with("")
    }

    /// Both replicas with the configuration `toml`.
    fn start_with(toml: &str) -> Cluster {
        let postgres = Postgres::start();
        let database = postgres.create_database("tether");
        let nats = Nats::start();
        // Devices are accepted on first contact, so the agent's first hub (A) is where it lands.
        let options = HubOptions::default()
            .replica(&database, &nats.url())
            .provisioning_key(PROVISIONING_KEY)
            .config(toml);
        let a = Hub::start(options.clone());
        let b = Hub::start(options.secrets_of(&a));
        Cluster {
            a,
            b,
            database,
            _nats: nats,
            _postgres: postgres,
        }
    }

    /// Runs `sql` on the shared database with psql.
    /// Alice, an administrator, logged in on both replicas: her CLIs on A and on B.
    fn alice_on_both(&self) -> (Cli, Cli) {
        let on_a = self.a.user_cli("alice", true);
        let on_b = self.b.cli();
        on_b.login("alice", "pw-alice-correct-horse");
        (on_a, on_b)
    }

    fn psql(&self, sql: &str) -> String {
        let output = std::process::Command::new("psql")
            .args([self.database.as_str(), "-q", "-v", "ON_ERROR_STOP=1", "-Atc", sql])
            .output()
            .expect("psql (Debian: postgresql-client)");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "psql {sql}: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        text
    }
}

/// A device whose files live under `root`, with forwarding to loopback on.
struct Device {
    agent: Agent,
    root: PathBuf,
    _dir: TempDir,
}

/// Starts an agent that tries A first, then B.
fn device_on_a(cluster: &Cluster) -> Device {
    let dir = tempfile::Builder::new()
        .prefix("tether-e2e-device-")
        .tempdir()
        .expect("temp dir");
    let root = dir.path().join("data");
    std::fs::create_dir(&root).unwrap();
    let config = format!(
        "provisioning_key = {PROVISIONING_KEY:?}\n[terminal]\nshell = \"/bin/sh\"\n\n[file_transfer]\nenabled = true\nroots = [{root:?}]\n\n\
         [port_forward]\nenabled = true\n",
        root = root.display().to_string()
    );
    let agent = Agent::start_multi(&cluster.a, &[&cluster.a.url, &cluster.b.url], &config);
    Device {
        agent,
        root,
        _dir: dir,
    }
}

/// Runs a command in a fresh terminal through `cli` and waits for its output.
fn terminal_works(cli: &Cli, device: &str, tag: &str) {
    let mut terminal = PtySession::terminal(cli, device);
    terminal.send_line(&format!("echo {tag}-$((6*7))"));
    terminal.expect(&format!("{tag}-42"), WAIT);
    terminal.send_line("exit");
    terminal.expect_exit(WAIT);
}

/// `tether audit list --json --all`, parsed.
fn audit_events(cli: &Cli) -> Vec<Value> {
    let output = cli.run(&["audit", "list", "--json", "--all"]);
    serde_json::from_str(output.ok()).unwrap_or_else(|e| panic!("audit list: {e}\n{output}"))
}

fn copy_both_ways(cli: &Cli, device: &Device, local: &Path) {
    let original = local.join("original.bin");
    write_deterministic_file(&original, 7, 12 * 1024 * 1024 + 123);
    let on_device = device.root.join("uploaded.bin");
    let remote = format!("{}:{}", device.agent.name, on_device.display());
    cli.run_for(
        &["cp", original.to_str().unwrap(), &remote],
        Duration::from_secs(120),
    )
    .ok();
    assert_eq!(
        sha256_file(&on_device),
        sha256_file(&original),
        "upload through B to A"
    );

    let device_file = device.root.join("made-on-device.bin");
    write_deterministic_file(&device_file, 9, 9 * 1024 * 1024 + 7);
    let back = local.join("downloaded.bin");
    let remote = format!("{}:{}", device.agent.name, device_file.display());
    cli.run_for(&["cp", &remote, back.to_str().unwrap()], Duration::from_secs(120))
        .ok();
    assert_eq!(
        sha256_file(&back),
        sha256_file(&device_file),
        "download through B from A"
    );
}

#[test]
fn a_user_on_one_replica_reaches_a_device_on_the_other() {
    let cluster = Cluster::start();
    let cli = cluster.b.user_cli("alice", true);
    let device = device_on_a(&cluster);
    cli.wait_online(&device.agent.name);
    assert!(
        device
            .agent
            .wait_log(&format!("connected to {}", cluster.a.url), 1, WAIT),
        "the device dials replica A first\n{}",
        device.agent.log()
    );

    terminal_works(&cli, &device.agent.name, "through-b");
    // Written once, by the replica serving the user, though two replicas carried the session.
    let opened = wait_for("the terminal's closing event", WAIT, || {
        let events = audit_events(&cli);
        events
            .iter()
            .any(|e| e["action"] == "terminal.close")
            .then_some(events)
    });
    let count = |action: &str| opened.iter().filter(|e| e["action"] == action).count();
    assert_eq!((count("terminal.open"), count("terminal.close")), (1, 1));

    let local = tempfile::tempdir().unwrap();
    copy_both_ways(&cli, &device, local.path());

    let echo = TcpEcho::start();
    let forward = PortForward::start(
        &cli,
        &device.agent.name,
        &[&format!("0:127.0.0.1:{}", echo.port())],
        &[],
    );
    let payload = deterministic_bytes(3, 4 * 1024 * 1024);
    let back = echo_round_trip(forward.local_port(0), &payload).expect("echo through the forward");
    assert!(
        back == payload,
        "the forwarded echo came back changed ({} bytes)",
        back.len()
    );
    assert!(echo.accepted() >= 1);
}

#[test]
fn killing_the_device_s_replica_moves_it_to_the_other() {
    let mut cluster = Cluster::start();
    let cli = cluster.b.user_cli("alice", true);
    let device = device_on_a(&cluster);
    let name = device.agent.name.clone();
    cli.wait_online(&name);
    assert!(
        device
            .agent
            .wait_log(&format!("connected to {}", cluster.a.url), 1, WAIT)
    );
    terminal_works(&cli, &name, "before");
    let before: Vec<Value> = wait_for("the terminal's closing event", WAIT, || {
        let events = audit_events(&cli);
        events
            .iter()
            .any(|e| e["action"] == "terminal.close")
            .then_some(events)
    });

    // Freeze the agent so that it cannot reconnect yet, then crash A: the device must not stay
    // "online" on B's word, and asking for it must answer "offline" (not hang).
    device.agent.signal(libc::SIGSTOP);
    cluster.a.kill();
    cli.wait_device(&name, "offline after its replica crashed", |d| !d.online);
    let refused = cli.run(&["exec", &name, "true"]);
    assert!(
        !refused.success() && refused.to_string().contains("offline"),
        "{refused}"
    );
    device.agent.signal(libc::SIGCONT);
    assert!(
        device.agent.wait_log(
            &format!("connected to {}", cluster.b.url),
            1,
            Duration::from_secs(60)
        ),
        "the device reconnects to replica B\n{}",
        device.agent.log()
    );
    cli.wait_online(&name);
    terminal_works(&cli, &name, "after");

    // Every event of a completed action is still there, in one intact chain.
    let after = audit_events(&cli);
    for event in &before {
        assert!(
            after.iter().any(|e| e["id"] == event["id"]),
            "event lost: {event}"
        );
    }
    let verified: Value = serde_json::from_str(cli.run(&["audit", "verify", "--json"]).ok()).unwrap();
    assert_eq!(verified["ok"], true, "{verified}");
}

#[test]
fn rejecting_through_one_replica_ends_sessions_on_the_other() {
    let cluster = Cluster::start();
    let (cli_a, cli_b) = cluster.alice_on_both();
    let device = device_on_a(&cluster);
    let name = device.agent.name.clone();
    cli_b.wait_online(&name);

    // One session served by A (where the device is), one bridged from B.
    let mut on_a = PtySession::terminal(&cli_a, &name);
    on_a.send_line("echo on-a-$((6*7))");
    on_a.expect("on-a-42", WAIT);
    let mut on_b = PtySession::terminal(&cli_b, &name);
    on_b.send_line("echo on-b-$((6*7))");
    on_b.expect("on-b-42", WAIT);

    cli_b.run(&["devices", "reject", &name]).ok();
    on_a.expect_exit(WAIT);
    on_b.expect_exit(WAIT);
    cli_b.wait_device(&name, "offline and rejected", |d| {
        d.status == "rejected" && !d.online
    });
}

#[test]
fn a_session_on_one_replica_is_watched_from_the_other() {
    let cluster = Cluster::start();
    let (cli_a, cli_b) = cluster.alice_on_both();
    let device = device_on_a(&cluster);
    let name = device.agent.name.clone();
    cli_a.wait_online(&name);

    // The session is served (and recorded) by A.
    let terminal = PtySession::terminal(&cli_a, &name);
    terminal.send_line("echo first-$((40+2))");
    terminal.expect("first-42", WAIT);
    let sid = wait_for("the live session listed on B", WAIT, || {
        let output = cli_b.run(&["sessions", "list", "--json"]);
        let sessions: Vec<Value> = serde_json::from_str(output.ok()).ok()?;
        sessions
            .into_iter()
            .find(|s| s["live"] == true && s["device_name"] == name.as_str())
            .and_then(|s| s["sid"].as_str().map(str::to_owned))
    });

    let watcher = PtySession::spawn(&cli_b, &["sessions", "watch", &sid[..8]], 24, 80);
    watcher.expect("first-42", WAIT);
    terminal.send_line("echo watched-$((40+3))");
    watcher.expect("watched-43", WAIT);
    // The terminal's user on A is told of the watcher on B (NATS `tether.watch.notice`).
    terminal.expect("alice is watching this terminal", WAIT);
    drop(watcher);
    terminal.expect("alice stopped watching this terminal", WAIT);
}

#[test]
fn disabling_a_user_on_one_replica_ends_their_terminal_on_the_other() {
    let cluster = Cluster::start();
    let alice_b = cluster.b.user_cli("alice", true);
    let bob_a = cluster.a.user_cli("bob", true);
    let device = device_on_a(&cluster);
    let name = device.agent.name.clone();
    alice_b.wait_online(&name);

    let mut terminal = PtySession::terminal(&bob_a, &name);
    terminal.send_line("echo bob-$((6*7))");
    terminal.expect("bob-42", WAIT);
    alice_b.run(&["users", "disable", "bob"]).ok();
    terminal.expect_exit(WAIT);
    assert!(
        terminal.output().contains("the account was disabled"),
        "{}",
        terminal.output()
    );
}

#[test]
fn a_device_reconnecting_to_another_replica_replaces_its_old_attachment() {
    let cluster = Cluster::start();
    let cli = cluster.b.user_cli("alice", true);
    let on_a = FakeDevice::new(&cluster.a);
    let on_b = on_a.at(&cluster.b);
    let token = on_a.token(Some(PROVISIONING_KEY));
    block_on(async {
        let mut old = on_a.connect(&token).await.expect("connect to A");
        cli.wait_online(&on_a.name);
        // The same device (same token: the replicas share the signing key) attaches to B.
        let _new = on_b.connect(&token).await.expect("connect to B");
        let received = receive_until_end(&mut old, WAIT).await;
        assert!(
            matches!(received.last(), Some(Received::Close(_) | Received::Ended(_))),
            "the old attachment on A must be closed: {received:?}"
        );
        let said = format!("{received:?}");
        assert!(said.contains("replaced"), "{said}");
        // The new attachment stays: the device is online (through B).
        cli.wait_online(&on_a.name);
    });
}

/// The sessions `cli`'s replica lists, as JSON.
fn sessions(cli: &Cli) -> Vec<Value> {
    let output = cli.run(&["sessions", "list", "--json"]);
    serde_json::from_str(output.ok()).unwrap_or_else(|e| panic!("sessions list --json: {e}\n{output}"))
}

#[test]
fn a_recording_made_on_one_replica_is_replayed_exported_and_pruned_once_from_both() {
    let mut cluster = Cluster::start_with("recording_retention_days = 1");
    let (cli_a, cli_b) = cluster.alice_on_both();
    let device = device_on_a(&cluster);
    let name = device.agent.name.clone();
    cli_a.wait_online(&name);

    // User and device on A: A relays and records the session (watching it live from B is
    // a_session_on_one_replica_is_watched_from_the_other).
    terminal_works(&cli_a, &name, "recorded-on-a");
    let sid = wait_for("the ended session listed on B", WAIT, || {
        sessions(&cli_b)
            .into_iter()
            .find(|s| s["device_name"] == name.as_str() && !s["ended_at"].is_null())
            .and_then(|s| s["sid"].as_str().map(str::to_owned))
    });
    assert!(
        sessions(&cli_a).iter().any(|s| s["sid"] == sid.as_str()),
        "the same session is listed on A"
    );
    // Nothing of it on A's disk: B reads what A stored in the database.
    assert!(
        !cluster.a.data_dir().join("recordings").join(&sid).exists(),
        "no recording files on A"
    );

    let replayed = cli_b.run(&["replay", &sid, "--no-wait"]);
    assert!(
        replayed.ok().contains("recorded-on-a-42"),
        "replay from B: {replayed}"
    );
    let cast = cli_b.run(&["sessions", "export", &sid]);
    let mut lines = cast.ok().lines();
    let header: Value = serde_json::from_str(lines.next().unwrap_or_default()).expect("asciicast header");
    assert_eq!(header["version"], 2, "{header}");
    let output: String = lines
        .map(|line| serde_json::from_str::<Value>(line).expect("asciicast event"))
        .filter(|event| event[1] == "o")
        .filter_map(|event| event[2].as_str().map(str::to_owned))
        .collect();
    assert!(output.contains("recorded-on-a-42"), "export from B: {output}");
    assert_eq!(
        cli_a.run(&["replay", &sid, "--no-wait"]).ok(),
        replayed.ok(),
        "A replays the same recording"
    );

    // Older than the retention limit (one day), then both replicas start at once: each runs
    // retention at start.
    let aged = cluster.psql(&format!(
        "UPDATE terminal_sessions SET started_at = started_at - 172800000, \
         ended_at = ended_at - 172800000 WHERE sid = '{sid}' RETURNING sid"
    ));
    assert_eq!(aged.trim(), sid);
    std::thread::scope(|scope| {
        let Cluster { a, b, .. } = &mut cluster;
        scope.spawn(|| a.restart());
        scope.spawn(|| b.restart());
    });
    for cli in [&cli_a, &cli_b] {
        wait_for("the old session gone", WAIT, || {
            (!sessions(cli).iter().any(|s| s["sid"] == sid.as_str())).then_some(())
        });
        let refused = cli.run(&["replay", &sid, "--no-wait"]);
        assert!(
            !refused.success() && refused.stderr.contains("no terminal session"),
            "{refused}"
        );
    }
    assert_eq!(
        cluster
            .psql(&format!(
                "SELECT count(*) FROM recording_chunks WHERE sid = '{sid}'"
            ))
            .trim(),
        "0",
        "its chunks are deleted"
    );
    let prunes: Vec<Value> = audit_events(&cli_b)
        .into_iter()
        .filter(|e| e["action"] == "recording.prune")
        .collect();
    let deleted: u64 = prunes
        .iter()
        .filter_map(|e| e["details"]["deleted"].as_u64())
        .sum();
    assert_eq!(deleted, 1, "deleted once, by one replica: {prunes:#?}");
}
