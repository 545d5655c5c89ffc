//! Signed checkpoints of the audit chain's head, and the audit signing key that makes them.
//!
//! Whoever can write the database can rewrite the whole hash chain consistently; they cannot
//! sign. So the hub signs the head (`seq`, hash, time) at start, every
//! `audit_checkpoint_interval_secs` when the chain moved, on request (`tether audit checkpoint`)
//! and on graceful shutdown, and appends each checkpoint to `audit_checkpoint_file` and to syslog
//! when configured: copies kept outside the database, which a verifier later holds the chain
//! against (`tether_proto::audit_checkpoint`). Retention's anchor is signed with the same key.
//!
//! The key (Ed25519) lives in its own file, never in the database and never the token signing
//! key. Before signing, the hub checks that the chain still extends the head it last signed (at
//! start: the whole chain from its anchor), so it never attests a chain rewritten behind it.

use std::{
    fs,
    io::Write as _,
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    time::Duration,
};
use tether_proto::clock::unix_millis;

use anyhow::Context as _;
use ed25519_dalek::{
    SigningKey,
    pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, spki::der::pem::LineEnding},
};
use rand::RngCore as _;
use tether_proto::{
    audit::ChainWalk,
    audit_checkpoint::{Statement, StatementKind},
};

use crate::{config::HubConfig, service::Hub, service::secrets, store::Store};

/// Events read per query while checking the chain before a checkpoint.
const PAGE: i64 = 500;

/// The chain no longer extends the last signed head (or does not verify): nothing is signed.
#[derive(Debug, thiserror::Error)]
#[error("the audit chain does not verify since the last checkpoint, so none was signed: {0}")]
pub struct ChainBroken(String);

/// Signs checkpoints and anchors; remembers the head it last signed.
pub struct Checkpointer {
    key: SigningKey,
    last: tokio::sync::Mutex<Option<(i64, String)>>,
    file: Option<PathBuf>,
    syslog: Option<PathBuf>,
}

impl Checkpointer {
    pub fn new(key: SigningKey, config: &HubConfig) -> Checkpointer {
        Checkpointer {
            key,
            last: tokio::sync::Mutex::new(None),
            file: config.audit_checkpoint_file.clone(),
            syslog: config.audit_checkpoint_syslog.clone(),
        }
    }

    /// The public key checkpoints carry (hex).
    pub fn public_key(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// Retention's statement that it deleted every event up to `seq` (whose hash was `hash`).
    pub fn attest_anchor(&self, seq: i64, hash: &str) -> Statement {
        Statement::sign(StatementKind::Anchor, seq, hash, unix_millis(), &self.key)
    }

    /// Signs a checkpoint of the chain's head and publishes it (file, syslog, log), once the
    /// chain is checked to extend the head last signed. With `only_if_moved`, nothing is signed
    /// (`None`) when the head is the one last signed.
    pub async fn checkpoint(&self, store: &Store, only_if_moved: bool) -> anyhow::Result<Option<Statement>> {
        let mut last = self.last.lock().await;
        let anchor = store.audit_anchor_statement().await?;
        let mut walk = match &*last {
            // Retention may have pruned past the last signed head; then the anchor it signed is
            // where the check starts.
            Some((seq, hash)) if *seq > anchor.seq => {
                let found = store.audit_events_after(seq - 1, 1).await?;
                match found.first() {
                    Some(event) if event.seq == *seq && event.hash == *hash => {}
                    Some(event) if event.seq == *seq => {
                        return Err(ChainBroken(format!(
                            "event {seq}, the head of the last checkpoint, no longer has the signed hash"
                        ))
                        .into());
                    }
                    _ => {
                        return Err(ChainBroken(format!(
                            "event {seq}, the head of the last checkpoint, was deleted"
                        ))
                        .into());
                    }
                }
                ChainWalk::from_anchor(*seq, hash)
            }
            _ => ChainWalk::from_anchor(anchor.seq, &anchor.hash),
        };
        let mut after = walk.head().0;
        'pages: loop {
            let page = store.audit_events_after(after, PAGE).await?;
            let Some(end) = page.last() else { break };
            after = end.seq;
            for event in &page {
                if !walk.step(event) {
                    break 'pages;
                }
            }
        }
        if let Some(problem) = walk.problem() {
            return Err(ChainBroken(format!(
                "event {}: {} ({})",
                problem.seq, problem.kind, problem.detail
            ))
            .into());
        }
        let (seq, hash) = walk.head();
        if only_if_moved && last.as_ref().is_some_and(|(s, h)| *s == seq && h == hash) {
            return Ok(None);
        }
        let statement = Statement::sign(StatementKind::Checkpoint, seq, hash, unix_millis(), &self.key);
        *last = Some((seq, hash.to_owned()));
        drop(last);
        self.publish(&statement);
        Ok(Some(statement))
    }

