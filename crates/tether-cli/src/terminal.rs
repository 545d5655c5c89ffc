//! `tether terminal DEVICE`: an interactive shell on the device, like ssh. The local terminal
//! goes raw so every key (Ctrl-C included) reaches the remote shell; `~.` at the start of a
//! line disconnects.

use std::io::IsTerminal;

use anyhow::{Context, Result, bail};
use tether_proto::{api::Device, shell::Shell, shell::status};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use crate::{
    escape::EscapeDetector,
    input::{Input, spawn_stdin_reader},
    messages::Event,
    output::{say, window_size, write_stdout},
    raw_mode::RawMode,
    session::Session,
};

/// End-of-transmission (Ctrl-D): what a terminal sends when its user is done typing.
const END_OF_INPUT: u8 = 0x04;

pub async fn run(mut session: Session, device: &Device) -> Result<i32> {
    let interactive = std::io::stdin().is_terminal();
    let (width, height) = if interactive { window_size() } else { (80, 24) };
    session.send(Shell::New {
        user_id: None,
        width: Some(width),
        height: Some(height),
        command: None,
        status: None,
        text: Vec::new(),
    });
    let mut state = Terminal {
        interactive,
        started: false,
        raw_mode: None,
        input: None,
        escape: EscapeDetector::new(),
    };
    let result = state.run(&mut session, device).await;
    let started = state.started;
    // Leave raw mode before anything else is printed.
    drop(state);
    match result {
        Ok(Ending::Finished(code)) => {
            session.close().await;
            Ok(code)
        }
        Ok(Ending::Local(code, message)) => {
            session.stop().await;
            say!("\r\ntether: {message}");
            Ok(code)
        }
        Err(error) => {
            if started && interactive {
                // The remote output may have left the cursor mid-line.
                say!("\r");
            }
            Err(error)
        }
    }
}

/// How a session that did not fail ended.
enum Ending {
    /// The shell ended; exit with this code.
    Finished(i32),
    /// This side ended it (escape or signal): stop the shell, say why, exit with the code.
    Local(i32, &'static str),
}

struct Terminal {
    interactive: bool,
    started: bool,
    raw_mode: Option<RawMode>,
    input: Option<mpsc::Receiver<Input>>,
    escape: EscapeDetector,
}

impl Terminal {
    async fn run(&mut self, session: &mut Session, device: &Device) -> Result<Ending> {
        let mut window_change = signal(SignalKind::window_change())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let mut hangup = signal(SignalKind::hangup())?;
        loop {
            tokio::select! {
                event = session.next() => match event? {
                    Event::Started => self.begin(device)?,
                    Event::Output(bytes) => {
                        // A stock agent may stream before (or without) confirming the start.
                        self.begin(device)?;
                        write_stdout(&bytes).context("writing to stdout")?;
                    }
                    Event::Refused(text) => {
                        bail!("{} refused the shell: {text}", device.name)
                    }
                    Event::Ended { status, text, .. } => {
                        self.raw_mode = None;
                        if status == Some(status::ERROR) && !text.is_empty() {
                            say!("\r\ntether: session ended: {text}");
                            return Ok(Ending::Finished(1));
                        }
                        return Ok(Ending::Finished(0));
                    }
                    Event::Notice(text) => say!("\r\ntether: {text}\r"),
                },
                input = next_input(&mut self.input) => match input {
                    Input::Bytes(bytes) if self.interactive => {
                        let filtered = self.escape.filter(&bytes);
                        if !filtered.send.is_empty() {
                            session.send(Shell::Data(filtered.send));
                        }
                        if filtered.disconnect {
                            return Ok(Ending::Local(0, "disconnected"));
                        }
                    }
                    Input::Bytes(bytes) => session.send(Shell::Data(bytes)),
                    Input::End => {
                        // Piped input is done: tell the shell the way a terminal would, then
                        // keep showing output until the device ends the shell.
                        self.input = None;
                        if !self.interactive {
                            session.send(Shell::Data(vec![END_OF_INPUT]));
                        }
                    }
                },
                _ = window_change.recv(), if self.raw_mode.is_some() => {
                    let (width, height) = window_size();
                    session.send(Shell::Resize { width, height });
                }
                _ = terminate.recv() => return Ok(Ending::Local(128 + libc::SIGTERM, "terminated")),
                _ = hangup.recv() => return Ok(Ending::Local(128 + libc::SIGHUP, "hung up")),
            }
        }
    }

    /// Once the shell runs: announce it, go raw, start reading keys.
    fn begin(&mut self, device: &Device) -> Result<()> {
        if self.started {
            return Ok(());
        }
        self.started = true;
        if self.interactive {
            say!(
                "Connected to {} ({}). Escape: ~. to disconnect.",
                device.name,
                device.id
            );
            self.raw_mode = Some(RawMode::enable()?);
        }
        self.input = Some(spawn_stdin_reader());
        Ok(())
    }
}

/// The next input, or never once stdin is done (so `select!` simply stops polling it).
async fn next_input(input: &mut Option<mpsc::Receiver<Input>>) -> Input {
    match input {
        Some(receiver) => receiver.recv().await.unwrap_or(Input::End),
        None => std::future::pending().await,
    }
}
