//! The audit log fails closed everywhere, end to end: every download through the HTTP file API
//! is exactly one event (with its bytes and SHA-256), a `HEAD` is one `file.stat`; refusals that
//! no permission check makes (tokens wider than their owner, tokens minting tokens, cookies
//! without CSRF token or from another origin, WebSocket upgrades from another origin, someone
//! else's detached session, malformed port-forward requests) are `authorization` events; a flood
//! of garbage tokens is recorded within bounds; a download whose event cannot be written never
//! reaches the client whole; and a terminal cut by a SIGKILL of the hub is
//! closed as `interrupted` at the hub's next start, with the bytes of its recording.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use tether_e2e::{
    Agent, Cli, Hub, HubOptions, PtySession, WAIT, block_on, next_envelope,
    peers::{sha256_file, write_deterministic_file},
    wait_for,
};
use tether_proto::{Envelope, protocol, value::Value as MsgValue};
use tokio_tungstenite::tungstenite::Message;

const SHELL: &str = "[terminal]\nshell = \"/bin/sh\"\n";
/// SHA-256 of zero bytes.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

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

/// Waits until the filter matches `count` events, then checks that no more come (the list is
/// read again after the hub answered other requests).
fn exactly(cli: &Cli, args: &[&str], count: usize) -> Vec<Value> {
    wait_for(&format!("{count} audit events for {args:?}"), WAIT, || {
        Some(events(cli, args)).filter(|found| found.len() >= count)
    });
    let found = events(cli, args);
    assert_eq!(
        found.len(),
        count,
        "expected {count} events for {args:?}, got:\n{}",
        pretty(&found)
    );
    found
}

fn file_transfer_agent(root: &Path) -> String {
    format!(
        "{SHELL}\n[file_transfer]\nenabled = true\nroots = [{:?}]\n",
        root.display().to_string()
    )
}

/// `curl` against the hub with `cli`'s token; returns the status (the body goes to `output`).
fn curl(hub: &Hub, cli: &Cli, args: &[&str], output: &Path) -> u16 {
    let result = Command::new("curl")
        .args(["-sS", "--max-time", "60", "--cacert"])
        .arg(&hub.cert_path)
        .args(["-H", &format!("Authorization: Bearer {}", cli.token())])
        .args(["-w", "%{http_code}", "-o"])
        .arg(output)
        .args(args)
        .output()
        .expect("run curl (Debian: curl)");
    let text = String::from_utf8_lossy(&result.stdout).into_owned();
    text.trim().parse().unwrap_or_else(|_| {
        panic!(
            "curl printed no status: {text}\n{}",
            String::from_utf8_lossy(&result.stderr)
        )
    })
}

