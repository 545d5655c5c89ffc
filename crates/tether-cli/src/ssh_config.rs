//! `tether ssh-config [--user USER] [--port PORT]`: prints an `ssh_config` block through which
//! `ssh`, `scp`, `sftp`, `rsync -e ssh`, Ansible and VS Code Remote-SSH reach devices as
//! `NAME.tether`, each connection going through `tether proxy`.
//!
//! One wildcard block (`Host *.tether`) rather than a block per device: it needs no device list
//! when printed, so devices enrolled later work without printing it again, and a device the user
//! may not reach is refused by the hub when it is used, as for every other command. The
//! ProxyCommand is the running binary by its absolute path with the hub options it was started
//! with, and the stored login's directory and profile pinned, so that ssh, whatever its
//! environment (VS Code, Ansible), uses the same hub and login.

use std::path::Path;

use anyhow::{Context, Result};

use crate::{config, hub::HubOptions, output::say, proxy::SSH_SUFFIX, quoting::quote};

pub const SSH_CONFIG_HELP: &str = "\
Append the block to ~/.ssh/config (or save it and `Include` it), then: ssh root@NAME.tether,
scp FILE NAME.tether:/tmp/, sftp NAME.tether, rsync -a -e ssh DIR NAME.tether:/data/, an Ansible
inventory of NAME.tether hosts, or NAME.tether in VS Code Remote-SSH. NAME is a device name,
id or unique id prefix, as for every other command. Each connection is a `tether proxy NAME
PORT`: it needs a valid login (`tether login`), and the device's port_forward.allow must allow
127.0.0.1:PORT. Host keys are recorded under NAME.tether in known_hosts, one entry per device.";

/// What the command line asked for.
pub struct Request {
    pub user: Option<String>,
    pub port: Option<u16>,
}

/// Prints the block on stdout.
pub fn run(options: &HubOptions, request: &Request) -> Result<i32> {
    let program = std::env::current_exe().context("cannot find the path of the tether binary")?;
    let (config_dir, profile) = options.profile()?;
    let config_dir = std::path::absolute(config_dir).context("cannot resolve the configuration directory")?;
    let ca = match &options.ca {
        Some(path) => Some(
            std::path::absolute(path)
                .with_context(|| format!("cannot resolve the path {}", path.display()))?,
        ),
        None => None,
    };
    let setup = Setup {
        program: &program,
        config_dir: &config_dir,
        profile: &profile,
        hub: options.hub.as_deref(),
        ca: ca.as_deref(),
        token_in_environment: std::env::var_os("TETHER_TOKEN").is_some_and(|token| !token.is_empty()),
    };
    // Only a hint: the block is right whatever the login's state, which may change later.
    if matches!(config::load(&config_dir, &profile), Ok(None)) && !setup.token_in_environment {
        say!("tether: note: not logged in yet; run `tether login USER` before using ssh");
    }
    crate::output::print_listing(&block(&setup, request))?;
    Ok(0)
}

/// What the ProxyCommand must repeat of the running CLI's setup.
struct Setup<'a> {
    program: &'a Path,
    config_dir: &'a Path,
    /// Pinned, so that `tether profiles use` later does not move ssh to another hub.
    profile: &'a str,
    hub: Option<&'a str>,
    ca: Option<&'a Path>,
    token_in_environment: bool,
}

