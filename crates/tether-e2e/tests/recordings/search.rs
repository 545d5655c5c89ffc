//! The recordings API of the web player and the recordings page: a search in the recorded
//! output is bounded (the newest 100 recordings) and says whether it read them all, narrowing
//! the filters makes it complete, an over-long text is refused; a recording's keyframes are
//! listed, and a window of it (`from_ms`, `to_ms`) holds only its own records. The CLI's
//! `sessions list --text` says when the search was not complete.

use serde_json::Value;
use tether_e2e::{HubOptions, WAIT, wait_for};

use crate::common::*;

/// `GET path` with the CLI's token; the status and the JSON answer.
fn get(hub: &tether_e2e::Hub, token: &str, path: &str) -> (u16, Value) {
    let bearer = format!("Bearer {token}");
    let (status, body) = hub.request("GET", path, &[("Authorization", &bearer)], b"");
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[test]
fn an_output_search_is_bounded_and_a_recording_is_read_in_windows() {
    let (hub, cli, agent) = setup(HubOptions::default());
    let token = cli.token();
    // 101 commands printing the text (computed by the shell: the command itself never holds it).
    std::thread::scope(|scope| {
        // Three at a time: the agent allows 4 shells per user.
        for worker in 0..3 {
            let (cli, name) = (&cli, &agent.name);
            scope.spawn(move || {
                for n in (worker..101).step_by(3) {
                    cli.exec(name, &[&format!("echo run-{n}; echo found-$((40+2))")])
                        .ok();
                }
            });
        }
    });
    wait_for("the 101 commands' recordings to end", WAIT, || {
        let (_, answer) = get(&hub, &token, "/api/management/v1/sessions?limit=1000");
        let sessions = answer["sessions"].as_array().cloned().unwrap_or_default();
        (sessions.len() >= 101 && sessions.iter().all(|s| s["ended_at"].is_i64())).then_some(())
    });

    let (status, answer) = get(
        &hub,
        &token,
        "/api/management/v1/sessions?text=FOUND-42&limit=1000",
    );
    assert_eq!(status, 200, "{answer}");
    let search = &answer["search"];
    assert_eq!(
        (
            search["scanned"].as_u64(),
            search["scan_limit"].as_u64(),
            search["complete"].as_bool()
        ),
        (Some(100), Some(100), Some(false)),
        "{search}"
    );
    let found = answer["sessions"].as_array().unwrap();
    assert_eq!(found.len(), 100, "the newest 100 were read, each matched");
    assert!(found.iter().all(|s| s["excerpt"] == "found-42"), "{found:?}");

    // Narrowed by date to the newer half: every one the filters keep was read.
    let all = get(&hub, &token, "/api/management/v1/sessions?limit=1000").1;
    let starts: Vec<i64> = all["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["started_at"].as_i64().unwrap())
        .collect();
    let from = starts[50];
    let (_, narrowed) = get(
        &hub,
        &token,
        &format!("/api/management/v1/sessions?text=found-42&from={from}&limit=1000"),
    );
    assert_eq!(narrowed["search"]["complete"], true, "{}", narrowed["search"]);
    let kept = starts.iter().filter(|start| **start >= from).count();
    assert_eq!(narrowed["sessions"].as_array().unwrap().len(), kept);
    let (_, missing) = get(
        &hub,
        &token,
        &format!("/api/management/v1/sessions?text=absent-text-99&from={from}"),
    );
    assert_eq!(missing["sessions"].as_array().map(Vec::len), Some(0), "{missing}");

    // The CLI's `sessions list --text` says so too, on stderr.
    let listed = cli.run(&[
        "sessions", "list", "--json", "--text", "found-42", "--limit", "1000",
    ]);
    let sessions: Vec<Value> = serde_json::from_str(listed.ok()).expect("sessions JSON");
    assert_eq!(sessions.len(), 100, "{listed}");
    assert!(listed.stderr.contains("newest 100 recordings only"), "{listed}");
    let old = cli.run(&[
        "sessions", "list", "--json", "--text", "found-42", "--until", "1h",
    ]);
    assert_eq!(old.ok().trim(), "[]", "started over an hour ago: none\n{old}");

    let long = "x".repeat(201);
    let (status, refused) = get(&hub, &token, &format!("/api/management/v1/sessions?text={long}"));
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"].as_str().unwrap_or("").contains("200 characters"),
        "{refused}"
    );

    // One recording's keyframes, and a window of it.
    let sid = found[0]["sid"].as_str().unwrap();
    let (status, segments) = get(
        &hub,
        &token,
        &format!("/api/management/v1/sessions/{sid}/segments"),
    );
    assert_eq!(status, 200, "{segments}");
    assert_eq!(segments["session"]["sid"], sid);
    assert_eq!(segments["segments"][0]["start_ms"], 0, "{segments}");
    let whole = recording(&hub, &token, sid, 0);
    let output_at = whole
        .records
        .iter()
        .find(|r| r.k == "o" && r.t > 0)
        .map(|r| r.t)
        .unwrap_or(1);
    let path = format!("/api/management/v1/sessions/{sid}/recording?from_ms=0&to_ms={output_at}");
    let bearer = format!("Bearer {token}");
    let (status, window) = hub.request("GET", &path, &[("Authorization", &bearer)], b"");
    assert_eq!(status, 200, "{window}");
    let times: Vec<u64> = window
        .lines()
        .skip(1)
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|record| record["k"] != "screen")
        .filter_map(|record| record["t"].as_u64())
        .collect();
    assert!(times.iter().all(|t| *t < output_at), "{window}");
    let (status, _) = get(
        &hub,
        &token,
        "/api/management/v1/sessions/no-such-session/segments",
    );
    assert_eq!(status, 404);
}
