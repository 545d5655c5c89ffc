//! The public keys devices authenticate with: Ed25519 (tether-agent), and RSA or ECDSA P-256
//! (Mender clients, whose mender-connect signs with the Mender client's key), given as a PEM
//! SubjectPublicKeyInfo in an auth request.
//!
//! Each key has a stable identity string, the hub's `devices.public_key`: the same key
//! re-authenticating is the same device, however its PEM is wrapped. Ed25519 keys keep the
//! identity they always had (the 32 key bytes in hex), so existing devices are unchanged.

use base64::Engine as _;
use ed25519_dalek::{Verifier as _, VerifyingKey, pkcs8::DecodePublicKey as _};
use sha2::{Digest as _, Sha256};
use spki::{
    ObjectIdentifier, SubjectPublicKeyInfoRef,
    der::{Decode as _, Reader as _, SliceReader, asn1::UintRef},
};

/// RSA moduli smaller than this are refused: 1024-bit RSA is within reach of factoring.
pub const RSA_MIN_BITS: usize = 2048;
/// RSA moduli larger than this are refused: verification cost grows with the size, and anyone
/// can send an auth request (Mender's largest key is 4096 bits).
pub const RSA_MAX_BITS: usize = 4096;

const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// Names of algorithms and curves the hub refuses, for error messages.
const KNOWN_NAMES: &[(&str, &str)] = &[
    ("1.3.101.113", "Ed448"),
    ("1.3.101.110", "X25519"),
    ("1.3.101.111", "X448"),
    ("1.2.840.10040.4.1", "DSA"),
    ("1.2.840.113549.1.1.10", "RSASSA-PSS"),
    ("1.2.840.10046.2.1", "Diffie-Hellman"),
    ("1.3.132.0.34", "P-384"),
    ("1.3.132.0.35", "P-521"),
    ("1.3.132.0.10", "secp256k1"),
    ("1.3.36.3.3.2.8.1.1.7", "brainpoolP256r1"),
];

/// Why a device's key or signature is refused (the hub answers 400 with this text).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KeyError {
    #[error("pubkey is not a public key in SPKI PEM form (-----BEGIN PUBLIC KEY-----): {0}")]
    NotSpkiPem(String),
    #[error(
        "pubkey is a {0} key; devices authenticate with Ed25519, RSA (2048 to 4096 bits) or ECDSA P-256 keys"
    )]
    UnsupportedAlgorithm(String),
    #[error("pubkey is an ECDSA key on curve {0}; the only ECDSA curve accepted is P-256 (prime256v1)")]
    UnsupportedCurve(String),
    #[error("pubkey is an RSA key of {0} bits; RSA keys must have 2048 to 4096 bits")]
    RsaSize(usize),
    #[error("pubkey is not a valid {algorithm} public key: {why}")]
    Malformed { algorithm: &'static str, why: String },
    #[error("X-MEN-Signature is not an Ed25519 signature")]
    NotEd25519Signature,
    #[error("X-MEN-Signature is {actual} bytes; a signature by an RSA {bits}-bit key is {expected} bytes")]
    RsaSignatureLength {
        actual: usize,
        bits: usize,
        expected: usize,
    },
    #[error("signature does not match the request body and its public key")]
    Mismatch,
}

/// A device's public key, parsed and checked.
#[derive(Debug)]
pub enum DevicePublicKey {
    Ed25519(VerifyingKey),
    /// `public_key` is the DER `RSAPublicKey` (modulus and exponent), as ring takes it.
    Rsa {
        public_key: Vec<u8>,
        bits: usize,
    },
    /// The uncompressed point (`04 || x || y`).
    EcdsaP256 {
        point: Vec<u8>,
    },
}

