//! Bandwidth on the device leg (issue #16): the TCP payload bytes, both directions, that the same
//! work costs the link a device pays for, counted by a proxy on that link, beside OpenSSH in the
//! same run. For Tether the link is the agent's connection to the hub (version 3, the compact
//! encoding, and version 2 from a hub with `compact_device_leg = false`); for ssh it is the
//! client's connection to a local `sshd` (whose far end would be the device).
//!
//! Work measured, per peer:
//! - one keystroke round trip: a letter typed at `cat` and its echo (each waited for);
//! - `cat` of a 1 MB text log to the terminal (beside `ssh` and `ssh -C`);
//! - a download of a 10 MB text file and of a 10 MB random file (`tether cp` beside `scp -O` and
//!   `scp -O -C`);
//! - a terminal's open until its first output, and (Tether) a reconnect: the device leg cut with
//!   a shell open, until the agent has resumed the shell; and one with no session open.
//!
//! Idle bytes per device per hour are printed by `bench-survival` (`scripts/bench bandwidth`
//! runs both). Prints figures, never asserts. Environment: `KEYSTROKES` (default 200),
//! `TETHER_BIN_DIR`. Without sshd the ssh columns are skipped.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
    time::Duration,
};

use tether_bench::{Binaries, env_or, stage};
use tether_e2e::{
    Agent, Cli, FaultProxy, Hub, HubOptions, PtySession,
    peers::{SSH_CLIENT_OPTIONS, Sshd, write_deterministic_file},
    wait_for,
};

const LIMIT: Duration = Duration::from_secs(120);
const LOG_BYTES: usize = 1_000_000;
const FILE_BYTES: usize = 10_000_000;

/// One Tether setup: a hub, an agent behind a counting proxy, an operator's CLI.
struct Tether {
    label: &'static str,
    _hub: Hub,
    cli: Cli,
    agent: Agent,
    device_leg: FaultProxy,
}

impl Tether {
    fn start(label: &'static str, hub_config: &str, root: &Path) -> Tether {
        let hub = Hub::start(HubOptions::default().config(hub_config));
        let cli = hub.user_cli("bench", true);
        let device_leg = FaultProxy::for_hub(&hub);
        let agent = Agent::start_via(
            &hub,
            &device_leg.url(),
            &format!(
                "[terminal]\nshell = \"/bin/sh\"\n\n[file_transfer]\nenabled = true\nroots = [{root:?}]\nmax_file_size = 0\n",
                root = root.display().to_string()
            ),
        );
        cli.accept(&agent.name);
        cli.wait_online(&agent.name);
        Tether {
            label,
            _hub: hub,
            cli,
            agent,
            device_leg,
        }
    }
}

/// One peer's figures: device-leg bytes of each piece of work.
struct Row {
    peer: &'static str,
    /// The peer's name in `METRIC` lines.
    metric: &'static str,
    open: u64,
    cat: u64,
    per_keystroke: f64,
    text_download: u64,
    random_download: u64,
    reconnect: Option<u64>,
    /// A reconnect with no session open.
    bare_reconnect: Option<u64>,
}

/// Device-leg bytes (both directions) that `work` costs.
fn counted(proxy: &FaultProxy, work: impl FnOnce()) -> u64 {
    let before = proxy.bytes();
    work();
    // Trailing acknowledgements and pongs of the work arrive just after it.
    std::thread::sleep(Duration::from_millis(300));
    proxy.bytes() - before
}

/// Waits for output the shell computes (`echo NAME-$((40+2))` shows `NAME-42`), so the echo of the
/// typed command never matches.
fn run_and_wait(terminal: &PtySession, command: &str, name: &str) {
    terminal.send(format!("{command}echo {name}-$((40+2))\r"));
    terminal.expect(&format!("{name}-42"), LIMIT);
}

