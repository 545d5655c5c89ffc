//! Device authentication: the signed auth request, and the device token it earns (kept in the
//! data directory, reused until it nears expiry).

use std::{path::PathBuf, sync::Arc, time::Duration};

use crate::identity::DeviceKey;
use base64::Engine as _;
use tether_net::{HubUrl, Proxy};
use tether_proto::auth::{
    AUTH_PATH, AuthRefusal, AuthRequest, DeviceClaims, SIGNATURE_HEADER, unverified_claims,
};
use tether_proto::clock::unix_seconds;

use crate::state;

pub const TOKEN_FILE: &str = "token";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// A token closer than this to its expiry is not worth connecting with.
const EXPIRY_MARGIN_SECS: i64 = 30;

/// Why the hub did not hand out a token.
#[derive(Debug)]
pub enum AuthError {
    /// The hub answered 401: the device is pending, rejected, or the provisioning key is wrong.
    Refused { status: String, error: String },
    /// Anything else: unreachable hub, TLS failure, bad request.
    Failed(String),
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::Refused { status, error } => {
                write!(f, "hub says: {error} (status {status})")
            }
            AuthError::Failed(reason) => write!(f, "authentication failed: {reason}"),
        }
    }
}

/// Everything needed to sign and send auth requests; shared by the connect loop and renewals.
pub struct Authenticator {
    key: DeviceKey,
    request_body: Vec<u8>,
    tls: Arc<rustls::ClientConfig>,
}

impl Authenticator {
    pub fn new(
        key: DeviceKey,
        pubkey_pem: String,
        id_data: String,
        provisioning_key: Option<String>,
        tls: Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<Authenticator> {
        let request = AuthRequest {
            id_data,
            pubkey: pubkey_pem,
            provisioning_key,
            enrolment_token: None,
            agent_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        };
        Ok(Authenticator {
            key,
            request_body: serde_json::to_vec(&request)?,
            tls,
        })
    }

    /// Sends a one-time enrolment token (the one-line install) with every request: the hub
    /// spends it only while this device is pending, and ignores it once the device is accepted.
    pub fn with_enrolment_token(mut self, token: Option<String>) -> anyhow::Result<Authenticator> {
        let mut request: AuthRequest = serde_json::from_slice(&self.request_body)?;
        request.enrolment_token = token;
        self.request_body = serde_json::to_vec(&request)?;
        Ok(self)
    }

    /// The body and its `X-MEN-Signature` value (base64 of the Ed25519 signature of the body).
    pub fn signed_request(&self) -> (&[u8], String) {
        let signature = self.key.sign(&self.request_body);
        let encoded = base64::engine::general_purpose::STANDARD.encode(signature);
        (&self.request_body, encoded)
    }

    /// Asks `hub` for a device token.
    pub async fn authenticate(&self, hub: &HubUrl) -> Result<String, AuthError> {
        let (body, signature) = self.signed_request();
        let proxy = Proxy::from_env(&hub.host);
        let headers = [
            (SIGNATURE_HEADER, signature.as_str()),
            ("Content-Type", "application/json"),
        ];
        let (status, response) = tether_net::http_request(
            hub,
            self.tls.clone(),
            proxy.as_ref(),
            "POST",
            AUTH_PATH,
            &headers,
            body,
            REQUEST_TIMEOUT,
        )
        .await
        .map_err(|error| AuthError::Failed(error.to_string()))?;
        interpret_response(status, &response)
    }
}

fn interpret_response(status: u16, body: &[u8]) -> Result<String, AuthError> {
    let text = String::from_utf8_lossy(body);
    match status {
        200 => {
            let token = text.trim();
            if unverified_claims::<DeviceClaims>(token).is_none() {
                return Err(AuthError::Failed(
                    "the hub answered 200 without a readable token".into(),
                ));
            }
            Ok(token.to_owned())
        }
        401 => Err(match serde_json::from_slice::<AuthRefusal>(body) {
            Ok(refusal) => AuthError::Refused {
                status: refusal.status,
                error: refusal.error,
            },
            Err(_) => AuthError::Refused {
                status: "unknown".into(),
                error: text.trim().to_owned(),
            },
        }),
        _ => Err(AuthError::Failed(format!(
            "hub answered HTTP {status}: {}",
            text.trim()
        ))),
    }
}

/// The device token and the file it is kept in.
pub struct TokenStore {
    path: PathBuf,
    current: Option<Token>,
}

/// A device token. Its lifetime (`exp - iat`) is the hub's; when it was received is ours: timing
/// renewals from the receipt keeps a device whose clock is off (common without an RTC) from
/// renewing in a loop or never.
#[derive(Debug, Clone)]
pub struct Token {
    pub text: String,
    pub claims: DeviceClaims,
    /// Unix seconds, local clock, when the token was received.
    pub received: i64,
}

impl Token {
    pub fn parse(text: &str, received: i64) -> Option<Token> {
        let text = text.trim();
        let claims = unverified_claims::<DeviceClaims>(text)?;
        Some(Token {
            text: text.to_owned(),
            claims,
            received,
        })
    }

