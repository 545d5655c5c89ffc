//! Reading the audit log: time filters, pages, exports (CSV, JSON Lines), and only for admins.

use serde_json::Value;
use tether_e2e::HubOptions;

use crate::common::*;

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
