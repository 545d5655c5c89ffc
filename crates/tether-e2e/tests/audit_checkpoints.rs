//! Signed checkpoints of the audit chain, end to end: whoever can write the hub's database can
//! rewrite the chain so that `tether audit verify` still passes (an event edited and every later
//! hash recomputed, the newest events deleted, the oldest deleted and `audit_anchor` rewritten);
//! `tether audit verify --checkpoint FILE`, holding checkpoints the CLI took or the hub wrote,
//! names each rewrite, while real retention (whose anchor the hub signs) still verifies. The hub
//! checkpoints at start, on its interval and on SIGTERM, to a file and to syslog, with a key of
//! its own (mode 0600).

use std::{os::unix::fs::PermissionsExt as _, os::unix::net::UnixDatagram, path::Path};

use serde_json::Value;
use tether_e2e::{Cli, CliOutput, Hub, HubOptions, WAIT, sqlite, sqlite_with, wait_for};
use tether_proto::{audit::AuditEvent, audit_checkpoint::Statement};

/// A hub with `config` and an admin `alice` whose CLI is logged in.
fn hub_and_admin(config: &str) -> (Hub, Cli) {
    let hub = Hub::start(HubOptions::default().config(config));
    let cli = hub.user_cli("alice", true);
    (hub, cli)
}

/// Some history: failed logins and refused requests, a dozen events or so.
fn history(hub: &Hub) {
    let stranger = hub.cli();
    for user in ["u1", "u2", "u3", "u4"] {
        stranger.run_with_stdin(&["login", user, "--password-stdin"], Some("x\n"));
    }
    for _ in 0..4 {
        hub.request("GET", "/api/management/v1/devices", &[], b"");
    }
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The stored chain, oldest first, as the hub hashes it.
fn stored_events(db: &Path) -> Vec<AuditEvent> {
    let text = sqlite_with(db, &["-json"], "SELECT * FROM audit_events ORDER BY seq;");
    if text.trim().is_empty() {
        return Vec::new();
    }
    let rows: Vec<Value> = serde_json::from_str(&text).expect("sqlite3 JSON");
    rows.into_iter()
        .map(|mut row| {
            let details = row["details"].as_str().unwrap_or("{}").to_owned();
            row["details"] = serde_json::from_str(&details).expect("details JSON");
            serde_json::from_value(row).expect("an audit row")
        })
        .collect()
}

/// Recomputes every hash from `events[from]` on with the hub's algorithm (shared with it
/// through tether-proto), as an attacker with write access to the database would.
fn recompute_from(events: &mut [AuditEvent], from: usize) {
    for index in from..events.len() {
        if index > 0 {
            events[index].prev_hash = events[index - 1].hash.clone();
        }
        events[index].hash = events[index].compute_hash();
    }
}

/// Writes `events` back over the stored rows (same `seq`), in one transaction.
fn store_events(db: &Path, events: &[AuditEvent]) {
    let mut sql = String::from("BEGIN IMMEDIATE;\n");
    for event in events {
        sql.push_str(&format!(
            "UPDATE audit_events SET time = {}, outcome = {}, details = {}, prev_hash = {}, hash = {} \
             WHERE seq = {};\n",
            event.time,
            quote(&event.outcome),
            quote(&event.details.to_string()),
            quote(&event.prev_hash),
            quote(&event.hash),
            event.seq
        ));
    }
    sql.push_str("COMMIT;");
    sqlite(db, &sql);
}

/// `tether audit checkpoint`: one JSON line, appended to `held`.
fn take_checkpoint(cli: &Cli, held: &Path) -> Statement {
    let output = cli.run(&["audit", "checkpoint"]);
    let line = output.ok().trim().to_owned();
    assert_eq!(line.lines().count(), 1, "one JSON line: {output}");
    let statement: Statement = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {output}"));
    let mut text = std::fs::read_to_string(held).unwrap_or_default();
    text.push_str(&line);
    text.push('\n');
    std::fs::write(held, text).unwrap();
    statement
}

fn verify_with(cli: &Cli, held: &Path) -> CliOutput {
    cli.run(&["audit", "verify", "--checkpoint", held.to_str().unwrap()])
}

fn assert_intact(output: &CliOutput) {
    assert_eq!(output.code, Some(0), "{output}");
    assert!(output.stdout.starts_with("audit log intact"), "{output}");
}

/// Exit 1, and the problem line `audit log BROKEN at event SEQ: KIND (`.
fn assert_broken(output: &CliOutput, seq: i64, kind: &str) {
    assert_eq!(output.code, Some(1), "{output}");
    let expected = format!("audit log BROKEN at event {seq}: {kind} (");
    assert!(
        output.stdout.lines().any(|line| line.starts_with(&expected)),
        "expected a line {expected}...\n{output}"
    );
}

fn plain_verify_passes(cli: &Cli) {
    let output = cli.run(&["audit", "verify"]);
    assert_eq!(output.code, Some(0), "plain verify passes the rewrite: {output}");
    assert!(output.stdout.starts_with("audit log intact"), "{output}");
}

fn lines(path: &Path) -> Vec<Statement> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("tether-e2e-checkpoints-")
        .tempdir()
        .unwrap()
}

