//! File transfer (protocol 2): `stat`, `list`, `mkdir`, `get_file` and `put_file`, confined to
//! the configured roots (see `docs/protocol.md` and `docs/agent-configuration.md`).
//!
//! [`FileTransfers`] is the session table's half of the protocol: it decodes requests, allows
//! one transfer per session, feeds acknowledgements and chunks to the running transfer and
//! cancels it when the session ends. The transfers themselves run as tasks that do their file
//! work on the blocking pool, so a large transfer never stalls the single-threaded runtime, and
//! send their output on the bulk queue, which the connection writer serves after shell output.

mod cleanup;
mod confine;
mod download;
mod metadata;
mod system;
mod upload;

use std::{
    collections::HashMap,
    io,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tether_proto::{
    Envelope,
    control::ErrorBody,
    file_transfer::{FileTransfer, MAX_CHUNK, WINDOW_BYTES},
    protocol::FILE_TRANSFER,
};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
    time::Instant,
};

use crate::{account, config::FileTransferConfig};

pub use confine::Roots;

/// Capacity of the bulk queue (file data to the hub). Small on purpose: with 256 KiB chunks this
/// is about a megabyte of memory, and shell output queued behind it waits no longer than that.
pub const BULK_QUEUE: usize = 4;
/// A transfer that hears nothing from the other side for this long is abandoned.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// `stat`, `list` and `mkdir` requests being worked on at once (device-wide); more are refused
/// rather than queued, so a flood of requests cannot pile up tasks and threads.
const MAX_REQUESTS_IN_FLIGHT: usize = 16;

