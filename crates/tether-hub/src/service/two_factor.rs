//! Two-factor authentication as use cases: checking a code (TOTP or a recovery code) for a
//! user, the second factor of a login, and sealing the stored secrets.

use crate::{
    domain::audit::{Actor, NewEvent, Object, Outcome},
    domain::failure::Failure,
    domain::tokens::hash_token,
    domain::two_factor,
    domain::user::UserRecord,
    service::{Hub, secret_box::SecretBox},
};

/// The message a login without its second factor gets (the CLI and web UI look for it).
pub const CODE_REQUIRED: &str = "two-factor code required";

/// Checks a TOTP code (once per time step) or a recovery code (once ever) of `user`.
/// `Ok(Err(why))` is a refused code.
pub async fn check_code(
    state: &Hub,
    user: &UserRecord,
    code: &str,
) -> Result<Result<(), &'static str>, Failure> {
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
            state.store.record_audit(event).await?;
            return Ok(Ok(()));
        }
        return Ok(Err("unknown or already used recovery code"));
    }
    let stored = state.store.two_factor(&user.id).await?;
    let Some(secret) = stored.secret else {
        return Ok(Err("two-factor authentication is not set up"));
    };
    let secret = plain_secret(state, user, &secret)?;
    let step = match two_factor::verify(
        &secret,
        code,
        tether_proto::clock::unix_seconds() as u64,
        stored.last_step.max(0) as u64,
    ) {
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
pub fn plain_secret(state: &Hub, user: &UserRecord, stored: &str) -> Result<String, Failure> {
    if !SecretBox::is_sealed(stored) {
        // Written by an older replica sharing the database; sealed at this hub's next start.
        tracing::warn!("the TOTP secret of user {} is stored in plaintext", user.name);
        return Ok(stored.to_owned());
    }
    state
        .secret_box
        .open(&user.id, stored)
        .map_err(|error| Failure::from(anyhow::anyhow!("the TOTP secret of user {}: {error}", user.name)))
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
    state: &Hub,
    user: &UserRecord,
    code: Option<&str>,
) -> Result<Option<(&'static str, bool)>, Failure> {
    if !state.store.two_factor(&user.id).await?.enabled {
        return Ok(None);
    }
    let Some(code) = code.filter(|c| !c.trim().is_empty()) else {
        return Ok(Some((CODE_REQUIRED, false)));
    };
    Ok(check_code(state, user, code).await?.err().map(|why| (why, true)))
}