/// SIGTERM, and the hub exits on its own.
fn stop_gracefully(hub: &mut Hub) {
    hub.process().signal(libc::SIGTERM);
    let status = hub.process().wait_exit(WAIT);
    assert!(
        status.is_some_and(|status| status.success()),
        "the hub should exit cleanly on SIGTERM: {status:?}\n{}",
        hub.log()
    );
}

// ---------------------------------------------------------------------------------------------

#[test]
fn an_edit_with_every_later_hash_recomputed_is_found_by_a_checkpoint() {
    let (hub, cli) = hub_and_admin("");
    history(&hub);
    let work = scratch();
    let held = work.path().join("held.jsonl");
    let checkpoint = take_checkpoint(&cli, &held);
    assert_intact(&verify_with(&cli, &held));

    let db = hub.data_dir().join("hub.db");
    let mut events = stored_events(&db);
    assert_eq!(
        events.last().map(|e| e.seq),
        Some(checkpoint.seq),
        "the checkpoint is the head"
    );
    events[2].details = serde_json::json!({"reason": "nothing to see"});
    recompute_from(&mut events, 2);
    store_events(&db, &events);

    plain_verify_passes(&cli);
    let output = verify_with(&cli, &held);
    assert_broken(&output, checkpoint.seq, "rewritten");
    let json: Value = serde_json::from_str(
        &cli.run(&[
            "audit",
            "verify",
            "--json",
            "--checkpoint",
            held.to_str().unwrap(),
        ])
        .stdout,
    )
    .unwrap();
    assert_eq!(json["ok"], false, "{json:#}");
    assert_eq!(json["problems"][0]["kind"], "rewritten", "{json:#}");
    // Nor does the hub sign the rewritten chain: it no longer extends the head it signed.
    let refused = cli.run(&["audit", "checkpoint"]);
    assert_ne!(refused.code, Some(0), "{refused}");
    assert!(
        refused
            .stderr
            .contains("does not verify since the last checkpoint"),
        "{refused}"
    );
}

#[test]
fn deleting_the_newest_events_is_found_by_a_checkpoint() {
    let (hub, cli) = hub_and_admin("");
    history(&hub);
    let work = scratch();
    let held = work.path().join("held.jsonl");
    let checkpoint = take_checkpoint(&cli, &held);

    let db = hub.data_dir().join("hub.db");
    let keep = checkpoint.seq - 3;
    sqlite(&db, &format!("DELETE FROM audit_events WHERE seq > {keep};"));

    plain_verify_passes(&cli);
    let output = verify_with(&cli, &held);
    assert_broken(&output, checkpoint.seq, "truncated");
    assert!(
        output.stdout.contains(&format!("the log ends at event {keep}")),
        "{output}"
    );
}

