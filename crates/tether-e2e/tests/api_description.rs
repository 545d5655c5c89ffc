//! The management API's OpenAPI description (issue #20): `/api/openapi.json` describes every
//! management route, and schemathesis (PyPI), run against the live hub with each built-in role's
//! token, finds no server error and no answer that breaks its documented status, content type,
//! headers or schema. The hub has a real device (files on) and a recorded terminal session, whose
//! ids schemathesis is given so that it reaches the handlers' real work, not only their 404s.

use std::{path::Path, process::Command, time::Duration};

use serde_json::Value;
use tether_e2e::{Agent, Hub, PtySession, run_tool};
use tether_proto::api::paths;

const LIMIT: Duration = Duration::from_secs(30);
/// One schemathesis run against every operation, with room for a slow machine.
const RUN_LIMIT: Duration = Duration::from_secs(600);

fn description(hub: &Hub) -> Value {
    let (status, text) = hub.request("GET", "/api/openapi.json", &[], b"");
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("the description is not JSON ({e}): {text}"))
}

#[test]
fn the_description_names_every_management_route_and_its_errors() {
    let hub = Hub::start_default();
    let document = description(&hub);
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
    let described = document["paths"].as_object().expect("paths");
    let expected = [
        (paths::LOGIN_PATH.to_owned(), "post"),
        (paths::DEVICES_PATH.to_owned(), "get"),
        (paths::device_path("{id}"), "delete"),
        (paths::user_connect_path("{id}"), "get"),
        (paths::device_download_path("{id}"), "head"),
        (paths::device_upload_path("{id}"), "put"),
        (paths::AUDIT_EXPORT_PATH.to_owned(), "get"),
        (paths::session_recording_path("{sid}"), "get"),
        (paths::ACTIVE_SESSIONS_PATH.to_owned(), "get"),
        (paths::user_roles_path("{name}"), "put"),
        (paths::access_approve_path("{id}"), "post"),
        (paths::INSTALL_TOKENS_PATH.to_owned(), "post"),
        (paths::TWO_FACTOR_SETTING_PATH.to_owned(), "put"),
    ];
    for (path, method) in expected {
        assert!(
            described.get(&path).and_then(|item| item.get(method)).is_some(),
            "{method} {path} is not described"
        );
    }
    let schemas = document["components"]["schemas"].as_object().expect("schemas");
    for (path, item) in described {
        assert!(path.starts_with("/api/management/v1/"), "{path}");
        for (method, operation) in item.as_object().expect("path item") {
            let responses = operation["responses"].as_object().expect("responses");
            assert!(
                responses.contains_key("4XX") && responses.contains_key("5XX"),
                "{method} {path} does not describe its errors"
            );
            // Every schema it refers to is in the document.
            let text = operation.to_string();
            for reference in text.split("\"#/components/schemas/").skip(1) {
                let name = reference.split('"').next().unwrap_or_default();
                assert!(
                    schemas.contains_key(name),
                    "{method} {path} refers to a missing {name}"
                );
            }
        }
    }
    // The routes the description names are the ones served: an undescribed method is refused.
    let (status, body) = hub.request("PATCH", paths::DEVICES_PATH, &[], b"");
    assert_eq!(status, 405, "{body}");
}

/// Where schemathesis is told the ids of real things (the values of path parameters), per group
/// of operations; every other part of each request (queries, bodies, headers) it generates.
fn schemathesis_config(dir: &Path, device_id: &str, sid: &str, victim: &str) -> std::path::PathBuf {
    let config = format!(
        r#"
[[operations]]
include-path-regex = "/deviceconnect/devices/\\{{id\\}}/|/devices/\\{{id\\}}/(tags|accept)$"
parameters = {{ "path.id" = "{device_id}" }}

[[operations]]
include-path-regex = "/sessions/\\{{sid\\}}/"
parameters = {{ "path.sid" = "{sid}" }}

[[operations]]
include-path-regex = "/users/\\{{name\\}}/"
parameters = {{ "path.name" = "{victim}" }}
"#
    );
    let file = dir.join("schemathesis.toml");
    std::fs::write(&file, config).expect("schemathesis.toml");
    file
}

