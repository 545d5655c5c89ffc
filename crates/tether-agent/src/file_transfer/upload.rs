//! `put_file`: receives a file into a temporary file beside the target and renames it into
//! place only when complete (and, for version 2, when its SHA-256 matches), so the target is
//! either untouched or wholly replaced. Version 2 names the temporary file after the upload's
//! `upload_id` and keeps it when the session ends, so the upload can resume.
//!
//! Chunks are written on the blocking pool in batches (whatever has arrived, up to 1 MiB), each
//! batch acknowledged with the offset where its last chunk starts; only the final ack, after the
//! rename, carries the total.

use std::{
    ffi::CString,
    fs::File,
    io,
    os::{
        fd::{AsFd as _, OwnedFd},
        unix::fs::{FileExt as _, MetadataExt as _, PermissionsExt as _},
    },
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use sha2::{Digest as _, Sha256};
use tether_proto::{
    file_transfer::{FileTransfer, PutFile, go_mode},
    transfer::ACK_EVERY,
    version,
};
use tokio::{sync::mpsc, time::timeout};

use super::{
    Context, IDLE_TIMEOUT, Policy, Refusal, confine,
    download::{blocking, hash_range, hex},
    metadata::setuid_refusal,
    system,
};

/// Marks the temporary files of uploads (`.NAME.tether-upload-SUFFIX`).
pub const TEMPORARY_MARKER: &str = ".tether-upload-";
/// Suffix prefix of version-1 (not resumable) temporary files. The `.` cannot occur in an
/// `upload_id`, so the sweeper can tell them apart.
pub const ONE_SHOT_PREFIX: &str = "once.";
/// Mode of an upload whose `put_file` names none (before the umask).
const DEFAULT_FILE_MODE: u32 = 0o644;
const MAX_UPLOAD_ID: usize = 64;

/// One `file_chunk` of a running upload.
#[derive(Debug)]
pub struct Chunk {
    pub offset: i64,
    pub data: Vec<u8>,
    pub sha256: Option<String>,
}

/// How an upload ended without an error to report.
enum Outcome {
    Stored(u64),
    /// The session ended or the peer cancelled: nobody to answer.
    Abandoned(u64),
}

pub async fn run(
    context: Context,
    put: PutFile,
    mut chunks: mpsc::UnboundedReceiver<Chunk>,
    queued: Arc<AtomicUsize>,
) {
    let path = put.path.clone();
    match transfer(&context, put, &mut chunks, &queued).await {
        Ok(Outcome::Stored(size)) => {
            tracing::info!("session {}: received {path} ({size} bytes)", context.sid)
        }
        Ok(Outcome::Abandoned(size)) => tracing::info!(
            "session {}: upload of {path} interrupted after {size} bytes",
            context.sid
        ),
        Err(refusal) => {
            tracing::info!(
                "session {}: upload of {path} failed: {}",
                context.sid,
                refusal.text
            );
            context.refuse("put_file", &refusal).await;
        }
    }
}

/// What `put_file` asked for, checked against the policy before anything is touched.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub size: Option<u64>,
    /// Permission bits of the result (umask applied).
    pub mode: u32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Version 2: names a resumable temporary file.
    pub upload_id: Option<String>,
    /// Version 2: where the client wants to continue.
    pub resume_at: u64,
}

impl Request {
    pub fn check(policy: &Policy, put: PutFile, session_version: u32) -> Result<Request, Refusal> {
        let version_2 = session_version >= version::TETHER;
        let upload_id = put.upload_id.filter(|_| version_2);
        if let Some(id) = &upload_id {
            let valid = (1..=MAX_UPLOAD_ID).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !valid {
                return Err(Refusal::new(
                    400,
                    "upload_id must be 1 to 64 characters of A-Z, a-z, 0-9, `_` and `-`",
                ));
            }
        }
        let size = match put.size {
            Some(size) => {
                Some(u64::try_from(size).map_err(|_| Refusal::new(400, format!("invalid size {size}")))?)
            }
            None => None,
        };
        if let Some(size) = size {
            policy.check_size(size)?;
        }
        let requested = put.mode.map_or(DEFAULT_FILE_MODE, go_mode::to_unix_permissions);
        if requested & 0o6000 != 0 && !policy.allow_setuid {
            return Err(setuid_refusal());
        }
        let (uid, gid) = owner(policy, put.uid, put.gid)?;
        Ok(Request {
            path: put.path,
            size,
            mode: requested & !policy.umask & 0o7777,
            uid,
            gid,
            resume_at: put
                .offset
                .filter(|_| version_2 && upload_id.is_some())
                .and_then(|offset| u64::try_from(offset).ok())
                .unwrap_or(0),
            upload_id,
        })
    }
}

