//! Raw terminal mode for `tether terminal`, restored on every way out: the guard's `Drop` covers
//! returns and errors, a panic hook covers panics (the release profile aborts on panic, which
//! runs no destructors), and the terminal command restores before exiting on SIGTERM/SIGHUP.

use std::sync::{
    Once,
    atomic::{AtomicBool, Ordering},
};

use anyhow::{Context, Result};

/// Whether this process put the terminal in raw mode and has not restored it yet.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Raw mode, on while this value lives.
pub struct RawMode(());

impl RawMode {
    pub fn enable() -> Result<RawMode> {
        install_panic_hook();
        crossterm::terminal::enable_raw_mode().context("cannot put the terminal in raw mode")?;
        ACTIVE.store(true, Ordering::SeqCst);
        Ok(RawMode(()))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore();
    }
}

/// Leaves raw mode if this process entered it; safe to call any number of times.
pub fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

fn install_panic_hook() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // Restore first, so the panic message prints on a sane terminal.
            restore();
            previous(info);
        }));
    });
}
