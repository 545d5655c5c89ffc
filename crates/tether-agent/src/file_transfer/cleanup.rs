//! Sweeps the roots for upload temporary files (`.NAME.tether-upload-SUFFIX`) that nobody will
//! finish: at start every version-1 one (its upload died with the previous agent) and every
//! version-2 one older than `resume_window_secs`; then hourly the ones older than that. So an
//! agent crash or a client that never resumes cannot leave temporary files forever.

use std::{
    os::{
        fd::{AsFd as _, BorrowedFd},
        unix::ffi::OsStrExt as _,
    },
    sync::Arc,
    time::{Duration, SystemTime},
};

use super::{IDLE_TIMEOUT, Policy, system, upload};

const SWEEP_INTERVAL: Duration = Duration::from_secs(3600);
/// How deep below a root temporary files are looked for.
const MAX_DEPTH: usize = 8;
/// Directory entries examined per sweep at most (a huge tree must not keep the disk busy).
const MAX_VISITED: usize = 100_000;

pub fn start(policy: Arc<Policy>) {
    tokio::spawn(async move {
        let mut at_start = true;
        loop {
            let sweep_policy = policy.clone();
            let removed = tokio::task::spawn_blocking(move || sweep(&sweep_policy, at_start)).await;
            if let Ok(removed) = removed
                && removed > 0
            {
                tracing::info!("removed {removed} stale upload temporary file(s)");
            }
            at_start = false;
            tokio::time::sleep(SWEEP_INTERVAL).await;
        }
    });
}

/// Removes stale temporary files under every root; returns how many.
pub fn sweep(policy: &Policy, at_start: bool) -> usize {
    let mut removed = 0;
    let mut visited = 0;
    for path in policy.roots.paths() {
        let Ok(root) = system::open_directory_path(path) else {
            continue;
        };
        // Later sweeps must not take a running upload's file: one that has been quiet for its
        // whole idle timeout is abandoned anyway, so a short window counts as at least that.
        let window = if at_start {
            policy.resume_window
        } else {
            policy.resume_window.max(IDLE_TIMEOUT)
        };
        sweep_directory(root.as_fd(), 0, at_start, window, &mut visited, &mut removed);
    }
    removed
}

fn sweep_directory(
    directory: BorrowedFd,
    depth: usize,
    at_start: bool,
    resume_window: Duration,
    visited: &mut usize,
    removed: &mut usize,
) {
    let Ok(entries) = system::read_directory(directory, MAX_VISITED.saturating_sub(*visited)) else {
        return;
    };
    *visited += entries.len();
    for entry in entries {
        let Some(name) = system::component(entry.name.as_bytes()) else {
            continue;
        };
        if let Some(one_shot) = temporary_kind(entry.name.as_bytes()) {
            let Ok(metadata) = system::metadata_at(directory, &name) else {
                continue;
            };
            if !metadata.is_file() {
                continue;
            }
            let age = metadata
                .modified()
                .ok()
                .and_then(|modified| SystemTime::now().duration_since(modified).ok())
                .unwrap_or_default();
            if ((one_shot && at_start) || age > resume_window) && system::unlink_at(directory, &name).is_ok()
            {
                *removed += 1;
            }
            continue;
        }
        let maybe_directory = entry.kind == libc::DT_DIR || entry.kind == libc::DT_UNKNOWN;
        if maybe_directory && depth + 1 < MAX_DEPTH && *visited < MAX_VISITED {
            // Never follows a link: a link to / must not turn the sweep into a disk scan.
            if let Ok(child) = system::open_subdirectory(directory, &name) {
                sweep_directory(
                    child.as_fd(),
                    depth + 1,
                    at_start,
                    resume_window,
                    visited,
                    removed,
                );
            }
        }
    }
}

/// `Some(one_shot)` if `name` is an upload temporary file (`one_shot`: a version-1 one).
pub fn temporary_kind(name: &[u8]) -> Option<bool> {
    if name.first() != Some(&b'.') {
        return None;
    }
    let marker = upload::TEMPORARY_MARKER.as_bytes();
    let at = name.windows(marker.len()).rposition(|window| window == marker)?;
    let suffix = &name[at + marker.len()..];
    if suffix.is_empty() {
        return None;
    }
    Some(suffix.starts_with(upload::ONE_SHOT_PREFIX.as_bytes()))
}
