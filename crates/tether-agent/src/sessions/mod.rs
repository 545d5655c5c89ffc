//! The session table: what the hub asked for, per session id. Decodes every inbound message,
//! answers the control protocol, enforces the shell limits and routes input to running shells.
//!
//! The table outlives a single WebSocket connection. When one drops, version-2 interactive shells
//! are detached and kept for the grace period (`terminal.grace_period_secs`), to be resumed by the
//! hub from the offset it last relayed; everything else ends.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tether_proto::{
    Envelope, Error as ProtoError,
    control::{Control, ErrorBody},
    protocol::{CONTROL, FILE_TRANSFER, PORT_FORWARD, SHELL},
    shell::{Shell, status},
    version,
};
use tokio::{sync::mpsc, task::JoinHandle};

use crate::{
    config::{FileTransferConfig, PortForwardConfig, TerminalConfig},
    consent::{self, Consent, ConsentConfig},
    file_transfer::{self, FileTransfers},
    port_forward::PortForwards,
    shell::{self, Destination, Input, Limits, Output, ShellHandle, ShellStream},
};

/// Largest `shell` body to a version-1 session: the frame must stay under the stock 8 KiB.
const VERSION_1_CHUNK: usize = 4096;
/// Largest `shell` body to a version-2 session (frames up to 64 KiB are allowed).
const VERSION_2_CHUNK: usize = 32 * 1024;
/// The versions this agent chooses from, the highest the hub offers (3 is version 2 in the
/// compact encoding: the connection's `compact::Link` switches the session's frames).
const SPOKEN_VERSIONS: [u32; 3] = [version::MENDER, version::TETHER, version::COMPACT];
/// Negotiated versions remembered; beyond this, sessions without a shell are forgotten.
const MAX_REMEMBERED_SESSIONS: usize = 1024;

pub struct Sessions {
    terminal: TerminalConfig,
    outbound: mpsc::Sender<Envelope>,
    /// The protocol version each session's `open` negotiated (absent = 1).
    versions: HashMap<String, u32>,
    shells: HashMap<String, ShellHandle>,
    port_forwards: PortForwards,
    /// `None`: file transfer is off.
    file_transfers: Option<FileTransfers>,
    /// File data for the hub, sent after `outbound`'s messages (taken by the writer).
    bulk: Option<mpsc::Receiver<Envelope>>,
    /// `None`: sessions open without asking anyone on the device.
    consent: Option<Consent>,
}

impl Sessions {
    pub fn new(terminal: TerminalConfig, outbound: mpsc::Sender<Envelope>) -> Sessions {
        Sessions {
            terminal,
            port_forwards: PortForwards::new(&PortForwardConfig::default(), outbound.clone()),
            outbound,
            versions: HashMap::new(),
            shells: HashMap::new(),
            file_transfers: None,
            bulk: None,
            consent: None,
        }
    }

    /// Device-side consent as configured (off unless called).
    pub fn with_consent(mut self, config: &ConsentConfig, data_dir: &std::path::Path) -> Sessions {
        self.consent = Consent::new(config, data_dir);
        self
    }

    /// Port forwarding as configured (off unless called).
    pub fn with_port_forward(mut self, config: &PortForwardConfig) -> Sessions {
        self.port_forwards = PortForwards::new(config, self.outbound.clone());
        self
    }

    /// File transfer as configured (off unless called and enabled).
    pub fn with_file_transfer(mut self, config: &FileTransferConfig) -> Sessions {
        if !config.enabled {
            return self;
        }
        let (bulk, bulk_receiver) = mpsc::channel(file_transfer::BULK_QUEUE);
        match FileTransfers::start(config, bulk) {
            Ok(file_transfers) => {
                self.file_transfers = Some(file_transfers);
                self.bulk = Some(bulk_receiver);
            }
            Err(error) => tracing::error!("file transfer is off: {error}"),
        }
        self
    }

    /// The queue of file data, for the connection writer (which returns it when done).
    pub fn take_bulk(&mut self) -> Option<mpsc::Receiver<Envelope>> {
        self.bulk.take()
    }

    pub fn return_bulk(&mut self, bulk: Option<mpsc::Receiver<Envelope>>) {
        self.bulk = bulk;
    }

