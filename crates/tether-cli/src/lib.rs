//! `tether`, the operator's command line for a Tether hub, as a library: the command-line
//! definition and dispatch live here ([`run_from_command_line`] is the whole program; `main.rs`
//! only calls it), each command in its own module.

mod access;
mod api;
mod audit;
mod audit_checkpoint;
mod audit_follow;
mod completion;
mod config;
mod devices;
mod escape;
mod exec;
mod failure;
mod files;
mod fleet_exec;
mod hub;
mod input;
mod install_tokens;
mod local_user;
mod login;
mod messages;
mod output;
mod password;
mod port_forward;
mod printable;
mod profiles;
mod proxy;
mod quoting;
mod raw_mode;
mod resolve;
mod roles;
mod session;
mod sessions;
mod ssh_config;
mod terminal;
mod time_text;
mod tokens;
mod two_factor;
mod users;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use clap_complete::engine::ArgValueCompleter;
use tether_proto::api::Device;

use crate::{
    api::{Api, authenticated_api},
    completion::Devices,
    devices::Decision,
    hub::{HubOptions, authenticated},
    output::say,
    session::Session,
};

const ENVIRONMENT_HELP: &str = "\
Environment:
  TETHER_HUB         hub URL (instead of --hub)
  TETHER_CA          PEM file to trust (instead of --ca)
  TETHER_TOKEN       bearer token to use instead of the stored login
  TETHER_PROFILE     the stored login to use (instead of --profile)
  TETHER_CONFIG_DIR  where the login is stored (default $XDG_CONFIG_HOME/tether
                     or $HOME/.config/tether)
  HTTPS_PROXY        HTTP proxy to reach the hub through (NO_PROXY honoured)
  TETHER_LOG         diagnostics filter, e.g. debug";

const DEVICE_HELP: &str = "DEVICE is a device id, a unique id prefix, or a device name.";

const TERMINAL_HELP: &str = "\
DEVICE is a device id, a unique id prefix, or a device name. USER@DEVICE asks for a shell as the
local user USER, which the device allows when its terminal.allowed_users lists USER (needs a
tether-agent; a device named exactly USER@DEVICE is meant first).

Escape sequences (typed at the start of a line, like ssh):
  ~.   disconnect
  ~~   send a literal ~

On a tether-agent the shell survives lost connections: the terminal shows \"reconnecting…\" and
re-attaches by itself, replaying the output it missed. A shell left behind (the laptop went to
sleep) is kept by the device for its grace period (5 minutes by default): list it with
`tether sessions detached`, re-attach with `tether terminal DEVICE --attach SESSION`.

Without a terminal on stdin, stdin is piped to the shell (end of input is sent as Ctrl-D)
and the shell's output is written to stdout.";

const EXEC_HELP: &str = "\
DEVICE is a device id, a unique id prefix, or a device name. USER@DEVICE runs the command as the
local user USER, which the device allows when its terminal.allowed_users lists USER (a device
named exactly USER@DEVICE is meant first).

Several COMMAND words are quoted for the device's shell, so `-- sh -c 'echo $HOME'` runs as
typed; a single word is passed as-is, so `-- 'echo a | wc -c'` runs a pipeline. Exits with
the command's exit status, or 255 if the connection to the hub failed. The command's stdin
is closed; its stdout and stderr both arrive on stdout. Needs a tether-agent on the device
(protocol version 2).";

const PORT_FORWARD_HELP: &str = "\
DEVICE is a device id, a unique id prefix, or a device name.

MAPPING is [tcp/|udp/]LOCAL_PORT[:[REMOTE_HOST:]REMOTE_PORT]: REMOTE_PORT defaults to
LOCAL_PORT, REMOTE_HOST to 127.0.0.1 (the device itself); write IPv6 hosts in brackets,
e.g. 8080:[::1]:80. Several mappings share one session. Runs until Ctrl-C; reconnects when
the connection to the hub is lost (open connections are closed then).";