    fn lifetime(&self) -> i64 {
        (self.claims.exp - self.claims.iat).max(0)
    }

    /// Still worth connecting with at `now` (Unix seconds).
    pub fn is_usable(&self, now: i64) -> bool {
        now >= self.received && now < self.received + self.lifetime() - EXPIRY_MARGIN_SECS
    }

    /// When to fetch a new token: once 3/4 of its lifetime has passed.
    pub fn renew_at(&self) -> i64 {
        self.received + self.lifetime() * 3 / 4
    }
}

impl TokenStore {
    /// Loads the stored token; a missing or unreadable one just means authenticating again.
    pub fn load(data_dir: &std::path::Path) -> TokenStore {
        let path = data_dir.join(TOKEN_FILE);
        let current = match state::read_optional(&path) {
            Ok(None) => None,
            Ok(Some(bytes)) => {
                let received = modified_unix_time(&path);
                let token = std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|text| Token::parse(text, received));
                if token.is_none() {
                    tracing::warn!(
                        "ignoring the unreadable token file {}; re-authenticating",
                        path.display()
                    );
                }
                token
            }
            Err(error) => {
                tracing::warn!("cannot read {}: {error}; re-authenticating", path.display());
                None
            }
        };
        TokenStore { path, current }
    }

    /// The stored token if it is still usable at `now` (Unix seconds).
    pub fn usable(&self, now: i64) -> Option<&Token> {
        self.current.as_ref().filter(|token| token.is_usable(now))
    }

    pub fn current(&self) -> Option<&Token> {
        self.current.as_ref()
    }

    /// Keeps a new token, in memory and on disk (a write failure is only logged: the token still
    /// works for this run).
    pub fn store(&mut self, text: &str) {
        let Some(token) = Token::parse(text, unix_seconds()) else {
            return;
        };
        if let Err(error) = state::write_atomic(&self.path, token.text.as_bytes()) {
            tracing::warn!("cannot save the device token to {}: {error}", self.path.display());
        }
        self.current = Some(token);
    }

    /// Forgets the token (the hub refused it).
    pub fn invalidate(&mut self) {
        self.current = None;
        let _ = std::fs::remove_file(&self.path);
    }
}

