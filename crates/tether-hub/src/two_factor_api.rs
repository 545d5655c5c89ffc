//! The two-factor API: enrolment (secret and `otpauth://` URI), confirmation with a code (which
//! enables it and issues recovery codes), disabling, the hub-wide "require 2FA" setting, and the
//! second step of a login.

use axum::{Json, extract::State, http::StatusCode};
use serde::Deserialize;

use crate::{
    audit::{self, Actor, NewEvent, Object, Outcome, RequestContext},
    auth::{Action, Credential, Principal, UserCaller, permit},
    http_error::ApiError,
    roles_api::access_changed,
    secret_box::SecretBox,
    state::AppState,
    store::{UserRecord, now_millis},
    store_access::REQUIRE_TWO_FACTOR,
    tokens::hash_token,
    two_factor,
};

/// What the issuer of codes is called in authenticator apps.
const ISSUER: &str = "Tether";

/// The message a login without its second factor gets (the CLI and web UI look for it).
pub const CODE_REQUIRED: &str = "two-factor code required";

/// The user of a login session: enrolment is not something an access token may do.
fn session_user(principal: &Principal) -> Result<&UserRecord, ApiError> {
    match principal {
        Principal::User {
            user,
            credential: Credential::Session { .. },
            ..
        } => Ok(user),
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "two-factor settings need a login session, not an access token",
        )),
    }
}

fn unix_now() -> u64 {
    (now_millis() / 1000) as u64
}

pub async fn enrol(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = session_user(&principal)?;
    if state.store.two_factor(&user.id).await?.enabled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "two-factor authentication is already enabled; disable it first to enrol again",
        ));
    }
    let secret = two_factor::new_secret();
    let object = Object::user(Some(&user.id), &user.name);
    audit::record_success(
        &state,
        &principal,
        &context,
        "2fa.enrol",
        object,
        serde_json::json!({}),
    )
    .await?;
    let sealed = state.secret_box.seal(&user.id, &secret);
    state.store.set_two_factor_secret(&user.id, &sealed).await?;
    let uri = two_factor::otpauth_uri(ISSUER, &user.name, &secret);
    Ok(Json(serde_json::json!({ "secret": secret, "otpauth_uri": uri })))
}

#[derive(Deserialize)]
pub struct CodeBody {
    code: String,
}

/// Confirms an enrolment with a first code: enables 2FA and returns the recovery codes (once).
pub async fn confirm(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Json(body): Json<CodeBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = session_user(&principal)?;
    let stored = state.store.two_factor(&user.id).await?;
    let Some(secret) = stored.secret.filter(|_| !stored.enabled) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no enrolment to confirm: start one with `tether 2fa enrol`",
        ));
    };
    let secret = plain_secret(&state, user, &secret)?;
    let step = two_factor::verify(&secret, &body.code, unix_now(), 0)
        .map_err(|why| ApiError::new(StatusCode::UNAUTHORIZED, why))?;
    let codes = two_factor::new_recovery_codes();
    let hashes: Vec<String> = codes.iter().map(|code| hash_token(code)).collect();
    let object = Object::user(Some(&user.id), &user.name);
    audit::record_success(
        &state,
        &principal,
        &context,
        "2fa.enable",
        object,
        serde_json::json!({}),
    )
    .await?;
    state
        .store
        .enable_two_factor(&user.id, step as i64, &hashes)
        .await?;
    // A user held back by "2FA required" may act from now on.
    access_changed(&state, Some(&user.id));
    Ok(Json(serde_json::json!({ "recovery_codes": codes })))
}

/// Disables 2FA, with a current code (or a recovery code) as proof.
pub async fn disable(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Json(body): Json<CodeBody>,
) -> Result<StatusCode, ApiError> {
    let user = session_user(&principal)?.clone();
    if !state.store.two_factor(&user.id).await?.enabled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "two-factor authentication is not enabled",
        ));
    }
    if let Err(why) = check_code(&state, &user, &body.code).await? {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, why));
    }
    let object = Object::user(Some(&user.id), &user.name);
    audit::record_success(
        &state,
        &principal,
        &context,
        "2fa.disable",
        object,
        serde_json::json!({}),
    )
    .await?;
    state.store.disable_two_factor(&user.id).await?;
    access_changed(&state, Some(&user.id));
    Ok(StatusCode::NO_CONTENT)
}