    /// Answers a frame from the hub that did not decode (the connection goes on).
    pub async fn malformed(&mut self, error: &dyn std::fmt::Display) {
        tracing::warn!("malformed message from the hub: {error}");
        let body = ErrorBody::new(format!("malformed message: {error}"));
        self.send(Control::Error(body).to_envelope("")).await;
    }

    /// Handles one message from the hub. Never fails: bad input is answered with an error.
    pub async fn handle(&mut self, envelope: Envelope) {
        tracing::debug!(proto = envelope.proto, typ = %envelope.typ, sid = %envelope.sid, "received");
        // Whatever the hub sends, a session nobody approved on the device gets nothing done.
        if envelope.proto != CONTROL
            && let Some(consent) = &self.consent
            && !consent.is_approved(&envelope.sid)
        {
            let reason = "this session was not approved on the device".to_owned();
            return self.refuse(&envelope, reason).await;
        }
        match envelope.proto {
            CONTROL => self.control(envelope).await,
            SHELL => self.shell(envelope).await,
            PORT_FORWARD => {
                let version = self
                    .versions
                    .get(&envelope.sid)
                    .copied()
                    .unwrap_or(version::MENDER);
                let mut envelope = envelope;
                let body = std::mem::take(&mut envelope.body);
                if let Err(error) = self.port_forwards.dispatch(&envelope, body, version).await {
                    self.refuse(&envelope, describe(error)).await;
                }
            }
            FILE_TRANSFER if self.file_transfers.is_some() => {
                let version = self
                    .versions
                    .get(&envelope.sid)
                    .copied()
                    .unwrap_or(version::MENDER);
                let answer = self
                    .file_transfers
                    .as_mut()
                    .and_then(|files| files.handle(&envelope.sid, version, &envelope));
                if let Some(answer) = answer {
                    self.send(answer).await;
                }
            }
            other => {
                let reason = format!("protocol {other} is not enabled on this device");
                self.refuse(&envelope, reason).await;
            }
        }
    }

    async fn control(&mut self, envelope: Envelope) {
        let sid = envelope.sid.clone();
        let message = match Control::from_envelope(&envelope) {
            Ok(message) => message,
            Err(error) => return self.refuse(&envelope, describe(error)).await,
        };
        match message {
            Control::Open { versions } => {
                let chosen = tether_proto::compact::choose_version(&versions, &SPOKEN_VERSIONS);
                let Some(chosen) = chosen else {
                    let body = ErrorBody {
                        err: format!(
                            "unsupported protocol versions {versions:?}: this device speaks 1, 2 and 3"
                        ),
                        close: true,
                        ..ErrorBody::default()
                    };
                    return self.send(Control::Error(body).to_envelope(&sid)).await;
                };
                self.remember_version(&sid, chosen);
                let mut protocols = if self.terminal.enabled {
                    vec![SHELL]
                } else {
                    Vec::new()
                };
                if self.port_forwards.enabled() {
                    protocols.push(PORT_FORWARD);
                }
                if self.file_transfers.is_some() {
                    protocols.push(FILE_TRANSFER);
                }
                let accept = Control::Accept {
                    version: chosen,
                    protocols,
                };
                match self.consent.clone() {
                    None => self.send(accept.to_envelope(&sid)).await,
                    Some(consent) => self.ask_consent(consent, &envelope, accept).await,
                }
            }
            Control::Ping => self.send(Control::Pong.to_envelope(&sid)).await,
            Control::Close => {
                self.versions.remove(&sid);
                if let Some(consent) = &self.consent {
                    consent.forget(&sid);
                }
                self.port_forwards.close_session(&sid);
                if let Some(files) = self.file_transfers.as_mut() {
                    files.cancel(&sid);
                }
                if let Some(shell) = self.shells.remove(&sid) {
                    if shell.is_running() {
                        tracing::info!("session {sid} closed: stopping its shell");
                    }
                    shell.stop();
                }
            }
            Control::Error(body) => tracing::warn!("hub reports an error in session {sid}: {}", body.err),
            Control::Pong
            | Control::Accept { .. }
            | Control::Wait { .. }
            | Control::Sessions { .. }
            | Control::Watching { .. }
            | Control::Inventory(_) => {}
        }
    }

