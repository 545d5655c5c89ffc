//! Two-factor authentication: enrolling a TOTP secret, confirming it (which yields the recovery
//! codes), disabling it, and the hub-wide setting that requires it.

use serde::{Deserialize, Serialize};

/// The answer to `POST /auth/2fa/enrol`: a new secret, not yet enabled.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TwoFactorEnrolment {
    /// Base32, for typing into an authenticator app.
    pub secret: String,
    /// `otpauth://totp/...`, for a QR code.
    pub otpauth_uri: String,
}

/// `POST /auth/2fa/confirm` and `/disable`: a current TOTP code (or, to disable, a recovery
/// code).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TwoFactorCode {
    pub code: String,
}

/// The answer to `POST /auth/2fa/confirm`: the recovery codes, each usable once, shown only here.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecoveryCodes {
    pub recovery_codes: Vec<String>,
}

/// `GET`/`PUT /settings/two-factor` (request and answer): whether every user must enrol.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TwoFactorSetting {
    pub required: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::testing::round_trip;

    #[test]
    fn the_two_factor_shapes_are_pinned() {
        round_trip::<TwoFactorEnrolment>(
            r#"{"secret":"JBSWY3DPEHPK3PXP","otpauth_uri":"otpauth://totp/Tether:alice?secret=JBSWY3DPEHPK3PXP&issuer=Tether"}"#,
        );
        round_trip::<TwoFactorCode>(r#"{"code":"123456"}"#);
        let codes: RecoveryCodes = round_trip(r#"{"recovery_codes":["aaaa-bbbb","cccc-dddd"]}"#);
        assert_eq!(codes.recovery_codes.len(), 2);
        round_trip::<TwoFactorSetting>(r#"{"required":true}"#);
    }
}