#[test]
fn every_http_download_is_one_event_with_its_bytes_and_sha256() {
    let device_dir = tempfile::tempdir().unwrap();
    let root = device_dir.path().join("data");
    std::fs::create_dir(&root).unwrap();
    let hub = Hub::start(HubOptions::default());
    let cli = hub.user_cli("alice", true);
    let agent = Agent::start(&hub, &file_transfer_agent(&root));
    cli.accept(&agent.name);
    let id = cli.device_id_by_name(&agent.name);
    let url = |path: &Path| {
        format!(
            "{}/api/management/v1/deviceconnect/devices/{id}/download?path={}",
            hub.url,
            path.display()
        )
    };
    let local = tempfile::tempdir().unwrap();
    let received = local.path().join("received");

    // A file of several chunks, with curl: the body, then exactly one success event.
    let big = root.join("big.bin");
    write_deterministic_file(&big, 5, 700_000);
    cli.wait_online(&agent.name);
    assert_eq!(curl(&hub, &cli, &[&url(&big)], &received), 200);
    assert_eq!(sha256_file(&received), sha256_file(&big), "the body is the file");
    let download = &exactly(&cli, &["--action", "file.download"], 1)[0];
    assert_eq!(download["outcome"], "success", "{download:#}");
    assert_eq!(download["actor_name"], "alice", "{download:#}");
    assert_eq!(download["object_id"], id.as_str(), "{download:#}");
    assert_eq!(download["details"]["path"], big.display().to_string());
    assert_eq!(download["details"]["bytes_sent"], 700_000, "{download:#}");
    assert_eq!(download["details"]["size"], 700_000, "{download:#}");
    assert_eq!(
        download["details"]["sha256"],
        sha256_file(&big).as_str(),
        "{download:#}"
    );

    // A zero-length file: one event too, with the SHA-256 of nothing.
    let empty = root.join("empty");
    std::fs::write(&empty, b"").unwrap();
    assert_eq!(curl(&hub, &cli, &[&url(&empty)], &received), 200);
    assert_eq!(std::fs::read(&received).unwrap(), b"");
    let downloads = exactly(&cli, &["--action", "file.download"], 2);
    let zero = &downloads[0];
    assert_eq!(zero["outcome"], "success", "{zero:#}");
    assert_eq!(zero["details"]["bytes_sent"], 0, "{zero:#}");
    assert_eq!(zero["details"]["sha256"], EMPTY_SHA256, "{zero:#}");

    // A HEAD reads the metadata only: one `file.stat`, no download.
    assert_eq!(curl(&hub, &cli, &["-I", &url(&big)], &received), 200);
    let stat = &exactly(&cli, &["--action", "file.stat"], 1)[0];
    assert_eq!(stat["outcome"], "success", "{stat:#}");
    assert_eq!(stat["details"]["size"], 700_000, "{stat:#}");
    exactly(&cli, &["--action", "file.download"], 2);

    // A refused download the way the web UI asks (HEAD, then GET): one event per request.
    let outside = device_dir.path().join("secret");
    std::fs::write(&outside, b"not yours").unwrap();
    let head = curl(&hub, &cli, &["-I", &url(&outside)], &received);
    let get = curl(&hub, &cli, &[&url(&outside)], &received);
    assert_eq!((head, get), (403, 403), "outside the roots");
    let stats = exactly(&cli, &["--action", "file.stat"], 2);
    assert_eq!(stats[0]["outcome"], "refused", "{:#}", stats[0]);
    let downloads = exactly(&cli, &["--action", "file.download"], 3);
    assert_eq!(downloads[0]["outcome"], "refused", "{:#}", downloads[0]);
    assert_eq!(downloads[0]["details"]["path"], outside.display().to_string());

    // A file that does not exist: one failure.
    let missing = root.join("missing");
    assert_eq!(curl(&hub, &cli, &[&url(&missing)], &received), 404);
    let downloads = exactly(&cli, &["--action", "file.download"], 4);
    assert_eq!(downloads[0]["outcome"], "failure", "{:#}", downloads[0]);
}

/// `POST /api/management/v1/tokens` with `bearer`; returns the status and body.
fn create_token_raw(hub: &Hub, bearer: &str, body: &str) -> (u16, String) {
    let authorization = format!("Bearer {bearer}");
    hub.request(
        "POST",
        "/api/management/v1/tokens",
        &[
            ("authorization", &authorization),
            ("content-type", "application/json"),
        ],
        body.as_bytes(),
    )
}

