//! TLS trust for clients: system roots, a CA file, or a pinned SHA-256 certificate fingerprint.

use std::sync::Arc;

use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, ring},
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};
use sha2::{Digest, Sha256};

use crate::NetError;

/// What the client trusts. With neither field set, the system's root certificates.
#[derive(Debug, Clone, Default)]
pub struct TrustOptions {
    /// PEM file with the CA certificates (or the hub's self-signed certificate) to trust.
    pub ca_file: Option<String>,
    /// The hub certificate's SHA-256 fingerprint (hex, colons allowed, optional `sha256:`
    /// prefix). When set, exactly that certificate is accepted, whoever signed it.
    pub fingerprint: Option<String>,
}

/// The hex SHA-256 of a DER certificate, as the hub prints it.
pub fn sha256_fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// Builds the rustls client configuration for `trust`.
pub fn client_config(trust: &TrustOptions) -> Result<Arc<rustls::ClientConfig>, NetError> {
    let builder =
        rustls::ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let config = if let Some(fingerprint) = &trust.fingerprint {
        let expected = normalize_fingerprint(fingerprint)
            .ok_or_else(|| NetError::Url(fingerprint.clone(), "a fingerprint is 64 hex digits"))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCertificate {
                expected,
                provider: provider(),
            }))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match &trust.ca_file {
            Some(path) => {
                let certificates = CertificateDer::pem_file_iter(path)
                    .map_err(|_| NetError::NoCertificates(path.clone()))?
                    .filter_map(Result::ok);
                let (added, _) = roots.add_parsable_certificates(certificates);
                if added == 0 {
                    return Err(NetError::NoCertificates(path.clone()));
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

fn normalize_fingerprint(text: &str) -> Option<String> {
    let text = text.trim();
    let text = text.strip_prefix("sha256:").unwrap_or(text);
    let hex: String = text
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(hex)
}

/// Accepts exactly one certificate, by fingerprint; handshake signatures are still verified.
#[derive(Debug)]
struct PinnedCertificate {
    expected: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if sha256_fingerprint(end_entity) == self.expected {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "hub certificate does not match the pinned fingerprint".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_normalize() {
        let hex = "ab".repeat(32);
        let colons = hex
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(
            normalize_fingerprint(&format!("sha256:{}", colons.to_uppercase())),
            Some(hex)
        );
        assert_eq!(normalize_fingerprint("abc"), None);
    }
}
