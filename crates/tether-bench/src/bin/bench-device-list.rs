//! The devices listing with a fleet of 10,000: what one page of the web UI costs.
//!
//! A real hub gets 10,000 device rows (written straight into its SQLite database with the
//! `sqlite3` tool, half of them with a `site=` identity attribute), then answers, many times
//! each: one page of 50 (the web UI's first page), the last page, a search, a status filter (all
//! cut by the database), and the online filter (applied in the hub over every device). Each request is a fresh TLS connection, so a bare
//! `GET /healthz` is measured beside them as the floor. Prints latencies (p50/p90) and response
//! sizes; asserts nothing about timings. Environment: `TETHER_BIN_DIR`.

use std::{
    io::Write as _,
    process::{Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use tether_bench::{Binaries, Stats, stage};
use tether_e2e::Hub;

const DEVICES: usize = 10_000;
const RUNS: usize = 30;
const PASSWORD: &str = "bench-device-list-password";

fn insert_devices(hub: &Hub) {
    let mut sql = String::from("BEGIN;\n");
    for n in 0..DEVICES {
        let status = if n.is_multiple_of(10) {
            "pending"
        } else {
            "accepted"
        };
        let identity = if n.is_multiple_of(2) {
            format!("{{\"hostname\":\"fleet-{n:05}\",\"site\":\"plant-{}\"}}", n % 7)
        } else {
            format!("{{\"hostname\":\"fleet-{n:05}\"}}")
        };
        sql.push_str(&format!(
            "INSERT INTO devices (id, public_key, identity, name, status, agent_version, created_at, updated_at, last_seen_at) \
             VALUES ('bench-{n:05}', 'key-{n:05}', '{identity}', 'fleet-{n:05}', '{status}', '0.1.0', 0, 0, 0);\n"
        ));
    }
    sql.push_str("COMMIT;\n");
    let mut sqlite = Command::new("sqlite3")
        .arg(hub.data_dir().join("hub.db"))
        .stdin(Stdio::piped())
        .spawn()
        .expect("sqlite3 (Debian package sqlite3)");
    sqlite
        .stdin
        .take()
        .expect("stdin")
        .write_all(sql.as_bytes())
        .expect("writing SQL");
    assert!(
        sqlite.wait().expect("sqlite3").success(),
        "inserting devices failed"
    );
}

fn login(hub: &Hub) -> String {
    let body = format!("{{\"username\":\"bench\",\"password\":\"{PASSWORD}\"}}");
    let (status, text) = hub.request(
        "POST",
        "/api/management/v1/auth/login",
        &[("content-type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(status, 200, "login: {text}");
    let start = text.find("\"token\":\"").expect("a token") + 9;
    text[start..].split('"').next().expect("token").to_owned()
}

fn main() -> ExitCode {
    if let Some(code) = stage(&Binaries::from_env()) {
        return code;
    }
    let hub = Hub::start_default();
    hub.add_user("bench", true, PASSWORD);
    let token = login(&hub);
    insert_devices(&hub);
    let authorization = format!("Bearer {token}");
    let headers = [("authorization", authorization.as_str())];
    let cases = [
        ("GET /healthz (floor: TLS + HTTP)", "/healthz".to_owned()),
        (
            "first page of 50",
            "/api/management/v1/devices?offset=0&limit=50".to_owned(),
        ),
        (
            "last page of 50",
            format!("/api/management/v1/devices?offset={}&limit=50", DEVICES - 50),
        ),
        (
            "search \"plant-3\", page of 50",
            "/api/management/v1/devices?search=plant-3&limit=50".to_owned(),
        ),
        (
            "pending, page of 50",
            "/api/management/v1/devices?status=pending&limit=50".to_owned(),
        ),
        (
            "online only, page of 50 (filtered in the hub)",
            "/api/management/v1/devices?online=false&limit=50".to_owned(),
        ),
    ];
    println!(
        "== devices listing with {DEVICES} devices ({RUNS} requests each, new TLS connection per request) =="
    );
    println!(
        "{:<48} {:>9} {:>9} {:>12}",
        "request", "p50 ms", "p90 ms", "body bytes"
    );
    for (label, path) in cases {
        let mut samples = Vec::with_capacity(RUNS);
        let mut size = 0;
        for _ in 0..RUNS {
            let started = Instant::now();
            let (status, body) = hub.request("GET", &path, &headers, b"");
            samples.push(started.elapsed());
            assert_eq!(status, 200, "{path}: {body}");
            size = body.len();
        }
        let stats = Stats::of(&samples);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{label:<48} {:>9.1} {:>9.1} {size:>12}",
            ms(stats.p50),
            ms(stats.p90)
        );
    }
    ExitCode::SUCCESS
}
