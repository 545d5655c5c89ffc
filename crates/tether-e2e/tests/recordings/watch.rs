//! `tether sessions watch` follows a live session without being able to type into it.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tether_e2e::{Hub, HubOptions, PtySession, block_on};
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

/// Opens the hub's watch WebSocket directly and sends frames a watcher should not be able to
/// send to the session; returns once they are sent.
fn raw_watcher_types(hub: &Hub, token: &str, sid: &str, text: &str) {
    block_on(async {
        let mut socket = tether_net::connect_websocket(
            &hub.hub_url(),
            &format!("/api/management/v1/sessions/{sid}/watch"),
            token,
            hub.tls(),
            None,
            16 << 20,
            Duration::from_secs(20),
        )
        .await
        .expect("watch WebSocket");
        // The size, then the screen.
        let size = socket.next().await.expect("a size frame").expect("size frame");
        assert!(matches!(size, Message::Text(_)), "{size:?}");
        socket
            .send(Message::Binary(text.as_bytes().to_vec().into()))
            .await
            .expect("send binary");
        socket.send(Message::Text(text.into())).await.expect("send text");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = socket.close(None).await;
    });
}

#[test]
fn live_watch_shows_output_and_cannot_type() {
    // Input is recorded here, so the recording shows what reached the session from anywhere.
    let (hub, cli, agent) = setup(HubOptions::default().env("TETHER_HUB_RECORD_INPUT", "true"));
    let token = cli.token();
    let mut terminal = PtySession::terminal(&cli, &agent.name);
    let (command, expected) = marker("first");
    terminal.send_line(&command);
    terminal.expect(&expected, LONG);

    let session = wait_session(&cli, "live", |s| {
        s["live"] == true && s["device_name"] == agent.name.as_str()
    });
    let sid = session["sid"].as_str().unwrap().to_owned();
    let table = cli.run(&["sessions", "list"]);
    assert!(
        table
            .ok()
            .lines()
            .any(|l| l.starts_with(&sid) && l.contains("live") && l.contains("(interactive)")),
        "{table}"
    );

    let mut watcher = PtySession::spawn(&cli, &["sessions", "watch", &sid[..8]], 24, 80);
    watcher.expect("read-only", LONG);
    // The screen as it is: the first marker is on it.
    watcher.expect(&expected, LONG);

    let (command, expected) = marker("watched");
    let command = format!("{command}-marker");
    terminal.send_line(&command);
    terminal.expect(&format!("{expected}-marker"), LONG);
    watcher.expect(&format!("{expected}-marker"), LONG);

    // Typing into the watcher (no q: that leaves) and into the hub's socket directly.
    let intruder = format!("intruder-{}", rand::random::<u32>());
    watcher.send(format!("echo {intruder}-cli\r"));
    raw_watcher_types(&hub, &token, &sid, &format!("echo {intruder}-raw\r"));
    // The session goes on; its output never shows the intruder.
    let (command, expected) = marker("still");
    terminal.send_line(&command);
    terminal.expect(&expected, LONG);
    watcher.expect(&expected, LONG);
    assert!(watcher.is_running(), "the watcher left:\n{}", watcher.output());

    // q leaves the watcher; a second watcher sees the session end.
    watcher.send("q");
    let status = watcher.expect_exit(LONG);
    assert!(status.success(), "{status}:\n{}", watcher.output());
    assert!(
        watcher.output().contains("tether: stopped watching"),
        "{}",
        watcher.output()
    );

    let mut second = PtySession::spawn(&cli, &["sessions", "watch", &sid], 24, 80);
    second.expect("read-only", LONG);
    terminal.send_line("exit");
    terminal.expect_exit(LONG);
    second.expect("tether: session ended", LONG);
    let status = second.expect_exit(LONG);
    assert!(status.success(), "{status}:\n{}", second.output());

    assert!(
        !terminal.output().contains(&intruder),
        "what was typed into a watcher reached the session:\n{}",
        terminal.output()
    );
    wait_session(&cli, "ended", |s| {
        s["sid"] == sid.as_str() && s["ended_at"].is_i64()
    });
    let recorded = recording(&hub, &token, &sid, 0);
    let input: Vec<u8> = recorded
        .records
        .iter()
        .filter(|r| r.k == "i")
        .flat_map(|r| r.d.iter().copied())
        .collect();
    assert!(
        find(&input, b"still").is_some(),
        "the operator's input is recorded (record_input)"
    );
    assert!(
        find(&input, intruder.as_bytes()).is_none(),
        "a watcher's input reached the session"
    );
    assert!(find(&recorded.output(), intruder.as_bytes()).is_none());

    // An ended session cannot be watched.
    let late = cli.run(&["sessions", "watch", &sid]);
    assert_eq!(late.code, Some(1), "{late}");
    assert!(late.stderr.contains("not live"), "{late}");
    let audit = cli.run(&[
        "audit",
        "list",
        "--json",
        "--session",
        &sid,
        "--action",
        "session.watch",
    ]);
    let events: Vec<Value> = serde_json::from_str(audit.ok()).unwrap();
    assert!(events.len() >= 3, "{audit}");
}