/// Runs schemathesis with `token` over the operations that `filters` select; panics with its
/// report unless every check passed.
fn schemathesis(hub: &Hub, config: &Path, token: &str, who: &str, filters: &[&str]) {
    let url = format!("{}/api/openapi.json", hub.url);
    let mut command = Command::new("schemathesis");
    // Its cache of crashes goes to the working directory: the hub's temporary one.
    command.current_dir(hub.dir());
    command
        .arg("--config-file")
        .arg(config)
        .args(["--no-color", "run", &url, "--tls-verify"])
        .arg(&hub.cert_path)
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "8",
            // Reproducible: the same cases on every run of the suite.
            "--seed",
            "20261204",
            "--workers",
            "2",
            "--request-timeout",
            "20",
        ])
        .args(filters);
    let run = run_tool(command, None, RUN_LIMIT);
    assert_eq!(
        run.code,
        Some(0),
        "schemathesis as {who} found failures:\n{}\n{}\n--- hub log (end) ---\n{}",
        run.stdout,
        run.stderr,
        tail(&hub.log(), 80)
    );
    assert!(run.stdout.contains("passed"), "{}", run.stdout);
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Operations that end the caller's own session or lock every user out until they enrol a second
/// factor: they run last, once, so that they do not cut the other runs short.
const SELF_ENDING: [&str; 4] = [
    "/auth/logout$",
    "/auth/web/logout$",
    "/revoke-sessions$",
    "/settings/two-factor$",
];

#[test]
fn schemathesis_finds_no_server_error_or_schema_break_for_any_role() {
    let root = tempfile::tempdir().expect("device root");
    std::fs::write(root.path().join("notes.txt"), "a file to download\n").expect("file");
    let hub = Hub::start_default();
    let admin = hub.user_cli("admin", true);
    let agent_toml = format!(
        "[file_transfer]\nenabled = true\nroots = [{:?}]\n",
        root.path().display().to_string()
    );
    let agent = Agent::start(&hub, &agent_toml);
    admin.accept(&agent.name);
    admin.wait_online(&agent.name);
    let device_id = admin.device_id_by_name(&agent.name);

    // A recorded terminal session, for the recording and export operations.
    let terminal = PtySession::terminal(&admin, &agent.name);
    terminal.expect("Connected to", LIMIT);
    terminal.send_line("echo recorded-$((6 * 7))");
    terminal.expect("recorded-42", LIMIT);
    terminal.send_line("exit");
    drop(terminal);
    let token = admin.token();
    let authorization = format!("Bearer {token}");
    let (status, sessions) = hub.request(
        "GET",
        paths::SESSIONS_PATH,
        &[("Authorization", &authorization)],
        b"",
    );
    assert_eq!(status, 200, "{sessions}");
    let sessions: Value = serde_json::from_str(&sessions).expect("sessions JSON");
    let sid = sessions["sessions"][0]["sid"]
        .as_str()
        .unwrap_or_else(|| panic!("no recorded session: {sessions}"))
        .to_owned();

    hub.add_user("victim", false, "pw-victim-correct-horse");
    let config = schemathesis_config(hub.dir(), &device_id, &sid, "victim");
    // One regex: schemathesis keeps only the last of repeated `--exclude-path-regex` options.
    let self_ending = format!("({})", SELF_ENDING.join("|"));
    let not_self_ending = ["--exclude-path-regex", self_ending.as_str()];
    for role in ["auditor", "operator"] {
        let cli = hub.user_cli_with(role, &["--role", role]);
        schemathesis(&hub, &config, &cli.token(), role, &not_self_ending);
    }
    schemathesis(&hub, &config, &token, "admin", &not_self_ending);
    // The hub is still whole (schemathesis may have removed the device: ids it reads in answers
    // it uses in later requests): it is ready and its audit chain verifies.
    let (status, ready) = hub.request("GET", "/readyz", &[], b"");
    assert_eq!(status, 200, "{ready}");
    let verify = admin.run(&["audit", "verify"]);
    assert!(verify.success(), "{}", verify.ok());

    schemathesis(
        &hub,
        &config,
        &token,
        "admin (operations that end its session)",
        &["--include-path-regex", &self_ending],
    );
}
