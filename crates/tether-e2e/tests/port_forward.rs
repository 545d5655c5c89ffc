//! `tether port-forward`: real clients (`ssh`, `curl`, sockets) on the operator's side reach real
//! servers (`sshd`, an HTTP server, TCP and UDP echo servers) on the device's side through the
//! hub; the device refuses targets outside `port_forward.allow` without dialling them; the CLI
//! survives a hub crash.

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpStream, UdpSocket},
    process::Stdio,
    sync::{Arc, Barrier},
    time::{Duration, Instant},
};

use tether_e2e::{
    Agent, Cli, Hub, PortForward, WAIT,
    peers::{HttpServer, Sshd, TcpEcho, UdpEcho, deterministic_bytes, echo_round_trip, sha256_file},
};

/// The agent configuration of these tests: forwarding on, loopback targets (the default).
fn forward_config(extra: &str) -> String {
    format!("[terminal]\nshell = \"/bin/sh\"\n\n[port_forward]\nenabled = true\n{extra}")
}

/// A hub, an admin CLI and an accepted, online agent with `agent_toml`.
fn setup(agent_toml: &str) -> (Hub, Cli, Agent) {
    let hub = Hub::start_default();
    let cli = hub.user_cli("alice", true);
    let agent = Agent::start(&hub, agent_toml);
    cli.accept(&agent.name);
    (hub, cli, agent)
}

#[test]
fn ssh_reaches_a_real_sshd_through_the_forward() {
    let Some(sshd) = Sshd::start() else { return };
    let (_hub, cli, agent) = setup(&forward_config(""));
    let forward = PortForward::start(&cli, &agent.name, &[&format!("0:127.0.0.1:{}", sshd.port)], &[]);
    let announced = &forward.forwardings[0];
    assert_eq!(announced.target, format!("127.0.0.1:{}", sshd.port));
    assert_eq!(announced.transport, "tcp");
    assert_eq!(announced.device, agent.name);
    let port = forward.local_port(0);

    let output = sshd
        .ssh_command(port, "echo forwarded-$((6*7)); id -un")
        .output()
        .expect("run ssh");
    assert!(
        output.status.success(),
        "ssh through the forward failed ({}):\n{}\nsshd log:\n{}\nforward:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        sshd.log(),
        forward.logs()
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("forwarded-42\n{}\n", sshd.user)
    );

    // Data both ways in one session: 2 MB in through ssh's stdin, its checksum out.
    let input = deterministic_bytes(11, 2_000_000);
    let mut child = sshd
        .ssh_command(port, "sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ssh");
    let mut stdin = child.stdin.take().unwrap();
    let feeder = {
        let input = input.clone();
        std::thread::spawn(move || stdin.write_all(&input))
    };
    let output = child.wait_with_output().expect("ssh output");
    feeder.join().unwrap().expect("feed ssh");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected = tether_e2e::peers::sha256_bytes(&input);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).split_whitespace().next(),
        Some(expected.as_str())
    );
}

#[test]
fn curl_fetches_100_mb_through_the_forward() {
    const SIZE: u64 = 100 * 1024 * 1024;
    let server = HttpServer::start(0x100, SIZE);
    let (_hub, cli, agent) = setup(&forward_config(""));
    let forward = PortForward::start(
        &cli,
        &agent.name,
        &[&format!("tcp/0:127.0.0.1:{}", server.port())],
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    let output = std::process::Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "170", "-o"])
        .arg(&body)
        .args(["-w", "%{http_code} %{size_download}"])
        .arg(format!("http://127.0.0.1:{}/big", forward.local_port(0)))
        .output()
        .expect("run curl (Debian: curl)");
    assert!(
        output.status.success(),
        "curl through the forward failed ({}): {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        forward.logs()
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), format!("200 {SIZE}"));
    assert_eq!(std::fs::metadata(&body).unwrap().len(), SIZE);
    assert_eq!(
        sha256_file(&body),
        server.sha256(),
        "the body differs from what the server sent"
    );
    assert_eq!(server.accepted(), 1, "one request, one connection");
}

