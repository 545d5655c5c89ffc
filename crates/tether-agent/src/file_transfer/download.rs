//! `get_file`: streams a regular file in `file_chunk`s, never more than the window beyond the
//! last acknowledged offset, then an empty chunk (version 2: with the file's SHA-256), and
//! waits for the final acknowledgement. Reads happen on the blocking pool, a block at a time;
//! the file is never held in memory as a whole.

use std::{
    fs::File,
    os::{fd::AsFd as _, unix::fs::FileExt as _},
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
};

use sha2::{Digest as _, Sha256};
use tether_proto::{
    file_transfer::{FileTransfer, MAX_CHUNK, VERSION_1_CHUNK, VERSION_1_WINDOW_CHUNKS, WINDOW_BYTES},
    version,
};
use tokio::{sync::watch, time::timeout};

use super::{Context, IDLE_TIMEOUT, Policy, Refusal, confine, system};

/// One read from the disk (split into chunks of the session's size when sent).
const READ_BLOCK: usize = 256 * 1024;

pub async fn run(
    context: Context,
    path: String,
    offset: Option<i64>,
    acks: watch::Receiver<i64>,
    end: Arc<AtomicI64>,
) {
    // Resuming is a version-2 feature; a version-1 peer never asked for it.
    let start = offset.filter(|_| context.version >= version::TETHER).unwrap_or(0);
    match transfer(&context, &path, start, acks, &end).await {
        Ok(Some(size)) => tracing::info!("session {}: sent {path} ({size} bytes)", context.sid),
        Ok(None) => tracing::info!(
            "session {}: download of {path} abandoned by the other side",
            context.sid
        ),
        Err(refusal) => {
            tracing::info!(
                "session {}: download of {path} failed: {}",
                context.sid,
                refusal.text
            );
            context.refuse("get_file", &refusal).await;
        }
    }
}

/// Sends the file; `Ok(None)` when the other side went away (no answer is due then).
async fn transfer(
    context: &Context,
    path: &str,
    start: i64,
    mut acks: watch::Receiver<i64>,
    end_offset: &AtomicI64,
) -> Result<Option<u64>, Refusal> {
    let policy = context.policy.clone();
    let opened_path = path.to_owned();
    let (file, size) = blocking(move || open(&policy, &opened_path)).await??;
    let start = u64::try_from(start)
        .ok()
        .filter(|start| *start <= size)
        .ok_or_else(|| {
            Refusal::new(
                400,
                format!("offset {start} is beyond the end of {path} ({size} bytes)"),
            )
        })?;
    let file = Arc::new(file);
    let checksum = context.version >= version::TETHER;
    let (chunk, window) = if context.version >= version::TETHER {
        (MAX_CHUNK, WINDOW_BYTES as u64)
    } else {
        (
            VERSION_1_CHUNK,
            (VERSION_1_CHUNK * VERSION_1_WINDOW_CHUNKS) as u64,
        )
    };
    // The checksum covers the whole file, also when resuming: hash what the peer already has.
    let mut hasher = checksum.then(Sha256::new);
    if checksum && start > 0 {
        let reader = file.clone();
        let hash_path = path.to_owned();
        hasher = blocking(move || {
            let mut hasher = Sha256::new();
            hash_range(&reader, 0, start, &mut hasher)
                .map_err(|error| Refusal::from_io(&hash_path, &error))?;
            Ok::<_, Refusal>(Some(hasher))
        })
        .await??;
    }
    let mut position = start;
    while position < size {
        // Wait for room in the window (acks are cumulative: bytes the peer has received).
        let room = loop {
            let acked = u64::try_from(*acks.borrow_and_update()).unwrap_or(0).max(start);
            let room = (acked + window).saturating_sub(position);
            if room > 0 {
                break room;
            }
            match timeout(IDLE_TIMEOUT, acks.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Ok(None),
                Err(_) => {
                    return Err(Refusal::new(
                        500,
                        "no acknowledgement for too long; download abandoned",
                    ));
                }
            }
        };
        let length = room.min(READ_BLOCK as u64).min(size - position) as usize;
        let reader = file.clone();
        let read_path = path.to_owned();
        let hash = hasher.take();
        let (data, hash) =
            blocking(move || read_block(&reader, position, length, hash, &read_path)).await??;
        hasher = hash;
        // Version 2 sends the block as it is; version 1 cuts it into 4 KiB chunks.
        let pieces = if data.len() <= chunk {
            vec![data]
        } else {
            data.chunks(chunk).map(<[u8]>::to_vec).collect()
        };
        for piece in pieces {
            let length = piece.len() as u64;
            context.policy.read_throttle.pass(piece.len()).await;
            let message = FileTransfer::FileChunk {
                offset: position as i64,
                data: piece,
                sha256: None,
            };
            context.send(message).await;
            position += length;
        }
    }
    let end = FileTransfer::FileChunk {
        offset: size as i64,
        data: Vec::new(),
        sha256: hasher.map(|hasher| hex(&hasher.finalize())),
    };
    end_offset.store(size as i64, Ordering::Relaxed);
    context.send(end).await;
    let finished = timeout(IDLE_TIMEOUT, acks.wait_for(|acked| *acked >= size as i64)).await;
    match finished {
        Ok(Ok(_)) => Ok(Some(size)),
        Ok(Err(_)) => Ok(None),
        Err(_) => Err(Refusal::new(500, "no final acknowledgement; download abandoned")),
    }
}

