//! The compact device leg (protocol version 3, issue #16): an agent of this release and a hub
//! that offers version 3 speak it, and a keystroke and its echo then cost a fraction of what they
//! cost in version 2, counted as TCP payload through a proxy between the agent and the hub. A
//! hub with `compact_device_leg = false` offers versions 1 and 2 only, and the same agent serves
//! it in version 2. A download of a text file travels deflated (the hub offers compression on
//! version 3) and arrives intact, while one of random bytes travels as it is, costing no more than
//! its size and a little framing; a text log `cat` to a terminal travels deflated too (a burst of
//! output in one deflate stream) and shows every line. (Every other end-to-end test runs on the
//! default, version 3 with compression; the stock `mender-connect` tests keep version 1.)

use std::time::Duration;

use tether_e2e::{
    Agent, Cli, FaultProxy, Hub, HubOptions, PtySession,
    peers::{sha256_file, write_deterministic_file},
    wait_for,
};

const LIMIT: Duration = Duration::from_secs(30);
/// Keystrokes typed one at a time, each waited for: enough that keep-alives do not matter.
const KEYSTROKES: usize = 100;

/// A hub with `hub_config`, an admin CLI, and an accepted, online agent with `agent_toml` whose
/// leg passes through a proxy that counts its bytes.
fn device_behind_a_counting_proxy(hub_config: &str, agent_toml: &str) -> (Hub, Cli, FaultProxy, Agent) {
    let hub = Hub::start(HubOptions::default().config(hub_config));
    let cli = hub.user_cli("alice", true);
    let device_leg = FaultProxy::for_hub(&hub);
    let agent = Agent::start_via(&hub, &device_leg.url(), agent_toml);
    cli.accept(&agent.name);
    cli.wait_online(&agent.name);
    (hub, cli, device_leg, agent)
}

/// Device-leg bytes (both directions) per keystroke and echo, typed at `cat` in a terminal.
fn bytes_per_keystroke(hub_config: &str) -> (f64, String) {
    let (hub, cli, device_leg, agent) = device_behind_a_counting_proxy(hub_config, "");
    let terminal = PtySession::terminal(&cli, &agent.name);
    terminal.expect("Connected to", LIMIT);
    terminal.send("cat\r");
    // Settled: the prompt and the `cat` line are through before counting starts.
    terminal.send("ready\r");
    terminal.expect("ready\r\nready", LIMIT);
    std::thread::sleep(Duration::from_millis(300));
    let echoes = |terminal: &PtySession| terminal.output().matches('x').count();
    let before = device_leg.bytes_each_way();
    let seen = echoes(&terminal);
    for typed in 1..=KEYSTROKES {
        terminal.send("x");
        wait_for("the echo of a keystroke", LIMIT, || {
            (echoes(&terminal) >= seen + typed).then_some(())
        });
    }
    let after = device_leg.bytes_each_way();
    let (up, down) = (after.0 - before.0, after.1 - before.1);
    println!(
        "{hub_config:?}: per keystroke {:.1} bytes from the device, {:.1} to it",
        up as f64 / KEYSTROKES as f64,
        down as f64 / KEYSTROKES as f64
    );
    let per_keystroke = (up + down) as f64 / KEYSTROKES as f64;
    terminal.send("\r\x04");
    terminal.send("exit\r");
    (per_keystroke, hub.log())
}

#[test]
fn a_keystroke_costs_far_fewer_device_leg_bytes_in_version_3_than_in_version_2() {
    let (compact, compact_log) = bytes_per_keystroke("");
    let (version_2, version_2_log) = bytes_per_keystroke("compact_device_leg = false");
    println!(
        "device-leg bytes per keystroke and echo: {compact:.1} in version 3, {version_2:.1} in version 2"
    );
    assert!(
        compact * 2.0 < version_2,
        "version 3 should cost less than half of version 2 per keystroke: {compact:.1} against \
         {version_2:.1}\nhub log (version 3):\n{compact_log}\nhub log (version 2):\n{version_2_log}"
    );
}

#[test]
fn a_text_download_travels_deflated_and_a_random_one_as_it_is() {
    let root = tempfile::tempdir().expect("device root");
    let local = tempfile::tempdir().expect("local dir");
    let text = root.path().join("device.log");
    let lines: String = (0..40_000)
        .map(|n| {
            format!(
                "2026-12-03T10:{:02}:{:02}Z sensor[{}]: reading {} ok\n",
                n / 60 % 60,
                n % 60,
                n % 7,
                n * 37 % 1000
            )
        })
        .collect();
    std::fs::write(&text, lines).expect("write the text file");
    let random = root.path().join("random.bin");
    write_deterministic_file(&random, 16, 2 << 20);

    let files = format!(
        "[file_transfer]\nenabled = true\nroots = [{:?}]\n",
        root.path().display().to_string()
    );
    let (_hub, cli, device_leg, agent) = device_behind_a_counting_proxy("", &files);
    for (file, compresses) in [(&text, true), (&random, false)] {
        let size = std::fs::metadata(file).expect("size").len();
        let copy = local.path().join(file.file_name().expect("name"));
        let before = device_leg.bytes();
        cli.run(&[
            "cp",
            &format!("{}:{}", agent.name, file.display()),
            &copy.display().to_string(),
        ])
        .ok();
        let bytes = device_leg.bytes() - before;
        assert_eq!(
            sha256_file(&copy),
            sha256_file(file),
            "{} arrived changed",
            file.display()
        );
        println!("{}: {size} bytes, {bytes} on the device leg", file.display());
        if compresses {
            assert!(
                bytes * 3 < size,
                "a text download cost {bytes} device-leg bytes for {size}"
            );
        } else {
            assert!(
                bytes < size + size / 50,
                "a random download cost {bytes} device-leg bytes for {size} (more than 1.02x)"
            );
        }
    }
}

#[test]
fn terminal_output_travels_deflated_and_every_line_arrives() {
    const LINES: usize = 6000;
    let root = tempfile::tempdir().expect("device root");
    let log = root.path().join("device.log");
    let text: String = (0..LINES)
        .map(|n| {
            format!(
                "2026-12-03T10:{:02}:{:02}Z modem[{}]: signal {} dBm line-ok\n",
                n / 60 % 60,
                n % 60,
                n % 5,
                n * 13 % 90
            )
        })
        .collect();
    std::fs::write(&log, &text).expect("write the log");
    let (_hub, cli, device_leg, agent) = device_behind_a_counting_proxy("", "");
    let terminal = PtySession::terminal(&cli, &agent.name);
    terminal.expect("Connected to", LIMIT);
    // Quotes in the commands keep their echo from matching what they print.
    terminal.send("echo rea''dy\r");
    terminal.expect("ready", LIMIT);
    let before = device_leg.bytes();
    terminal.send(format!("cat {}; echo cat''ted\r", log.display()));
    terminal.expect("catted", LIMIT);
    let bytes = device_leg.bytes() - before;
    let shown = terminal.output().matches("line-ok\r\n").count();
    println!(
        "{} bytes of log, {bytes} on the device leg, {shown} lines shown",
        text.len()
    );
    assert_eq!(shown, LINES, "every line of the log is shown once");
    assert!(
        bytes * 3 < text.len() as u64,
        "the log cost {bytes} device-leg bytes for {}",
        text.len()
    );
    terminal.send("exit\r");
}
