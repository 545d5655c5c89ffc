//! What a user session does, as audit events: terminals opened and closed, files downloaded and
//! uploaded, ports forwarded, and the device's policy refusals. The relay shows this observer
//! every message; it answers with the events to record before the message is passed on.

use std::collections::HashMap;

use serde_json::json;
use tether_proto::{
    Envelope,
    file_transfer::FileTransfer,
    port_forward::{PortForward, Target},
    protocol,
    shell::{self, Shell},
};
use tokio::time::Instant;

use crate::{domain::audit::Actor, domain::audit::NewEvent, domain::audit::Object, domain::audit::Outcome};

struct Terminal {
    opened: Instant,
    bytes_in: u64,
    bytes_out: u64,
    /// Set once the device confirmed the shell.
    confirmed: bool,
    command: Option<String>,
    /// The local user the operator asked for (`user@device`), if any.
    local_user: Option<String>,
    /// A re-attach to a shell an earlier link started: this link's part of it.
    resumed: bool,
}

struct Transfer {
    upload: bool,
    path: String,
    bytes: u64,
    /// The checksum the uploader sent with its final chunk.
    sha256: Option<String>,
    total: Option<i64>,
}

struct Forward {
    target: Target,
    confirmed: bool,
    bytes_to_device: u64,
    bytes_from_device: u64,
}

pub struct SessionAudit {
    actor: Actor,
    object: Object,
    sid: String,
    terminal: Option<Terminal>,
    transfer: Option<Transfer>,
    forwards: HashMap<String, Forward>,
}

impl SessionAudit {
    pub fn new(actor: Actor, object: Object, sid: &str) -> SessionAudit {
        SessionAudit {
            actor,
            object,
            sid: sid.to_owned(),
            terminal: None,
            transfer: None,
            forwards: HashMap::new(),
        }
    }

    fn event(&self, action: &'static str, outcome: Outcome, details: serde_json::Value) -> NewEvent {
        NewEvent::new(self.actor.clone(), action, self.object.clone(), outcome)
            .details(details)
            .session(&self.sid)
    }

    /// This link re-attaches to a kept shell: the device's answer opens this link's part of the
    /// terminal (`terminal.open` with `resumed`), and its end closes it.
    pub fn resume(&mut self) {
        self.terminal = Some(Terminal {
            opened: Instant::now(),
            bytes_in: 0,
            bytes_out: 0,
            confirmed: false,
            command: None,
            local_user: None,
            resumed: true,
        });
    }

    /// A file transfer is under way (requested, not yet finished or failed).
    pub fn transferring(&self) -> bool {
        self.transfer.is_some()
    }

    /// A message from the user, about to go to the device.
    pub fn observe_user(&mut self, envelope: &Envelope) {
        match envelope.proto {
            protocol::SHELL => match Shell::from_envelope(envelope) {
                Ok(Shell::New {
                    command, local_user, ..
                }) => {
                    self.terminal = Some(Terminal {
                        opened: Instant::now(),
                        bytes_in: 0,
                        bytes_out: 0,
                        confirmed: false,
                        command,
                        local_user,
                        resumed: false,
                    })
                }
                Ok(Shell::Data(data)) => {
                    if let Some(terminal) = &mut self.terminal {
                        terminal.bytes_in += data.len() as u64;
                    }
                }
                _ => {}
            },
            protocol::FILE_TRANSFER => match FileTransfer::from_envelope(envelope) {
                Ok(FileTransfer::GetFile { path, .. }) => {
                    self.transfer = Some(Transfer {
                        upload: false,
                        path,
                        bytes: 0,
                        sha256: None,
                        total: None,
                    })
                }
                Ok(FileTransfer::PutFile(put)) => {
                    self.transfer = Some(Transfer {
                        upload: true,
                        path: put.path,
                        bytes: 0,
                        sha256: None,
                        total: None,
                    })
                }
                Ok(FileTransfer::FileChunk { offset, data, sha256 }) => {
                    if let Some(transfer) = self.transfer.as_mut().filter(|t| t.upload) {
                        transfer.bytes += data.len() as u64;
                        if data.is_empty() {
                            transfer.total = Some(offset);
                            transfer.sha256 = sha256;
                        }
                    }
                }
                _ => {}
            },
            protocol::PORT_FORWARD if envelope.typ == "forward" => {
                if let Some((connection_id, size)) = PortForward::forward_size(envelope)
                    && let Some(forward) = self.forwards.get_mut(connection_id)
                {
                    forward.bytes_to_device += size as u64;
                }
            }
            protocol::PORT_FORWARD => {
                if let Ok(PortForward::New {
                    connection_id,
                    target: Some(target),
                    ..
                }) = PortForward::from_envelope(envelope)
                {
                    let forward = Forward {
                        target,
                        confirmed: false,
                        bytes_to_device: 0,
                        bytes_from_device: 0,
                    };
                    self.forwards.insert(connection_id, forward);
                }
            }
            _ => {}
        }
    }

