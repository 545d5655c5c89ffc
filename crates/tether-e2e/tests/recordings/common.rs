//! What every recording test shares: a hub, an admin CLI and an agent, the session list, and
//! the recording fetched and decoded over HTTP.

use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use tether_e2e::{Agent, Cli, Hub, HubOptions, WAIT, wait_for};

pub(crate) const LONG: Duration = Duration::from_secs(20);

pub(crate) const SHELL: &str = "[terminal]\nshell = \"/bin/sh\"\n";

/// A marker the shell computes, so the typed command (echoed) never matches what the test waits
/// for: `echo PREFIX-$((N+1))` prints `PREFIX-{N+1}`.
pub(crate) fn marker(prefix: &str) -> (String, String) {
    let n: u32 = rand::random::<u32>() % 1_000_000 + 1000;
    (format!("echo {prefix}-$(({n}+1))"), format!("{prefix}-{}", n + 1))
}

pub(crate) fn setup(options: HubOptions) -> (Hub, Cli, Agent) {
    let hub = Hub::start(options);
    let cli = hub.user_cli("alice", true);
    let agent = Agent::start(&hub, SHELL);
    cli.accept(&agent.name);
    (hub, cli, agent)
}

/// `tether sessions list --json`.
pub(crate) fn sessions(cli: &Cli) -> Vec<Value> {
    let output = cli.run(&["sessions", "list", "--json"]);
    serde_json::from_str(output.ok()).unwrap_or_else(|e| panic!("sessions list --json: {e}\n{output}"))
}

/// Waits for a listed session that satisfies `check`.
pub(crate) fn wait_session(cli: &Cli, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    wait_for(&format!("a session {what}"), WAIT, || {
        sessions(cli).into_iter().find(|session| check(session))
    })
}

/// One record of a recording, its data decoded.
#[derive(Debug, Clone)]
pub(crate) struct Rec {
    pub(crate) t: u64,
    pub(crate) k: String,
    pub(crate) d: Vec<u8>,
    pub(crate) w: Option<u64>,
    pub(crate) h: Option<u64>,
}

pub(crate) struct Recording {
    pub(crate) header: Value,
    pub(crate) records: Vec<Rec>,
    /// The size of the HTTP body as sent.
    pub(crate) body_len: usize,
}

impl Recording {
    pub(crate) fn output(&self) -> Vec<u8> {
        self.records
            .iter()
            .filter(|r| r.k == "o")
            .flat_map(|r| r.d.iter().copied())
            .collect()
    }
}

/// `GET /api/management/v1/sessions/{sid}/recording?from_ms=FROM`, parsed (with curl: the
/// harness's own HTTP helper is for small answers, a recording can be tens of megabytes).
pub(crate) fn recording(hub: &Hub, token: &str, sid: &str, from_ms: u64) -> Recording {
    let path = format!("/api/management/v1/sessions/{sid}/recording?from_ms={from_ms}");
    let output = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "300", "--cacert"])
        .arg(&hub.cert_path)
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["-w", "\n%{http_code}"])
        .arg(format!("{}{path}", hub.url))
        .output()
        .expect("run curl (Debian: curl)");
    let mut body = output.stdout;
    let split = body.iter().rposition(|&b| b == b'\n').unwrap_or(0);
    let status: u16 = String::from_utf8_lossy(&body[split..])
        .trim()
        .parse()
        .unwrap_or_else(|_| {
            panic!(
                "curl printed no status for GET {path}: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    body.truncate(split);
    let text = String::from_utf8(body).expect("the recording is UTF-8 JSON Lines");
    assert_eq!(status, 200, "GET {path}: {text}");
    let mut lines = text.lines().filter(|line| !line.trim().is_empty());
    let header: Value = serde_json::from_str(lines.next().expect("a header line")).expect("header JSON");
    let records = lines
        .map(|line| {
            let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("record {line}: {e}"));
            Rec {
                t: value["t"].as_u64().expect("t"),
                k: value["k"].as_str().expect("k").to_owned(),
                d: value["d"]
                    .as_str()
                    .map(|d| {
                        base64::engine::general_purpose::STANDARD
                            .decode(d)
                            .expect("base64 d")
                    })
                    .unwrap_or_default(),
                w: value["w"].as_u64(),
                h: value["h"].as_u64(),
            }
        })
        .collect();
    Recording {
        header,
        records,
        body_len: text.len(),
    }
}

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}
