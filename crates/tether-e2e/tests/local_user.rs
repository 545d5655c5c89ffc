//! `tether terminal USER@DEVICE` and `tether exec USER@DEVICE`: a shell as a local user the
//! device allows (`terminal.user`, or one `terminal.allowed_users` lists), refused otherwise
//! (by the agent, naming the setting), audited with the user asked for; a device named exactly
//! `USER@DEVICE` is meant first; a stock (protocol 1) device is refused by the CLI; a malformed
//! `local_user` is refused by the hub.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde_json::Value;
use tether_e2e::{
    Agent, Cli, FakeDevice, Hub, PtySession, WAIT, block_on, is_root, next_envelope, stock_terminal_device,
    wait_for,
};
use tether_proto::{Envelope, control::Control, protocol, shell, value::Value as MsgValue};
use tokio_tungstenite::tungstenite::Message;

const CONFIG: &str = "[terminal]\nshell = \"/bin/sh\"\nuser = \"nobody\"\nallowed_users = [\"daemon\"]\n";

/// `tether audit list --json --all --action ACTION`, parsed.
fn events(cli: &Cli, action: &str) -> Vec<Value> {
    let output = cli.run(&["audit", "list", "--json", "--all", "--action", action]);
    serde_json::from_str(output.ok()).unwrap_or_else(|e| panic!("not JSON ({e}):\n{output}"))
}