    /// A message from the device, about to go to the user. Returns the events it completes.
    pub fn observe_device(&mut self, envelope: &Envelope) -> Vec<NewEvent> {
        match envelope.proto {
            protocol::SHELL => self.shell_from_device(envelope),
            protocol::FILE_TRANSFER => self.file_from_device(envelope),
            protocol::PORT_FORWARD => self.forward_from_device(envelope),
            _ => Vec::new(),
        }
    }

    fn shell_from_device(&mut self, envelope: &Envelope) -> Vec<NewEvent> {
        let Ok(message) = Shell::from_envelope(envelope) else {
            return Vec::new();
        };
        let Some(terminal) = &mut self.terminal else {
            return Vec::new();
        };
        match message {
            Shell::Data(data) => {
                terminal.bytes_out += data.len() as u64;
                Vec::new()
            }
            Shell::New { status, text, .. } => {
                let command = terminal.command.clone();
                let local_user = terminal.local_user.clone();
                if status == Some(shell::status::NORMAL) {
                    if terminal.confirmed {
                        // The device answered a resume after its own leg dropped: same terminal.
                        return Vec::new();
                    }
                    terminal.confirmed = true;
                    let mut details = json!({ "command": command });
                    if terminal.resumed {
                        details["resumed"] = json!(true);
                    }
                    if let Some(user) = local_user {
                        details["local_user"] = json!(user);
                    }
                    vec![self.event("terminal.open", Outcome::Success, details)]
                } else {
                    self.terminal = None;
                    let reason = String::from_utf8_lossy(&text).into_owned();
                    let mut details = json!({ "command": command, "reason": reason });
                    if let Some(user) = local_user {
                        details["local_user"] = json!(user);
                    }
                    vec![self.event("terminal.open", Outcome::Refused, details)]
                }
            }
            Shell::Stop {
                text, exit_status, ..
            } => {
                let reason = String::from_utf8_lossy(&text).into_owned();
                self.close_terminal(json!({ "reason": reason, "exit_status": exit_status }))
                    .into_iter()
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    fn close_terminal(&mut self, extra: serde_json::Value) -> Option<NewEvent> {
        let terminal = self.terminal.take().filter(|t| t.confirmed)?;
        let mut details = json!({
            "duration_ms": terminal.opened.elapsed().as_millis() as u64,
            "bytes_in": terminal.bytes_in,
            "bytes_out": terminal.bytes_out,
            "command": terminal.command,
        });
        if let Some(user) = &terminal.local_user {
            details["local_user"] = json!(user);
        }
        if let (Some(details), Some(extra)) = (details.as_object_mut(), extra.as_object()) {
            details.extend(extra.clone());
        }
        Some(self.event("terminal.close", Outcome::Success, details))
    }

    fn file_from_device(&mut self, envelope: &Envelope) -> Vec<NewEvent> {
        let Ok(message) = FileTransfer::from_envelope(envelope) else {
            return Vec::new();
        };
        match message {
            FileTransfer::FileChunk { offset, data, sha256 } => {
                let Some(transfer) = self.transfer.as_mut().filter(|t| !t.upload) else {
                    return Vec::new();
                };
                transfer.bytes += data.len() as u64;
                if !data.is_empty() {
                    return Vec::new();
                }
                let path = transfer.path.clone();
                let bytes = transfer.bytes;
                self.transfer = None;
                let details = json!({ "path": path, "size": offset, "bytes_sent": bytes, "sha256": sha256 });
                vec![self.event("file.download", Outcome::Success, details)]
            }
            FileTransfer::Ack { offset } => {
                let Some(transfer) = self.transfer.as_ref().filter(|t| t.upload) else {
                    return Vec::new();
                };
                if transfer.total != Some(offset) {
                    return Vec::new();
                }
                let details = json!({ "path": transfer.path, "size": offset, "bytes_sent": transfer.bytes, "sha256": transfer.sha256 });
                self.transfer = None;
                vec![self.event("file.upload", Outcome::Success, details)]
            }
            FileTransfer::Error(body) => {
                let (action, path) = match self.transfer.take() {
                    Some(transfer) if transfer.upload => ("file.upload", Some(transfer.path)),
                    Some(transfer) => ("file.download", Some(transfer.path)),
                    // A refused stat, list or mkdir: only policy refusals are security events.
                    None if body.code == Some(403) => ("file.access", None),
                    None => return Vec::new(),
                };
                let outcome = if body.code == Some(403) {
                    Outcome::Refused
                } else {
                    Outcome::Failure
                };
                let details =
                    json!({ "path": path, "reason": body.err, "code": body.code, "request": body.msgtype });
                vec![self.event(action, outcome, details)]
            }
            _ => Vec::new(),
        }
    }

    fn forward_from_device(&mut self, envelope: &Envelope) -> Vec<NewEvent> {
        // Data is only counted: not decoded (copied) on every relayed forward.
        if let Some((connection_id, size)) = PortForward::forward_size(envelope) {
            if let Some(forward) = self.forwards.get_mut(connection_id) {
                forward.bytes_from_device += size as u64;
            }
            return Vec::new();
        }
        let Ok(message) = PortForward::from_envelope(envelope) else {
            return Vec::new();
        };
        let connection_id = message.connection_id().to_owned();
        match message {
            PortForward::New { target: None, .. } => {
                let Some(forward) = self.forwards.get_mut(&connection_id) else {
                    return Vec::new();
                };
                forward.confirmed = true;
                let details = target_details(&forward.target, &connection_id);
                vec![self.event("port_forward.open", Outcome::Success, details)]
            }
            PortForward::Error { body, .. } => match self.forwards.get(&connection_id) {
                Some(forward) if !forward.confirmed => {
                    let mut details = target_details(&forward.target, &connection_id);
                    details["reason"] = json!(body.err);
                    let outcome = if body.code == Some(403) {
                        Outcome::Refused
                    } else {
                        Outcome::Failure
                    };
                    self.forwards.remove(&connection_id);
                    vec![self.event("port_forward.open", outcome, details)]
                }
                _ => Vec::new(),
            },
            PortForward::Stop { .. } => self.close_forward(&connection_id).into_iter().collect(),
            _ => Vec::new(),
        }
    }

    fn close_forward(&mut self, connection_id: &str) -> Option<NewEvent> {
        let forward = self.forwards.remove(connection_id).filter(|f| f.confirmed)?;
        let mut details = target_details(&forward.target, connection_id);
        details["bytes_to_device"] = json!(forward.bytes_to_device);
        details["bytes_from_device"] = json!(forward.bytes_from_device);
        Some(self.event("port_forward.close", Outcome::Success, details))
    }

    /// The session ended: close whatever was still open, with the reason.
    pub fn session_ended(&mut self, reason: &str) -> Vec<NewEvent> {
        let mut events: Vec<NewEvent> = self
            .close_terminal(json!({ "reason": reason }))
            .into_iter()
            .collect();
        if let Some(transfer) = self.transfer.take() {
            let action = if transfer.upload {
                "file.upload"
            } else {
                "file.download"
            };
            let details = json!({ "path": transfer.path, "bytes_sent": transfer.bytes, "reason": format!("interrupted: {reason}") });
            events.push(self.event(action, Outcome::Failure, details));
        }
        let open: Vec<String> = self.forwards.keys().cloned().collect();
        events.extend(open.iter().filter_map(|id| self.close_forward(id)));
        events
    }
}

fn target_details(target: &Target, connection_id: &str) -> serde_json::Value {
    json!({
        "target": format!("{}:{}", target.host, target.port),
        "protocol": target.transport.as_str(),
        "connection_id": connection_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_shell(local_user: Option<&str>, status: Option<i64>) -> Envelope {
        Shell::New {
            user_id: None,
            width: None,
            height: None,
            command: Some("id -un".into()),
            local_user: local_user.map(str::to_owned),
            status,
            text: Vec::new(),
        }
        .to_envelope("s")
    }

    #[test]
    fn terminal_events_name_the_requested_local_user() {
        let mut audit = SessionAudit::new(Actor::system(), Object::device("d", "dev"), "s");
        audit.observe_user(&new_shell(Some("daemon"), None));
        let events = audit.observe_device(&new_shell(None, Some(shell::status::NORMAL)));
        assert_eq!(events[0].action, "terminal.open");
        assert_eq!(events[0].details["local_user"], "daemon");
        assert_eq!(events[0].details["command"], "id -un");
        let stop = Shell::Stop {
            user_id: None,
            status: Some(shell::status::NORMAL),
            text: Vec::new(),
            exit_status: Some(0),
        };
        let events = audit.observe_device(&stop.to_envelope("s"));
        assert_eq!(events[0].details["local_user"], "daemon");

        // A refused shell names it too; without a request, the field is absent (as before).
        audit.observe_user(&new_shell(Some("root"), None));
        let events = audit.observe_device(&new_shell(None, Some(shell::status::ERROR)));
        assert_eq!(events[0].outcome, Outcome::Refused);
        assert_eq!(events[0].details["local_user"], "root");
        audit.observe_user(&new_shell(None, None));
        let events = audit.observe_device(&new_shell(None, Some(shell::status::NORMAL)));
        assert!(events[0].details.get("local_user").is_none());
    }
}
