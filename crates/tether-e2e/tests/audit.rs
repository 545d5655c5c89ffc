//! The audit log, end to end: every recorded action (logins, logouts, refused tokens and
//! permissions, device authentication and management, terminals, file transfers, port forwards)
//! leaves exactly one event with the right actor, object, outcome, details and origin, read back
//! with `tether audit list --json`; `tether audit verify` finds rows modified, removed or swapped
//! in the hub's SQLite database behind its back; events survive a SIGKILL of the hub; exports
//! (CSV, JSON Lines) hold one line per event.

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpStream},
    path::Path,
    process::Command,
};

use serde_json::Value;
use tether_e2e::{
    Agent, Cli, FakeDevice, Hub, HubOptions, PortForward, PtySession, WAIT, block_on,
    peers::{TcpEcho, sha256_file, write_deterministic_file},
    wait_for,
};

const SHELL: &str = "[terminal]\nshell = \"/bin/sh\"\n";

/// `tether audit list --json --all ARGS`, parsed.
fn events(cli: &Cli, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["audit", "list", "--json", "--all"];
    all.extend_from_slice(args);
    let output = cli.run(&all);
    serde_json::from_str(output.ok())
        .unwrap_or_else(|e| panic!("`audit list --json` is not a JSON array: {e}\n{output}"))
}

fn pretty(events: &[Value]) -> String {
    serde_json::to_string_pretty(events).unwrap_or_default()
}

/// Waits until the filter matches at least one event, then asserts it matches exactly one.
fn exactly_one(cli: &Cli, args: &[&str]) -> Value {
    wait_for(&format!("an audit event for {args:?}"), WAIT, || {
        Some(events(cli, args)).filter(|e| !e.is_empty())
    });
    let found = events(cli, args);
    assert_eq!(
        found.len(),
        1,
        "expected exactly one event for {args:?}, got:\n{}",
        pretty(&found)
    );
    found.into_iter().next().unwrap()
}

/// Every event records where the request came from (loopback here).
fn assert_origin(event: &Value) {
    let address = event["client_address"].as_str().unwrap_or_default();
    assert!(
        address.starts_with("127.0.0.1:"),
        "client_address should be the loopback peer: {event:#}"
    );
}

/// The event came from the `tether` CLI (its user agent).
fn assert_cli_agent(event: &Value) {
    let agent = event["user_agent"].as_str().unwrap_or_default();
    assert!(agent.starts_with("tether/"), "user_agent: {event:#}");
}

fn assert_user_actor(event: &Value, name: &str) {
    assert_eq!(event["actor_kind"], "user", "{event:#}");
    assert_eq!(event["actor_name"], name, "{event:#}");
    assert!(event["actor_id"].is_string(), "{event:#}");
}

fn assert_device_object(event: &Value, id: &str, name: &str) {
    assert_eq!(event["object_kind"], "device", "{event:#}");
    assert_eq!(event["object_id"], id, "{event:#}");
    assert_eq!(event["object_name"], name, "{event:#}");
}

/// The id of the user `name`, from its successful login event.
fn user_id(cli: &Cli, name: &str) -> String {
    let logins = events(
        cli,
        &["--action", "login", "--outcome", "success", "--actor", name],
    );
    logins[0]["actor_id"].as_str().expect("user id").to_owned()
}

/// A hub with an admin `alice` whose CLI is logged in.
fn hub_and_admin(options: HubOptions) -> (Hub, Cli) {
    let hub = Hub::start(options);
    let cli = hub.user_cli("alice", true);
    (hub, cli)
}

/// A hub, the admin's CLI and an accepted, online agent with `agent_toml`.
fn with_agent(agent_toml: &str) -> (Hub, Cli, Agent) {
    let (hub, cli) = hub_and_admin(HubOptions::default());
    let agent = Agent::start(&hub, agent_toml);
    cli.accept(&agent.name);
    (hub, cli, agent)
}

/// A device that asked to authenticate and is pending.
fn pending_device(hub: &Hub) -> FakeDevice {
    let device = FakeDevice::new(hub);
    let (status, body) = device.authenticate(None);
    assert_eq!(status, 401, "a new device should be pending: {body}");
    device
}

