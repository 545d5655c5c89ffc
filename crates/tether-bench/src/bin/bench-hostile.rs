//! Hostile traffic figures: how many idle TLS connections the hub holds before it refuses new
//! ones (from one client address, and from many), the time of a `tether exec` while 2,000 idle
//! connections and a slow-header client are open beside the same with none, and the hub's memory
//! per concurrent idle terminal session. Prints, never asserts.
//!
//! Environment: `SESSIONS` (idle terminals, default 1000), `USERS` (default 4), `EXECS` (timed
//! execs per arm, default 10), `TETHER_BIN_DIR`.

use std::{
    net::Ipv4Addr,
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::{SinkExt as _, StreamExt as _};
use tether_bench::{Binaries, Stats, env_or, proc_status_field, stage};
use tether_e2e::{
    Agent, Cli, Hub, HubOptions,
    hostile::{IdleConnections, Target, TrickleClient},
};
use tether_proto::{
    api::user_connect_path,
    envelope::Envelope,
    protocol,
    shell::{Shell, status},
};
use tokio_tungstenite::tungstenite::Message;

fn main() -> ExitCode {
    if let Some(code) = stage(&Binaries::from_env()) {
        return code;
    }
    held_before_refusal();
    exec_under_attack(env_or("EXECS", 10));
    memory_per_session(env_or("SESSIONS", 1000), env_or("USERS", 4));
    ExitCode::SUCCESS
}

/// The hub's soft limit on open files (it raises it to the hard limit at start).
fn open_file_limit(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .unwrap_or_default()
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3).map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// Source address `index` of many: 127.5.0.1 ... 127.5.0.250, 127.5.1.1, ... (fewer
/// connections per address than the per-address cap).
fn many_addresses(index: usize) -> Ipv4Addr {
    let (high, low) = (index / 250, index % 250 + 1);
    Ipv4Addr::new(127, 5 + (high / 256) as u8, (high % 256) as u8, low as u8)
}

fn held_before_refusal() {
    eprintln!("--- idle TLS connections held before refusal (default caps)");
    // A long deadline: the measure is the caps, not how fast the deadline closes them.
    let mut hub = Hub::start(HubOptions::default().config("request_deadline_secs = 3600"));
    let pid = hub.process().pid().expect("hub pid");
    let target = Target::of(&hub);
    let (one, held_one) =
        IdleConnections::open_until_refused(&target, |_| Ipv4Addr::new(127, 0, 0, 2), 100_000);
    eprintln!("one address: {}", one.summary());
    drop(one);
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    let (many, held_many) = IdleConnections::open_until_refused(&target, many_addresses, 1_000_000);
    eprintln!(
        "many addresses: {} in {:.1} s",
        many.summary(),
        started.elapsed().as_secs_f64()
    );
    let rss = proc_status_field(pid, "VmRSS").unwrap_or(0);
    println!(
        "hub open-file limit (soft, after raising): {}",
        open_file_limit(pid)
    );
    println!("idle TLS connections held from one address before refusal: {held_one}");
    println!("idle TLS connections held from many addresses before refusal: {held_many}");
    println!("hub RSS holding them: {} kB", rss);
    println!("METRIC hostile_held_one_address {held_one}");
    println!("METRIC hostile_held_total {held_many}");
    drop(many);
}

fn time_execs(cli: &Cli, device: &str, count: usize) -> Stats {
    let samples: Vec<Duration> = (0..count)
        .map(|_| {
            let started = Instant::now();
            let output = cli.exec(device, &["true"]);
            let elapsed = started.elapsed();
            assert!(output.success(), "tether exec failed:\n{output}");
            elapsed
        })
        .collect();
    Stats::of(&samples)
}

fn exec_under_attack(execs: usize) {
    eprintln!("--- tether exec with and without 2,000 idle connections and a slow-header client");
    // The caps are raised so that the 2,000 idle connections are all held (the worst case for
    // the hub); with the defaults most of them are refused by the per-address cap.
    let hub = Hub::start(
        HubOptions::default()
            .config("request_deadline_secs = 3600")
            .config("http_idle_timeout_secs = 3600")
            .config("max_connections_per_address = 4096"),
    );
    let cli = hub.user_cli("alice", true);
    let agent = Agent::start(&hub, "[terminal]\nshell = \"/bin/sh\"\n");
    cli.accept(&agent.name);
    time_execs(&cli, &agent.name, 2); // warm-up
    let quiet = time_execs(&cli, &agent.name, execs);

    let target = Target::of(&hub);
    let idle = IdleConnections::open(&target, Ipv4Addr::new(127, 0, 0, 2), 2000, 64);
    let slow = TrickleClient::start(
        &target,
        Ipv4Addr::new(127, 0, 0, 3),
        b"",
        &[b'x'; 4096],
        Duration::from_secs(1),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while idle.attempted() < 2000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "hostile: {}; slow header: {:?}",
        idle.summary(),
        slow.report().connected
    );
    let hostile = time_execs(&cli, &agent.name, execs);
    eprintln!("hostile after the execs: {}", idle.summary());
    let ms = |duration: Duration| duration.as_secs_f64() * 1000.0;
    println!(
        "tether exec, nothing else open: p50 {:.1} ms, mean {:.1} ms ({} runs)",
        ms(quiet.p50),
        ms(quiet.mean),
        quiet.count
    );
    println!(
        "tether exec, {} idle TLS connections + a slow-header client open: p50 {:.1} ms, mean {:.1} ms",
        idle.open_now(),
        ms(hostile.p50),
        ms(hostile.mean)
    );
    println!(
        "hostile/quiet exec p50: {:.2}x",
        hostile.p50.as_secs_f64() / quiet.p50.as_secs_f64()
    );
    println!("METRIC hostile_exec_p50_ms_quiet {:.1}", ms(quiet.p50));
    println!("METRIC hostile_exec_p50_ms_attacked {:.1}", ms(hostile.p50));
}

/// Opens one idle terminal: the user WebSocket, the device's accept, a shell and its first answer.
async fn open_terminal(
    hub: &tether_net::HubUrl,
    tls: Arc<rustls::ClientConfig>,
    token: &str,
    device_id: &str,
) -> tether_net::WebSocket {
    let mut socket = tether_net::connect_websocket(
        hub,
        &user_connect_path(device_id),
        token,
        tls,
        None,
        1 << 20,
        Duration::from_secs(60),
    )
    .await
    .expect("user session WebSocket");
    let mut shell_sent = false;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(60), socket.next())
            .await
            .expect("the session answers")
            .expect("the session stays open")
            .expect("a message");
        let Message::Binary(bytes) = message else { continue };
        let envelope = Envelope::decode(&bytes).expect("an envelope");
        if envelope.proto == protocol::CONTROL && envelope.typ == "accept" && !shell_sent {
            let new = Shell::New {
                user_id: None,
                width: Some(80),
                height: Some(24),
                command: None,
                local_user: None,
                status: None,
                text: Vec::new(),
            };
            socket
                .send(Message::Binary(new.to_envelope(&envelope.sid).encode().into()))
                .await
                .expect("send shell new");
            shell_sent = true;
        } else if envelope.proto == protocol::SHELL {
            if let Ok(Shell::New {
                status: answer, text, ..
            }) = Shell::from_envelope(&envelope)
            {
                assert_ne!(
                    answer,
                    Some(status::ERROR),
                    "the shell was refused: {}",
                    String::from_utf8_lossy(&text)
                );
            }
            return socket;
        } else if envelope.proto == protocol::CONTROL && envelope.typ == "error" {
            panic!(
                "the session was refused: {:?}",
                String::from_utf8_lossy(&envelope.body)
            );
        }
    }
}

