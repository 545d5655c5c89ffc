//! `tether audit export --follow`: the audit log as a feed for a SIEM. Prints every event as a
//! JSON line (each with its `seq`), then keeps polling the hub's export for events after the
//! last `seq` printed, until interrupted. Restarting with `--after SEQ` (the last `seq` the
//! reader kept) resumes without a gap or a repeat: the hub numbers appends in commit order.

use std::{io::Write as _, time::Duration};

use anyhow::{Context as _, Result};
use tether_proto::api::paths::{self, AUDIT_EXPORT_PATH};

use crate::{
    api::{HttpError, get_streamed},
    failure,
    hub::Authenticated,
};

/// What the feed needs of each line: its position in the chain.
#[derive(serde::Deserialize)]
struct Position {
    seq: i64,
}

/// How a poll ended when it did not fail.
enum Poll {
    /// The export was read to its end.
    Done,
    /// Stdout was closed (the reader went away): stop quietly.
    ReaderGone,
}

/// Polls for ever (until the hub refuses, or stdout closes), every `interval`.
pub async fn follow(
    login: &Authenticated,
    filters: &[(&'static str, String)],
    mut after: i64,
    interval: Duration,
) -> Result<()> {
    loop {
        match poll(login, filters, &mut after).await {
            Ok(Poll::Done) => {}
            Ok(Poll::ReaderGone) => return Ok(()),
            // A refusal (logged out, no permission, bad filter) stays one: retrying cannot help.
            Err(error) if is_final(&error) => return Err(error),
            Err(error) => {
                // The hub restarting, or a proxy in between: keep the cursor and try again.
                eprintln!(
                    "tether: {error:#}; retrying in {}s from after seq {after}",
                    interval.as_secs()
                );
            }
        }
        tokio::time::sleep(interval).await;
    }
}

fn is_final(error: &anyhow::Error) -> bool {
    error.downcast_ref::<failure::Refusal>().is_some()
        || error
            .downcast_ref::<HttpError>()
            .is_some_and(|refusal| refusal.status.is_client_error())
}

/// One export of the events after `after`, printed line by line; `after` moves with each line
/// printed, so a poll cut short resumes where it stopped.
async fn poll(login: &Authenticated, filters: &[(&'static str, String)], after: &mut i64) -> Result<Poll> {
    let mut query = filters.to_vec();
    query.push(("format", "jsonl".to_owned()));
    query.push(("after", after.to_string()));
    let path = format!("{AUDIT_EXPORT_PATH}?{}", paths::query(&query));
    let mut response = get_streamed(login, &path).await?;
    let mut pending: Vec<u8> = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|error| {
        failure::transport(format!(
            "reading the audit export from the hub at {}: {}",
            login.hub.url,
            failure::describe(&error.without_url())
        ))
    })? {
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|byte| *byte == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let position: Position = serde_json::from_slice(&line).map_err(|error| {
                failure::refusal(format!(
                    "the hub's audit export has a line that is not an event ({error}): {}",
                    String::from_utf8_lossy(&line).trim_end()
                ))
            })?;
            // One write per line, so a reader killed mid-way never keeps half an event.
            match std::io::stdout().write_all(&line) {
                Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => return Ok(Poll::ReaderGone),
                other => other.context("writing the audit feed to stdout")?,
            }
            *after = position.seq;
        }
    }
    match std::io::stdout().flush() {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(Poll::ReaderGone),
        other => other
            .context("writing the audit feed to stdout")
            .map(|()| Poll::Done),
    }
}
