//! The error markers that decide exit codes and retries: a transport failure (the hub could not
//! be reached, the connection dropped or went silent) is told apart from a refusal, because
//! `tether exec` reports the former as 255, like ssh, so scripts can tell it from the command's
//! own status; and a refusal by the hub or the device ends a command at once (exit 1), where a
//! lost connection may be retried.

use std::fmt;

/// The hub could not be reached or the connection to it failed mid-session.
#[derive(Debug)]
pub struct TransportError(pub String);

impl fmt::Display for TransportError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for TransportError {}

/// Builds a [`TransportError`] wrapped in `anyhow`, so it survives added context.
pub fn transport(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(TransportError(message.into()))
}

/// The connection dropped or went silent (not a refusal, not the hub ending the session): a
/// resumable terminal reconnects.
#[derive(Debug)]
pub struct ConnectionLost(pub String);

impl fmt::Display for ConnectionLost {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for ConnectionLost {}

/// A lost connection (also a transport failure, for exit codes).
pub fn lost(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(ConnectionLost(message.into()))
}

pub fn is_lost(error: &anyhow::Error) -> bool {
    error.downcast_ref::<ConnectionLost>().is_some()
}

/// The hub or the device refused what the command asked for, in words: retrying cannot help.
#[derive(Debug)]
pub struct Refusal(pub String);

impl fmt::Display for Refusal {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

pub fn refusal(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Refusal(message.into()))
}

pub fn is_refusal(error: &anyhow::Error) -> bool {
    error.downcast_ref::<Refusal>().is_some()
}

/// Whether `error` (or anything it wraps) is a transport failure.
pub fn is_transport(error: &anyhow::Error) -> bool {
    error.downcast_ref::<TransportError>().is_some() || is_lost(error)
}

/// The transport error for a hub that could not be reached, with a hint when the cause is the
/// most common first-run mistake: a self-signed hub certificate that is not trusted yet.
pub fn unreachable(hub: &str, error: &(dyn std::error::Error + 'static)) -> anyhow::Error {
    let cause = describe(error);
    let hint = if cause.contains("invalid peer certificate") {
        " (if the hub uses a self-signed certificate, trust it with --ca FILE)"
    } else {
        ""
    };
    transport(format!("cannot reach the hub at {hub}: {cause}{hint}"))
}

/// `error` and its causes on one line, the way reqwest and rustls errors read best: their
/// top-level message alone ("error sending request") hides the useful part.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Wrappers often repeat their cause verbatim; print each distinct part once.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
