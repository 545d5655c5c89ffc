//! The agent's shells, from start to end: [`spawn`] starts the process on a PTY or a pipe,
//! [`task`] runs one per task (input, output, limits, reaping), and [`stream`] carries its
//! output to the hub across connections, through the bounded [`output_buffer`] that resuming
//! replays from. [`local_user`] decides which account a shell runs as.

mod local_user;
mod output_buffer;
mod spawn;
mod stream;
mod task;

pub use local_user::shell_account;
pub use spawn::{spawn_exec, spawn_interactive};
pub use stream::{Destination, ShellStream};
pub use task::{Input, Limits, Output, ShellHandle, start_exec, start_interactive};
