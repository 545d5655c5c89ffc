//! The hub's data directory and the secrets in it: created on first start, private (0700/0600).
//!
//! Layout: `hub.db` (SQLite), `tls/hub.crt` + `tls/hub.key` (self-signed unless configured),
//! `signing.key` (Ed25519, signs device tokens; replicas must share it).

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