#[test]
fn udp_datagrams_keep_their_boundaries() {
    let echo = UdpEcho::start();
    let (_hub, cli, agent) = setup(&forward_config(""));
    let forward = PortForward::start(
        &cli,
        &agent.name,
        &[&format!("udp/0:127.0.0.1:{}", echo.port())],
        &[],
    );
    assert_eq!(forward.forwardings[0].transport, "udp");
    let local = ("127.0.0.1", forward.local_port(0));
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buffer = vec![0u8; 65_536];

    // One at a time: each comes back whole, the same size. UDP may drop a datagram (the first
    // one may race the device opening its socket): resend a few times before giving up.
    let sizes = [1usize, 7, 100, 512, 1400, 1472, 4000, 4096, 8192, 16_000];
    for (i, &size) in sizes.iter().enumerate() {
        let datagram = deterministic_bytes(1000 + i as u64, size);
        let mut answer = None;
        for _attempt in 0..10 {
            client.send_to(&datagram, local).unwrap();
            if let Ok((n, _)) = client.recv_from(&mut buffer) {
                answer = Some(buffer[..n].to_vec());
                break;
            }
        }
        let answer =
            answer.unwrap_or_else(|| panic!("no answer to a {size}-byte datagram\n{}", forward.logs()));
        assert_eq!(
            answer.len(),
            size,
            "a {size}-byte datagram came back as {} bytes: boundaries lost",
            answer.len()
        );
        assert!(answer == datagram, "the {size}-byte datagram came back altered");
    }

    // A burst without waiting: every datagram comes back as itself, never merged or split.
    let burst: Vec<Vec<u8>> = [3usize, 300, 30, 3000, 1]
        .iter()
        .enumerate()
        .map(|(i, &size)| deterministic_bytes(2000 + i as u64, size))
        .collect();
    let mut missing: Vec<Vec<u8>> = burst.clone();
    for _round in 0..5 {
        for datagram in &missing {
            client.send_to(datagram, local).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while !missing.is_empty() && Instant::now() < deadline {
            let Ok((n, _)) = client.recv_from(&mut buffer) else {
                break;
            };
            let got = &buffer[..n];
            assert!(
                burst.iter().any(|d| d.as_slice() == got),
                "a {n}-byte datagram came back that was never sent as one: boundaries lost"
            );
            missing.retain(|d| d.as_slice() != got);
        }
        if missing.is_empty() {
            break;
        }
    }
    assert!(
        missing.is_empty(),
        "{} datagram(s) of the burst never came back\n{}",
        missing.len(),
        forward.logs()
    );
    assert!(echo.received() >= (sizes.len() + burst.len()) as u64);
}

#[test]
fn two_hundred_concurrent_connections_all_complete() {
    const CONNECTIONS: usize = 200;
    const PAYLOAD: usize = 64 * 1024;
    let echo = TcpEcho::start();
    let (_hub, cli, agent) = setup(&forward_config("max_connections = 256\n"));
    let forward = PortForward::start(&cli, &agent.name, &[&format!("0:{}", echo.port())], &[]);
    // The default remote host is the device's loopback.
    assert_eq!(
        forward.forwardings[0].target,
        format!("127.0.0.1:{}", echo.port())
    );
    let port = forward.local_port(0);

    // Every connection is open before any sends: 200 at once, each with its own payload.
    let barrier = Arc::new(Barrier::new(CONNECTIONS));
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || -> Result<(), String> {
                let connected = TcpStream::connect(("127.0.0.1", port));
                barrier.wait();
                let mut stream = connected.map_err(|e| format!("connection {i}: connect: {e}"))?;
                let payload = deterministic_bytes(i as u64, PAYLOAD);
                let io = |e: std::io::Error| format!("connection {i}: {e}");
                stream
                    .set_read_timeout(Some(Duration::from_secs(90)))
                    .map_err(io)?;
                let mut writer = stream.try_clone().map_err(io)?;
                let sender = std::thread::spawn(move || {
                    writer.write_all(&payload)?;
                    writer.shutdown(Shutdown::Write)
                });
                let mut back = Vec::with_capacity(PAYLOAD);
                stream.read_to_end(&mut back).map_err(io)?;
                sender
                    .join()
                    .map_err(|_| format!("connection {i}: sender panicked"))?
                    .map_err(io)?;
                if back != deterministic_bytes(i as u64, PAYLOAD) {
                    return Err(format!(
                        "connection {i}: {} bytes came back, not its own {PAYLOAD}",
                        back.len()
                    ));
                }
                Ok(())
            })
        })
        .collect();
    let failures: Vec<String> = workers
        .into_iter()
        .filter_map(|w| w.join().expect("worker").err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {CONNECTIONS} connections failed:\n{}\n{}\nagent log:\n{}",
        failures.len(),
        failures.iter().take(10).cloned().collect::<Vec<_>>().join("\n"),
        forward.logs(),
        agent.log()
    );
    assert_eq!(echo.accepted(), CONNECTIONS as u64);
}

