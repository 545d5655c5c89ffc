//! Keystroke round trip: the time from typing one printable character into `tether terminal
//! DEVICE` (CLI -> hub -> agent -> the device's PTY, which echoes it -> agent -> hub -> CLI) until
//! that character appears on the operator's terminal; beside the same through `ssh -tt` to a local
//! `sshd` started here, in the same run, with the same shell (`/bin/sh`). Everything on 127.0.0.1.
//!
//! Method: at the shell prompt type one lowercase letter at a time and time until it appears in
//! the PTY output. Every `BLOCK` characters, Ctrl-U and Enter clear the line and the benchmark
//! waits for the prompt and for quiet. Blocks of tether and ssh alternate, so that background
//! noise falls on both. Prints min/p50/p90/p99/max/mean in microseconds and the ratios.
//!
//! Then the same again while a bulk copy runs over the same link (the interactive lane must not
//! queue behind bulk data): for tether, `tether cp` of a `LOAD_BYTES` file (256 MiB) to the same
//! device, again and again; for ssh, the same file through the same sshd (`ssh ... 'cat >
//! /dev/null'`). Each tool's copy runs only while its own keystrokes are measured.
//!
//! Environment: `KEYSTROKES` (default 300 per tool), `LOAD_BYTES` (the copy's file; 0 skips the
//! phase under load), `TETHER_BIN_DIR` (release hub, CLI, agent),
//! `SSHD` (default `/usr/sbin/sshd`), `SSH` (default `ssh`). Without sshd the ssh column is skipped.

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use tether_bench::{Binaries, PROMPT, Stats, env_or, marker, settle, stage, type_block, us};
use tether_e2e::{Agent, Hub, Proc, PtySession};

const LONG: Duration = Duration::from_secs(30);
/// Characters typed between two clears of the line.
const BLOCK: usize = 50;
/// Characters typed (and not counted) before measuring, per tool.
const WARMUP: usize = 20;
const SET_PROMPT: &str = "PS1='@''@> '";

fn main() -> ExitCode {
    if let Some(code) = stage(&Binaries::from_env()) {
        return code;
    }
    let keystrokes: usize = env_or("KEYSTROKES", 300);
    let load_bytes: u64 = env_or("LOAD_BYTES", 256 << 20);

    let hub = Hub::start_default();
    let cli = hub.user_cli("bench", true);
    let load_dir = tempfile::Builder::new()
        .prefix("tether-bench-load-")
        .tempdir()
        .expect("a temporary directory");
    let agent = Agent::start(
        &hub,
        &format!(
            "[terminal]\nshell = \"/bin/sh\"\n\n[file_transfer]\nenabled = true\nroots = [{:?}]\nmax_file_size = 0\n",
            load_dir.path().display().to_string()
        ),
    );
    cli.accept(&agent.name);
    let tether = PtySession::terminal(&cli, &agent.name);
    prepare(&tether);

    let sshd = match LocalSshd::start() {
        Ok(sshd) => Some(sshd),
        Err(e) => {
            eprintln!("ssh comparison skipped: {e}");
            None
        }
    };
    let ssh = sshd.as_ref().map(|sshd| {
        let session = PtySession::spawn_command(sshd.client_command(), "ssh", 24, 80);
        prepare(&session);
        session
    });

    let mut peers: Vec<(&str, &PtySession, Vec<Duration>)> = vec![("tether", &tether, Vec::new())];
    if let Some(ssh) = &ssh {
        peers.push(("ssh", ssh, Vec::new()));
    }
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

    println!("== keystroke round trip (typed character -> its echo on the terminal), 127.0.0.1 ==");
    println!(
        "{keystrokes} keystrokes per tool after {WARMUP} warm-up, blocks of {BLOCK}, alternating; shell /bin/sh"
    );
    report(&peers, "");

    if load_bytes == 0 {
        return ExitCode::SUCCESS;
    }
    let file = load_dir.path().join("load.bin");
    tether_e2e::peers::write_deterministic_file(&file, 0x10ad, load_bytes);
    let mut loaded: Vec<(&str, &PtySession, Vec<Duration>)> = Vec::new();
    for (name, session, _) in &peers {
        let (samples, done) = if *name == "tether" {
            let destination = format!("{}:{}", agent.name, load_dir.path().join("copy.bin").display());
            let source = file.display().to_string();
            while_copying(session, keystrokes, || {
                let mut command = cli.command(&["cp", &source, &destination]);
                command.stdin(Stdio::null());
                command
            })
        } else if let Some(sshd) = &sshd {
            while_copying(session, keystrokes, || {
                let mut command = sshd.bulk_command();
                command.stdin(std::fs::File::open(&file).expect("the load file"));
                command
            })
        } else {
            continue;
        };
        println!(
            "{name}: {done} copies of {load_bytes} bytes ran to their end while its keystrokes were typed"
        );
        loaded.push((name, session, samples));
    }
    println!(
        "== the same while a copy of {load_bytes} bytes runs, again and again, over the same link \
         (tether cp to the device; ssh ... 'cat > /dev/null' through the same sshd) =="
    );
    report(&loaded, "_under_copy");
    drop(ssh);
    drop(sshd);
    ExitCode::SUCCESS
}