/// Checks a TOTP code (once per time step) or a recovery code (once ever) of `user`.
/// `Ok(Err(why))` is a refused code.
pub async fn check_code(
    state: &AppState,
    user: &UserRecord,
    code: &str,
) -> Result<Result<(), &'static str>, ApiError> {
    if two_factor::is_recovery_code(code) {
        let used = state
            .store
            .use_recovery_code(&user.id, &hash_token(code.trim()))
            .await?;
        if used {
            let event = NewEvent::new(
                Actor::system(),
                "2fa.recovery_code",
                Object::user(Some(&user.id), &user.name),
                Outcome::Success,
            );
            audit::record(state, event).await?;
            return Ok(Ok(()));
        }
        return Ok(Err("unknown or already used recovery code"));
    }
    let stored = state.store.two_factor(&user.id).await?;
    let Some(secret) = stored.secret else {
        return Ok(Err("two-factor authentication is not set up"));
    };
    let secret = plain_secret(state, user, &secret)?;
    let step = match two_factor::verify(&secret, code, unix_now(), stored.last_step.max(0) as u64) {
        Ok(step) => step,
        Err(why) => return Ok(Err(why)),
    };
    if !state.store.accept_two_factor_step(&user.id, step as i64).await? {
        return Ok(Err("this two-factor code was already used"));
    }
    Ok(Ok(()))
}

/// The TOTP secret of `user` from its stored (sealed) form. A secret that does not open is an
/// internal error, logged with the cause: the code cannot be checked, so the login fails.
fn plain_secret(state: &AppState, user: &UserRecord, stored: &str) -> Result<String, ApiError> {
    if !SecretBox::is_sealed(stored) {
        // Written by an older replica sharing the database; sealed at this hub's next start.
        tracing::warn!("the TOTP secret of user {} is stored in plaintext", user.name);
        return Ok(stored.to_owned());
    }
    state
        .secret_box
        .open(&user.id, stored)
        .map_err(|error| ApiError::from(anyhow::anyhow!("the TOTP secret of user {}: {error}", user.name)))
}

/// At start: seals the TOTP secrets older hubs stored in plaintext, and checks that the sealed
/// ones open with this hub's key (a replica with another `encryption.key` would refuse every
/// second factor: it refuses to start instead, naming the file).
pub async fn seal_stored_secrets(
    store: &crate::store::Store,
    secret_box: &SecretBox,
    key_path: &std::path::Path,
) -> anyhow::Result<()> {
    let mut sealed = 0;
    for (user_id, name, stored) in store.two_factor_secrets().await? {
        if SecretBox::is_sealed(&stored) {
            secret_box.open(&user_id, &stored).map_err(|error| {
                anyhow::anyhow!(
                    "the TOTP secret of user {name} does not open with {}: {error}; replicas \
                     sharing a database must share this file (restore it from a backup)",
                    key_path.display()
                )
            })?;
            continue;
        }
        let new = secret_box.seal(&user_id, &stored);
        if store.replace_two_factor_secret(&user_id, &stored, &new).await? {
            sealed += 1;
        }
    }
    if sealed > 0 {
        tracing::info!("encrypted {sealed} TOTP secrets stored in plaintext");
    }
    Ok(())
}

/// The second step of a login: `None` when the user has no 2FA or the code is good; otherwise
/// the refusal (and whether it is a failure that counts towards the lockout).
pub async fn second_factor(
    state: &AppState,
    user: &UserRecord,
    code: Option<&str>,
) -> Result<Option<(&'static str, bool)>, ApiError> {
    if !state.store.two_factor(&user.id).await?.enabled {
        return Ok(None);
    }
    let Some(code) = code.filter(|c| !c.trim().is_empty()) else {
        return Ok(Some((CODE_REQUIRED, false)));
    };
    Ok(check_code(state, user, code).await?.err().map(|why| (why, true)))
}

#[derive(serde::Serialize, Deserialize)]
pub struct TwoFactorSetting {
    required: bool,
}

pub async fn setting(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
) -> Result<Json<TwoFactorSetting>, ApiError> {
    permit(&state, &principal, &context, Action::ManageUsers, None).await?;
    let required = state.store.setting(REQUIRE_TWO_FACTOR).await?.as_deref() == Some("true");
    Ok(Json(TwoFactorSetting { required }))
}

/// Requires (or stops requiring) every user to enrol a second factor before doing anything.
pub async fn set_setting(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Json(body): Json<TwoFactorSetting>,
) -> Result<Json<TwoFactorSetting>, ApiError> {
    permit(&state, &principal, &context, Action::ManageUsers, None).await?;
    // Requiring what one lacks would lock the administrator out along with everyone else.
    if body.required
        && let Principal::User { user, .. } = &principal
        && !state.store.two_factor(&user.id).await?.enabled
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "enrol your own second factor (`tether 2fa enrol`) before requiring it of everyone",
        ));
    }
    let object = Object {
        kind: Some("setting"),
        id: Some(REQUIRE_TWO_FACTOR.to_owned()),
        name: Some(REQUIRE_TWO_FACTOR.to_owned()),
    };
    let details = serde_json::json!({ "required": body.required });
    audit::record_success(
        &state,
        &principal,
        &context,
        "settings.two_factor",
        object,
        details,
    )
    .await?;
    state
        .store
        .set_setting(REQUIRE_TWO_FACTOR, if body.required { "true" } else { "false" })
        .await?;
    access_changed(&state, None);
    Ok(Json(body))
}
