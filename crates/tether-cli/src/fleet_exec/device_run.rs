//! The command on one device of a group run: the same session, handshake and shell messages as
//! a single `tether exec` (so the hub authorizes, asks for approval and audits it the same way),
//! with the output going to the terminal line by line or to a file, and with two more reasons
//! to stop the command: `--timeout` and Ctrl-C.

use std::{io::Write, path::PathBuf, time::Duration};

use tether_proto::api::{Device, ExecRunDevice};
use tokio::{
    sync::watch,
    time::{Instant, sleep_until},
};

use crate::{
    exec::{self, Ending},
    fleet_exec::lines::Lines,
    fleet_exec::report::{Outcome, Report},
    hub::Authenticated,
    output::{say, write_stdout},
    printable::printable,
    session::Session,
};

/// Where the devices' output goes.
#[derive(Debug, Clone)]
pub enum Destination {
    /// Line by line on stdout, each line behind `NAME: ` when `prefix`.
    Stdout { prefix: bool },
    /// Line by line on stderr, behind `NAME: ` (`--json` keeps stdout for the objects).
    Stderr,
    /// One file per device in this directory.
    Directory(PathBuf),
}

/// What every device's run shares.
pub struct Plan {
    pub login: Authenticated,
    pub words: Vec<String>,
    pub timeout: Option<Duration>,
    pub destination: Destination,
}

/// Why a command was stopped before it ended.
enum Stop {
    TimedOut,
    Interrupted,
}

impl Stop {
    fn outcome(self) -> Outcome {
        match self {
            Stop::TimedOut => Outcome::TimedOut,
            Stop::Interrupted => Outcome::Interrupted { started: true },
        }
    }
}

/// Runs the command on `device` (its output file, with `--output-dir`, is `file_name`) unless
/// the run is `cancelled` first.
pub async fn run(
    plan: &Plan,
    device: ExecRunDevice,
    file_name: Option<String>,
    mut cancelled: watch::Receiver<bool>,
) -> Report {
    let started = Instant::now();
    let mut output_file = None;
    let outcome = if *cancelled.borrow() {
        Outcome::Interrupted { started: false }
    } else if !device.online {
        Outcome::Offline
    } else {
        let deadline = plan.timeout.map(|timeout| started + timeout);
        let stop = async {
            tokio::select! {
                _ = until(deadline) => Stop::TimedOut,
                _ = interruption(&mut cancelled) => Stop::Interrupted,
            }
        };
        attempt(plan, &device, file_name, &mut output_file, stop).await
    };
    Report {
        device,
        outcome,
        duration: started.elapsed(),
        output_file,
    }
}

async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn interruption(cancelled: &mut watch::Receiver<bool>) {
    // A sender gone without cancelling means nothing is going to.
    if cancelled.wait_for(|cancelled| *cancelled).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn attempt(
    plan: &Plan,
    device: &ExecRunDevice,
    file_name: Option<String>,
    output_file: &mut Option<PathBuf>,
    stop: impl Future<Output = Stop>,
) -> Outcome {
    tokio::pin!(stop);
    let target = as_device(device);
    let opened = tokio::select! {
        opened = Session::open(&plan.login, &target, tether_proto::protocol::SHELL) => opened,
        stopped = &mut stop => return stopped.outcome(),
    };
    let mut session = match opened {
        Ok(session) => session,
        Err(error) => return Outcome::of_error(&error, &device.name),
    };
    if !exec::speaks_exec(&session) {
        session.close().await;
        return Outcome::NoTetherAgent;
    }
    let mut sink = match Sink::open(&plan.destination, &device.name, file_name) {
        Ok(sink) => sink,
        Err(error) => {
            session.close().await;
            return Outcome::Failed(error);
        }
    };
    *output_file = sink.path();
    exec::start(&session, &plan.words);
    let name = device.name.clone();
    let ending = exec::follow(
        &mut session,
        &device.name,
        &mut |bytes| sink.write(bytes),
        &mut |text| say!("tether: {name}: {text}"),
        stop.as_mut(),
    )
    .await;
    let flushed = sink.finish();
    match ending {
        Ok(Ending::Exited(code)) => {
            session.close().await;
            match flushed {
                Ok(()) => Outcome::Exited(code),
                Err(error) => Outcome::Failed(format!("writing the output: {error}")),
            }
        }
        Ok(Ending::Abnormal(text)) => {
            session.close().await;
            Outcome::Failed(format!("the command ended abnormally: {text}"))
        }
        Ok(Ending::Stopped(stopped)) => {
            session.stop().await;
            stopped.outcome()
        }
        Ok(Ending::OutputFailed(error)) => {
            session.stop().await;
            Outcome::Failed(format!("writing the output: {error}"))
        }
        Err(error) => Outcome::of_error(&error, &device.name),
    }
}

/// What [`Session::open`] needs of a device: its id and its name (for messages).
fn as_device(device: &ExecRunDevice) -> Device {
    Device {
        id: device.id.clone(),
        name: device.name.clone(),
        status: "accepted".into(),
        online: device.online,
        identity: Default::default(),
        agent_version: None,
        created_at: 0,
        last_seen_at: None,
        tags: Vec::new(),
        inventory: None,
        inventory_at: None,
    }
}

/// One device's output on its way out.
enum Sink {
    Stdout(Lines),
    Stderr(Lines),
    File(std::fs::File, PathBuf),
}

impl Sink {
    fn open(destination: &Destination, name: &str, file_name: Option<String>) -> Result<Sink, String> {
        // The name comes from the device: it must not move the cursor or color the terminal.
        let prefix = format!("{}: ", printable(name));
        Ok(match destination {
            Destination::Stdout { prefix: true } => Sink::Stdout(Lines::new(&prefix)),
            Destination::Stdout { prefix: false } => Sink::Stdout(Lines::new("")),
            Destination::Stderr => Sink::Stderr(Lines::new(&prefix)),
            Destination::Directory(directory) => {
                let path = directory.join(file_name.unwrap_or_else(|| "output.out".into()));
                let file = std::fs::File::create(&path)
                    .map_err(|error| format!("cannot create {}: {error}", path.display()))?;
                Sink::File(file, path)
            }
        })
    }

    fn path(&self) -> Option<PathBuf> {
        match self {
            Sink::File(_, path) => Some(path.clone()),
            Sink::Stdout(_) | Sink::Stderr(_) => None,
        }
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Stdout(lines) => write_all_stdout(&lines.push(bytes)),
            Sink::Stderr(lines) => write_all_stderr(&lines.push(bytes)),
            Sink::File(file, _) => file.write_all(bytes),
        }
    }

    /// Writes what still waits for a newline.
    fn finish(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Stdout(lines) => write_all_stdout(&lines.finish()),
            Sink::Stderr(lines) => write_all_stderr(&lines.finish()),
            Sink::File(file, _) => file.flush(),
        }
    }
}

fn write_all_stdout(bytes: &[u8]) -> std::io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    write_stdout(bytes)
}

fn write_all_stderr(bytes: &[u8]) -> std::io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    let mut stderr = std::io::stderr().lock();
    stderr.write_all(bytes)?;
    stderr.flush()
}
