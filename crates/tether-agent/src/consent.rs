//! Device-side consent: a session opens only after someone (or something) on the device says
//! yes. Two ways to decide, chosen in `[consent]`:
//!
//! - `mode = "command"`: the agent writes `DATA_DIR/consent/SESSION.pending` (who asks, for
//!   what) and waits for a local `tether-agent approve SESSION` (or `deny`), which leaves an
//!   answer file next to it. The directory is the agent's private data directory, so only its
//!   user (root, usually) can answer.
//! - `mode = "hook"`: the agent runs `hook` with the request in its environment
//!   (`TETHER_SESSION`, `TETHER_USER`, `TETHER_PROTOCOLS`); exit status 0 approves.
//!
//! Either way, no answer within `timeout_secs` is a refusal. Until approved, every message of the
//! session is refused, whatever the hub sends.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::Deserialize;

/// `[consent]` in the configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsentConfig {
    pub mode: ConsentMode,
    /// The program that decides, for `mode = "hook"`.
    pub hook: Option<PathBuf>,
    /// How long a session waits for the decision.
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsentMode {
    /// Sessions open without asking (the default).
    Off,
    /// Wait for `tether-agent approve SESSION`.
    Command,
    /// Ask the `hook` program.
    Hook,
}

impl Default for ConsentConfig {
    fn default() -> Self {
        ConsentConfig {
            mode: ConsentMode::Off,
            hook: None,
            timeout_secs: 60,
        }
    }
}

impl ConsentConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.mode == ConsentMode::Hook && self.hook.is_none() {
            return Err("consent.mode = \"hook\" needs consent.hook = \"/path/to/program\"".into());
        }
        if self.timeout_secs == 0 {
            return Err("consent.timeout_secs must be at least 1".into());
        }
        Ok(())
    }
}

/// Who asks to open a session, and for which protocols.
pub struct Request {
    pub sid: String,
    pub user: String,
    pub protocols: String,
}

/// The decisions of one connection's sessions.
#[derive(Clone)]
pub struct Consent {
    config: ConsentConfig,
    directory: PathBuf,
    approved: Arc<Mutex<HashSet<String>>>,
}

/// The directory where pending requests and answers live.
pub fn directory(data_dir: &Path) -> PathBuf {
    data_dir.join("consent")
}

impl Consent {
    /// `None` when consent is off.
    pub fn new(config: &ConsentConfig, data_dir: &Path) -> Option<Consent> {
        (config.mode != ConsentMode::Off).then(|| Consent {
            config: config.clone(),
            directory: directory(data_dir),
            approved: Arc::default(),
        })
    }

    pub fn timeout_secs(&self) -> u64 {
        self.config.timeout_secs
    }

    pub fn is_approved(&self, sid: &str) -> bool {
        self.approved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(sid)
    }

    pub fn forget(&self, sid: &str) {
        self.approved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(sid);
    }

    /// Asks, waits, and remembers an approval. `Err` says why the session may not open.
    pub async fn ask(&self, request: &Request) -> Result<(), String> {
        let limit = Duration::from_secs(self.config.timeout_secs);
        let decided = match self.config.mode {
            ConsentMode::Off => Ok(()),
            ConsentMode::Command => tokio::time::timeout(limit, self.wait_for_command(request))
                .await
                .unwrap_or_else(|_| Err(self.timed_out())),
            ConsentMode::Hook => self.run_hook(request, limit).await,
        };
        if decided.is_ok() {
            self.approved
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(request.sid.clone());
        }
        let _ = std::fs::remove_file(self.directory.join(format!("{}.pending", request.sid)));
        decided
    }

    fn timed_out(&self) -> String {
        format!(
            "nobody approved the session on the device within {} s (consent.timeout_secs)",
            self.config.timeout_secs
        )
    }

    async fn wait_for_command(&self, request: &Request) -> Result<(), String> {
        let pending = self.directory.join(format!("{}.pending", request.sid));
        let text = format!(
            "session {}\nuser {}\nprotocols {}\n",
            request.sid, request.user, request.protocols
        );
        crate::state::ensure_private_dir(&self.directory)
            .and_then(|()| std::fs::write(&pending, text))
            .map_err(|error| format!("cannot ask for consent on the device: {error}"))?;
        tracing::warn!(
            "session {} of user {} waits for consent: run `tether-agent approve {}` (or deny) within {} s",
            request.sid,
            request.user,
            request.sid,
            self.config.timeout_secs
        );
        let answer = self.directory.join(format!("{}.answer", request.sid));
        loop {
            if let Ok(text) = std::fs::read_to_string(&answer) {
                let _ = std::fs::remove_file(&answer);
                return match text.trim() {
                    "approve" => Ok(()),
                    _ => Err("the session was denied on the device".into()),
                };
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn run_hook(&self, request: &Request, limit: Duration) -> Result<(), String> {
        let Some(hook) = &self.config.hook else {
            return Err("consent.hook is not set".into());
        };
        let mut child = tokio::process::Command::new(hook)
            .env("TETHER_SESSION", &request.sid)
            .env("TETHER_USER", &request.user)
            .env("TETHER_PROTOCOLS", &request.protocols)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| format!("cannot run the consent hook {}: {error}", hook.display()))?;
        match tokio::time::timeout(limit, child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(format!("the consent hook refused the session ({status})")),
            Ok(Err(error)) => Err(format!("the consent hook failed: {error}")),
            Err(_) => Err(self.timed_out()),
        }
    }
}

/// `tether-agent approve|deny SESSION`: answers a pending request.
pub fn answer(data_dir: &Path, sid: &str, approve: bool) -> anyhow::Result<()> {
    let directory = directory(data_dir);
    let valid = !sid.is_empty() && sid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    anyhow::ensure!(valid, "`{sid}` is not a session id");
    anyhow::ensure!(
        directory.join(format!("{sid}.pending")).exists(),
        "no session {sid} is waiting for consent (see `tether-agent pending`)"
    );
    let word = if approve { "approve" } else { "deny" };
    std::fs::write(directory.join(format!("{sid}.answer")), word)?;
    Ok(())
}

/// `tether-agent pending`: the requests waiting for an answer.
pub fn pending(data_dir: &Path) -> anyhow::Result<Vec<String>> {
    let Ok(entries) = std::fs::read_dir(directory(data_dir)) else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        if entry.path().extension().is_some_and(|e| e == "pending") {
            found.push(std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    Ok(found)
}
