//! The local account a shell runs as: looked up in the user database before forking, and the
//! privilege drop done in the child between fork and exec.
//!
//! Everything that allocates or reads files (getpwnam_r, getgrouplist) happens in the parent;
//! the child only makes async-signal-safe system calls (setgroups, setgid, setuid).

use std::{ffi::CString, io, path::PathBuf};

/// A local user, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    /// Supplementary groups (including `gid`), as initgroups would set them.
    pub groups: Vec<u32>,
}

/// Whether the agent runs as root (and so may switch users).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The account shells run as: `configured` (by name, from `terminal.user`), or the agent's own
/// user.
pub fn shell_account(configured: Option<&str>) -> Result<Account, String> {
    match configured {
        Some(name) => named_account(name, &format!("terminal.user = {name}")),
        None => Ok(own_account()),
    }
}

/// The agent's own account.
pub fn own_account() -> Account {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let own_uid = unsafe { libc::geteuid() };
    by_uid(own_uid).unwrap_or_else(|| fallback_account(own_uid))
}

/// The account `name`, which the agent must be able to switch to; `setting` says where the
/// name came from, for the errors.
pub fn named_account(name: &str, setting: &str) -> Result<Account, String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let own_uid = unsafe { libc::geteuid() };
    let account = by_name(name)
        .map_err(|error| format!("cannot look up {setting}: {error}"))?
        .ok_or_else(|| format!("{setting}: no such user on this device"))?;
    if account.uid != own_uid && own_uid != 0 {
        return Err(format!("{setting} but the agent is not running as root"));
    }
    Ok(account)
}

/// An account for a uid the user database does not know (e.g. in a minimal container).
fn fallback_account(uid: u32) -> Account {
    // SAFETY: getegid has no preconditions and cannot fail.
    let gid = unsafe { libc::getegid() };
    Account {
        name: std::env::var("USER").unwrap_or_else(|_| uid.to_string()),
        uid,
        gid,
        home: std::env::var_os("HOME").map_or_else(|| "/".into(), PathBuf::from),
        groups: vec![gid],
    }
}

/// Looks a user up by name.
pub fn by_name(name: &str) -> io::Result<Option<Account>> {
    let c_name = CString::new(name).map_err(|_| io::Error::other("user name contains a NUL byte"))?;
    lookup(|entry, buffer, result| {
        // SAFETY: all pointers are valid for the call; the buffer length is its capacity.
        unsafe { libc::getpwnam_r(c_name.as_ptr(), entry, buffer.as_mut_ptr(), buffer.len(), result) }
    })
}

fn by_uid(uid: u32) -> Option<Account> {
    lookup(|entry, buffer, result| {
        // SAFETY: all pointers are valid for the call; the buffer length is its capacity.
        unsafe { libc::getpwuid_r(uid, entry, buffer.as_mut_ptr(), buffer.len(), result) }
    })
    .ok()
    .flatten()
}

/// Runs a getpw*_r call, growing the buffer while it reports ERANGE.
fn lookup(
    mut call: impl FnMut(*mut libc::passwd, &mut Vec<libc::c_char>, *mut *mut libc::passwd) -> libc::c_int,
) -> io::Result<Option<Account>> {
    let mut buffer: Vec<libc::c_char> = vec![0; 1024];
    loop {
        // SAFETY: passwd is plain old data; all-zero is a valid (if meaningless) value.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let code = call(&mut entry, &mut buffer, &mut result);
        if code == libc::ERANGE && buffer.len() < 1 << 20 {
            buffer.resize(buffer.len() * 4, 0);
            continue;
        }
        if code != 0 {
            return Err(io::Error::from_raw_os_error(code));
        }
        if result.is_null() {
            return Ok(None);
        }
        // SAFETY: on success the entry's strings point into `buffer`, which is still alive.
        let text = |pointer: *const libc::c_char| unsafe {
            if pointer.is_null() {
                String::new()
            } else {
                std::ffi::CStr::from_ptr(pointer).to_string_lossy().into_owned()
            }
        };
        let name = text(entry.pw_name);
        let home = text(entry.pw_dir);
        let groups = group_list(&name, entry.pw_gid);
        return Ok(Some(Account {
            name,
            uid: entry.pw_uid,
            gid: entry.pw_gid,
            home: if home.is_empty() { "/".into() } else { home.into() },
            groups,
        }));
    }
}

/// The user's supplementary groups, as initgroups would compute them.
fn group_list(name: &str, gid: u32) -> Vec<u32> {
    let Ok(c_name) = CString::new(name) else {
        return vec![gid];
    };
    let mut capacity: libc::c_int = 32;
    loop {
        let mut groups: Vec<libc::gid_t> = vec![0; capacity as usize];
        let mut count = capacity;
        // SAFETY: `groups` has room for `count` entries; the name is NUL-terminated.
        let result = unsafe { libc::getgrouplist(c_name.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if result >= 0 {
            groups.truncate(count.max(0) as usize);
            return groups;
        }
        // Too small: glibc and musl report the needed count; grow at least by doubling.
        if capacity >= 65536 {
            return vec![gid];
        }
        capacity = count.max(capacity * 2);
    }
}

/// Returns the function that switches the child to `account`: supplementary groups, group,
/// user, in that order (setuid last, since it gives up the right to do the others).
/// Only meaningful when the agent runs as root and `account` is someone else.
pub fn drop_privileges(account: &Account) -> impl FnMut() -> io::Result<()> + Send + Sync + 'static {
    let (uid, gid, groups) = (account.uid, account.gid, account.groups.clone());
    move || {
        // SAFETY: setgroups, setgid and setuid are async-signal-safe system calls; `groups` was
        // allocated before the fork and is only read here.
        unsafe {
            if libc::setgroups(groups.len() as _, groups.as_ptr()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// Whether a shell for `account` needs a user switch.
pub fn needs_switch(account: &Account) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    is_root() && unsafe { libc::geteuid() } != account.uid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_unknown_users_are_looked_up() {
        let root = by_name("root").unwrap().unwrap();
        assert_eq!(root.uid, 0);
        assert!(root.groups.contains(&0));
        assert_eq!(by_name("no-such-user-tether").unwrap(), None);
        assert!(
            shell_account(Some("no-such-user-tether"))
                .unwrap_err()
                .contains("no such user")
        );
    }

    #[test]
    fn the_default_account_is_the_agents_own() {
        let account = shell_account(None).unwrap();
        // SAFETY: geteuid cannot fail.
        assert_eq!(account.uid, unsafe { libc::geteuid() });
        assert!(!needs_switch(&account));
    }
}
