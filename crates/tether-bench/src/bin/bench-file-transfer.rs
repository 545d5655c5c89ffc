//! File transfer throughput: `tether cp` upload and download of one large file (1 GiB by default)
//! through the hub (CLI -> hub -> agent and back, two TLS WebSocket legs), beside `scp` to a local
//! `sshd` started here, in the same run, both directions, on 127.0.0.1. Release hub, CLI and agent.
//!
//! Method: a file of pseudo-random bytes (a seeded PRNG, not zeros) is written once in a temporary
//! directory, which is also the device's only `file_transfer.roots` entry (`max_file_size = 0`).
//! Each copy is timed from starting the client process until it exits (wall clock: connection,
//! authentication and the final sync included, for both tools) and its result is checked with
//! SHA-256 (reported, never asserted). Rounds alternate tether and scp so that background noise
//! falls on both. Every copy also reports the machine's total CPU time during it (all processes,
//! from `/proc/stat`), and a final profiled round reports the CPU time of each Tether process
//! (hub, agent, CLI, from `/proc/PID/stat`) for one upload and one download.
//!
//! Environment: `TRANSFER_BYTES` (default 1073741824), `ROUNDS` (default 1), `TETHER_BIN_DIR`.
//! Without sshd the scp column is skipped.

use std::{
    fs::File,
    path::Path,
    process::{Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use tether_bench::{
    Binaries,
    cpu::{Cpu, machine_cpu, proc_cpu, proc_state},
    env_or, stage,
};
use tether_e2e::{
    Agent, Cli, Hub,
    peers::{SSH_CLIENT_OPTIONS, Sshd, sha256_file, write_deterministic_file},
};

const SEED: u64 = 0x7e7e_f11e;
/// Give-up limit for one copy.
const LIMIT: Duration = Duration::from_secs(240);

fn main() -> ExitCode {
    if let Some(code) = stage(&Binaries::from_env()) {
        return code;
    }
    let bytes: u64 = env_or("TRANSFER_BYTES", 1 << 30);
    let rounds: usize = env_or("ROUNDS", 1);

    let dir = tempfile::Builder::new()
        .prefix("tether-bench-files-")
        .tempdir()
        .expect("temp dir");
    let root = dir.path().join("device");
    let local = dir.path().join("local");
    std::fs::create_dir(&root).expect("device dir");
    std::fs::create_dir(&local).expect("local dir");
    let source = local.join("source.bin");
    let generated = Instant::now();
    write_deterministic_file(&source, SEED, bytes);
    // The download source: the same bytes on the device's side (a hard link, no extra disk).
    let remote_source = root.join("source.bin");
    std::fs::hard_link(&source, &remote_source).expect("hard link the source into the root");
    let expected = sha256_file(&source);
    eprintln!(
        "generated {bytes} bytes in {:.1} s, sha256 {expected}",
        generated.elapsed().as_secs_f64()
    );

    let mut hub = Hub::start_default();
    let cli = hub.user_cli("bench", true);
    let mut agent = Agent::start(
        &hub,
        &format!(
            "[file_transfer]\nenabled = true\nroots = [{root:?}]\nmax_file_size = 0\n",
            root = root.display().to_string()
        ),
    );
    cli.accept(&agent.name);
    let sshd = Sshd::start();
    if sshd.is_none() {
        eprintln!("scp comparison skipped: no sshd");
    }

    let up_tether = root.join("up-tether.bin");
    let up_scp = root.join("up-scp.bin");
    let down_tether = local.join("down-tether.bin");
    let down_scp = local.join("down-scp.bin");
    let device = agent.name.clone();
    let remote = |path: &Path| format!("{device}:{}", path.display());

    // Warm-up (not counted): a small file each way, so that the first measured copy does not pay
    // for the device's first session.
    let small = local.join("small.bin");
    write_deterministic_file(&small, SEED + 1, 1 << 20);
    let _ = tether_cp(
        &cli,
        &small.display().to_string(),
        &remote(&root.join("small.bin")),
        dir.path(),
    );
    if let Some(sshd) = &sshd {
        let _ = scp(
            sshd,
            &small.display().to_string(),
            &scp_remote(sshd, &root.join("small-scp.bin")),
        );
    }

    let mut results: Vec<Copy> = Vec::new();
    for round in 0..rounds {
        // Upload.
        let copy = tether_cp(
            &cli,
            &source.display().to_string(),
            &remote(&up_tether),
            dir.path(),
        );
        results.push(checked(
            copy, "tether", "upload", round, &up_tether, &expected, bytes,
        ));
        if let Some(sshd) = &sshd {
            let copy = scp(sshd, &source.display().to_string(), &scp_remote(sshd, &up_scp));
            results.push(checked(copy, "scp", "upload", round, &up_scp, &expected, bytes));
        }
        // Download.
        let copy = tether_cp(
            &cli,
            &remote(&remote_source),
            &down_tether.display().to_string(),
            dir.path(),
        );
        results.push(checked(
            copy,
            "tether",
            "download",
            round,
            &down_tether,
            &expected,
            bytes,
        ));
        if let Some(sshd) = &sshd {
            let copy = scp(
                sshd,
                &scp_remote(sshd, &remote_source),
                &down_scp.display().to_string(),
            );
            results.push(checked(
                copy, "scp", "download", round, &down_scp, &expected, bytes,
            ));
        }
    }

    println!("== file transfer throughput, {bytes} bytes, 127.0.0.1 (MB = 10^6 bytes) ==");
    println!(
        "tether: `tether cp` through the hub (release hub, CLI, agent); scp: OpenSSH scp -O to a local sshd"
    );
    println!(
        "mach cpu s: busy CPU time of the whole machine during the copy (/proc/stat; meaningful on an idle machine only)"
    );
    println!(
        "{:<8} {:<9} {:>5} {:>9} {:>9} {:>10} {:>9}  sha256",
        "tool", "direction", "round", "seconds", "MB/s", "mach cpu s", "cpu s/GB"
    );
    for r in &results {
        println!(
            "{:<8} {:<9} {:>5} {:>9.3} {:>9.1} {:>10.2} {:>9.2}  {}{}",
            r.tool,
            r.direction,
            r.round + 1,
            r.seconds,
            r.mb_per_s(),
            r.cpu_seconds,
            r.cpu_seconds / (bytes as f64 / 1e9),
            if r.sha_ok { "ok" } else { "MISMATCH" },
            r.note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default()
        );
    }
    for direction in ["upload", "download"] {
        let best = |tool: &str| {
            results
                .iter()
                .filter(|r| r.tool == tool && r.direction == direction && r.ok)
                .map(Copy::mb_per_s)
                .fold(None, |best: Option<f64>, v| Some(best.map_or(v, |b| b.max(v))))
        };
        let cpu = |tool: &str| {
            let runs: Vec<f64> = results
                .iter()
                .filter(|r| r.tool == tool && r.direction == direction && r.ok)
                .map(|r| r.cpu_seconds / (bytes as f64 / 1e9))
                .collect();
            (!runs.is_empty()).then(|| runs.iter().sum::<f64>() / runs.len() as f64)
        };
        let (t, s) = (best("tether"), best("scp"));
        if let Some(t) = t {
            println!("METRIC files_{direction}_mbps_tether {t:.1}");
        }
        if let Some(s) = s {
            println!("METRIC files_{direction}_mbps_scp {s:.1}");
        }
        if let (Some(t), Some(s)) = (t, s) {
            println!("METRIC files_{direction}_ratio {:.2}", t / s);
            println!(
                "{direction}: tether {t:.1} MB/s, scp {s:.1} MB/s (best of {rounds}): tether/scp {:.2}x",
                t / s
            );
        }
        if let (Some(t), Some(s)) = (cpu("tether"), cpu("scp")) {
            println!(
                "{direction}: machine CPU per GB: tether {t:.2} s, scp {s:.2} s ({:.2}x)",
                t / s
            );
        }
    }

    // Where the time goes: CPU time of each Tether process during one upload and one download.
    let hub_pid = hub.process().pid().expect("hub pid");
    let agent_pid = agent.process().pid().expect("agent pid");
    // For an outside profiler (`perf record -a`, then `perf report --pid`).
    eprintln!("profiled copies: hub pid {hub_pid}, agent pid {agent_pid}");
    println!("== CPU time per process (utime+stime from /proc/PID/stat), one more copy each way ==");
    println!(
        "{:<9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "direction", "wall s", "MB/s", "hub u", "hub s", "agent u", "agent s", "cli u", "cli s"
    );
    for (direction, from, to, written) in [
        (
            "upload",
            source.display().to_string(),
            remote(&up_tether),
            up_tether.clone(),
        ),
        (
            "download",
            remote(&remote_source),
            down_tether.display().to_string(),
            down_tether.clone(),
        ),
    ] {
        let hub_before = proc_cpu(hub_pid).unwrap_or_default();
        let agent_before = proc_cpu(agent_pid).unwrap_or_default();
        let copy = tether_cp(&cli, &from, &to, dir.path());
        let hub_cpu = proc_cpu(hub_pid).unwrap_or_default() - hub_before;
        let agent_cpu = proc_cpu(agent_pid).unwrap_or_default() - agent_before;
        let cli_cpu = copy.client_cpu;
        let _ = std::fs::remove_file(&written);
        println!(
            "{direction:<9} {:>8.3} {:>8.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}{}",
            copy.seconds,
            bytes as f64 / 1e6 / copy.seconds,
            hub_cpu.user,
            hub_cpu.system,
            agent_cpu.user,
            agent_cpu.system,
            cli_cpu.user,
            cli_cpu.system,
            if copy.ok {
                String::new()
            } else {
                format!("  (failed: {})", copy.error)
            }
        );
        for (who, cpu) in [("hub", hub_cpu), ("agent", agent_cpu), ("cli", cli_cpu)] {
            println!(
                "METRIC files_{direction}_cpu_{who}_s {:.2}",
                cpu.user + cpu.system
            );
        }
    }
    drop(sshd);
    ExitCode::SUCCESS
}

/// One timed copy.
struct Copy {
    tool: &'static str,
    direction: &'static str,
    round: usize,
    seconds: f64,
    bytes: u64,
    /// CPU time of the whole machine during the copy.
    cpu_seconds: f64,
    /// CPU time of the client process itself.
    client_cpu: Cpu,
    ok: bool,
    sha_ok: bool,
    error: String,
    note: Option<String>,
}

impl Copy {
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.seconds
    }
}

/// Checks the copy's result against `expected`, then removes it (the next copy starts afresh).
fn checked(
    mut copy: Copy,
    tool: &'static str,
    direction: &'static str,
    round: usize,
    written: &Path,
    expected: &str,
    bytes: u64,
) -> Copy {
    copy.tool = tool;
    copy.direction = direction;
    copy.round = round;
    copy.bytes = bytes;
    copy.sha_ok = written.is_file() && sha256_file(written) == expected;
    if !copy.ok {
        eprintln!("{tool} {direction} failed: {}", copy.error);
        copy.note = Some(format!("failed: {}", copy.error.lines().next().unwrap_or("")));
    } else if !copy.sha_ok {
        eprintln!(
            "{tool} {direction}: SHA-256 of {} differs from the source",
            written.display()
        );
    }
    let _ = std::fs::remove_file(written);
    copy
}

/// `tether cp --json FROM TO`.
fn tether_cp(cli: &Cli, from: &str, to: &str, logs: &Path) -> Copy {
    let mut command = cli.command(&["cp", "--json", from, to]);
    let stdout = logs.join("cp.stdout");
    let stderr = logs.join("cp.stderr");
    command
        .stdin(Stdio::null())
        .stdout(File::create(&stdout).expect("cp stdout"))
        .stderr(File::create(&stderr).expect("cp stderr"));
    let mut copy = timed(command);
    let summary = std::fs::read_to_string(&stdout).unwrap_or_default();
    if let Some(seconds) = json_number(&summary, "seconds") {
        copy.note = Some(format!("CLI's own figure {seconds:.3} s"));
    }
    if !copy.ok {
        copy.error = format!(
            "{}{}",
            copy.error,
            std::fs::read_to_string(&stderr).unwrap_or_default()
        );
    }
    copy
}

/// `scp -O` with the test key, no host key checks (the classic SCP protocol, `scp -t`/`-f` on the
/// server, since the harness's sshd has no SFTP subsystem; OpenSSH's defaults otherwise).
fn scp(sshd: &Sshd, from: &str, to: &str) -> Copy {
    let mut command = Command::new("scp");
    command
        .args(SSH_CLIENT_OPTIONS)
        .args([
            "-q",
            // The classic SCP protocol: the harness's sshd has no SFTP subsystem configured.
            "-O",
            "-o",
            "IdentitiesOnly=yes",
            "-i",
        ])
        .arg(&sshd.client_key)
        .arg("-P")
        .arg(sshd.port.to_string())
        .arg(from)
        .arg(to)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    timed(command)
}

fn scp_remote(sshd: &Sshd, path: &Path) -> String {
    format!("{}@127.0.0.1:{}", sshd.user, path.display())
}

/// Runs `command`, timing it and measuring the machine's and the process's CPU time.
fn timed(mut command: Command) -> Copy {
    let machine_before = machine_cpu();
    let start = Instant::now();
    let mut child = command.spawn().expect("start the copy");
    let pid = child.id();
    let mut client_cpu = Cpu::default();
    // Poll the process's CPU time until it is a zombie (whose times stay readable until reaped).
    while let Some((state, cpu)) = proc_state(pid) {
        client_cpu = cpu;
        if state == 'Z' {
            break;
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let output = child.wait_with_output().expect("wait for the copy");
    let seconds = start.elapsed().as_secs_f64();
    let cpu_seconds = machine_cpu() - machine_before;
    let ok = output.status.success();
    Copy {
        tool: "",
        direction: "",
        round: 0,
        seconds,
        bytes: 0,
        cpu_seconds,
        client_cpu,
        ok,
        sha_ok: false,
        error: if ok {
            String::new()
        } else {
            format!(
                "{} {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )
        },
        note: None,
    }
}

/// A number field of a one-line JSON object, without a JSON parser.
fn json_number(text: &str, key: &str) -> Option<f64> {
    let start = text.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &text[start..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}