const CP_HELP: &str = "\
DEVICE:PATH names a file on a device (DEVICE: id, unique id prefix, or name); anything else is
local (write a local path containing ':' as ./a:b). `tether cp f DEVICE:/data/` copies into
the directory. Downloads keep the remote mode and mtime; uploads send the local mode (the
device decides the owner). With a tether-agent (protocol version 2) transfers are checked with
sha256 and resume after a dropped connection.";

const LS_HELP: &str = "\
Columns: mode, uid, gid, size, modification time (UTC), name. Listing a directory needs a
tether-agent (protocol version 2).";

/// Remote access to devices through a Tether hub.
#[derive(Parser)]
#[command(name = "tether", version, after_help = ENVIRONMENT_HELP)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct GlobalArgs {
    /// Hub URL, e.g. https://hub.example.com (default: the hub you logged in to)
    #[arg(long, global = true, env = "TETHER_HUB", value_name = "URL")]
    hub: Option<String>,
    /// PEM file with the certificate(s) to trust for the hub, e.g. its self-signed certificate
    #[arg(long, global = true, env = "TETHER_CA", value_name = "FILE")]
    ca: Option<PathBuf>,
    /// The stored login (profile) to use (default: the current one; see `tether profiles`)
    #[arg(long, global = true, env = "TETHER_PROFILE", value_name = "NAME",
          value_parser = config::parse_profile_name)]
    profile: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Log in to the hub and store the token
    Login {
        /// User name
        user: String,
        /// Read the password from the first line of stdin instead of prompting
        #[arg(long)]
        password_stdin: bool,
    },
    /// Revoke the stored token and delete it
    Logout,
    /// List the stored logins (profiles, one per hub) and choose the current one
    #[command(subcommand, after_help = profiles::PROFILES_HELP)]
    Profiles(profiles::ProfilesCommand),
    /// Print the shell completion script for bash, zsh or fish
    #[command(after_help = completion::COMPLETIONS_HELP)]
    Completions {
        #[arg(value_enum)]
        shell: completion::Shell,
    },
    /// Print the tether(1) man page, or write one page per command into a directory
    Man {
        /// Write tether.1, tether-login.1, … into DIR instead
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// List and manage devices
    #[command(subcommand)]
    Devices(DevicesCommand),
    /// Open an interactive shell on a device
    #[command(after_help = TERMINAL_HELP)]
    Terminal {
        /// Device id, unique id prefix, or name; USER@DEVICE for a local user
        #[arg(add = ArgValueCompleter::new(Devices::Accepted))]
        device: String,
        /// Re-attach to a shell left running on the device (see `tether sessions detached`)
        #[arg(long, value_name = "SESSION")]
        attach: Option<String>,
    },
    /// Run one command on a device (or on every device of a group) and exit with its status
    #[command(
        after_help = format!("{EXEC_HELP}\n\n{}", fleet_exec::FLEET_HELP),
        override_usage = "tether exec [OPTIONS] <DEVICE> -- <COMMAND>...\n       \
                          tether exec [OPTIONS] --group <GROUP> -- <COMMAND>...",
        // `exec --group G -- COMMAND...`: without DEVICE, the words after `--` are the command.
        allow_missing_positional = true
    )]
    Exec {
        /// Device id, unique id prefix, or name; USER@DEVICE for a local user
        #[arg(required_unless_present = "group", conflicts_with = "group")]
        #[arg(add = ArgValueCompleter::new(Devices::Accepted))]
        device: Option<String>,
        #[command(flatten)]
        fleet: fleet_exec::FleetArgs,
        /// The command and its arguments (after `--`)
        #[arg(
            required = true,
            num_args = 1..,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "COMMAND"
        )]
        command: Vec<String>,
    },
    /// Forward local TCP/UDP ports to targets reached from a device
    #[command(
        name = "port-forward",
        after_help = PORT_FORWARD_HELP,
        override_usage = "tether port-forward [OPTIONS] <DEVICE> <MAPPING>..."
    )]
    PortForward {
        /// Device id, unique id prefix, or name
        #[arg(add = ArgValueCompleter::new(Devices::Accepted))]
        device: String,
        /// [tcp/|udp/]LOCAL_PORT[:[REMOTE_HOST:]REMOTE_PORT], e.g. 8022:22, udp/5353:53
        #[arg(required = true, value_name = "MAPPING", value_parser = port_forward::parse_mapping)]
        mappings: Vec<port_forward::Mapping>,
        /// Local address to listen on
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
        bind: std::net::IpAddr,
        /// Log each connection (open, close, byte counts) to stderr
        #[arg(short, long)]
        verbose: bool,
    },
    /// Connect stdin and stdout to a TCP port reached from a device (ssh's ProxyCommand)
    #[command(after_help = proxy::PROXY_HELP)]
    Proxy {
        /// Device id, unique id prefix, or name (a trailing `.tether` is taken off)
        #[arg(add = ArgValueCompleter::new(Devices::Accepted))]
        device: String,
        /// [HOST:]PORT as reached from the device, e.g. 22 or 10.0.0.5:502
        #[arg(value_name = "TARGET", value_parser = port_forward::parse_remote)]
        target: (String, u16),
        /// Say on stderr how the connection ended, with byte counts
        #[arg(short, long)]
        verbose: bool,
    },
    /// Print an ssh_config block to reach devices as NAME.tether with ssh, scp, rsync, Ansible
    #[command(name = "ssh-config", after_help = ssh_config::SSH_CONFIG_HELP)]
    SshConfig {
        /// The user to log in as on the devices (ssh's User)
        #[arg(long, value_name = "USER", value_parser = ssh_config::parse_user)]
        user: Option<String>,
        /// The port sshd listens on, on the devices (ssh's Port; default 22)
        #[arg(long, value_name = "PORT")]
        port: Option<u16>,
    },
    /// Copy files to or from a device, like scp
    #[command(after_help = CP_HELP)]
    Cp {
        /// Copy directories recursively
        #[arg(short, long)]
        recursive: bool,
        /// Print a JSON summary on stdout
        #[arg(long)]
        json: bool,
        /// Files to copy: local paths, or DEVICE:PATH (all on one device)
        #[arg(required = true, value_name = "SRC", add = ArgValueCompleter::new(Devices::WithPath))]
        sources: Vec<String>,
        /// Where to copy them: DEVICE:PATH for an upload, a local path for a download
        #[arg(value_name = "DST", add = ArgValueCompleter::new(Devices::WithPath))]
        destination: String,
    },
    /// List a file or directory on a device
    #[command(after_help = LS_HELP)]
    Ls {
        /// Print the entries as JSON
        #[arg(long)]
        json: bool,
        /// DEVICE:PATH
        #[arg(value_name = "DEVICE:PATH", add = ArgValueCompleter::new(Devices::Remote))]
        target: String,
    },
    /// Read, export, checkpoint and verify the hub's audit log
    #[command(subcommand, after_help = audit::AUDIT_HELP)]
    Audit(audit::AuditCommand),
    /// List, export and watch recorded terminal sessions
    #[command(subcommand, after_help = sessions::SESSIONS_HELP)]
    Sessions(sessions::SessionsCommand),
    /// Replay a recorded terminal session with its timing
    #[command(after_help = sessions::replay::REPLAY_HELP)]
    Replay(sessions::replay::ReplayArgs),
    /// Create, list and revoke personal access tokens
    #[command(subcommand, after_help = tokens::TOKENS_HELP)]
    Tokens(tokens::TokensCommand),
    /// List, add, disable and enable users, and end their sessions
    #[command(subcommand, after_help = users::USERS_HELP)]
    Users(users::UsersCommand),
    /// List, create and delete roles (granted to users on device groups)
    #[command(subcommand, after_help = roles::ROLES_HELP)]
    Roles(roles::RolesCommand),
    /// Request, approve, deny and revoke access on demand
    #[command(subcommand, after_help = access::ACCESS_HELP)]
    Access(access::AccessCommand),
    /// Enrol, confirm, disable or require two-factor authentication
    #[command(subcommand, name = "2fa", after_help = two_factor::TWO_FACTOR_HELP)]
    TwoFactor(two_factor::TwoFactorCommand),
    /// Change your password (ends your other login sessions)
    Passwd {
        /// Read two lines from stdin: the current password, then the new one
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum DevicesCommand {
    /// List devices
    List {
        /// Print the devices as JSON
        #[arg(long)]
        json: bool,
        /// Only devices with this status
        #[arg(long, value_enum)]
        status: Option<StatusFilter>,
    },
    /// Show one device with its inventory (OS, kernel, architecture, addresses, uptime, features)
    #[command(after_help = DEVICE_HELP)]
    Show {
        #[arg(add = ArgValueCompleter::new(Devices::Any))]
        device: String,
        /// Print the device as JSON
        #[arg(long)]
        json: bool,
    },
    /// Accept a pending (or rejected) device
    #[command(after_help = DEVICE_HELP)]
    Accept {
        #[arg(add = ArgValueCompleter::new(Devices::Any))]
        device: String,
    },
    /// Reject a device; it can no longer connect
    #[command(after_help = DEVICE_HELP)]
    Reject {
        #[arg(add = ArgValueCompleter::new(Devices::Any))]
        device: String,
    },
    /// Remove a device from the hub
    #[command(after_help = DEVICE_HELP)]
    Remove {
        #[arg(add = ArgValueCompleter::new(Devices::Any))]
        device: String,
    },
    /// Replace a device's tags (device groups are tags: tag:NAME); no tags clears them
    #[command(name = "set-tags", after_help = DEVICE_HELP)]
    SetTags {
        #[arg(add = ArgValueCompleter::new(Devices::Any))]
        device: String,
        tags: Vec<String>,
    },
    /// Print a one-line install for a new device, with a one-time enrolment token
    #[command(name = "install-command", after_help = install_tokens::INSTALL_COMMAND_HELP)]
    InstallCommand {
        /// A tag the enrolled device gets (repeat for several)
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// How long the token is valid, e.g. 1h, 7d (default 1 day)
        #[arg(long, value_name = "DURATION", value_parser = tokens::parse_duration_secs)]
        expires: Option<u64>,
        /// How many devices may enrol with the token (default 1)
        #[arg(long, value_name = "N")]
        uses: Option<u64>,
        /// The hub URL as devices reach it (default: the one this CLI uses)
        #[arg(long, value_name = "URL")]
        hub_url: Option<String>,
        /// Print the hub's answer and the line as JSON
        #[arg(long)]
        json: bool,
    },
    /// List or revoke one-time enrolment tokens
    #[command(name = "install-tokens", subcommand)]
    InstallTokens(install_tokens::InstallTokensCommand),
}

#[derive(Clone, Copy, ValueEnum)]
enum StatusFilter {
    Pending,
    Accepted,
    Rejected,
}

impl StatusFilter {
    fn as_str(self) -> &'static str {
        match self {
            StatusFilter::Pending => "pending",
            StatusFilter::Accepted => "accepted",
            StatusFilter::Rejected => "rejected",
        }
    }
}

