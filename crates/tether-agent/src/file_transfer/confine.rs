//! Confinement: every path a transfer names must lie inside one of `file_transfer.roots`.
//!
//! A requested path is split into components lexically (`..` is refused, never interpreted),
//! matched against the roots by whole components (root `/data` does not contain `/database`),
//! and then walked one component at a time with `openat(O_NOFOLLOW)` from the root's directory,
//! so a symbolic link anywhere on the way (including the final name) is refused rather than
//! followed. The result is a directory descriptor plus the final name: callers operate through
//! the descriptor (`openat`, `mkdirat`, `renameat`), so a link swapped in after the check
//! cannot redirect them.

use std::{
    ffi::{CStr, CString},
    fs::Metadata,
    io,
    os::{
        fd::{AsFd as _, BorrowedFd, OwnedFd},
        unix::{ffi::OsStrExt as _, fs::FileTypeExt as _},
    },
    path::{Path, PathBuf},
};

use super::{Refusal, system};

/// The configured roots, canonicalized at start.
#[derive(Debug, Clone, Default)]
pub struct Roots {
    roots: Vec<Root>,
}

#[derive(Debug, Clone)]
struct Root {
    /// The root as configured (normalized) and as canonicalized: a request may use either.
    spellings: Vec<Vec<Vec<u8>>>,
    /// Opened for every request, so that a filesystem mounted there later is seen.
    canonical: CString,
}

/// Where a requested path leads: the directory that holds it and its final name.
#[derive(Debug)]
pub struct Location {
    /// The requested path, for messages.
    pub path: String,
    /// The directory that holds the target; the root itself when the path names a root.
    pub directory: OwnedFd,
    /// The final component; `None` when the path names a root.
    pub name: Option<CString>,
}

impl Roots {
    /// Canonicalizes each configured root. A root that does not exist (yet) is skipped with a
    /// warning: refusing everything under it is the safe reading.
    pub fn new(configured: &[PathBuf]) -> Roots {
        let mut roots = Vec::new();
        for path in configured {
            let canonical = match std::fs::canonicalize(path) {
                Ok(canonical) if canonical.is_dir() => canonical,
                Ok(_) => {
                    tracing::warn!(
                        "file_transfer.roots: {} is not a directory; ignored",
                        path.display()
                    );
                    continue;
                }
                Err(error) => {
                    tracing::warn!(
                        "file_transfer.roots: cannot use {}: {error}; ignored",
                        path.display()
                    );
                    continue;
                }
            };
            let Ok(canonical_c) = CString::new(canonical.as_os_str().as_bytes()) else {
                continue;
            };
            let mut spellings = vec![lexical_components(&canonical)];
            let configured = lexical_components(path);
            if configured != spellings[0] {
                spellings.push(configured);
            }
            roots.push(Root {
                spellings,
                canonical: canonical_c,
            });
        }
        Roots { roots }
    }

    /// The canonical root directories.
    pub fn paths(&self) -> impl Iterator<Item = &CStr> {
        self.roots.iter().map(|root| root.canonical.as_c_str())
    }

    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// Resolves `path` inside the roots. Refusals name the rule.
    pub fn resolve(&self, path: &str) -> Result<Location, Refusal> {
        let components = split(path)?;
        let Some((root, rest)) = self.roots.iter().find_map(|root| {
            root.spellings
                .iter()
                .find(|spelling| components.starts_with(spelling))
                .map(|spelling| (root, &components[spelling.len()..]))
        }) else {
            return Err(outside(path));
        };
        let mut directory =
            system::open_directory_path(&root.canonical).map_err(|error| Refusal::from_io(path, &error))?;
        let Some((last, between)) = rest.split_last() else {
            return Ok(Location {
                path: path.to_owned(),
                directory,
                name: None,
            });
        };
        for component in between {
            let name = c_component(path, component)?;
            directory = match system::open_subdirectory(directory.as_fd(), &name) {
                Ok(next) => next,
                Err(error) => return Err(walk_refusal(path, directory.as_fd(), &name, &error)),
            };
        }
        Ok(Location {
            path: path.to_owned(),
            directory,
            name: Some(c_component(path, last)?),
        })
    }
}

