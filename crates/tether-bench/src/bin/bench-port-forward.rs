//! Port-forward throughput and connection rate: TCP through `tether port-forward DEVICE
//! 0:127.0.0.1:PORT --bind 127.0.0.1` (client -> CLI -> hub -> agent -> target, two TLS WebSocket
//! legs), beside `ssh -N -L` to a local `sshd` started here, beside the target directly, in the
//! same run, on 127.0.0.1. Release hub, CLI and agent.
//!
//! Method: the target is a small TCP server of this benchmark. On each connection it reads a
//! command: `U` + length (it reads that many bytes, then answers one byte), `D` + length (it
//! sends that many bytes of pseudo-random data), or `E` (it echoes 4 bytes and closes).
//! - Throughput: one connection uploads `FORWARD_BYTES` (default 1 GiB) to the target, timed
//!   until the target's answer, and one downloads as many, timed until the last byte. MB/s.
//!   Then the same bytes through `PARALLEL` (4) connections at once, each moving its share, timed
//!   until the last is done. For each: the CPU seconds per GiB of the whole machine and of the
//!   hub (`/proc`), the lowest of the rounds.
//! - Connection rate: `WORKERS` threads (default 4) each open a connection, exchange 4 bytes,
//!   close, again and again for `RATE_SECONDS` (default 5); connections per second.
//!
//! Rounds (`ROUNDS`, default 1) alternate direct, ssh and tether. Figures and ratios are printed,
//! never asserted. Without sshd the ssh column is skipped.

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    process::{Command, ExitCode, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tether_bench::{
    Binaries,
    cpu::{machine_cpu, proc_cpu},
    env_or, stage,
};
use tether_e2e::{
    Agent, Hub, PortForward, Proc,
    peers::{SSH_CLIENT_OPTIONS, Sshd, deterministic_bytes, free_port},
};

/// Size of the data buffer the sender repeats.
const CHUNK: usize = 1 << 20;
/// Give-up limit for one bulk transfer.
const LIMIT: Duration = Duration::from_secs(120);

/// Each round's MB/s, or why it failed.
type Rounds = Vec<Result<f64, String>>;

/// What is measured: one connection each way, then `PARALLEL` connections at once each way.
const DIRECTIONS: [&str; 4] = ["upload", "download", "upload_parallel", "download_parallel"];

fn main() -> ExitCode {
    if let Some(code) = stage(&Binaries::from_env()) {
        return code;
    }
    let bytes: u64 = env_or("FORWARD_BYTES", 1 << 30);
    let rounds: usize = env_or("ROUNDS", 1);
    let workers: usize = env_or("WORKERS", 4);
    let rate_seconds: f64 = env_or("RATE_SECONDS", 5.0);
    let parallel: u64 = env_or("PARALLEL", 4);

    let target = Target::start();
    let mut hub = Hub::start_default();
    let hub_pid = hub.process().pid().expect("hub pid");
    let cli = hub.user_cli("bench", true);
    let agent = Agent::start(&hub, "[port_forward]\nenabled = true\n");
    cli.accept(&agent.name);
    let forward = PortForward::start(
        &cli,
        &agent.name,
        &[&format!("0:127.0.0.1:{}", target.port)],
        &["--bind", "127.0.0.1"],
    );
    let tether_port = forward.local_port(0);

    let sshd = Sshd::start();
    let ssh = sshd
        .as_ref()
        .and_then(|sshd| match SshForward::start(sshd, target.port) {
            Ok(ssh) => Some(ssh),
            Err(e) => {
                eprintln!("ssh comparison skipped: {e}");
                None
            }
        });

    let mut peers: Vec<(&str, u16)> = vec![("direct", target.port)];
    if let Some(ssh) = &ssh {
        peers.push(("ssh", ssh.local_port));
    }
    peers.push(("tether", tether_port));
    for (name, port) in &peers {
        if let Err(e) = echo_once(*port) {
            eprintln!("{name}: the first connection failed: {e}");
        }
    }

    // name, direction -> MB/s of each round
    let mut throughput: Vec<(&str, &str, Rounds)> = Vec::new();
    for (name, _) in &peers {
        for direction in DIRECTIONS {
            throughput.push((name, direction, Vec::new()));
        }
    }
    // name, direction -> lowest CPU seconds per GiB of the machine and of the hub, over rounds
    let mut cpu: Vec<(&str, &str, f64, f64)> = Vec::new();
    for _ in 0..rounds {
        for (name, port) in &peers {
            for direction in DIRECTIONS {
                let (machine_before, hub_before) = (machine_cpu(), proc_cpu(hub_pid).unwrap_or_default());
                let result = match direction {
                    "upload" => upload(*port, bytes),
                    "download" => download(*port, bytes),
                    parallel_direction => in_parallel(*port, bytes, parallel, parallel_direction),
                };
                let gib = bytes as f64 / (1u64 << 30) as f64;
                let machine = (machine_cpu() - machine_before) / gib;
                let hub_cpu = proc_cpu(hub_pid).unwrap_or_default() - hub_before;
                let hub_cpu = (hub_cpu.user + hub_cpu.system) / gib;
                if result.is_ok() {
                    match cpu.iter_mut().find(|(n, d, ..)| n == name && *d == direction) {
                        Some(row) => (row.2, row.3) = (row.2.min(machine), row.3.min(hub_cpu)),
                        None => cpu.push((name, direction, machine, hub_cpu)),
                    }
                }
                let result = result.map(|seconds| bytes as f64 / 1e6 / seconds);
                if let Err(e) = &result {
                    eprintln!("{name} {direction}: {e}");
                }
                throughput
                    .iter_mut()
                    .find(|(n, d, _)| n == name && *d == direction)
                    .expect("row")
                    .2
                    .push(result);
            }
        }
    }
    let mut rates: Vec<(&str, Rate)> = Vec::new();
    for (name, port) in &peers {
        rates.push((
            name,
            connection_rate(*port, workers, Duration::from_secs_f64(rate_seconds)),
        ));
    }

    println!(
        "== port-forward throughput, {bytes} bytes through one TCP connection, and through {parallel} at once \
         (*_parallel), 127.0.0.1 (MB = 10^6 bytes) =="
    );
    println!(
        "direct: the target itself; ssh: ssh -N -L to a local sshd; tether: tether port-forward through the hub"
    );
    println!("{:<8} {:<9} {:>10}  each round", "path", "direction", "best MB/s");
    let best = |name: &str, direction: &str| -> Option<f64> {
        throughput
            .iter()
            .find(|(n, d, _)| *n == name && *d == direction)?
            .2
            .iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .fold(None, |b: Option<f64>, v| Some(b.map_or(v, |b| b.max(v))))
    };
    for (name, direction, results) in &throughput {
        let each: Vec<String> = results
            .iter()
            .map(|r| match r {
                Ok(v) => format!("{v:.1}"),
                Err(e) => format!("failed ({e})"),
            })
            .collect();
        println!(
            "{name:<8} {direction:<9} {:>10}  {}",
            best(name, direction)
                .map(|v| format!("{v:.1}"))
                .unwrap_or_else(|| "-".into()),
            each.join(", ")
        );
        if let Some(v) = best(name, direction) {
            println!("METRIC forward_{direction}_mbps_{name} {v:.1}");
        }
    }
    for direction in DIRECTIONS {
        let t = best("tether", direction);
        let mut line = format!("{direction}:");
        for peer in ["ssh", "direct"] {
            if let (Some(t), Some(p)) = (t, best(peer, direction)) {
                line.push_str(&format!(" tether/{peer} {:.2}x", t / p));
                println!("METRIC forward_{direction}_ratio_{peer} {:.2}", t / p);
            }
        }
        println!("{line}");
    }

    println!(
        "== CPU seconds per GiB moved, lowest of the rounds: the whole machine's (/proc/stat: client, \
         target and whatever relays; meaningful on an idle machine), and the tether hub's own =="
    );
    println!(
        "{:<8} {:<18} {:>10} {:>10}",
        "path", "direction", "machine", "hub"
    );
    for (name, direction, machine, hub_cpu) in &cpu {
        let hub_cpu = if *name == "tether" {
            format!("{hub_cpu:.2}")
        } else {
            "-".into()
        };
        println!("{name:<8} {direction:<18} {machine:>10.2} {hub_cpu:>10}");
        println!("METRIC forward_{direction}_cpu_per_gib_{name} {machine:.2}");
    }
    for direction in DIRECTIONS {
        if let Some((.., hub_cpu)) = cpu.iter().find(|(n, d, ..)| *n == "tether" && *d == direction) {
            println!("METRIC forward_{direction}_hub_cpu_per_gib {hub_cpu:.2}");
        }
    }

    println!(
        "== connections per second: {workers} workers, each connect + 4-byte echo + close, {rate_seconds} s =="
    );
    println!(
        "{:<8} {:>10} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "path", "conn/s", "failed", "mean ms", "p50 ms", "p99 ms", "max ms"
    );
    for (name, rate) in &rates {
        println!(
            "{name:<8} {:>10.1} {:>8} {:>10.2} {:>10.2} {:>10.2} {:>10.2}",
            rate.per_second, rate.failed, rate.mean_ms, rate.p50_ms, rate.p99_ms, rate.max_ms
        );
        println!("METRIC forward_conn_per_s_{name} {:.1}", rate.per_second);
        if let Some(e) = &rate.first_error {
            println!("  {name}: first failure: {e}");
        }
    }
    let rate_of = |name: &str| rates.iter().find(|(n, _)| *n == name).map(|(_, r)| r.per_second);
    let mut line = "connections/s:".to_owned();
    for peer in ["ssh", "direct"] {
        if let (Some(t), Some(p)) = (rate_of("tether"), rate_of(peer)) {
            line.push_str(&format!(" tether/{peer} {:.2}x", t / p));
            println!("METRIC forward_conn_ratio_{peer} {:.2}", t / p);
        }
    }
    println!("{line}");
    let latency_of = |name: &str| {
        rates
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, r)| (r.p50_ms, r.p99_ms))
    };
    if let (Some((t50, t99)), Some((s50, s99))) = (latency_of("tether"), latency_of("ssh"))
        && s50 > 0.0
        && s99 > 0.0
    {
        println!(
            "connection set-up: tether/ssh p50 {:.2}x p99 {:.2}x",
            t50 / s50,
            t99 / s99
        );
        println!("METRIC forward_conn_p50_ratio_ssh {:.2}", t50 / s50);
        println!("METRIC forward_conn_p99_ratio_ssh {:.2}", t99 / s99);
    }

    drop(forward);
    drop(ssh);
    drop(sshd);
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------------------------------------
// The target