/// Parses the command line, runs the command and returns the process's exit status.
pub fn run_from_command_line() -> i32 {
    completion::complete_if_asked(Cli::command);
    let cli = Cli::parse();
    init_logging();
    let is_exec = matches!(cli.command, Command::Exec { .. });
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            say!("tether: cannot start the async runtime: {error}");
            return 1;
        }
    };
    let result = runtime.block_on(run(cli));
    // Whatever is still running (the stdin reader) must not hold the exit up.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(error) => {
            say!("tether: {error:#}");
            if is_exec && failure::is_transport(&error) {
                exec::TRANSPORT_FAILURE
            } else {
                1
            }
        }
    }
}

async fn run(cli: Cli) -> Result<i32> {
    let options = HubOptions {
        hub: cli.global.hub,
        ca: cli.global.ca,
        profile: cli.global.profile,
    };
    match cli.command {
        Command::Login { user, password_stdin } => login::login(&options, &user, password_stdin).await?,
        Command::Logout => login::logout(&options).await?,
        Command::Profiles(command) => return profiles::run(&options, command).await,
        Command::Completions { shell } => return completion::print_script(shell),
        Command::Man { dir } => return completion::man(Cli::command(), dir.as_deref()),
        Command::Devices(DevicesCommand::InstallCommand {
            tags,
            expires,
            uses,
            hub_url,
            json,
        }) => {
            let command = install_tokens::InstallCommand {
                tags,
                expires,
                uses,
                hub_url,
                json,
            };
            return install_tokens::install_command(&options, command).await;
        }
        Command::Devices(DevicesCommand::InstallTokens(command)) => {
            return install_tokens::run(&options, command).await;
        }
        Command::Devices(command) => {
            let api = authenticated_api(&options)?;
            match command {
                DevicesCommand::List { json, status } => {
                    devices::list(&api, status.map(StatusFilter::as_str), json).await?
                }
                DevicesCommand::Show { device, json } => devices::show(&api, &device, json).await?,
                DevicesCommand::Accept { device } => devices::decide(&api, &device, Decision::Accept).await?,
                DevicesCommand::Reject { device } => devices::decide(&api, &device, Decision::Reject).await?,
                DevicesCommand::Remove { device } => devices::decide(&api, &device, Decision::Remove).await?,
                DevicesCommand::SetTags { device, tags } => roles::set_tags(&api, &device, tags).await?,
                DevicesCommand::InstallCommand { .. } | DevicesCommand::InstallTokens(_) => {
                    anyhow::bail!("install commands are handled before this match")
                }
            }
        }
        Command::Terminal { device, attach } => {
            let login = authenticated(&options)?;
            let api = Api::new(&login.hub, Some(login.token.clone()))?;
            let (device, local_user) = local_user::find(&api, &device).await?;
            return terminal::run(login, &device, attach, local_user).await;
        }
        Command::Exec {
            device,
            fleet,
            command,
        } => {
            let Some(device) = device else {
                let group = fleet.group.clone().unwrap_or_default();
                return fleet_exec::run(&options, &group, &fleet, command).await;
            };
            let (session, device, local_user) = open_session(&options, &device).await?;
            return exec::run(session, &device, &command, local_user).await;
        }
        Command::PortForward {
            device,
            mappings,
            bind,
            verbose,
        } => {
            let request = port_forward::Request {
                device,
                mappings,
                bind,
                verbose,
            };
            return port_forward::run(&options, request).await;
        }
        Command::Proxy {
            device,
            target: (host, port),
            verbose,
        } => {
            let request = proxy::Request {
                device,
                host,
                port,
                verbose,
            };
            return proxy::run(&options, request).await;
        }
        Command::SshConfig { user, port } => {
            return ssh_config::run(&options, &ssh_config::Request { user, port });
        }
        Command::Cp {
            recursive,
            json,
            sources,
            destination,
        } => {
            let request = files::cp::CpArgs {
                recursive,
                json,
                sources,
                destination,
            };
            return files::cp::run(&options, request).await;
        }
        Command::Ls { json, target } => return files::ls::run(&options, &target, json).await,
        Command::Audit(command) => return audit::run(&options, command).await,
        Command::Sessions(command) => return sessions::run(&options, command).await,
        Command::Replay(args) => return sessions::replay::run(&options, args).await,
        Command::Tokens(command) => return tokens::run(&options, command).await,
        Command::Users(command) => return users::run(&options, command).await,
        Command::Roles(command) => roles::run(&authenticated_api(&options)?, command).await?,
        Command::Access(command) => {
            return access::run(&authenticated_api(&options)?, command).await;
        }
        Command::TwoFactor(command) => two_factor::run(&authenticated_api(&options)?, command).await?,
        Command::Passwd { password_stdin } => return users::passwd(&options, password_stdin).await,
    }
    Ok(0)
}

/// Finds the device `query` names (and the local user it asks for) and opens a session to it.
async fn open_session(options: &HubOptions, query: &str) -> Result<(Session, Device, Option<String>)> {
    let login = authenticated(options)?;
    let api = Api::new(&login.hub, Some(login.token.clone()))?;
    let (device, local_user) = local_user::find(&api, query).await?;
    let session = Session::open(&login, &device, tether_proto::protocol::SHELL).await?;
    Ok((session, device, local_user))
}

/// Diagnostics go to stderr, filtered by `TETHER_LOG` (quiet by default: output is the user's).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TETHER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .init();
}
