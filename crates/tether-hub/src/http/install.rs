//! The one-line install: `GET /install/agent.sh` (a POSIX sh script that downloads, checks and
//! installs the agent) and `GET /install/agents/ARCH` (the agent binaries from `agents_dir`).
//!
//! Neither needs a login: the binaries are not secret, and the script only works with an
//! enrolment token (see `install_tokens.rs`). What makes the download trustworthy is in the
//! script: the hub's public-key pin (for curl's `--pinnedpubkey`) and the SHA-256 of each binary,
//! both computed here; the script itself is fetched with the same pin.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Mutex,
    time::SystemTime,
};

use anyhow::Context as _;
use axum::{
    extract::{Path as UrlPath, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use crate::{http::error::ApiError, http::state::AppState};

/// The architectures the script knows, as `scripts/build-agents` names them
/// (`tether-agent-ARCH-linux`).
pub const ARCHITECTURES: [&str; 3] = ["x86_64", "aarch64", "armv7"];

/// The script, with `@@NAME@@` placeholders filled in per request.
const SCRIPT_TEMPLATE: &str = include_str!("install_agent.sh");

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

    fn binary_path(&self, architecture: &str) -> PathBuf {
        self.agents_dir.join(format!("tether-agent-{architecture}-linux"))
    }

    /// The SHA-256 (hex) of the binary for `architecture`, or None when agents_dir has none.
    async fn binary_hash(&self, architecture: &str) -> anyhow::Result<Option<String>> {
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

/// The hub's URL as the device reached it (the `Host` header), checked to be a plain host name
/// or address with an optional port, since it is written into a shell script.
fn hub_url(headers: &HeaderMap) -> Result<String, ApiError> {
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| ApiError::bad_request("the request has no Host header (needed for the hub URL)"))?;
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    if host.is_empty() || host.len() > 255 || !host.chars().all(allowed) {
        return Err(ApiError::bad_request(format!(
            "Host header {host:?} is not a host name or address with an optional port"
        )));
    }
    Ok(format!("https://{host}"))
}

/// `GET /install/agent.sh`.
pub async fn script(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let installer = &state.installer;
    let mut text = SCRIPT_TEMPLATE
        .replace("@@HUB_URL@@", &hub_url(&headers)?)
        .replace("@@PUBLIC_KEY_PIN@@", installer.public_key_pin()?)
        .replace("@@FINGERPRINT@@", &installer.certificate_fingerprint);
    for architecture in ARCHITECTURES {
        let hash = installer.binary_hash(architecture).await?.unwrap_or_default();
        text = text.replace(&format!("@@SHA256_{architecture}@@"), &hash);
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/x-shellscript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
        .into_response())
}

/// `GET /install/agents/{arch}`.
pub async fn agent_binary(
    State(state): State<AppState>,
    UrlPath(architecture): UrlPath<String>,
) -> Result<Response, ApiError> {
    if !ARCHITECTURES.contains(&architecture.as_str()) {
        return Err(ApiError::not_found(format!(
            "unknown architecture {architecture:?} (known: {})",
            ARCHITECTURES.join(", ")
        )));
    }
    let path = state.installer.binary_path(&architecture);
    let bytes = match tokio::fs::read(&path).await {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(
                "an installer asked for {}, which does not exist (agents_dir)",
                path.display()
            );
            return Err(ApiError::not_found(format!(
                "this hub has no agent for {architecture} (agents_dir)"
            )));
        }
        Err(error) => {
            return Err(anyhow::Error::new(error)
                .context(format!("reading {}", path.display()))
                .into());
        }
    };
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/octet-stream")],
        bytes,
    )
        .into_response())
}