struct Target {
    port: u16,
}

impl Target {
    /// A thread-per-connection server on a free 127.0.0.1 port, for the life of the process.
    fn start() -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the target");
        let port = listener.local_addr().expect("target address").port();
        let data = Arc::new(deterministic_bytes(0x5eed, CHUNK));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let data = data.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &data);
                });
            }
        });
        Target { port }
    }
}

fn serve(mut stream: TcpStream, data: &[u8]) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut command = [0u8; 1];
    stream.read_exact(&mut command)?;
    match command[0] {
        b'E' => {
            let mut ping = [0u8; 4];
            stream.read_exact(&mut ping)?;
            stream.write_all(&ping)?;
        }
        b'U' => {
            let len = read_len(&mut stream)?;
            let mut buffer = vec![0u8; CHUNK];
            let mut left = len;
            while left > 0 {
                let n = stream.read(&mut buffer[..(left.min(CHUNK as u64) as usize)])?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                left -= n as u64;
            }
            stream.write_all(b"K")?;
        }
        b'D' => {
            let len = read_len(&mut stream)?;
            let mut left = len;
            while left > 0 {
                let n = left.min(CHUNK as u64) as usize;
                stream.write_all(&data[..n])?;
                left -= n as u64;
            }
        }
        _ => {}
    }
    // Let the client read everything before the close.
    let _ = stream.shutdown(Shutdown::Write);
    let mut rest = [0u8; 64];
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    while matches!(stream.read(&mut rest), Ok(n) if n > 0) {}
    Ok(())
}

