//! Agent size and memory: the size of `tether-agent` built with the `device` profile (and the
//! `release` profile for comparison), and the resident memory (VmRSS) of each, running against a
//! real hub on 127.0.0.1: idle-connected, with one live shell open, and after that shell printed
//! ~1.3 MB. Then the agents shipped per target (`dist/tether-agent-ARCH-linux`, made by
//! `scripts/build-agents`): the size of each, and the memory of the x86-64 musl one measured
//! natively (the ARM ones run only under emulation here, where memory figures mean nothing).
//! Prints figures only.
//!
//! Binaries: hub and CLI from `TETHER_BIN_DIR` (default: this executable's directory, i.e.
//! `target/release/`), the device agent from `TETHER_DEVICE_AGENT` (default
//! `target/device/tether-agent`).

use std::{path::PathBuf, process::ExitCode, time::Duration};

use tether_bench::{
    Binaries, device_agent, file_size, human_bytes, marker, point_agent, proc_status_field, release_dir,
    stage,
};
use tether_e2e::{Agent, Hub, PtySession};

const LONG: Duration = Duration::from_secs(30);
/// How long an agent sits connected before its idle memory is read.
const SETTLE: Duration = Duration::from_secs(3);

struct Sample {
    rss_kb: u64,
    hwm_kb: u64,
    anon_kb: u64,
    file_kb: u64,
    threads: u64,
}

fn sample(pid: u32) -> Sample {
    Sample {
        rss_kb: proc_status_field(pid, "VmRSS").expect("VmRSS"),
        hwm_kb: proc_status_field(pid, "VmHWM").expect("VmHWM"),
        anon_kb: proc_status_field(pid, "RssAnon").unwrap_or(0),
        file_kb: proc_status_field(pid, "RssFile").unwrap_or(0),
        threads: proc_status_field(pid, "Threads").unwrap_or(0),
    }
}

fn main() -> ExitCode {
    let device = device_agent();
    let release = release_dir().join("tether-agent");
    let mut binaries = Binaries::from_env();
    binaries.agent = device.clone();
    if let Some(code) = stage(&binaries) {
        return code;
    }

    println!("== agent size ==");
    let device_size = file_size(&device);
    let release_size = file_size(&release);
    println!(
        "tether-agent (device profile)  {}: {}",
        device.display(),
        human_bytes(device_size)
    );
    println!(
        "tether-agent (release profile) {}: {}",
        release.display(),
        human_bytes(release_size)
    );
    println!(
        "device / release: {:.2}; goal <= 2.5 MB: {} (MB = 10^6 bytes), {} (MB = MiB)",
        device_size as f64 / release_size as f64,
        verdict(device_size <= 2_500_000),
        verdict(device_size <= 2_621_440),
    );
    println!(
        "for scale: hub {} , CLI {}",
        human_bytes(file_size(&binaries.hub)),
        human_bytes(file_size(&binaries.cli))
    );
    println!("METRIC agent_size_device_bytes {device_size}");
    println!("METRIC agent_size_release_bytes {release_size}");

    println!("\n== agent memory (VmRSS from /proc/PID/status) ==");
    let hub = Hub::start_default();
    let cli = hub.user_cli("bench", true);
    for (profile, path) in [("device", device.clone()), ("release", release.clone())] {
        point_agent(&path);
        measure(&hub, &cli, profile, path);
    }

    println!("\n== shipped agents per target (dist/, scripts/build-agents) ==");
    let dist = std::env::var_os("TETHER_DIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../dist"));
    for (arch, what) in [
        ("x86_64", "x86_64-unknown-linux-musl, static"),
        ("aarch64", "aarch64-unknown-linux-musl, static"),
        ("armv7", "armv7-unknown-linux-gnueabihf, glibc 2.31"),
    ] {
        let path = dist.join(format!("tether-agent-{arch}-linux"));
        if !path.is_file() {
            println!("{arch:<8} {}: missing (run scripts/build-agents)", path.display());
            continue;
        }
        let size = file_size(&path);
        println!(
            "{arch:<8} {what:<42} {} ({size} bytes); goal <= 2.5 MB: {}",
            human_bytes(size),
            verdict(size <= 2_500_000)
        );
        println!("METRIC agent_size_{arch}_bytes {size}");
    }
    let musl = dist.join("tether-agent-x86_64-linux");
    if musl.is_file() {
        point_agent(&musl);
        measure(&hub, &cli, "x86_64-musl", musl);
    }
    ExitCode::SUCCESS
}

fn measure(hub: &Hub, cli: &tether_e2e::Cli, profile: &str, path: PathBuf) {
    let mut agent = Agent::start(hub, "[terminal]\nshell = \"/bin/sh\"\n");
    let pid = agent.process().pid().expect("agent pid");
    cli.accept(&agent.name);
    std::thread::sleep(SETTLE);
    let idle = sample(pid);

    let mut terminal = PtySession::terminal(cli, &agent.name);
    let (command, expected) = marker();
    terminal.send_line(&command);
    terminal.expect(&expected, LONG);
    std::thread::sleep(Duration::from_secs(1));
    let shell = sample(pid);

    // ~1.3 MB of output through the shell, then read again (buffers grown by traffic).
    let (command, expected) = marker();
    terminal.send_line(&format!("seq 1 200000; {command}"));
    terminal.expect(&expected, LONG);
    std::thread::sleep(Duration::from_secs(1));
    let busy = sample(pid);
    terminal.send_line("exit");
    let _ = terminal.wait_exit(Duration::from_secs(10));
    drop(terminal);

    println!("agent, {profile} profile ({}), pid {pid}:", path.display());
    for (what, s) in [
        ("idle, connected", &idle),
        ("one live shell open", &shell),
        ("after the shell printed 1.3 MB", &busy),
    ] {
        println!(
            "  {what:<32} VmRSS {:>6} kB ({:.2} MB, {:.2} MiB) = anon {:>5} kB + file {:>5} kB  VmHWM {:>6} kB  threads {}",
            s.rss_kb,
            s.rss_kb as f64 * 1024.0 / 1e6,
            s.rss_kb as f64 / 1024.0,
            s.anon_kb,
            s.file_kb,
            s.hwm_kb,
            s.threads
        );
    }
    println!(
        "  goal <= 4 MB with a live shell: {} (MB = 10^6 bytes), {} (MB = MiB)",
        verdict(shell.rss_kb * 1024 <= 4_000_000),
        verdict(shell.rss_kb <= 4 * 1024),
    );
    println!("METRIC agent_rss_idle_kb_{profile} {}", idle.rss_kb);
    println!("METRIC agent_rss_shell_kb_{profile} {}", shell.rss_kb);
    println!("METRIC agent_rss_after_output_kb_{profile} {}", busy.rss_kb);
    agent.kill();
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}
