//! The lock a serving hub holds on its data directory: an exclusive `flock` on `DATA_DIR/hub.lock`
//! for as long as it runs. A second hub on the same directory, and `tether-hub restore` into it,
//! are refused while it is held. The kernel releases it when the process ends, however it ends
//! (SIGKILL, power loss), so a stale lock never blocks a restart.

use std::{
    fs::File,
    os::{fd::AsRawFd as _, unix::fs::OpenOptionsExt as _},
    path::{Path, PathBuf},
};

/// The lock file's name in the data directory (empty; only its lock matters).
pub const LOCK_FILE: &str = "hub.lock";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("a hub is running on the data directory {0} (it holds {0}/{LOCK_FILE}); stop it first")]
    Held(PathBuf),
    #[error("cannot lock the data directory {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Held while it lives; dropping it releases the lock.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the lock of `data_dir` (which must exist), without waiting.
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock, LockError> {
        let io = |source| LockError::Io {
            path: data_dir.to_owned(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(data_dir.join(LOCK_FILE))
            .map_err(io)?;
        // SAFETY: flock on a descriptor this function owns; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let error = std::io::Error::last_os_error();
            return Err(match error.raw_os_error() {
                Some(libc::EWOULDBLOCK) => LockError::Held(data_dir.to_owned()),
                _ => io(error),
            });
        }
        Ok(DataDirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_until_the_first_is_dropped() {
        let directory = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(directory.path()).unwrap();
        let refused = DataDirLock::acquire(directory.path()).unwrap_err();
        assert!(matches!(refused, LockError::Held(_)), "{refused}");
        assert!(refused.to_string().contains("a hub is running"), "{refused}");
        drop(first);
        DataDirLock::acquire(directory.path()).unwrap();
    }
}
