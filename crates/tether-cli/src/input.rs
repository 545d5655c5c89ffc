//! Reading the operator's keystrokes (or piped stdin) as raw bytes from fd 0, on a plain thread:
//! a blocking read returns each keystroke as soon as it is typed, and the thread can stay
//! blocked at exit without holding the process up (unlike a runtime blocking task).

use std::io::Read;

use tokio::sync::mpsc;

pub enum Input {
    Bytes(Vec<u8>),
    /// stdin reached its end (or failed).
    End,
}

/// Starts the reader; one message per read, so keystrokes are never held back for batching.
pub fn spawn_stdin_reader() -> mpsc::Receiver<Input> {
    // Bounded, so piping a large file into `tether terminal` cannot grow memory without limit.
    let (sender, receiver) = mpsc::channel(64);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let input = match stdin.read(&mut buffer) {
                Ok(0) => Input::End,
                Ok(count) => Input::Bytes(buffer[..count].to_vec()),
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => Input::End,
            };
            let end = matches!(input, Input::End);
            if sender.blocking_send(input).is_err() || end {
                return;
            }
        }
    });
    receiver
}
