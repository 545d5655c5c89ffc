//! One file from the device: `get_file`, written to `.NAME.tether-part` beside the
//! destination, checked against the device's sha256 (version 2), given the remote mode and
//! mtime, synced, and renamed into place — an interrupted download never leaves a partial
//! destination. A dropped session (version 2) resumes at the bytes already written.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    os::{fd::AsRawFd, unix::fs::OpenOptionsExt},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use tether_proto::{
    file_transfer::{FileInfo, FileTransfer, go_mode},
    transfer::{Download, DownloadStep},
};

use super::{link::Link, progress::Progress, transfer_failed};

/// `dir/.NAME.tether-part` for `dir/NAME`.
pub fn part_path(destination: &Path) -> PathBuf {
    let name = destination
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "download".into());
    destination.with_file_name(format!(".{name}.tether-part"))
}

/// Removes the temporary file unless the download completed.
struct PartGuard<'a> {
    path: &'a Path,
    keep: bool,
}

impl Drop for PartGuard<'_> {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(self.path);
        }
    }
}

/// Downloads `remote` (described by `info`) to `destination`; returns the hex sha256.
pub async fn download(
    link: &mut Link,
    remote: &str,
    info: &FileInfo,
    destination: &Path,
    progress: &Progress,
) -> Result<String> {
    let part = part_path(destination);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&part)
        .with_context(|| format!("cannot create {}", part.display()))?;
    let mut guard = PartGuard {
        path: &part,
        keep: false,
    };
    let mut hasher = Sha256::new();
    let mut offset: i64 = 0;
    let expected = loop {
        link.send(&FileTransfer::GetFile {
            path: remote.to_owned(),
            offset: (offset > 0).then_some(offset),
        });
        let mut flow = Download::new(link.version(), offset);
        let outcome = loop {
            let message = match link.recv().await {
                Ok(message) => message,
                Err(lost) => break Err(lost),
            };
            let step = flow
                .on_message(message)
                .map_err(|error| transfer_failed(&link.label, remote, error))?;
            match step {
                DownloadStep::Data { data, ack } => {
                    file.write_all(&data)
                        .with_context(|| format!("writing {}", part.display()))?;
                    hasher.update(&data);
                    offset = flow.offset();
                    progress.at(offset as u64);
                    if let Some(ack) = ack {
                        link.send(&FileTransfer::Ack { offset: ack });
                    }
                }
                DownloadStep::Finished { ack, sha256 } => {
                    link.send(&FileTransfer::Ack { offset: ack });
                    break Ok(sha256);
                }
            }
        };
        match outcome {
            Ok(sha256) => break sha256,
            Err(lost) => {
                link.reconnect(lost).await?;
                progress.say(&format!("tether: connection lost; resuming at {offset} bytes"));
            }
        }
    };
    let actual = hex::encode(hasher.finalize());
    if let Some(expected) = expected
        && !expected.eq_ignore_ascii_case(&actual)
    {
        bail!(
            "{}:{remote}: checksum mismatch: the device reports sha256 {expected}, the data received hashes to {actual}",
            link.label
        );
    }
    finish_file(&file, info).with_context(|| format!("finishing {}", part.display()))?;
    drop(file);
    std::fs::rename(&part, destination)
        .with_context(|| format!("cannot rename {} to {}", part.display(), destination.display()))?;
    guard.keep = true;
    Ok(actual)
}

/// Gives the file its remote permissions and modification time, then syncs it.
pub fn finish_file(file: &File, info: &FileInfo) -> Result<()> {
    set_permissions(file, info.mode)?;
    set_mtime(file.as_raw_fd(), info.modtime)?;
    file.sync_all().context("syncing the downloaded file")?;
    Ok(())
}

fn set_permissions(file: &File, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let permissions = std::fs::Permissions::from_mode(go_mode::to_unix_permissions(mode));
    file.set_permissions(permissions)
        .context("setting the file's mode")
}

/// Sets the modification time (access time: now) of an open file or directory.
pub fn set_mtime(fd: i32, (seconds, nanoseconds): (i64, u32)) -> Result<()> {
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        libc::timespec {
            tv_sec: seconds as libc::time_t,
            tv_nsec: nanoseconds.min(999_999_999) as libc::c_long,
        },
    ];
    // SAFETY: `fd` is an open descriptor and `times` two valid timespecs.
    if unsafe { libc::futimens(fd, times.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error()).context("setting the modification time");
    }
    Ok(())
}
