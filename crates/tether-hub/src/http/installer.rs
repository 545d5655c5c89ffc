//! What the one-line install tells devices about the hub: the hub certificate's fingerprint and
//! public-key pin (read at start) and the agent binaries' SHA-256 (hashed on demand, cached). The
//! install handlers (`install.rs`) and enrolment-token creation (`install_tokens.rs`) read it
//! through `AppState`.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Mutex,
    time::SystemTime,
};

use anyhow::Context as _;
use axum::http::StatusCode;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use crate::http::error::ApiError;

/// What the hub tells installers about itself, and the binaries' hashes (cached by size and
/// modification time: the endpoints are open to anyone, so a request must not cost a hash of
/// every binary).
pub struct Installer {
    /// SHA-256 of the hub certificate (DER), hex: the agent's `hub_fingerprint`.
    pub certificate_fingerprint: String,
    /// SHA-256 of the certificate's public key (SubjectPublicKeyInfo DER), base64: curl's
    /// `--pinnedpubkey sha256//...`; or why the certificate could not be read for it (the hub
    /// still serves everything else).
    public_key_pin: Result<String, String>,
    agents_dir: PathBuf,
    hashes: Mutex<HashMap<PathBuf, (SystemTime, u64, String)>>,
}

impl Installer {
    /// Reads the hub's certificate (the first of the PEM chain).
    pub fn new(certificate_file: &Path, agents_dir: PathBuf) -> anyhow::Result<Installer> {
        use rustls::pki_types::{CertificateDer, pem::PemObject as _};
        let certificate = CertificateDer::pem_file_iter(certificate_file)
            .with_context(|| format!("reading {}", certificate_file.display()))?
            .next()
            .with_context(|| format!("no certificate in {}", certificate_file.display()))?
            .with_context(|| format!("parsing {}", certificate_file.display()))?;
        let public_key_pin = match webpki::EndEntityCert::try_from(&certificate) {
            Ok(parsed) => Ok(base64::engine::general_purpose::STANDARD
                .encode(Sha256::digest(parsed.subject_public_key_info().as_ref()))),
            Err(error) => {
                let why = format!(
                    "the public key of {} cannot be read ({error:?}), so the one-line install is unavailable",
                    certificate_file.display()
                );
                tracing::warn!("{why}");
                Err(why)
            }
        };
        Ok(Installer {
            certificate_fingerprint: hex::encode(Sha256::digest(certificate.as_ref())),
            public_key_pin,
            agents_dir,
            hashes: Mutex::new(HashMap::new()),
        })
    }

    /// The pin for curl, or a 503 saying why there is none.
    pub fn public_key_pin(&self) -> Result<&str, ApiError> {
        self.public_key_pin
            .as_deref()
            .map_err(|why| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, why.clone()))
    }

    pub(crate) fn binary_path(&self, architecture: &str) -> PathBuf {
        self.agents_dir.join(format!("tether-agent-{architecture}-linux"))
    }

    /// The SHA-256 (hex) of the binary for `architecture`, or None when agents_dir has none.
    pub(crate) async fn binary_hash(&self, architecture: &str) -> anyhow::Result<Option<String>> {
        let path = self.binary_path(architecture);
        let Ok(metadata) = tokio::fs::metadata(&path).await else {
            return Ok(None);
        };
        if !metadata.is_file() {
            return Ok(None);
        }
        let stamp = (metadata.modified()?, metadata.len());
        if let Some((modified, size, hash)) = self.hashes.lock().unwrap_or_else(|p| p.into_inner()).get(&path)
            && (*modified, *size) == stamp
        {
            return Ok(Some(hash.clone()));
        }
        let bytes = tokio::fs::read(&path)
            .await
            .with_context(|| format!("reading {}", path.display()))?;
        let hash = hex::encode(Sha256::digest(&bytes));
        self.hashes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path, (stamp.0, stamp.1, hash.clone()));
        Ok(Some(hash))
    }
}
