//! Where the remote side's output goes: raw bytes to stdout, flushed at once (an interactive
//! shell's echo must not wait in a buffer), and the window size reported to the device.

use std::io::Write;

/// Writes remote output to stdout unchanged.
pub fn write_stdout(bytes: &[u8]) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()
}

/// Prints a listing; a reader that stopped early (`| head`) is not an error, and must not
/// turn into the panic `println!` would raise.
pub fn print_listing(text: &str) -> std::io::Result<()> {
    match write_stdout(text.as_bytes()) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// The terminal's size as (columns, rows); 80x24 when there is no terminal to ask.
pub fn window_size() -> (u16, u16) {
    match crossterm::terminal::size() {
        Ok((columns, rows)) if columns > 0 && rows > 0 => (columns, rows),
        _ => (80, 24),
    }
}

/// `eprintln!` that never panics: on a hung-up terminal (SIGHUP) stderr fails with EIO, and the
/// way out must still restore and exit cleanly.
macro_rules! say {
    ($($argument:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($argument)*);
    }};
}
pub(crate) use say;