#[test]
fn deleting_the_oldest_events_and_rewriting_the_anchor_is_found() {
    let (hub, cli) = hub_and_admin("");
    history(&hub);
    let work = scratch();
    let held = work.path().join("held.jsonl");
    let checkpoint = take_checkpoint(&cli, &held);

    let db = hub.data_dir().join("hub.db");
    let events = stored_events(&db);
    let cut = &events[2];
    sqlite(
        &db,
        &format!(
            "BEGIN IMMEDIATE; DELETE FROM audit_events WHERE seq <= {seq}; \
             INSERT INTO audit_anchor (id, seq, hash) VALUES (1, {seq}, {hash}); COMMIT;",
            seq = cut.seq,
            hash = quote(&cut.hash)
        ),
    );
    plain_verify_passes(&cli);
    let output = verify_with(&cli, &held);
    assert_broken(&output, cut.seq, "anchor");
    assert!(output.stdout.contains("no signed statement"), "{output}");
    assert_eq!(
        output.stdout.lines().count(),
        1,
        "only the anchor is wrong: {output}"
    );

    // A checkpoint's signature does not pass for retention's: with a checkpoint of the head,
    // everything up to it deleted and the checkpoint stored as the anchor's statement.
    let head = take_checkpoint(&cli, &held);
    assert_eq!(head.seq, checkpoint.seq);
    sqlite(
        &db,
        &format!(
            "BEGIN IMMEDIATE; DELETE FROM audit_events WHERE seq <= {seq}; \
             UPDATE audit_anchor SET seq = {seq}, hash = {hash}, statement = {statement}; COMMIT;",
            seq = head.seq,
            hash = quote(&head.hash),
            statement = quote(&serde_json::to_string(&head).unwrap())
        ),
    );
    plain_verify_passes(&cli);
    let output = verify_with(&cli, &held);
    assert_broken(&output, head.seq, "anchor");
    assert!(
        output.stdout.contains("carries a checkpoint signature"),
        "{output}"
    );
}

#[test]
fn retention_with_a_signed_anchor_still_verifies_and_a_moved_anchor_does_not() {
    let work = scratch();
    let key = work.path().join("keys/audit.key");
    let config = format!("audit_signing_key = {:?}\n", key.to_str().unwrap());
    let (mut hub, cli) = hub_and_admin(&config);
    assert_eq!(mode(&key), 0o600, "the configured key file is private");
    assert!(
        !hub.data_dir().join("audit-signing.key").exists(),
        "no key in the data directory when one is configured elsewhere"
    );
    history(&hub);

    // Make the whole history three days old (a consistent chain, as if it had been written
    // then), so that a one-day retention prunes it at the next start.
    stop_gracefully(&mut hub);
    let db = hub.data_dir().join("hub.db");
    let mut events = stored_events(&db);
    for event in &mut events {
        event.time -= 3 * 86_400_000;
    }
    recompute_from(&mut events, 0);
    store_events(&db, &events);
    let old_head = events.last().unwrap().seq;
    hub.restart();

    let held = work.path().join("held.jsonl");
    let at_old_head = take_checkpoint(&cli, &held);
    assert_eq!(at_old_head.seq, old_head);
    history(&hub);
    let newer = take_checkpoint(&cli, &held);
    assert!(newer.seq > old_head);
    assert_intact(&verify_with(&cli, &held));

    stop_gracefully(&mut hub);
    std::fs::write(
        hub.dir().join("hub.toml"),
        format!("{config}audit_retention_days = 1\n"),
    )
    .unwrap();
    hub.restart();
    wait_for("retention to prune the old events", WAIT, || {
        let output = cli.run(&["audit", "list", "--json", "--action", "audit.prune"]);
        let found: Vec<Value> = serde_json::from_str(output.ok()).unwrap();
        (!found.is_empty()).then_some(())
    });
    let first = stored_events(&db).first().map(|e| e.seq);
    assert_eq!(first, Some(old_head + 1), "retention deleted the old events");
    let statement = sqlite(&db, "SELECT statement FROM audit_anchor;");
    assert!(
        statement.contains("\"kind\":\"anchor\""),
        "a signed anchor: {statement}"
    );

    plain_verify_passes(&cli);
    let output = verify_with(&cli, &held);
    assert_intact(&output);
    assert!(output.stdout.contains("2 of 2 checkpoints match"), "{output}");

    // Someone deletes two more of the oldest events and moves the anchor onto the next one,
    // keeping retention's statement: the statement is about another event.
    let events = stored_events(&db);
    let cut = &events[1];
    sqlite(
        &db,
        &format!(
            "BEGIN IMMEDIATE; DELETE FROM audit_events WHERE seq <= {seq}; \
             UPDATE audit_anchor SET seq = {seq}, hash = {hash}; COMMIT;",
            seq = cut.seq,
            hash = quote(&cut.hash)
        ),
    );
    plain_verify_passes(&cli);
    let output = verify_with(&cli, &held);
    assert_broken(&output, cut.seq, "anchor");
    assert!(
        output.stdout.contains("signed statement is about event"),
        "{output}"
    );
}

