//! Device keys made and used by the `openssl` command line, the way a Mender client's key is:
//! `openssl genpkey` makes it, `openssl dgst -sha256 -sign` signs auth requests with it. A
//! [`crate::FakeDevice`] holding one authenticates like a device running mender-connect.

use std::{
    io::Write as _,
    path::PathBuf,
    process::{Command, Stdio},
};

/// A private key in a temporary directory (removed on drop) and its public key, SPKI PEM.
pub struct OpensslKey {
    _directory: tempfile::TempDir,
    private_key: PathBuf,
    public_pem: String,
    /// What it is, for messages: e.g. `RSA 3072`.
    pub description: String,
}

impl OpensslKey {
    /// An RSA key of `bits` bits (Mender's default is 3072).
    pub fn rsa(bits: u32) -> OpensslKey {
        OpensslKey::generate(
            &format!("RSA {bits}"),
            &[
                "-algorithm",
                "RSA",
                "-pkeyopt",
                &format!("rsa_keygen_bits:{bits}"),
            ],
        )
    }

    /// An ECDSA key on `curve` (`P-256`, `P-384`...).
    pub fn ecdsa(curve: &str) -> OpensslKey {
        OpensslKey::generate(
            &format!("ECDSA {curve}"),
            &[
                "-algorithm",
                "EC",
                "-pkeyopt",
                &format!("ec_paramgen_curve:{curve}"),
            ],
        )
    }

    /// `openssl genpkey ARGS`, then `openssl pkey -pubout` for the public key.
    pub fn generate(description: &str, genpkey_arguments: &[&str]) -> OpensslKey {
        let directory = tempfile::tempdir().expect("temp dir for an openssl key");
        let private_key = directory.path().join("device.key");
        let mut arguments = vec!["genpkey"];
        arguments.extend_from_slice(genpkey_arguments);
        arguments.extend_from_slice(&["-out", private_key.to_str().expect("UTF-8 temp path")]);
        openssl(&arguments, None);
        let public_pem = openssl(&["pkey", "-in", private_key.to_str().unwrap(), "-pubout"], None);
        OpensslKey {
            _directory: directory,
            private_key,
            public_pem: String::from_utf8(public_pem).expect("PEM is ASCII"),
            description: description.to_owned(),
        }
    }

    /// The public key, SPKI PEM (`-----BEGIN PUBLIC KEY-----`), as a Mender client sends it.
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }

    /// The raw signature of `body`: `openssl dgst -sha256 -sign KEY` (PKCS#1 v1.5 for RSA,
    /// ASN.1 DER for ECDSA).
    pub fn sign(&self, body: &[u8]) -> Vec<u8> {
        openssl(
            &["dgst", "-sha256", "-sign", self.private_key.to_str().unwrap()],
            Some(body),
        )
    }
}

/// Runs `openssl ARGS` with `input` on its standard input; returns its standard output and
/// panics with its standard error if it fails.
fn openssl(arguments: &[&str], input: Option<&[u8]>) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(arguments)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run openssl (is the openssl command installed?): {e}"));
    if let Some(input) = input {
        // Auth request bodies are small: writing all before reading cannot fill the pipes.
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(input).expect("write to openssl");
    }
    let output = child.wait_with_output().expect("wait for openssl");
    assert!(
        output.status.success(),
        "openssl {} failed ({}): {}",
        arguments.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}