/// The `ssh_config` text.
fn block(setup: &Setup<'_>, request: &Request) -> String {
    let mut command = vec![
        "env".to_owned(),
        format!("TETHER_CONFIG_DIR={}", setup.config_dir.display()),
        format!("TETHER_PROFILE={}", setup.profile),
        setup.program.display().to_string(),
    ];
    if let Some(hub) = setup.hub {
        command.extend(["--hub".to_owned(), hub.to_owned()]);
    }
    if let Some(ca) = setup.ca {
        command.extend(["--ca".to_owned(), ca.display().to_string()]);
    }
    command.push("proxy".to_owned());
    // ssh runs the command with the user's shell and expands `%` tokens first: each word is
    // quoted for the shell, and a literal `%` doubled, before ssh's own tokens are added.
    let mut proxy_command: Vec<String> = command
        .iter()
        .map(|word| quote(word).replace('%', "%%"))
        .collect();
    proxy_command.extend(["%n".to_owned(), "%p".to_owned()]);

    let mut text = String::new();
    text.push_str("# Tether: devices as NAME.tether for ssh, scp, sftp, rsync, Ansible and VS Code.\n");
    text.push_str("# Printed by `tether ssh-config`: append it to ~/.ssh/config or Include it.\n");
    text.push_str("# Host keys are recorded under NAME.tether in known_hosts: one entry per device.\n");
    if setup.token_in_environment {
        text.push_str("# TETHER_TOKEN is not written here: ssh passes its own environment on,\n");
        text.push_str("# so set TETHER_TOKEN where ssh runs (or log in with `tether login`).\n");
    }
    text.push_str(&format!("Host *{SSH_SUFFIX}\n"));
    text.push_str(&format!("    ProxyCommand {}\n", proxy_command.join(" ")));
    // Bytes every minute: the agent closes a forward idle for port_forward.idle_timeout_secs
    // (10 minutes by default), which would end a quiet ssh session.
    text.push_str("    # traffic on quiet sessions: agents close forwards idle for 10 minutes by default\n");
    text.push_str("    ServerAliveInterval 60\n");
    if let Some(user) = &request.user {
        text.push_str(&format!("    User {user}\n"));
    }
    if let Some(port) = request.port {
        text.push_str(&format!("    Port {port}\n"));
    }
    text
}

/// `--user`: written as one `ssh_config` word, so nothing that would end or quote it.
pub fn parse_user(text: &str) -> Result<String, String> {
    let plain = !text.is_empty()
        && !text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '\\' | '#'));
    if plain {
        Ok(text.to_owned())
    } else {
        Err("a user name without spaces, quotes, `#` or control characters".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup<'a>(program: &'a Path, config_dir: &'a Path) -> Setup<'a> {
        Setup {
            program,
            config_dir,
            profile: "default",
            hub: None,
            ca: None,
            token_in_environment: false,
        }
    }

    #[test]
    fn a_plain_block_proxies_every_name_dot_tether() {
        let program = Path::new("/usr/bin/tether");
        let dir = Path::new("/home/op/.config/tether");
        let text = block(
            &setup(program, dir),
            &Request {
                user: None,
                port: None,
            },
        );
        assert!(text.contains("\nHost *.tether\n"), "{text}");
        assert!(
            text.contains(
                "    ProxyCommand env TETHER_CONFIG_DIR=/home/op/.config/tether TETHER_PROFILE=default \
                 /usr/bin/tether proxy %n %p\n"
            ),
            "{text}"
        );
        assert!(text.contains("\n    ServerAliveInterval 60\n"), "{text}");
        assert!(!text.contains("User "), "{text}");
        assert!(!text.contains("Port "), "{text}");
    }

    #[test]
    fn hub_options_user_and_port_are_carried() {
        let program = Path::new("/opt/my tools/tether");
        let dir = Path::new("/tmp/100%/cfg");
        let mut setup = setup(program, dir);
        setup.hub = Some("https://hub.example.com:8443");
        setup.profile = "lab-2";
        setup.ca = Some(Path::new("/etc/tether/hub.pem"));
        setup.token_in_environment = true;
        let request = Request {
            user: Some("root".into()),
            port: Some(2222),
        };
        let text = block(&setup, &request);
        assert!(
            text.contains(
                "    ProxyCommand env TETHER_CONFIG_DIR=/tmp/100%%/cfg TETHER_PROFILE=lab-2 '/opt/my tools/tether' \
                 --hub https://hub.example.com:8443 --ca /etc/tether/hub.pem proxy %n %p\n"
            ),
            "{text}"
        );
        assert!(text.contains("    User root\n"), "{text}");
        assert!(text.contains("    Port 2222\n"), "{text}");
        assert!(text.contains("TETHER_TOKEN is not written here"), "{text}");
    }

    #[test]
    fn a_user_name_must_stay_one_word() {
        assert_eq!(parse_user("root").as_deref(), Ok("root"));
        assert_eq!(parse_user("ops.team-1").as_deref(), Ok("ops.team-1"));
        for bad in ["", "a b", "a\"b", "it's", "x#y", "a\nb"] {
            assert!(parse_user(bad).is_err(), "{bad:?}");
        }
    }
}
