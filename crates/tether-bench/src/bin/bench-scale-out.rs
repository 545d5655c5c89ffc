//! Scale-out figures: idle device connections per GB of hub memory, the hub's CPU while they
//! idle, the time for all of them to reconnect after the hub restarts, and file transfer
//! throughput across two replicas (PostgreSQL + NATS) beside the same cluster's single-replica
//! path. Prints, never asserts.
//!
//! The load generator speaks the device protocol for real: each simulated device authenticates
//! with its own Ed25519 key (the harness's `FakeDevice`, provisioning key), then keeps a TLS
//! WebSocket open from its own loopback source address (127.1.x.y, so that 10,000+ connections do
//! not exhaust one address's ephemeral ports), answering pings and reconnecting with jitter when
//! the hub goes away.
//!
//! Environment: `DEVICES` (default 10000), `IDLE_SECONDS` (CPU sample, default 10),
//! `TRANSFER_BYTES` (cross-replica copy, default 268435456), `TETHER_BIN_DIR`. The hub and the
//! generator each need a file descriptor per device (`ulimit -n`).

use std::{
    net::{Ipv4Addr, SocketAddr},
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::StreamExt as _;
use tether_bench::{Binaries, env_or, human_bytes, proc_status_field, stage};
use tether_e2e::{
    Agent, FakeDevice, Hub, HubOptions, Nats, Postgres,
    peers::{sha256_file, write_deterministic_file},
};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

const PROVISIONING_KEY: &str = "bench-provisioning-key";

fn main() -> ExitCode {
    if let Some(code) = stage(&Binaries::from_env()) {
        return code;
    }
    let devices: usize = env_or("DEVICES", 10_000);
    let idle_seconds: u64 = env_or("IDLE_SECONDS", 10);
    idle_devices(devices, idle_seconds);
    cross_replica_transfer(env_or("TRANSFER_BYTES", 256 << 20));
    ExitCode::SUCCESS
}

/// CPU time (user + system) of a process so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |index: usize| fields.get(index).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the ')'.
    field(11) + field(12)
}

fn rss_kib(pid: u32) -> u64 {
    proc_status_field(pid, "VmRSS").unwrap_or(0)
}

/// The source address of simulated device `index`: 127.1.0.1, 127.1.0.2, ... 127.1.0.200, 127.1.1.1...
fn source_address(index: usize) -> SocketAddr {
    let (high, low) = (index / 200, index % 200 + 1);
    SocketAddr::from((
        Ipv4Addr::new(127, 1 + (high / 256) as u8, (high % 256) as u8, low as u8),
        0,
    ))
}