fn sqlite(db: &Path, sql: &str) -> String {
    let output = Command::new("sqlite3")
        .args(["-cmd", ".timeout 20000"])
        .arg(db)
        .arg(sql)
        .output()
        .expect("run sqlite3 (Debian: sqlite3)");
    assert!(
        output.status.success(),
        "sqlite3 {sql:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Logins and tokens

#[test]
fn a_login_is_one_success_event_with_the_user_and_origin() {
    let (_hub, cli) = hub_and_admin(HubOptions::default());
    let event = exactly_one(&cli, &["--action", "login"]);
    assert_user_actor(&event, "alice");
    assert_eq!(event["outcome"], "success");
    assert_eq!(event["object_kind"], "user");
    assert_eq!(event["object_name"], "alice");
    assert_eq!(event["object_id"], event["actor_id"]);
    assert!(event["session_id"].is_null(), "{event:#}");
    assert_origin(&event);
    assert_cli_agent(&event);
    assert!(event["hash"].as_str().is_some_and(|h| !h.is_empty()));

    // The filters of `audit list` find it, or not.
    let id = event["actor_id"].as_str().unwrap();
    for (args, count) in [
        (vec!["--actor", "alice", "--action", "login"], 1),
        (vec!["--actor", id, "--action", "login"], 1),
        (vec!["--actor", "nobody-else"], 0),
        (vec!["--outcome", "failure"], 0),
    ] {
        assert_eq!(events(&cli, &args).len(), count, "audit list {args:?}");
    }

    // The table: a header and one row, time in UTC.
    let table = cli.run(&["audit", "list", "--action", "login"]);
    let lines: Vec<&str> = table.ok().lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    for column in ["TIME", "ACTOR", "ACTION", "OBJECT", "OUTCOME", "DETAILS"] {
        assert!(lines[0].contains(column), "{table}");
    }
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[2..6], ["alice", "login", "alice", "success"], "{table}");
    assert_eq!(row[0].len(), "2024-05-01".len(), "{table}");
    assert_eq!(row[1].len(), "12:00:00".len(), "{table}");
}

#[test]
fn the_table_cuts_details_to_the_terminal_width() {
    let (hub, cli) = hub_and_admin(HubOptions::default());
    let output = hub
        .cli()
        .run_with_stdin(&["login", "alice", "--password-stdin"], Some("wrong\n"));
    assert_eq!(output.code, Some(1), "{output}");
    let full = cli.run(&["audit", "list", "--outcome", "failure"]);
    assert!(full.ok().contains("reason=\"wrong password\""), "{full}");

    let mut terminal = PtySession::spawn(&cli, &["audit", "list", "--outcome", "failure"], 24, 60);
    terminal.expect_exit(WAIT);
    let shown = terminal.output();
    let row = shown
        .lines()
        .find(|line| line.contains("failure"))
        .unwrap_or_else(|| panic!("no row: {shown}"));
    assert!(
        row.trim_end().ends_with('…'),
        "DETAILS should be cut on a 60-column tty: {shown}"
    );
    assert!(!row.contains("wrong password"), "{shown}");
}

#[test]
fn failed_logins_are_failure_events_with_the_reason() {
    let (hub, cli) = hub_and_admin(HubOptions::default());
    let alice = user_id(&cli, "alice");
    let stranger = hub.cli();
    let output = stranger.run_with_stdin(&["login", "alice", "--password-stdin"], Some("wrong\n"));
    assert_eq!(output.code, Some(1), "{output}");

    let event = exactly_one(&cli, &["--action", "login", "--outcome", "failure"]);
    assert_eq!(event["actor_kind"], "anonymous", "{event:#}");
    assert!(event["actor_name"].is_null(), "{event:#}");
    assert_eq!(event["object_kind"], "user");
    assert_eq!(event["object_name"], "alice");
    assert_eq!(event["object_id"], alice.as_str());
    assert_eq!(event["details"]["reason"], "wrong password", "{event:#}");
    assert_origin(&event);
    assert_cli_agent(&event);

    // An unknown user: the name tried, no id.
    let output = stranger.run_with_stdin(&["login", "mallory", "--password-stdin"], Some("guess\n"));
    assert_eq!(output.code, Some(1), "{output}");
    let failures = events(&cli, &["--action", "login", "--outcome", "failure"]);
    assert_eq!(failures.len(), 2, "{}", pretty(&failures));
    let newest = &failures[0];
    assert_eq!(newest["object_name"], "mallory", "{newest:#}");
    assert!(newest["object_id"].is_null(), "{newest:#}");
    assert_eq!(newest["details"]["reason"], "unknown user", "{newest:#}");
}

#[test]
fn a_rate_limited_login_is_a_refused_event() {
    let (hub, cli) = hub_and_admin(HubOptions::default());
    hub.add_user("bob", false, "bob-password-correct");
    let stranger = hub.cli();
    let mut failures = 0;
    let mut refused = false;
    for _ in 0..20 {
        let output = stranger.run_with_stdin(&["login", "bob", "--password-stdin"], Some("wrong\n"));
        assert_eq!(output.code, Some(1), "{output}");
        if output.stderr.contains("too many failed logins") {
            refused = true;
            break;
        }
        failures += 1;
    }
    assert!(refused, "20 bad logins were never rate limited");

    let event = exactly_one(&cli, &["--action", "login", "--outcome", "refused"]);
    assert_eq!(event["actor_kind"], "anonymous", "{event:#}");
    assert_eq!(event["object_name"], "bob", "{event:#}");
    assert_eq!(
        event["details"]["reason"], "too many failed logins for this account from your address",
        "{event:#}"
    );
    assert_origin(&event);
    let recorded = events(&cli, &["--action", "login", "--outcome", "failure"]);
    assert_eq!(recorded.len(), failures, "{}", pretty(&recorded));
}

#[test]
fn a_logout_is_one_event() {
    let (hub, cli) = hub_and_admin(HubOptions::default());
    let bob = hub.user_cli("bob", false);
    bob.run(&["logout"]).ok();

    let event = exactly_one(&cli, &["--action", "logout"]);
    assert_user_actor(&event, "bob");
    assert_eq!(event["outcome"], "success");
    assert_eq!(event["object_kind"], "user");
    assert_eq!(event["object_name"], "bob");
    assert_eq!(event["object_id"], event["actor_id"]);
    assert_origin(&event);
    assert_cli_agent(&event);
}

#[test]
fn bad_and_missing_tokens_are_refused_authentications() {
    let (hub, cli) = hub_and_admin(HubOptions::default());
    let mut forger = hub.cli();
    forger.set_env("TETHER_TOKEN", "not-a-real-token");
    let output = forger.run(&["devices", "list"]);
    assert_eq!(output.code, Some(1), "{output}");

    let event = exactly_one(&cli, &["--action", "authentication"]);
    assert_eq!(event["actor_kind"], "anonymous", "{event:#}");
    assert_eq!(event["outcome"], "refused");
    assert_eq!(
        event["details"]["reason"], "invalid or expired token",
        "{event:#}"
    );
    assert_eq!(
        event["details"]["path"], "/api/management/v1/devices",
        "{event:#}"
    );
    assert_origin(&event);
    assert_cli_agent(&event);

    // No token at all.
    let (status, _) = hub.request("GET", "/api/management/v1/devices", &[], b"");
    assert_eq!(status, 401);
    let both = events(&cli, &["--action", "authentication"]);
    assert_eq!(both.len(), 2, "{}", pretty(&both));
    assert_eq!(
        both[0]["details"]["reason"], "missing bearer token",
        "{:#}",
        both[0]
    );
}

#[test]
fn a_non_admin_accepting_a_device_is_a_refused_authorization() {
    let (hub, cli) = hub_and_admin(HubOptions::default());
    let device = pending_device(&hub);
    let id = cli.device_id_by_name(&device.name);
    let bob = hub.user_cli("bob", false);
    let output = bob.run(&["devices", "accept", &device.name]);
    assert_eq!(output.code, Some(1), "{output}");
    assert!(output.stderr.contains("403"), "{output}");

    let event = exactly_one(&cli, &["--action", "authorization"]);
    assert_user_actor(&event, "bob");
    assert_eq!(event["outcome"], "refused");
    assert_device_object(&event, &id, &device.name);
    assert_eq!(event["details"]["permission"], "manage devices", "{event:#}");
    assert_origin(&event);
    assert_cli_agent(&event);
    // Nothing was accepted.
    assert!(events(&cli, &["--action", "device.accept"]).is_empty());
    assert_eq!(cli.device(&device.name).unwrap().status, "pending");
}

// ---------------------------------------------------------------------------------------------
// Devices

#[test]
fn device_auth_requests_record_pending_refusals_and_provisioning_key_successes() {
    let key = "audit-provisioning-key";
    let (hub, cli) = hub_and_admin(HubOptions::default().provisioning_key(key));

    let pending = pending_device(&hub);
    let pending_id = cli.device_id_by_name(&pending.name);
    // `--device` takes a name, resolved through the device list.
    let event = exactly_one(
        &cli,
        &["--action", "device.auth_request", "--device", &pending.name],
    );
    assert_eq!(event["actor_kind"], "device", "{event:#}");
    assert_eq!(event["actor_id"], pending_id.as_str(), "{event:#}");
    assert_eq!(event["actor_name"], pending.name.as_str(), "{event:#}");
    assert_device_object(&event, &pending_id, &pending.name);
    assert_eq!(event["outcome"], "refused");
    assert_eq!(event["details"]["status"], "pending", "{event:#}");
    assert_origin(&event);

    let enrolled = FakeDevice::new(&hub);
    enrolled.token(Some(key));
    let enrolled_id = cli.device_id_by_name(&enrolled.name);
    let event = exactly_one(
        &cli,
        &["--action", "device.auth_request", "--device", &enrolled_id],
    );
    assert_eq!(event["actor_kind"], "device", "{event:#}");
    assert_eq!(event["actor_name"], enrolled.name.as_str(), "{event:#}");
    assert_device_object(&event, &enrolled_id, &enrolled.name);
    assert_eq!(event["outcome"], "success");
    assert_eq!(event["details"]["status"], "accepted", "{event:#}");
    assert_eq!(
        event["details"]["accepted_by_provisioning_key"], true,
        "{event:#}"
    );
    assert_origin(&event);

    // A wrong key: refused, status invalid.
    let wrong = FakeDevice::new(&hub);
    let (status, _) = wrong.authenticate(Some("not-the-key"));
    assert_eq!(status, 401);
    let wrong_id = cli.device_id_by_name(&wrong.name);
    let event = exactly_one(&cli, &["--action", "device.auth_request", "--device", &wrong_id]);
    assert_eq!(event["outcome"], "refused");
    assert_eq!(event["details"]["status"], "invalid", "{event:#}");

    assert_eq!(events(&cli, &["--action", "device.auth_request"]).len(), 3);
}

#[test]
fn accepting_a_device_is_one_event() {
    let (hub, cli) = hub_and_admin(HubOptions::default());
    let device = pending_device(&hub);
    let id = cli.device_id_by_name(&device.name);
    cli.run(&["devices", "accept", &device.name]).ok();

    let event = exactly_one(&cli, &["--action", "device.accept"]);
    assert_user_actor(&event, "alice");
    assert_device_object(&event, &id, &device.name);
    assert_eq!(event["outcome"], "success");
    assert_eq!(event["details"]["previous_status"], "pending", "{event:#}");
    assert_origin(&event);
    assert_cli_agent(&event);
}

#[test]
fn rejecting_a_device_is_one_event() {
    let (hub, cli) = hub_and_admin(HubOptions::default());
    let device = pending_device(&hub);
    let id = cli.device_id_by_name(&device.name);
    cli.run(&["devices", "reject", &device.name]).ok();

    let event = exactly_one(&cli, &["--action", "device.reject"]);
    assert_user_actor(&event, "alice");
    assert_device_object(&event, &id, &device.name);
    assert_eq!(event["outcome"], "success");
    assert_eq!(event["details"]["previous_status"], "pending", "{event:#}");
    assert_origin(&event);
    assert_cli_agent(&event);
}

#[test]
fn removing_a_device_is_one_event_still_found_by_its_id() {
    let (hub, cli) = hub_and_admin(HubOptions::default());
    let device = pending_device(&hub);
    let id = cli.device_id_by_name(&device.name);
    cli.run(&["devices", "remove", &device.name]).ok();
    assert!(cli.device(&device.name).is_none());

    let event = exactly_one(&cli, &["--action", "device.remove"]);
    assert_user_actor(&event, "alice");
    assert_device_object(&event, &id, &device.name);
    assert_eq!(event["outcome"], "success");
    assert_origin(&event);
    assert_cli_agent(&event);

    // The removed device's id, passed raw, still finds its history.
    let history = events(&cli, &["--device", &id]);
    let actions: Vec<&str> = history.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(
        actions,
        ["device.remove", "device.auth_request"],
        "{}",
        pretty(&history)
    );
}

#[test]
fn a_bad_device_token_is_a_refused_device_connect() {
    let (hub, cli) = hub_and_admin(HubOptions::default());
    let device = FakeDevice::new(&hub);
    let result = block_on(device.connect("not-a-device-token"));
    assert!(result.is_err(), "a bad device token was let in");

    let event = exactly_one(&cli, &["--action", "device.connect"]);
    assert_eq!(event["actor_kind"], "device", "{event:#}");
    assert_eq!(event["outcome"], "refused");
    assert!(event["details"]["reason"].is_string(), "{event:#}");
    assert_origin(&event);
}

// ---------------------------------------------------------------------------------------------
// Terminals

#[test]
fn an_exec_opens_and_closes_a_terminal_in_one_session() {
    let (_hub, cli, agent) = with_agent(SHELL);
    let id = cli.device_id_by_name(&agent.name);
    cli.exec_when_ready(&agent.name, &["true"], WAIT).ok();

    let open = exactly_one(&cli, &["--action", "terminal.open"]);
    assert_user_actor(&open, "alice");
    assert_device_object(&open, &id, &agent.name);
    assert_eq!(open["outcome"], "success");
    assert_eq!(open["details"]["command"], "true", "{open:#}");
    assert_origin(&open);
    let session = open["session_id"]
        .as_str()
        .expect("terminal.open has a session_id");

    let close = exactly_one(&cli, &["--action", "terminal.close"]);
    assert_user_actor(&close, "alice");
    assert_device_object(&close, &id, &agent.name);
    assert_eq!(close["outcome"], "success");
    assert_eq!(
        close["session_id"], session,
        "open and close in different sessions"
    );
    let details = &close["details"];
    for key in ["duration_ms", "bytes_in", "bytes_out"] {
        assert!(details[key].is_u64(), "details.{key}: {close:#}");
    }
    assert!(details["reason"].is_string(), "{close:#}");
    assert_eq!(details["exit_status"], 0, "{close:#}");
    assert_origin(&close);

    // `--session` finds both, newest first.
    let in_session = events(&cli, &["--session", session]);
    let actions: Vec<&str> = in_session.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(
        actions,
        ["terminal.close", "terminal.open"],
        "{}",
        pretty(&in_session)
    );
}

#[test]
fn a_shell_beyond_the_limit_is_a_refused_terminal_open() {
    // `max_sessions = 0` is refused by the agent's configuration check: hold the one allowed.
    let (_hub, cli, agent) = with_agent(&format!("{SHELL}max_sessions = 1\n"));
    let id = cli.device_id_by_name(&agent.name);
    let terminal = PtySession::terminal(&cli, &agent.name);
    terminal.send_line("echo held-$((40+2))");
    terminal.expect("held-42", WAIT);

    let output = cli.exec(&agent.name, &["true"]);
    assert!(!output.success(), "a second shell was allowed: {output}");

    let event = exactly_one(&cli, &["--action", "terminal.open", "--outcome", "refused"]);
    assert_user_actor(&event, "alice");
    assert_device_object(&event, &id, &agent.name);
    let reason = event["details"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("max_sessions"),
        "the limit should be named: {event:#}"
    );
    assert!(event["session_id"].is_string(), "{event:#}");
    assert_origin(&event);
    // The held shell is the only successful open, and no close was recorded for the refusal.
    assert_eq!(
        events(&cli, &["--action", "terminal.open", "--outcome", "success"]).len(),
        1
    );
    assert!(events(&cli, &["--action", "terminal.close"]).is_empty());
    drop(terminal);
}

// ---------------------------------------------------------------------------------------------
// Verification and tampering

#[test]
fn verify_finds_modified_removed_and_swapped_rows() {
    let (hub, cli) = hub_and_admin(HubOptions::default());
    // Some history: failed logins and refused tokens.
    let stranger = hub.cli();
    for user in ["u1", "u2", "u3", "u4"] {
        stranger.run_with_stdin(&["login", user, "--password-stdin"], Some("x\n"));
    }
    for _ in 0..4 {
        hub.request("GET", "/api/management/v1/devices", &[], b"");
    }
    let all = events(&cli, &[]);
    let count = all.len() as i64;
    assert!(count >= 9, "{}", pretty(&all));
    let seqs: Vec<i64> = all.iter().rev().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=count).collect::<Vec<_>>(), "seqs are gapless from 1");

    let output = cli.run(&["audit", "verify"]);
    assert_eq!(
        output.ok().trim(),
        format!("audit log intact: {count} events checked"),
        "{output}"
    );
    let json: Value = serde_json::from_str(cli.run(&["audit", "verify", "--json"]).ok()).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["checked"], count);
    assert!(json["problem"].is_null());

    let db = hub.data_dir().join("hub.db");
    let broken = |seq: i64, kind: &str| {
        let output = cli.run(&["audit", "verify"]);
        assert_eq!(output.code, Some(1), "{output}");
        let prefix = format!("audit log BROKEN at event {seq}: {kind} (");
        assert!(
            output.stdout.starts_with(&prefix),
            "expected {prefix}...\n{output}"
        );
        let json: Value = serde_json::from_str(&cli.run(&["audit", "verify", "--json"]).stdout).unwrap();
        assert_eq!(json["ok"], false, "{json:#}");
        assert_eq!(json["problem"]["seq"], seq, "{json:#}");
        assert_eq!(json["problem"]["kind"], kind, "{json:#}");
        assert_eq!(json["checked"], seq - 1, "{json:#}");
    };

    // Verification reports the first problem, so tamper from the end backwards: each new
    // problem comes before the previous one. All while the hub runs.
    let modified = count - 1;
    sqlite(
        &db,
        &format!(
            "UPDATE audit_events SET details = '{{\"reason\":\"nothing to see\"}}' WHERE seq = {modified};"
        ),
    );
    broken(modified, "modified");

    let removed = count - 4;
    sqlite(&db, &format!("DELETE FROM audit_events WHERE seq = {removed};"));
    broken(removed, "removed");

    let (first, second) = (2, 3);
    let columns = "id, time, actor_kind, actor_id, actor_name, client_address, user_agent, action, \
                   object_kind, object_id, object_name, outcome, details, session_id, prev_hash, hash";
    sqlite(
        &db,
        &format!(
            "BEGIN IMMEDIATE; \
             CREATE TEMP TABLE swapped AS SELECT * FROM audit_events WHERE seq IN ({first}, {second}); \
             DELETE FROM audit_events WHERE seq IN ({first}, {second}); \
             INSERT INTO audit_events (seq, {columns}) \
               SELECT CASE seq WHEN {first} THEN {second} ELSE {first} END, {columns} FROM swapped; \
             COMMIT;"
        ),
    );
    // The hash covers the seq, so the swapped row no longer matches its own hash.
    let json: Value = serde_json::from_str(&cli.run(&["audit", "verify", "--json"]).stdout).unwrap();
    assert_eq!(json["ok"], false, "{json:#}");
    assert_eq!(
        json["problem"]["seq"], first,
        "the first swapped row is named: {json:#}"
    );
    let kind = json["problem"]["kind"].as_str().unwrap_or_default();
    assert!(kind == "modified" || kind == "reordered", "{json:#}");
    assert_eq!(cli.run(&["audit", "verify"]).code, Some(1));
}