#[test]
fn listed_local_users_are_asked_for_by_name() {
    if !is_root() {
        eprintln!(
            "note: skipping listed_local_users_are_asked_for_by_name: the agent must run as root to switch users"
        );
        return;
    }
    let hub = Hub::start_default();
    let cli = hub.user_cli("alice", true);
    let agent = Agent::start_named(&hub, "pump", CONFIG);
    cli.accept(&agent.name);

    // The configured user by name, a listed one, and the default.
    assert_eq!(cli.exec("nobody@pump", &["id", "-un"]).ok(), "nobody\n");
    let daemon = cli.exec("daemon@pump", &["id -un; id -ru"]);
    let daemon_uid = std::process::Command::new("id")
        .args(["-u", "daemon"])
        .output()
        .unwrap();
    let uid = String::from_utf8_lossy(&daemon_uid.stdout).trim().to_owned();
    assert_eq!(daemon.ok(), format!("daemon\n{uid}\n"), "{daemon}");
    assert_eq!(cli.exec("pump", &["id", "-un"]).ok(), "nobody\n");

    // Anyone else is refused by the agent, naming the user and the setting.
    let refused = cli.exec("root@pump", &["id", "-un"]);
    assert!(!refused.success(), "{refused}");
    assert!(refused.stdout.is_empty(), "{refused}");
    assert!(refused.stderr.contains("\"root\""), "{refused}");
    assert!(refused.stderr.contains("terminal.allowed_users"), "{refused}");

    // The interactive shell too.
    let terminal = PtySession::terminal(&cli, "daemon@pump");
    terminal.send_line("echo user-is-$(id -un)-$((1+1))");
    terminal.expect("user-is-daemon-2", Duration::from_secs(20));
    terminal.send_line("exit");
    drop(terminal);

    // The audit names the local user asked for (and only when one was).
    let opened = wait_for("the terminal.open events", WAIT, || {
        let opened = events(&cli, "terminal.open");
        (opened.len() >= 5).then_some(opened)
    });
    let asked: Vec<(&str, &str)> = opened
        .iter()
        .map(|event| {
            (
                event["details"]["local_user"].as_str().unwrap_or("-"),
                event["outcome"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    for expected in [
        ("nobody", "success"),
        ("daemon", "success"),
        ("-", "success"),
        ("root", "refused"),
    ] {
        assert!(asked.contains(&expected), "{expected:?} in {asked:?}");
    }
    let interactive = opened
        .iter()
        .find(|event| event["details"]["command"].is_null() && event["details"]["local_user"] == "daemon");
    assert!(interactive.is_some(), "the terminal's event: {opened:#?}");
}

#[test]
fn a_device_named_with_an_at_sign_is_meant_first() {
    let hub = Hub::start_default();
    let cli = hub.user_cli("alice", true);
    let plain = Agent::start_named(&hub, "lab", "[terminal]\nshell = \"/bin/sh\"\n");
    let at_sign = Agent::start_named(&hub, "ops@lab", "[terminal]\nshell = \"/bin/sh\"\n");
    cli.accept(&plain.name);
    cli.accept(&at_sign.name);
    let own = String::from_utf8_lossy(
        &std::process::Command::new("id")
            .arg("-un")
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .to_owned();

    // `ops@lab` is the device of that name, its shell as its default user.
    let output = cli.exec("ops@lab", &["echo $USER"]);
    assert_eq!(output.ok(), format!("{own}\n"), "{output}");
    let opened = events(&cli, "terminal.open");
    assert!(
        opened
            .iter()
            .all(|event| event["details"].get("local_user").is_none()),
        "no local user asked for: {opened:#?}"
    );
    // Without such a device, USER@DEVICE asks `lab` for the user; its own user is allowed.
    let output = cli.exec(&format!("{own}@lab"), &["id", "-un"]);
    assert_eq!(output.ok(), format!("{own}\n"), "{output}");
    let refused = cli.exec("nobody@lab", &["true"]);
    assert!(refused.stderr.contains("terminal.allowed_users"), "{refused}");
    // `--attach` keeps the user the shell started as.
    let attach = cli.run(&["terminal", "root@lab", "--attach", "some-session"]);
    assert!(!attach.success(), "{attach}");
    assert!(attach.stderr.contains("--attach"), "{attach}");
}

#[test]
fn a_stock_device_cannot_choose_a_local_user() {
    let hub = Hub::start_default();
    let cli = hub.user_cli("alice", true);
    let fake = FakeDevice::named(&hub, "stock");
    fake.authenticate(None);
    cli.device_id_by_name("stock");
    cli.run(&["devices", "accept", "stock"]).ok();
    let token = fake.token(None);
    let stop = Arc::new(AtomicBool::new(false));
    let stock = stock_terminal_device(fake, token, stop.clone());
    cli.wait_online("stock");

    let refused = cli.run(&["terminal", "root@stock"]);
    assert!(!refused.success(), "{refused}");
    assert!(
        refused.stderr.contains("protocol version 1") && refused.stderr.contains("cannot run a shell as"),
        "{refused}"
    );
    let refused = cli.exec("root@stock", &["id"]);
    assert!(!refused.success(), "{refused}");
    assert!(refused.stderr.contains("protocol version 1"), "{refused}");
    stop.store(true, Ordering::Relaxed);
    stock.join().expect("the stock device's thread");
}

#[test]
fn the_hub_refuses_a_malformed_local_user() {
    let hub = Hub::start_default();
    let cli = hub.user_cli("alice", true);
    let agent = Agent::start(&hub, "[terminal]\nshell = \"/bin/sh\"\n");
    cli.accept(&agent.name);
    let id = cli.device_id_by_name(&agent.name);

    let replies = block_on(async {
        use futures_util::SinkExt as _;
        let path = format!("/api/management/v1/deviceconnect/devices/{id}/connect");
        let mut socket = tether_net::connect_websocket(
            &hub.hub_url(),
            &path,
            &cli.token(),
            hub.tls(),
            None,
            1 << 20,
            Duration::from_secs(20),
        )
        .await
        .expect("a session");
        let accept = next_envelope(&mut socket).await;
        assert_eq!(accept.typ, "accept", "{accept:?}");
        let mut replies = Vec::new();
        for value in [MsgValue::Int(0), MsgValue::Str("root; reboot".into())] {
            let new = Envelope::new(protocol::SHELL, "new", &accept.sid)
                .with_prop("command", MsgValue::Str("touch /tmp/never".into()))
                .with_prop(shell::LOCAL_USER, value);
            socket.send(Message::Binary(new.encode().into())).await.unwrap();
            replies.push(next_envelope(&mut socket).await);
        }
        replies
    });
    for reply in &replies {
        let Ok(Control::Error(error)) = Control::from_envelope(reply) else {
            panic!("an error: {reply:?}");
        };
        assert_eq!(error.code, Some(400), "{error:?}");
        assert!(error.err.contains("local_user"), "{error:?}");
    }
    let refusals = wait_for("the two refusals", WAIT, || {
        let refused: Vec<Value> = events(&cli, "authorization")
            .into_iter()
            .filter(|event| {
                event["details"]["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("local_user")
            })
            .collect();
        (refused.len() == 2).then_some(refused)
    });
    assert!(
        refusals.iter().all(|event| event["details"]["code"] == 400),
        "{refusals:#?}"
    );
    // Nothing reached the device.
    assert!(events(&cli, "terminal.open").is_empty());
}
