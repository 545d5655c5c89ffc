//! `tether tokens ...`: personal access tokens for scripts and CI. A token carries a subset of
//! its user's permissions and an expiry; the hub shows its secret once, at creation.

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use tether_proto::api::{
    AccessToken, CreatedToken, NewToken, TokenList,
    paths::{TOKENS_PATH, segment, token_path, with_query},
};
use tether_proto::clock::unix_seconds;

use crate::{
    api::Api,
    hub::{HubOptions, authenticated},
    output::{print_listing, say, table, tell},
    time_text::{parse_duration_millis, utc_millis},
};

pub const TOKENS_HELP: &str = "\
A token acts for the user who created it, with at most the permissions it was given:
  view_devices, manage_devices, terminal, file_read, file_write, port_forward,
  view_audit, view_recordings, manage_users, approve_access
Use one with TETHER_TOKEN=ttp_... tether .... Creating a token needs a login (not a token).

DURATION (--expires) is a number with a unit: 90s, 30m, 12h, 30d, 2w, or combined: 1d12h
(default 30 days, at most a year).";

#[derive(Subcommand)]
pub enum TokensCommand {
    /// Create a token; its secret is printed once
    Create {
        /// A name to recognise the token by, e.g. ci
        #[arg(long)]
        name: String,
        /// A permission the token gets (repeat for several; default: all of yours)
        #[arg(long = "permission", value_name = "PERMISSION")]
        permissions: Vec<String>,
        /// How long the token is valid, e.g. 30d, 12h
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_secs)]
        expires: Option<u64>,
        /// Print the hub's answer as JSON
        #[arg(long)]
        json: bool,
    },
    /// List your tokens (or, as an administrator, another user's)
    List {
        /// List this user's tokens instead of yours (needs the right to manage users)
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// Print the tokens as JSON
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: it stops working at once, and sessions opened with it end. An
    /// administrator may revoke any user's token (ids from `tether tokens list --user NAME`)
    Revoke {
        /// The token's id (from `tether tokens list`)
        id: String,
    },
}

pub async fn run(options: &HubOptions, command: TokensCommand) -> Result<i32> {
    let login = authenticated(options)?;
    let api = Api::new(&login.hub, Some(login.token))?;
    match command {
        TokensCommand::Create {
            name,
            permissions,
            expires,
            json,
        } => create(&api, &name, &permissions, expires, json).await?,
        TokensCommand::List { user, json } => list(&api, user.as_deref(), json).await?,
        TokensCommand::Revoke { id } => {
            api.delete(&token_path(&segment(&id))).await?;
            tell!("Revoked token {id}.");
        }
    }
    Ok(0)
}

async fn create(
    api: &Api,
    name: &str,
    permissions: &[String],
    expires: Option<u64>,
    json: bool,
) -> Result<()> {
    let request = NewToken {
        name: name.to_owned(),
        permissions: (!permissions.is_empty()).then(|| permissions.to_vec()),
        expires_in_secs: expires.map(hub_integer),
    };
    let created: CreatedToken = api.post(TOKENS_PATH, &request).await?;
    if json {
        return print_listing(&(serde_json::to_string_pretty(&created)? + "\n")).context("writing to stdout");
    }
    tell!("Token: {}", created.token);
    tell!("Id: {}", created.id);
    tell!("Expires: {}", utc(created.expires_at));
    say!("The token is shown only this once: store it now (use it as TETHER_TOKEN).");
    Ok(())
}

async fn list(api: &Api, user: Option<&str>, json: bool) -> Result<()> {
    let pairs: Vec<(&str, &str)> = user.map(|name| ("user", name)).into_iter().collect();
    let list: TokenList = api.get(&with_query(TOKENS_PATH, &pairs)).await?;
    let text = if json {
        serde_json::to_string_pretty(&list.tokens)? + "\n"
    } else {
        token_table(&list.tokens, unix_seconds())
    };
    print_listing(&text).context("writing to stdout")
}

fn token_table(tokens: &[AccessToken], now: i64) -> String {
    let mut rows = vec![
        ["ID", "NAME", "PERMISSIONS", "EXPIRES", "LAST USED", "STATE"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for token in tokens {
        let state = if token.revoked {
            "revoked"
        } else if token.expires_at <= now {
            "expired"
        } else {
            "active"
        };
        rows.push(vec![
            token.id.clone(),
            token.name.clone(),
            if token.permissions.is_empty() {
                "-".to_owned()
            } else {
                token.permissions.join(",")
            },
            utc(token.expires_at),
            crate::devices::last_seen(token.last_used_at, now),
            state.to_owned(),
        ]);
    }
    table(&rows, None)
}

/// A count or duration the CLI parsed, as the hub's signed integer (the hub refuses what is
/// too large).
pub fn hub_integer(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(seconds: i64) -> String {
    format!("{} UTC", utc_millis(seconds.saturating_mul(1000)))
}

/// "90s", "30m", "12h", "30d", "2w", "1d12h" as seconds (a bare number is seconds).
pub fn parse_duration_secs(text: &str) -> Result<u64> {
    let text = text.trim();
    let parsed = text
        .parse::<u64>()
        .ok()
        .or_else(|| parse_duration_millis(text).and_then(|millis| u64::try_from(millis / 1000).ok()));
    match parsed {
        Some(0) => bail!("the duration must be longer than zero"),
        Some(seconds) => Ok(seconds),
        None => bail!("`{text}` is not a duration such as 30d, 12h or 1d12h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_to_seconds() {
        assert_eq!(parse_duration_secs("30d").unwrap(), 30 * 86_400);
        assert_eq!(parse_duration_secs("12h").unwrap(), 12 * 3600);
        assert_eq!(parse_duration_secs("1d12h").unwrap(), 36 * 3600);
        assert_eq!(parse_duration_secs("90").unwrap(), 90);
        assert!(parse_duration_secs("0d").is_err());
        assert!(parse_duration_secs("d").is_err());
        assert!(parse_duration_secs("3x").is_err());
        assert!(parse_duration_secs("").is_err());
    }

    #[test]
    fn the_token_table_shows_state_and_permissions() {
        let token = |revoked, expires_at| AccessToken {
            id: "t1".into(),
            name: "ci".into(),
            permissions: vec!["view_devices".into(), "terminal".into()],
            created_at: 0,
            expires_at,
            last_used_at: None,
            revoked,
        };
        let text = token_table(
            &[token(false, 86_400), token(true, 86_400), token(false, 50)],
            100,
        );
        assert_eq!(
            text,
            "ID  NAME  PERMISSIONS            EXPIRES                  LAST USED  STATE\n\
             t1  ci    view_devices,terminal  1970-01-02 00:00:00 UTC  never      active\n\
             t1  ci    view_devices,terminal  1970-01-02 00:00:00 UTC  never      revoked\n\
             t1  ci    view_devices,terminal  1970-01-01 00:00:50 UTC  never      expired\n"
        );
    }
}
