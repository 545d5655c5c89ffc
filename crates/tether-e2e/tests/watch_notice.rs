//! The watched operator is told: while someone watches a `tether terminal` session live
//! (`tether sessions watch`), the hub sends the terminal's user a control `watching`, and the
//! CLI prints "NAME is watching this terminal" on stderr, then "NAME stopped watching" when the
//! watcher leaves. The shell's output stream (stdout) never contains the notice.
//!
//! The terminal runs with pipes (not a PTY) so that stdout and stderr are told apart.

use std::{
    io::{Read, Write},
    process::{Child, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use serde_json::Value;
use tether_e2e::{Agent, Cli, Hub, PtySession, WAIT, wait_for};

const LONG: Duration = Duration::from_secs(30);

/// Everything a pipe delivers, read on a thread.
fn collect(mut pipe: impl Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let bytes: Arc<Mutex<Vec<u8>>> = Arc::default();
    let sink = bytes.clone();
    thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(read) = pipe.read(&mut buffer) {
            if read == 0 {
                return;
            }
            sink.lock().unwrap().extend_from_slice(&buffer[..read]);
        }
    });
    bytes
}

fn text(bytes: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&bytes.lock().unwrap()).into_owned()
}

fn wait_text(bytes: &Arc<Mutex<Vec<u8>>>, needle: &str, what: &str) {
    wait_for(what, LONG, || text(bytes).contains(needle).then_some(()));
}

/// The live session of `device`, as `tether sessions list --json` shows it.
fn live_session(cli: &Cli, device: &str) -> String {
    wait_for("the live terminal session", WAIT, || {
        let output = cli.run(&["sessions", "list", "--json"]);
        let sessions: Vec<Value> = serde_json::from_str(output.ok()).ok()?;
        sessions
            .into_iter()
            .find(|s| s["live"] == true && s["device_name"] == device)
            .and_then(|s| s["sid"].as_str().map(str::to_owned))
    })
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_watched_terminal_is_told_on_stderr_never_in_its_output() {
    let hub = Hub::start_default();
    let cli = hub.user_cli("alice", true);
    let watcher_cli = hub.user_cli_with("carol", &["--role", "auditor"]);
    let agent = Agent::start(&hub, "[terminal]\nshell = \"/bin/sh\"\n");
    cli.accept(&agent.name);

    let mut command = cli.command(&["terminal", &agent.name]);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut terminal = Killed(command.spawn().expect("start tether terminal"));
    let stdout = collect(terminal.0.stdout.take().unwrap());
    let stderr = collect(terminal.0.stderr.take().unwrap());
    let mut stdin = terminal.0.stdin.take().unwrap();
    // Computed by the shell: the echoed command line never matches what is waited for.
    writeln!(stdin, "echo ready-$((40+2))").unwrap();
    wait_text(&stdout, "ready-42", "the shell's first output");
    let sid = live_session(&cli, &agent.name);

    let watcher = PtySession::spawn(&watcher_cli, &["sessions", "watch", &sid], 24, 80);
    watcher.expect("read-only", LONG);
    wait_text(
        &stderr,
        "carol is watching this terminal",
        "the watching notice on stderr",
    );

    // The watcher leaves (its process ends, so does its WebSocket).
    drop(watcher);
    wait_text(
        &stderr,
        "carol stopped watching this terminal",
        "the notice that carol left",
    );

    writeln!(stdin, "echo done-$((1+1))").unwrap();
    wait_text(&stdout, "done-2", "output after the watcher left");
    let shown = text(&stdout);
    assert!(
        !shown.contains("watching"),
        "the notice reached the shell's output stream:\n{shown}"
    );
    writeln!(stdin, "exit").unwrap();
}
