//! Terminal session recordings: what the hub records is exactly what the user's terminal
//! received (exec output, interactive output with its resizes), `tether replay` plays it back,
//! `tether sessions export` writes an asciicast that `asciinema` accepts, seeking into a large
//! recording does not stream it from the start, and `tether sessions watch` follows a live
//! session without being able to type into it.

use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tether_e2e::{Agent, Cli, Hub, HubOptions, PtySession, WAIT, block_on, wait_for};
use tokio_tungstenite::tungstenite::Message;

const LONG: Duration = Duration::from_secs(20);
const SHELL: &str = "[terminal]\nshell = \"/bin/sh\"\n";
const CLEAR: &[u8] = b"\x1b[H\x1b[2J";

/// A marker the shell computes, so the typed command (echoed) never matches what the test waits
/// for: `echo PREFIX-$((N+1))` prints `PREFIX-{N+1}`.
fn marker(prefix: &str) -> (String, String) {
    let n: u32 = rand::random::<u32>() % 1_000_000 + 1000;
    (format!("echo {prefix}-$(({n}+1))"), format!("{prefix}-{}", n + 1))
}

fn setup(options: HubOptions) -> (Hub, Cli, Agent) {
    let hub = Hub::start(options);
    let cli = hub.user_cli("alice", true);
    let agent = Agent::start(&hub, SHELL);
    cli.accept(&agent.name);
    (hub, cli, agent)
}

/// `tether sessions list --json`.
fn sessions(cli: &Cli) -> Vec<Value> {
    let output = cli.run(&["sessions", "list", "--json"]);
    serde_json::from_str(output.ok()).unwrap_or_else(|e| panic!("sessions list --json: {e}\n{output}"))
}

/// Waits for a listed session that satisfies `check`.
fn wait_session(cli: &Cli, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    wait_for(&format!("a session {what}"), WAIT, || {
        sessions(cli).into_iter().find(|session| check(session))
    })
}

/// One record of a recording, its data decoded.
#[derive(Debug, Clone)]
struct Rec {
    t: u64,
    k: String,
    d: Vec<u8>,
    w: Option<u64>,
    h: Option<u64>,
}

struct Recording {
    header: Value,
    records: Vec<Rec>,
    /// The size of the HTTP body as sent.
    body_len: usize,
}

impl Recording {
    fn output(&self) -> Vec<u8> {
        self.records
            .iter()
            .filter(|r| r.k == "o")
            .flat_map(|r| r.d.iter().copied())
            .collect()
    }
}