fn read_len(stream: &mut TcpStream) -> std::io::Result<u64> {
    let mut len = [0u8; 8];
    stream.read_exact(&mut len)?;
    Ok(u64::from_be_bytes(len))
}

fn connect(port: u16) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(LIMIT))?;
    stream.set_write_timeout(Some(LIMIT))?;
    Ok(stream)
}

/// Sends `bytes` to the target through `port`; seconds until the target confirmed them all.
fn upload(port: u16, bytes: u64) -> Result<f64, String> {
    let data = deterministic_bytes(0xda7a, CHUNK);
    let start = Instant::now();
    let mut stream = connect(port).map_err(|e| format!("connect: {e}"))?;
    let mut head = vec![b'U'];
    head.extend_from_slice(&bytes.to_be_bytes());
    stream.write_all(&head).map_err(|e| format!("write: {e}"))?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        stream
            .write_all(&data[..n])
            .map_err(|e| format!("write after {} bytes: {e}", bytes - left))?;
        left -= n as u64;
    }
    let mut answer = [0u8; 1];
    stream
        .read_exact(&mut answer)
        .map_err(|e| format!("no answer after sending everything: {e}"))?;
    Ok(start.elapsed().as_secs_f64())
}

/// `upload_parallel` or `download_parallel`: `bytes` in all through `connections` connections
/// at once; seconds until the last one is done.
fn in_parallel(port: u16, bytes: u64, connections: u64, direction: &str) -> Result<f64, String> {
    let share = bytes / connections.max(1);
    let start = Instant::now();
    let workers: Vec<_> = (0..connections.max(1))
        .map(|_| {
            let upload_side = direction == "upload_parallel";
            std::thread::spawn(move || {
                if upload_side {
                    upload(port, share)
                } else {
                    download(port, share)
                }
            })
        })
        .collect();
    for worker in workers {
        worker
            .join()
            .map_err(|_| "a connection's thread panicked".to_owned())??;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Receives `bytes` from the target through `port`; seconds until the last byte.
fn download(port: u16, bytes: u64) -> Result<f64, String> {
    let start = Instant::now();
    let mut stream = connect(port).map_err(|e| format!("connect: {e}"))?;
    let mut head = vec![b'D'];
    head.extend_from_slice(&bytes.to_be_bytes());
    stream.write_all(&head).map_err(|e| format!("write: {e}"))?;
    let mut buffer = vec![0u8; CHUNK];
    let mut received = 0u64;
    while received < bytes {
        let n = stream
            .read(&mut buffer)
            .map_err(|e| format!("read after {received} bytes: {e}"))?;
        if n == 0 {
            return Err(format!("closed after {received} of {bytes} bytes"));
        }
        received += n as u64;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// One connection: connect, 4-byte echo, close.
fn echo_once(port: u16) -> Result<(), String> {
    let mut stream = connect(port).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    stream.write_all(b"Eping").map_err(|e| format!("write: {e}"))?;
    let mut pong = [0u8; 4];
    stream.read_exact(&mut pong).map_err(|e| format!("read: {e}"))?;
    if &pong != b"ping" {
        return Err(format!("echoed {pong:?}"));
    }
    Ok(())
}

struct Rate {
    per_second: f64,
    failed: u64,
    mean_ms: f64,
    /// Median and 99th percentile of one connection's set-up, 4-byte echo and answer.
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    first_error: Option<String>,
}

fn connection_rate(port: u16, workers: usize, duration: Duration) -> Rate {
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let stop = stop.clone();
            let failed = failed.clone();
            std::thread::spawn(move || {
                let mut samples = Vec::new();
                let mut first_error = None;
                while !stop.load(Ordering::Relaxed) {
                    let began = Instant::now();
                    match echo_once(port) {
                        Ok(()) => samples.push(began.elapsed()),
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            first_error.get_or_insert(e);
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                }
                (samples, first_error)
            })
        })
        .collect();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    let mut samples = Vec::new();
    let mut first_error = None;
    for thread in threads {
        let (s, e) = thread.join().expect("worker");
        samples.extend(s);
        if first_error.is_none() {
            first_error = e;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let count = samples.len();
    Rate {
        per_second: count as f64 / elapsed,
        failed: failed.load(Ordering::Relaxed),
        mean_ms: if count > 0 {
            samples.iter().map(|d| ms(*d)).sum::<f64>() / count as f64
        } else {
            0.0
        },
        p50_ms: if count > 0 { ms(samples[count / 2]) } else { 0.0 },
        p99_ms: if count > 0 {
            ms(samples[((count as f64 * 0.99).ceil() as usize).clamp(1, count) - 1])
        } else {
            0.0
        },
        max_ms: samples.last().map(|d| ms(*d)).unwrap_or(0.0),
        first_error,
    }
}

// ---------------------------------------------------------------------------------------------
// ssh -L

/// `ssh -N -L LOCAL:127.0.0.1:TARGET` to the local sshd, killed on drop.
struct SshForward {
    _process: Proc,
    local_port: u16,
    _dir: tempfile::TempDir,
}

impl SshForward {
    fn start(sshd: &Sshd, target: u16) -> Result<SshForward, String> {
        let dir = tempfile::Builder::new()
            .prefix("tether-bench-ssh-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let local_port = free_port();
        let mut command = Command::new("ssh");
        command
            .args(SSH_CLIENT_OPTIONS)
            .args([
                "-N",
                "-o",
                "ExitOnForwardFailure=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-i",
            ])
            .arg(&sshd.client_key)
            .arg("-p")
            .arg(sshd.port.to_string())
            .arg("-L")
            .arg(format!("127.0.0.1:{local_port}:127.0.0.1:{target}"))
            .arg(format!("{}@127.0.0.1", sshd.user))
            .stdin(Stdio::null());
        let mut process = Proc::spawn("ssh-L", command, dir.path());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if echo_once(local_port).is_ok() {
                break;
            }
            if process.try_wait().is_some() || Instant::now() >= deadline {
                return Err(format!("ssh -L did not forward:\n{}", process.logs()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(SshForward {
            _process: process,
            local_port,
            _dir: dir,
        })
    }
}