/// When a file was last written, in Unix seconds (0 if unknown: the token then looks expired).
fn modified_unix_time(path: &std::path::Path) -> i64 {
    std::fs::metadata(path)
        .and_then(|metadata| metadata.modified())
        .ok()
        .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::state::tests::TempDir;
    use ed25519_dalek::{Verifier as _, VerifyingKey, pkcs8::DecodePublicKey as _};

    /// An unsigned JWT with the given times (the agent never checks signatures).
    pub fn fake_token(iat: i64, exp: i64) -> String {
        let encode = |json: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        let claims = format!(r#"{{"sub":"device-1","iat":{iat},"exp":{exp},"kind":"device"}}"#);
        format!("{}.{}.c2ln", encode(r#"{"alg":"EdDSA"}"#), encode(&claims))
    }

    #[test]
    fn request_is_signed_over_the_exact_body() {
        let key = DeviceKey::from_seed(&[7; 32]);
        let pem = key.public_key_pem();
        let tls = tether_net::client_config(&Default::default()).unwrap();
        let authenticator = Authenticator::new(
            key,
            pem.clone(),
            r#"{"hostname":"h"}"#.into(),
            Some("k".into()),
            tls,
        )
        .unwrap();
        let (body, signature) = authenticator.signed_request();
        let request: AuthRequest = serde_json::from_slice(body).unwrap();
        assert_eq!(request.pubkey, pem);
        assert_eq!(request.provisioning_key.as_deref(), Some("k"));
        assert_eq!(request.agent_version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
        let verifying = VerifyingKey::from_public_key_pem(&request.pubkey).unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(signature)
            .unwrap();
        let signature = ed25519_dalek::Signature::from_slice(&bytes).unwrap();
        verifying.verify(body, &signature).unwrap();
    }

    #[test]
    fn responses_are_interpreted() {
        let token = fake_token(100, 200);
        assert_eq!(
            interpret_response(200, format!("{token}\n").as_bytes()).unwrap(),
            token
        );
        assert!(matches!(
            interpret_response(200, b"nonsense"),
            Err(AuthError::Failed(_))
        ));
        let refused = interpret_response(
            401,
            br#"{"error":"device is pending acceptance","status":"pending"}"#,
        );
        let Err(error) = refused else { panic!() };
        assert_eq!(
            error.to_string(),
            "hub says: device is pending acceptance (status pending)"
        );
        assert!(matches!(
            interpret_response(401, b"<html>"),
            Err(AuthError::Refused { .. })
        ));
        let Err(error) = interpret_response(400, br#"{"error":"bad signature"}"#) else {
            panic!()
        };
        assert!(error.to_string().contains("HTTP 400"), "{error}");
    }

    #[test]
    fn token_lifetime_rules() {
        let token = Token::parse(&fake_token(1000, 2000), 1000).unwrap();
        assert_eq!(token.renew_at(), 1750);
        assert!(token.is_usable(1900));
        assert!(!token.is_usable(1971));
        // The device clock is a day ahead of the hub's: the lifetime still counts from receipt.
        let skewed = Token::parse(&fake_token(1000, 2000), 87_400).unwrap();
        assert!(skewed.is_usable(87_500));
        assert_eq!(skewed.renew_at(), 88_150);
        assert!(
            !skewed.is_usable(80_000),
            "a clock that went back makes the token suspect"
        );
    }

    #[test]
    fn tokens_persist_and_corrupt_ones_are_ignored() {
        let dir = TempDir::new("token");
        let mut store = TokenStore::load(&dir.0);
        assert!(store.usable(0).is_none());
        let now = unix_seconds();
        store.store(&fake_token(now, now + 1000));
        let reloaded = TokenStore::load(&dir.0);
        assert_eq!(reloaded.usable(now + 10).unwrap().claims.exp, now + 1000);
        assert!(reloaded.usable(now + 990).is_none());
        std::fs::write(dir.0.join(TOKEN_FILE), b"eyJhbGci.garbage").unwrap();
        assert!(TokenStore::load(&dir.0).current().is_none());
        std::fs::write(dir.0.join(TOKEN_FILE), [0xff, 0xfe]).unwrap();
        assert!(TokenStore::load(&dir.0).current().is_none());
        let mut store = TokenStore::load(&dir.0);
        store.store(&fake_token(10, 1000));
        store.invalidate();
        assert!(!dir.0.join(TOKEN_FILE).exists());
    }
}
