//! Who this device is: its Ed25519 key (created on first start, kept in the data directory) and
//! the identity attributes shown to operators.

use std::{collections::BTreeMap, path::Path};

use anyhow::Context as _;
use ed25519_dalek::{
    SigningKey,
    pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, EncodePublicKey as _, spki::der::pem::LineEnding},
};
use rand::RngCore as _;

use crate::state;

pub const KEY_FILE: &str = "device.key";

/// Loads the device key from `data_dir`, creating it on first start. A corrupt key is moved
/// aside and replaced: the device then shows up on the hub as a new, pending device.
pub fn load_or_create_key(data_dir: &Path) -> anyhow::Result<SigningKey> {
    let path = data_dir.join(KEY_FILE);
    if let Some(bytes) = state::read_optional(&path)
        .with_context(|| format!("cannot read the device key {}", path.display()))?
    {
        let parsed = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|pem| SigningKey::from_pkcs8_pem(pem).ok());
        if let Some(key) = parsed {
            state::ensure_private_file(&path)?;
            return Ok(key);
        }
        let aside = data_dir.join(format!("{KEY_FILE}.corrupt"));
        std::fs::rename(&path, &aside)
            .with_context(|| format!("cannot move the corrupt key {} aside", path.display()))?;
        tracing::error!(
            "the device key {} is corrupt: moved it to {} and created a NEW key; \
             this device will appear on the hub as a new device waiting for acceptance",
            path.display(),
            aside.display()
        );
    } else {
        tracing::info!("creating the device key {}", path.display());
    }
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let key = SigningKey::from_bytes(&secret);
    secret.fill(0);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .context("cannot encode the device key")?;
    state::write_atomic(&path, pem.as_bytes())
        .with_context(|| format!("cannot write the device key {}", path.display()))?;
    Ok(key)
}

/// The public key as SPKI PEM, the form the hub expects in an auth request.
pub fn public_key_pem(key: &SigningKey) -> anyhow::Result<String> {
    key.verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .context("cannot encode the public key")
}

/// The identity attributes: the configured ones, else `hostname` and `machine_id` read from the
/// system (an attribute that cannot be read is left out).
pub fn attributes(configured: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
    if let Some(configured) = configured {
        return configured.clone();
    }
    let mut attributes = BTreeMap::new();
    match hostname() {
        Some(name) => drop(attributes.insert("hostname".to_owned(), name)),
        None => tracing::warn!("cannot read the hostname; it is left out of the identity"),
    }
    match machine_id() {
        Some(id) => drop(attributes.insert("machine_id".to_owned(), id)),
        None => tracing::warn!(
            "neither /etc/machine-id nor /var/lib/dbus/machine-id is readable; \
             machine_id is left out of the identity"
        ),
    }
    attributes
}

fn hostname() -> Option<String> {
    let mut buffer = [0u8; 256];
    // SAFETY: the pointer and length describe `buffer`, which outlives the call.
    let result = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    let from_call = (result == 0)
        .then(|| {
            let end = buffer.iter().position(|b| *b == 0).unwrap_or(buffer.len());
            String::from_utf8_lossy(&buffer[..end]).trim().to_owned()
        })
        .filter(|name| !name.is_empty());
    from_call.or_else(|| first_line("/etc/hostname"))
}

fn machine_id() -> Option<String> {
    first_line("/etc/machine-id").or_else(|| first_line("/var/lib/dbus/machine-id"))
}

fn first_line(path: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().next()?.trim();
    (!line.is_empty()).then(|| line.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::TempDir;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn key_is_created_once_private_and_reloaded() {
        let dir = TempDir::new("key");
        let key = load_or_create_key(&dir.0).unwrap();
        let path = dir.0.join(KEY_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = load_or_create_key(&dir.0).unwrap();
        assert_eq!(key.to_bytes(), again.to_bytes());
        assert!(
            public_key_pem(&key)
                .unwrap()
                .starts_with("-----BEGIN PUBLIC KEY-----")
        );
    }

    #[test]
    fn corrupt_key_is_moved_aside_and_replaced() {
        let dir = TempDir::new("corrupt-key");
        let key = load_or_create_key(&dir.0).unwrap();
        let path = dir.0.join(KEY_FILE);
        let pem = std::fs::read(&path).unwrap();
        std::fs::write(&path, &pem[..pem.len() / 2]).unwrap();
        let replaced = load_or_create_key(&dir.0).unwrap();
        assert_ne!(key.to_bytes(), replaced.to_bytes());
        assert!(dir.0.join("device.key.corrupt").exists());
        assert_eq!(
            load_or_create_key(&dir.0).unwrap().to_bytes(),
            replaced.to_bytes()
        );
    }

    #[test]
    fn configured_attributes_replace_the_system_ones() {
        let configured = BTreeMap::from([("serial".to_owned(), "A1".to_owned())]);
        assert_eq!(attributes(Some(&configured)), configured);
        let system = attributes(None);
        assert!(system.contains_key("hostname"));
    }
}
