//! `tether cp` and `tether ls`: file transfer over the user session (protocol 2).
//!
//! - [`location`]: `DEVICE:PATH` versus a local path, and remote path helpers.
//! - [`link`]: one session used for file messages, reconnected (version 2) when it drops.
//! - [`download`], [`upload`]: one file each way, with the flow control of
//!   [`tether_proto::transfer`], sha256 checks and resume.
//! - [`cp`], [`ls`]: the commands.
//! - [`listing`]: `ls`-style mode and time formatting.
//! - [`progress`]: the progress bar on a terminal.

pub mod cp;
mod download;
mod link;
mod listing;
mod location;
pub mod ls;
mod progress;
mod upload;

use tether_proto::{control::ErrorBody, transfer::TransferError};

/// A device's refusal, as the operator reads it: `DEVICE:PATH: TEXT`.
fn refused(device: &str, path: &str, body: &ErrorBody) -> anyhow::Error {
    anyhow::anyhow!("{device}:{path}: {}", body.err.trim())
}

/// A transfer that cannot go on, named by its remote path.
fn transfer_failed(device: &str, path: &str, error: TransferError) -> anyhow::Error {
    match error {
        TransferError::Refused(body) => refused(device, path, &body),
        other => anyhow::anyhow!("{device}:{path}: {other}"),
    }
}
