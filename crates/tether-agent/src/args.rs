//! The command line, parsed by hand: five flags do not justify an argument-parsing library on a
//! device with little flash.

use std::path::PathBuf;

use anyhow::{anyhow, bail};

pub const USAGE: &str = "\
tether-agent: connects this device to a Tether hub and runs remote shells for its operators.

Usage: tether-agent [OPTIONS]
       tether-agent approve|deny SESSION [--config FILE] [--data-dir DIR]
       tether-agent pending [--config FILE] [--data-dir DIR]

Consent (when [consent] mode = \"command\"): `pending` lists the sessions waiting for a local
decision; `approve` or `deny` answers one.

Options:
  --config FILE            configuration file (default: /etc/tether/agent.toml if it exists)
  --hub URL                hub to connect to, https://host[:port]; repeat for fallbacks
                           (replaces `hubs` from the configuration file)
  --ca FILE                trust this CA or self-signed hub certificate (PEM)
  --data-dir DIR           where the device key and token live
                           (default: /var/lib/tether-agent as root,
                           else ~/.local/share/tether-agent)
  --provisioning-key KEY   shared secret that accepts this device on first contact
  --help                   print this help
  --version                print the version

Environment:
  TETHER_AGENT_LOG (or RUST_LOG)   log filter, e.g. debug (default: info); logs go to stderr
  HTTPS_PROXY, NO_PROXY            HTTP proxy used to reach the hub (CONNECT)
";

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Command {
    Run(Args),
    /// Answer a session waiting for consent (`true`: approve).
    Answer {
        sid: String,
        approve: bool,
        args: Args,
    },
    /// List the sessions waiting for consent.
    Pending(Args),
    Help,
    Version,
}

/// Flags that override the configuration file.
#[derive(Debug, Default, PartialEq)]
pub struct Args {
    pub config: Option<PathBuf>,
    pub hubs: Vec<String>,
    pub ca_file: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub provisioning_key: Option<String>,
}

/// Parses the arguments after the program name. Accepts `--flag value` and `--flag=value`.
pub fn parse(arguments: impl IntoIterator<Item = String>) -> anyhow::Result<Command> {
    let mut arguments = arguments.into_iter().peekable();
    let local = match arguments.peek().map(String::as_str) {
        Some(word @ ("approve" | "deny")) => {
            let approve = word == "approve";
            arguments.next();
            let sid = arguments.next().ok_or_else(|| {
                anyhow!(
                    "{} needs a SESSION id (see tether-agent pending)",
                    if approve { "approve" } else { "deny" }
                )
            })?;
            Some((Some(sid), approve))
        }
        Some("pending") => {
            arguments.next();
            Some((None, false))
        }
        _ => None,
    };
    let command = parse_flags(arguments)?;
    match (local, command) {
        (Some((Some(sid), approve)), Command::Run(args)) => Ok(Command::Answer { sid, approve, args }),
        (Some((None, _)), Command::Run(args)) => Ok(Command::Pending(args)),
        (_, command) => Ok(command),
    }
}

fn parse_flags(arguments: impl Iterator<Item = String>) -> anyhow::Result<Command> {
    let mut args = Args::default();
    let mut arguments = arguments;
    while let Some(argument) = arguments.next() {
        let (flag, inline_value) = match argument.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value.to_owned())),
            _ => (argument.clone(), None),
        };
        match flag.as_str() {
            "--help" | "-h" => return Ok(Command::Help),
            "--version" | "-V" => return Ok(Command::Version),
            "--config" | "--hub" | "--ca" | "--data-dir" | "--provisioning-key" => {}
            _ => bail!("unknown argument `{argument}` (see tether-agent --help)"),
        }
        let value = match inline_value {
            Some(value) => value,
            None => arguments
                .next()
                .ok_or_else(|| anyhow!("{flag} needs a value (see tether-agent --help)"))?,
        };
        match flag.as_str() {
            "--config" => args.config = Some(value.into()),
            "--hub" => args.hubs.push(value),
            "--ca" => args.ca_file = Some(value.into()),
            "--data-dir" => args.data_dir = Some(value.into()),
            _ => args.provisioning_key = Some(value),
        }
    }
    Ok(Command::Run(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(arguments: &[&str]) -> anyhow::Result<Command> {
        parse(arguments.iter().map(|s| s.to_string()))
    }

    #[test]
    fn flags_parse_in_both_forms() {
        let command = parse_strs(&[
            "--hub",
            "https://a",
            "--hub=https://b",
            "--ca",
            "ca.pem",
            "--data-dir=/d",
            "--provisioning-key",
            "k=v",
            "--config",
            "c.toml",
        ])
        .unwrap();
        assert_eq!(
            command,
            Command::Run(Args {
                config: Some("c.toml".into()),
                hubs: vec!["https://a".into(), "https://b".into()],
                ca_file: Some("ca.pem".into()),
                data_dir: Some("/d".into()),
                provisioning_key: Some("k=v".into()),
            })
        );
    }

    #[test]
    fn help_version_and_errors() {
        assert_eq!(parse_strs(&["--help"]).unwrap(), Command::Help);
        assert_eq!(parse_strs(&["--version"]).unwrap(), Command::Version);
        assert_eq!(parse_strs(&[]).unwrap(), Command::Run(Args::default()));
        let unknown = parse_strs(&["--hubs", "x"]).unwrap_err().to_string();
        assert!(unknown.contains("unknown argument `--hubs`"), "{unknown}");
        let missing = parse_strs(&["--hub"]).unwrap_err().to_string();
        assert!(missing.contains("--hub needs a value"), "{missing}");
        assert!(parse_strs(&["extra"]).is_err());
    }

    #[test]
    fn consent_commands() {
        assert_eq!(
            parse_strs(&["approve", "s-1", "--data-dir", "/d"]).unwrap(),
            Command::Answer {
                sid: "s-1".into(),
                approve: true,
                args: Args {
                    data_dir: Some("/d".into()),
                    ..Args::default()
                }
            }
        );
        assert!(matches!(
            parse_strs(&["deny", "s-1"]).unwrap(),
            Command::Answer { approve: false, .. }
        ));
        assert_eq!(
            parse_strs(&["pending"]).unwrap(),
            Command::Pending(Args::default())
        );
        assert!(parse_strs(&["approve"]).is_err());
    }
}
