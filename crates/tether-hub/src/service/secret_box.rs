//! Encryption at rest of the secrets the database must keep readable (TOTP secrets: codes are
//! checked against them, so they cannot be hashed like passwords).
//!
//! The key lives outside the database, in `DATA_DIR/encryption.key` (32 random bytes, hex, mode
//! 0600), so that a copy of `hub.db` (a backup, a PostgreSQL dump, a read-only SQL injection)
//! does not give away second factors. Replicas sharing a database share this file, like
//! `signing.key`. ChaCha20-Poly1305 from `ring` (already used by rustls); every value gets a
//! fresh random nonce, and the record it belongs to (the user id) is bound as associated data,
//! so a sealed value copied onto another user's row does not open.
//!
//! Stored form: `v1:` + base64(nonce ‖ ciphertext ‖ tag). Base32 TOTP secrets never contain
//! `:`, which tells sealed values from plaintext ones written by older hubs.

use std::{fs, path::Path};

use anyhow::Context as _;
use base64::{Engine as _, engine::general_purpose::STANDARD};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::service::secrets::write_private;

/// The key file's name in the data directory.
pub const KEY_FILE: &str = "encryption.key";
const PREFIX: &str = "v1:";
const KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SealError {
    #[error("not a sealed value")]
    NotSealed,
    #[error("the sealed value does not open with this hub's encryption.key (another key, or altered)")]
    WrongKey,
}

pub struct SecretBox {
    key: LessSafeKey,
}

impl SecretBox {
    pub fn from_bytes(bytes: &[u8; KEY_BYTES]) -> SecretBox {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes).expect("a 32-byte ChaCha20 key");
        SecretBox {
            key: LessSafeKey::new(unbound),
        }
    }

    /// Loads `DATA_DIR/encryption.key`, creating it on first start.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<SecretBox> {
        let path = data_dir.join(KEY_FILE);
        if path.exists() {
            let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let bytes: [u8; KEY_BYTES] = hex::decode(text.trim())
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .with_context(|| format!("{} is not {KEY_BYTES} bytes in hex", path.display()))?;
            return Ok(SecretBox::from_bytes(&bytes));
        }
        let bytes: [u8; KEY_BYTES] = rand::random();
        write_private(&path, format!("{}\n", hex::encode(bytes)).as_bytes())?;
        tracing::info!("created the database encryption key {}", path.display());
        Ok(SecretBox::from_bytes(&bytes))
    }

    /// Whether `stored` is a sealed value (rather than plaintext from an older hub).
    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(PREFIX)
    }

    /// Encrypts `plaintext`, bound to `record` (e.g. the user id).
    pub fn seal(&self, record: &str, plaintext: &str) -> String {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let mut buffer = plaintext.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(record.as_bytes()),
                &mut buffer,
            )
            .expect("sealing fits in memory");
        let mut sealed = nonce_bytes.to_vec();
        sealed.extend_from_slice(&buffer);
        format!("{PREFIX}{}", STANDARD.encode(sealed))
    }

    /// Decrypts a value sealed for `record`.
    pub fn open(&self, record: &str, stored: &str) -> Result<String, SealError> {
        let encoded = stored.strip_prefix(PREFIX).ok_or(SealError::NotSealed)?;
        let bytes = STANDARD.decode(encoded).map_err(|_| SealError::WrongKey)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::WrongKey);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::WrongKey)?;
        let mut buffer = ciphertext.to_vec();
        let plaintext = self
            .key
            .open_in_place(nonce, Aad::from(record.as_bytes()), &mut buffer)
            .map_err(|_| SealError::WrongKey)?;
        String::from_utf8(plaintext.to_vec()).map_err(|_| SealError::WrongKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_for_their_record_and_key() {
        let secret_box = SecretBox::from_bytes(&[7; KEY_BYTES]);
        let sealed = secret_box.seal("user-1", "JBSWY3DPEHPK3PXP");
        assert!(SecretBox::is_sealed(&sealed));
        assert!(!sealed.contains("JBSWY3DPEHPK3PXP"));
        assert_eq!(secret_box.open("user-1", &sealed).unwrap(), "JBSWY3DPEHPK3PXP");
        assert_ne!(
            sealed,
            secret_box.seal("user-1", "JBSWY3DPEHPK3PXP"),
            "fresh nonces"
        );
        assert_eq!(secret_box.open("user-2", &sealed), Err(SealError::WrongKey));
        let other = SecretBox::from_bytes(&[8; KEY_BYTES]);
        assert_eq!(other.open("user-1", &sealed), Err(SealError::WrongKey));
        assert_eq!(
            secret_box.open("user-1", "JBSWY3DPEHPK3PXP"),
            Err(SealError::NotSealed)
        );
    }

    #[test]
    fn the_key_file_is_created_once_and_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let first = SecretBox::load_or_create(dir.path()).unwrap();
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let sealed = first.seal("u", "s");
        let again = SecretBox::load_or_create(dir.path()).unwrap();
        assert_eq!(again.open("u", &sealed).unwrap(), "s");
    }
}
