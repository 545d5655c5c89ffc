//! Client programs (ssh, scp, rsync, ansible...) run to completion by a test, with a deadline
//! and their output kept for the failure message.

use std::{process::Command, time::Duration};

use crate::process::run_with_deadline;

/// A finished run of a client program.
#[derive(Debug, Clone)]
pub struct ToolRun {
    /// `None` if killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl ToolRun {
    /// Panics with everything printed and `context()` (e.g. the servers' logs) unless the
    /// program exited 0; returns its stdout.
    pub fn ok(&self, what: &str, context: impl FnOnce() -> String) -> &str {
        assert_eq!(
            self.code,
            Some(0),
            "{what} failed:\n--- stdout ---\n{}\n--- stderr ---\n{}\n{}",
            self.stdout,
            self.stderr,
            context()
        );
        &self.stdout
    }
}

/// Runs `command` with `stdin` as its input (closed when `None`); panics if it is still running
/// after `limit`.
pub fn run_tool(command: Command, stdin: Option<&[u8]>, limit: Duration) -> ToolRun {
    let program = command.get_program().to_string_lossy().into_owned();
    let (output, timed_out) = run_with_deadline(command, stdin, limit);
    assert!(!timed_out, "{program} did not finish within {limit:?}");
    ToolRun {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