/// The next message of the bulk queue (never, if there is none: file transfer is off).
pub async fn next_bulk(bulk: &mut Option<mpsc::Receiver<Envelope>>) -> Option<Envelope> {
    match bulk {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

/// A refusal or failure, answered as `error {err, msgtype, code}`. `code` has HTTP meaning.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: u16,
    pub text: String,
}

impl Refusal {
    pub fn new(code: u16, text: impl Into<String>) -> Refusal {
        Refusal {
            code,
            text: text.into(),
        }
    }

    /// A system error on `path`, with the code its errno means.
    pub fn from_io(path: &str, error: &io::Error) -> Refusal {
        let code = match error.raw_os_error() {
            Some(libc::ENOENT) => 404,
            Some(libc::EACCES | libc::EPERM | libc::EROFS) => 403,
            Some(libc::ENOSPC | libc::EDQUOT) => 507,
            Some(libc::EEXIST) => 409,
            Some(libc::EFBIG) => 413,
            _ => 500,
        };
        let mut text = error.to_string();
        // "No such file or directory (os error 2)": the number helps nobody reading it.
        if let Some(at) = text.find(" (os error") {
            text.truncate(at);
        }
        Refusal::new(code, format!("{path}: {text}"))
    }

    fn to_envelope(&self, sid: &str, request: &str) -> Envelope {
        let body = ErrorBody {
            err: self.text.clone(),
            close: false,
            msgproto: Some(FILE_TRANSFER),
            msgtype: Some(request.to_owned()),
            msgid: None,
            code: Some(i64::from(self.code)),
        };
        FileTransfer::Error(body).to_envelope(sid)
    }
}

/// The effective `[file_transfer]` settings, resolved once.
#[derive(Debug)]
pub struct Policy {
    pub roots: Roots,
    /// 0 = no limit.
    pub max_file_size: u64,
    pub allow_overwrite: bool,
    /// The owner uploaded files get (`None`: whoever the agent runs as).
    pub owner_uid: Option<u32>,
    pub owner_gid: Option<u32>,
    pub allow_chown: bool,
    pub umask: u32,
    pub allow_setuid: bool,
    pub read_throttle: Throttle,
    pub write_throttle: Throttle,
    pub resume_window: Duration,
}

impl Policy {
    pub fn new(config: &FileTransferConfig) -> Result<Policy, String> {
        let (owner_uid, owner_primary_gid) = if config.owner.is_empty() {
            (None, None)
        } else if let Ok(uid) = config.owner.parse::<u32>() {
            (Some(uid), None)
        } else {
            let account = account::by_name(&config.owner)
                .map_err(|error| format!("cannot look up file_transfer.owner = {}: {error}", config.owner))?
                .ok_or_else(|| {
                    format!(
                        "file_transfer.owner = {}: no such user on this device",
                        config.owner
                    )
                })?;
            (Some(account.uid), Some(account.gid))
        };
        let owner_gid = if config.group.is_empty() {
            owner_primary_gid
        } else if let Ok(gid) = config.group.parse::<u32>() {
            Some(gid)
        } else {
            Some(metadata::group_id(&config.group)?)
        };
        if (owner_uid.is_some() || owner_gid.is_some()) && !account::is_root() {
            tracing::warn!(
                "file_transfer.owner/group are set but the agent is not running as root: \
                 uploads that need another owner will fail"
            );
        }
        Ok(Policy {
            roots: Roots::new(&config.roots),
            max_file_size: config.max_file_size,
            allow_overwrite: config.allow_overwrite,
            owner_uid,
            owner_gid,
            allow_chown: config.allow_chown,
            umask: config.umask & 0o777,
            allow_setuid: config.allow_setuid,
            read_throttle: Throttle::new(config.read_rate_limit),
            write_throttle: Throttle::new(config.write_rate_limit),
            resume_window: Duration::from_secs(config.resume_window_secs),
        })
    }

    /// The size-limit refusal, if `size` is over it.
    pub fn check_size(&self, size: u64) -> Result<(), Refusal> {
        if self.max_file_size > 0 && size > self.max_file_size {
            return Err(Refusal::new(
                413,
                format!(
                    "file is larger than the limit of {} bytes (file_transfer.max_file_size)",
                    self.max_file_size
                ),
            ));
        }
        Ok(())
    }
}

/// A device-wide rate limit (bytes per second; 0 = none), shared by all transfers in one
/// direction. It delays, never refuses: each chunk reserves its share of time and waits for it.
#[derive(Debug)]
pub struct Throttle {
    bytes_per_second: u64,
    next_free: Mutex<Option<Instant>>,
}

impl Throttle {
    pub fn new(bytes_per_second: u64) -> Throttle {
        Throttle {
            bytes_per_second,
            next_free: Mutex::new(None),
        }
    }

    pub async fn pass(&self, bytes: usize) {
        if self.bytes_per_second == 0 {
            return;
        }
        let start = {
            let mut next_free = self
                .next_free
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let now = Instant::now();
            let start = next_free.map_or(now, |next| next.max(now));
            let cost = Duration::from_secs_f64(bytes as f64 / self.bytes_per_second as f64);
            *next_free = Some(start + cost);
            start
        };
        tokio::time::sleep_until(start).await;
    }
}

/// What a running transfer is fed with from the session.
enum Feed {
    /// The highest acknowledged offset of a `get_file`, and the file's end once the final
    /// chunk is out (-1 before): the final ack ends the transfer at once, so that the next
    /// request of the session is not refused while the task has yet to notice.
    Download(watch::Sender<i64>, Arc<AtomicI64>),
    /// The chunks of a `put_file`, and the bytes queued but not yet written.
    Upload(mpsc::UnboundedSender<upload::Chunk>, Arc<AtomicUsize>),
}

struct Running {
    task: JoinHandle<()>,
    feed: Feed,
}

/// Everything a transfer task needs to talk back.
#[derive(Clone)]
pub struct Context {
    pub policy: Arc<Policy>,
    pub bulk: mpsc::Sender<Envelope>,
    pub sid: String,
    pub version: u32,
}

impl Context {
    pub async fn send(&self, message: FileTransfer) {
        let _ = self.bulk.send(message.to_envelope(&self.sid)).await;
    }

    pub async fn refuse(&self, request: &str, refusal: &Refusal) {
        let _ = self.bulk.send(refusal.to_envelope(&self.sid, request)).await;
    }
}

/// The file transfers of all sessions.
pub struct FileTransfers {
    policy: Arc<Policy>,
    bulk: mpsc::Sender<Envelope>,
    running: HashMap<String, Running>,
    requests_in_flight: Arc<AtomicUsize>,
}

impl FileTransfers {
    /// Resolves the settings and starts the sweeper of stale temporary files (now and hourly).
    pub fn start(config: &FileTransferConfig, bulk: mpsc::Sender<Envelope>) -> Result<FileTransfers, String> {
        let policy = Arc::new(Policy::new(config)?);
        if policy.roots.is_empty() {
            tracing::warn!(
                "file transfer is enabled but no usable file_transfer.roots: every path is refused"
            );
        }
        cleanup::start(policy.clone());
        Ok(FileTransfers {
            policy,
            bulk,
            running: HashMap::new(),
            requests_in_flight: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Handles one protocol-2 message of session `sid` (negotiated `version`). Returns an
    /// immediate answer for the priority queue, if any; everything else is answered by tasks.
    pub fn handle(&mut self, sid: &str, version: u32, envelope: &Envelope) -> Option<Envelope> {
        let message = match FileTransfer::from_envelope(envelope) {
            Ok(message) => message,
            Err(error) => {
                let refusal = Refusal::new(400, format!("malformed file transfer message: {error}"));
                return Some(refusal.to_envelope(sid, &envelope.typ));
            }
        };
        let typ = message.typ();
        match message {
            FileTransfer::Stat { .. } | FileTransfer::List { .. } | FileTransfer::Mkdir { .. } => {
                let in_flight = self.requests_in_flight.clone();
                if in_flight.fetch_add(1, Ordering::Relaxed) >= MAX_REQUESTS_IN_FLIGHT {
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                    let refusal = Refusal::new(503, "too many file requests at once; retry later");
                    return Some(refusal.to_envelope(sid, typ));
                }
                let context = self.context(sid, version);
                tokio::spawn(async move {
                    metadata::answer(&context, message).await;
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                });
                None
            }
            FileTransfer::GetFile { path, offset } => {
                if let Some(busy) = self.busy(sid, typ) {
                    return Some(busy);
                }
                let (acks, acks_receiver) = watch::channel(0);
                let end = Arc::new(AtomicI64::new(-1));
                let task = tokio::spawn(download::run(
                    self.context(sid, version),
                    path,
                    offset,
                    acks_receiver,
                    end.clone(),
                ));
                self.running.insert(
                    sid.to_owned(),
                    Running {
                        task,
                        feed: Feed::Download(acks, end),
                    },
                );
                None
            }
            FileTransfer::PutFile(put) => {
                if let Some(busy) = self.busy(sid, typ) {
                    return Some(busy);
                }
                let (chunks, chunks_receiver) = mpsc::unbounded_channel();
                let queued = Arc::new(AtomicUsize::new(0));
                let task = tokio::spawn(upload::run(
                    self.context(sid, version),
                    put,
                    chunks_receiver,
                    queued.clone(),
                ));
                self.running.insert(
                    sid.to_owned(),
                    Running {
                        task,
                        feed: Feed::Upload(chunks, queued),
                    },
                );
                None
            }
            FileTransfer::FileChunk { offset, data, sha256 } => {
                let Some(Running {
                    feed: Feed::Upload(chunks, queued),
                    task,
                }) = self.running.get(sid)
                else {
                    let refusal = Refusal::new(400, "no upload is running in this session");
                    return Some(refusal.to_envelope(sid, typ));
                };
                if task.is_finished() {
                    // The upload already failed and said so; its late chunks need no answer.
                    return None;
                }
                // The sender may run a window ahead of the acknowledgements, never more:
                // the queue is unbounded so that reading the WebSocket never waits on a disk,
                // and this bound keeps it from growing without limit.
                let size = data.len();
                if size > MAX_CHUNK || queued.load(Ordering::Relaxed) + size > WINDOW_BYTES + MAX_CHUNK {
                    self.cancel(sid);
                    let refusal = Refusal::new(400, "file data beyond the transfer window; upload aborted");
                    return Some(refusal.to_envelope(sid, typ));
                }
                queued.fetch_add(size, Ordering::Relaxed);
                let _ = chunks.send(upload::Chunk { offset, data, sha256 });
                None
            }
            FileTransfer::Ack { offset } => {
                if let Some(Running {
                    feed: Feed::Download(acks, end),
                    ..
                }) = self.running.get(sid)
                {
                    acks.send_if_modified(|acked| {
                        let newer = offset > *acked;
                        if newer {
                            *acked = offset;
                        }
                        newer
                    });
                    let end = end.load(Ordering::Relaxed);
                    if end >= 0 && offset >= end {
                        // Complete: the task sees the ack and ends by itself (not aborted).
                        self.running.remove(sid);
                    }
                }
                None
            }
            FileTransfer::Error(body) => {
                if self.cancel(sid) {
                    tracing::info!(
                        "session {sid}: the transfer was cancelled by the other side: {}",
                        body.err
                    );
                }
                None
            }
            FileTransfer::FileInfo(_) | FileTransfer::FileList { .. } => {
                let refusal = Refusal::new(400, format!("unexpected `{typ}` from the hub"));
                Some(refusal.to_envelope(sid, typ))
            }
        }
    }

    fn context(&self, sid: &str, version: u32) -> Context {
        Context {
            policy: self.policy.clone(),
            bulk: self.bulk.clone(),
            sid: sid.to_owned(),
            version,
        }
    }

    /// The refusal of a second transfer in a session, if one is running.
    fn busy(&mut self, sid: &str, request: &str) -> Option<Envelope> {
        self.running.retain(|_, running| !running.task.is_finished());
        self.running.contains_key(sid).then(|| {
            Refusal::new(409, "a transfer is already running in this session").to_envelope(sid, request)
        })
    }

    /// Ends the session's transfer, if any: an interrupted upload deletes its temporary file,
    /// unless it is resumable (version 2 with an `upload_id`). Returns whether one was running.
    pub fn cancel(&mut self, sid: &str) -> bool {
        let Some(running) = self.running.remove(sid) else {
            return false;
        };
        let was_running = !running.task.is_finished();
        // Aborting drops the task's state; its temporary-file guard decides what to keep.
        running.task.abort();
        was_running
    }

    /// Ends every transfer (the connection is gone).
    pub fn end_all(&mut self) {
        let sids: Vec<String> = self.running.keys().cloned().collect();
        let mut ended = 0;
        for sid in sids {
            if self.cancel(&sid) {
                ended += 1;
            }
        }
        if ended > 0 {
            tracing::info!("ending {ended} file transfer(s)");
        }
    }
}

#[cfg(test)]
mod tests;
