//! `tether login` and `tether logout`: trading a password for a bearer token, storing it, and
//! giving it back.

use anyhow::{Result, bail};
use reqwest::StatusCode;
use tether_proto::api::{
    LoginRequest, LoginResponse,
    paths::{LOGIN_PATH, LOGOUT_PATH},
};

/// What the hub answers a login that lacks its second factor.
const CODE_REQUIRED: &str = "two-factor code required";

use crate::{
    api::{Api, HttpError},
    config::{self, Credentials},
    hub::{Hub, HubOptions},
    output::{say, tell},
    password,
};

pub async fn login(options: &HubOptions, user: &str, password_stdin: bool) -> Result<()> {
    let (dir, profile) = options.profile()?;
    let stored = config::load(&dir, &profile).ok().flatten();
    let hub = Hub::resolve(options, stored.as_ref())?;
    let password = if password_stdin {
        password::from_stdin()?
    } else {
        password::prompt_interruptible("Password: ").await?
    };
    let api = Api::new(&hub, None)?;
    let mut request = LoginRequest {
        username: user.to_owned(),
        password,
        code: None,
    };
    let mut answer = api.post(LOGIN_PATH, &request).await;
    if answer.as_ref().err().is_some_and(needs_code) {
        // The second step: a code from the authenticator app (or a recovery code).
        let code = if password_stdin {
            password::from_stdin().map_err(|_| {
                anyhow::anyhow!("two-factor code required: give it on the line after the password")
            })?
        } else {
            password::prompt_interruptible("Two-factor code: ").await?
        };
        request.code = Some(code);
        answer = api.post(LOGIN_PATH, &request).await;
    }
    let response: LoginResponse = match answer {
        Ok(response) => response,
        Err(error) => match error.downcast_ref::<HttpError>() {
            // Bad password or too many attempts: the hub's words are the whole story, and
            // "log in again" would be no advice at all here.
            Some(refusal)
                if matches!(
                    refusal.status,
                    StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS
                ) =>
            {
                bail!("{}", refusal.message)
            }
            _ => return Err(error),
        },
    };
    let credentials = Credentials {
        hub: hub.url.to_string(),
        ca: hub.ca.clone(),
        token: response.token,
        user: response.user.name.clone(),
        expires_at: response.expires_at,
    };
    config::save(&dir, &profile, &credentials)?;
    // Like kubectl's `config use-context`: the hub just logged in to is the one used next.
    config::set_current(&dir, Some(&profile))?;
    if profile == config::DEFAULT_PROFILE {
        tell!("Logged in to {} as {}.", hub.url, response.user.name);
    } else {
        tell!(
            "Logged in to {} as {} (profile {profile}).",
            hub.url,
            response.user.name
        );
    }
    Ok(())
}

/// Whether the hub asks for the second factor.
fn needs_code(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<HttpError>()
        .is_some_and(|refusal| refusal.status == StatusCode::UNAUTHORIZED && refusal.message == CODE_REQUIRED)
}

pub async fn logout(options: &HubOptions) -> Result<()> {
    let (dir, profile) = options.profile()?;
    let Some(stored) = config::load(&dir, &profile)? else {
        tell!("Not logged in.");
        return Ok(());
    };
    // Revoke the token on the hub it belongs to, whatever --hub says.
    let hub_options = HubOptions {
        hub: Some(stored.hub.clone()),
        ca: options.ca.clone(),
        profile: Some(profile.clone()),
    };
    let revoked = async {
        let hub = Hub::resolve(&hub_options, Some(&stored))?;
        Api::new(&hub, Some(stored.token.clone()))?
            .post_empty(LOGOUT_PATH)
            .await
    }
    .await;
    match revoked {
        Ok(()) => {}
        // An expired or revoked token is as logged out as it gets.
        Err(error)
            if error
                .downcast_ref::<HttpError>()
                .is_some_and(|refusal| refusal.status == StatusCode::UNAUTHORIZED) => {}
        // The local credentials go anyway: logging out must work with the hub unreachable.
        Err(error) => say!("tether: could not revoke the token on {}: {error:#}", stored.hub),
    }
    config::remove(&dir, &profile)?;
    tell!("Logged out.");
    Ok(())
}