    async fn shell(&mut self, envelope: Envelope) {
        let sid = envelope.sid.clone();
        let message = match Shell::from_envelope(&envelope) {
            Ok(message) => message,
            Err(error) => return self.refuse(&envelope, describe(error)).await,
        };
        match message {
            Shell::New {
                user_id,
                width,
                height,
                command,
                local_user,
                ..
            } => {
                let user_id = user_id.unwrap_or_default();
                let size = (width, height);
                let reply = match self.start_shell(&sid, &user_id, size, command, local_user.as_deref()) {
                    Ok(()) => (status::NORMAL, "Shell started".to_owned()),
                    Err(reason) => {
                        tracing::warn!("refused a shell for user {user_id:?}: {reason}");
                        (status::ERROR, reason)
                    }
                };
                let answer = Shell::New {
                    user_id: Some(user_id).filter(|id| !id.is_empty()),
                    width: None,
                    height: None,
                    command: None,
                    local_user: None,
                    status: Some(reply.0),
                    text: reply.1.into_bytes(),
                };
                self.send(answer.to_envelope(&sid)).await;
            }
            Shell::Data(bytes) => self.input(&sid, Input::Data(bytes)),
            Shell::Resize { width, height } => self.input(&sid, Input::Resize { width, height }),
            Shell::Stop { user_id, .. } => {
                let stopped: Vec<String> = if sid.is_empty() {
                    let user = user_id.clone().unwrap_or_default();
                    self.shells
                        .iter()
                        .filter(|(_, shell)| shell.user_id == user)
                        .map(|(sid, _)| sid.clone())
                        .collect()
                } else {
                    vec![sid]
                };
                for sid in stopped {
                    let Some(shell) = self.shells.remove(&sid) else {
                        continue;
                    };
                    let was_running = shell.is_running();
                    shell.stop();
                    if was_running {
                        tracing::info!("stopping the shell of session {sid} at the hub's request");
                        let reply = Shell::Stop {
                            user_id: user_id.clone(),
                            status: Some(status::NORMAL),
                            text: Vec::new(),
                            exit_status: None,
                        };
                        self.send(reply.to_envelope(&sid)).await;
                    }
                }
            }
            Shell::Ping { .. } => self.send(Shell::Pong.to_envelope(&sid)).await,
            Shell::Pong => {}
            Shell::Detach => {
                if let Some(shell) = self.shells.get(&sid).filter(|shell| shell.is_resumable()) {
                    tracing::info!("session {sid}: detached; the shell is kept for resuming");
                    shell.detach();
                }
            }
            Shell::Resume { offset } => self.resume(&sid, offset).await,
        }
    }

    /// Resumes a kept shell from `offset`: the answer (`new`) goes out before the replay.
    async fn resume(&mut self, sid: &str, offset: u64) {
        let shell = self
            .shells
            .get(sid)
            .filter(|shell| shell.is_running() && shell.is_resumable());
        let (status, text) = match shell {
            Some(_) => (status::NORMAL, "Shell resumed".to_owned()),
            None => (
                status::ERROR,
                "no shell to resume: it is gone (it ended, the agent restarted, or the grace period \
                 ran out)"
                    .to_owned(),
            ),
        };
        let user_id = shell.map(|shell| shell.user_id.clone());
        let answer = Shell::New {
            user_id,
            width: None,
            height: None,
            command: None,
            local_user: None,
            status: Some(status),
            text: text.into_bytes(),
        };
        self.send(answer.to_envelope(sid)).await;
        if let Some(shell) = self.shells.get(sid).filter(|_| status == status::NORMAL) {
            tracing::info!("session {sid}: resumed from output offset {offset}");
            shell.resume(offset);
        }
    }

