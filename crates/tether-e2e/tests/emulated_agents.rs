//! The agents shipped for ARM devices work where they will run: the aarch64 (static musl) and
//! armv7 (glibc 2.31) builds of `scripts/build-agents`, run under qemu's user-mode emulation
//! (`qemu-aarch64`, `qemu-arm`, called explicitly: binfmt registration may be unavailable),
//! against the native hub and CLI. Each enrols with a provisioning key, runs `tether exec` with
//! its exit status, a terminal that follows a resize, a file round trip with its checksum and a
//! TCP forward.
//!
//! The binaries are `dist/tether-agent-{aarch64,armv7}-linux`; `scripts/test` builds them with
//! `scripts/build-agents` first.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use tether_e2e::{
    Agent, Emulated, Hub, HubOptions, PortForward, PtySession,
    peers::{TcpEcho, deterministic_bytes, echo_round_trip, sha256_file},
};

const LONG: Duration = Duration::from_secs(60);
const PROVISIONING_KEY: &str = "emulated-fleet-key";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The foreign agent and the qemu that runs it; panics with what to do when one is missing.
fn emulated(arch: &str, qemu: &str, sysroot: Option<&str>) -> Emulated {
    let agent = workspace_root().join(format!("dist/tether-agent-{arch}-linux"));
    assert!(
        agent.is_file(),
        "{} is missing: run scripts/build-agents {arch} (scripts/test does)",
        agent.display()
    );
    let qemu = ["/usr/bin", "/usr/local/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(qemu))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("{qemu} is missing: apt-get install qemu-user (scripts/test does)"));
    let sysroot = sysroot.map(PathBuf::from);
    if let Some(root) = &sysroot {
        assert!(
            root.is_dir(),
            "{} is missing: apt-get install libc6-armhf-cross (scripts/test does)",
            root.display()
        );
    }
    Emulated { qemu, agent, sysroot }
}

/// Everything an operator does with one device whose agent is `emulated`.
fn an_operator_reaches_the_device(emulated: Emulated) {
    let qemu = emulated.qemu.clone();
    let hub = Hub::start(HubOptions::default().provisioning_key(PROVISIONING_KEY));
    let cli = hub.user_cli("alice", true);
    let root = tempfile::tempdir().expect("file root");
    let root_path = root.path().display().to_string();
    let agent = Agent::start_emulated(
        &hub,
        emulated,
        &format!(
            "provisioning_key = {PROVISIONING_KEY:?}\n\n[terminal]\nshell = \"/bin/sh\"\n\n\
             [file_transfer]\nenabled = true\nroots = [{root_path:?}]\n\n[port_forward]\nenabled = true\n"
        ),
    );

    // Enrolled by the provisioning key: accepted and online without an administrator.
    let device = cli.wait_device(&agent.name, "accepted and online", |d| {
        d.status == "accepted" && d.online
    });
    assert!(!device.id.is_empty());

    // `tether exec` runs, and its exit status comes back. The shell is this machine's own (qemu
    // emulates only the agent's process), so it shows that its parent, the agent, is emulated.
    let parent = cli.exec_when_ready(&agent.name, &["readlink /proc/$PPID/exe"], LONG);
    assert_eq!(
        parent.ok().trim(),
        qemu.display().to_string(),
        "{parent}\nagent log:\n{}",
        agent.log()
    );
    let failing = cli.exec(&agent.name, &["exit 3"]);
    assert_eq!(
        failing.code,
        Some(3),
        "the exit status must come back:\n{failing}"
    );

    // A terminal, resized by the operator.
    let mut terminal = PtySession::terminal(&cli, &agent.name);
    terminal.send_line("stty size");
    terminal.expect("24 80", LONG);
    terminal.resize(30, 100);
    let mut resized = false;
    for _ in 0..15 {
        terminal.send_line("stty size");
        if terminal.try_expect("30 100", Duration::from_secs(2)).is_some() {
            resized = true;
            break;
        }
    }
    assert!(
        resized,
        "the remote terminal never became 30 x 100:\n{}",
        terminal.output()
    );
    terminal.send_line("exit");
    terminal.expect_exit(LONG);

    // A file there and back, with its checksum.
    let local = tempfile::tempdir().expect("local dir");
    let original = local.path().join("payload.bin");
    std::fs::write(&original, deterministic_bytes(7, 3 * 1024 * 1024 + 17)).expect("payload");
    let remote = format!("{}:{root_path}/payload.bin", agent.name);
    let up = cli.run_for(&["cp", &original.display().to_string(), &remote], LONG);
    assert!(up.success(), "upload failed:\n{up}\nagent log:\n{}", agent.log());
    let back = local.path().join("back.bin");
    let down = cli.run_for(&["cp", &remote, &back.display().to_string()], LONG);
    assert!(down.success(), "download failed:\n{down}");
    assert_eq!(sha256_file(&back), sha256_file(&original));
    assert_eq!(
        sha256_file(&root.path().join("payload.bin")),
        sha256_file(&original)
    );

    // A TCP forward to a service on the device's loopback.
    let echo = TcpEcho::start();
    let forward = PortForward::start(&cli, &agent.name, &[&format!("0:{}", echo.port())], &[]);
    let payload = deterministic_bytes(11, 256 * 1024);
    let echoed = echo_round_trip(forward.local_port(0), &payload).expect("echo through the forward");
    assert!(
        echoed == payload,
        "{} bytes came back of {}:\n{}",
        echoed.len(),
        payload.len(),
        forward.logs()
    );
}

#[test]
fn the_aarch64_agent_works_under_qemu() {
    an_operator_reaches_the_device(emulated("aarch64", "qemu-aarch64", None));
}

#[test]
fn the_armv7_agent_works_under_qemu() {
    an_operator_reaches_the_device(emulated("armv7", "qemu-arm", Some("/usr/arm-linux-gnueabihf")));
}