#[test]
fn a_target_outside_the_allow_list_is_refused_and_never_dialled() {
    let allowed = TcpEcho::start();
    let denied = TcpEcho::start();
    let (_hub, cli, agent) = setup(&forward_config(&format!(
        "allow = [\"127.0.0.1:{}\"]\n",
        allowed.port()
    )));
    let forward = PortForward::start(
        &cli,
        &agent.name,
        &[
            &format!("0:127.0.0.1:{}", denied.port()),
            &format!("0:127.0.0.1:{}", allowed.port()),
        ],
        &[],
    );
    let denied_local = forward.local_port(0);
    let allowed_local = forward.local_port(1);

    // The local connection is accepted, then closed without a byte coming back.
    let result = echo_round_trip(denied_local, b"let me in");
    assert!(
        result.as_ref().map_or(true, |back| back.is_empty()),
        "a refused target echoed {result:?}"
    );
    let needle = format!("refused 127.0.0.1:{}", denied.port());
    assert!(
        forward.wait_stderr(&needle, 1, WAIT),
        "the CLI should say `{needle}`\n{}",
        forward.logs()
    );
    let stderr = forward.stderr();
    let line = stderr.lines().find(|l| l.contains(&needle)).unwrap_or_default();
    assert!(
        line.starts_with(&format!("tether: {} refused", agent.name)),
        "{line}"
    );
    assert!(
        line.contains("port_forward.allow"),
        "the refusal should name the rule: {line}"
    );

    // The forward keeps working for the allowed target...
    assert_eq!(
        echo_round_trip(allowed_local, b"allowed").expect("allowed target"),
        b"allowed"
    );
    assert!(forward.stdout().contains("Forwarding"));
    // ...and the refused one was never dialled.
    assert_eq!(denied.accepted(), 0, "the device dialled a refused target");
    assert_eq!(allowed.accepted(), 1);
}

#[test]
fn the_cli_reconnects_by_itself_after_the_hub_is_killed() {
    let echo = TcpEcho::start();
    let (mut hub, cli, agent) = setup(&forward_config(""));
    let mut forward = PortForward::start(&cli, &agent.name, &[&format!("0:127.0.0.1:{}", echo.port())], &[]);
    let port = forward.local_port(0);
    assert_eq!(echo_round_trip(port, b"before").unwrap(), b"before");

    hub.kill();
    hub.restart();
    cli.wait_online(&agent.name);

    // The same local port serves again once the CLI and the agent have found the hub.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let error = match echo_round_trip(port, b"after") {
            Ok(back) if back == b"after" => break,
            Ok(back) => format!("echoed {back:?}"),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            panic!(
                "no working connection through the forward 90 s after the hub restarted \
                 (last: {error})\n{}\nagent log:\n{}",
                forward.logs(),
                agent.log()
            );
        }
        std::thread::sleep(Duration::from_millis(400));
    }
    assert!(
        forward.is_running(),
        "the CLI must keep running across the hub restart\n{}",
        forward.logs()
    );
    // Several new connections, not just one lucky one.
    for i in 0..5u8 {
        let payload = vec![i; 10_000];
        assert_eq!(echo_round_trip(port, &payload).unwrap(), payload);
    }
}

/// A forwarded connection's audit events are written behind its bytes (its first bytes do not
/// wait for a disk flush), and still fail closed: once the hub cannot write one, the session
/// ends, and the forward cannot open another (a new session is refused for the same reason).
#[test]
fn a_connection_whose_audit_event_cannot_be_written_ends_the_session() {
    let (hub, cli, agent) = setup(&forward_config(""));
    let echo = TcpEcho::start();
    let forward = PortForward::start(&cli, &agent.name, &[&format!("0:127.0.0.1:{}", echo.port())], &[]);
    let port = forward.local_port(0);
    assert_eq!(echo_round_trip(port, b"before").expect("echo before"), b"before");
    // From now on every audit append fails, as on a broken disk.
    let trigger = "CREATE TRIGGER broken_disk BEFORE INSERT ON audit_events \
                   BEGIN SELECT RAISE(ABORT, 'disk I/O error (test)'); END;";
    tether_e2e::sqlite(&hub.data_dir().join("hub.db"), trigger);
    // The next connection's open event cannot be written: the session ends with the reason.
    let _ = echo_round_trip(port, b"after");
    assert!(
        forward.wait_stderr("the audit log cannot be written", 1, WAIT),
        "the forward was not told why its session ended:\n{}",
        forward.logs()
    );
    // From now on the hub waits for each event again before the connection's bytes flow: none
    // gets an answer from the target (the device may dial it; nothing is relayed).
    for _ in 0..3 {
        let echoed = echo_round_trip(port, b"later").unwrap_or_default();
        assert!(
            echoed.is_empty(),
            "bytes were relayed without an audit record: {echoed:?}"
        );
    }
}
