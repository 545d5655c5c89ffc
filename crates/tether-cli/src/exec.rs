//! `tether exec DEVICE -- COMMAND...`: runs one command on the device (a version-2 extension,
//! so only with a tether-agent), streams its output, and exits with its exit status.
//!
//! The steps on an open session ([`start`], [`follow`]) are shared with `tether exec --group`
//! ([`crate::fleet_exec`]), which runs them on many devices at once with its own output and
//! its own reasons to stop.

use std::io::IsTerminal;

use anyhow::{Context, Result, bail};
use tether_proto::{api::Device, shell::Shell, shell::status, version};
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    failure::refusal,
    messages::Event,
    output::{say, window_size, write_stdout},
    quoting::command_line,
    session::Session,
};

/// What ssh reports when it, not the remote command, failed.
pub const TRANSPORT_FAILURE: i32 = 255;

/// Runs `words` on the device (as `local_user` when given: `tether exec USER@DEVICE`).
pub async fn run(
    mut session: Session,
    device: &Device,
    words: &[String],
    local_user: Option<String>,
) -> Result<i32> {
    if !speaks_exec(&session) {
        let spoken = session.version;
        session.close().await;
        bail!(
            "the agent on {} speaks protocol version {spoken} only (a stock mender-connect?): \
             exec needs a tether-agent; use `tether terminal`",
            device.name
        );
    }
    start_as(&session, words, local_user);
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let signalled = async {
        tokio::select! {
            _ = interrupt.recv() => libc::SIGINT,
            _ = terminate.recv() => libc::SIGTERM,
            _ = hangup.recv() => libc::SIGHUP,
        }
    };
    let mut output = |bytes: &[u8]| write_stdout(bytes);
    let mut notice = |text: &str| say!("tether: {text}");
    match follow(&mut session, &device.name, &mut output, &mut notice, signalled).await? {
        Ending::Exited(code) => {
            session.close().await;
            Ok(code)
        }
        Ending::Abnormal(text) => {
            session.close().await;
            say!("tether: the command ended abnormally: {text}");
            Ok(TRANSPORT_FAILURE)
        }
        // Ctrl-C here means "stop the command", not just "stop watching it".
        Ending::Stopped(signalled) => {
            session.stop().await;
            Ok(128 + signalled)
        }
        Ending::OutputFailed(error) => {
            session.stop().await;
            if error.kind() == std::io::ErrorKind::BrokenPipe {
                // Like a command killed by SIGPIPE (`tether exec ... | head`).
                return Ok(128 + libc::SIGPIPE);
            }
            Err(error).context("writing to stdout")
        }
    }
}

/// Whether the device's agent runs commands (a tether-agent, protocol version 2); a stock
/// mender-connect only offers interactive shells.
pub fn speaks_exec(session: &Session) -> bool {
    session.version >= version::TETHER
}

/// Asks the device to run `words` (quoted for its shell as [`command_line`] says).
pub fn start(session: &Session, words: &[String]) {
    start_as(session, words, None);
}

/// [`start`] as the local user `local_user` (None: the device's default).
fn start_as(session: &Session, words: &[String], local_user: Option<String>) {
    // The command may format for the width of the operator's terminal, if there is one.
    let (width, height) = if std::io::stdout().is_terminal() {
        window_size()
    } else {
        (80, 24)
    };
    session.send(Shell::New {
        user_id: None,
        width: Some(width),
        height: Some(height),
        command: Some(command_line(words)),
        local_user,
        status: None,
        text: Vec::new(),
    });
}

/// How a command followed by [`follow`] ended. The session is left to the caller: closed after
/// an end, stopped (which ends the command) otherwise.
pub enum Ending<Stop> {
    /// The command exited with this status (128 + N when killed by signal N).
    Exited(i32),
    /// The device ended the command without an exit status, saying why.
    Abnormal(String),
    /// The caller's `stop` came first, with its value.
    Stopped(Stop),
    /// `output` failed.
    OutputFailed(std::io::Error),
}

/// Passes the command's output to `output` and the session's notices to `notice` until the
/// command ends or `stop` resolves. Errors are those of [`Session::next`], and a refusal of the
/// shell by the device.
pub async fn follow<Stop>(
    session: &mut Session,
    device_name: &str,
    output: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    notice: &mut dyn FnMut(&str),
    stop: impl Future<Output = Stop>,
) -> Result<Ending<Stop>> {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            event = session.next() => match event? {
                Event::Started => {}
                Event::Output(bytes, _) => {
                    if let Err(error) = output(&bytes) {
                        return Ok(Ending::OutputFailed(error));
                    }
                }
                Event::Refused(text) => return Err(refusal(format!("{device_name} refused the shell: {text}"))),
                Event::Ended { status, text, exit_status } => {
                    return Ok(match exit_status {
                        Some(code) => Ending::Exited(u8::try_from(code).map_or(TRANSPORT_FAILURE, i32::from)),
                        None if status == Some(status::ERROR) => Ending::Abnormal(text),
                        None => Ending::Exited(0),
                    });
                }
                Event::Notice(text) | Event::Reconnecting(text) | Event::Watching(text) => notice(&text),
            },
            stopped = &mut stop => return Ok(Ending::Stopped(stopped)),
        }
    }
}
