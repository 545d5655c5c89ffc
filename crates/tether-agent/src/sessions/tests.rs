//! Dispatch tests: real shells on real PTYs, no hub.

use std::time::Duration;

use tether_proto::{control::Control, protocol::FILE_TRANSFER};
use tokio::time::timeout;

use super::*;

struct Harness {
    sessions: Sessions,
    received: mpsc::Receiver<Envelope>,
}

impl Harness {
    fn new(terminal: TerminalConfig) -> Harness {
        let (outbound, received) = mpsc::channel(64);
        Harness {
            sessions: Sessions::new(terminal, outbound),
            received,
        }
    }

    async fn send(&mut self, envelope: Envelope) {
        self.sessions.handle(envelope).await;
    }

    async fn next(&mut self) -> Envelope {
        timeout(Duration::from_secs(10), self.received.recv())
            .await
            .expect("no message within 10 s")
            .expect("channel closed")
    }

    async fn nothing_within(&mut self, wait: Duration) {
        if let Ok(Some(envelope)) = timeout(wait, self.received.recv()).await {
            panic!("unexpected message {envelope:?}");
        }
    }

    /// Opens `sid` with the given versions and returns the device's answer.
    async fn open(&mut self, sid: &str, versions: &[u32]) -> Control {
        let open = Control::Open {
            versions: versions.to_vec(),
        };
        self.send(open.to_envelope(sid)).await;
        let answer = self.next().await;
        assert_eq!(answer.sid, sid);
        Control::from_envelope(&answer).unwrap()
    }

    /// Asks for a shell (or a command) and returns the `new` answer's status and text.
    async fn start(&mut self, sid: &str, user: &str, command: Option<&str>) -> (i64, String) {
        let new = Shell::New {
            user_id: Some(user.into()),
            width: Some(100),
            height: Some(30),
            command: command.map(str::to_owned),
            local_user: None,
            status: None,
            text: Vec::new(),
        };
        self.send(new.to_envelope(sid)).await;
        let answer = self.next().await;
        assert_eq!(
            (answer.proto, answer.typ.as_str(), answer.sid.as_str()),
            (SHELL, "new", sid)
        );
        let status = answer.props.i64("status").unwrap();
        (status, String::from_utf8(answer.body).unwrap())
    }

    /// Collects the output of `sid` until its `stop`, which is returned too.
    async fn output_until_stop(&mut self, sid: &str) -> (String, Envelope) {
        let mut output = Vec::new();
        loop {
            let envelope = self.next().await;
            assert_eq!(envelope.sid, sid);
            match envelope.typ.as_str() {
                "shell" => {
                    assert_eq!(envelope.props.i64("status"), Some(status::NORMAL));
                    output.extend_from_slice(&envelope.body);
                }
                "stop" => return (String::from_utf8_lossy(&output).into_owned(), envelope),
                other => panic!("unexpected {other}"),
            }
        }
    }

    /// Reads the output of `sid` until it contains `expected`.
    async fn output_until(&mut self, sid: &str, expected: &str) -> String {
        let mut output = String::new();
        while !output.contains(expected) {
            let envelope = self.next().await;
            assert_eq!(
                (envelope.sid.as_str(), envelope.typ.as_str()),
                (sid, "shell"),
                "{output}"
            );
            output.push_str(&String::from_utf8_lossy(&envelope.body));
        }
        output
    }

    async fn type_in(&mut self, sid: &str, text: &str) {
        self.send(Shell::Data(text.as_bytes().to_vec()).to_envelope(sid))
            .await;
    }
}

