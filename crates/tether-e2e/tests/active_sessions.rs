//! The Active sessions list (`GET /sessions/active`, `tether sessions active`) with the real hub,
//! agent and CLI: a running `tether terminal`, a `tether exec` command, a `tether port-forward`
//! (however many connections it carries: one row), HTTP file transfers held half way (an
//! upload and a download) and a `tether cp` download held half way are listed with their kind and detail (command, path, TCP target);
//! each leaves the list when it ends; an operator sees only their own, an auditor everyone's;
//! and after the hub is SIGKILLed under them and restarted on the same data, none is listed.

use std::{
    net::Ipv4Addr,
    path::Path,
    process::{Child, Stdio},
    time::Duration,
};

use serde_json::Value;
use tether_e2e::{
    Agent, Cli, Hub, PortForward, PtySession, WAIT,
    hostile::Target,
    peers::{TcpEcho, echo_round_trip},
    wait_for,
};
use tether_proto::api::paths::{device_download_path, device_upload_path, with_query};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};
use tokio_rustls::client::TlsStream;

const LONG: Duration = Duration::from_secs(30);

/// Terminals, file transfers under `root`, and port forwards to loopback targets.
fn agent_config(root: &Path) -> String {
    format!(
        "[terminal]\nshell = \"/bin/sh\"\n\n[file_transfer]\nenabled = true\nroots = [{:?}]\n\n\
         [port_forward]\nenabled = true\n",
        root.display().to_string()
    )
}

/// `tether sessions active --json` as `cli`'s user.
fn active(cli: &Cli) -> Vec<Value> {
    let output = cli.run(&["sessions", "active", "--json"]);
    serde_json::from_str(output.ok()).unwrap_or_else(|e| panic!("not JSON ({e}):\n{output}"))
}

fn of_kind<'a>(sessions: &'a [Value], kind: &str) -> Vec<&'a Value> {
    sessions.iter().filter(|s| s["kind"] == kind).collect()
}

/// Waits until `cli`'s list holds a session of `kind` whose detail contains `detail`.
fn wait_listed(cli: &Cli, kind: &str, detail: &str) -> Value {
    wait_for(&format!("a listed {kind} ({detail})"), WAIT, || {
        active(cli)
            .into_iter()
            .find(|s| s["kind"] == kind && s["detail"].as_str().unwrap_or_default().contains(detail))
    })
}

/// Waits until `cli`'s list holds no session of `kind`.
fn wait_unlisted(cli: &Cli, kind: &str) {
    wait_for(&format!("the {kind} to leave the list"), WAIT, || {
        of_kind(&active(cli), kind).is_empty().then_some(())
    });
}

/// A child process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An HTTP file transfer held half way on its own connection: the hub has started it on the
/// device and waits for the rest of the upload's body, or for the client to read the download.
/// Dropping it closes the connection, which ends the transfer.
struct HeldTransfer {
    stream: Option<TlsStream<TcpStream>>,
    runtime: tokio::runtime::Runtime,
}

impl HeldTransfer {
    fn open(hub: &Hub, request: Vec<u8>, read_head: bool) -> HeldTransfer {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let target = Target::of(hub);
        let stream = runtime.block_on(async {
            let mut stream = target
                .connect(Ipv4Addr::LOCALHOST)
                .await
                .expect("connect to the hub");
            stream.write_all(&request).await.expect("send the request");
            stream.flush().await.expect("send the request");
            if read_head {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    let read = stream.read(&mut byte).await.expect("read the response head");
                    assert_eq!(
                        read,
                        1,
                        "the hub closed the download: {}",
                        String::from_utf8_lossy(&head)
                    );
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head);
                assert!(
                    head.starts_with("HTTP/1.1 200"),
                    "the download was refused: {head}"
                );
            }
            stream
        });
        HeldTransfer {
            stream: Some(stream),
            runtime,
        }
    }

    /// `PUT .../upload?path=PATH` of `size` bytes, of which only the first 64 KiB are sent.
    fn upload(hub: &Hub, token: &str, device_id: &str, path: &str, size: usize) -> HeldTransfer {
        let target = with_query(&device_upload_path(device_id), &[("path", path)]);
        let mut request = format!(
            "PUT {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n"
        )
        .into_bytes();
        request.extend(std::iter::repeat_n(b'u', 64 * 1024));
        HeldTransfer::open(hub, request, false)
    }

    /// `GET .../download?path=PATH`: the response head is read, the body is not.
    fn download(hub: &Hub, token: &str, device_id: &str, path: &str) -> HeldTransfer {
        let target = with_query(&device_download_path(device_id), &[("path", path)]);
        let request =
            format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n");
        HeldTransfer::open(hub, request.into_bytes(), true)
    }
}

