//! Reading a password: from the terminal with echo off (so it never appears on screen or in a
//! scrollback), or one line from stdin for scripts (`--password-stdin`).

use std::{
    fs::File,
    io::{BufRead, BufReader, Write},
    os::fd::AsRawFd,
    sync::Mutex,
};

use anyhow::{Context, Result, bail};

/// The terminal settings to put back if Ctrl-C interrupts the prompt: the guard's `Drop` does
/// not run when the process exits on a signal, and a shell left without echo looks broken.
static SAVED_SETTINGS: Mutex<Option<(i32, libc::termios)>> = Mutex::new(None);

/// [`prompt`], with Ctrl-C restoring echo before the process exits.
pub async fn prompt_interruptible(text: &'static str) -> Result<String> {
    let reading = tokio::task::spawn_blocking(move || prompt(text));
    tokio::select! {
        result = reading => result?,
        _ = tokio::signal::ctrl_c() => {
            if let Some((fd, saved)) = SAVED_SETTINGS.lock().ok().and_then(|mut s| s.take()) {
                // SAFETY: puts back settings read from the same descriptor, still open in the
                // blocked reading thread.
                unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &saved) };
            }
            eprintln!();
            std::process::exit(130);
        }
    }
}

/// Prompts on the controlling terminal (`/dev/tty`, so it works even with stdin redirected).
fn prompt(prompt: &str) -> Result<String> {
    let tty = File::options()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .context("no terminal to ask for the password; pass it with --password-stdin")?;
    let mut writer = &tty;
    writer.write_all(prompt.as_bytes())?;
    writer.flush()?;
    let line = {
        let _echo_off = EchoOff::new(&tty)?;
        read_line(BufReader::new(&tty))
    };
    // The Enter the user typed was not echoed either.
    let _ = writer.write_all(b"\n");
    line
}

/// Reads one line from stdin.
pub fn from_stdin() -> Result<String> {
    read_line(std::io::stdin().lock())
}

fn read_line(mut reader: impl BufRead) -> Result<String> {
    let mut line = String::new();
    reader.read_line(&mut line).context("cannot read the password")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        bail!("empty password");
    }
    Ok(password)
}

/// Turns terminal echo off until dropped, restoring the previous settings on every path.
struct EchoOff {
    fd: i32,
    saved: libc::termios,
}

impl EchoOff {
    fn new(tty: &File) -> Result<EchoOff> {
        let fd = tty.as_raw_fd();
        // SAFETY: termios is plain data; tcgetattr fills it for a valid, open descriptor.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return Err(std::io::Error::last_os_error()).context("cannot read terminal settings");
        }
        let mut quiet = saved;
        quiet.c_lflag &= !(libc::ECHO | libc::ECHONL);
        // Keep ICANON: the line discipline still handles backspace and Enter.
        quiet.c_lflag |= libc::ICANON;
        if let Ok(mut slot) = SAVED_SETTINGS.lock() {
            *slot = Some((fd, saved));
        }
        if unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &quiet) } != 0 {
            return Err(std::io::Error::last_os_error()).context("cannot turn off echo");
        }
        Ok(EchoOff { fd, saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Ok(mut slot) = SAVED_SETTINGS.lock() {
            *slot = None;
        }
        // SAFETY: restores the settings read in `new` on the same, still open descriptor.
        unsafe { libc::tcsetattr(self.fd, libc::TCSAFLUSH, &self.saved) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_endings_are_stripped() {
        assert_eq!(read_line(&b"s3cret\r\n"[..]).unwrap(), "s3cret");
        assert_eq!(read_line(&b"with space \nnext"[..]).unwrap(), "with space ");
        assert!(read_line(&b"\n"[..]).is_err());
    }
}