/// The owner an upload gets: the requested ids only if they are the configured owner's (or
/// `allow_chown`); otherwise the configured owner, or `None` (whoever the agent runs as).
fn owner(policy: &Policy, uid: Option<u32>, gid: Option<u32>) -> Result<(Option<u32>, Option<u32>), Refusal> {
    // SAFETY: geteuid and getegid have no preconditions and cannot fail.
    let (own_uid, own_gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let owner_uid = policy.owner_uid.unwrap_or(own_uid);
    let owner_gid = policy.owner_gid.unwrap_or(own_gid);
    if let Some(uid) = uid.filter(|uid| *uid != owner_uid && !policy.allow_chown) {
        return Err(Refusal::new(
            403,
            format!("uid {uid} refused: uploads belong to uid {owner_uid} (file_transfer.allow_chown)"),
        ));
    }
    if let Some(gid) = gid.filter(|gid| *gid != owner_gid && !policy.allow_chown) {
        return Err(Refusal::new(
            403,
            format!("gid {gid} refused: uploads belong to gid {owner_gid} (file_transfer.allow_chown)"),
        ));
    }
    Ok((uid.or(policy.owner_uid), gid.or(policy.owner_gid)))
}

/// A prepared upload: the temporary file, open, and how much of it is already there.
pub struct Prepared {
    pub directory: Arc<OwnedFd>,
    pub name: CString,
    pub temporary: TemporaryFile,
    pub file: Arc<File>,
    pub written: u64,
    /// Version 2: the hash of what is written so far.
    pub hasher: Option<Sha256>,
}

/// Deletes the temporary file when dropped (on an error, a cancelled task, a lost session)
/// unless it is to be kept for a resume, or was renamed into place.
pub struct TemporaryFile {
    directory: Arc<OwnedFd>,
    name: CString,
    pub keep: bool,
    renamed: bool,
}

impl Drop for TemporaryFile {
    fn drop(&mut self) {
        if !self.renamed && !self.keep {
            let _ = system::unlink_at(self.directory.as_fd(), &self.name);
        }
    }
}

/// The temporary name beside `name`: `.NAME.tether-upload-ID` (version 2) or
/// `.NAME.tether-upload-once.RANDOM`.
pub fn temporary_name(name: &[u8], upload_id: Option<&str>) -> Vec<u8> {
    let suffix = match upload_id {
        Some(id) => id.to_owned(),
        None => format!("{ONE_SHOT_PREFIX}{:016x}", rand::random::<u64>()),
    };
    let mut temporary = b".".to_vec();
    temporary.extend_from_slice(name);
    temporary.extend_from_slice(TEMPORARY_MARKER.as_bytes());
    temporary.extend_from_slice(suffix.as_bytes());
    temporary
}

/// Confinement, the overwrite rule, and the temporary file (resumed or fresh). Blocking.
pub fn prepare(policy: &Policy, request: &Request, hash: bool) -> Result<Prepared, Refusal> {
    let path = &request.path;
    let location = policy.roots.resolve(path)?;
    let name = location.name_or_refuse("replace")?.to_owned();
    match location.metadata() {
        Ok(existing) if existing.file_type().is_symlink() => return Err(confine::symbolic_link(path)),
        Ok(existing) if existing.is_dir() => {
            return Err(Refusal::new(409, format!("{path} is a directory")));
        }
        Ok(existing) if !existing.is_file() => {
            return Err(Refusal::new(
                403,
                format!(
                    "{path} is {}: only regular files are transferred",
                    confine::kind_of(&existing)
                ),
            ));
        }
        Ok(_) if !policy.allow_overwrite => return Err(overwrite_refusal(path)),
        Ok(_) => {}
        Err(error) if error.raw_os_error() == Some(libc::ENOENT) => {}
        Err(error) => return Err(Refusal::from_io(path, &error)),
    }
    let directory = Arc::new(location.directory);
    let temporary_name = CString::new(temporary_name(name.as_bytes(), request.upload_id.as_deref()))
        .map_err(|_| Refusal::new(400, "invalid file name"))?;
    let resumed = if request.resume_at > 0 {
        resume(&directory, &temporary_name, request.resume_at, path)?
    } else {
        None
    };
    let (file, written) = match resumed {
        Some(resumed) => resumed,
        None => {
            if request.upload_id.is_some() {
                // A leftover of an earlier upload with this id that is not being resumed.
                let _ = system::unlink_at(directory.as_fd(), &temporary_name);
            }
            let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
            let fd = system::open_at(directory.as_fd(), &temporary_name, flags, 0o600)
                .map_err(|error| Refusal::from_io(path, &error))?;
            (File::from(fd), 0)
        }
    };
    let temporary = TemporaryFile {
        directory: directory.clone(),
        name: temporary_name,
        keep: request.upload_id.is_some(),
        renamed: false,
    };
    let hasher = if hash {
        let mut hasher = Sha256::new();
        if let Err(error) = hash_range(&file, 0, written, &mut hasher) {
            return Err(Refusal::from_io(path, &error));
        }
        Some(hasher)
    } else {
        None
    };
    Ok(Prepared {
        directory,
        name,
        temporary,
        file: Arc::new(file),
        written,
        hasher,
    })
}

/// Opens an interrupted upload's temporary file and cuts it to what the client says it sent
/// (the bytes beyond may never have been acknowledged). `None`: nothing to resume.
fn resume(
    directory: &OwnedFd,
    temporary: &CString,
    offset: u64,
    path: &str,
) -> Result<Option<(File, u64)>, Refusal> {
    let fd = match system::open_at(directory.as_fd(), temporary, libc::O_RDWR | libc::O_NOFOLLOW, 0) {
        Ok(fd) => fd,
        Err(error) if error.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(error) => return Err(Refusal::from_io(path, &error)),
    };
    let file = File::from(fd);
    let metadata = file.metadata().map_err(|error| Refusal::from_io(path, &error))?;
    // SAFETY: geteuid cannot fail.
    let own_uid = unsafe { libc::geteuid() };
    // Only a file this agent made: a hard link planted under the temporary name would make
    // the upload write into (and then move) some other file.
    if !metadata.is_file() || metadata.nlink() != 1 || metadata.uid() != own_uid {
        return Err(Refusal::new(
            403,
            format!("{path}: the temporary file of this upload is not the agent's; not resumed"),
        ));
    }
    let kept = metadata.len().min(offset);
    file.set_len(kept)
        .map_err(|error| Refusal::from_io(path, &error))?;
    Ok(Some((file, kept)))
}

pub fn overwrite_refusal(path: &str) -> Refusal {
    Refusal::new(
        409,
        format!("{path} exists and overwriting is off (file_transfer.allow_overwrite)"),
    )
}

async fn transfer(
    context: &Context,
    put: PutFile,
    chunks: &mut mpsc::UnboundedReceiver<Chunk>,
    queued: &AtomicUsize,
) -> Result<Outcome, Refusal> {
    let policy = context.policy.clone();
    let request = Request::check(&policy, put, context.version)?;
    let version_2 = context.version >= version::TETHER;
    let prepare_request = request.clone();
    let prepared = blocking(move || prepare(&policy, &prepare_request, version_2)).await??;
    let Prepared {
        directory,
        name,
        mut temporary,
        file,
        mut written,
        mut hasher,
    } = prepared;
    let path = request.path.as_str();
    context
        .send(FileTransfer::Ack {
            offset: written as i64,
        })
        .await;
    let mut acknowledged = written;
    loop {
        let first = match timeout(IDLE_TIMEOUT, chunks.recv()).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return Ok(Outcome::Abandoned(written)),
            Err(_) => return Err(Refusal::new(500, "no file data for too long; upload abandoned")),
        };
        // Whatever has arrived (up to 1 MiB) is written in one go on the blocking pool.
        let mut batch: Vec<Vec<u8>> = Vec::new();
        let mut batch_bytes: u64 = 0;
        // Where the batch's last chunk starts: what an intermediate ack carries (see below).
        let mut last_chunk_start = written;
        let mut end = None;
        let mut next = Some(first);
        while let Some(chunk) = next.take() {
            queued.fetch_sub(chunk.data.len(), Ordering::Relaxed);
            let expected = written + batch_bytes;
            if chunk.offset != expected as i64 {
                // Version 2 keeps the temporary file: a resume can continue from the last ack.
                return Err(Refusal::new(
                    400,
                    format!("file chunk at offset {}, expected {expected}", chunk.offset),
                ));
            }
            if chunk.data.is_empty() {
                end = Some(chunk);
                break;
            }
            let total = expected + chunk.data.len() as u64;
            if let Err(refusal) = context.policy.check_size(total) {
                temporary.keep = false;
                return Err(refusal);
            }
            if let Some(size) = request.size.filter(|size| total > *size) {
                temporary.keep = false;
                return Err(Refusal::new(
                    400,
                    format!("more data than the announced {size} bytes"),
                ));
            }
            last_chunk_start = expected;
            batch_bytes += chunk.data.len() as u64;
            batch.push(chunk.data);
            if batch_bytes >= ACK_EVERY as u64 {
                break;
            }
            next = chunks.try_recv().ok();
        }
        if !batch.is_empty() {
            context.policy.write_throttle.pass(batch_bytes as usize).await;
            let writer = file.clone();
            let at = written;
            let result = blocking(move || write_batch(&writer, at, &batch, hasher)).await?;
            match result {
                Ok(hash) => hasher = hash,
                Err(error) => {
                    // A full disk or a failing device: nothing to resume, free the space.
                    temporary.keep = false;
                    return Err(Refusal::from_io(path, &error));
                }
            }
            written += batch_bytes;
        }
        if let Some(end) = end {
            temporary.keep = false;
            if let Some(size) = request.size.filter(|size| written != *size) {
                return Err(Refusal::new(
                    400,
                    format!("received {written} bytes but {size} were announced"),
                ));
            }
            if let (Some(expected), Some(hasher)) = (end.sha256.filter(|_| version_2), hasher.take()) {
                let actual = hex(&hasher.finalize());
                if !actual.eq_ignore_ascii_case(expected.trim()) {
                    return Err(Refusal::new(
                        400,
                        format!(
                            "checksum mismatch: the data received has SHA-256 {actual}, the sender says {expected}"
                        ),
                    ));
                }
            }
            let policy = context.policy.clone();
            let finish_request = request.clone();
            let finish_directory = directory.clone();
            let finish_name = name.clone();
            let temporary_name = temporary.name.clone();
            blocking(move || {
                commit(
                    &policy,
                    &finish_request,
                    &file,
                    &finish_directory,
                    &temporary_name,
                    &finish_name,
                )
            })
            .await??;
            temporary.renamed = true;
            context
                .send(FileTransfer::Ack {
                    offset: written as i64,
                })
                .await;
            return Ok(Outcome::Stored(written));
        }
        // An intermediate ack carries the offset where the last chunk written starts, as the
        // stock agent's does: it is always below the total, so only the ack after the rename
        // equals it and a sender can never take an earlier one for the final one.
        if last_chunk_start > acknowledged {
            context
                .send(FileTransfer::Ack {
                    offset: last_chunk_start as i64,
                })
                .await;
            acknowledged = last_chunk_start;
        }
    }
}

