//! Child processes owned by a guard: killed on drop, logs printed when the test panicked, and the
//! test failed when one of Tether's programs panicked (whatever a peer sends must never make a hub,
//! agent or CLI panic).

use std::{
    fs::File,
    io::{Read, Write},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    time::{Duration, Instant},
};

/// Environment variables the tests never pass on from the developer's shell: anything of
/// Tether's own and proxies (every connection of a test goes to 127.0.0.1).
const SCRUBBED: &[&str] = &[
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
];

/// Removes inherited `TETHER_*` and proxy variables from `command` and sets a log filter.
pub fn hermetic(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("TETHER_") || SCRUBBED.contains(&key_text.as_ref()) {
            command.env_remove(&key);
        }
    }
    if std::env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", "info");
    }
}

/// A running child process with its stdout and stderr in files. It leads its own process group,
/// so that whatever it starts (the demo's agent, a shell that escaped its PTY) goes with it:
/// dropping it SIGKILLs the group (and reaps the process); if the thread is panicking, its logs
/// are printed too.
pub struct Proc {
    name: String,
    child: Option<Child>,
    /// The process id, which is also its process group id.
    pid: Option<u32>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

impl Proc {
    /// Spawns `command` with stdin closed and stdout/stderr going to `DIR/NAME.stdout.log` and
    /// `DIR/NAME.stderr.log`.
    pub fn spawn(name: &str, mut command: Command, log_dir: &Path) -> Proc {
        let stdout_path = log_dir.join(format!("{name}.stdout.log"));
        let stderr_path = log_dir.join(format!("{name}.stderr.log"));
        let stdout = File::create(&stdout_path).expect("create stdout log");
        let stderr = File::create(&stderr_path).expect("create stderr log");
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            .process_group(0);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        Proc {
            name: name.to_owned(),
            pid: Some(child.id()),
            child: Some(child),
            stdout_path,
            stderr_path,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// What the process wrote to stdout so far.
    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout_path)
    }

    /// What the process wrote to stderr (its log) so far.
    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    /// Waits until stdout has a line starting with `prefix` and returns the rest of that line.
    /// Panics (showing the logs) if the process exits first or after `limit`.
    pub fn wait_stdout_line(&mut self, prefix: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(rest) = self
                .stdout()
                .lines()
                .find_map(|line| line.trim_end().strip_prefix(prefix).map(str::to_owned))
            {
                return rest;
            }
            if let Some(status) = self.try_wait() {
                panic!(
                    "{} exited ({status}) before printing `{prefix}`\n{}",
                    self.name,
                    self.logs()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "gave up after {limit:?} waiting for {} to print `{prefix}`\n{}",
                    self.name,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until stderr contains `needle` at least `count` times; returns whether it did.
    pub fn wait_stderr_count(&self, needle: &str, count: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.stderr().matches(needle).count() >= count {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The exit status, if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGKILLs the process and its process group, and reaps it. Its log files stay.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling a process group we created; no memory is involved.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (e.g. `libc::SIGINT`) to the process only.
    pub fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            // SAFETY: signalling our own child; no memory is involved.
            unsafe { libc::kill(child.id() as i32, signal) };
        }
    }

    /// Whether any process of the group (the process or what it started) is still alive.
    pub fn group_alive(&self) -> bool {
        let Some(pid) = self.pid else { return false };
        // SAFETY: signal 0 only checks for existence.
        unsafe { libc::kill(-(pid as i32), 0) == 0 }
    }

    /// Waits for the process to exit; `None` if it still runs after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.try_wait().is_none()
    }

    /// Both logs, labelled, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "----- {name} stdout -----\n{}\n----- {name} stderr -----\n{}\n----- end of {name} -----",
            self.stdout(),
            self.stderr(),
            name = self.name
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if let Some(pid) = self.pid {
            // The process may have exited by itself and left members of its group behind.
            // SAFETY: signalling the group we created; no memory is involved.
            unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        } else if panicked(&self.stderr()) {
            panic!("{} panicked:\n{}", self.name, self.logs());
        }
    }
}

/// Whether a log holds what Rust's default panic hook prints:
/// `thread 'NAME' (ID) panicked at FILE:LINE:COL:`.
fn panicked(log: &str) -> bool {
    log.lines()
        .any(|line| line.starts_with("thread '") && line.contains(" panicked at "))
}

pub(crate) fn read_lossy(path: &Path) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut file) = File::open(path) {
        let _ = file.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Runs `command` to completion with `stdin` as its input, killing it after `limit`
/// (it then returns what the process wrote, with a `None` status code).
pub fn run_with_deadline(mut command: Command, stdin: Option<&[u8]>, limit: Duration) -> (Output, bool) {
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let mut stdout_pipe = child.stdout.take().expect("stdout pipe");
    let mut stderr_pipe = child.stderr.take().expect("stderr pipe");
    let stdout_reader = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        let _ = stdout_pipe.read_to_end(&mut buffer);
        buffer
    });
    let stderr_reader = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        let _ = stderr_pipe.read_to_end(&mut buffer);
        buffer
    });
    let deadline = Instant::now() + limit;
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("wait");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = Output {
        status,
        stdout: stdout_reader.join().unwrap_or_default(),
        stderr: stderr_reader.join().unwrap_or_default(),
    };
    (output, timed_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_with_deadline_collects_output_and_gives_up() {
        let mut command = Command::new("/bin/sh");
        command.args(["-c", "cat; echo err >&2; exit 4"]);
        let (output, timed_out) = run_with_deadline(command, Some(b"in\n"), Duration::from_secs(10));
        assert!(!timed_out);
        assert_eq!(output.status.code(), Some(4));
        assert_eq!(output.stdout, b"in\n");
        assert_eq!(output.stderr, b"err\n");

        let mut command = Command::new("/bin/sh");
        command.args(["-c", "exec sleep 30"]);
        let (output, timed_out) = run_with_deadline(command, None, Duration::from_millis(200));
        assert!(timed_out);
        assert!(!output.status.success());
    }

    #[test]
    fn proc_waits_for_stdout_lines_and_kills_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new("/bin/sh");
        command.args([
            "-c",
            "echo 'listening on https://127.0.0.1:1'; echo log >&2; exec sleep 30",
        ]);
        let mut process = Proc::spawn("sh", command, dir.path());
        let rest = process.wait_stdout_line("listening on ", Duration::from_secs(10));
        assert_eq!(rest, "https://127.0.0.1:1");
        assert!(process.wait_stderr_count("log", 1, Duration::from_secs(10)));
        let pid = process.pid().unwrap();
        drop(process);
        // SAFETY: kill with signal 0 only checks whether the process exists.
        let alive = unsafe { libc::kill(pid as i32, 0) } == 0;
        assert!(!alive, "the process must be gone after drop");
    }
}
