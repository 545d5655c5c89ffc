//! Terminal recording: what it stores and what it costs.
//!
//! - **Stored bytes per MB of output**: `tether exec` runs commands printing about 10 MB each of
//!   text-like output (`seq`, `ls -lR /usr`) and random-ish output (base64 of /dev/urandom); the
//!   size of the session's recording (its rows of `recording_chunks` in the hub's database,
//!   gzip segments with keyframes, read with `sqlite3`) is divided by the output exec printed.
//! - **With and without recording**: a second hub runs with `record_sessions = false` (the
//!   switch meant for measurements; a hub that cannot record refuses terminals). On both hubs,
//!   in the same run: the keystroke round trip through `tether terminal` (the method of
//!   `bench-keystroke`, blocks alternating between the hubs) and, for the 10 MB outputs, the
//!   exec's wall time and the hub process's CPU time (utime + stime from /proc).
//!
//! Prints figures; asserts nothing about timings. Environment: `KEYSTROKES` (default 300 per
//! hub), `TETHER_BIN_DIR` (release hub, CLI, agent).

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use tether_bench::{Binaries, PROMPT, Stats, env_or, human_bytes, marker, settle, stage, type_block, us};
use tether_e2e::{Agent, Cli, Hub, HubOptions, PtySession, wait_for};

const LONG: Duration = Duration::from_secs(30);
const SHELL: &str = "[terminal]\nshell = \"/bin/sh\"\n";
const BLOCK: usize = 50;
const WARMUP: usize = 20;
const SET_PROMPT: &str = "PS1='@''@> '";
/// Output size of each storage case.
const OUTPUT_BYTES: u64 = 10_000_000;
/// Runs per output and hub for the timings.
const RUNS: usize = 3;

/// The storage cases: a name and a shell command printing about 10 MB.
fn cases() -> Vec<(&'static str, String)> {
    vec![
        ("text-seq", format!("seq 1 5000000 | head -c {OUTPUT_BYTES}")),
        (
            "text-ls",
            // `|| exit`: once head has had enough, ls dies of SIGPIPE and the loop stops.
            format!("for i in 1 2 3 4; do ls -lR /usr 2>/dev/null || exit; done | head -c {OUTPUT_BYTES}"),
        ),
        (
            "random-base64",
            format!(
                "head -c {} /dev/urandom | base64 -w 76 | head -c {OUTPUT_BYTES}",
                OUTPUT_BYTES * 3 / 4
            ),
        ),
    ]
}

struct Setup {
    hub: Hub,
    cli: Cli,
    agent: Agent,
}

fn setup(recording: bool) -> Setup {
    let hub = if recording {
        Hub::start_default()
    } else {
        Hub::start(HubOptions::default().config("record_sessions = false\n"))
    };
    let cli = hub.user_cli("bench", true);
    let agent = Agent::start(&hub, SHELL);
    cli.accept(&agent.name);
    Setup { hub, cli, agent }
}

fn main() -> ExitCode {
    if let Some(code) = stage(&Binaries::from_env()) {
        return code;
    }
    let keystrokes: usize = env_or("KEYSTROKES", 300);
    let mut recorded = setup(true);
    let mut unrecorded = setup(false);

    // --- stored bytes per MB, and the cost of recording bulk output --------------------------
    println!("== recording storage: bytes stored per MB (10^6 bytes) of terminal output ==");
    println!(
        "{:<14} {:>11} {:>11} {:>9} {:>9} {:>10} {:>10} {:>10} {:>10}",
        "output", "out bytes", "stored", "per MB", "ratio", "rec s", "norec s", "rec cpu s", "norec cpu"
    );
    for (name, command) in cases() {
        let (sid, out_bytes, wall_rec, cpu_rec) = run_exec(&mut recorded, &command);
        let stored = stored_bytes(&recorded.hub, Some(&sid));
        // Timings: the median of RUNS runs on each hub, alternating.
        let (mut walls_rec, mut cpus_rec) = (vec![wall_rec], vec![cpu_rec]);
        let (mut walls_norec, mut cpus_norec) = (Vec::new(), Vec::new());
        for run in 0..RUNS {
            let (_, _, wall, cpu) = run_exec(&mut unrecorded, &command);
            walls_norec.push(wall);
            cpus_norec.push(cpu);
            if run + 1 < RUNS {
                let (_, _, wall, cpu) = run_exec(&mut recorded, &command);
                walls_rec.push(wall);
                cpus_rec.push(cpu);
            }
        }
        let (wall_rec, cpu_rec) = (median(walls_rec), median(cpus_rec));
        let (wall_norec, cpu_norec) = (median(walls_norec), median(cpus_norec));
        let per_mb = stored as f64 / (out_bytes as f64 / 1e6);
        println!(
            "{name:<14} {out_bytes:>11} {stored:>11} {per_mb:>9.0} {:>8.1}% {:>10.2} {:>10.2} {:>10.2} {:>10.2}",
            100.0 * stored as f64 / out_bytes as f64,
            wall_rec.as_secs_f64(),
            wall_norec.as_secs_f64(),
            cpu_rec.as_secs_f64(),
            cpu_norec.as_secs_f64(),
        );
        let key = name.replace('-', "_");
        println!("METRIC recording_stored_bytes_per_mb_{key} {per_mb:.0}");
        println!("METRIC recording_hub_cpu_ms_rec_{key} {}", cpu_rec.as_millis());
        println!(
            "METRIC recording_hub_cpu_ms_norec_{key} {}",
            cpu_norec.as_millis()
        );
    }
    println!(
        "(stored: the session's recording chunks in the database; rec/norec: median over {RUNS} runs of the exec's \
         wall time and the hub's CPU time with and without recording, same output, same run)"
    );

    // --- keystroke round trip with and without recording ------------------------------------
    let with = PtySession::terminal(&recorded.cli, &recorded.agent.name);
    prepare(&with);
    let without = PtySession::terminal(&unrecorded.cli, &unrecorded.agent.name);
    prepare(&without);
    let unrecorded_sessions = unrecorded.cli.run(&["sessions", "list", "--json"]);
    assert_eq!(
        unrecorded_sessions.ok().trim(),
        "[]",
        "the hub without a recordings directory recorded a session"
    );
    let mut peers: Vec<(&str, &PtySession, Vec<Duration>)> = vec![
        ("recorded", &with, Vec::new()),
        ("unrecorded", &without, Vec::new()),
    ];
    for (_, session, _) in &peers {
        type_block(session, WARMUP);
    }
    let mut left = keystrokes;
    while left > 0 {
        let n = left.min(BLOCK);
        for (_, session, samples) in peers.iter_mut() {
            samples.extend(type_block(session, n));
        }
        left -= n;
    }
    println!();
    println!("== keystroke round trip through tether terminal, with and without recording, 127.0.0.1 ==");
    println!(
        "{keystrokes} keystrokes per hub after {WARMUP} warm-up, blocks of {BLOCK}, alternating; shell /bin/sh"
    );
    println!(
        "{:<11} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "hub", "n", "min us", "p50 us", "p90 us", "p99 us", "max us", "mean us"
    );
    let mut stats = Vec::new();
    for (name, _, samples) in &peers {
        let s = Stats::of(samples);
        println!(
            "{name:<11} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            s.count,
            us(s.min),
            us(s.p50),
            us(s.p90),
            us(s.p99),
            us(s.max),
            us(s.mean)
        );
        println!("METRIC recording_keystroke_p50_us_{name} {}", us(s.p50));
        println!("METRIC recording_keystroke_p99_us_{name} {}", us(s.p99));
        stats.push(s);
    }
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "recorded/unrecorded: p50 {:.2}x, p99 {:.2}x, mean {:.2}x",
        ratio(stats[0].p50, stats[1].p50),
        ratio(stats[0].p99, stats[1].p99),
        ratio(stats[0].mean, stats[1].mean)
    );
    let total: u64 = stored_bytes(&recorded.hub, None);
    println!("all recordings of this run: {}", human_bytes(total));
    ExitCode::SUCCESS
}

