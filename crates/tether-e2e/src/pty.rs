//! `tether terminal DEVICE` (or any `tether` command) inside a real pseudo-terminal.

use std::{
    io::{Read, Write},
    process::{Child, ExitStatus},
    sync::{Arc, Condvar, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use pty_process::{
    Size,
    blocking::{Command as PtyCommand, Pty},
};

use crate::Cli;

#[derive(Default)]
struct Screen {
    /// Everything the CLI wrote to its terminal.
    bytes: Vec<u8>,
    /// Set when reading the terminal failed: the CLI and everything on its side closed it.
    closed: bool,
}

/// A `tether` process whose stdin, stdout and stderr are a PTY that the test drives.
/// Dropping it kills the process; if the test panicked, what the terminal showed is printed.
pub struct PtySession {
    label: String,
    child: Option<Child>,
    pty: Arc<Pty>,
    screen: Arc<(Mutex<Screen>, Condvar)>,
    /// Output before this offset was consumed by [`PtySession::expect`].
    cursor: Mutex<usize>,
    reader: Option<JoinHandle<()>>,
}

impl PtySession {
    /// Starts `tether ARGS` on a new PTY of `rows` x `cols`.
    pub fn spawn(cli: &Cli, args: &[&str], rows: u16, cols: u16) -> PtySession {
        PtySession::spawn_command(
            cli.command(args),
            &format!("tether {}", args.join(" ")),
            rows,
            cols,
        )
    }

    /// Starts any command on a new PTY of `rows` x `cols` (it becomes the session leader with
    /// the PTY as its controlling terminal).
    pub fn spawn_command(command: std::process::Command, label: &str, rows: u16, cols: u16) -> PtySession {
        let (pty, pts) = pty_process::blocking::open().expect("open a PTY");
        pty.resize(Size::new(rows, cols)).expect("set the PTY size");
        let command = PtyCommand::from(command).env("TERM", "xterm");
        let child = command
            .spawn(pts)
            .unwrap_or_else(|e| panic!("cannot start `{label}` on a PTY: {e}"));
        let pty = Arc::new(pty);
        let screen: Arc<(Mutex<Screen>, Condvar)> = Arc::default();
        let reader = {
            let pty = Arc::clone(&pty);
            let screen = Arc::clone(&screen);
            std::thread::spawn(move || {
                let mut buffer = [0u8; 4096];
                loop {
                    let result = (&*pty).read(&mut buffer);
                    let (lock, signal) = &*screen;
                    let mut screen = lock.lock().unwrap();
                    match result {
                        Ok(n) if n > 0 => screen.bytes.extend_from_slice(&buffer[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        // EIO once the last process holding the terminal has gone.
                        _ => {
                            screen.closed = true;
                            signal.notify_all();
                            return;
                        }
                    }
                    signal.notify_all();
                }
            })
        };
        PtySession {
            label: label.to_owned(),
            child: Some(child),
            pty,
            screen,
            cursor: Mutex::new(0),
            reader: Some(reader),
        }
    }

    /// `tether terminal DEVICE` on a 24 x 80 terminal.
    pub fn terminal(cli: &Cli, device: &str) -> PtySession {
        PtySession::spawn(cli, &["terminal", device], 24, 80)
    }

    /// Types `bytes` (e.g. `b"ls\r"`: Enter is `\r` on a terminal).
    pub fn send(&self, bytes: impl AsRef<[u8]>) {
        (&*self.pty)
            .write_all(bytes.as_ref())
            .unwrap_or_else(|e| panic!("writing to the terminal of `{}`: {e}", self.label));
        let _ = (&*self.pty).flush();
    }

    /// Like [`PtySession::send`], returning the error instead of panicking (for typing at a
    /// terminal that may be closing).
    pub fn try_send(&self, bytes: impl AsRef<[u8]>) -> std::io::Result<()> {
        (&*self.pty).write_all(bytes.as_ref())?;
        (&*self.pty).flush()
    }

    /// Types `line` followed by Enter.
    pub fn send_line(&self, line: &str) {
        self.send(format!("{line}\r"));
    }

    /// Everything the terminal showed so far (lossy UTF-8).
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.screen.0.lock().unwrap().bytes).into_owned()
    }

    /// Waits until `needle` appears in the output after the last match, and returns the text
    /// from the last match up to the end of this one. Panics after `limit`, showing the output.
    pub fn expect(&self, needle: &str, limit: Duration) -> String {
        match self.try_expect(needle, limit) {
            Some(text) => text,
            None => panic!(
                "gave up after {limit:?} waiting for {needle:?} on the terminal of `{}`; it showed:\n{}",
                self.label,
                self.output()
            ),
        }
    }

    /// Like [`PtySession::expect`], returning `None` instead of panicking.
    pub fn try_expect(&self, needle: &str, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        let mut cursor = self.cursor.lock().unwrap();
        let (lock, signal) = &*self.screen;
        let mut screen = lock.lock().unwrap();
        loop {
            let unread = &screen.bytes[*cursor..];
            if let Some(at) = find(unread, needle.as_bytes()) {
                let end = at + needle.len();
                let text = String::from_utf8_lossy(&unread[..end]).into_owned();
                *cursor += end;
                return Some(text);
            }
            let now = Instant::now();
            if now >= deadline || screen.closed {
                return None;
            }
            screen = signal.wait_timeout(screen, deadline - now).unwrap().0;
        }
    }

    /// Output since the last match (not consumed).
    pub fn pending_output(&self) -> String {
        let cursor = *self.cursor.lock().unwrap();
        String::from_utf8_lossy(&self.screen.0.lock().unwrap().bytes[cursor..]).into_owned()
    }

    /// Resizes the terminal: the kernel sends SIGWINCH to the CLI.
    pub fn resize(&self, rows: u16, cols: u16) {
        self.pty.resize(Size::new(rows, cols)).expect("resize the PTY");
    }

    /// Waits for the CLI to exit; `None` if it is still running after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the CLI to exit and for the terminal to be closed (so that everything the CLI
    /// printed is in [`PtySession::output`]); panics after `limit`.
    pub fn expect_exit(&mut self, limit: Duration) -> ExitStatus {
        let status = self.wait_exit(limit).unwrap_or_else(|| {
            panic!(
                "`{}` still running after {limit:?}; its terminal showed:\n{}",
                self.label,
                self.output()
            )
        });
        // Drain what is left in the terminal.
        let (lock, signal) = &*self.screen;
        let mut screen = lock.lock().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !screen.closed && Instant::now() < deadline {
            screen = signal.wait_timeout(screen, Duration::from_millis(100)).unwrap().0;
        }
        status
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn label(&self) -> &str {
        &self.label
    }
}

impl Drop for PtySession {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The reader ends on EIO once the child is gone; don't block a test on it otherwise.
        if let Some(reader) = self.reader.take()
            && reader.is_finished()
        {
            let _ = reader.join();
        }
        if std::thread::panicking() {
            eprintln!(
                "----- terminal of `{}` -----\n{}\n----- end of terminal -----",
                self.label,
                self.output()
            );
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The PTY plumbing itself, on a local shell: typing, output, resize, exit.
    #[test]
    fn drives_a_local_shell() {
        let mut command = std::process::Command::new("/bin/sh");
        command.env("PS1", "$ ");
        let mut session = PtySession::spawn_command(command, "sh", 24, 80);
        session.send_line("echo a-$((20+22))");
        session.expect("a-42", Duration::from_secs(10));
        session.send_line("stty size");
        session.expect("24 80", Duration::from_secs(10));
        session.resize(30, 100);
        session.send_line("stty size");
        session.expect("30 100", Duration::from_secs(10));
        assert!(
            session
                .try_expect("never-printed", Duration::from_millis(100))
                .is_none()
        );
        session.send_line("exit 3");
        let status = session.expect_exit(Duration::from_secs(10));
        assert_eq!(status.code(), Some(3));
    }
}