/// Writes the pieces at `at` (positional writes: a resumed upload can never append twice).
fn write_batch(
    file: &File,
    at: u64,
    batch: &[Vec<u8>],
    mut hasher: Option<Sha256>,
) -> io::Result<Option<Sha256>> {
    let mut position = at;
    for piece in batch {
        file.write_all_at(piece, position)?;
        if let Some(hasher) = hasher.as_mut() {
            hasher.update(piece);
        }
        position += piece.len() as u64;
    }
    Ok(hasher)
}

/// Makes the upload durable and visible: sync, owner, mode, rename, sync the directory.
pub fn commit(
    policy: &Policy,
    request: &Request,
    file: &File,
    directory: &OwnedFd,
    temporary: &CString,
    name: &CString,
) -> Result<(), Refusal> {
    let path = request.path.as_str();
    let failed = |error: io::Error| Refusal::from_io(path, &error);
    file.sync_all().map_err(failed)?;
    // Owner before mode: a change of owner clears the setuid and setgid bits.
    if request.uid.is_some() || request.gid.is_some() {
        let metadata = file.metadata().map_err(failed)?;
        if request.uid.is_some_and(|uid| uid != metadata.uid())
            || request.gid.is_some_and(|gid| gid != metadata.gid())
        {
            std::os::unix::fs::fchown(file, request.uid, request.gid).map_err(failed)?;
        }
    }
    file.set_permissions(std::fs::Permissions::from_mode(request.mode))
        .map_err(failed)?;
    let renamed = if policy.allow_overwrite {
        system::rename_at(directory.as_fd(), temporary, name)
    } else {
        system::rename_no_replace_at(directory.as_fd(), temporary, name)
    };
    renamed.map_err(|error| match error.raw_os_error() {
        Some(libc::EEXIST) => overwrite_refusal(path),
        Some(libc::EISDIR) => Refusal::new(409, format!("{path} is a directory")),
        _ => failed(error),
    })?;
    // The rename itself must survive a power cut, not only the data.
    if let Err(error) = system::reopen_directory(directory.as_fd()).and_then(|directory| directory.sync_all())
    {
        tracing::debug!("cannot sync the directory of {path}: {error}");
    }
    Ok(())
}

#[cfg(test)]
#[path = "upload_tests.rs"]
mod tests;