impl Drop for HeldTransfer {
    fn drop(&mut self) {
        let stream = self.stream.take();
        // Closed inside its runtime, where its socket is registered.
        self.runtime.block_on(async move { drop(stream) });
    }
}

/// `tether cp REMOTE DIR/held.bin` held half way: the CLI writes into `.held.bin.tether-part`
/// beside its destination (its name for a download under way), made a FIFO here whose reader
/// never reads, so the CLI blocks once the pipe is full and stops acknowledging: the transfer
/// stays under way until the CLI is killed (on drop, with the reader).
struct HeldCopy {
    _cli: Killed,
    _reader: std::fs::File,
}

fn held_cp_download(cli: &Cli, remote: &str, local: &Path) -> HeldCopy {
    use std::os::unix::{ffi::OsStrExt as _, fs::OpenOptionsExt as _};
    let part = local.join(".held.bin.tether-part");
    let name = std::ffi::CString::new(part.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo has no other preconditions.
    assert_eq!(
        unsafe { libc::mkfifo(name.as_ptr(), 0o600) },
        0,
        "mkfifo {}",
        part.display()
    );
    // Opened first (without blocking), so that the CLI's open for writing does not block.
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&part)
        .expect("open the FIFO for reading");
    let destination = local.join("held.bin").display().to_string();
    let mut command = cli.command(&["cp", remote, &destination]);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    HeldCopy {
        _cli: Killed(command.spawn().expect("start tether cp")),
        _reader: reader,
    }
}

/// A terminal whose shell answered.
fn working_terminal(cli: &Cli, device: &str) -> PtySession {
    let terminal = PtySession::terminal(cli, device);
    terminal.send_line("echo ready-$((40+2))");
    terminal.expect("ready-42", LONG);
    terminal
}

