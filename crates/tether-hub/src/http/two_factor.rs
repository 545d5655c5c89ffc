//! The two-factor API: enrolment (secret and `otpauth://` URI), confirmation with a code (which
//! enables it and issues recovery codes), disabling, the hub-wide "require 2FA" setting, and the
//! second step of a login.

use axum::{Json, extract::State, http::StatusCode};
use tether_proto::api;

use crate::{
    domain::audit::Object,
    domain::audit::RequestContext,
    domain::permissions::Action,
    domain::principal::Affected,
    domain::principal::Credential,
    domain::principal::Principal,
    domain::tokens::hash_token,
    domain::two_factor,
    domain::user::UserRecord,
    http::error::ApiError,
    http::extract::UserCaller,
    http::state::AppState,
    service::auth::permit,
    service::roles::access_changed,
    service::two_factor::{check_code, plain_secret},
    store::access::REQUIRE_TWO_FACTOR,
};

/// What the issuer of codes is called in authenticator apps.
const ISSUER: &str = "Tether";

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

#[utoipa::path(
    post,
    path = api::paths::TWO_FACTOR_ENROL_PATH,
    tag = "auth",
    responses((status = 200, description = "A new TOTP secret to confirm", body = api::TwoFactorEnrolment))
)]
pub async fn enrol(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
) -> Result<Json<api::TwoFactorEnrolment>, ApiError> {
    let user = session_user(&principal)?;
    if state.store.two_factor(&user.id).await?.enabled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "two-factor authentication is already enabled; disable it first to enrol again",
        ));
    }
    let secret = two_factor::new_secret();
    let object = Object::user(Some(&user.id), &user.name);
    crate::service::audit::record_success(
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
    let otpauth_uri = two_factor::otpauth_uri(ISSUER, &user.name, &secret);
    Ok(Json(api::TwoFactorEnrolment { secret, otpauth_uri }))
}

/// Confirms an enrolment with a first code: enables 2FA and returns the recovery codes (once).
#[utoipa::path(
    post,
    path = api::paths::TWO_FACTOR_CONFIRM_PATH,
    tag = "auth",
    request_body = api::TwoFactorCode,
    responses((status = 200, description = "Two-factor login is on; the recovery codes, shown once", body = api::RecoveryCodes))
)]
pub async fn confirm(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Json(body): Json<api::TwoFactorCode>,
) -> Result<Json<api::RecoveryCodes>, ApiError> {
    let user = session_user(&principal)?;
    let stored = state.store.two_factor(&user.id).await?;
    let Some(secret) = stored.secret.filter(|_| !stored.enabled) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no enrolment to confirm: start one with `tether 2fa enrol`",
        ));
    };
    let secret = plain_secret(&state, user, &secret)?;
    let step = two_factor::verify(&secret, &body.code, tether_proto::clock::unix_seconds() as u64, 0)
        .map_err(|why| ApiError::new(StatusCode::UNAUTHORIZED, why))?;
    let codes = two_factor::new_recovery_codes();
    let hashes: Vec<String> = codes.iter().map(|code| hash_token(code)).collect();
    let object = Object::user(Some(&user.id), &user.name);
    crate::service::audit::record_success(
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
    access_changed(&state, Affected::Users(vec![user.id.clone()]));
    Ok(Json(api::RecoveryCodes {
        recovery_codes: codes,
    }))
}

/// Disables 2FA, with a current code (or a recovery code) as proof.
#[utoipa::path(
    post,
    path = api::paths::TWO_FACTOR_DISABLE_PATH,
    tag = "auth",
    request_body = api::TwoFactorCode,
    responses((status = 204, description = "Done"))
)]
pub async fn disable(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Json(body): Json<api::TwoFactorCode>,
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
    crate::service::audit::record_success(
        &state,
        &principal,
        &context,
        "2fa.disable",
        object,
        serde_json::json!({}),
    )
    .await?;
    state.store.disable_two_factor(&user.id).await?;
    access_changed(&state, Affected::Users(vec![user.id.clone()]));
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = api::paths::TWO_FACTOR_SETTING_PATH,
    tag = "users",
    responses((status = 200, description = "Whether two-factor login is required", body = api::TwoFactorSetting))
)]
pub async fn setting(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
) -> Result<Json<api::TwoFactorSetting>, ApiError> {
    permit(&state, &principal, &context, Action::ManageUsers, None).await?;
    let required = state.store.setting(REQUIRE_TWO_FACTOR).await?.as_deref() == Some("true");
    Ok(Json(api::TwoFactorSetting { required }))
}

/// Requires (or stops requiring) every user to enrol a second factor before doing anything.
#[utoipa::path(
    put,
    path = api::paths::TWO_FACTOR_SETTING_PATH,
    tag = "users",
    request_body = api::TwoFactorSetting,
    responses((status = 200, description = "Whether two-factor login is required", body = api::TwoFactorSetting))
)]
pub async fn set_setting(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Json(body): Json<api::TwoFactorSetting>,
) -> Result<Json<api::TwoFactorSetting>, ApiError> {
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
    crate::service::audit::record_success(
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
    access_changed(&state, Affected::Everyone);
    Ok(Json(body))
}
