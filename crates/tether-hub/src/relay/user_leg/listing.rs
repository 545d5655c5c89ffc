//! Lists a session's file transfers and port forwards while they run (`relay::active_sessions`):
//! a transfer from its `get_file` or `put_file` to its end, a port forward from its first
//! connection to the end of the session (one row however many connections it carries).

use tether_proto::{Envelope, file_transfer::FileTransfer, port_forward::PortForward, protocol};

use crate::{
    domain::principal::Principal,
    relay::{
        Relay,
        active_sessions::{self, Listed, Owner},
    },
    store::active_sessions::ActivityDetail,
};

use super::Session;

/// A user message about to go to the device: starts (or extends) the row it calls for. A row
/// that cannot be written leaves the session unlisted (logged), never ends it: the list is a
/// view, the audit log the record (and fails closed by itself).
pub(super) async fn list_activity(state: &Relay, session: &mut Session<'_>, envelope: &Envelope) {
    let detail = match envelope.proto {
        protocol::FILE_TRANSFER if matches!(envelope.typ.as_str(), "get_file" | "put_file") => {
            match FileTransfer::from_envelope(envelope) {
                Ok(FileTransfer::GetFile { path, .. }) => active_sessions::file_transfer(false, &path),
                Ok(FileTransfer::PutFile(put)) => active_sessions::file_transfer(true, &put.path),
                _ => return,
            }
        }
        protocol::PORT_FORWARD if envelope.typ == "new" => {
            let Ok(PortForward::New {
                target: Some(target), ..
            }) = PortForward::from_envelope(envelope)
            else {
                return;
            };
            let target = active_sessions::forward_target(&target);
            if let Some(listed) = &mut session.listed_forward {
                // The common case, a connection to a known target, writes nothing.
                if let Err(error) = listed.reach(target).await {
                    tracing::warn!(
                        "session {}: cannot list its forward's target: {error:#}",
                        session.sid
                    );
                }
                return;
            }
            ActivityDetail::PortForward {
                targets: vec![target],
            }
        }
        _ => return,
    };
    let user_name = match &session.principal {
        Principal::User { user, .. } => user.name.clone(),
        Principal::Device { .. } => String::new(),
    };
    let owner = Owner {
        sid: session.sid,
        user_id: session.user_id,
        user_name: &user_name,
        device_id: &session.device.id,
        device_name: &session.device.name,
    };
    let transfer = matches!(detail, ActivityDetail::FileTransfer { .. });
    if transfer {
        // A new request replaces the transfer before it (as the audit's observer does).
        session.listed_transfer = None;
    }
    let listed = Listed::start_logged(&state.store, &state.replica_id, owner, detail).await;
    // A forward gets here only while it has no row (the branch above returns).
    if transfer {
        session.listed_transfer = listed;
    } else {
        session.listed_forward = listed;
    }
}

/// After the device's messages were delivered: a transfer they ended (done, failed, refused)
/// leaves the list.
pub(super) fn transfer_may_have_ended(session: &mut Session<'_>) {
    if session.listed_transfer.is_some() && !session.audit.transferring() {
        session.listed_transfer = None;
    }
}
