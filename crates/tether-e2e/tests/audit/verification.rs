//! `tether audit verify` finds rows modified, removed or swapped in the hub's SQLite database.

use serde_json::Value;
use tether_e2e::{HubOptions, sqlite};

use crate::common::*;

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