fn error_body(envelope: &Envelope) -> ErrorBody {
    assert_eq!((envelope.proto, envelope.typ.as_str()), (CONTROL, "error"));
    match Control::from_envelope(envelope).unwrap() {
        Control::Error(body) => body,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn open_negotiates_the_highest_common_version() {
    let mut harness = Harness::new(TerminalConfig::default());
    let both = harness.open("a", &[1, 2]).await;
    assert_eq!(
        both,
        Control::Accept {
            version: 2,
            protocols: vec![SHELL]
        }
    );
    let compact = harness.open("d", &[1, 2, 3]).await;
    assert_eq!(
        compact,
        Control::Accept {
            version: 3,
            protocols: vec![SHELL]
        }
    );
    let stock = harness.open("b", &[1]).await;
    assert_eq!(
        stock,
        Control::Accept {
            version: 1,
            protocols: vec![SHELL]
        }
    );
    let Control::Error(body) = harness.open("c", &[7, 9]).await else {
        panic!()
    };
    assert!(body.close);
    assert!(body.err.contains("unsupported protocol versions"), "{}", body.err);
}

#[tokio::test]
async fn a_disabled_terminal_is_not_offered_and_refuses_shells() {
    let terminal = TerminalConfig {
        enabled: false,
        ..TerminalConfig::default()
    };
    let mut harness = Harness::new(terminal);
    assert_eq!(
        harness.open("a", &[1, 2]).await,
        Control::Accept {
            version: 2,
            protocols: vec![]
        }
    );
    let (status, text) = harness.start("a", "u", None).await;
    assert_eq!(
        (status, text.as_str()),
        (status::ERROR, "terminal is disabled on this device")
    );
}

#[tokio::test]
async fn bad_input_is_answered_not_fatal() {
    let mut harness = Harness::new(TerminalConfig::default());
    let error = Envelope::decode(&[0xc1, 0x00]).expect_err("not msgpack");
    harness.sessions.malformed(&error).await;
    let body = error_body(&harness.next().await);
    assert!(body.err.starts_with("malformed message: "), "{}", body.err);
    assert!(!body.close);

    harness.send(Envelope::new(FILE_TRANSFER, "stat", "s")).await;
    let answer = harness.next().await;
    assert_eq!(answer.sid, "s");
    let body = error_body(&answer);
    assert_eq!(body.err, "protocol 2 is not enabled on this device");
    assert_eq!(
        (body.msgproto, body.msgtype.as_deref()),
        (Some(FILE_TRANSFER), Some("stat"))
    );

    harness.send(Envelope::new(CONTROL, "bogus", "s")).await;
    assert_eq!(
        error_body(&harness.next().await).err,
        "unknown message type bogus"
    );
    harness.send(Envelope::new(SHELL, "bogus", "s")).await;
    assert_eq!(
        error_body(&harness.next().await).err,
        "unknown message type bogus"
    );
    harness.send(Envelope::new(SHELL, "resize", "s")).await;
    let body = error_body(&harness.next().await);
    assert!(body.err.contains("terminal_width"), "{}", body.err);
    // An `open` whose body is not a map.
    harness
        .send(Envelope::new(CONTROL, "open", "s").with_body(vec![0x01]))
        .await;
    assert!(
        error_body(&harness.next().await)
            .err
            .starts_with("malformed message")
    );
}

#[tokio::test]
async fn pings_are_answered() {
    let mut harness = Harness::new(TerminalConfig::default());
    harness.send(Control::Ping.to_envelope("s")).await;
    let pong = harness.next().await;
    assert_eq!(
        (pong.proto, pong.typ.as_str(), pong.sid.as_str()),
        (CONTROL, "pong", "s")
    );
    harness
        .send(Shell::Ping { timeout: Some(65) }.to_envelope("s"))
        .await;
    let pong = harness.next().await;
    assert_eq!((pong.proto, pong.typ.as_str()), (SHELL, "pong"));
    assert_eq!(pong.props.i64("status"), Some(status::CONTROL));
}

#[tokio::test]
async fn exec_streams_output_and_reports_the_exit_status() {
    let mut harness = Harness::new(TerminalConfig::default());
    harness.open("x", &[1, 2]).await;
    let (status, text) = harness
        .start("x", "u", Some("echo hello; echo oops >&2; exit 3"))
        .await;
    assert_eq!((status, text.as_str()), (status::NORMAL, "Shell started"));
    let (output, stop) = harness.output_until_stop("x").await;
    assert_eq!(output, "hello\noops\n");
    assert_eq!(stop.props.i64("status"), Some(status::NORMAL));
    assert_eq!(stop.props.i64("exit_status"), Some(3));

    harness.start("x", "u", Some("kill -TERM $$")).await;
    let (_, stop) = harness.output_until_stop("x").await;
    assert_eq!(stop.props.i64("exit_status"), Some(128 + 15));
}

#[tokio::test]
async fn exec_needs_version_2() {
    let mut harness = Harness::new(TerminalConfig::default());
    harness.open("v1", &[1]).await;
    let (status, text) = harness.start("v1", "u", Some("true")).await;
    assert_eq!(
        (status, text.as_str()),
        (status::ERROR, "exec needs protocol version 2")
    );
    // No handshake at all is version 1 too.
    let (status, _) = harness.start("none", "u", Some("true")).await;
    assert_eq!(status, status::ERROR);
}

#[tokio::test]
async fn a_local_user_is_run_as_only_when_allowed() {
    let mut harness = Harness::new(TerminalConfig::default());
    harness.open("v1", &[1]).await;
    harness.open("v2", &[1, 2]).await;
    let ask = |sid: &str, user: &str, command: Option<&str>| {
        let new = Shell::New {
            user_id: Some("u".into()),
            width: None,
            height: None,
            command: command.map(str::to_owned),
            local_user: Some(user.into()),
            status: None,
            text: Vec::new(),
        };
        new.to_envelope(sid)
    };
    let own = crate::account::own_account().name;
    // An interactive shell: a version-1 session may have one, but not choose its user.
    harness.send(ask("v1", &own, None)).await;
    let answer = harness.next().await;
    assert_eq!(answer.props.i64("status"), Some(status::ERROR));
    assert_eq!(answer.body, b"choosing a local user needs protocol version 2");

    harness
        .send(ask("v2", "no-such-user-tether", Some("id -un")))
        .await;
    let answer = harness.next().await;
    assert_eq!(answer.props.i64("status"), Some(status::ERROR));
    let text = String::from_utf8(answer.body).unwrap();
    assert!(text.contains("\"no-such-user-tether\" is not allowed"), "{text}");
    assert!(text.contains("terminal.allowed_users"), "{text}");

    // The agent's own user (the default without terminal.user) may be named.
    harness.send(ask("v2", &own, Some("id -un"))).await;
    assert_eq!(harness.next().await.props.i64("status"), Some(status::NORMAL));
    let (output, _) = harness.output_until_stop("v2").await;
    assert_eq!(output, format!("{own}\n"));
}

#[tokio::test]
async fn interactive_shell_runs_input_and_reports_its_exit() {
    let mut harness = Harness::new(TerminalConfig::default());
    let (status, _) = harness.start("i", "u", None).await;
    assert_eq!(status, status::NORMAL);
    harness.type_in("i", "echo $((6*7))\n").await;
    harness.output_until("i", "42").await;
    harness.type_in("i", "stty size\n").await;
    harness.output_until("i", "30 100").await;
    harness
        .send(
            Shell::Resize {
                width: 120,
                height: 40,
            }
            .to_envelope("i"),
        )
        .await;
    harness.type_in("i", "stty size\n").await;
    harness.output_until("i", "40 120").await;
    harness.type_in("i", "exit\n").await;
    let (_, stop) = harness.output_until_stop("i").await;
    assert_eq!(stop.props.i64("status"), Some(status::NORMAL));
    assert_eq!(stop.body, b"shell exited");
    // The session is free again.
    assert_eq!(harness.start("i", "u", None).await.0, status::NORMAL);
}

#[tokio::test]
async fn output_chunks_respect_the_session_version() {
    for (versions, limit) in [(&[1][..], VERSION_1_CHUNK), (&[1, 2][..], VERSION_2_CHUNK)] {
        let mut harness = Harness::new(TerminalConfig::default());
        harness.open("c", versions).await;
        harness.start("c", "u", None).await;
        harness
            .type_in(
                "c",
                "head -c 100000 /dev/zero | tr '\\0' a; echo; echo end-$((2+3))\n",
            )
            .await;
        let mut total = 0;
        let mut text = String::new();
        while !text.contains("end-5") {
            let envelope = harness.next().await;
            assert!(envelope.body.len() <= limit);
            total += envelope.body.len();
            text.push_str(&String::from_utf8_lossy(&envelope.body));
            if versions == [1] {
                assert!(envelope.encode().len() < tether_proto::STOCK_AGENT_MAX_FRAME);
            }
        }
        assert!(total > 100_000);
    }
}

#[tokio::test]
async fn shell_limits_are_enforced_in_order() {
    let terminal = TerminalConfig {
        max_sessions: 3,
        max_sessions_per_user: 2,
        ..TerminalConfig::default()
    };
    let mut harness = Harness::new(terminal);
    assert_eq!(harness.start("a", "alice", None).await.0, status::NORMAL);
    let (status, text) = harness.start("a", "alice", None).await;
    assert_eq!(
        (status, text.as_str()),
        (status::ERROR, "a shell is already running in this session")
    );
    assert_eq!(harness.start("b", "alice", None).await.0, status::NORMAL);
    let (_, text) = harness.start("c", "alice", None).await;
    assert_eq!(
        text,
        "too many shells for user alice: limit of 2 per user reached (terminal.max_sessions_per_user)"
    );
    assert_eq!(harness.start("c", "bob", None).await.0, status::NORMAL);
    let (_, text) = harness.start("d", "carol", None).await;
    assert_eq!(
        text,
        "too many shells: limit of 3 shells on this device reached (terminal.max_sessions)"
    );
    for task in harness.sessions.end_all() {
        timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn spawn_failures_are_reported() {
    let terminal = TerminalConfig {
        shell: "/nonexistent/shell".into(),
        ..TerminalConfig::default()
    };
    let mut harness = Harness::new(terminal);
    let (status, text) = harness.start("a", "u", None).await;
    assert_eq!(status, status::ERROR);
    assert!(text.starts_with("cannot start /nonexistent/shell: "), "{text}");
}

#[tokio::test]
async fn the_hub_stops_shells_by_session_and_by_user() {
    let mut harness = Harness::new(TerminalConfig::default());
    harness.start("a", "alice", None).await;
    harness.start("b", "alice", None).await;
    harness.start("c", "bob", None).await;
    let stop = |user: Option<&str>| Shell::Stop {
        user_id: user.map(str::to_owned),
        status: Some(status::ERROR),
        text: b"user disconnected".to_vec(),
        exit_status: None,
    };
    // Discard prompts: wait until each shell answers.
    for sid in ["a", "b", "c"] {
        harness.type_in(sid, "echo ready-$((1+1))\n").await;
    }
    let mut ready = 0;
    while ready < 3 {
        let envelope = harness.next().await;
        if String::from_utf8_lossy(&envelope.body).contains("ready-2") {
            ready += 1;
        }
    }
    harness.send(stop(None).to_envelope("c")).await;
    let reply = harness.next().await;
    assert_eq!((reply.typ.as_str(), reply.sid.as_str()), ("stop", "c"));
    assert_eq!(reply.props.i64("status"), Some(status::NORMAL));

    harness.send(stop(Some("alice")).to_envelope("")).await;
    let mut stopped = vec![harness.next().await.sid, harness.next().await.sid];
    stopped.sort();
    assert_eq!(stopped, ["a", "b"]);
    harness.nothing_within(Duration::from_millis(300)).await;
    // Stopping a session without a shell says nothing.
    harness.send(stop(None).to_envelope("a")).await;
    harness.nothing_within(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn control_close_ends_the_shell() {
    let mut harness = Harness::new(TerminalConfig::default());
    harness.start("a", "u", None).await;
    harness.send(Control::Close.to_envelope("a")).await;
    // The shell is gone: a new one may start in its place without hitting "already running".
    let (status, _) = harness.start("a", "u", None).await;
    assert_eq!(status, status::NORMAL);
}

#[tokio::test]
async fn idle_shells_end_with_a_reason() {
    let terminal = TerminalConfig {
        idle_timeout_secs: 1,
        ..TerminalConfig::default()
    };
    let mut harness = Harness::new(terminal);
    harness.start("a", "u", None).await;
    let (_, stop) = harness.output_until_stop("a").await;
    assert_eq!(stop.props.i64("status"), Some(status::ERROR));
    assert_eq!(
        String::from_utf8(stop.body).unwrap(),
        "idle timeout: no activity for 1 s (terminal.idle_timeout_secs)"
    );
}

#[tokio::test]
async fn shells_expire_even_when_busy() {
    let terminal = TerminalConfig {
        max_duration_secs: 1,
        ..TerminalConfig::default()
    };
    let mut harness = Harness::new(terminal);
    harness.open("a", &[2]).await;
    harness
        .start("a", "u", Some("while true; do echo tick; sleep 0.2; done"))
        .await;
    let (output, stop) = harness.output_until_stop("a").await;
    assert!(output.contains("tick"));
    assert_eq!(stop.props.i64("status"), Some(status::ERROR));
    assert_eq!(
        stop.body,
        b"session expired after 1 s (terminal.max_duration_secs)"
    );
}

#[tokio::test]
async fn ending_all_shells_kills_and_reaps_them() {
    let mut harness = Harness::new(TerminalConfig::default());
    harness.open("a", &[2]).await;
    // A command that ignores the hangup: SIGKILL must follow.
    harness.start("a", "u", Some("trap '' HUP; sleep 60")).await;
    harness.start("b", "u", None).await;
    let started = std::time::Instant::now();
    for task in harness.sessions.end_all() {
        timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(harness.sessions.shells.is_empty());
}

#[tokio::test]
async fn shells_run_as_the_configured_user() {
    if !crate::account::is_root() || crate::account::by_name("nobody").ok().flatten().is_none() {
        eprintln!("skipped: needs root and a `nobody` user");
        return;
    }
    let nobody = crate::account::by_name("nobody").unwrap().unwrap();
    let terminal = TerminalConfig {
        user: Some("nobody".into()),
        ..TerminalConfig::default()
    };
    let mut harness = Harness::new(terminal);
    harness.open("a", &[2]).await;
    harness.start("a", "u", Some("id -u; id -g; echo $USER")).await;
    let (output, _) = harness.output_until_stop("a").await;
    assert_eq!(output, format!("{}\n{}\nnobody\n", nobody.uid, nobody.gid));
    // On a PTY too, and the terminal belongs to the user.
    harness.start("b", "u", None).await;
    harness.type_in("b", "stat -c %u $(tty); id -u\n").await;
    let text = harness
        .output_until("b", &format!("{0}\r\n{0}\r\n", nobody.uid))
        .await;
    assert!(!text.is_empty());
}
