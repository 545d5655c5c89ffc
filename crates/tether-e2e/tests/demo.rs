//! `tether-hub demo`: a newcomer's first minute — a hub and a local device, and the commands to
//! reach it printed on the terminal.

use std::{path::PathBuf, process::Command, time::Duration};

use tether_e2e::{Cli, Proc, PtySession, WAIT, binary, hermetic, wait_for};

#[test]
fn demo_prints_working_instructions_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(binary("tether-hub"));
    hermetic(&mut command);
    command
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["demo", "--listen", "127.0.0.1:0"]);
    let mut demo = Proc::spawn("demo", command, dir.path());

    // "  export TETHER_HUB=URL TETHER_CA=PATH" and "  .../tether login demo   # password: PW"
    let exports = demo.wait_stdout_line("  export TETHER_HUB=", WAIT);
    let (url, ca) = exports
        .split_once(" TETHER_CA=")
        .unwrap_or_else(|| panic!("unexpected export line: {exports}"));
    let password = wait_for("the demo to print the password", WAIT, || {
        demo.stdout()
            .lines()
            .find_map(|line| line.split_once("# password: ").map(|(_, p)| p.trim().to_owned()))
    });
    assert!(
        demo.stdout().contains("terminal demo-device"),
        "{}",
        demo.stdout()
    );

    let cli = Cli::with(url.trim(), &PathBuf::from(ca.trim()));
    cli.login("demo", &password);
    cli.wait_online("demo-device");
    assert_eq!(
        cli.exec("demo-device", &["echo", "demo-works"]).ok(),
        "demo-works\n"
    );
    let terminal = PtySession::terminal(&cli, "demo-device");
    terminal.send_line("echo demo-$((6*7))");
    terminal.expect("demo-42", Duration::from_secs(20));
    drop(terminal);

    // Ctrl-C stops the demo, its device included.
    demo.signal(libc::SIGINT);
    demo.wait_exit(WAIT)
        .unwrap_or_else(|| panic!("the demo did not stop on SIGINT\n{}", demo.logs()));
    wait_for("the demo's agent to stop with it", WAIT, || {
        (!demo.group_alive()).then_some(())
    });
}