fn idle_devices(count: usize, idle_seconds: u64) {
    let mut hub = Hub::start(
        HubOptions::default()
            .provisioning_key(PROVISIONING_KEY)
            // No pings during the measurement: the generator's devices send none either.
            .env("TETHER_HUB_KEEPALIVE_INTERVAL_SECS", "600")
            // The derived cap keeps a file per connection for recordings these devices never
            // open: allow every device (the hub still keeps its fixed reserve).
            .env("TETHER_HUB_MAX_CONNECTIONS", &(count + 100).to_string()),
    );
    let pid = hub.process().pid().expect("hub pid");
    let empty_rss = rss_kib(pid);

    // Authentication: sequential HTTPS requests from a few threads (not measured).
    let started = Instant::now();
    let threads = 4;
    let tokens: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let hub = &hub;
                scope.spawn(move || {
                    (thread..count)
                        .step_by(threads)
                        .map(|_| FakeDevice::new(hub).token(Some(PROVISIONING_KEY)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("auth thread"))
            .collect()
    });
    eprintln!(
        "{count} devices authenticated in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let connected = Arc::new(AtomicUsize::new(0));
    let tls = hub.tls();
    let target = SocketAddr::from(([127, 0, 0, 1], hub.port));
    let started = Instant::now();
    for (index, token) in tokens.into_iter().enumerate() {
        let connected = connected.clone();
        let tls = tls.clone();
        runtime.spawn(device(index, target, tls, token, connected));
    }
    let all_connected = wait_count(&connected, count, Duration::from_secs(600));
    let connect_time = started.elapsed();
    let connected_at = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let full_rss = rss_kib(pid);
    let ticks_before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(idle_seconds));
    let ticks = cpu_ticks(pid) - ticks_before;
    let idle_cpu = ticks as f64 / USER_HZ / idle_seconds as f64 * 100.0;
    let per_device = (full_rss.saturating_sub(empty_rss)) as f64 * 1024.0 / count as f64;
    println!("== idle devices on one hub ({count} devices)");
    println!(
        "connected: {all_connected} of {count} in {:.1} s",
        connect_time.as_secs_f64()
    );
    println!(
        "hub RSS: {} empty, {} with {count} devices: {} per device, {:.0} devices per GB",
        human_bytes(empty_rss * 1024),
        human_bytes(full_rss * 1024),
        human_bytes(per_device as u64),
        (1u64 << 30) as f64 / per_device.max(1.0)
    );
    println!("hub CPU while idle: {idle_cpu:.1}% of one core (over {idle_seconds} s)");
    // Once the number of connections holds still, the hub hands what the wave of connections
    // freed back to the system (http/memory_trim.rs, looked at every 10 s): what an idle hub keeps.
    std::thread::sleep(Duration::from_secs(25).saturating_sub(connected_at.elapsed()));
    let settled_rss = rss_kib(pid);
    let settled_per_device = (settled_rss.saturating_sub(empty_rss)) as f64 * 1024.0 / count as f64;
    println!(
        "hub RSS settled ({:.0} s after the last connection): {}, {} per device, {:.0} devices per GB; \
         100,000 devices: {}",
        connected_at.elapsed().as_secs_f64(),
        human_bytes(settled_rss * 1024),
        human_bytes(settled_per_device as u64),
        (1u64 << 30) as f64 / settled_per_device.max(1.0),
        human_bytes((empty_rss as f64 * 1024.0 + settled_per_device * 100_000.0) as u64)
    );
    println!("METRIC idle_device_bytes_settled {settled_per_device:.0}");

    // Restart the hub (SIGKILL, same port and data): time until every device is back.
    let before = connected.load(Ordering::SeqCst);
    hub.restart();
    let started = Instant::now();
    wait_count_below(&connected, before, Duration::from_secs(30));
    let back = wait_count(&connected, count, Duration::from_secs(600));
    println!(
        "after a hub restart: {back} of {count} reconnected in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    runtime.shutdown_background();
}

/// Clock ticks per second in `/proc/PID/stat`: USER_HZ is 100 on every Linux architecture the
/// project builds for.
const USER_HZ: f64 = 100.0;

fn wait_count(counter: &AtomicUsize, target: usize, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    while counter.load(Ordering::SeqCst) < target && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    counter.load(Ordering::SeqCst)
}

fn wait_count_below(counter: &AtomicUsize, value: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while counter.load(Ordering::SeqCst) >= value && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One simulated device: connects, idles (the WebSocket layer answers pings), reconnects after a
/// random pause of up to two seconds when the connection ends.
async fn device(
    index: usize,
    target: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    token: String,
    connected: Arc<AtomicUsize>,
) {
    let connector = tokio_rustls::TlsConnector::from(tls);
    loop {
        match connect(index, target, &connector, &token).await {
            Ok(mut socket) => {
                connected.fetch_add(1, Ordering::SeqCst);
                while let Some(Ok(_)) = socket.next().await {}
                connected.fetch_sub(1, Ordering::SeqCst);
            }
            Err(error) => log_failure(index, &error),
        }
        let pause = Duration::from_millis(u64::from(random_u16()) % 2000);
        tokio::time::sleep(pause).await;
    }
}

fn log_failure(index: usize, error: &str) {
    if index == 0 {
        eprintln!("device 0: {error}");
    }
}

/// A random number without another dependency: std's randomly keyed hasher.
fn random_u16() -> u16 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(Instant::now().elapsed().as_nanos() as u64);
    hasher.finish() as u16
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

async fn connect(
    index: usize,
    target: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
    token: &str,
) -> Result<Socket, String> {
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind(source_address(index))
        .map_err(|e| format!("bind: {e}"))?;
    let tcp = socket
        .connect(target)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = rustls_pki_types::ServerName::IpAddress(target.ip().into());
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let url = format!("wss://{target}{}", "/api/devices/v1/deviceconnect/connect");
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        "Authorization",
        format!("Bearer {token}").parse().map_err(|_| "token header")?,
    );
    let (socket, _) = tokio_tungstenite::client_async(request, tls)
        .await
        .map_err(|e| format!("WebSocket: {e}"))?;
    Ok(socket)
}

/// `tether cp` of one file through replica B to a device on replica A, beside the same copy
/// through A itself (same cluster, no bridge).
fn cross_replica_transfer(bytes: u64) {
    let postgres = Postgres::start();
    let database = postgres.create_database("bench");
    let nats = Nats::start();
    let options = HubOptions::default()
        .replica(&database, &nats.url())
        .provisioning_key(PROVISIONING_KEY);
    let a = Hub::start(options.clone());
    let b = Hub::start(options.secrets_of(&a));
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("device");
    std::fs::create_dir(&root).unwrap();
    let config = format!(
        "provisioning_key = {PROVISIONING_KEY:?}\n[file_transfer]\nenabled = true\nroots = [{:?}]\nmax_file_size = 0\n",
        root.display().to_string()
    );
    let agent = Agent::start_multi(&a, &[&a.url, &b.url], &config);
    let cli_a = a.user_cli("bench", true);
    let cli_b = b.cli();
    cli_b.login("bench", "pw-bench-correct-horse");
    cli_a.wait_online(&agent.name);
    let source = dir.path().join("source.bin");
    write_deterministic_file(&source, 11, bytes);
    let expected = sha256_file(&source);
    println!("== file transfer, {} upload and download", human_bytes(bytes));
    for (label, cli) in [
        ("single replica (A)", &cli_a),
        ("across replicas (B -> A)", &cli_b),
    ] {
        let remote_path = root.join("copy.bin");
        let remote = format!("{}:{}", agent.name, remote_path.display());
        let started = Instant::now();
        let up = cli.run_for(
            &["cp", source.to_str().unwrap(), &remote],
            Duration::from_secs(600),
        );
        let up_time = started.elapsed();
        let back = dir.path().join("back.bin");
        let started = Instant::now();
        let down = cli.run_for(&["cp", &remote, back.to_str().unwrap()], Duration::from_secs(600));
        let down_time = started.elapsed();
        let mb = bytes as f64 / 1e6;
        let intact = up.success() && down.success() && sha256_file(&back) == expected;
        println!(
            "{label}: upload {:.0} MB/s, download {:.0} MB/s{}",
            mb / up_time.as_secs_f64(),
            mb / down_time.as_secs_f64(),
            if intact { "" } else { " (CHECKSUM OR COPY FAILED)" }
        );
        let _ = std::fs::remove_file(&back);
        let _ = std::fs::remove_file(&remote_path);
    }
}
