//! `tether terminal DEVICE`: an interactive shell on the device, like ssh. The local terminal
//! goes raw so every key (Ctrl-C included) reaches the remote shell; `~.` at the start of a
//! line disconnects.
//!
//! A shell on a `tether-agent` (protocol version 2) survives lost connections, like mosh: when
//! the link to the hub drops, the terminal shows "reconnecting…", re-attaches by itself and gets
//! the output it missed from the last byte it received (keys typed meanwhile are sent once it
//! is back). `--attach SESSION` re-attaches to a shell left behind (a closed laptop lid).

use std::{io::IsTerminal, time::Duration};

use anyhow::{Context, Result, bail};
use tether_proto::{api::Device, protocol, shell::Shell, shell::status};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
    task::JoinHandle,
    time::{Instant, sleep},
};

use crate::{
    api::HttpError,
    escape::EscapeDetector,
    failure,
    hub::Authenticated,
    input::{Input, spawn_stdin_reader},
    local_user,
    messages::Event,
    output::{self, say, say_on_new_line, window_size, write_stdout},
    raw_mode::RawMode,
    session::Session,
};

/// End-of-transmission (Ctrl-D): what a terminal sends when its user is done typing.
const END_OF_INPUT: u8 = 0x04;
/// Reconnecting gives up after this long (the device keeps a shell 5 minutes by default).
const RECONNECT_LIMIT: Duration = Duration::from_secs(15 * 60);
/// Longest wait between two reconnection attempts.
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(3);
/// Keystrokes kept while reconnecting (beyond them, typing is dropped).
const PENDING_INPUT_BYTES: usize = 64 * 1024;

