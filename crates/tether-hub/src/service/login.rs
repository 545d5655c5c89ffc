//! Logging in and out with a password: the throttle, the password and second-factor checks,
//! the login session and the audit events. Shared by the bearer login and the browser's.

use std::time::Duration;

use tether_proto::clock::unix_millis;

use crate::{
    domain::audit::Actor, domain::audit::NewEvent, domain::audit::Object, domain::audit::Outcome,
    domain::audit::RequestContext, domain::failure::Failure, domain::failure::Kind,
    domain::login_throttle::Throttled, domain::passwords, domain::principal::Credential,
    domain::principal::Principal, domain::tokens::hash_token, domain::tokens::new_session_token,
    domain::user::UserRecord, service::Hub,
};

/// A login that succeeded: the session token (shown once) and whose it is.
pub struct Login {
    pub token: String,
    /// Unix milliseconds.
    pub expires_at: i64,
    pub user: UserRecord,
}

/// Refuses a throttled login attempt (429, audited as a refused `login`).
async fn refuse_throttled(
    hub: &Hub,
    context: &RequestContext,
    object: Object,
    account: &str,
    throttled: Throttled,
) -> Failure {
    let message = throttled.message();
    tracing::warn!(
        "login of {account:?} from {} throttled: {message}",
        context.client
    );
    let event =
        NewEvent::new(context.actor(""), "login", object, Outcome::Refused).details(serde_json::json!({
            "reason": format!("too many failed logins for {}", throttled.whom),
            "retry_after_secs": throttled.wait.as_secs().max(1),
        }));
    match hub.store.record_audit(event).await {
        Ok(()) => Failure::new(Kind::TooManyRequests, message),
        Err(failure) => failure,
    }
}

/// Checks `username`'s password (and second factor), then opens a login session.
pub async fn login(
    hub: &Hub,
    context: &RequestContext,
    username: &str,
    password: &str,
    code: Option<&str>,
) -> Result<Login, Failure> {
    let client = context.client;
    let attempted = Object::user(None, username);
    if let Err(throttled) = hub.login_throttle.check_password(client.ip(), username) {
        return Err(refuse_throttled(hub, context, attempted, username, throttled).await);
    }

    let user = hub.store.user_by_name(username).await?;
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let password = password.to_owned();
    let valid = tokio::task::spawn_blocking(move || passwords::verify(&password, stored.as_deref()))
        .await
        .map_err(|e| anyhow::anyhow!("password check: {e}"))?;
    let user = match user {
        Some(user) if valid && !user.disabled => user,
        other => {
            hub.login_throttle.password_failed(client.ip(), username);
            tracing::warn!("failed login for {username:?} from {client}");
            let reason = match &other {
                Some(user) if user.disabled => "account disabled",
                Some(_) => "wrong password",
                None => "unknown user",
            };
            let object = Object::user(other.as_ref().map(|u| u.id.as_str()), username);
            let event = NewEvent::new(context.actor(""), "login", object, Outcome::Failure)
                .details(serde_json::json!({ "reason": reason }));
            hub.store.record_audit(event).await?;
            crate::metrics::metrics().auth_failed("password");
            return Err(Failure::new(Kind::Unauthorized, "invalid username or password"));
        }
    };
    if hub.store.two_factor(&user.id).await?.enabled {
        let object = Object::user(Some(&user.id), &user.name);
        if let Err(throttled) = hub.login_throttle.check_second_factor(&user.name) {
            return Err(refuse_throttled(hub, context, object, &user.name, throttled).await);
        }
    }
    if let Some((why, counts)) = crate::service::two_factor::second_factor(hub, &user, code).await? {
        if counts {
            hub.login_throttle.second_factor_failed(client.ip(), &user.name);
            tracing::warn!("failed second factor for {username:?} from {client}: {why}");
            let object = Object::user(Some(&user.id), &user.name);
            let event = NewEvent::new(context.actor(""), "login", object, Outcome::Failure)
                .details(serde_json::json!({ "reason": why }));
            hub.store.record_audit(event).await?;
            crate::metrics::metrics().auth_failed("second_factor");
        }
        return Err(Failure::new(Kind::Unauthorized, why));
    }
    hub.login_throttle.succeeded(client.ip(), &user.name);

    let token = new_session_token();
    let lifetime = Duration::from_secs(hub.config.session_lifetime_secs);
    let expires_at = unix_millis() + lifetime.as_millis() as i64;
    let principal = Principal::User {
        user: user.clone(),
        grants: hub.store.grants(&user).await?,
        credential: Credential::Session {
            token_hash: hash_token(&token),
        },
    };
    let event = NewEvent::new(
        Actor::principal(&principal, context),
        "login",
        Object::user(Some(&user.id), &user.name),
        Outcome::Success,
    );
    hub.store.record_audit(event).await?;
    hub.store
        .create_session(
            &hash_token(&token),
            &user.id,
            expires_at,
            &client.to_string(),
            context.user_agent.as_deref(),
        )
        .await?;
    tracing::info!("user {} logged in from {client}", user.name);
    Ok(Login {
        token,
        expires_at,
        user,
    })
}

/// Ends the login session `principal` came with (audited); other credentials are left alone.
pub async fn logout(hub: &Hub, principal: &Principal, context: &RequestContext) -> Result<(), Failure> {
    if let Principal::User {
        user,
        credential: Credential::Session { token_hash },
        ..
    } = principal
    {
        let event = NewEvent::new(
            Actor::principal(principal, context),
            "logout",
            Object::user(Some(&user.id), &user.name),
            Outcome::Success,
        );
        hub.store.record_audit(event).await?;
        hub.store.delete_session(token_hash).await?;
        tracing::info!("user {} logged out", user.name);
    }
    Ok(())
}
