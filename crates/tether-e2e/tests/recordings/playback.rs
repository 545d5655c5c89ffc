//! Exec and interactive output recorded byte for byte (resizes in place), played back with
//! `tether replay` and exported as an asciicast that `asciinema` accepts.

use std::time::Duration;

use serde_json::Value;
use tether_e2e::{HubOptions, PtySession};

use crate::common::*;

const CLEAR: &[u8] = b"\x1b[H\x1b[2J";

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