    /// Checks the limits, in the documented order, then starts the shell.
    fn start_shell(
        &mut self,
        sid: &str,
        user_id: &str,
        (width, height): (Option<u16>, Option<u16>),
        command: Option<String>,
        local_user: Option<&str>,
    ) -> Result<(), String> {
        let terminal = &self.terminal;
        if !terminal.enabled {
            return Err("terminal is disabled on this device".into());
        }
        let session_version = self.versions.get(sid).copied().unwrap_or(version::MENDER);
        if command.is_some() && session_version < version::TETHER {
            return Err("exec needs protocol version 2".into());
        }
        if local_user.is_some() && session_version < version::TETHER {
            return Err("choosing a local user needs protocol version 2".into());
        }
        self.shells.retain(|_, shell| shell.is_running());
        if self.shells.contains_key(sid) {
            return Err("a shell is already running in this session".into());
        }
        self.make_room_for(user_id);
        let terminal = &self.terminal;
        if self.shells.len() >= terminal.max_sessions {
            return Err(format!(
                "too many shells: limit of {} shells on this device reached (terminal.max_sessions)",
                terminal.max_sessions
            ));
        }
        let for_user = self
            .shells
            .values()
            .filter(|shell| shell.user_id == user_id)
            .count();
        if for_user >= terminal.max_sessions_per_user {
            return Err(format!(
                "too many shells for user {user_id}: limit of {} per user reached \
                 (terminal.max_sessions_per_user)",
                terminal.max_sessions_per_user
            ));
        }
        let resumable =
            session_version >= version::TETHER && command.is_none() && terminal.grace_period_secs > 0;
        let stream = ShellStream::new(
            terminal.output_buffer_bytes,
            resumable,
            Duration::from_secs(terminal.grace_period_secs),
        );
        let output = Output {
            destination: Destination {
                sid: sid.to_owned(),
                outbound: self.outbound.clone(),
                chunk: if session_version >= version::TETHER {
                    VERSION_2_CHUNK
                } else {
                    VERSION_1_CHUNK
                },
            },
            stream: Arc::new(stream),
        };
        let limits = Limits::from_secs(terminal.idle_timeout_secs, terminal.max_duration_secs);
        let account = shell::shell_account(terminal, local_user)?;
        let handle = match command {
            Some(command) => {
                let exec = shell::spawn_exec(terminal, &account, &command)?;
                tracing::info!("session {sid}: user {user_id:?} runs a command");
                shell::start_exec(exec, user_id.to_owned(), output, limits)
            }
            None => {
                let width = width.filter(|w| *w > 0).unwrap_or(terminal.width);
                let height = height.filter(|h| *h > 0).unwrap_or(terminal.height);
                let interactive = shell::spawn_interactive(terminal, &account, width, height)?;
                tracing::info!("session {sid}: shell started for user {user_id:?}");
                shell::start_interactive(interactive, user_id.to_owned(), output, limits)
            }
        };
        self.shells.insert(sid.to_owned(), handle);
        Ok(())
    }

    /// Tells the hub to wait, then answers `open` with `accept` once the device approves (or
    /// with an error that closes the session). The wait runs beside the connection.
    async fn ask_consent(&self, consent: Consent, open: &Envelope, accept: Control) {
        let sid = open.sid.clone();
        let Control::Accept { protocols, .. } = &accept else {
            return;
        };
        let request = consent::Request {
            sid: sid.clone(),
            user: open
                .props
                .str("user_name")
                .or(open.props.str("user_id"))
                .unwrap_or("an unnamed user")
                .to_owned(),
            protocols: protocols.iter().map(u16::to_string).collect::<Vec<_>>().join(","),
        };
        let wait = Control::Wait {
            reason: "waiting for approval on the device".into(),
            timeout_secs: consent.timeout_secs(),
        };
        self.send(wait.to_envelope(&sid)).await;
        let outbound = self.outbound.clone();
        tokio::spawn(async move {
            let reply = match consent.ask(&request).await {
                Ok(()) => {
                    tracing::info!("session {sid} of {} approved on the device", request.user);
                    accept.to_envelope(&sid)
                }
                Err(why) => {
                    tracing::warn!("session {sid} of {} refused: {why}", request.user);
                    let body = ErrorBody {
                        err: why,
                        close: true,
                        ..ErrorBody::default()
                    };
                    Control::Error(body).to_envelope(&sid)
                }
            };
            let _ = outbound.send(reply).await;
        });
    }