impl Location {
    /// `lstat` of the target (a root: its own metadata).
    pub fn metadata(&self) -> io::Result<Metadata> {
        match &self.name {
            Some(name) => system::metadata_at(self.directory.as_fd(), name),
            None => system::metadata_of(self.directory.as_fd()),
        }
    }

    /// The target's metadata, refusing a symbolic link (reads and writes alike).
    pub fn metadata_no_link(&self) -> Result<Metadata, Refusal> {
        let metadata = self
            .metadata()
            .map_err(|error| Refusal::from_io(&self.path, &error))?;
        if metadata.file_type().is_symlink() {
            return Err(symbolic_link(&self.path));
        }
        Ok(metadata)
    }

    /// A directory descriptor for the target itself (which must be a directory, not a link).
    pub fn open_as_directory(&self) -> Result<OwnedFd, Refusal> {
        match &self.name {
            None => self
                .directory
                .try_clone()
                .map_err(|error| Refusal::from_io(&self.path, &error)),
            Some(name) => system::open_subdirectory(self.directory.as_fd(), name)
                .map_err(|error| walk_refusal(&self.path, self.directory.as_fd(), name, &error)),
        }
    }

    /// The final name, refusing a root itself (which cannot be replaced or created).
    pub fn name_or_refuse(&self, what: &str) -> Result<&CStr, Refusal> {
        self.name.as_deref().ok_or_else(|| {
            Refusal::new(
                409,
                format!(
                    "{}: cannot {what} a root directory (file_transfer.roots)",
                    self.path
                ),
            )
        })
    }
}

/// What a file is, for messages: only regular files are transferred.
pub fn kind_of(metadata: &Metadata) -> &'static str {
    let kind = metadata.file_type();
    if kind.is_dir() {
        "a directory"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "a regular file"
    }
}

pub fn outside(path: &str) -> Refusal {
    Refusal::new(
        403,
        format!("path {path} is outside the allowed roots (file_transfer.roots)"),
    )
}

pub fn symbolic_link(path: &str) -> Refusal {
    Refusal::new(
        403,
        format!("path {path} leads through a symbolic link (file_transfer.roots confinement)"),
    )
}

/// Splits an absolute path into its components: empty and `.` components are dropped, `..` is
/// refused (interpreting it lexically could still pass through a link; refusing is simpler).
fn split(path: &str) -> Result<Vec<Vec<u8>>, Refusal> {
    if !path.starts_with('/') {
        return Err(Refusal::new(
            403,
            format!("path {path} is not absolute (file_transfer.roots)"),
        ));
    }
    let mut components = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                return Err(Refusal::new(
                    403,
                    format!("path {path} contains `..` (file_transfer.roots confinement)"),
                ));
            }
            other => components.push(other.as_bytes().to_vec()),
        }
    }
    Ok(components)
}

fn lexical_components(path: &Path) -> Vec<Vec<u8>> {
    path.as_os_str()
        .as_bytes()
        .split(|byte| *byte == b'/')
        .filter(|component| !component.is_empty() && *component != b".")
        .map(<[u8]>::to_vec)
        .collect()
}

fn c_component(path: &str, component: &[u8]) -> Result<CString, Refusal> {
    system::component(component)
        .ok_or_else(|| Refusal::new(400, format!("path {path:?} contains a NUL byte")))
}

/// Names why a step of the walk failed: a symbolic link (`ELOOP`, or `ENOTDIR` on a link)
/// is a confinement refusal; anything else is reported as the system said.
fn walk_refusal(path: &str, directory: BorrowedFd, name: &CStr, error: &io::Error) -> Refusal {
    if matches!(error.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) {
        match system::metadata_at(directory, name) {
            Ok(metadata) if metadata.file_type().is_symlink() => return symbolic_link(path),
            Ok(metadata) => {
                return Refusal::new(
                    409,
                    format!(
                        "{path}: {} is {}, not a directory",
                        String::from_utf8_lossy(name.to_bytes()),
                        kind_of(&metadata)
                    ),
                );
            }
            Err(_) => {}
        }
    }
    Refusal::from_io(path, error)
}

#[cfg(test)]
#[path = "confine_tests.rs"]
pub mod tests;