fn memory_per_session(sessions: usize, users: usize) {
    eprintln!("--- hub memory per idle terminal session ({sessions} sessions, {users} users)");
    // No pings while idle; the hub's own per-user session caps, when configured, would be raised
    // here too.
    let mut hub = Hub::start(HubOptions::default().config("keepalive_interval_secs = 600"));
    let pid = hub.process().pid().expect("hub pid");
    let agent = Agent::start(
        &hub,
        &format!(
            "keepalive_interval_secs = 600\n[terminal]\nshell = \"/bin/sh\"\nmax_sessions = {}\nmax_sessions_per_user = {}\n",
            sessions + 10,
            sessions + 10
        ),
    );
    let clis: Vec<Cli> = (0..users.max(1))
        .map(|index| hub.user_cli(&format!("user{index}"), true))
        .collect();
    let device = clis[0].accept(&agent.name);
    let tokens: Vec<String> = clis.iter().map(Cli::token).collect();
    let url = hub.hub_url();
    let tls = hub.tls();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // A few sessions first, so that the baseline includes what any first session allocates.
    let warm: Vec<_> = runtime.block_on(async {
        let mut warm = Vec::new();
        for token in &tokens {
            warm.push(open_terminal(&url, tls.clone(), token, &device.id).await);
        }
        warm
    });
    std::thread::sleep(Duration::from_secs(2));
    let before = proc_status_field(pid, "VmRSS").unwrap_or(0);
    let started = Instant::now();
    let open: Vec<_> = runtime.block_on(async {
        let mut open = Vec::with_capacity(sessions);
        let opened = futures_util::stream::iter((0..sessions).map(|index| {
            let (url, tls, token, id) = (
                url.clone(),
                tls.clone(),
                tokens[index % tokens.len()].clone(),
                device.id.clone(),
            );
            async move { open_terminal(&url, tls, &token, &id).await }
        }))
        .buffer_unordered(32);
        futures_util::pin_mut!(opened);
        while let Some(socket) = opened.next().await {
            open.push(socket);
        }
        open
    });
    eprintln!(
        "{} terminals open in {:.1} s",
        open.len(),
        started.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(3));
    let after = proc_status_field(pid, "VmRSS").unwrap_or(0);
    let per_session = (after.saturating_sub(before)) as f64 / open.len() as f64;
    println!(
        "hub RSS with {} idle terminals: {before} kB before, {after} kB after",
        open.len()
    );
    println!("hub memory per idle terminal session: {per_session:.1} kB");
    println!("METRIC hostile_hub_kb_per_session {per_session:.1}");
    drop((open, warm));
    runtime.shutdown_background();
}
