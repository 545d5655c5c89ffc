//! `tether exec DEVICE -- COMMAND...`: runs one command on the device (a version-2 extension,
//! so only with a tether-agent), streams its output, and exits with its exit status.

use std::io::IsTerminal;

use anyhow::{Context, Result, bail};
use tether_proto::{api::Device, shell::Shell, shell::status, version};
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    messages::Event,
    output::{say, window_size, write_stdout},
    quoting::command_line,
    session::Session,
};

/// What ssh reports when it, not the remote command, failed.
pub const TRANSPORT_FAILURE: i32 = 255;

pub async fn run(mut session: Session, device: &Device, words: &[String]) -> Result<i32> {
    if session.version < version::TETHER {
        let spoken = session.version;
        session.close().await;
        bail!(
            "the agent on {} speaks protocol version {spoken} only (a stock mender-connect?): \
             exec needs a tether-agent; use `tether terminal`",
            device.name
        );
    }
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
        status: None,
        text: Vec::new(),
    });
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let signalled = loop {
        tokio::select! {
            event = session.next() => match event? {
                Event::Started => {}
                Event::Output(bytes, _) => {
                    if let Err(error) = write_stdout(&bytes) {
                        session.stop().await;
                        if error.kind() == std::io::ErrorKind::BrokenPipe {
                            // Like a command killed by SIGPIPE (`tether exec ... | head`).
                            return Ok(128 + libc::SIGPIPE);
                        }
                        return Err(error).context("writing to stdout");
                    }
                }
                Event::Refused(text) => bail!("{} refused the shell: {text}", device.name),
                Event::Ended { status, text, exit_status } => {
                    session.close().await;
                    return Ok(match exit_status {
                        Some(code) => u8::try_from(code).map_or(TRANSPORT_FAILURE, i32::from),
                        None if status == Some(status::ERROR) => {
                            say!("tether: the command ended abnormally: {text}");
                            TRANSPORT_FAILURE
                        }
                        None => 0,
                    });
                }
                Event::Notice(text) | Event::Reconnecting(text) => say!("tether: {text}"),
            },
            _ = interrupt.recv() => break libc::SIGINT,
            _ = terminate.recv() => break libc::SIGTERM,
            _ = hangup.recv() => break libc::SIGHUP,
        }
    };
    // Ctrl-C here means "stop the command", not just "stop watching it".
    session.stop().await;
    Ok(128 + signalled)
}
