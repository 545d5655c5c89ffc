//! Starting shell processes: an interactive shell on a fresh PTY, or one command (`shell -c`)
//! with its output on a pipe. Both run as the account chosen for them in a clean environment, in a
//! session (and process group) of their own so that stopping one reaches all its processes.

use std::{
    os::fd::{AsRawFd as _, OwnedFd},
    path::PathBuf,
    process::Stdio,
};

use tokio::{net::unix::pipe, process::Child};

use crate::{
    account::{self, Account},
    config::TerminalConfig,
};

const TERM: &str = "xterm-256color";
const ROOT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const USER_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// Variables passed through from the agent's environment (locale and time zone only).
const INHERITED: [&str; 3] = ["LANG", "LC_ALL", "TZ"];

/// An interactive shell: the PTY master and the shell process.
pub struct Interactive {
    pub pty: pty_process::Pty,
    pub child: Child,
}

/// One command: its merged stdout and stderr, and the process.
pub struct Exec {
    pub output: pipe::Receiver,
    pub child: Child,
}

/// Starts the configured shell as `account` on a new PTY of `width` × `height`.
pub fn spawn_interactive(
    config: &TerminalConfig,
    account: &Account,
    width: u16,
    height: u16,
) -> Result<Interactive, String> {
    let failed = |error: pty_process::Error| format!("cannot start {}: {error}", config.shell);
    let (pty, pts) = pty_process::open().map_err(failed)?;
    pty.resize(pty_process::Size::new(height, width))
        .map_err(failed)?;
    let switch = account::needs_switch(account);
    if switch {
        // The terminal must belong to the shell's user, or programs like `mesg`, `sudo` or
        // `ssh` that reopen /dev/tty fail.
        // SAFETY: the descriptor is the open pts; uid/gid are plain integers (-1 keeps the group).
        if unsafe { libc::fchown(pts.as_raw_fd(), account.uid, u32::MAX) } != 0 {
            return Err(failed(std::io::Error::last_os_error().into()));
        }
    }
    let mut command = pty_process::Command::new(&config.shell)
        .args(&config.args)
        .env_clear()
        .envs(environment(account, &config.shell))
        .current_dir(working_directory(account))
        .kill_on_drop(true);
    if switch {
        // SAFETY: the closure only makes async-signal-safe system calls (see account.rs).
        command = unsafe { command.pre_exec(account::drop_privileges(account)) };
    }
    let child = command.spawn(pts).map_err(failed)?;
    Ok(Interactive { pty, child })
}

/// Runs `shell -c command` as `account` with stdin closed and stdout and stderr on one pipe (so that their
/// order is kept, as on a terminal).
pub fn spawn_exec(config: &TerminalConfig, account: &Account, command_line: &str) -> Result<Exec, String> {
    let failed = |error: std::io::Error| format!("cannot start {}: {error}", config.shell);
    let (reader, writer) = std::io::pipe().map_err(failed)?;
    let error_writer = writer.try_clone().map_err(failed)?;
    let mut drop_privileges = account::needs_switch(account).then(|| account::drop_privileges(account));
    let mut command = tokio::process::Command::new(&config.shell);
    command
        .arg("-c")
        .arg(command_line)
        .env_clear()
        .envs(environment(account, &config.shell))
        .current_dir(working_directory(account))
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(error_writer)
        .kill_on_drop(true);
    // SAFETY: setsid and the privilege drop are async-signal-safe system calls.
    unsafe {
        command.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            match drop_privileges.as_mut() {
                Some(drop_privileges) => drop_privileges(),
                None => Ok(()),
            }
        });
    }
    let child = command.spawn().map_err(failed)?;
    // Our copies of the write end must go, or the pipe never reports end of file.
    drop(command);
    let output = pipe::Receiver::from_owned_fd(OwnedFd::from(reader)).map_err(failed)?;
    Ok(Exec { output, child })
}

fn environment(account: &Account, shell: &str) -> Vec<(String, String)> {
    let path = if account.uid == 0 { ROOT_PATH } else { USER_PATH };
    let mut variables = vec![
        ("HOME".to_owned(), account.home.to_string_lossy().into_owned()),
        ("USER".to_owned(), account.name.clone()),
        ("LOGNAME".to_owned(), account.name.clone()),
        ("SHELL".to_owned(), shell.to_owned()),
        ("TERM".to_owned(), TERM.to_owned()),
        ("PATH".to_owned(), path.to_owned()),
    ];
    for name in INHERITED {
        if let Ok(value) = std::env::var(name) {
            variables.push((name.to_owned(), value));
        }
    }
    variables
}

fn working_directory(account: &Account) -> PathBuf {
    if account.home.is_dir() {
        account.home.clone()
    } else {
        "/".into()
    }
}
