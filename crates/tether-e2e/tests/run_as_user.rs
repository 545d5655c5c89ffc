//! `[terminal] user`: shells and commands run as an unprivileged account when the agent runs as
//! root.

use std::time::Duration;

use tether_e2e::{Agent, Hub, PtySession, is_root};

#[test]
fn commands_run_as_the_configured_user() {
    if !is_root() {
        eprintln!(
            "note: skipping commands_run_as_the_configured_user: the agent must run as root to switch users"
        );
        return;
    }
    let hub = Hub::start_default();
    let cli = hub.user_cli("alice", true);
    let agent = Agent::start(&hub, "[terminal]\nshell = \"/bin/sh\"\nuser = \"nobody\"\n");
    cli.accept(&agent.name);

    let output = cli.exec(&agent.name, &["id", "-un"]);
    assert_eq!(output.ok(), "nobody\n", "{output}");
    // Not just the name: the real and effective ids and the groups are nobody's.
    let ids = cli.exec(&agent.name, &["id -u; id -ru; id -g"]);
    let nobody_uid = std::process::Command::new("id")
        .args(["-u", "nobody"])
        .output()
        .unwrap();
    let nobody_gid = std::process::Command::new("id")
        .args(["-g", "nobody"])
        .output()
        .unwrap();
    let uid = String::from_utf8_lossy(&nobody_uid.stdout).trim().to_owned();
    let gid = String::from_utf8_lossy(&nobody_gid.stdout).trim().to_owned();
    assert_eq!(ids.ok(), format!("{uid}\n{uid}\n{gid}\n"), "{ids}");
    // And root's groups are gone.
    let groups = cli.exec(&agent.name, &["id", "-G"]);
    assert!(
        !groups.ok().split_whitespace().any(|g| g == "0"),
        "a shell run as nobody must not keep root's group: {groups}"
    );

    // The interactive shell too.
    let terminal = PtySession::terminal(&cli, &agent.name);
    terminal.send_line("echo user-is-$(id -un)-$((1+1))");
    terminal.expect("user-is-nobody-2", Duration::from_secs(20));
}