    /// Writes the checkpoint where it was asked to go. A copy that cannot be written is logged:
    /// the checkpoint itself stands (the caller holds it).
    fn publish(&self, statement: &Statement) {
        let line = serde_json::to_string(statement).unwrap_or_default();
        tracing::info!(
            "audit checkpoint: event {}, hash {}",
            statement.seq,
            statement.hash
        );
        if let Some(path) = &self.file
            && let Err(error) = append_line(path, &line)
        {
            tracing::error!("audit checkpoint file {}: {error:#}", path.display());
        }
        if let Some(socket) = &self.syslog
            && let Err(error) = send_syslog(socket, &line)
        {
            tracing::error!("audit checkpoint to syslog {}: {error:#}", socket.display());
        }
    }
}

/// Appends one line and flushes it to disk.
fn append_line(path: &Path, line: &str) -> anyhow::Result<()> {
    let mut file = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .context("opening")?;
    file.write_all(format!("{line}\n").as_bytes())
        .context("writing")?;
    file.sync_data().context("syncing")?;
    Ok(())
}

/// One datagram to the local syslog socket (e.g. `/dev/log`): facility auth, severity info.
fn send_syslog(socket: &Path, line: &str) -> anyhow::Result<()> {
    let message = format!("<38>tether-hub[{}]: audit checkpoint {line}", std::process::id());
    let sender = std::os::unix::net::UnixDatagram::unbound().context("creating a socket")?;
    sender.send_to(message.as_bytes(), socket).context("sending")?;
    Ok(())
}

/// Loads the audit signing key from `path` (mode 0600, tightened if looser), creating it on
/// first start. Refuses the token signing key: a key that signs tokens for devices must not
/// also vouch for the audit log.
pub fn signing_key(path: &Path, token_key: &SigningKey) -> anyhow::Result<SigningKey> {
    let key = if path.exists() {
        let mode = fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                "the audit signing key {} was readable by others (mode {:o}); set to 0600",
                path.display(),
                mode & 0o777
            );
            fs::set_permissions(path, fs::Permissions::from_mode(0o600))
                .with_context(|| format!("restricting {}", path.display()))?;
        }
        let pem = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        SigningKey::from_pkcs8_pem(&pem)
            .map_err(|error| anyhow::anyhow!("the audit signing key {}: {error}", path.display()))?
    } else {
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            secrets::private_dir(parent)?;
        }
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        let key = SigningKey::from_bytes(&seed);
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|error| anyhow::anyhow!("encoding the audit signing key: {error}"))?;
        secrets::write_private(path, pem.as_bytes())?;
        tracing::info!("created the audit signing key {}", path.display());
        key
    };
    anyhow::ensure!(
        key.verifying_key() != token_key.verifying_key(),
        "the audit signing key {} is the token signing key; give the audit log a key of its own",
        path.display()
    );
    Ok(key)
}

/// Checkpoints at start, then every `audit_checkpoint_interval_secs` if the chain moved.
pub async fn run(state: std::sync::Arc<Hub>) {
    log_failure(state.checkpoints.checkpoint(&state.store, false).await);
    let interval = state.config.audit_checkpoint_interval_secs;
    if interval == 0 {
        return;
    }
    let mut ticker = tokio::time::interval(Duration::from_secs(interval));
    ticker.tick().await;
    loop {
        ticker.tick().await;
        log_failure(state.checkpoints.checkpoint(&state.store, true).await);
    }
}

/// A checkpoint that could not be made is an error in the log (the chain may be tampered with).
pub fn log_failure(result: anyhow::Result<Option<Statement>>) {
    if let Err(error) = result {
        tracing::error!("audit checkpoint: {error:#}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_created_private_kept_and_never_the_token_key() {
        let dir = std::env::temp_dir().join(format!("tether-audit-key-{}", std::process::id()));
        let path = dir.join("keys/audit-signing.key");
        let token_key = SigningKey::from_bytes(&[3; 32]);
        let created = signing_key(&path, &token_key).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let loaded = signing_key(&path, &token_key).unwrap();
        assert_eq!(
            loaded.verifying_key(),
            created.verifying_key(),
            "the same key on the next start"
        );
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600,
            "tightened"
        );

        let token_file = dir.join("signing.key");
        let pem = token_key.to_pkcs8_pem(LineEnding::LF).unwrap();
        fs::write(&token_file, pem.as_bytes()).unwrap();
        let error = signing_key(&token_file, &token_key).unwrap_err().to_string();
        assert!(error.contains("is the token signing key"), "{error}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