/// `keystrokes` measured keystrokes, in blocks, after a warm-up.
fn type_blocks(session: &PtySession, keystrokes: usize) -> Vec<Duration> {
    type_block(session, WARMUP);
    let mut samples = Vec::new();
    let mut left = keystrokes;
    while left > 0 {
        let n = left.min(BLOCK);
        samples.extend(type_block(session, n));
        left -= n;
    }
    samples
}

/// Measures `keystrokes` while `command` (a copy) runs again and again; the samples, and how
/// many copies ran to their end.
fn while_copying(
    session: &PtySession,
    keystrokes: usize,
    command: impl Fn() -> Command + Sync,
) -> (Vec<Duration>, u64) {
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let samples = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let mut copy = command();
                copy.stdout(Stdio::null()).stderr(Stdio::null());
                let Ok(mut child) = copy.spawn() else { return };
                while child.try_wait().ok().flatten().is_none() {
                    if stop.load(Ordering::Relaxed) {
                        let _ = child.kill();
                        let _ = child.wait();
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
        // The copy is under way before the first keystroke is timed.
        std::thread::sleep(Duration::from_secs(1));
        let samples = type_blocks(session, keystrokes);
        stop.store(true, Ordering::Relaxed);
        samples
    });
    (samples, done.load(Ordering::Relaxed))
}

/// Prints the statistics of each tool, their METRIC lines (`suffix` after the name of the
/// figure) and the ratios.
fn report(peers: &[(&str, &PtySession, Vec<Duration>)], suffix: &str) {
    println!(
        "{:<8} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "tool", "n", "min us", "p50 us", "p90 us", "p99 us", "max us", "mean us"
    );
    let mut stats = Vec::new();
    for (name, _, samples) in peers {
        let s = Stats::of(samples);
        println!(
            "{name:<8} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            s.count,
            us(s.min),
            us(s.p50),
            us(s.p90),
            us(s.p99),
            us(s.max),
            us(s.mean)
        );
        println!("METRIC keystroke{suffix}_p50_us_{name} {}", us(s.p50));
        println!("METRIC keystroke{suffix}_p99_us_{name} {}", us(s.p99));
        stats.push(s);
    }
    if stats.len() == 2 {
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        println!(
            "tether/ssh: p50 {:.2}x, p99 {:.2}x, mean {:.2}x",
            ratio(stats[0].p50, stats[1].p50),
            ratio(stats[0].p99, stats[1].p99),
            ratio(stats[0].mean, stats[1].mean)
        );
    }
}

/// Sets the prompt and waits until the shell answers and the terminal is quiet.
fn prepare(session: &PtySession) {
    let (command, expected) = marker();
    session.send_line(&format!("{SET_PROMPT}; {command}"));
    session.expect(&expected, LONG);
    session.expect(PROMPT, LONG);
    settle(session);
    check_remote_echo(session);
}

