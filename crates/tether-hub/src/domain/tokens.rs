//! Tokens: device tokens are JWTs signed with the hub's Ed25519 key (stateless, so any replica
//! holding the key can check them); user session tokens are random strings stored hashed, so that
//! logging out or revoking takes effect at once.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use tether_proto::auth::DeviceClaims;

const JWT_HEADER: &str = r#"{"alg":"EdDSA","typ":"JWT"}"#;
const DEVICE_KIND: &str = "device";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("bad token signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("not a device token")]
    WrongKind,
}

pub struct TokenSigner {
    key: SigningKey,
}

impl TokenSigner {
    pub fn new(key: SigningKey) -> Self {
        TokenSigner { key }
    }

    pub fn issue_device_token(&self, device_id: &str, lifetime_secs: u64) -> String {
        let now = tether_proto::clock::unix_seconds();
        let claims = DeviceClaims {
            sub: device_id.to_owned(),
            iat: now,
            exp: now + lifetime_secs as i64,
            kind: DEVICE_KIND.to_owned(),
        };
        let payload = serde_json::to_vec(&claims).unwrap_or_default();
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(JWT_HEADER),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let signature = self.key.sign(signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    pub fn verify_device_token(&self, token: &str) -> Result<DeviceClaims, TokenError> {
        let (signed, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Malformed)?;
        let signature =
            ed25519_dalek::Signature::from_slice(&signature).map_err(|_| TokenError::Malformed)?;
        self.key
            .verifying_key()
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| TokenError::BadSignature)?;
        let (header, payload) = signed.split_once('.').ok_or(TokenError::Malformed)?;
        if URL_SAFE_NO_PAD.decode(header).ok().as_deref() != Some(JWT_HEADER.as_bytes()) {
            return Err(TokenError::Malformed);
        }
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?;
        let claims: DeviceClaims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if claims.kind != DEVICE_KIND {
            return Err(TokenError::WrongKind);
        }
        if claims.exp <= tether_proto::clock::unix_seconds() {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// The prefix of personal access tokens (`tts_` is a login session's).
pub const ACCESS_TOKEN_PREFIX: &str = "ttp_";

/// A new random user session token. The prefix tells token kinds apart in logs and scanners.
pub fn new_session_token() -> String {
    random_token("tts_")
}

/// A new random personal access token.
pub fn new_access_token() -> String {
    random_token(ACCESS_TOKEN_PREFIX)
}

/// The prefix of one-time enrolment tokens (the one-line install).
pub const ENROLMENT_TOKEN_PREFIX: &str = "tte_";

/// A new random enrolment token.
pub fn new_enrolment_token() -> String {
    random_token(ENROLMENT_TOKEN_PREFIX)
}

fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// What the database stores instead of a token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(seed: u8) -> TokenSigner {
        TokenSigner::new(SigningKey::from_bytes(&[seed; 32]))
    }

    #[test]
    fn device_tokens_verify_and_carry_the_device() {
        let token = signer(1).issue_device_token("dev-1", 60);
        assert_eq!(signer(1).verify_device_token(&token).unwrap().sub, "dev-1");
        assert_eq!(
            signer(2).verify_device_token(&token),
            Err(TokenError::BadSignature)
        );
        assert_eq!(signer(1).verify_device_token("a.b"), Err(TokenError::Malformed));
    }

    #[test]
    fn expired_tokens_are_refused() {
        let token = signer(1).issue_device_token("dev-1", 0);
        assert_eq!(signer(1).verify_device_token(&token), Err(TokenError::Expired));
    }

    #[test]
    fn tampered_claims_are_refused() {
        let token = signer(1).issue_device_token("dev-1", 60);
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"sub":"dev-2","iat":0,"exp":9999999999,"kind":"device"}"#);
        parts[1] = &forged;
        assert_eq!(
            signer(1).verify_device_token(&parts.join(".")),
            Err(TokenError::BadSignature)
        );
    }
}
