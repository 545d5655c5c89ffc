//! TOTP two-factor authentication (RFC 6238: HMAC-SHA1, 6 digits, 30-second steps), the
//! `otpauth://` URI authenticator apps read, and recovery codes. Pure functions: the hub stores
//! the secret, the last accepted step (so that no code is accepted twice) and hashed recovery
//! codes.

use hmac::{KeyInit, Mac};

const STEP_SECS: u64 = 30;
const DIGITS: u32 = 6;
/// Steps accepted either side of now, for clock drift between the phone and the hub.
const DRIFT_STEPS: u64 = 1;
const RECOVERY_CODES: usize = 10;

/// A new random 160-bit secret, base32 as authenticator apps expect.
pub fn new_secret() -> String {
    let bytes: [u8; 20] = rand::random();
    data_encoding::BASE32_NOPAD.encode(&bytes)
}

/// The code for time step `step` (HOTP of the step counter).
pub fn code_at(secret: &str, step: u64) -> Option<String> {
    let key = data_encoding::BASE32_NOPAD.decode(secret.as_bytes()).ok()?;
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(&key).ok()?;
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = (digest[digest.len() - 1] & 0x0f) as usize;
    let number = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    Some(format!(
        "{:0width$}",
        number % 10u32.pow(DIGITS),
        width = DIGITS as usize
    ))
}

/// The step of `code` if it is valid at `now` (Unix seconds) and later than `last_step`:
/// a code already used, or an older one, is refused (replay).
pub fn verify(secret: &str, code: &str, now: u64, last_step: u64) -> Result<u64, &'static str> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err("a two-factor code is 6 digits");
    }
    let current = now / STEP_SECS;
    for step in current.saturating_sub(DRIFT_STEPS)..=current + DRIFT_STEPS {
        if code_at(secret, step).as_deref() == Some(code) {
            if step <= last_step {
                return Err("this two-factor code was already used");
            }
            return Ok(step);
        }
    }
    Err("wrong two-factor code")
}

/// The URI an authenticator app enrols from (shown as a QR code).
pub fn otpauth_uri(issuer: &str, account: &str, secret: &str) -> String {
    let label = format!("{}:{}", encode(issuer), encode(account));
    format!(
        "otpauth://totp/{label}?secret={secret}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        encode(issuer)
    )
}

fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Whether `code` looks like a recovery code rather than a TOTP code.
pub fn is_recovery_code(code: &str) -> bool {
    code.trim().len() == 9 && code.trim().as_bytes()[4] == b'-'
}

/// New single-use recovery codes, `xxxx-xxxx` in lower-case base32.
pub fn new_recovery_codes() -> Vec<String> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let bytes: [u8; 5] = rand::random();
            let text = data_encoding::BASE32_NOPAD.encode(&bytes).to_lowercase();
            format!("{}-{}", &text[..4], &text[4..8])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B: the SHA-1 secret "12345678901234567890", 8-digit codes; the low
    /// 6 digits are the 6-digit codes.
    #[test]
    fn codes_match_the_rfc_test_vectors() {
        let secret = data_encoding::BASE32_NOPAD.encode(b"12345678901234567890");
        for (time, eight_digits) in [
            (59u64, "94287082"),
            (1111111109, "07081804"),
            (2000000000, "69279037"),
        ] {
            assert_eq!(code_at(&secret, time / STEP_SECS).unwrap(), &eight_digits[2..]);
        }
    }

    #[test]
    fn a_code_is_accepted_once() {
        let secret = new_secret();
        let now = 1_700_000_000;
        let code = code_at(&secret, now / STEP_SECS).unwrap();
        let step = verify(&secret, &code, now, 0).unwrap();
        assert_eq!(
            verify(&secret, &code, now, step),
            Err("this two-factor code was already used")
        );
        assert!(verify(&secret, "000000", now, 0).is_err() || code == "000000");
        assert_eq!(
            verify(&secret, "12345", now, 0),
            Err("a two-factor code is 6 digits")
        );
    }

    #[test]
    fn recovery_codes_look_like_recovery_codes() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        assert!(codes.iter().all(|c| is_recovery_code(c)));
        assert!(!is_recovery_code("123456"));
        assert!(
            otpauth_uri("Tether", "bob@hub", "ABC").starts_with("otpauth://totp/Tether:bob%40hub?secret=ABC")
        );
    }
}