    /// A user is never locked out by their own dead sessions: at a limit, the user's shell
    /// detached the longest is ended to make room (other users' shells are never touched).
    fn make_room_for(&mut self, user_id: &str) {
        let for_user = |shells: &HashMap<String, ShellHandle>| {
            shells.values().filter(|shell| shell.user_id == user_id).count()
        };
        let full = self.shells.len() >= self.terminal.max_sessions
            || for_user(&self.shells) >= self.terminal.max_sessions_per_user;
        if !full {
            return;
        }
        let oldest = self
            .shells
            .iter()
            .filter(|(_, shell)| shell.user_id == user_id)
            .filter_map(|(sid, shell)| shell.detached_since().map(|since| (since, sid.clone())))
            .min();
        if let Some((_, sid)) = oldest
            && let Some(shell) = self.shells.remove(&sid)
        {
            tracing::info!("ending detached shell {sid} of user {user_id:?} to make room for a new one");
            self.versions.remove(&sid);
            shell.stop();
            // So that the hub stops offering it for re-attaching.
            let stop = Shell::Stop {
                user_id: Some(user_id.to_owned()),
                status: Some(status::ERROR),
                text: b"ended to make room for a new shell of the same user".to_vec(),
                exit_status: None,
            };
            let _ = self.outbound.try_send(stop.to_envelope(&sid));
        }
    }

    fn input(&mut self, sid: &str, input: Input) {
        match self.shells.get(sid) {
            Some(shell) if shell.is_running() => {
                if !shell.send(input) {
                    tracing::warn!("session {sid}: the shell is not reading its input; input dropped");
                }
            }
            _ => tracing::debug!("session {sid}: no shell running; input ignored"),
        }
    }

    fn remember_version(&mut self, sid: &str, chosen: u32) {
        if self.versions.len() >= MAX_REMEMBERED_SESSIONS && !self.versions.contains_key(sid) {
            let (shells, port_forwards) = (&self.shells, &self.port_forwards);
            self.versions
                .retain(|sid, _| shells.contains_key(sid) || port_forwards.has_session(sid));
        }
        self.versions.insert(sid.to_owned(), chosen);
    }

    /// The connection is gone: resumable shells are detached and kept, everything else ends.
    /// Returns the tasks of the ended shells, which finish once the shells are reaped.
    pub fn detach_all(&mut self) -> Vec<JoinHandle<()>> {
        self.port_forwards.close_all();
        if let Some(files) = self.file_transfers.as_mut() {
            files.end_all();
        }
        let (kept, ended): (HashMap<_, _>, HashMap<_, _>) = self
            .shells
            .drain()
            .partition(|(_, shell)| shell.is_running() && shell.is_resumable());
        for shell in kept.values() {
            shell.detach();
        }
        if !kept.is_empty() {
            tracing::info!(
                "keeping {} shell(s) for {} s, to be resumed (terminal.grace_period_secs)",
                kept.len(),
                self.terminal.grace_period_secs
            );
        }
        self.versions.retain(|sid, _| kept.contains_key(sid));
        self.shells = kept;
        let running = ended.values().filter(|shell| shell.is_running()).count();
        if running > 0 {
            tracing::info!("ending {running} shell(s)");
        }
        ended.into_values().map(|shell| shell.stop()).collect()
    }

    /// Ends every shell (shutdown); returns their tasks, which finish once the shells are reaped.
    pub fn end_all(&mut self) -> Vec<JoinHandle<()>> {
        self.versions.clear();
        self.port_forwards.close_all();
        if let Some(files) = self.file_transfers.as_mut() {
            files.end_all();
        }
        let running = self.shells.values().filter(|shell| shell.is_running()).count();
        if running > 0 {
            tracing::info!("ending {running} shell(s)");
        }
        self.shells.drain().map(|(_, shell)| shell.stop()).collect()
    }

    /// Answers a message this device cannot handle with a control `error` on its session.
    async fn refuse(&self, envelope: &Envelope, reason: String) {
        tracing::warn!(
            "session {}: {reason} (protocol {}, type {:?})",
            envelope.sid,
            envelope.proto,
            envelope.typ
        );
        let body = ErrorBody {
            err: reason,
            close: false,
            msgproto: Some(envelope.proto),
            msgtype: Some(envelope.typ.clone()),
            ..ErrorBody::default()
        };
        self.send(Control::Error(body).to_envelope(&envelope.sid)).await;
    }

    async fn send(&self, envelope: Envelope) {
        let _ = self.outbound.send(envelope).await;
    }
}

fn describe(error: ProtoError) -> String {
    match error {
        ProtoError::UnknownType { typ, .. } => format!("unknown message type {typ}"),
        other => format!("malformed message: {other}"),
    }
}

mod announcement;

#[cfg(test)]
mod tests;
