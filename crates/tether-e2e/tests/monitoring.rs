//! Watching a running hub (issue #20): `/metrics` behind its scrape token moves while a terminal,
//! a copy and a forward run; `/healthz` and `/readyz` answer, and readiness follows NATS; every
//! request has an id, returned in `X-Request-Id`, carried by the JSON log line of a refusal and
//! by the refusal's audit event.

use std::{process::Command, time::Duration};

use tether_e2e::{
    Agent, Hub, HubOptions, Nats, PortForward, Postgres, PtySession,
    peers::{TcpEcho, echo_round_trip, write_deterministic_file},
    wait_for,
};

const LIMIT: Duration = Duration::from_secs(30);

fn metrics_token(hub: &Hub) -> String {
    std::fs::read_to_string(hub.data_dir().join("metrics.token"))
        .expect("the hub writes its metrics token at start")
        .trim()
        .to_owned()
}

fn scrape(hub: &Hub) -> String {
    let authorization = format!("Bearer {}", metrics_token(hub));
    let (status, text) = hub.request("GET", "/metrics", &[("Authorization", &authorization)], b"");
    assert_eq!(status, 200, "{text}");
    text
}

/// The value of the sample `name` (with its labels, as exposed), 0 when absent.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

#[test]
fn metrics_move_while_a_terminal_a_copy_and_a_forward_run() {
    let root = tempfile::tempdir().expect("device root");
    let file = root.path().join("firmware.bin");
    write_deterministic_file(&file, 7, 3 << 20);
    let hub = Hub::start_default();
    let cli = hub.user_cli("alice", true);
    let agent_toml = format!(
        "[port_forward]\nenabled = true\n\n[file_transfer]\nenabled = true\nroots = [{:?}]\n",
        root.path().display().to_string()
    );
    let agent = Agent::start(&hub, &agent_toml);
    cli.accept(&agent.name);
    cli.wait_online(&agent.name);

    let before = scrape(&hub);
    assert_eq!(sample(&before, "tether_devices_connected"), 1.0, "{before}");
    let (status, body) = hub.request("GET", "/metrics", &[("Authorization", "Bearer wrong")], b"");
    assert_eq!(status, 401, "a scrape without the token is refused: {body}");
    assert!(body.contains("metrics token"), "{body}");

    let terminal = PtySession::terminal(&cli, &agent.name);
    terminal.expect("Connected to", LIMIT);
    let echo = TcpEcho::start();
    let mut forward = PortForward::start(&cli, &agent.name, &[&format!("0:127.0.0.1:{}", echo.port())], &[]);
    let payload = vec![7u8; 200_000];
    assert_eq!(
        echo_round_trip(forward.local_port(0), &payload).expect("echo"),
        payload
    );
    let copy = root.path().join("copy.bin");
    cli.run(&[
        "cp",
        &format!("{}:{}", agent.name, file.display()),
        &copy.display().to_string(),
    ])
    .ok();

    let during = scrape(&hub);
    let moved = |name: &str| sample(&during, name) - sample(&before, name);
    assert_eq!(
        sample(&during, r#"tether_sessions_active{kind="terminal"}"#),
        1.0,
        "{during}"
    );
    assert_eq!(
        sample(&during, r#"tether_sessions_active{kind="forward"}"#),
        1.0,
        "{during}"
    );
    assert!(
        moved(r#"tether_relay_bytes_total{direction="from_device",protocol="file_transfer"}"#) > 1_000_000.0,
        "the copy's bytes are counted (random data, not compressed): {during}"
    );
    assert!(moved(r#"tether_relay_bytes_total{direction="to_device",protocol="port_forward"}"#) > 100_000.0);
    assert!(
        moved(r#"tether_relay_bytes_total{direction="from_device",protocol="port_forward"}"#) > 100_000.0
    );
    assert!(moved(r#"tether_relay_bytes_total{direction="from_device",protocol="shell"}"#) > 0.0);
    assert!(
        moved("tether_audit_write_seconds_count") >= 3.0,
        "terminal, forward and copy are audited"
    );
    assert!(
        moved(r#"tether_auth_failures_total{kind="token"}"#) >= 1.0,
        "the refused scrape"
    );
    assert!(
        during.contains(r#"tether_http_requests_total{route="/metrics",status="401"} 1"#),
        "requests are counted by route pattern and status: {during}"
    );
    assert!(during.contains("tether_database_connections{state=\"idle\"}"));
    assert!(
        !during.contains("tether_nats_connected"),
        "no NATS, no NATS metrics"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as f64;
    let expiry = sample(&during, "tether_tls_certificate_expiry_timestamp_seconds");
    assert!(
        expiry > now + 86_400.0,
        "the self-signed certificate's expiry: {expiry}"
    );

    // The sample alert rules and dashboard name only metrics the hub serves.
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/monitoring");
    for file in ["tether-alerts.yml", "tether-dashboard.json"] {
        let text = std::fs::read_to_string(docs.join(file)).expect("read the monitoring docs");
        for (at, _) in text.match_indices("tether_") {
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let family = name.trim_end_matches("_bucket");
            let served = during.contains(&format!("# TYPE {family} "))
                || during.contains(&format!("{family} "))
                || during.contains(&format!("{family}{{"))
                || family.starts_with("tether_nats_");
            assert!(served, "{file} names {name}, which /metrics does not serve");
        }
    }

    terminal.send("exit\r");
    forward.process().kill();
    wait_for("the sessions to end", LIMIT, || {
        let after = scrape(&hub);
        (sample(&after, r#"tether_sessions_active{kind="terminal"}"#) == 0.0
            && sample(&after, r#"tether_sessions_active{kind="forward"}"#) == 0.0)
            .then_some(())
    });
}

#[test]
fn readiness_follows_the_bus_and_health_stays_up() {
    let postgres = Postgres::start();
    let database = postgres.create_database("tether");
    let mut nats = Nats::start();
    let hub = Hub::start(HubOptions::default().replica(&database, &nats.url()));
    let (status, body) = hub.request("GET", "/readyz", &[], b"");
    assert_eq!(status, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["checks"]["database"], "ok");
    assert_eq!(ready["checks"]["nats"], "ok");
    assert!(scrape(&hub).contains("tether_nats_connected 1"));

    nats.kill();
    let body = wait_for("the hub to report it is not ready", LIMIT, || {
        let (status, body) = hub.request("GET", "/readyz", &[], b"");
        (status == 503).then_some(body)
    });
    let ready: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(ready["ready"], false);
    assert_eq!(ready["checks"]["nats"], "the NATS connection is down", "{body}");
    assert_eq!(ready["checks"]["database"], "ok");
    assert!(scrape(&hub).contains("tether_nats_connected 0"));
    assert_eq!(hub.request("GET", "/healthz", &[], b""), (200, "ok".to_owned()));
}

#[test]
fn a_refusal_carries_its_request_id_in_the_header_the_json_log_and_the_audit_event() {
    let hub = Hub::start(HubOptions::default().env("TETHER_HUB_LOG_FORMAT", "json"));
    let cli = hub.user_cli("alice", true);
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-D", "-", "--cacert"])
        .arg(&hub.cert_path)
        .args([
            "-H",
            "X-Request-Id: probe-4711",
            "-H",
            "Authorization: Bearer not-a-token",
        ])
        .arg(format!("{}/api/management/v1/devices", hub.url))
        .output()
        .expect("curl");
    let answer = String::from_utf8_lossy(&output.stdout).to_ascii_lowercase();
    assert!(
        answer.starts_with("http/1.1 401") || answer.starts_with("http/2 401"),
        "{answer}"
    );
    assert!(answer.contains("x-request-id: probe-4711"), "{answer}");
    // A request without an id of its own gets one.
    let output = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "30",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "--cacert",
        ])
        .arg(&hub.cert_path)
        .arg(format!("{}/healthz", hub.url))
        .output()
        .expect("curl");
    let headers = String::from_utf8_lossy(&output.stdout).to_ascii_lowercase();
    let generated = headers
        .lines()
        .find_map(|line| line.strip_prefix("x-request-id: "))
        .unwrap_or_else(|| panic!("no request id: {headers}"));
    assert_eq!(generated.trim().len(), 32, "{headers}");

    let line = wait_for("the refusal's log line", LIMIT, || {
        hub.log()
            .lines()
            .find(|line| line.contains("probe-4711") && line.contains("refused with 401"))
            .map(str::to_owned)
    });
    let logged: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
    assert_eq!(logged["level"], "INFO", "{line}");
    assert_eq!(logged["span"]["request_id"], "probe-4711", "{line}");
    assert_eq!(logged["span"]["route"], "/api/management/v1/devices", "{line}");
    assert!(
        logged["timestamp"].is_string() && logged["target"].is_string(),
        "{line}"
    );
    assert!(
        logged["message"]
            .as_str()
            .is_some_and(|m| m.contains("invalid or expired token")),
        "{line}"
    );

    let events = cli.run(&["audit", "list", "--action", "authentication", "--json"]);
    let events = events.ok();
    assert!(
        events.contains("probe-4711"),
        "the audit event names the request: {events}"
    );
}