/// The terminal-side work on one peer: open (until the first computed output), `cat` of the log,
/// keystrokes. Returns (open, cat, per keystroke) bytes.
fn terminal_work(
    proxy: &FaultProxy,
    open: impl FnOnce() -> PtySession,
    log: &Path,
    keystrokes: usize,
) -> (u64, u64, f64, PtySession) {
    let mut terminal = None;
    let open_bytes = counted(proxy, || {
        let session = open();
        run_and_wait(&session, "", "ready");
        terminal = Some(session);
    });
    let terminal = terminal.expect("opened");
    let cat_bytes = counted(proxy, || {
        run_and_wait(&terminal, &format!("cat {}; ", log.display()), "catted")
    });
    terminal.send("cat\r");
    std::thread::sleep(Duration::from_millis(500));
    let echoes = |terminal: &PtySession| terminal.output().matches('x').count();
    let seen = echoes(&terminal);
    let keystroke_bytes = counted(proxy, || {
        for typed in 1..=keystrokes {
            terminal.send("x");
            wait_for("the echo of a keystroke", LIMIT, || {
                (echoes(&terminal) >= seen + typed).then_some(())
            });
        }
    });
    // Enter ends the typed line, Ctrl-D then ends `cat`.
    terminal.send("\r\x04");
    run_and_wait(&terminal, "", "back");
    (
        open_bytes,
        cat_bytes,
        keystroke_bytes as f64 / keystrokes as f64,
        terminal,
    )
}

/// Device-leg bytes of a `tether cp` download of `remote` (on the device) to `local`.
fn tether_download(tether: &Tether, remote: &Path, local: &Path) -> u64 {
    counted(&tether.device_leg, || {
        let from = format!("{}:{}", tether.agent.name, remote.display());
        let output = tether.cli.run(&["cp", &from, &local.display().to_string()]);
        output.ok();
    })
}

/// `ssh -tt [-C] -p PORT USER@127.0.0.1 /bin/sh`, through the proxy at `port`.
fn ssh_terminal(sshd: &Sshd, port: u16, compress: bool) -> PtySession {
    let mut command = Command::new("ssh");
    command
        .args(SSH_CLIENT_OPTIONS)
        .args(["-tt", "-o", "IdentitiesOnly=yes", "-i"])
        .arg(&sshd.client_key);
    if compress {
        command.arg("-C");
    }
    command
        .arg("-p")
        .arg(port.to_string())
        .arg(format!("{}@127.0.0.1", sshd.user))
        .arg("/bin/sh");
    PtySession::spawn_command(command, if compress { "ssh -C" } else { "ssh" }, 24, 80)
}

/// Bytes of `scp -O [-C]` downloading `remote` through the proxy.
fn scp_download(sshd: &Sshd, proxy: &FaultProxy, remote: &Path, local: &Path, compress: bool) -> u64 {
    counted(proxy, || {
        let mut command = Command::new("scp");
        command
            .args(SSH_CLIENT_OPTIONS)
            .args(["-q", "-O", "-o", "IdentitiesOnly=yes", "-i"])
            .arg(&sshd.client_key);
        if compress {
            command.arg("-C");
        }
        let status = command
            .arg("-P")
            .arg(proxy.port().to_string())
            .arg(format!("{}@127.0.0.1:{}", sshd.user, remote.display()))
            .arg(local)
            .stdin(Stdio::null())
            .status()
            .expect("run scp");
        assert!(status.success(), "scp failed: {status}");
    })
}

