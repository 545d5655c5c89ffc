//! A refusal ends the command at once, with a non-zero status and the reason: `tether cp`,
//! `tether ls`, `tether port-forward` and `tether exec` against a device that does not offer
//! the feature (a tether-agent with it disabled; a stock-style agent answering "protocol N is
//! not enabled on this device"; the hub refusing a message the caller has no permission for).
//! Before, the CLI printed the refusal and then waited for ever. Each command runs under a
//! generous deadline so that a hang fails the test instead of stalling it.

use std::{
    net::TcpStream,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tether_e2e::{
    Agent, Cli, CliOutput, FakeDevice, Hub, PortForward, Received, block_on, receive, send_binary,
};
use tether_proto::{
    Envelope,
    control::{Control, ErrorBody},
    protocol,
};

/// Far longer than any refusal needs, far shorter than for ever.
const DEADLINE: Duration = Duration::from_secs(30);

/// Asserts that `output` ended by itself with status 1 and a `tether: ...` line naming `needle`.
fn assert_refused_at_once(output: &CliOutput, needle: &str) {
    assert!(!output.timed_out, "the command hung after the refusal:\n{output}");
    assert_eq!(output.code, Some(1), "a refusal exits 1:\n{output}");
    assert!(
        output
            .stderr
            .lines()
            .any(|line| line.starts_with("tether: ") && line.contains(needle)),
        "stderr should name `{needle}`:\n{output}"
    );
}

#[test]
fn features_disabled_on_the_agent_end_cp_ls_port_forward_and_exec_at_once() {
    let hub = Hub::start_default();
    // File transfer and port forwarding are off by default; the terminal is turned off too.
    let agent = Agent::start(&hub, "[terminal]\nenabled = false\n");
    let cli = hub.user_cli("alice", true);
    cli.accept(&agent.name);
    let local = tempfile::tempdir().expect("temp dir");
    let remote = format!("{}:/etc/hostname", agent.name);

    let ls = cli.run_for(&["ls", &remote], DEADLINE);
    assert_refused_at_once(&ls, "does not offer file transfer");
    assert_refused_at_once(&ls, "[file_transfer] enabled");
    let cp = cli.run_for(&["cp", &remote, local.path().to_str().unwrap()], DEADLINE);
    assert_refused_at_once(&cp, "does not offer file transfer");
    assert!(
        std::fs::read_dir(local.path()).unwrap().next().is_none(),
        "nothing is written"
    );
    let forward = cli.run_for(&["port-forward", &agent.name, "0:127.0.0.1:9"], DEADLINE);
    assert_refused_at_once(&forward, "does not offer port forwarding");
    assert!(
        !forward.stdout.contains("Forwarding"),
        "nothing is forwarded:\n{forward}"
    );
    let exec = cli.run_for(&["exec", &agent.name, "--", "true"], DEADLINE);
    assert_refused_at_once(&exec, "does not offer a terminal");
}

#[test]
fn the_hub_refusing_exec_for_lack_of_permission_ends_it_at_once() {
    let hub = Hub::start_default();
    let agent = Agent::start(&hub, "[terminal]\nshell = \"/bin/sh\"\n");
    let admin = hub.user_cli("alice", true);
    admin.accept(&agent.name);
    // A token that may read files but not run commands: the session opens, `new` is refused.
    let created = admin.run(&[
        "tokens",
        "create",
        "--name",
        "reader",
        "--permission",
        "view_devices",
        "--permission",
        "file_read",
        "--json",
    ]);
    let token: serde_json::Value = serde_json::from_str(created.ok()).expect("token JSON");
    let mut reader = Cli::new(&hub);
    reader.set_env("TETHER_TOKEN", token["token"].as_str().expect("token"));

    let exec = reader.run_for(&["exec", &agent.name, "--", "echo", "should-not-run"], DEADLINE);
    assert_refused_at_once(&exec, &agent.name);
    assert!(!exec.stdout.contains("should-not-run"), "{exec}");
    assert!(
        exec.stderr.contains("may not open a terminal"),
        "the refusal says why:\n{exec}"
    );
}

/// A device that speaks version 1 with everything but the terminal off, as a stock
/// mender-connect does: file transfer and port forward messages are answered with a control
/// `error` naming their protocol. Runs until `stop` is set.
fn stock_style_device(fake: FakeDevice, token: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        block_on(async move {
            let mut socket = fake.connect(&token).await.expect("the fake device connects");
            while !stop.load(Ordering::Relaxed) {
                let envelope = match receive(&mut socket, Duration::from_millis(500)).await {
                    Received::Message(envelope) => envelope,
                    Received::Nothing => continue,
                    _ => return,
                };
                let reply = match envelope.proto {
                    protocol::CONTROL => match Control::from_envelope(&envelope) {
                        Ok(Control::Open { .. }) => Control::Accept {
                            version: 1,
                            protocols: vec![protocol::SHELL],
                        }
                        .to_envelope(&envelope.sid),
                        Ok(Control::Ping) => Control::Pong.to_envelope(&envelope.sid),
                        _ => continue,
                    },
                    protocol::FILE_TRANSFER | protocol::PORT_FORWARD => refusal(&envelope),
                    _ => continue,
                };
                if send_binary(&mut socket, reply.encode()).await.is_err() {
                    return;
                }
            }
        })
    })
}

fn refusal(envelope: &Envelope) -> Envelope {
    let body = ErrorBody {
        err: format!("protocol {} is not enabled on this device", envelope.proto),
        close: false,
        msgproto: Some(envelope.proto),
        msgtype: Some(envelope.typ.clone()),
        ..ErrorBody::default()
    };
    Control::Error(body).to_envelope(&envelope.sid)
}

#[test]
fn a_stock_agent_refusing_the_protocol_ends_cp_ls_and_port_forward_at_once() {
    let hub = Hub::start_default();
    let cli = hub.user_cli("alice", true);
    let fake = FakeDevice::new(&hub);
    fake.authenticate(None);
    cli.device_id_by_name(&fake.name);
    cli.run(&["devices", "accept", &fake.name]).ok();
    let token = fake.token(None);
    let name = fake.name.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let device = stock_style_device(fake, token, stop.clone());
    cli.wait_online(&name);
    let local = tempfile::tempdir().expect("temp dir");
    let remote = format!("{name}:/etc/hostname");

    let ls = cli.run_for(&["ls", &remote], DEADLINE);
    assert_refused_at_once(&ls, "protocol 2 is not enabled on this device");
    let cp = cli.run_for(&["cp", &remote, local.path().to_str().unwrap()], DEADLINE);
    assert_refused_at_once(&cp, "protocol 2 is not enabled on this device");

    // Port forwarding is refused at the first connection: the command ends, not only it.
    let mut forward = PortForward::start(&cli, &name, &["0:127.0.0.1:9"], &[]);
    let _client = TcpStream::connect(("127.0.0.1", forward.local_port(0))).expect("connect locally");
    let status = forward.process().wait_exit(DEADLINE);
    assert_eq!(
        status.and_then(|status| status.code()),
        Some(1),
        "port-forward should end with status 1 after the refusal\n{}",
        forward.logs()
    );
    assert!(
        forward
            .stderr()
            .contains("protocol 3 is not enabled on this device"),
        "{}",
        forward.logs()
    );

    stop.store(true, Ordering::Relaxed);
    let _ = device.join();
}