// ---------------------------------------------------------------------------------------------
// Durability

#[test]
fn exec_events_survive_a_hub_crash() {
    let (mut hub, cli, agent) = with_agent(SHELL);
    cli.exec_when_ready(&agent.name, &["true"], WAIT).ok();
    hub.kill();
    hub.restart();

    let open = exactly_one(&cli, &["--action", "terminal.open"]);
    let close = exactly_one(&cli, &["--action", "terminal.close"]);
    assert_eq!(open["outcome"], "success");
    assert_eq!(close["session_id"], open["session_id"], "{close:#}");
    assert_eq!(close["details"]["exit_status"], 0, "{close:#}");
    let output = cli.run(&["audit", "verify"]);
    assert!(output.ok().starts_with("audit log intact"), "{output}");
}

/// `curl` against the hub as `cli`'s user; returns the status and body.
fn curl(hub: &Hub, cli: &Cli, args: &[&str]) -> (u16, String) {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "60", "--cacert"])
        .arg(&hub.cert_path)
        .args(["-H", &format!("Authorization: Bearer {}", cli.token())])
        .args(["-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl (Debian: curl)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    let status = status.trim().parse().unwrap_or_else(|_| {
        panic!(
            "curl printed no status: {text}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (status, body.to_owned())
}

fn file_transfer_config(root: &Path) -> String {
    format!(
        "{SHELL}\n[file_transfer]\nenabled = true\nroots = [{:?}]\n",
        root.display().to_string()
    )
}

#[test]
fn an_http_upload_event_survives_a_hub_crash() {
    let device_dir = tempfile::tempdir().unwrap();
    let root = device_dir.path().join("data");
    std::fs::create_dir(&root).unwrap();
    let (mut hub, cli, agent) = with_agent(&file_transfer_config(&root));
    let id = cli.device_id_by_name(&agent.name);
    let local = tempfile::tempdir().unwrap();
    let payload = local.path().join("payload");
    write_deterministic_file(&payload, 7, 20_000);
    let target = root.join("uploaded");
    let url = format!("{}/api/management/v1/deviceconnect/devices/{id}/upload", hub.url);
    let (status, body) = curl(
        &hub,
        &cli,
        &[
            "-X",
            "PUT",
            "-F",
            &format!("path={}", target.display()),
            "-F",
            &format!("file=@{}", payload.display()),
            &url,
        ],
    );
    assert_eq!(status, 201, "upload: {body}");
    hub.kill();
    hub.restart();

    let event = exactly_one(&cli, &["--action", "file.upload"]);
    assert_user_actor(&event, "alice");
    assert_device_object(&event, &id, &agent.name);
    assert_eq!(event["outcome"], "success");
    assert_eq!(
        event["details"]["path"],
        target.display().to_string(),
        "{event:#}"
    );
    assert_eq!(event["details"]["size"], 20_000, "{event:#}");
    assert_eq!(
        event["details"]["sha256"],
        sha256_file(&payload).as_str(),
        "{event:#}"
    );
    assert_origin(&event);
    let agent_header = event["user_agent"].as_str().unwrap_or_default();
    assert!(agent_header.starts_with("curl/"), "{event:#}");
}

// ---------------------------------------------------------------------------------------------
// Files and port forwards through the CLI

#[test]
fn file_transfers_and_refused_file_access_are_session_events() {
    let device_dir = tempfile::tempdir().unwrap();
    let root = device_dir.path().join("data");
    std::fs::create_dir(&root).unwrap();
    let (_hub, cli, agent) = with_agent(&file_transfer_config(&root));
    let id = cli.device_id_by_name(&agent.name);
    let local = tempfile::tempdir().unwrap();
    let payload = local.path().join("payload");
    write_deterministic_file(&payload, 11, 5_000);
    let expected = sha256_file(&payload);

    let on_device = root.join("up");
    let remote = format!("{}:{}", agent.name, on_device.display());
    cli.run(&["cp", payload.to_str().unwrap(), &remote]).ok();
    let upload = exactly_one(&cli, &["--action", "file.upload"]);
    assert_user_actor(&upload, "alice");
    assert_device_object(&upload, &id, &agent.name);
    assert_eq!(upload["outcome"], "success");
    assert_eq!(
        upload["details"]["path"],
        on_device.display().to_string(),
        "{upload:#}"
    );
    assert_eq!(upload["details"]["size"], 5_000, "{upload:#}");
    assert_eq!(upload["details"]["sha256"], expected.as_str(), "{upload:#}");
    assert!(upload["session_id"].is_string(), "{upload:#}");
    assert_origin(&upload);

    let back = local.path().join("back");
    cli.run(&["cp", &remote, back.to_str().unwrap()]).ok();
    let download = exactly_one(&cli, &["--action", "file.download"]);
    assert_user_actor(&download, "alice");
    assert_device_object(&download, &id, &agent.name);
    assert_eq!(download["outcome"], "success");
    assert_eq!(
        download["details"]["path"],
        on_device.display().to_string(),
        "{download:#}"
    );
    assert_eq!(download["details"]["size"], 5_000, "{download:#}");
    assert_eq!(download["details"]["sha256"], expected.as_str(), "{download:#}");
    assert!(download["session_id"].is_string(), "{download:#}");
    assert_origin(&download);

    // Listing outside the roots: refused by the device's policy.
    let outside = format!("{}:{}", agent.name, device_dir.path().display());
    let output = cli.run(&["ls", &outside]);
    assert!(
        !output.success(),
        "listing outside the roots was allowed: {output}"
    );
    let access = exactly_one(&cli, &["--action", "file.access"]);
    assert_user_actor(&access, "alice");
    assert_device_object(&access, &id, &agent.name);
    assert_eq!(access["outcome"], "refused");
    assert!(access["details"]["reason"].is_string(), "{access:#}");
    assert!(access["session_id"].is_string(), "{access:#}");
    assert_origin(&access);
}

#[test]
fn port_forwards_record_open_close_and_refusals() {
    let allowed = TcpEcho::start();
    let denied = TcpEcho::start();
    let (_hub, cli, agent) = with_agent(&format!(
        "{SHELL}\n[port_forward]\nenabled = true\nallow = [\"127.0.0.1:{}\"]\n",
        allowed.port()
    ));
    let id = cli.device_id_by_name(&agent.name);
    let forward = PortForward::start(
        &cli,
        &agent.name,
        &[
            &format!("0:127.0.0.1:{}", allowed.port()),
            &format!("0:127.0.0.1:{}", denied.port()),
        ],
        &[],
    );

    // One connection to the allowed target: open, echo, close.
    let mut stream = TcpStream::connect(("127.0.0.1", forward.local_port(0))).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(b"audited bytes").unwrap();
    let mut back = [0u8; 13];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"audited bytes");
    drop(stream);

    let target = format!("127.0.0.1:{}", allowed.port());
    let open = exactly_one(&cli, &["--action", "port_forward.open", "--outcome", "success"]);
    assert_user_actor(&open, "alice");
    assert_device_object(&open, &id, &agent.name);
    assert_eq!(open["details"]["target"], target.as_str(), "{open:#}");
    assert_eq!(open["details"]["protocol"], "tcp", "{open:#}");
    assert!(open["session_id"].is_string(), "{open:#}");
    assert_origin(&open);
    let close = exactly_one(&cli, &["--action", "port_forward.close"]);
    assert_eq!(close["session_id"], open["session_id"], "{close:#}");
    assert_eq!(close["details"]["target"], target.as_str(), "{close:#}");
    assert_eq!(close["details"]["bytes_to_device"], 13, "{close:#}");
    assert_eq!(close["details"]["bytes_from_device"], 13, "{close:#}");

    // The denied target: refused by the device's allow-list, never dialled.
    let mut stream = TcpStream::connect(("127.0.0.1", forward.local_port(1))).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let _ = stream.write_all(b"let me in");
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink);
    let refused = exactly_one(&cli, &["--action", "port_forward.open", "--outcome", "refused"]);
    assert_user_actor(&refused, "alice");
    assert_eq!(
        refused["details"]["target"],
        format!("127.0.0.1:{}", denied.port()),
        "{refused:#}"
    );
    assert!(
        refused["details"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("port_forward.allow"),
        "{refused:#}"
    );
    assert_eq!(denied.accepted(), 0);
    drop(forward);
}

#[test]
fn a_half_closed_forward_counts_the_bytes_sent_after_the_half_close() {
    // Fails while the hub closes the forward's audit record on the operator's `stop`
    // (session_audit.rs, forward_stopped_by_user): a `stop` may be a half-close, after which the
    // device still forwards what the target sends, but those bytes are no longer counted and
    // port_forward.close says bytes_from_device = 0.
    // A target that answers only after its client's end of input, so every byte it sends
    // follows the operator's `stop`.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut client, _)) = listener.accept() {
            let mut request = Vec::new();
            if client.read_to_end(&mut request).is_ok() {
                let _ = client.write_all(&request);
            }
        }
    });
    let (_hub, cli, agent) = with_agent(&format!("{SHELL}\n[port_forward]\nenabled = true\n"));
    let forward = PortForward::start(&cli, &agent.name, &[&format!("0:127.0.0.1:{port}")], &[]);
    let mut stream = TcpStream::connect(("127.0.0.1", forward.local_port(0))).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(b"audited bytes").unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    stream.read_to_end(&mut back).unwrap();
    assert_eq!(
        back, b"audited bytes",
        "the echo came back through the half-closed forward"
    );

    let close = exactly_one(&cli, &["--action", "port_forward.close"]);
    assert_eq!(close["details"]["bytes_to_device"], 13, "{close:#}");
    assert_eq!(close["details"]["bytes_from_device"], 13, "{close:#}");
    drop(forward);
}

