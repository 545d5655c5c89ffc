//! Audit events survive a SIGKILL of the hub.

use std::process::Command;

use tether_e2e::{
    Cli, Hub, WAIT,
    peers::{sha256_file, write_deterministic_file},
};

use crate::common::*;

#[test]
fn exec_events_survive_a_hub_crash() {
    let (mut hub, cli, agent) = with_agent(SHELL);
    cli.exec_when_ready(&agent.name, &["true"], WAIT).ok();
    hub.kill();
    hub.restart();

    let open = exactly_one(&cli, &["--action", "terminal.open"]);
    let close = exactly_one(&cli, &["--action", "terminal.close"]);
    assert_eq!(open["outcome"], "success");
    assert_eq!(close["session_id"], open["session_id"], "{close:#}");
    assert_eq!(close["details"]["exit_status"], 0, "{close:#}");
    let output = cli.run(&["audit", "verify"]);
    assert!(output.ok().starts_with("audit log intact"), "{output}");
}

/// `curl` against the hub as `cli`'s user; returns the status and body.
fn curl(hub: &Hub, cli: &Cli, args: &[&str]) -> (u16, String) {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "60", "--cacert"])
        .arg(&hub.cert_path)
        .args(["-H", &format!("Authorization: Bearer {}", cli.token())])
        .args(["-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl (Debian: curl)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    let status = status.trim().parse().unwrap_or_else(|_| {
        panic!(
            "curl printed no status: {text}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (status, body.to_owned())
}

#[test]
fn an_http_upload_event_survives_a_hub_crash() {
    let device_dir = tempfile::tempdir().unwrap();
    let root = device_dir.path().join("data");
    std::fs::create_dir(&root).unwrap();
    let (mut hub, cli, agent) = with_agent(&file_transfer_config(&root));
    let id = cli.device_id_by_name(&agent.name);
    let local = tempfile::tempdir().unwrap();
    let payload = local.path().join("payload");
    write_deterministic_file(&payload, 7, 20_000);
    let target = root.join("uploaded");
    let url = format!("{}/api/management/v1/deviceconnect/devices/{id}/upload", hub.url);
    let (status, body) = curl(
        &hub,
        &cli,
        &[
            "-X",
            "PUT",
            "-F",
            &format!("path={}", target.display()),
            "-F",
            &format!("file=@{}", payload.display()),
            &url,
        ],
    );
    assert_eq!(status, 201, "upload: {body}");
    hub.kill();
    hub.restart();

    let event = exactly_one(&cli, &["--action", "file.upload"]);
    assert_user_actor(&event, "alice");
    assert_device_object(&event, &id, &agent.name);
    assert_eq!(event["outcome"], "success");
    assert_eq!(
        event["details"]["path"],
        target.display().to_string(),
        "{event:#}"
    );
    assert_eq!(event["details"]["size"], 20_000, "{event:#}");
    assert_eq!(
        event["details"]["sha256"],
        sha256_file(&payload).as_str(),
        "{event:#}"
    );
    assert_origin(&event);
    let agent_header = event["user_agent"].as_str().unwrap_or_default();
    assert!(agent_header.starts_with("curl/"), "{event:#}");
}
