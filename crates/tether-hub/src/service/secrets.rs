//! The hub's data directory and the secrets in it: created on first start, private (0700/0600).
//!
//! Layout: `hub.db` (SQLite), `tls/hub.crt` + `tls/hub.key` (self-signed unless configured),
//! `signing.key` (Ed25519, signs device tokens; replicas must share it), `encryption.key`
//! (seals TOTP secrets in the database, see `secret_box.rs`; replicas must share it),
//! `recordings/`.
//!
//! A data directory that already exists is made private too: whatever in it group or others
//! could reach (a directory made 0755 by hand or by a package, a `hub.db` created 0644 by an
//! older hub) is tightened at start, and the hub says so in its log. Tightening rather than
//! refusing: the hub is the only legitimate reader of these files, the fix is the same every
//! time, and refusing would turn an upgrade into an outage. Only when a file cannot be made
//! private (it belongs to another user) does the hub refuse to start, naming it.

use std::{
    fs,
    io::Write as _,
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use ed25519_dalek::{
    SigningKey,
    pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, spki::der::pem::LineEnding},
};
use rand::RngCore as _;

/// Creates `path` (and parents) with mode 0700 if missing.
pub fn private_dir(path: &Path) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("creating {}", path.display()))
}

/// The mode bits of group and others, removed from everything in the data directory.
const SHARED_BITS: u32 = 0o077;

/// Makes `data_dir` (created if missing) and everything in it private to the hub's user. Symbolic
/// links are not followed (what they point to is not the hub's).
pub fn secure_data_dir(data_dir: &Path) -> anyhow::Result<()> {
    private_dir(data_dir)?;
    let mut tightened = Vec::new();
    let metadata = fs::metadata(data_dir).with_context(|| format!("reading {}", data_dir.display()))?;
    make_private(data_dir, &metadata, &mut tightened)?;
    walk_private(data_dir, &mut tightened)?;
    const SHOWN: usize = 10;
    for (path, mode) in tightened.iter().take(SHOWN) {
        tracing::warn!(
            "{} was open to other users (mode {mode:04o}): made it private",
            path.display()
        );
    }
    if tightened.len() > SHOWN {
        tracing::warn!(
            "made {} more files in {} private",
            tightened.len() - SHOWN,
            data_dir.display()
        );
    }
    Ok(())
}

fn walk_private(dir: &Path, tightened: &mut Vec<(PathBuf, u32)>) -> anyhow::Result<()> {
    let entries = fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let path = entry.path();
        let metadata = fs::symlink_metadata(&path).with_context(|| format!("reading {}", path.display()))?;
        if metadata.file_type().is_symlink() {
            continue;
        }
        make_private(&path, &metadata, tightened)?;
        if metadata.is_dir() {
            walk_private(&path, tightened)?;
        }
    }
    Ok(())
}

fn make_private(
    path: &Path,
    metadata: &fs::Metadata,
    tightened: &mut Vec<(PathBuf, u32)>,
) -> anyhow::Result<()> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & SHARED_BITS == 0 {
        return Ok(());
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode & !SHARED_BITS)).with_context(|| {
        format!(
            "{} is open to other users (mode {mode:04o}, owner uid {}) and cannot be made private; \
             chmod go-rwx it, or run the hub as its owner",
            path.display(),
            metadata.uid()
        )
    })?;
    tightened.push((path.to_owned(), mode));
    Ok(())
}

/// Refuses a configured private key or token file (outside the data directory: not the hub's
/// to change) that every local user can read. A group may read it (e.g. `ssl-cert`).
pub fn check_key_not_public(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .permissions()
        .mode();
    anyhow::ensure!(
        mode & 0o004 == 0,
        "the secret file {} is readable by every local user (mode {:04o}): chmod o-rwx it",
        path.display(),
        mode & 0o7777
    );
    Ok(())
}

/// Writes a file readable by its owner only, atomically (temporary file, fsync, rename).
pub fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("creating {}", temporary.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    fs::rename(&temporary, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The hub's TLS material, PEM.
pub struct TlsFiles {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

/// Uses the configured certificate, or creates (once) a self-signed one for this host.
pub fn tls_files(data_dir: &Path, cert: Option<&Path>, key: Option<&Path>) -> anyhow::Result<TlsFiles> {
    match (cert, key) {
        (Some(certificate), Some(key)) => {
            check_key_not_public(key)?;
            return Ok(TlsFiles {
                certificate: certificate.to_owned(),
                key: key.to_owned(),
            });
        }
        (None, None) => {}
        _ => anyhow::bail!("tls_cert and tls_key must be given together"),
    }
    let dir = data_dir.join("tls");
    let files = TlsFiles {
        certificate: dir.join("hub.crt"),
        key: dir.join("hub.key"),
    };
    if files.certificate.exists() && files.key.exists() {
        return Ok(files);
    }
    private_dir(&dir)?;
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    if let Some(host) = hostname() {
        names.push(host);
    }
    let certified =
        rcgen::generate_simple_self_signed(names).context("generating a self-signed certificate")?;
    write_private(&files.key, certified.signing_key.serialize_pem().as_bytes())?;
    // The certificate is public: agents and CLIs are pointed at it.
    fs::write(&files.certificate, certified.cert.pem())?;
    tracing::info!("created a self-signed TLS certificate in {}", dir.display());
    Ok(files)
}

fn hostname() -> Option<String> {
    let name = fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// Loads the token-signing key, creating it on first start.
pub fn signing_key(data_dir: &Path) -> anyhow::Result<SigningKey> {
    let path = data_dir.join("signing.key");
    if path.exists() {
        let pem = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        return SigningKey::from_pkcs8_pem(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
    }
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let key = SigningKey::from_bytes(&seed);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("encoding signing key: {e}"))?;
    write_private(&path, pem.as_bytes())?;
    Ok(key)
}

/// The token Prometheus presents to scrape `/metrics`: read from `path`, or created there
/// (64 hex characters, mode 0600) at first start. A file others may read is refused.
pub fn metrics_token(path: &Path) -> anyhow::Result<String> {
    if path.exists() {
        check_key_not_public(path)?;
        let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let token = text.trim();
        anyhow::ensure!(
            token.len() >= 16,
            "{}: a metrics token must have at least 16 characters",
            path.display()
        );
        return Ok(token.to_owned());
    }
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = hex::encode(secret);
    write_private(path, format!("{token}\n").as_bytes())?;
    Ok(token)
}
