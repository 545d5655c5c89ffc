//! `tether 2fa ...`: enrolling a TOTP authenticator (the `otpauth://` URI and a QR code drawn in
//! the terminal), confirming it with a first code (which prints the recovery codes, once),
//! disabling it, and requiring it of every user (administrators).

use anyhow::Result;
use clap::Subcommand;
use tether_proto::api::{
    Empty, RecoveryCodes, TwoFactorCode, TwoFactorEnrolment, TwoFactorSetting,
    paths::{
        TWO_FACTOR_CONFIRM_PATH, TWO_FACTOR_DISABLE_PATH, TWO_FACTOR_ENROL_PATH, TWO_FACTOR_SETTING_PATH,
    },
};

use crate::{
    api::Api,
    output::{print_listing, tell},
};

pub const TWO_FACTOR_HELP: &str = "\
Enrol: `tether 2fa enrol`, scan the QR code (or type the secret) in an authenticator app, then
`tether 2fa confirm CODE` with the code it shows. Keep the recovery codes somewhere safe: each
works once, instead of a code, if the phone is lost. From then on `tether login` asks for a code.";

#[derive(Subcommand)]
pub enum TwoFactorCommand {
    /// Start an enrolment: prints the secret, its otpauth:// URI and a QR code
    Enrol {
        /// Print the secret and URI as JSON (no QR code)
        #[arg(long)]
        json: bool,
    },
    /// Finish the enrolment with a code from the app; prints the recovery codes once
    Confirm {
        code: String,
        /// Print the recovery codes as JSON
        #[arg(long)]
        json: bool,
    },
    /// Turn two-factor authentication off (needs a current code or a recovery code)
    Disable { code: String },
    /// Require every user to enrol a second factor before doing anything (administrators)
    Require {
        /// Stop requiring it
        #[arg(long)]
        off: bool,
    },
}

pub async fn run(api: &Api, command: TwoFactorCommand) -> Result<()> {
    match command {
        TwoFactorCommand::Enrol { json } => {
            let answer: TwoFactorEnrolment = api.post(TWO_FACTOR_ENROL_PATH, &Empty {}).await?;
            if json {
                return Ok(print_listing(&(serde_json::to_string_pretty(&answer)? + "\n"))?);
            }
            let uri = &answer.otpauth_uri;
            // The QR code is drawn here from block characters and newlines; only its text is foreign.
            print_listing(&format!("{}\n", qr_code(uri)))?;
            tell!("Secret: {}", answer.secret);
            tell!("URI:    {uri}");
            tell!("Then run `tether 2fa confirm CODE` with the code your app shows.");
        }
        TwoFactorCommand::Confirm { code, json } => {
            let answer: RecoveryCodes = api.post(TWO_FACTOR_CONFIRM_PATH, &TwoFactorCode { code }).await?;
            if json {
                return Ok(print_listing(&(serde_json::to_string_pretty(&answer)? + "\n"))?);
            }
            tell!("Two-factor authentication is on. Recovery codes (each works once; shown only now):");
            for code in &answer.recovery_codes {
                tell!("  {code}");
            }
        }
        TwoFactorCommand::Disable { code } => {
            api.post_no_content(TWO_FACTOR_DISABLE_PATH, &TwoFactorCode { code })
                .await?;
            tell!("Two-factor authentication is off.");
        }
        TwoFactorCommand::Require { off } => {
            let _: TwoFactorSetting = api
                .put(TWO_FACTOR_SETTING_PATH, &TwoFactorSetting { required: !off })
                .await?;
            if off {
                tell!("Two-factor authentication is optional again.");
            } else {
                tell!(
                    "Every user must now enrol a second factor (`tether 2fa enrol`) before doing anything."
                );
            }
        }
    }
    Ok(())
}

/// The URI as a QR code of Unicode half blocks (two modules per character cell, dark on light).
fn qr_code(text: &str) -> String {
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::unicode::Dense1x2>()
            .dark_color(qrcode::render::unicode::Dense1x2::Light)
            .light_color(qrcode::render::unicode::Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
        Err(error) => format!("(no QR code: {error})"),
    }
}