/// Opens the shell (as `local_user` when given: `tether terminal USER@DEVICE`), or re-attaches
/// to the shell `attach` names.
pub async fn run(
    login: Authenticated,
    device: &Device,
    attach: Option<String>,
    local_user: Option<String>,
) -> Result<i32> {
    let interactive = std::io::stdin().is_terminal();
    if let (Some(_), Some(user)) = (&attach, &local_user) {
        bail!(
            "--attach re-attaches to a running shell, which keeps the local user it started as: \
             drop `{user}@`"
        );
    }
    let session = match &attach {
        Some(sid) => Session::attach(&login, device, sid, 0).await?,
        None => {
            let session = Session::open(&login, device, protocol::SHELL).await?;
            let session = local_user::require_support(session, device, local_user.as_deref()).await?;
            let (width, height) = if interactive { window_size() } else { (80, 24) };
            session.send(Shell::New {
                user_id: None,
                width: Some(width),
                height: Some(height),
                command: None,
                local_user,
                status: None,
                text: Vec::new(),
            });
            session
        }
    };
    let sid = Some(session.sid().to_owned()).filter(|sid| !sid.is_empty());
    let mut state = Terminal {
        sid,
        interactive,
        started: false,
        raw_mode: None,
        input: None,
        escape: EscapeDetector::new(),
        login,
        session: Some(session),
        offset: 0,
        reconnect: None,
        pending: Vec::new(),
        device_away: false,
    };
    let result = state.run(device).await;
    let started = state.started;
    let session = state.session.take();
    let sid = state.resumable_sid();
    // Leave raw mode before anything else is printed.
    drop(state);
    match (result, session) {
        (Ok(Ending::Finished(code)), session) => {
            if let Some(session) = session {
                session.close().await;
            }
            Ok(code)
        }
        (Ok(Ending::Local(code, message)), Some(session)) => {
            session.stop().await;
            say_on_new_line!("tether: {message}");
            Ok(code)
        }
        (Ok(Ending::Local(code, message)), None) => {
            say_on_new_line!("tether: {message}");
            if let Some(sid) = sid {
                say!(
                    "tether: the shell is kept on the device for a while: \
                     tether terminal {} --attach {sid}",
                    device.name
                );
            }
            Ok(code)
        }
        (Err(error), _) => {
            if started && interactive {
                // The remote output may have left the cursor mid-line.
                output::end_line();
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
    sid: Option<String>,
    interactive: bool,
    started: bool,
    raw_mode: Option<RawMode>,
    input: Option<mpsc::Receiver<Input>>,
    escape: EscapeDetector,
    login: Authenticated,
    /// `None` while reconnecting.
    session: Option<Session>,
    /// Stream offset after the last output byte written (version 2).
    offset: u64,
    reconnect: Option<JoinHandle<Result<Session>>>,
    /// Keystrokes typed while reconnecting.
    pending: Vec<u8>,
    /// The hub said the device's leg dropped; it resumes the shell when the device is back.
    device_away: bool,
}

impl Terminal {
    /// The session id, if the shell survives a lost connection.
    fn resumable_sid(&self) -> Option<String> {
        let session = self.session.as_ref();
        let resumable =
            self.started && session.is_none_or(|session| session.version >= tether_proto::version::TETHER);
        resumable.then(|| self.sid.clone()).flatten()
    }

    async fn run(&mut self, device: &Device) -> Result<Ending> {
        let mut window_change = signal(SignalKind::window_change())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let mut hangup = signal(SignalKind::hangup())?;
        loop {
            tokio::select! {
                event = next_event(&mut self.session) => match event {
                    Ok(event) => {
                        if let Some(ending) = self.on_event(event, device)? {
                            return Ok(ending);
                        }
                    }
                    Err(error) if failure::is_lost(&error) && self.resumable_sid().is_some() => {
                        self.session = None;
                        say_on_new_line!("tether: {error}; reconnecting…");
                        self.start_reconnect(device);
                    }
                    Err(error) => return Err(error),
                },
                attached = next_reconnect(&mut self.reconnect) => {
                    let session = attached?;
                    say_on_new_line!("tether: reconnected");
                    if !self.pending.is_empty() {
                        session.send(Shell::Data(std::mem::take(&mut self.pending)));
                    }
                    if self.raw_mode.is_some() {
                        let (width, height) = window_size();
                        session.send(Shell::Resize { width, height });
                    }
                    self.session = Some(session);
                }
                input = next_input(&mut self.input) => match input {
                    Input::Bytes(bytes) if self.interactive => {
                        let filtered = self.escape.filter(&bytes);
                        if !filtered.send.is_empty() {
                            self.send_input(filtered.send);
                        }
                        if filtered.disconnect {
                            return Ok(Ending::Local(0, "disconnected"));
                        }
                    }
                    Input::Bytes(bytes) => self.send_input(bytes),
                    Input::End => {
                        // Piped input is done: tell the shell the way a terminal would, then
                        // keep showing output until the device ends the shell.
                        self.input = None;
                        if !self.interactive {
                            self.send_input(vec![END_OF_INPUT]);
                        }
                    }
                },
                _ = window_change.recv(), if self.raw_mode.is_some() => {
                    if let Some(session) = &self.session {
                        let (width, height) = window_size();
                        session.send(Shell::Resize { width, height });
                    }
                }
                _ = terminate.recv() => return Ok(Ending::Local(128 + libc::SIGTERM, "terminated")),
                _ = hangup.recv() => return Ok(Ending::Local(128 + libc::SIGHUP, "hung up")),
            }
        }
    }

    fn on_event(&mut self, event: Event, device: &Device) -> Result<Option<Ending>> {
        match event {
            Event::Started => {
                self.back_from_device_drop();
                self.begin(device)?;
            }
            Event::Output(mut bytes, offset) => {
                self.back_from_device_drop();
                // A stock agent may stream before (or without) confirming the start.
                self.begin(device)?;
                if let Some(offset) = offset {
                    // Never show a byte twice, whatever a replay overlaps.
                    let end = offset + bytes.len() as u64;
                    if end <= self.offset {
                        return Ok(None);
                    }
                    if offset < self.offset {
                        bytes.drain(..(self.offset - offset) as usize);
                    }
                    self.offset = end;
                }
                write_stdout(&bytes).context("writing to stdout")?;
            }
            Event::Refused(text) => bail!("{} refused the shell: {text}", device.name),
            Event::Ended { status, text, .. } => {
                self.raw_mode = None;
                if status == Some(status::ERROR) && !text.is_empty() {
                    say_on_new_line!("tether: session ended: {text}");
                    return Ok(Some(Ending::Finished(1)));
                }
                return Ok(Some(Ending::Finished(0)));
            }
            // On stderr, never in the shell's output stream (stdout).
            Event::Notice(text) | Event::Watching(text) => say_on_new_line!("tether: {text}"),
            Event::Reconnecting(text) => {
                self.device_away = true;
                say_on_new_line!("tether: {text}");
            }
        }
        Ok(None)
    }

    fn back_from_device_drop(&mut self) {
        if std::mem::take(&mut self.device_away) {
            say_on_new_line!("tether: reconnected");
        }
    }

    fn send_input(&mut self, bytes: Vec<u8>) {
        match &self.session {
            Some(session) => session.send(Shell::Data(bytes)),
            None if self.pending.len() + bytes.len() <= PENDING_INPUT_BYTES => {
                self.pending.extend_from_slice(&bytes)
            }
            None => {}
        }
    }

    fn start_reconnect(&mut self, device: &Device) {
        let (Some(sid), login) = (self.sid.clone(), self.login.clone()) else {
            return;
        };
        let (device, offset) = (device.clone(), self.offset);
        self.reconnect = Some(tokio::spawn(async move {
            let give_up = Instant::now() + RECONNECT_LIMIT;
            let mut delay = Duration::from_millis(250);
            loop {
                sleep(delay).await;
                match Session::attach(&login, &device, &sid, offset).await {
                    Ok(session) => return Ok(session),
                    Err(error) if !worth_retrying(&error) => {
                        return Err(error.context("the shell could not be re-attached"));
                    }
                    Err(error) if Instant::now() >= give_up => {
                        return Err(error.context(format!(
                            "gave up reconnecting after {} s",
                            RECONNECT_LIMIT.as_secs()
                        )));
                    }
                    Err(error) => tracing::debug!("reconnecting: {error:#}"),
                }
                delay = (delay * 2).min(RECONNECT_MAX_DELAY);
            }
        }));
    }

    /// Once the shell runs: announce it, go raw, start reading keys.
    fn begin(&mut self, device: &Device) -> Result<()> {
        if self.started {
            return Ok(());
        }
        self.started = true;
        if self.interactive {
            let sid = self.sid.as_deref().unwrap_or_default();
            say!(
                "Connected to {} ({}), session {sid}. Escape: ~. to disconnect.",
                device.name,
                device.id
            );
            self.raw_mode = Some(RawMode::enable()?);
        }
        self.input = Some(spawn_stdin_reader());
        Ok(())
    }
}

/// A lost connection, a hub restarting or a device offline for now are worth another attempt;
/// a refusal (no such session, not yours, logged out) is not.
fn worth_retrying(error: &anyhow::Error) -> bool {
    if failure::is_transport(error) {
        return true;
    }
    match error.downcast_ref::<HttpError>() {
        Some(refusal) => refusal.status.as_u16() == 409 || refusal.status.is_server_error(),
        None => false,
    }
}

/// The next event of the session, or never while reconnecting.
async fn next_event(session: &mut Option<Session>) -> Result<Event> {
    match session {
        Some(session) => session.next().await,
        None => std::future::pending().await,
    }
}

/// The re-attached session once reconnecting succeeds (or gives up), or never.
async fn next_reconnect(reconnect: &mut Option<JoinHandle<Result<Session>>>) -> Result<Session> {
    match reconnect {
        Some(task) => {
            let result = task.await;
            *reconnect = None;
            result.context("the reconnecting task failed")?
        }
        None => std::future::pending().await,
    }
}

/// The next input, or never once stdin is done (so `select!` simply stops polling it).
async fn next_input(input: &mut Option<mpsc::Receiver<Input>>) -> Input {
    match input {
        Some(receiver) => receiver.recv().await.unwrap_or(Input::End),
        None => std::future::pending().await,
    }
}
