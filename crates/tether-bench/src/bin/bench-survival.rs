//! Session survival: how long a terminal takes to be usable again once a dropped leg is back,
//! and what keeping a device connected costs on the wire while nothing happens.
//!
//! 1. Recovery: a terminal through two fault proxies (device leg, operator leg). Each round takes
//!    one leg down (connections cut, new ones refused) for `DOWN_MS`, brings it back, and times
//!    from that moment until a typed command's output (computed by the shell) appears. Prints
//!    min/p50/p99/max per leg. The agent's reconnect backoff (capped at 2 s by the harness) and
//!    the CLI's retry delay (at most 3 s) are part of what is measured.
//! 2. Idle cost: a connected device with the default keep-alive and no session, for `IDLE_SECS`.
//!    The agent's socket counters (`ss -ti`: bytes and segments both ways) give bytes on the
//!    wire, counting 52 bytes of IPv4 + TCP headers (with timestamps) per segment; scaled to an
//!    hour. Goal: below 10 KB per hour (a stock mender-connect pings every 54 s).
//!
//! Environment: `CUTS` (rounds per leg, default 5), `DOWN_MS` (default 1000), `IDLE_SECS`
//! (default 100), `TETHER_BIN_DIR`.

use std::{
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

use tether_bench::{Binaries, Stats, env_or, marker, stage, us};
use tether_e2e::{Agent, Cli, FaultProxy, Hub, PtySession};

const LONG: Duration = Duration::from_secs(60);
/// IPv4 (20) + TCP (20) + the timestamp option (12) per segment.
const HEADER_BYTES: u64 = 52;

fn main() -> ExitCode {
    if let Some(code) = stage(&Binaries::from_env()) {
        return code;
    }
    let cuts: usize = env_or("CUTS", 5);
    let down = Duration::from_millis(env_or("DOWN_MS", 1000));
    let idle = Duration::from_secs(env_or("IDLE_SECS", 100));

    let hub = Hub::start_default();
    hub.add_user("bench", true, "bench-password-1");
    let device_leg = FaultProxy::for_hub(&hub);
    let operator_leg = FaultProxy::for_hub(&hub);
    let agent = Agent::start_via(&hub, &device_leg.url(), "");
    let cli = Cli::with(&operator_leg.url(), &hub.cert_path);
    cli.login("bench", "bench-password-1");
    cli.accept(&agent.name);
    cli.wait_online(&agent.name);

    let terminal = PtySession::terminal(&cli, &agent.name);
    terminal.expect("Connected to", LONG);
    usable(&terminal);

    println!("== session survival: a dropped leg back -> the terminal usable again, 127.0.0.1 ==");
    println!("{cuts} rounds per leg, each leg down {} ms", down.as_millis());
    println!(
        "{:<14} {:>10} {:>10} {:>10} {:>10}",
        "leg", "min ms", "p50 ms", "p99 ms", "max ms"
    );
    for (name, proxy) in [("device", &device_leg), ("operator", &operator_leg)] {
        let mut samples = Vec::with_capacity(cuts);
        for _ in 0..cuts {
            proxy.link_down(true);
            std::thread::sleep(down);
            proxy.link_down(false);
            let back = Instant::now();
            usable(&terminal);
            samples.push(back.elapsed());
        }
        let stats = Stats::of(&samples);
        let ms = |d: Duration| us(d) as f64 / 1000.0;
        println!(
            "{name:<14} {:>10.0} {:>10.0} {:>10.0} {:>10.0}",
            ms(stats.min),
            ms(stats.p50),
            ms(stats.p99),
            ms(stats.max)
        );
        println!("METRIC survival_{name}_p50_ms {:.0}", ms(stats.p50));
        println!("METRIC survival_{name}_p99_ms {:.0}", ms(stats.p99));
    }
    drop(terminal);

    // Idle cost: the agent's socket to the device proxy, with no session open.
    std::thread::sleep(Duration::from_secs(2));
    let Some(start) = socket_counters(device_leg.port()) else {
        println!(
            "idle bytes skipped: `ss -ti` shows no socket to port {}",
            device_leg.port()
        );
        return ExitCode::SUCCESS;
    };
    std::thread::sleep(idle);
    let Some(end) = socket_counters(device_leg.port()) else {
        println!("idle bytes skipped: the agent's connection changed during the measurement");
        return ExitCode::SUCCESS;
    };
    let payload =
        (end.bytes_sent + end.bytes_received).saturating_sub(start.bytes_sent + start.bytes_received);
    let segments = (end.segs_out + end.segs_in).saturating_sub(start.segs_out + start.segs_in);
    let wire = payload + segments * HEADER_BYTES;
    let per_hour = wire as f64 * 3600.0 / idle.as_secs_f64();
    println!();
    println!("== idle device at the default keep-alive (agent 90 s, hub 100 s), no session ==");
    println!(
        "{} s measured: {payload} bytes of TLS payload in {segments} segments, {wire} bytes on the wire",
        idle.as_secs()
    );
    println!(
        "per device per hour: {:.1} KB on the wire (goal < 10 KB), {:.0} segments",
        per_hour / 1000.0,
        segments as f64 * 3600.0 / idle.as_secs_f64()
    );
    println!("METRIC survival_idle_bytes_per_hour {per_hour:.0}");
    ExitCode::SUCCESS
}

/// Types a command and waits for its output (computed by the shell, so the echo never matches).
fn usable(terminal: &PtySession) {
    let (command, expected) = marker();
    terminal.send(format!("{command}\r"));
    terminal.expect(&expected, LONG);
}

#[derive(Debug, Default)]
struct Counters {
    bytes_sent: u64,
    bytes_received: u64,
    segs_out: u64,
    segs_in: u64,
}

/// The TCP counters of the one established socket connected to `port` (the agent's side).
fn socket_counters(port: u16) -> Option<Counters> {
    let output = Command::new("ss")
        .args(["-tinH", "state", "established", &format!("( dport = :{port} )")])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |name: &str| {
        text.split_whitespace()
            .find_map(|word| word.strip_prefix(name)?.strip_prefix(':')?.parse::<u64>().ok())
    };
    Some(Counters {
        bytes_sent: field("bytes_sent").unwrap_or(0),
        bytes_received: field("bytes_received")?,
        segs_out: field("segs_out")?,
        segs_in: field("segs_in")?,
    })
}