/// The one `authorization` refusal whose reason contains `needle`.
fn refusal_with(cli: &Cli, needle: &str) -> Value {
    let found = wait_for(&format!("an authorization refusal for {needle:?}"), WAIT, || {
        let matching: Vec<Value> = events(cli, &["--action", "authorization", "--outcome", "refused"])
            .into_iter()
            .filter(|event| {
                event["details"]["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(needle)
            })
            .collect();
        (!matching.is_empty()).then_some(matching)
    });
    assert_eq!(found.len(), 1, "one event for {needle:?}:\n{}", pretty(&found));
    found.into_iter().next().unwrap()
}

#[test]
fn refusals_of_tokens_cookies_and_origins_are_authorization_events() {
    let hub = Hub::start(HubOptions::default());
    let alice = hub.user_cli("alice", true);
    let bob = hub.user_cli("bob", false);

    // A token wider than its owner's rights.
    let (status, body) = create_token_raw(
        &hub,
        &bob.token(),
        r#"{"name":"wide","permissions":["manage_users"]}"#,
    );
    assert_eq!(status, 403, "{body}");
    let event = refusal_with(&alice, "so no token of yours may");
    assert_eq!(event["actor_name"], "bob", "{event:#}");
    assert_eq!(event["details"]["path"], "/api/management/v1/tokens", "{event:#}");

    // A token minting a token.
    let created = alice.run(&[
        "tokens",
        "create",
        "--name",
        "viewer",
        "--permission",
        "view_devices",
        "--json",
    ]);
    let token: Value = serde_json::from_str(created.ok()).unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    let (status, body) = create_token_raw(&hub, &token, r#"{"name":"child"}"#);
    assert_eq!(status, 403, "{body}");
    let event = refusal_with(&alice, "needs a login session");
    assert_eq!(event["actor_name"], "alice", "{event:#}");

    // A browser's cookie: a state change without the CSRF token, a request from another origin,
    // a WebSocket upgrade without an Origin.
    let cookie = format!("__Host-tether_session={}", alice.token());
    let (status, body) = hub.request(
        "POST",
        "/api/management/v1/auth/web/logout",
        &[("cookie", &cookie)],
        b"",
    );
    assert_eq!(status, 403, "{body}");
    let event = refusal_with(&alice, "CSRF token");
    assert_eq!(event["actor_name"], "alice", "the cookie's user: {event:#}");
    let (status, body) = hub.request(
        "GET",
        "/api/management/v1/devices",
        &[("cookie", &cookie), ("origin", "https://evil.example")],
        b"",
    );
    assert_eq!(status, 403, "{body}");
    refusal_with(&alice, "cross-origin request refused");
    let connect = "/api/management/v1/deviceconnect/devices/any/connect";
    let upgrade = [
        ("cookie", cookie.as_str()),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let (status, body) = hub.request("GET", connect, &upgrade, b"");
    assert_eq!(status, 403, "{body}");
    refusal_with(&alice, "needs an Origin");
    let mut foreign = upgrade.to_vec();
    foreign.push(("origin", "https://evil.example"));
    let (status, _) = hub.request("GET", connect, &foreign, b"");
    assert_eq!(status, 403);
    let refusals = events(&alice, &["--action", "authorization", "--outcome", "refused"]);
    let cross = refusals
        .iter()
        .filter(|e| e["details"]["reason"] == "cross-origin request refused")
        .count();
    assert_eq!(cross, 2, "the cross-origin upgrade too:\n{}", pretty(&refusals));
}

#[test]
fn a_flood_of_garbage_tokens_is_recorded_within_bounds() {
    let hub = Hub::start(HubOptions::default());
    let alice = hub.user_cli("alice", true);
    for n in 0..45 {
        let authorization = format!("Bearer garbage-{n}");
        let (status, _) = hub.request(
            "GET",
            "/api/management/v1/devices",
            &[("authorization", &authorization)],
            b"",
        );
        assert_eq!(status, 401);
    }
    // At most 20 per address and minute (docs/security.md); the rest are counted, not written.
    let recorded = events(&alice, &["--action", "authentication"]);
    assert_eq!(recorded.len(), 20, "{}", pretty(&recorded));
    // Authenticated users are not held back by the flood.
    assert!(alice.run(&["devices", "list"]).success());
}

/// Opens a session WebSocket on `device_id` as `cli`'s user (`query` appended to the path).
async fn open_session(
    hub: &Hub,
    cli: &Cli,
    device_id: &str,
    query: &str,
) -> Result<tether_net::WebSocket, String> {
    let path = format!("/api/management/v1/deviceconnect/devices/{device_id}/connect{query}");
    tether_net::connect_websocket(
        &hub.hub_url(),
        &path,
        &cli.token(),
        hub.tls(),
        None,
        1 << 20,
        Duration::from_secs(20),
    )
    .await
    .map_err(|error| error.to_string())
}

#[test]
fn refused_re_attaches_and_malformed_forwards_are_authorization_events() {
    let hub = Hub::start(HubOptions::default());
    let alice = hub.user_cli("alice", true);
    let bob = hub.user_cli("bob", false);
    let agent = Agent::start(
        &hub,
        &format!("{SHELL}\n[port_forward]\nenabled = true\nallow = [\"127.0.0.1:9\"]\n"),
    );
    alice.accept(&agent.name);
    let id = alice.device_id_by_name(&agent.name);

    // Alice's terminal: bob may use terminals, but not hers.
    let terminal = PtySession::terminal(&alice, &agent.name);
    terminal.send_line("echo mine-$((20+1))");
    terminal.expect("mine-21", WAIT);
    let opened = &exactly(&alice, &["--action", "terminal.open"], 1)[0];
    let sid = opened["session_id"].as_str().unwrap().to_owned();
    let refused = block_on(open_session(&hub, &bob, &id, &format!("?attach={sid}&offset=0")));
    let Err(error) = refused else {
        panic!("bob re-attached to alice's terminal");
    };
    assert!(error.contains("403"), "{error}");
    let event = refusal_with(&alice, "belongs to another user");
    assert_eq!(event["actor_name"], "bob", "{event:#}");

    // A port-forward `new` without its port, from a session of alice.
    block_on(async {
        use futures_util::SinkExt as _;
        let mut socket = open_session(&hub, &alice, &id, "").await.expect("a session");
        let accept = next_envelope(&mut socket).await;
        assert_eq!(accept.typ, "accept", "{accept:?}");
        let mut new = Envelope::new(protocol::PORT_FORWARD, "new", &accept.sid);
        new.props.set("connection_id", MsgValue::Str("c1".into()));
        let body = MsgValue::Map(vec![("remote_host".into(), MsgValue::Str("127.0.0.1".into()))]);
        new = new.with_body(body.encode());
        socket.send(Message::Binary(new.encode().into())).await.unwrap();
        let reply = next_envelope(&mut socket).await;
        assert_eq!(reply.typ, "error", "{reply:?}");
    });
    let event = refusal_with(&alice, "malformed port-forward `new`");
    assert_eq!(event["actor_name"], "alice", "{event:#}");
    assert_eq!(event["object_id"], id.as_str(), "{event:#}");
    assert_eq!(event["details"]["code"], 400, "{event:#}");
    assert!(event["session_id"].is_string(), "{event:#}");
    drop(terminal);
}

/// A recording's events as the hub exports it (asciicast): what it has stored so far. Without
/// the header line, which names the command from the start.
fn recorded_text(cli: &Cli, sid: &str) -> String {
    let output = cli.run(&["sessions", "export", sid]);
    match output.success() {
        true => output.stdout.lines().skip(1).collect::<Vec<_>>().join("\n"),
        false => String::new(),
    }
}

#[test]
fn a_terminal_cut_by_a_hub_sigkill_is_closed_as_interrupted_at_the_next_start() {
    let mut hub = Hub::start(HubOptions::default());
    let cli = hub.user_cli("alice", true);
    let agent = Agent::start(&hub, SHELL);
    cli.accept(&agent.name);

    // A command (not resumable) and an interactive shell (resumable) are open at the kill.
    let mut exec = cli.command(&[
        "exec",
        &agent.name,
        "--",
        "sh",
        "-c",
        "echo exec-output-here; sleep 600",
    ]);
    let mut exec = exec
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tether exec");
    let terminal = PtySession::terminal(&cli, &agent.name);
    terminal.send_line("echo shell-$((40+2))");
    terminal.expect("shell-42", WAIT);
    let opened = exactly(&cli, &["--action", "terminal.open"], 2);
    let sids: Vec<String> = opened
        .iter()
        .map(|event| event["session_id"].as_str().unwrap().to_owned())
        .collect();
    // Both recordings hold output before the kill (the recorder stores it every second).
    for sid in &sids {
        wait_for("the stored recording", WAIT, || {
            let text = recorded_text(&cli, sid);
            (text.contains("exec-output-here") || text.contains("shell-42")).then_some(())
        });
    }
    hub.kill();
    hub.restart();

    let closed = exactly(
        &cli,
        &["--action", "terminal.close", "--outcome", "interrupted"],
        2,
    );
    let sessions: Vec<Value> = serde_json::from_str(cli.run(&["sessions", "list", "--json"]).ok()).unwrap();
    for close in &closed {
        let sid = close["session_id"].as_str().unwrap();
        assert!(sids.iter().any(|s| s == sid), "{close:#}");
        assert_eq!(close["actor_name"], "alice", "{close:#}");
        let bytes = close["details"]["bytes_out"].as_u64().unwrap_or(0);
        assert!(bytes > 0, "bytes from the recording: {close:#}");
        let row = sessions
            .iter()
            .find(|s| s["sid"] == sid)
            .unwrap_or_else(|| panic!("a session row for {sid}: {sessions:#?}"));
        assert!(!row["ended_at"].is_null(), "the row is closed: {row:#}");
        assert_eq!(row["bytes_out"].as_u64(), Some(bytes), "{row:#}");
    }
    let resumable: Vec<bool> = closed
        .iter()
        .map(|c| c["details"]["resumable"].as_bool().unwrap_or(false))
        .collect();
    assert!(
        resumable.contains(&true) && resumable.contains(&false),
        "the shell may be resumed, the command not: {}",
        pretty(&closed)
    );
    // The shell survived: its re-attach opens the next part, and is not closed as interrupted.
    wait_for("the re-attached shell's terminal.open", WAIT * 2, || {
        events(&cli, &["--action", "terminal.open"])
            .into_iter()
            .find(|e| e["details"]["resumed"] == true)
    });
    terminal.send_line("echo again-$((1+1))");
    terminal.expect("again-2", WAIT);
    let output = cli.run(&["audit", "verify"]);
    assert!(output.ok().starts_with("audit log intact"), "{output}");
    let _ = exec.kill();
    let _ = exec.wait();
}

#[test]
fn a_download_whose_event_cannot_be_written_never_completes() {
    let device_dir = tempfile::tempdir().unwrap();
    let root = device_dir.path().join("data");
    std::fs::create_dir(&root).unwrap();
    let hub = Hub::start(HubOptions::default());
    let cli = hub.user_cli("alice", true);
    let agent = Agent::start(&hub, &file_transfer_agent(&root));
    cli.accept(&agent.name);
    cli.wait_online(&agent.name);
    let id = cli.device_id_by_name(&agent.name);
    let file = root.join("payload");
    write_deterministic_file(&file, 9, 700_000);

    // The database refuses `file.download` events (a real SQLite trigger, as a full disk would).
    let trigger = "CREATE TRIGGER no_downloads BEFORE INSERT ON audit_events \
                   WHEN NEW.action = 'file.download' BEGIN SELECT RAISE(ABORT, 'audit refused'); END;";
    tether_e2e::sqlite(&hub.data_dir().join("hub.db"), trigger);

    let local = tempfile::tempdir().unwrap();
    let received = local.path().join("received");
    let url = format!(
        "{}/api/management/v1/deviceconnect/devices/{id}/download?path={}",
        hub.url,
        file.display()
    );
    let result = Command::new("curl")
        .args(["-sS", "--max-time", "60", "--cacert"])
        .arg(&hub.cert_path)
        .args(["-H", &format!("Authorization: Bearer {}", cli.token())])
        .arg("-o")
        .arg(&received)
        .arg(&url)
        .output()
        .expect("run curl (Debian: curl)");
    let got = std::fs::metadata(&received).map(|m| m.len()).unwrap_or(0);
    assert!(
        !result.status.success() && got < 700_000,
        "the client got {got} of 700000 bytes ({}): {}",
        result.status,
        String::from_utf8_lossy(&result.stderr)
    );
    // Nothing was recorded as downloaded, and the hub still answers.
    assert!(events(&cli, &["--action", "file.download"]).is_empty());
    assert!(cli.run(&["devices", "list"]).success());
}
