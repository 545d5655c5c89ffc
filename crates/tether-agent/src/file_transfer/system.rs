//! Thin wrappers over the `*at` system calls that file transfers use. Everything goes through a
//! directory descriptor and one path component, so that no path string is ever resolved again
//! after confinement checked it.
//!
//! Metadata is read through `std` on a descriptor (`File::metadata`), not with `libc::stat`,
//! because `std` picks the 64-bit variants on 32-bit glibc (files over 2 GiB) on every target.

use std::{
    ffi::{CStr, CString, OsString},
    fs::{File, Metadata},
    io,
    os::{
        fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
        unix::ffi::OsStringExt as _,
    },
};

/// Flags common to every open: never leak a descriptor into a shell, and on 32-bit systems
/// allow files over 2 GiB (harmless elsewhere: the kernel sets it for 64-bit processes anyway).
const BASE_FLAGS: libc::c_int = libc::O_CLOEXEC | libc::O_LARGEFILE;

fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// Opens an absolute path (a configured root) as a directory.
pub fn open_directory_path(path: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: `path` is NUL-terminated; the result is checked before use.
    let fd = check(unsafe { libc::open(path.as_ptr(), BASE_FLAGS | libc::O_PATH | libc::O_DIRECTORY) })?;
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `openat(directory, name, flags | O_CLOEXEC, mode)`.
pub fn open_at(directory: BorrowedFd, name: &CStr, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: `name` is NUL-terminated and `directory` is open; the result is checked.
    let fd = check(unsafe {
        libc::openat(
            directory.as_raw_fd(),
            name.as_ptr(),
            flags | BASE_FLAGS,
            mode as libc::c_uint,
        )
    })?;
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The next directory of a walk, never following a symbolic link. `O_PATH` needs no read
/// permission on the directory (search permission is enough, as for a path lookup).
pub fn open_subdirectory(directory: BorrowedFd, name: &CStr) -> io::Result<OwnedFd> {
    open_at(
        directory,
        name,
        libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    )
}

/// `lstat` of `name` in `directory`: a symbolic link is described, not followed.
pub fn metadata_at(directory: BorrowedFd, name: &CStr) -> io::Result<Metadata> {
    let fd = open_at(directory, name, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
    File::from(fd).metadata()
}

/// Metadata of an open descriptor (also of an `O_PATH` one).
pub fn metadata_of(fd: BorrowedFd) -> io::Result<Metadata> {
    let duplicate = fd.try_clone_to_owned()?;
    File::from(duplicate).metadata()
}

/// A readable descriptor of the directory `fd` refers to (`O_PATH` descriptors cannot be
/// listed or synced).
pub fn reopen_directory(fd: BorrowedFd) -> io::Result<File> {
    Ok(File::from(open_at(
        fd,
        c".",
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    )?))
}

pub fn make_directory_at(directory: BorrowedFd, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated and `directory` is open.
    check(unsafe { libc::mkdirat(directory.as_raw_fd(), name.as_ptr(), mode as libc::mode_t) })?;
    Ok(())
}

pub fn unlink_at(directory: BorrowedFd, name: &CStr) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated and `directory` is open.
    check(unsafe { libc::unlinkat(directory.as_raw_fd(), name.as_ptr(), 0) })?;
    Ok(())
}

/// Renames `from` over `to`, both in `directory` (atomic; replaces an existing `to`).
pub fn rename_at(directory: BorrowedFd, from: &CStr, to: &CStr) -> io::Result<()> {
    let fd = directory.as_raw_fd();
    // SAFETY: both names are NUL-terminated and `directory` is open.
    check(unsafe { libc::renameat(fd, from.as_ptr(), fd, to.as_ptr()) })?;
    Ok(())
}

/// Renames `from` to `to` only if `to` does not exist (`EEXIST` otherwise), atomically.
/// `renameat2(RENAME_NOREPLACE)` needs Linux 3.15 and filesystem support; without it, a hard
/// link (which also fails if the name exists) and an unlink of the old name do the same.
pub fn rename_no_replace_at(directory: BorrowedFd, from: &CStr, to: &CStr) -> io::Result<()> {
    const RENAME_NOREPLACE: libc::c_uint = 1;
    let fd = directory.as_raw_fd();
    // SAFETY: both names are NUL-terminated and `directory` is open; the raw system call is
    // used because older glibc and musl have no `renameat2` wrapper.
    let result = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            fd,
            from.as_ptr(),
            fd,
            to.as_ptr(),
            RENAME_NOREPLACE,
        )
    };
    if result == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    if !matches!(error.raw_os_error(), Some(libc::ENOSYS | libc::EINVAL)) {
        return Err(error);
    }
    // SAFETY: as above.
    check(unsafe { libc::linkat(fd, from.as_ptr(), fd, to.as_ptr(), 0) })?;
    unlink_at(directory, from)
}

/// `fchownat(directory, name, uid, gid, AT_SYMLINK_NOFOLLOW)`; `None` keeps the current id.
pub fn change_owner_at(
    directory: BorrowedFd,
    name: &CStr,
    uid: Option<u32>,
    gid: Option<u32>,
) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated and `directory` is open; -1 means "unchanged".
    check(unsafe {
        libc::fchownat(
            directory.as_raw_fd(),
            name.as_ptr(),
            uid.unwrap_or(u32::MAX),
            gid.unwrap_or(u32::MAX),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(())
}

/// One directory entry's name and `d_type` (`DT_UNKNOWN` on filesystems that do not say).
pub struct Entry {
    pub name: OsString,
    pub kind: u8,
}

/// Reads up to `limit` entry names of the directory `fd` refers to (without `.` and `..`).
pub fn read_directory(fd: BorrowedFd, limit: usize) -> io::Result<Vec<Entry>> {
    let readable = open_at(fd, c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    let raw = readable.as_raw_fd();
    // SAFETY: `raw` is an open directory descriptor; on success the DIR owns it.
    let stream = unsafe { libc::fdopendir(raw) };
    if stream.is_null() {
        return Err(io::Error::last_os_error());
    }
    // The DIR stream now owns the descriptor: closedir below closes it.
    std::mem::forget(readable);
    let mut entries = Vec::new();
    let result = loop {
        if entries.len() >= limit {
            break Ok(());
        }
        // errno tells the end of the directory (unchanged) from an error (set).
        // SAFETY: errno is thread-local.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: `stream` is a valid DIR until closedir; readdir64 is the large-inode variant
        // on 32-bit glibc (and an alias of readdir on musl).
        let entry = unsafe { libc::readdir64(stream) };
        if entry.is_null() {
            let error = io::Error::last_os_error();
            break if error.raw_os_error().unwrap_or(0) == 0 {
                Ok(())
            } else {
                Err(error)
            };
        }
        // SAFETY: a non-null entry is valid until the next readdir; the name is NUL-terminated.
        let (name, kind) = unsafe {
            let name = CStr::from_ptr((*entry).d_name.as_ptr()).to_bytes().to_vec();
            (name, (*entry).d_type)
        };
        if name == b"." || name == b".." {
            continue;
        }
        entries.push(Entry {
            name: OsString::from_vec(name),
            kind,
        });
    };
    // SAFETY: `stream` came from fdopendir and is closed exactly once.
    unsafe { libc::closedir(stream) };
    result.map(|()| entries)
}

/// A path component as a C string (`None` if it holds a NUL byte).
pub fn component(name: &[u8]) -> Option<CString> {
    CString::new(name).ok()
}