#[test]
fn the_hub_checkpoints_at_start_on_its_interval_and_on_sigterm_to_a_file_and_syslog() {
    let work = scratch();
    let file = work.path().join("checkpoints.jsonl");
    let socket_path = work.path().join("log.sock");
    let syslog = UnixDatagram::bind(&socket_path).unwrap();
    syslog.set_read_timeout(Some(WAIT)).unwrap();
    let config = format!(
        "audit_checkpoint_interval_secs = 1\naudit_checkpoint_file = {:?}\naudit_checkpoint_syslog = {:?}\n",
        file.to_str().unwrap(),
        socket_path.to_str().unwrap()
    );
    let (mut hub, cli) = hub_and_admin(&config);

    let key = hub.data_dir().join("audit-signing.key");
    assert_eq!(mode(&key), 0o600, "the audit signing key is private");
    assert_ne!(
        std::fs::read(&key).unwrap(),
        std::fs::read(hub.data_dir().join("signing.key")).unwrap(),
        "the audit key is not the token signing key"
    );
    let at_start = wait_for("the checkpoint made at start", WAIT, || {
        lines(&file).first().cloned()
    });
    let public_key = at_start.public_key.clone();

    // A datagram per checkpoint on the syslog socket, tagged, carrying the same JSON.
    let mut buffer = vec![0u8; 4096];
    let size = syslog
        .recv(&mut buffer)
        .expect("a checkpoint on the syslog socket");
    let message = String::from_utf8_lossy(&buffer[..size]).into_owned();
    assert!(message.starts_with("<38>tether-hub["), "{message}");
    let json = &message[message.find('{').expect("JSON in the syslog message")..];
    let sent: Statement = serde_json::from_str(json).unwrap();
    assert_eq!(sent.public_key, public_key);

    // The chain moves; the interval signs the new head.
    history(&hub);
    let head = wait_for("a checkpoint on the interval after the chain moved", WAIT, || {
        let head = stored_events(&hub.data_dir().join("hub.db"))
            .last()
            .map(|e| e.seq)?;
        lines(&file).iter().any(|c| c.seq == head).then_some(head)
    });
    assert!(head > at_start.seq);

    let before = lines(&file).len();
    stop_gracefully(&mut hub);
    let after = lines(&file);
    assert_eq!(after.len(), before + 1, "one checkpoint on SIGTERM");
    let last = after.last().unwrap();
    let final_head = stored_events(&hub.data_dir().join("hub.db")).last().unwrap().seq;
    assert_eq!(last.seq, final_head, "the shutdown checkpoint is the final head");
    assert!(after.iter().all(|c| c.public_key == public_key), "one key");

    // The restarted hub keeps its key, and every checkpoint written verifies the chain.
    hub.restart();
    let restarted = wait_for("the checkpoint of the second start", WAIT, || {
        lines(&file).get(after.len()).cloned()
    });
    assert_eq!(restarted.public_key, public_key);
    let held = lines(&file).len();
    let output = verify_with(&cli, &file);
    assert_intact(&output);
    assert!(
        output
            .stdout
            .contains(&format!("{held} of {held} checkpoints match")),
        "{output}"
    );
}
