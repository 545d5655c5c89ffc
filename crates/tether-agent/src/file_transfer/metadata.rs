//! The short requests: `stat` (→ `file_info`), `list` (→ `file_list`) and `mkdir` (→ `ack`).
//! Each runs on the blocking pool (a slow filesystem must not stall the agent) and answers on
//! the bulk queue.

use std::{
    ffi::CString,
    fs::Metadata,
    os::{
        fd::AsFd as _,
        unix::{ffi::OsStrExt as _, fs::MetadataExt as _},
    },
};

use tether_proto::file_transfer::{FileInfo, FileTransfer, go_mode};

use super::{Context, Policy, Refusal, confine::Location, system};

/// Entries of one `list` at most.
const MAX_ENTRIES: usize = 10_000;
/// The encoded `file_list` must fit the hub's frame limit (1 MiB by default) with room to
/// spare; entries beyond this are left out, like those beyond `MAX_ENTRIES`.
const MAX_LIST_BYTES: usize = 768 * 1024;
/// Permissions of a directory created without a `mode` (before the umask).
const DEFAULT_DIRECTORY_MODE: u32 = 0o755;

pub async fn answer(context: &Context, message: FileTransfer) {
    let request = message.typ();
    let policy = context.policy.clone();
    let work = tokio::task::spawn_blocking(move || match message {
        FileTransfer::Stat { path } => stat(&policy, &path),
        FileTransfer::List { path } => list(&policy, &path),
        FileTransfer::Mkdir { path, mode } => make_directory(&policy, &path, mode),
        other => Err(Refusal::new(400, format!("unexpected `{}`", other.typ()))),
    });
    match work.await {
        Ok(Ok(reply)) => context.send(reply).await,
        Ok(Err(refusal)) => {
            tracing::info!("session {}: {request} refused: {}", context.sid, refusal.text);
            context.refuse(request, &refusal).await;
        }
        Err(error) => {
            let refusal = Refusal::new(500, format!("{request} failed: {error}"));
            context.refuse(request, &refusal).await;
        }
    }
}

/// `file_info` of a path, in the stock agent's layout (Go mode bits, int64 size).
pub fn file_info(path: String, metadata: &Metadata) -> FileInfo {
    FileInfo {
        path,
        size: i64::try_from(metadata.size()).unwrap_or(i64::MAX),
        uid: metadata.uid(),
        gid: metadata.gid(),
        mode: go_mode::from_unix(metadata.mode()),
        modtime: (
            metadata.mtime(),
            u32::try_from(metadata.mtime_nsec()).unwrap_or(0),
        ),
    }
}

fn stat(policy: &Policy, path: &str) -> Result<FileTransfer, Refusal> {
    let location = policy.roots.resolve(path)?;
    let metadata = location.metadata_no_link()?;
    Ok(FileTransfer::FileInfo(file_info(path.to_owned(), &metadata)))
}

fn list(policy: &Policy, path: &str) -> Result<FileTransfer, Refusal> {
    let location = policy.roots.resolve(path)?;
    let metadata = location.metadata_no_link()?;
    if !metadata.is_dir() {
        return Ok(FileTransfer::FileList {
            path: path.to_owned(),
            entries: vec![file_info(path.to_owned(), &metadata)],
        });
    }
    let directory = location.open_as_directory()?;
    let mut names = system::read_directory(directory.as_fd(), MAX_ENTRIES)
        .map_err(|error| Refusal::from_io(path, &error))?;
    names.sort_by(|a, b| a.name.cmp(&b.name));
    let base = path.trim_end_matches('/');
    let mut entries = Vec::with_capacity(names.len());
    let mut encoded = 0;
    for entry in names {
        let Some(name) = system::component(entry.name.as_bytes()) else {
            continue;
        };
        // An entry removed since the directory was read is simply left out.
        let Ok(metadata) = system::metadata_at(directory.as_fd(), &name) else {
            continue;
        };
        let entry_path = format!("{base}/{}", entry.name.to_string_lossy());
        // Path plus the fixed fields and their keys, generously.
        encoded += entry_path.len() + 96;
        if encoded > MAX_LIST_BYTES {
            tracing::info!("list {path}: truncated to {} entries", entries.len());
            break;
        }
        entries.push(file_info(entry_path, &metadata));
    }
    Ok(FileTransfer::FileList {
        path: path.to_owned(),
        entries,
    })
}

fn make_directory(policy: &Policy, path: &str, mode: Option<u32>) -> Result<FileTransfer, Refusal> {
    let location: Location = policy.roots.resolve(path)?;
    let name = location.name_or_refuse("create")?;
    // Sticky is fine on a directory; setuid/setgid follow the same rule as for files.
    let requested = mode.map_or(DEFAULT_DIRECTORY_MODE, go_mode::to_unix_permissions);
    if requested & 0o6000 != 0 && !policy.allow_setuid {
        return Err(setuid_refusal());
    }
    let mode = requested & !policy.umask & 0o7777;
    system::make_directory_at(location.directory.as_fd(), name, mode).map_err(|error| {
        match error.raw_os_error() {
            Some(libc::EEXIST) => Refusal::new(409, format!("{path} already exists")),
            _ => Refusal::from_io(path, &error),
        }
    })?;
    if policy.owner_uid.is_some() || policy.owner_gid.is_some() {
        system::change_owner_at(
            location.directory.as_fd(),
            name,
            policy.owner_uid,
            policy.owner_gid,
        )
        .map_err(|error| Refusal::from_io(path, &error))?;
    }
    tracing::info!("mkdir {path}: created");
    Ok(FileTransfer::Ack { offset: 0 })
}

pub fn setuid_refusal() -> Refusal {
    Refusal::new(403, "setuid/setgid bits refused (file_transfer.allow_setuid)")
}

/// Looks a group up by name (`file_transfer.group`).
pub fn group_id(name: &str) -> Result<u32, String> {
    let c_name = CString::new(name).map_err(|_| format!("file_transfer.group = {name:?}: invalid name"))?;
    let mut buffer: Vec<libc::c_char> = vec![0; 1024];
    loop {
        // SAFETY: group is plain old data; all-zero is a valid (if meaningless) value.
        let mut entry: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: all pointers are valid for the call; the buffer length is its capacity.
        let code = unsafe {
            libc::getgrnam_r(
                c_name.as_ptr(),
                &mut entry,
                buffer.as_mut_ptr(),
                buffer.len(),
                &mut result,
            )
        };
        if code == libc::ERANGE && buffer.len() < 1 << 20 {
            buffer.resize(buffer.len() * 4, 0);
            continue;
        }
        if code != 0 {
            return Err(format!(
                "cannot look up file_transfer.group = {name}: {}",
                std::io::Error::from_raw_os_error(code)
            ));
        }
        if result.is_null() {
            return Err(format!(
                "file_transfer.group = {name}: no such group on this device"
            ));
        }
        return Ok(entry.gr_gid);
    }
}