impl DevicePublicKey {
    /// Parses a PEM SubjectPublicKeyInfo and checks that its algorithm (and size or curve) is one
    /// the hub accepts.
    pub fn from_pem(pem: &str) -> Result<DevicePublicKey, KeyError> {
        let der = pem_contents(pem)?;
        let info =
            SubjectPublicKeyInfoRef::from_der(&der).map_err(|e| KeyError::NotSpkiPem(e.to_string()))?;
        let algorithm = info.algorithm.oid;
        if algorithm == ED25519 {
            let key = VerifyingKey::from_public_key_der(&der).map_err(|e| KeyError::Malformed {
                algorithm: "Ed25519",
                why: e.to_string(),
            })?;
            return Ok(DevicePublicKey::Ed25519(key));
        }
        if algorithm != RSA_ENCRYPTION && algorithm != EC_PUBLIC_KEY {
            return Err(KeyError::UnsupportedAlgorithm(oid_name(&algorithm)));
        }
        let key_bytes = info
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| KeyError::Malformed {
                algorithm: if algorithm == RSA_ENCRYPTION {
                    "RSA"
                } else {
                    "ECDSA"
                },
                why: "the key's bit string is not whole bytes".into(),
            })?;
        if algorithm == RSA_ENCRYPTION {
            let bits = rsa_modulus_bits(key_bytes)?;
            if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
                return Err(KeyError::RsaSize(bits));
            }
            return Ok(DevicePublicKey::Rsa {
                public_key: key_bytes.to_vec(),
                bits,
            });
        }
        // What is left is an ECDSA key.
        let curve = info.algorithm.parameters_oid().map_err(|_| KeyError::Malformed {
            algorithm: "ECDSA",
            why: "the curve is not named by an OID (explicit curve parameters are not accepted)".into(),
        })?;
        if curve != P256 {
            return Err(KeyError::UnsupportedCurve(oid_name(&curve)));
        }
        // ring verifies against the uncompressed point only; openssl and Mender write that form.
        if key_bytes.len() != 65 || key_bytes[0] != 0x04 {
            return Err(KeyError::Malformed {
                algorithm: "ECDSA P-256",
                why: "the point must be uncompressed (65 bytes starting with 04)".into(),
            });
        }
        Ok(DevicePublicKey::EcdsaP256 {
            point: key_bytes.to_vec(),
        })
    }

    /// Checks `signature` (the decoded X-MEN-Signature) over the exact `body` bytes: Ed25519;
    /// RSA PKCS#1 v1.5 with SHA-256; ECDSA P-256 with SHA-256, signature in ASN.1 DER.
    pub fn verify(&self, body: &[u8], signature: &[u8]) -> Result<(), KeyError> {
        use ring::signature::{ECDSA_P256_SHA256_ASN1, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
        match self {
            DevicePublicKey::Ed25519(key) => {
                let signature = ed25519_dalek::Signature::from_slice(signature)
                    .map_err(|_| KeyError::NotEd25519Signature)?;
                key.verify(body, &signature).map_err(|_| KeyError::Mismatch)
            }
            DevicePublicKey::Rsa { public_key, bits } => {
                let expected = bits.div_ceil(8);
                if signature.len() != expected {
                    return Err(KeyError::RsaSignatureLength {
                        actual: signature.len(),
                        bits: *bits,
                        expected,
                    });
                }
                UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_key)
                    .verify(body, signature)
                    .map_err(|_| KeyError::Mismatch)
            }
            DevicePublicKey::EcdsaP256 { point } => UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point)
                .verify(body, signature)
                .map_err(|_| KeyError::Mismatch),
        }
    }

    /// The key's identity in the device table. Ed25519: the key in hex (as always); RSA:
    /// `rsa-sha256:` and the SHA-256 of the DER `RSAPublicKey` (DER is canonical, so one key has
    /// one identity); ECDSA: `ecdsa-p256:` and the uncompressed point in hex.
    pub fn identity(&self) -> String {
        match self {
            DevicePublicKey::Ed25519(key) => hex::encode(key.as_bytes()),
            DevicePublicKey::Rsa { public_key, .. } => {
                format!("rsa-sha256:{}", hex::encode(Sha256::digest(public_key)))
            }
            DevicePublicKey::EcdsaP256 { point } => format!("ecdsa-p256:{}", hex::encode(point)),
        }
    }

    /// The key type for logs and audit details, e.g. `RSA-3072`.
    pub fn kind(&self) -> String {
        match self {
            DevicePublicKey::Ed25519(_) => "Ed25519".into(),
            DevicePublicKey::Rsa { bits, .. } => format!("RSA-{bits}"),
            DevicePublicKey::EcdsaP256 { .. } => "ECDSA-P256".into(),
        }
    }
}

/// The DER inside a `PUBLIC KEY` PEM block. Lenient about line width and line endings (as Go's
/// encoding/pem, which Mender's server uses): the same key re-wrapped is still accepted.
fn pem_contents(pem: &str) -> Result<Vec<u8>, KeyError> {
    const BEGIN: &str = "-----BEGIN ";
    let not_pem = |why: &str| KeyError::NotSpkiPem(why.to_owned());
    let start = pem.find(BEGIN).ok_or_else(|| not_pem("no -----BEGIN line"))?;
    let rest = &pem[start + BEGIN.len()..];
    let label_end = rest
        .find("-----")
        .ok_or_else(|| not_pem("the -----BEGIN line is not closed"))?;
    let label = &rest[..label_end];
    if label != "PUBLIC KEY" {
        return Err(KeyError::NotSpkiPem(format!(
            "the PEM label is {label:?}, not \"PUBLIC KEY\""
        )));
    }
    let rest = &rest[label_end + "-----".len()..];
    let end = rest
        .find("-----END PUBLIC KEY-----")
        .ok_or_else(|| not_pem("no -----END PUBLIC KEY----- line"))?;
    let base64: String = rest[..end].chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(base64)
        .map_err(|e| KeyError::NotSpkiPem(format!("the PEM body is not base64: {e}")))
}

/// The bit length of the modulus of a DER `RSAPublicKey ::= SEQUENCE { modulus, publicExponent }`.
fn rsa_modulus_bits(der: &[u8]) -> Result<usize, KeyError> {
    let malformed = |why: String| KeyError::Malformed {
        algorithm: "RSA",
        why,
    };
    let mut reader = SliceReader::new(der).map_err(|e| malformed(e.to_string()))?;
    let modulus = reader
        .sequence(|inner| {
            let modulus = UintRef::decode(inner)?;
            UintRef::decode(inner)?;
            Ok(modulus)
        })
        .map_err(|e: spki::der::Error| malformed(e.to_string()))?;
    reader.finish().map_err(|e| malformed(e.to_string()))?;
    // UintRef strips the leading zero bytes, so the first byte is the most significant.
    let bytes = modulus.as_bytes();
    Ok(match bytes.first() {
        None => 0,
        Some(first) => bytes.len() * 8 - first.leading_zeros() as usize,
    })
}

/// A readable name for a refused algorithm or curve: its common name and OID, or the OID.
fn oid_name(oid: &ObjectIdentifier) -> String {
    let dotted = oid.to_string();
    match KNOWN_NAMES.iter().find(|(known, _)| *known == dotted) {
        Some((_, name)) => format!("{name} (OID {dotted})"),
        None => format!("OID {dotted}"),
    }
}

#[cfg(test)]
#[path = "device_key_tests.rs"]
mod tests;