// ---------------------------------------------------------------------------------------------
// Time filters, pages, and the user agent of session events

#[test]
fn time_filters_and_pages_select_events() {
    // Fails while the hub cannot read integer filters (from, to, before): audit_api.rs
    // flattens `AuditFilter` into its query structs, and serde_urlencoded then hands the
    // flattened i64 fields strings ("invalid type: string \"1\", expected i64", HTTP 400).
    let (hub, cli) = hub_and_admin(HubOptions::default());
    for _ in 0..4 {
        hub.request("GET", "/api/management/v1/devices", &[], b"");
    }
    for (args, count) in [
        (vec!["--since", "1h"], 5),
        (vec!["--since", "2000-01-01T00:00:00Z", "--action", "login"], 1),
        (vec!["--until", "2000-01-01T00:00:00Z"], 0),
        (vec!["--until", "2999-01-01"], 5),
    ] {
        assert_eq!(events(&cli, &args).len(), count, "audit list {args:?}");
    }
    // `--limit` shows the newest events.
    let newest: Vec<Value> = serde_json::from_str(cli.run(&["audit", "list", "--json", "--limit", "2"]).ok())
        .expect("JSON events");
    let seqs: Vec<i64> = newest.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [5, 4]);

    // Pages over HTTP: `next_before` leads to the older events.
    let token = cli.token();
    let authorization = format!("Bearer {token}");
    let page = |query: &str| -> Value {
        let path = format!("/api/management/v1/audit/events?{query}");
        let (status, body) = hub.request("GET", &path, &[("Authorization", &authorization)], b"");
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    };
    let first = page("limit=2");
    assert_eq!(first["next_before"], 4, "{first:#}");
    let second = page("limit=2&before=4");
    let seqs: Vec<i64> = second["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [3, 2], "{second:#}");
}

#[test]
fn session_events_carry_the_cli_user_agent() {
    // Fails while the CLI's WebSocket upgrade (tether_net::connect_websocket, used by
    // terminal, exec, cp, ls and port-forward) sends no User-Agent: session events then have
    // `user_agent: null`, unlike the CLI's HTTP requests ("tether/VERSION").
    let (_hub, cli, agent) = with_agent(SHELL);
    cli.exec_when_ready(&agent.name, &["true"], WAIT).ok();
    let open = exactly_one(&cli, &["--action", "terminal.open"]);
    assert_cli_agent(&open);
}

// ---------------------------------------------------------------------------------------------
// Export

#[test]
fn exports_hold_one_line_per_event_oldest_first() {
    let (hub, cli) = hub_and_admin(HubOptions::default());
    let stranger = hub.cli();
    stranger.run_with_stdin(&["login", "alice", "--password-stdin"], Some("wrong\n"));
    hub.request("GET", "/api/management/v1/devices", &[], b"");
    let device = pending_device(&hub);
    cli.run(&["devices", "accept", &device.name]).ok();
    let listed = events(&cli, &[]);
    let mut seqs: Vec<i64> = listed.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    seqs.reverse();

    // JSON Lines on stdout: every line parses, oldest first, the same events as the list.
    let jsonl = cli.run(&["audit", "export", "--format", "jsonl"]);
    let lines: Vec<Value> = jsonl
        .ok()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let exported: Vec<i64> = lines.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(exported, seqs);
    for line in &lines {
        let same = listed.iter().find(|e| e["seq"] == line["seq"]).unwrap();
        assert_eq!(line, same);
    }

    // CSV to a file: the header, then one line per event.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.csv");
    let csv = cli.run(&[
        "audit",
        "export",
        "--format",
        "csv",
        "--output",
        file.to_str().unwrap(),
    ]);
    assert!(csv.ok().is_empty(), "{csv}");
    let text = std::fs::read_to_string(&file).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert!(
        rows[0].starts_with("seq,id,time,actor_kind,actor_id,actor_name"),
        "{text}"
    );
    assert_eq!(rows.len(), seqs.len() + 1, "{text}");
    for (row, seq) in rows[1..].iter().zip(&seqs) {
        assert!(row.starts_with(&format!("{seq},")), "{text}");
    }

    // Filters apply to exports.
    let logins = cli.run(&["audit", "export", "--format", "csv", "--action", "login"]);
    let rows: Vec<&str> = logins.ok().lines().collect();
    assert_eq!(rows.len(), 3, "header, alice's login and the failure:\n{logins}");
    assert!(rows[1..].iter().all(|row| row.contains(",login,")), "{logins}");
}

#[test]
fn reading_the_audit_log_needs_an_admin() {
    let (hub, cli) = hub_and_admin(HubOptions::default());
    let bob = hub.user_cli("bob", false);
    for args in [
        &["audit", "list"][..],
        &["audit", "export"][..],
        &["audit", "verify"][..],
    ] {
        let output = bob.run(args);
        assert_eq!(output.code, Some(1), "{output}");
        assert!(output.stderr.contains("403"), "{output}");
    }
    let refusals = events(&cli, &["--action", "authorization"]);
    assert_eq!(refusals.len(), 3, "{}", pretty(&refusals));
    for event in &refusals {
        assert_user_actor(event, "bob");
        assert_eq!(event["details"]["permission"], "view the audit log", "{event:#}");
    }
}