/// Runs `command` through `tether exec`; returns the session id (recorded hub only: the
/// recording directory that appeared), the output size, the wall time and the hub's CPU time
/// spent meanwhile.
fn run_exec(setup: &mut Setup, command: &str) -> (String, u64, Duration, Duration) {
    let before = session_ids(&setup.hub);
    let pid = setup.hub.process().pid().expect("hub pid");
    let cpu_before = cpu_time(pid);
    let start = Instant::now();
    let output = setup.cli.run_for(
        &["exec", &setup.agent.name, "--", command],
        Duration::from_secs(120),
    );
    let wall = start.elapsed();
    // What exec printed is exactly the session's output.
    let printed = output.ok().len() as u64;
    let cpu = cpu_time(pid).saturating_sub(cpu_before);
    let Some(sid) = session_ids(&setup.hub)
        .into_iter()
        .find(|sid| !before.contains(sid))
    else {
        return (String::new(), printed, wall, cpu);
    };
    // Measure the recording once it is closed (listed as ended).
    wait_for("the exec's recording to close", LONG, || {
        let listed = setup.cli.run(&["sessions", "list"]);
        listed
            .ok()
            .lines()
            .any(|line| line.starts_with(&sid) && line.contains(" ended "))
            .then_some(())
    });
    (sid, printed, wall, cpu)
}

/// One value from the hub's SQLite database (`sqlite3` reads it beside the running hub: WAL).
fn query(hub: &Hub, sql: &str) -> String {
    let output = std::process::Command::new("sqlite3")
        .arg(hub.data_dir().join("hub.db"))
        .arg(sql)
        .output()
        .expect("sqlite3 (apt install sqlite3)");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The ids of the sessions the hub has recorded.
fn session_ids(hub: &Hub) -> Vec<String> {
    query(hub, "SELECT sid FROM terminal_sessions")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The bytes stored for session `sid`'s recording (every session's when `None`).
fn stored_bytes(hub: &Hub, sid: Option<&str>) -> u64 {
    // Session ids are UUIDs the hub made, safe to quote as they are.
    let filter = sid.map(|sid| format!(" WHERE sid = '{sid}'")).unwrap_or_default();
    query(
        hub,
        &format!("SELECT COALESCE(SUM(LENGTH(data)), 0) FROM recording_chunks{filter}"),
    )
    .parse()
    .unwrap_or(0)
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// utime + stime of a process, from /proc/PID/stat (clock ticks of 10 ms).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // Fields 14 and 15 of the whole line; after the command name they are 12th and 13th.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    let hz = clock_ticks_per_second();
    Duration::from_millis(ticks * 1000 / hz)
}

/// `getconf CLK_TCK` (100 on Linux in practice).
fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|&hz| hz > 0)
        .unwrap_or(100)
}

// The keystroke method of bench-keystroke: set a prompt, type one letter at a time, time each
// echo, clear the line every BLOCK letters and wait for quiet.

fn prepare(session: &PtySession) {
    let (command, expected) = marker();
    session.send_line(&format!("{SET_PROMPT}; {command}"));
    session.expect(&expected, LONG);
    session.expect(PROMPT, LONG);
    settle(session);
}
