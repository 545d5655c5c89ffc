//! `tether-agent`: the Tether device agent (the library, `lib.rs`, says what it does).
//!
//! This file reads the command line, sets up logging and runs the agent on a single-threaded
//! runtime until SIGTERM or SIGINT, or runs one of the local consent commands.

use std::process::ExitCode;

use tether_agent::args::{self, Command};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(Command::Run(args)) => args,
        Ok(Command::Answer { sid, approve, args }) => {
            return local(|| {
                tether_agent::answer(args, &sid, approve)?;
                println!("session {sid} {}", if approve { "approved" } else { "denied" });
                Ok(())
            });
        }
        Ok(Command::Pending(args)) => {
            return local(|| {
                for request in tether_agent::pending(args)? {
                    println!("{}", request.trim().replace('\n', ", "));
                }
                Ok(())
            });
        }
        Ok(Command::Help) => {
            print!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            print!("{}", version_text());
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("tether-agent: {error}");
            return ExitCode::from(2);
        }
    };
    init_logging();
    match tether_agent::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

/// What `--version` prints: the version, the target the binary was built for, and what it can
/// do (every feature is compiled in; the configuration decides which are on).
fn version_text() -> String {
    format!(
        "tether-agent {}\ntarget: {}\nfeatures: terminal, session-survival, file-transfer, \
         port-forward (tcp, udp), consent\nprotocols: 1 (Mender remote terminal), 2 (Tether extensions)\n",
        env!("CARGO_PKG_VERSION"),
        env!("TETHER_AGENT_TARGET"),
    )
}

/// Runs a local command (no hub involved) and turns its outcome into an exit status.
fn local(command: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    match command() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tether-agent: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr; the filter comes from TETHER_AGENT_LOG, else RUST_LOG, else `info`.
fn init_logging() {
    use std::io::IsTerminal as _;
    use tracing_subscriber::{filter::Targets, layer::SubscriberExt as _, util::SubscriberInitExt as _};
    let text = std::env::var("TETHER_AGENT_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let filter = text.parse::<Targets>().unwrap_or_else(|error| {
        eprintln!("tether-agent: ignoring the log filter `{text}`: {error}");
        Targets::new().with_default(tracing::Level::INFO)
    });
    let output = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    tracing_subscriber::registry().with(output).with(filter).init();
}
