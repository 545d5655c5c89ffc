//! `tether-hub`: the server devices dial into and operators connect through. Argument parsing
//! only; the hub itself is the library (`lib.rs`).

use std::{net::SocketAddr, path::PathBuf};

use clap::{Parser, Subcommand};
use tether_hub::{
    ServeOptions, add_user,
    config::{HubConfig, LogFormat},
    demo, run,
};

#[derive(Parser)]
#[command(
    name = "tether-hub",
    version,
    about = "The Tether hub: devices dial in, operators connect through it"
)]
struct Arguments {
    /// Where the database, TLS certificate and signing key live.
    #[arg(long, global = true, env = "TETHER_HUB_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// TOML configuration file (see docs/configuration.md).
    #[arg(long, global = true, env = "TETHER_HUB_CONFIG")]
    config: Option<PathBuf>,
    /// Database URL: `postgres://...` for replicas sharing PostgreSQL (default: SQLite in the
    /// data directory). Also `database_url` in the file or TETHER_HUB_DATABASE_URL.
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Log lines as `text` (default) or `json`, one object per line (docs/operations.md,
    /// *Logs*). Also `log_format` in the file or TETHER_HUB_LOG_FORMAT.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub.
    Serve(ServeOptions),
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Write a backup of a SQLite hub (safe while it runs) to FILE: the database and the key
    /// files, one archive, mode 0600 (see docs/operations.md).
    Backup { file: PathBuf },
    /// Restore a backup into the data directory (--data-dir), which must not hold a hub yet.
    Restore { file: PathBuf },
    /// Run a hub on embedded defaults plus a local demo device, on loopback.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user, or set the password (and role) of an existing one.
    Add {
        name: String,
        /// The built-in admin role on every device (same as `--role admin`).
        #[arg(long, conflicts_with = "role")]
        admin: bool,
        /// The user's role (admin, operator, auditor, or a custom role). Without one, a new user
        /// can log in but reach nothing (deny by default).
        #[arg(long)]
        role: Option<String>,
        /// Where the role applies: `tag:NAME` or a device id; repeat for several (default: every
        /// device).
        #[arg(long = "group", requires = "role")]
        groups: Vec<String>,
        /// Read the password from standard input (required: passwords never go on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

fn default_data_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/tether-hub");
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("tether-hub")
}

fn main() -> anyhow::Result<()> {
    // Everything the hub creates (database and its -wal/-shm files, recordings, keys) is its
    // own: private from the first byte, whatever the caller's umask.
    // SAFETY: umask only sets the process's file-creation mask; it cannot fail.
    unsafe { libc::umask(0o077) };
    tether_net::allocator::keep_freed_buffers();
    let arguments = Arguments::parse();
    let mut config = HubConfig::load(arguments.config.as_deref())?;
    init_logging(arguments.log_format.unwrap_or(config.log_format));
    // The demo keeps its state apart from a real hub's, in the current directory.
    let data_dir = match (&arguments.data_dir, &arguments.command) {
        (Some(dir), _) => dir.clone(),
        (None, Command::Demo { .. }) => PathBuf::from("tether-demo"),
        (None, _) => default_data_dir(),
    };
    if arguments.database_url.is_some() {
        config.database_url = arguments.database_url;
    }
    config.data_dir = data_dir.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match arguments.command {
            Command::Serve(options) => run(config, options).await,
            Command::User {
                command:
                    UserCommand::Add {
                        name,
                        admin,
                        role,
                        groups,
                        ..
                    },
            } => {
                let role = if admin { Some("admin".to_owned()) } else { role };
                add_user(&data_dir, &config, &name, role, &groups).await
            }
            Command::Backup { file } => tether_hub::backup(&config, &file).await,
            Command::Restore { file } => tether_hub::restore(&config, &file).await,
            Command::Demo { listen } => demo::run(data_dir, config, listen).await,
        }
    })
}

/// Log lines go to standard error, filtered by `TETHER_HUB_LOG` (default `info`). In JSON, one
/// object per line: `timestamp`, `level`, `target`, `message` and the event's fields at the top,
/// and `span` with the request's `request_id`, `method` and `route` inside an HTTP request.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TETHER_HUB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}
