//! The one-line install: `GET /install/agent.sh` (a POSIX sh script that downloads, checks and
//! installs the agent) and `GET /install/agents/ARCH` (the agent binaries from `agents_dir`).
//!
//! Neither needs a login: the binaries are not secret, and the script only works with an
//! enrolment token (see `install_tokens.rs`). What makes the download trustworthy is in the
//! script: the hub's public-key pin (for curl's `--pinnedpubkey`) and the SHA-256 of each binary,
//! both from the [`Installer`](crate::http::installer::Installer); the script itself is fetched
//! with the same pin.

use axum::{
    extract::{Path as UrlPath, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};

use crate::{http::error::ApiError, http::state::AppState};

/// The architectures the script knows, as `scripts/build-agents` names them
/// (`tether-agent-ARCH-linux`).
pub const ARCHITECTURES: [&str; 3] = ["x86_64", "aarch64", "armv7"];

/// The script, with `@@NAME@@` placeholders filled in per request.
const SCRIPT_TEMPLATE: &str = include_str!("install_agent.sh");

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