/// Resolves and opens a regular file for reading; returns it with its size.
fn open(policy: &Policy, path: &str) -> Result<(File, u64), Refusal> {
    let location = policy.roots.resolve(path)?;
    let name = location
        .name
        .as_deref()
        .ok_or_else(|| Refusal::new(409, format!("{path} is a directory")))?;
    // Checked before opening: opening a FIFO would block, and opening a device may act on it.
    let before = location.metadata_no_link()?;
    if !before.is_file() {
        return Err(Refusal::new(
            403,
            format!(
                "{path} is {}: only regular files are transferred",
                confine::kind_of(&before)
            ),
        ));
    }
    let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY;
    let fd = system::open_at(location.directory.as_fd(), name, flags, 0).map_err(|error| {
        if error.raw_os_error() == Some(libc::ELOOP) {
            confine::symbolic_link(path)
        } else {
            Refusal::from_io(path, &error)
        }
    })?;
    let file = File::from(fd);
    let metadata = file.metadata().map_err(|error| Refusal::from_io(path, &error))?;
    // Swapped between the check and the open: refuse rather than read something else.
    if !metadata.is_file() {
        return Err(Refusal::new(403, format!("{path} changed while being opened")));
    }
    policy.check_size(metadata.len())?;
    Ok((file, metadata.len()))
}

/// Reads `length` bytes at `position` (and hashes them if asked).
fn read_block(
    file: &File,
    position: u64,
    length: usize,
    hash: Option<Sha256>,
    path: &str,
) -> Result<(Vec<u8>, Option<Sha256>), Refusal> {
    let mut data = vec![0; length];
    file.read_exact_at(&mut data, position).map_err(|error| {
        if error.kind() == std::io::ErrorKind::UnexpectedEof {
            Refusal::new(500, format!("{path} shrank during the download"))
        } else {
            Refusal::from_io(path, &error)
        }
    })?;
    let hash = hash.map(|mut hasher| {
        hasher.update(&data);
        hasher
    });
    Ok((data, hash))
}

/// Feeds `length` bytes of `file` from `from` into `hasher`, a block at a time.
pub fn hash_range(file: &File, from: u64, length: u64, hasher: &mut Sha256) -> std::io::Result<()> {
    let mut buffer = vec![0; READ_BLOCK];
    let mut done = 0;
    while done < length {
        let want = (length - done).min(READ_BLOCK as u64) as usize;
        file.read_exact_at(&mut buffer[..want], from + done)?;
        hasher.update(&buffer[..want]);
        done += want as u64;
    }
    Ok(())
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut text, byte| {
            let _ = write!(text, "{byte:02x}");
            text
        })
}

/// Runs file work on the blocking pool; a panic there becomes a refusal, not a crash.
pub async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, Refusal> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| Refusal::new(500, format!("file operation failed: {error}")))
}