/// A text log as a device writes one: timestamped lines of a few services, varying numbers.
fn write_text_log(path: &Path, bytes: usize) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create the log"));
    let services = [
        "sshd",
        "systemd",
        "kernel",
        "modem-manager",
        "app-updater",
        "sensor-reader",
    ];
    let levels = ["INFO", "INFO", "INFO", "DEBUG", "WARN"];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut written = 0;
    let mut second = 0u64;
    while written < bytes {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let pick = (state >> 33) as usize;
        second += (pick % 3) as u64;
        let line = format!(
            "2026-12-03T{:02}:{:02}:{:02}.{:03}Z device-42 {}[{}]: {} request {} handled in {} ms (queue {})\n",
            (second / 3600) % 24,
            (second / 60) % 60,
            second % 60,
            pick % 1000,
            services[pick % services.len()],
            100 + pick % 900,
            levels[(pick >> 8) % levels.len()],
            pick % 100_000,
            pick % 250,
            (pick >> 4) % 16,
        );
        file.write_all(line.as_bytes()).expect("write the log");
        written += line.len();
    }
    file.flush().expect("flush the log");
}

fn kb(bytes: u64) -> String {
    format!("{:.1} KB", bytes as f64 / 1000.0)
}

fn main() -> ExitCode {
    if let Some(code) = stage(&Binaries::from_env()) {
        return code;
    }
    let keystrokes: usize = env_or("KEYSTROKES", 200);
    let dir = tempfile::Builder::new()
        .prefix("tether-bench-bandwidth-")
        .tempdir()
        .expect("temp dir");
    let root: PathBuf = dir.path().join("device");
    std::fs::create_dir(&root).expect("device dir");
    let log = root.join("device.log");
    write_text_log(&log, LOG_BYTES);
    let text = root.join("text-10MB.log");
    write_text_log(&text, FILE_BYTES);
    let random = root.join("random-10MB.bin");
    write_deterministic_file(&random, 0x5eed, FILE_BYTES as u64);
    let text_size = std::fs::metadata(&text).expect("text file").len();
    let random_size = std::fs::metadata(&random).expect("random file").len();
    let local = dir.path().join("downloaded");

    let mut rows: Vec<Row> = Vec::new();
    for (label, config) in [("tether v3", ""), ("tether v2", "compact_device_leg = false")] {
        let tether = Tether::start(label, config, &root);
        let (open, cat, per_keystroke, terminal) = terminal_work(
            &tether.device_leg,
            || PtySession::terminal(&tether.cli, &tether.agent.name),
            &log,
            keystrokes,
        );
        // A reconnect: the device leg is cut with the shell open; counted until the agent has
        // resumed the shell (its log says so), then the shell is checked to answer (not counted).
        let resumes = tether.agent.log().matches("resumed from output offset").count();
        let reconnect = counted(&tether.device_leg, || {
            let connections = tether.device_leg.accepted();
            tether.device_leg.cut_all();
            wait_for("the agent to reconnect", LIMIT, || {
                (tether.device_leg.accepted() > connections).then_some(())
            });
            assert!(
                tether
                    .agent
                    .wait_log("resumed from output offset", resumes + 1, LIMIT),
                "the shell was not resumed:\n{}",
                tether.agent.log()
            );
        });
        run_and_wait(&terminal, "", "resumed");
        terminal.send("exit\r");
        let text_bytes = tether_download(&tether, &text, &local);
        let random_bytes = tether_download(&tether, &random, &local);
        // A reconnect with no session: TLS (resumed with a ticket of the last connection), the
        // WebSocket upgrade with the device token, the agent's session announcement.
        let bare_reconnect = counted(&tether.device_leg, || {
            let connections = tether.device_leg.accepted();
            tether.device_leg.cut_all();
            wait_for("the agent to reconnect", LIMIT, || {
                (tether.device_leg.accepted() > connections).then_some(())
            });
            std::thread::sleep(Duration::from_secs(2));
        });
        rows.push(Row {
            peer: tether.label,
            metric: if config.is_empty() {
                "tether_v3"
            } else {
                "tether_v2"
            },
            open,
            cat,
            per_keystroke,
            text_download: text_bytes,
            random_download: random_bytes,
            reconnect: Some(reconnect),
            bare_reconnect: Some(bare_reconnect),
        });
    }

    let ssh_version = Command::new("ssh")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
        .unwrap_or_default();
    match Sshd::start() {
        None => eprintln!("ssh comparison skipped: no sshd"),
        Some(sshd) => {
            for compress in [false, true] {
                let proxy =
                    FaultProxy::start(format!("127.0.0.1:{}", sshd.port).parse().expect("sshd address"));
                let (open, cat, per_keystroke, terminal) = terminal_work(
                    &proxy,
                    || ssh_terminal(&sshd, proxy.port(), compress),
                    &log,
                    keystrokes,
                );
                terminal.send("exit\r");
                let text_bytes = scp_download(&sshd, &proxy, &text, &local, compress);
                let random_bytes = scp_download(&sshd, &proxy, &random, &local, compress);
                rows.push(Row {
                    peer: if compress { "ssh -C / scp -C" } else { "ssh / scp" },
                    metric: if compress { "ssh_compressed" } else { "ssh" },
                    open,
                    cat,
                    per_keystroke,
                    text_download: text_bytes,
                    random_download: random_bytes,
                    reconnect: None,
                    bare_reconnect: None,
                });
            }
        }
    }

    println!("== device-leg bandwidth: TCP payload bytes, both directions, 127.0.0.1 ==");
    println!(
        "{keystrokes} keystrokes at `cat`, each waited for; `cat` of a {} text log; downloads of a {} text file and a {} random file; {ssh_version}",
        kb(LOG_BYTES as u64),
        kb(text_size),
        kb(random_size)
    );
    println!(
        "{:<16} {:>12} {:>12} {:>12} {:>14} {:>14} {:>12}",
        "peer", "keystroke", "cat 1 MB", "open", "10 MB text", "10 MB random", "reconnect"
    );
    for row in &rows {
        println!(
            "{:<16} {:>10.1} B {:>12} {:>12} {:>14} {:>14} {:>12}",
            row.peer,
            row.per_keystroke,
            kb(row.cat),
            kb(row.open),
            kb(row.text_download),
            kb(row.random_download),
            row.reconnect.map(kb).unwrap_or_else(|| "-".into())
        );
        let key = row.metric;
        println!("METRIC bandwidth_keystroke_bytes_{key} {:.1}", row.per_keystroke);
        println!("METRIC bandwidth_cat_bytes_{key} {}", row.cat);
        println!("METRIC bandwidth_text_download_bytes_{key} {}", row.text_download);
        println!(
            "METRIC bandwidth_random_download_bytes_{key} {}",
            row.random_download
        );
        println!("METRIC bandwidth_open_bytes_{key} {}", row.open);
        if let Some(reconnect) = row.reconnect {
            println!("METRIC bandwidth_reconnect_bytes_{key} {reconnect}");
        }
        if let Some(bare) = row.bare_reconnect {
            println!("{:<16} reconnect with no session open: {}", row.peer, kb(bare));
            println!("METRIC bandwidth_bare_reconnect_bytes_{key} {bare}");
        }
    }
    let find = |metric: &str| rows.iter().find(|row| row.metric == metric);
    if let (Some(tether), Some(ssh), Some(compressed)) =
        (find("tether_v3"), find("ssh"), find("ssh_compressed"))
    {
        println!(
            "tether v3 against ssh: keystroke {:.2}x ssh; cat {:.2}x ssh -C; text download {:.2}x scp -C; \
             random download {:.3}x the file size ({:.3}x for scp)",
            tether.per_keystroke / ssh.per_keystroke,
            tether.cat as f64 / compressed.cat as f64,
            tether.text_download as f64 / compressed.text_download as f64,
            tether.random_download as f64 / random_size as f64,
            ssh.random_download as f64 / random_size as f64,
        );
    }
    println!(
        "open: Tether's is a terminal on a device already connected (its leg is up); ssh's is a whole \
         connection (key exchange, authentication, channel). Reconnect: TLS, the WebSocket upgrade, the \
         session handshake and the resume."
    );
    ExitCode::SUCCESS
}
