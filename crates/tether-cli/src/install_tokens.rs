//! `tether devices install-command` and `tether devices install-tokens list|revoke`: one-time
//! enrolment tokens and the one-line install that uses them (see docs/operations.md,
//! "One-line install").

use anyhow::{Context as _, Result};
use clap::Subcommand;
use serde_json::Value;
use tether_proto::{
    api::{
        CreatedInstallToken, InstallToken, InstallTokenList, NewInstallToken,
        paths::{INSTALL_TOKENS_PATH, install_token_path, segment},
    },
    clock::unix_seconds,
};

use crate::{
    api::Api,
    hub::{HubOptions, authenticated},
    output::{self, print_listing, say, tell},
    tokens::{hub_integer, utc},
};

pub const INSTALL_COMMAND_HELP: &str = "\
Prints one line to paste on a device (as root): it downloads the install script from the hub,
which downloads the agent for the device's architecture, checks its SHA-256, writes
/etc/tether/agent.toml (0600) and starts the agent, which enrols with the one-time token.
Every download is pinned to the hub's public key (curl --pinnedpubkey); -k only lets curl accept
a self-signed hub certificate, the pin is still checked. Paste the line over a channel you trust:
the pin in it is what the device trusts.

DURATION (--expires) is a number with a unit: 90s, 30m, 12h, 30d, 2w (default 1 day).";

#[derive(Subcommand)]
pub enum InstallTokensCommand {
    /// List enrolment tokens (never their secret)
    List {
        /// Print the tokens as JSON
        #[arg(long)]
        json: bool,
    },
    /// Revoke an enrolment token: devices can no longer enrol with it
    Revoke {
        /// The token's id (from `tether devices install-tokens list`)
        id: String,
    },
}

/// The options of `tether devices install-command`.
pub struct InstallCommand {
    pub tags: Vec<String>,
    pub expires: Option<u64>,
    pub uses: Option<u64>,
    pub hub_url: Option<String>,
    pub json: bool,
}

/// Characters allowed in what goes into the printed shell line unquoted-safe (inside '...').
fn shell_safe(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/[]=,+".contains(c))
}

pub async fn install_command(options: &HubOptions, command: InstallCommand) -> Result<i32> {
    let login = authenticated(options)?;
    let hub_url = match &command.hub_url {
        Some(url) => tether_net::HubUrl::parse(url)
            .with_context(|| format!("--hub-url {url}"))?
            .to_string(),
        None => login.hub.url.to_string(),
    };
    let api = Api::new(&login.hub, Some(login.token))?;
    let request = NewInstallToken {
        tags: command.tags.clone(),
        expires_in_secs: command.expires.map(hub_integer),
        uses: command.uses.map(hub_integer),
    };
    let created: CreatedInstallToken = api.post(INSTALL_TOKENS_PATH, &request).await?;
    let mut line = format!(
        "curl -fsSL --proto '=https' --pinnedpubkey 'sha256//{}' -k '{hub_url}/install/agent.sh' | sh -s -- --token '{}'",
        created.public_key_pin, created.token
    );
    if !created.tags.is_empty() {
        line.push_str(&format!(" --tags '{}'", created.tags.join(",")));
    }
    for part in [&hub_url, &created.public_key_pin, &created.token] {
        anyhow::ensure!(
            shell_safe(part),
            "the hub answered {part:?}, which is not safe to print in a shell line"
        );
    }
    if command.json {
        let mut answer = serde_json::to_value(&created)?;
        answer["command"] = Value::String(line);
        print_listing(&(serde_json::to_string_pretty(&answer)? + "\n")).context("writing to stdout")?;
        return Ok(0);
    }
    tell!("{line}");
    say!(
        "Enrolment token {}: {} use(s), expires {}{}. Paste the line above on the device, as root.",
        created.id,
        created.max_uses,
        utc(created.expires_at),
        if created.tags.is_empty() {
            String::new()
        } else {
            format!(", tags {}", created.tags.join(","))
        }
    );
    Ok(0)
}

pub async fn run(options: &HubOptions, command: InstallTokensCommand) -> Result<i32> {
    let login = authenticated(options)?;
    let api = Api::new(&login.hub, Some(login.token))?;
    match command {
        InstallTokensCommand::List { json } => {
            let list: InstallTokenList = api.get(INSTALL_TOKENS_PATH).await?;
            let text = if json {
                serde_json::to_string_pretty(&list.install_tokens)? + "\n"
            } else {
                token_table(&list.install_tokens, unix_seconds())
            };
            print_listing(&text).context("writing to stdout")?;
        }
        InstallTokensCommand::Revoke { id } => {
            api.delete(&install_token_path(&segment(&id))).await?;
            tell!("Revoked enrolment token {id}.");
        }
    }
    Ok(0)
}

fn token_table(tokens: &[InstallToken], now: i64) -> String {
    let mut rows = vec![
        ["ID", "TAGS", "USES", "EXPIRES", "CREATED BY", "STATE"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for token in tokens {
        let state = if token.revoked_at.is_some() {
            "revoked"
        } else if token.expires_at <= now {
            "expired"
        } else if token.uses >= token.max_uses {
            "used up"
        } else {
            "active"
        };
        rows.push(vec![
            token.id.clone(),
            if token.tags.is_empty() {
                "-".to_owned()
            } else {
                token.tags.join(",")
            },
            format!("{}/{}", token.uses, token.max_uses),
            utc(token.expires_at),
            token.created_by.clone(),
            state.to_owned(),
        ]);
    }
    output::table(&rows, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_uses_and_state() {
        let token = |uses, revoked_at| InstallToken {
            id: "i1".into(),
            tags: vec!["site-a".into()],
            max_uses: 1,
            uses,
            created_by: "alice".into(),
            created_at: 0,
            expires_at: 86_400,
            last_used_at: None,
            revoked_at,
        };
        let text = token_table(&[token(0, None), token(1, None), token(0, Some(5))], 100);
        assert_eq!(
            text,
            "ID  TAGS    USES  EXPIRES                  CREATED BY  STATE\n\
             i1  site-a  0/1   1970-01-02 00:00:00 UTC  alice       active\n\
             i1  site-a  1/1   1970-01-02 00:00:00 UTC  alice       used up\n\
             i1  site-a  0/1   1970-01-02 00:00:00 UTC  alice       revoked\n"
        );
        assert!(!shell_safe("a'b"));
        assert!(shell_safe("https://[::1]:8443"));
    }
}