/// Makes sure the echo being timed is the remote PTY's: with the remote echo off (`stty -echo`),
/// a typed character must not appear (it would if the local terminal still echoed, e.g. if the
/// client had not put it in raw mode). Panics otherwise: the figures would be meaningless.
fn check_remote_echo(session: &PtySession) {
    session.send_line("stty -echo");
    session.expect(PROMPT, LONG);
    settle(session);
    session.send(b"q");
    std::thread::sleep(Duration::from_millis(500));
    let shown = session.pending_output();
    assert!(
        shown.is_empty(),
        "`{}`: a typed character appeared with the remote echo off ({shown:?}): the local terminal \
         echoes, so the echo would not measure a round trip",
        session.label()
    );
    session.send(b"\x15stty echo\r");
    session.expect(PROMPT, LONG);
    settle(session);
}

/// `sshd -D` on a free 127.0.0.1 port with a temporary host key and authorized key (for the
/// current user), killed on drop.
struct LocalSshd {
    _process: Proc,
    port: u16,
    key: PathBuf,
    user: String,
    dir: tempfile::TempDir,
}

impl LocalSshd {
    fn start() -> Result<LocalSshd, String> {
        let sshd = std::env::var("SSHD").unwrap_or_else(|_| "/usr/sbin/sshd".into());
        if !Path::new(&sshd).is_file() {
            return Err(format!("{sshd} not found (install openssh-server)"));
        }
        let dir = tempfile::Builder::new()
            .prefix("tether-bench-sshd-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let d = dir.path();
        let keygen = |path: &Path| -> Result<(), String> {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(path)
                .status()
                .map_err(|e| format!("ssh-keygen: {e}"))?;
            status
                .success()
                .then_some(())
                .ok_or_else(|| "ssh-keygen failed".to_owned())
        };
        keygen(&d.join("host_key"))?;
        keygen(&d.join("client_key"))?;
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).map_err(|e| e.to_string())?;
        // Privilege separation needs this directory (a fresh container has no /run/sshd).
        let _ = std::fs::create_dir_all("/run/sshd");
        let user = std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| {
                if tether_e2e::is_root() {
                    "root".into()
                } else {
                    whoami()
                }
            });
        let port = free_port()?;
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {pid}\n\
             AuthorizedKeysFile {auth}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPrintMotd no\nPrintLastLog no\n\
             UseDNS no\nLogLevel ERROR\n",
            host = d.join("host_key").display(),
            pid = d.join("sshd.pid").display(),
            auth = d.join("authorized_keys").display(),
        );
        std::fs::write(d.join("sshd_config"), config).map_err(|e| e.to_string())?;
        let mut command = Command::new(&sshd);
        command.arg("-D").arg("-e").arg("-f").arg(d.join("sshd_config"));
        let process = Proc::spawn("sshd", command, d);
        // Ready once the port accepts connections.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() >= deadline {
                return Err(format!(
                    "sshd did not listen on 127.0.0.1:{port}:\n{}",
                    process.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(LocalSshd {
            _process: process,
            port,
            key: d.join("client_key"),
            user,
            dir,
        })
    }

    /// `ssh ... USER@127.0.0.1 'cat > /dev/null'`: standard input to nowhere on the far side,
    /// the data path of a copy (encrypted by ssh, decrypted by sshd).
    fn bulk_command(&self) -> Command {
        let interactive = self.client_command();
        let mut bulk = Command::new(interactive.get_program());
        // The interactive command without `-tt` and its shell: a pipe, no PTY.
        bulk.args(
            interactive
                .get_args()
                .filter(|arg| *arg != "-tt" && *arg != "/bin/sh"),
        );
        bulk.arg("cat > /dev/null");
        bulk
    }

    /// `ssh -tt ... USER@127.0.0.1 /bin/sh`: an interactive `/bin/sh` on a remote PTY.
    fn client_command(&self) -> Command {
        let ssh = std::env::var("SSH").unwrap_or_else(|_| "ssh".into());
        let mut command = Command::new(ssh);
        command
            .arg("-tt")
            .args(["-p", &self.port.to_string()])
            .args(["-o", "StrictHostKeyChecking=no"])
            .args(["-o", "UserKnownHostsFile=/dev/null"])
            .args(["-o", "BatchMode=yes"])
            .args(["-o", "LogLevel=ERROR"])
            .args(["-F", "/dev/null"])
            .arg("-i")
            .arg(&self.key)
            .arg(format!("{}@127.0.0.1", self.user))
            .arg("/bin/sh");
        let _ = &self.dir;
        command
    }
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

fn whoami() -> String {
    Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "root".into())
}
