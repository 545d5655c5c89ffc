//! Version 2 keeps working beside version 3: a hub with `compact_device_leg = false` offers
//! versions 1 and 2 only (as hubs before the compact encoding did), and an agent of this release
//! serves it exec, file transfer both ways, a TCP forward and a terminal that survives a cut
//! device leg, all in version 2. The rest of the suite does the same on version 3, the default.

use std::time::Duration;

use tether_e2e::{
    Agent, FaultProxy, Hub, HubOptions, PortForward, PtySession,
    peers::{TcpEcho, deterministic_bytes, echo_round_trip, sha256_file, write_deterministic_file},
    wait_for,
};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn exec_files_a_forward_and_a_surviving_terminal_work_in_version_2() {
    let root = tempfile::tempdir().expect("device root");
    let local = tempfile::tempdir().expect("local dir");
    let hub =
        Hub::start(HubOptions::default().config("compact_device_leg = false\nkeepalive_interval_secs = 2\n"));
    let cli = hub.user_cli("alice", true);
    let device_leg = FaultProxy::for_hub(&hub);
    let agent_toml = format!(
        "keepalive_interval_secs = 2\n\n[terminal]\nshell = \"/bin/sh\"\n\n[port_forward]\nenabled = true\n\n\
         [file_transfer]\nenabled = true\nroots = [{:?}]\n",
        root.path().display().to_string()
    );
    let agent = Agent::start_via(&hub, &device_leg.url(), &agent_toml);
    cli.accept(&agent.name);
    cli.wait_online(&agent.name);

    // Exec.
    let output = cli.exec(&agent.name, &["printf", "[%s]", "two words"]);
    assert_eq!(output.ok(), "[two words]", "{output}");

    // File transfer both ways, checked by SHA-256.
    let source = local.path().join("source.bin");
    write_deterministic_file(&source, 2, 700 * 1024);
    let uploaded = root.path().join("uploaded.bin");
    let remote = format!("{}:{}", agent.name, uploaded.display());
    cli.run(&["cp", &source.display().to_string(), &remote]).ok();
    assert_eq!(
        sha256_file(&uploaded),
        sha256_file(&source),
        "the upload arrived changed"
    );
    let downloaded = local.path().join("downloaded.bin");
    cli.run(&["cp", &remote, &downloaded.display().to_string()]).ok();
    assert_eq!(
        sha256_file(&downloaded),
        sha256_file(&source),
        "the download arrived changed"
    );

    // A TCP forward to an echo server next to the device.
    let echo = TcpEcho::start();
    let forward = PortForward::start(&cli, &agent.name, &[&format!("0:{}", echo.port())], &[]);
    let payload = deterministic_bytes(3, 200 * 1024);
    let back = echo_round_trip(forward.local_port(0), &payload).expect("echo through the forward");
    assert!(
        back == payload,
        "the forward's echo differs ({} bytes of {})",
        back.len(),
        payload.len()
    );
    drop(forward);

    // A terminal survives a cut device leg: the shell (and its variable) is the same one.
    let terminal = PtySession::terminal(&cli, &agent.name);
    terminal.expect("Connected to", LIMIT);
    terminal.send("KEPT=kept-$((40+2)); echo set-$((1+1))\r");
    terminal.expect("set-2", LIMIT);
    let connections = device_leg.accepted();
    device_leg.cut_all();
    wait_for("the agent to reconnect", LIMIT, || {
        (device_leg.accepted() > connections).then_some(())
    });
    terminal.send("echo \"$KEPT-after\"\r");
    if terminal.try_expect("kept-42-after", LIMIT).is_none() {
        panic!(
            "the shell did not survive the cut device leg; the terminal showed:\n{}\nagent log:\n{}",
            terminal.output(),
            agent.log()
        );
    }
    terminal.send("exit\r");
}
