//! Who this device is: its Ed25519 key (created on first start, kept in the data directory) and
//! the identity attributes shown to operators.

use std::{collections::BTreeMap, path::Path};

use anyhow::Context as _;
use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _};

use crate::state;

pub const KEY_FILE: &str = "device.key";

/// The device's Ed25519 key. It goes through `ring`, which TLS links anyway: a second Ed25519
/// implementation would cost the agent about 60 KB.
pub struct DeviceKey(Ed25519KeyPair);

impl DeviceKey {
    /// A key from a fixed seed (tests).
    #[cfg(test)]
    pub fn from_seed(seed: &[u8; 32]) -> DeviceKey {
        DeviceKey(Ed25519KeyPair::from_seed_unchecked(seed).expect("a 32-byte seed"))
    }

    /// Reads a PKCS#8 PEM key (version 1, as older agents wrote, or 2).
    fn from_pkcs8_pem(pem: &str) -> Option<DeviceKey> {
        let der = pem_decode(pem, "PRIVATE KEY")?;
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .ok()
            .map(DeviceKey)
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.0.sign(message).as_ref().to_vec()
    }

    /// The public key as SPKI PEM, the form the hub expects in an auth request.
    pub fn public_key_pem(&self) -> String {
        // SubjectPublicKeyInfo for Ed25519 (RFC 8410): a fixed 12-byte prefix, then the key.
        let mut der = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        der.extend_from_slice(self.0.public_key().as_ref());
        pem_encode(&der, "PUBLIC KEY")
    }
}

fn pem_encode(der: &[u8], label: &str) -> String {
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in text.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

fn pem_decode(pem: &str, label: &str) -> Option<Vec<u8>> {
    let body = pem
        .trim()
        .strip_prefix(&format!("-----BEGIN {label}-----"))?
        .strip_suffix(&format!("-----END {label}-----"))?;
    let text: String = body.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// Loads the device key from `data_dir`, creating it on first start. A corrupt key is moved
/// aside and replaced: the device then shows up on the hub as a new, pending device.
pub fn load_or_create_key(data_dir: &Path) -> anyhow::Result<DeviceKey> {
    let path = data_dir.join(KEY_FILE);
    if let Some(bytes) = state::read_optional(&path)
        .with_context(|| format!("cannot read the device key {}", path.display()))?
    {
        let parsed = std::str::from_utf8(&bytes)
            .ok()
            .and_then(DeviceKey::from_pkcs8_pem);
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
    let document = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
        .map_err(|_| anyhow::anyhow!("cannot create a device key: no system randomness"))?;
    let key = Ed25519KeyPair::from_pkcs8(document.as_ref())
        .map(DeviceKey)
        .map_err(|_| anyhow::anyhow!("cannot read back the new device key"))?;
    let pem = pem_encode(document.as_ref(), "PRIVATE KEY");
    state::write_atomic(&path, pem.as_bytes())
        .with_context(|| format!("cannot write the device key {}", path.display()))?;
    Ok(key)
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
        assert_eq!(key.public_key_pem(), again.public_key_pem());
        assert!(key.public_key_pem().starts_with("-----BEGIN PUBLIC KEY-----"));
    }

    /// Keys written by earlier agents (PKCS#8 version 1, RFC 8410's example key) still load, as
    /// the same device.
    #[test]
    fn version_1_keys_still_load() {
        let dir = TempDir::new("v1-key");
        let v1 = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";
        std::fs::write(dir.0.join(KEY_FILE), v1).unwrap();
        let key = load_or_create_key(&dir.0).unwrap();
        assert_eq!(
            key.public_key_pem(),
            "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n"
        );
        assert!(!dir.0.join("device.key.corrupt").exists());
    }

    #[test]
    fn corrupt_key_is_moved_aside_and_replaced() {
        let dir = TempDir::new("corrupt-key");
        let key = load_or_create_key(&dir.0).unwrap();
        let path = dir.0.join(KEY_FILE);
        let pem = std::fs::read(&path).unwrap();
        std::fs::write(&path, &pem[..pem.len() / 2]).unwrap();
        let replaced = load_or_create_key(&dir.0).unwrap();
        assert_ne!(key.public_key_pem(), replaced.public_key_pem());
        assert!(dir.0.join("device.key.corrupt").exists());
        assert_eq!(
            load_or_create_key(&dir.0).unwrap().public_key_pem(),
            replaced.public_key_pem()
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
