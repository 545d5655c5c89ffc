//! The version handshake with the device, and the wait for its local consent.

use std::time::Duration;

use tether_proto::{Envelope, compact::link, control::Control, protocol, value::Value, version};
use tokio::time::Instant;

use crate::relay::router::{Lane, SessionEvent, SessionLink};

use super::{Sink, send};

/// How long a device may take to answer the `open` handshake before we assume version 1.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a device may keep a session waiting for local consent.
const MAX_CONSENT_WAIT_SECS: u64 = 600;

/// What the hub's `open` offers beyond versions 1 and 2 (from the configuration).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Offer {
    /// Version 3 (`compact_device_leg`).
    pub compact: bool,
    /// Per-message deflate of the device's payloads (`compress_device_leg`, with version 3 only).
    pub compression: bool,
}

impl Offer {
    pub(crate) fn from_config(config: &crate::config::HubConfig) -> Offer {
        Offer {
            compact: config.compact_device_leg,
            compression: config.compact_device_leg && config.compress_device_leg,
        }
    }
}

/// The device's answer to the hub's `open`.
#[derive(Debug)]
pub(crate) struct Accepted {
    /// To forward to the user.
    pub accept: Envelope,
    /// The version the session speaks, as told to the user (3 is told as 2).
    pub version: u32,
    /// The version the device chose: 3 when its leg speaks compact frames.
    pub device_version: u32,
}

impl Accepted {
    fn as_chosen(accept: Envelope, version: u32) -> Accepted {
        Accepted {
            accept,
            version,
            device_version: version,
        }
    }
}

/// Offers versions 1 and 2, and 3 when `offer.compact` (`compact_device_leg`); returns the
/// device's `accept` and the chosen version. Version 3 is version 2 in the compact encoding,
/// which only the device leg sees: it is told to the user, and returned, as version 2. The `open` names the user (for the device's consent prompt); a device that asks
/// for local approval (`wait`) gets the time it announces, and `user` (when given) is told.
pub(crate) async fn handshake(
    link: &mut SessionLink,
    sid: &str,
    user_name: &str,
    offer: Offer,
    mut user: Option<&mut Sink>,
) -> Result<Accepted, String> {
    let mut versions = vec![version::MENDER, version::TETHER];
    if offer.compact {
        versions.push(version::COMPACT);
    }
    let open = Control::Open { versions };
    let mut open = open.to_envelope(sid);
    open.props.set("user_name", Value::Str(user_name.to_owned()));
    if offer.compression {
        open.props
            .set(link::COMPRESSION_PROP, Value::Str(link::DEFLATE.to_owned()));
    }
    if !link.send(Lane::Interactive, open).await {
        return Err("the device went offline".into());
    }
    let mut deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    loop {
        let event = match tokio::time::timeout_at(deadline, link.events.recv()).await {
            // A device that ignores `open` speaks version 1.
            Err(_) => {
                let accept = Control::Accept {
                    version: version::MENDER,
                    protocols: vec![protocol::SHELL],
                };
                return Ok(Accepted::as_chosen(accept.to_envelope(sid), version::MENDER));
            }
            Ok(None) => return Err("the device went offline".into()),
            Ok(Some(event)) => event,
        };
        match event {
            SessionEvent::DeviceGone(reason) | SessionEvent::DeviceKicked(reason) => return Err(reason),
            SessionEvent::Superseded => return Err("the session was re-attached elsewhere".into()),
            SessionEvent::Message(envelope) if envelope.proto == protocol::CONTROL => {
                match Control::from_envelope(&envelope) {
                    Ok(Control::Accept { version, .. })
                        if version == version::MENDER || version == version::TETHER =>
                    {
                        return Ok(Accepted::as_chosen(envelope, version));
                    }
                    Ok(Control::Accept {
                        version: version::COMPACT,
                        protocols,
                    }) if offer.compact => {
                        let accept = Control::Accept {
                            version: version::TETHER,
                            protocols,
                        };
                        return Ok(Accepted {
                            accept: accept.to_envelope(sid),
                            version: version::TETHER,
                            device_version: version::COMPACT,
                        });
                    }
                    Ok(Control::Accept { version, .. }) => {
                        return Err(format!(
                            "the device chose protocol version {version}, which the hub does not speak"
                        ));
                    }
                    Ok(Control::Error(body)) => {
                        return Err(format!("the device refused the session: {}", body.err));
                    }
                    Ok(Control::Wait { timeout_secs, .. }) => {
                        let granted = Duration::from_secs(timeout_secs.min(MAX_CONSENT_WAIT_SECS));
                        deadline = Instant::now() + granted + HANDSHAKE_TIMEOUT;
                        if let Some(sink) = user.as_deref_mut() {
                            send(sink, &envelope).await;
                        }
                    }
                    _ => {}
                }
            }
            SessionEvent::Message(_) => {}
        }
    }
}