/// `GET /api/management/v1/sessions/{sid}/recording?from_ms=FROM`, parsed (with curl: the
/// harness's own HTTP helper is for small answers, a recording can be tens of megabytes).
fn recording(hub: &Hub, token: &str, sid: &str, from_ms: u64) -> Recording {
    let path = format!("/api/management/v1/sessions/{sid}/recording?from_ms={from_ms}");
    let output = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "300", "--cacert"])
        .arg(&hub.cert_path)
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["-w", "\n%{http_code}"])
        .arg(format!("{}{path}", hub.url))
        .output()
        .expect("run curl (Debian: curl)");
    let mut body = output.stdout;
    let split = body.iter().rposition(|&b| b == b'\n').unwrap_or(0);
    let status: u16 = String::from_utf8_lossy(&body[split..])
        .trim()
        .parse()
        .unwrap_or_else(|_| {
            panic!(
                "curl printed no status for GET {path}: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    body.truncate(split);
    let text = String::from_utf8(body).expect("the recording is UTF-8 JSON Lines");
    assert_eq!(status, 200, "GET {path}: {text}");
    let mut lines = text.lines().filter(|line| !line.trim().is_empty());
    let header: Value = serde_json::from_str(lines.next().expect("a header line")).expect("header JSON");
    let records = lines
        .map(|line| {
            let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("record {line}: {e}"));
            Rec {
                t: value["t"].as_u64().expect("t"),
                k: value["k"].as_str().expect("k").to_owned(),
                d: value["d"]
                    .as_str()
                    .map(|d| {
                        base64::engine::general_purpose::STANDARD
                            .decode(d)
                            .expect("base64 d")
                    })
                    .unwrap_or_default(),
                w: value["w"].as_u64(),
                h: value["h"].as_u64(),
            }
        })
        .collect();
    Recording {
        header,
        records,
        body_len: text.len(),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

#[test]
fn exec_output_is_recorded_replayed_and_exported_byte_for_byte() {
    let (hub, cli, agent) = setup(HubOptions::default());
    let token = cli.token();

    // Escape sequences, UTF-8, and enough lines to span many output frames.
    let command = "printf 'rec-start \\033[1mbold\\033[0m caf\\303\\251\\n'; seq 1 2000; printf 'rec-end\\n'";
    let exec = cli.exec(&agent.name, &[command]);
    let received = exec.ok().as_bytes().to_vec();
    assert!(received.ends_with(b"1999\n2000\nrec-end\n"), "{exec}");

    let session = wait_session(&cli, "for the exec, ended", |s| {
        s["command"].as_str() == Some(command) && s["ended_at"].is_i64()
    });
    let sid = session["sid"].as_str().unwrap().to_owned();
    assert_eq!(session["live"], false, "{session}");
    assert_eq!(session["device_name"], agent.name.as_str(), "{session}");
    assert_eq!(session["user_name"], "alice", "{session}");
    assert_eq!(
        session["bytes_out"].as_u64(),
        Some(received.len() as u64),
        "{session}"
    );

    // The recording: a header, a screen keyframe first, then the output exactly as received.
    let recorded = recording(&hub, &token, &sid, 0);
    assert_eq!(recorded.header["sid"], sid.as_str(), "{}", recorded.header);
    assert_eq!(recorded.header["live"], false);
    assert_eq!(
        recorded.records.first().map(|r| r.k.as_str()),
        Some("screen"),
        "{:?}",
        recorded.records.first()
    );
    assert!(
        recorded.records.windows(2).all(|pair| pair[0].t <= pair[1].t),
        "record times go forward"
    );
    assert!(
        recorded.output() == received,
        "the recorded output differs from what exec printed ({} recorded bytes, {} received)",
        recorded.output().len(),
        received.len()
    );

    // `tether replay --no-wait` writes the (cleared) screen, then the same bytes; by a prefix
    // of the session id too.
    let replay = cli.run(&["replay", &sid[..8], "--no-wait"]);
    let replayed = replay.ok().as_bytes();
    assert!(replayed.starts_with(CLEAR), "{replay}");
    assert!(
        replayed.ends_with(&received),
        "replay --no-wait must end with the exec output:\n{replay}"
    );
    let screen_len = replayed.len() - received.len();
    assert!(
        screen_len < 1000,
        "the initial (empty) screen is small: {screen_len} bytes"
    );

    // With timing, at high speed and without a terminal on stdin: the same output.
    let timed = cli.run(&["replay", &sid, "--speed", "64"]);
    assert!(timed.ok().as_bytes().ends_with(&received), "{timed}");

    // The table names the session, its state and command.
    let table = cli.run(&["sessions", "list", "--device", &agent.name]);
    let line = table
        .ok()
        .lines()
        .find(|line| line.starts_with(&sid))
        .unwrap_or_else(|| panic!("{sid} not in the table:\n{table}"));
    assert!(line.contains("alice") && line.contains(&agent.name), "{line}");
    assert!(line.contains("ended") && line.contains("rec-start"), "{line}");
    assert!(table.stdout.starts_with("SESSION"), "{table}");
    let by_user = cli.run(&["sessions", "list", "--json", "--user", "nobody-such"]);
    assert_eq!(by_user.ok().trim(), "[]", "{by_user}");

    // The asciicast export is accepted by asciinema.
    let dir = tempfile::tempdir().unwrap();
    let cast = dir.path().join("session.cast");
    cli.run(&[
        "sessions",
        "export",
        &sid[..12],
        "--output",
        cast.to_str().unwrap(),
    ])
    .ok();
    let text = std::fs::read_to_string(&cast).unwrap();
    let header: Value = serde_json::from_str(text.lines().next().unwrap()).expect("cast header");
    assert_eq!(header["version"], 2, "{header}");
    assert!(text.contains("rec-end"), "{text}");
    let asciinema = std::process::Command::new("script")
        .args(["-qec", &format!("asciinema cat {}", cast.display()), "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run `script -qec 'asciinema cat FILE'` (needs bsdutils and asciinema)");
    let shown = String::from_utf8_lossy(&asciinema.stdout);
    assert!(
        asciinema.status.success(),
        "asciinema cat failed ({}):\n{shown}\n{}",
        asciinema.status,
        String::from_utf8_lossy(&asciinema.stderr)
    );
    assert!(
        shown.contains("rec-start") && shown.contains("2000") && shown.contains("rec-end"),
        "asciinema cat did not show the session:\n{shown}"
    );

    // Each viewing is in the audit log.
    let audit = cli.run(&["audit", "list", "--json", "--session", &sid]);
    let actions: Vec<Value> = serde_json::from_str(audit.ok()).expect("audit JSON");
    let count = |action: &str| actions.iter().filter(|e| e["action"] == action).count();
    assert!(count("recording.view") >= 3, "{audit}");
    assert!(count("recording.export") >= 1, "{audit}");

    // Unknown sessions are refused clearly.
    let unknown = cli.run(&["replay", "zzzz-no-such", "--no-wait"]);
    assert_eq!(unknown.code, Some(1), "{unknown}");
    assert!(unknown.stderr.contains("no session"), "{unknown}");
}

#[test]
fn interactive_session_records_resizes_between_outputs() {
    let (hub, cli, agent) = setup(HubOptions::default());
    let token = cli.token();
    let mut terminal = PtySession::terminal(&cli, &agent.name);
    let (before, before_out) = marker("before-resize");
    terminal.send_line(&before);
    terminal.expect(&before_out, LONG);
    // A pause, so that the recording lasts long enough for the slow replays below (on loopback
    // the rest of this session takes a few milliseconds).
    terminal.send_line("sleep 2; echo slept-$((1+1))");
    terminal.expect("slept-2", LONG);

    terminal.resize(33, 101);
    let mut resized = false;
    for _ in 0..10 {
        terminal.send_line("stty size");
        if terminal.try_expect("33 101", Duration::from_secs(2)).is_some() {
            resized = true;
            break;
        }
    }
    assert!(
        resized,
        "the remote terminal never became 33 x 101:\n{}",
        terminal.output()
    );
    let (after, after_out) = marker("after-resize");
    terminal.send_line(&after);
    terminal.expect(&after_out, LONG);
    terminal.send_line("exit");
    terminal.expect_exit(LONG);

    let session = wait_session(&cli, "interactive, ended", |s| {
        s["command"].is_null() && s["ended_at"].is_i64() && s["device_name"] == agent.name.as_str()
    });
    let sid = session["sid"].as_str().unwrap().to_owned();
    assert_eq!(
        (session["width"].as_u64(), session["height"].as_u64()),
        (Some(80), Some(24))
    );

    let recorded = recording(&hub, &token, &sid, 0);
    let records = &recorded.records;
    let resize = records
        .iter()
        .position(|r| r.k == "r" && r.w == Some(101) && r.h == Some(33))
        .unwrap_or_else(|| panic!("no resize to 101x33 recorded: {records:?}"));
    let output_of = |range: &[Rec]| -> Vec<u8> {
        range
            .iter()
            .filter(|r| r.k == "o")
            .flat_map(|r| r.d.iter().copied())
            .collect()
    };
    let earlier = output_of(&records[..resize]);
    let later = output_of(&records[resize..]);
    assert!(
        find(&earlier, before_out.as_bytes()).is_some(),
        "the output before the resize record lacks {before_out}"
    );
    assert!(
        find(&earlier, b"33 101").is_none() && find(&later, b"33 101").is_some(),
        "`stty size` showing the new size must come after the resize record"
    );
    assert!(find(&later, after_out.as_bytes()).is_some());
    assert!(records[resize].t >= records[..resize].iter().map(|r| r.t).max().unwrap_or(0));
    // Input is not recorded by default.
    assert!(
        records.iter().all(|r| r.k != "i"),
        "input recorded without record_input"
    );

    // The replay shows the same session; the interactive player quits on q.
    let replay = cli.run(&["replay", &sid, "--no-wait"]);
    assert!(replay.ok().contains(&after_out), "{replay}");
    let mut player = PtySession::spawn(&cli, &["replay", &sid, "--speed", "0.02"], 24, 80);
    std::thread::sleep(Duration::from_millis(500));
    player.send("q");
    let status = player.expect_exit(LONG);
    assert!(
        status.success(),
        "replay exited with {status}:\n{}",
        player.output()
    );
    assert!(player.output().contains("tether: stopped"), "{}", player.output());

    // Seeking forward (→, 10 s: past the end of this short session) shows the last screen and
    // ends the replay at once, where playing at this speed would take minutes.
    let mut player = PtySession::spawn(&cli, &["replay", &sid, "--speed", "0.02"], 24, 80);
    std::thread::sleep(Duration::from_millis(500));
    player.send("\x1b[C");
    player.expect("tether: end of recording", LONG);
    let status = player.expect_exit(LONG);
    assert!(
        status.success(),
        "replay exited with {status}:\n{}",
        player.output()
    );
    let shown = player.output();
    let last_clear = shown.rfind("\x1b[H\x1b[2J").expect("the seek clears the screen");
    assert!(
        shown[last_clear..].contains(&after_out),
        "the screen after seeking to the end shows the last marker:\n{shown}"
    );

    // Seeking: from the moment of the resize, the screen first, then only later records.
    let from = records[resize].t;
    let seeked = recording(&hub, &token, &sid, from);
    let first = &seeked.records[0];
    assert_eq!(first.k, "screen", "{first:?}");
    assert_eq!(first.t, from);
    assert!(seeked.records.iter().all(|r| r.t >= from));
    assert!(
        find(&first.d, before_out.as_bytes()).is_some(),
        "the screen at the resize shows the earlier marker"
    );
    let from_arg = format!("{}ms", from);
    let replay_from = cli.run(&["replay", &sid, "--from", &from_arg, "--no-wait"]);
    assert!(replay_from.ok().contains(&after_out), "{replay_from}");
}

#[test]
fn large_recording_is_whole_and_seeks_without_streaming_from_the_start() {
    const TOTAL: usize = 50_000_000;
    let (hub, cli, agent) = setup(HubOptions::default());
    let token = cli.token();
    // 100-byte lines of x; exactly 50 MB.
    let command = "yes xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx | head -c 50000000";
    let exec = cli.run_for(&["exec", &agent.name, "--", command], Duration::from_secs(300));
    assert_eq!(exec.ok().len(), TOTAL, "exec printed {} bytes", exec.stdout.len());
    drop(exec);

    let session = wait_session(&cli, "for the 50 MB exec, ended", |s| {
        s["command"].as_str() == Some(command) && s["ended_at"].is_i64()
    });
    let sid = session["sid"].as_str().unwrap().to_owned();
    assert_eq!(session["bytes_out"].as_u64(), Some(TOTAL as u64), "{session}");

    let whole = recording(&hub, &token, &sid, 0);
    let outputs: Vec<&Rec> = whole.records.iter().filter(|r| r.k == "o").collect();
    let total: usize = outputs.iter().map(|r| r.d.len()).sum();
    assert_eq!(total, TOTAL, "the recording holds all the output");
    assert!(
        outputs
            .iter()
            .all(|r| r.d.iter().all(|&b| b == b'x' || b == b'\n'))
    );

    // The middle, by bytes: the moment half the output had been sent.
    let mut sum = 0;
    let middle = outputs
        .iter()
        .find(|r| {
            sum += r.d.len();
            sum >= TOTAL / 2
        })
        .unwrap()
        .t;
    let last = outputs.last().unwrap().t;
    let seeked = recording(&hub, &token, &sid, middle);
    let first = seeked.records.first().expect("records after the middle");
    assert_eq!(first.k, "screen", "{:?}", first.k);
    assert_eq!(first.t, middle);
    assert!(
        find(&first.d, b"xxxxxxxxxx").is_some(),
        "the screen at the middle shows the output"
    );
    let streamed: Vec<&Rec> = seeked.records.iter().filter(|r| r.k == "o").collect();
    let streamed_bytes: usize = streamed.iter().map(|r| r.d.len()).sum();
    assert!(
        streamed.first().is_some_and(|r| r.t >= middle),
        "the first output record after seeking to {middle} ms is at {:?} ms",
        streamed.first().map(|r| r.t)
    );
    assert!(seeked.records.iter().all(|r| r.t >= middle));
    assert_eq!(streamed.last().map(|r| r.t), Some(last));
    eprintln!(
        "seek to {middle} ms of {last} ms: {streamed_bytes} of {TOTAL} output bytes, {} of {} body bytes",
        seeked.body_len, whole.body_len
    );
    assert!(
        streamed_bytes <= TOTAL * 6 / 10 && seeked.body_len <= whole.body_len * 6 / 10,
        "seeking to the middle streamed {streamed_bytes} of {TOTAL} output bytes ({} of {} body bytes): \
         it must not stream from the start",
        seeked.body_len,
        whole.body_len
    );
}

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

/// Recording fails closed: when the hub cannot write a terminal's recording, the terminal is
/// refused with a message saying so, and the refusal is visible; a hub with `record_sessions`
/// off relays terminals without recording them.
#[test]
fn a_terminal_that_cannot_be_recorded_is_refused() {
    let (hub, cli, agent) = setup(HubOptions::default());
    // A file where the recordings directory must go: no recording can be created.
    std::fs::write(hub.data_dir().join("recordings"), b"not a directory\n").expect("block recordings");
    let output = cli.exec(&agent.name, &["echo", "should-not-run-unrecorded"]);
    assert!(!output.success(), "an unrecordable exec must fail: {output}");
    assert!(
        output.stderr.contains("cannot be recorded"),
        "the refusal should say why: {output}"
    );
    assert!(
        !output.stdout.contains("should-not-run-unrecorded"),
        "no output may reach the user: {output}"
    );

    let (_hub, cli, agent) = setup(HubOptions::default().config("record_sessions = false\n"));
    let output = cli.exec(&agent.name, &["echo", "unrecorded-by-choice"]);
    assert!(output.ok().contains("unrecorded-by-choice"), "{output}");
    assert!(
        sessions(&cli).is_empty(),
        "record_sessions = false records nothing"
    );
}