#[test]
fn every_kind_of_live_session_is_listed_to_whom_may_see_it_until_it_ends() {
    let hub = Hub::start_default();
    let admin = hub.user_cli("alice", true);
    let operator = hub.user_cli("olga", false);
    let auditor = hub.user_cli_with("audrey", &["--role", "auditor"]);
    let root = tempfile::tempdir().expect("temp dir");
    let big = root.path().join("big file.bin");
    std::fs::File::create(&big)
        .and_then(|file| file.set_len(256 << 20))
        .expect("a large (sparse) file to download");
    let agent = Agent::start(&hub, &agent_config(root.path()));
    let device_id = admin.accept(&agent.name).id;

    // Olga's terminal, port forward, upload and download; Alice's command.
    let terminal = working_terminal(&operator, &agent.name);
    let echo = TcpEcho::start();
    let target = format!("127.0.0.1:{}", echo.addr.port());
    let forward = PortForward::start(&operator, &agent.name, &[&format!("0:{target}")], &[]);
    for n in 0..3 {
        let payload = format!("connection {n}");
        let echoed = echo_round_trip(forward.local_port(0), payload.as_bytes()).expect("through the forward");
        assert_eq!(echoed, payload.as_bytes());
    }
    let upload_path = root.path().join("uploaded.bin").display().to_string();
    let upload = HeldTransfer::upload(&hub, &operator.token(), &device_id, &upload_path, 1 << 20);
    let download = HeldTransfer::download(&hub, &operator.token(), &device_id, &big.display().to_string());
    let mut command = admin.command(&["exec", &agent.name, "sleep", "120"]);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let exec = Killed(command.spawn().expect("start tether exec"));
    let local = tempfile::tempdir().expect("temp dir");
    let cp = held_cp_download(
        &operator,
        &format!("{}:{}", agent.name, big.display()),
        local.path(),
    );

    let listed_forward = wait_listed(&auditor, "port_forward", &format!("TCP {target}"));
    assert_eq!(listed_forward["user_name"], "olga");
    assert_eq!(listed_forward["device_name"], agent.name.as_str());
    assert_eq!(listed_forward["device_id"], device_id.as_str());
    assert!(listed_forward["watch_sid"].is_null(), "{listed_forward}");
    let listed_upload = wait_listed(&auditor, "file_upload", &upload_path);
    assert_eq!(listed_upload["user_name"], "olga");
    wait_for("two downloads listed (HTTP and `tether cp`)", WAIT, || {
        (of_kind(&active(&auditor), "file_download").len() == 2).then_some(())
    });
    let listed_command = wait_listed(&auditor, "command", "sleep");
    assert_eq!(listed_command["user_name"], "alice");
    let everyone = active(&auditor);
    let terminals = of_kind(&everyone, "terminal");
    assert_eq!(terminals.len(), 1, "{everyone:#?}");
    assert_eq!(terminals[0]["user_name"], "olga");
    assert!(
        terminals[0]["watch_sid"].is_string(),
        "a recorded terminal can be watched"
    );
    assert!(terminals[0]["started_at"].as_i64().is_some_and(|t| t > 0));
    assert_eq!(
        of_kind(&everyone, "port_forward").len(),
        1,
        "one row for the forward, not one per connection: {everyone:#?}"
    );
    let kinds: Vec<&str> = everyone.iter().filter_map(|s| s["kind"].as_str()).collect();
    assert_eq!(kinds.len(), 6, "{everyone:#?}");

    // The operator sees their own five, not the administrator's command.
    let own = active(&operator);
    assert_eq!(own.len(), 5, "{own:#?}");
    assert!(own.iter().all(|s| s["user_name"] == "olga"), "{own:#?}");
    assert!(of_kind(&own, "command").is_empty());
    // The table names the kinds and details too.
    let table = operator.run(&["sessions", "active"]);
    for text in [
        "port forward",
        &format!("TCP {target}"),
        "file upload",
        "file download",
        "terminal",
    ] {
        assert!(table.ok().contains(text), "`{text}` missing from:\n{table}");
    }

    // Each leaves the list when it ends.
    drop(upload);
    wait_unlisted(&auditor, "file_upload");
    drop(download);
    drop(cp);
    wait_unlisted(&auditor, "file_download");
    drop(forward);
    wait_unlisted(&auditor, "port_forward");
    drop(exec);
    wait_unlisted(&auditor, "command");
    let mut terminal = terminal;
    terminal.send_line("exit");
    terminal.expect_exit(LONG);
    wait_unlisted(&auditor, "terminal");
    assert_eq!(active(&auditor), Vec::<Value>::new());

    // A `tether cp` both ways leaves nothing listed once done.
    let local = root.path().join("local.txt");
    std::fs::write(&local, "copied through the hub\n").unwrap();
    let remote = format!("{}:{}", agent.name, root.path().join("copied.txt").display());
    admin.run(&["cp", &local.display().to_string(), &remote]).ok();
    admin
        .run(&["cp", &remote, &root.path().join("back.txt").display().to_string()])
        .ok();
    assert_eq!(active(&auditor), Vec::<Value>::new());
}

#[test]
fn sessions_left_by_a_killed_hub_are_not_listed_after_its_restart() {
    let mut hub = Hub::start_default();
    let admin = hub.user_cli("alice", true);
    let root = tempfile::tempdir().expect("temp dir");
    let agent = Agent::start(&hub, &agent_config(root.path()));
    let device_id = admin.accept(&agent.name).id;

    let terminal = working_terminal(&admin, &agent.name);
    let echo = TcpEcho::start();
    let target = format!("127.0.0.1:{}", echo.addr.port());
    let forward = PortForward::start(&admin, &agent.name, &[&format!("0:{target}")], &[]);
    echo_round_trip(forward.local_port(0), b"once").expect("through the forward");
    let upload_path = root.path().join("interrupted.bin").display().to_string();
    let upload = HeldTransfer::upload(&hub, &admin.token(), &device_id, &upload_path, 1 << 20);
    wait_listed(&admin, "port_forward", &target);
    wait_listed(&admin, "file_upload", &upload_path);
    assert_eq!(of_kind(&active(&admin), "terminal").len(), 1);

    // The hub dies under them; they end while it is down, so nothing could delete their rows.
    hub.kill();
    drop(upload);
    drop(forward);
    drop(terminal);
    hub.restart();
    admin.wait_online(&agent.name);
    let listed = active(&admin);
    assert_eq!(
        listed,
        Vec::<Value>::new(),
        "stale sessions listed after the restart"
    );
    let log = hub.log();
    assert!(
        log.contains("deleted 2 live session row(s) left by the previous run"),
        "the restarted hub did not clean up:\n{log}"
    );
}
