//! What an inbound protocol message means to the CLI, decided without I/O so it can be tested:
//! an event for the command, a ping to answer, the end of the session, or nothing.

use tether_proto::{
    Envelope,
    control::{Control, code},
    protocol,
    shell::{self, Shell},
};

/// What happened on the session, as far as a command cares.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// The device started the shell (`new` with status 1).
    Started,
    /// The device refused to start the shell (`new` with status 2), with its reason.
    Refused(String),
    /// Terminal output, with the stream offset of its first byte when the device sends one
    /// (version 2; absent on a marker of dropped output).
    Output(Vec<u8>, Option<u64>),
    /// The shell ended (`stop` from the device).
    Ended {
        status: Option<i64>,
        text: String,
        exit_status: Option<i64>,
    },
    /// A non-fatal error report from the hub or device, to show the operator.
    Notice(String),
    /// The device's leg dropped; the hub waits for it to come back (the text says so).
    Reconnecting(String),
    /// Someone started or stopped watching the terminal live (the text says who).
    Watching(String),
}

#[derive(Debug, PartialEq)]
pub enum Inbound {
    /// The handshake's answer: the protocol version the device chose, and the protocols it
    /// offers (a tether-agent lists only those enabled in its configuration).
    Accepted {
        version: u32,
        protocols: Vec<u16>,
    },
    Event(Event),
    /// Send this back (pings) and carry on.
    Reply(Envelope),
    /// The hub ended the session, saying why.
    Closed(String),
    /// The hub or the device refused a message of `protocol` (a control `error` naming it in
    /// `msgproto`): fatal for a command that speaks that protocol, a notice for the others.
    Refused {
        protocol: u16,
        text: String,
    },
    /// The device asks someone on it to approve the session first (`accept` follows, or an
    /// error).
    Waiting {
        reason: String,
        timeout_secs: u64,
    },
    /// Nothing for the CLI: other protocols, pongs, malformed messages.
    Ignore,
}

pub fn interpret(envelope: &Envelope) -> Inbound {
    match envelope.proto {
        protocol::CONTROL => control(envelope),
        protocol::SHELL => shell_message(envelope),
        // File transfer, port forward... are not this session's business.
        _ => Inbound::Ignore,
    }
}

fn control(envelope: &Envelope) -> Inbound {
    match Control::from_envelope(envelope) {
        Ok(Control::Accept { version, protocols }) => Inbound::Accepted { version, protocols },
        Ok(Control::Ping) => Inbound::Reply(Control::Pong.to_envelope(&envelope.sid)),
        Ok(Control::Error(body)) if body.close => Inbound::Closed(body.err),
        Ok(Control::Error(body)) if body.code == Some(code::RECONNECTING) => {
            Inbound::Event(Event::Reconnecting(body.err))
        }
        Ok(Control::Error(body)) => match body.msgproto {
            Some(refused) if refused != protocol::CONTROL => Inbound::Refused {
                protocol: refused,
                text: body.err,
            },
            _ => Inbound::Event(Event::Notice(body.err)),
        },
        Ok(Control::Close) => Inbound::Closed("the hub closed the session".into()),
        Ok(Control::Wait { reason, timeout_secs }) => Inbound::Waiting { reason, timeout_secs },
        Ok(Control::Watching { user, watching }) => Inbound::Event(Event::Watching(if watching {
            format!("{user} is watching this terminal")
        } else {
            format!("{user} stopped watching this terminal")
        })),
        Ok(Control::Open { .. } | Control::Pong | Control::Sessions { .. } | Control::Inventory(_)) => {
            Inbound::Ignore
        }
        Err(error) => {
            tracing::debug!("ignoring a malformed control message: {error}");
            Inbound::Ignore
        }
    }
}

fn shell_message(envelope: &Envelope) -> Inbound {
    let message = match Shell::from_envelope(envelope) {
        Ok(message) => message,
        Err(error) => {
            tracing::debug!("ignoring a malformed shell message: {error}");
            return Inbound::Ignore;
        }
    };
    let event = match message {
        Shell::New { status, text, .. } if status == Some(shell::status::ERROR) => {
            Event::Refused(text_of(&text))
        }
        Shell::New { .. } => Event::Started,
        Shell::Data(bytes) => Event::Output(bytes, shell::output_offset(envelope)),
        Shell::Stop {
            status,
            text,
            exit_status,
            ..
        } => Event::Ended {
            status,
            text: text_of(&text),
            exit_status,
        },
        // The stock agent kills a shell whose health check goes unanswered.
        Shell::Ping { .. } => return Inbound::Reply(Shell::Pong.to_envelope(&envelope.sid)),
        Shell::Resize { .. } | Shell::Pong | Shell::Resume { .. } | Shell::Detach => {
            return Inbound::Ignore;
        }
    };
    Inbound::Event(event)
}

fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use tether_proto::control::ErrorBody;

    use super::*;

    fn through_the_wire(envelope: Envelope) -> Inbound {
        interpret(&Envelope::decode(&envelope.encode()).unwrap())
    }

    #[test]
    fn accept_carries_the_version() {
        let accept = Control::Accept {
            version: 2,
            protocols: vec![1],
        };
        assert_eq!(
            through_the_wire(accept.to_envelope("s")),
            Inbound::Accepted {
                version: 2,
                protocols: vec![1]
            }
        );
    }

    #[test]
    fn pings_are_answered_on_the_same_session() {
        let Inbound::Reply(pong) = through_the_wire(Control::Ping.to_envelope("s1")) else {
            panic!("a control ping needs a pong");
        };
        assert_eq!(Control::from_envelope(&pong).unwrap(), Control::Pong);
        assert_eq!(pong.sid, "s1");
        let Inbound::Reply(pong) = through_the_wire(Shell::Ping { timeout: Some(65) }.to_envelope("s2"))
        else {
            panic!("a shell ping needs a pong");
        };
        assert_eq!(Shell::from_envelope(&pong).unwrap(), Shell::Pong);
        assert_eq!(pong.sid, "s2");
    }

    #[test]
    fn closing_errors_end_the_session_others_are_shown() {
        let mut body = ErrorBody::new("device disconnected");
        body.close = true;
        assert_eq!(
            through_the_wire(Control::Error(body).to_envelope("s")),
            Inbound::Closed("device disconnected".into())
        );
        assert_eq!(
            through_the_wire(Control::Error(ErrorBody::new("hmm")).to_envelope("s")),
            Inbound::Event(Event::Notice("hmm".into()))
        );
    }

    #[test]
    fn an_error_naming_a_protocol_is_a_refusal_of_it() {
        let body = ErrorBody {
            err: "protocol 2 is not enabled on this device".into(),
            msgproto: Some(protocol::FILE_TRANSFER),
            msgtype: Some("stat".into()),
            ..ErrorBody::default()
        };
        assert_eq!(
            through_the_wire(Control::Error(body).to_envelope("s")),
            Inbound::Refused {
                protocol: protocol::FILE_TRANSFER,
                text: "protocol 2 is not enabled on this device".into()
            }
        );
        let about_control = ErrorBody {
            msgproto: Some(protocol::CONTROL),
            ..ErrorBody::new("malformed")
        };
        assert_eq!(
            through_the_wire(Control::Error(about_control).to_envelope("s")),
            Inbound::Event(Event::Notice("malformed".into()))
        );
    }

    #[test]
    fn shell_answers_become_events() {
        let new = |status, text: &[u8]| Shell::New {
            user_id: None,
            width: None,
            height: None,
            command: None,
            local_user: None,
            status: Some(status),
            text: text.to_vec(),
        };
        assert_eq!(
            through_the_wire(new(1, b"Shell started").to_envelope("s")),
            Inbound::Event(Event::Started)
        );
        assert_eq!(
            through_the_wire(new(2, b"too many shells\n").to_envelope("s")),
            Inbound::Event(Event::Refused("too many shells".into()))
        );
        assert_eq!(
            through_the_wire(Shell::Data(b"\x1b[1mhi".to_vec()).to_envelope("s")),
            Inbound::Event(Event::Output(b"\x1b[1mhi".to_vec(), None))
        );
        let stop = Shell::Stop {
            user_id: None,
            status: Some(1),
            text: Vec::new(),
            exit_status: Some(3),
        };
        assert_eq!(
            through_the_wire(stop.to_envelope("s")),
            Inbound::Event(Event::Ended {
                status: Some(1),
                text: String::new(),
                exit_status: Some(3)
            })
        );
    }

    #[test]
    fn unknown_and_malformed_messages_are_ignored() {
        assert_eq!(
            through_the_wire(Envelope::new(protocol::FILE_TRANSFER, "stat", "s")),
            Inbound::Ignore
        );
        assert_eq!(
            through_the_wire(Envelope::new(protocol::SHELL, "bogus", "s")),
            Inbound::Ignore
        );
        assert_eq!(
            through_the_wire(Envelope::new(protocol::SHELL, "resize", "s")),
            Inbound::Ignore
        );
    }

    #[test]
    fn a_watcher_is_a_notice_and_unknown_control_types_are_ignored() {
        let watching = Control::Watching {
            user: "bob".into(),
            watching: true,
        };
        assert_eq!(
            through_the_wire(watching.to_envelope("s")),
            Inbound::Event(Event::Watching("bob is watching this terminal".into()))
        );
        // A newer hub's control message this CLI does not know.
        assert_eq!(
            through_the_wire(Envelope::new(protocol::CONTROL, "from-the-future", "s")),
            Inbound::Ignore
        );
    }
}
