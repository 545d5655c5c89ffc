//! The session a file command talks over: file messages in and out, and, on version 2, a new
//! session when the old one drops (backoff 0.5 s doubling to 10 s, given up after 2 minutes),
//! so that a transfer can resume. Each command opens its own session, so file data never
//! shares a terminal's.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use tether_proto::{api::Device, control::Control, file_transfer::FileTransfer, protocol, version};
use tokio::time::{Instant, sleep};

use crate::{
    api::Api,
    failure,
    hub::{Authenticated, HubOptions, authenticated},
    output::say,
    resolve::find,
    session::Session,
};

const FIRST_RETRY: Duration = Duration::from_millis(500);
const LONGEST_RETRY: Duration = Duration::from_secs(10);
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);

pub struct Link {
    login: Authenticated,
    device: Device,
    session: Session,
    /// The device as the operator named it, for messages.
    pub label: String,
    /// How many times the session was re-established.
    pub reconnects: u32,
}

impl Link {
    /// Resolves `query` to a device and opens a session to it.
    pub async fn open(options: &HubOptions, query: &str) -> Result<Link> {
        let login = authenticated(options)?;
        let api = Api::new(&login.hub, Some(login.token.clone()))?;
        let device = find(&api, query).await?;
        let session = Session::open(&login, &device, protocol::FILE_TRANSFER).await?;
        Ok(Link {
            login,
            device,
            session,
            label: query.to_owned(),
            reconnects: 0,
        })
    }

    /// The negotiated protocol version (1: stock mender-connect, 2: tether-agent).
    pub fn version(&self) -> u32 {
        self.session.version
    }

    pub fn can_resume(&self) -> bool {
        self.version() >= version::TETHER
    }

    pub fn send(&self, message: &FileTransfer) {
        let session = &self.session;
        session
            .outgoing()
            .send_envelope(&message.to_envelope(session.sid()));
    }

    /// The next file transfer message; errors mean the session is gone, or file transfer was
    /// refused on it (see [`crate::session`]).
    pub async fn recv(&mut self) -> Result<FileTransfer> {
        loop {
            let envelope = self.session.next_envelope().await?;
            match envelope.proto {
                protocol::FILE_TRANSFER => match FileTransfer::from_envelope(&envelope) {
                    Ok(message) => return Ok(message),
                    Err(error) => tracing::debug!("ignoring a malformed file transfer message: {error}"),
                },
                protocol::CONTROL => {
                    if let Ok(Control::Error(body)) = Control::from_envelope(&envelope) {
                        say!("tether: {}", body.err);
                    }
                }
                _ => {}
            }
        }
    }

    /// Sends a request (`stat`, `list`, `mkdir`) and returns its answer, asking again over a
    /// new session if the old one drops (version 2).
    pub async fn request(&mut self, message: &FileTransfer) -> Result<FileTransfer> {
        loop {
            self.send(message);
            match self.recv().await {
                Ok(answer) => return Ok(answer),
                Err(lost) => self.reconnect(lost).await?,
            }
        }
    }

    /// Replaces a dropped session by a new one; on version 1 (no resume) the loss is final, and
    /// so is a refusal (a new session would be refused the same way).
    pub async fn reconnect(&mut self, lost: anyhow::Error) -> Result<()> {
        if failure::is_refusal(&lost) {
            return Err(lost);
        }
        if !self.can_resume() {
            return Err(lost.context("the transfer cannot resume (protocol version 1)"));
        }
        tracing::debug!("session lost: {lost:#}");
        let started = Instant::now();
        let mut delay = FIRST_RETRY;
        loop {
            sleep(delay).await;
            match Session::open(&self.login, &self.device, protocol::FILE_TRANSFER).await {
                Ok(session) => {
                    let previous = std::mem::replace(&mut self.session, session);
                    drop(previous);
                    self.reconnects += 1;
                    if !self.can_resume() {
                        bail!("the device now speaks protocol version 1 and cannot resume the transfer");
                    }
                    return Ok(());
                }
                Err(error) if failure::is_refusal(&error) => return Err(error),
                Err(error) if started.elapsed() + delay >= GIVE_UP_AFTER => {
                    return Err(error).with_context(|| {
                        format!(
                            "{}: connection lost ({lost:#}) and not restored within {} s",
                            self.label,
                            GIVE_UP_AFTER.as_secs()
                        )
                    });
                }
                Err(error) => {
                    tracing::debug!("reconnecting: {error:#}");
                    delay = (delay * 2).min(LONGEST_RETRY);
                }
            }
        }
    }

    pub async fn close(self) {
        self.session.close().await;
    }
}
