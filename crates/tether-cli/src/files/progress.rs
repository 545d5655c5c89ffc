//! A progress bar (bytes, rate, ETA) on stderr when it is a terminal; nothing otherwise.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::{output::say, printable::printable};

pub struct Progress {
    bar: Option<ProgressBar>,
    /// Bytes of the files already finished.
    done: u64,
}

impl Progress {
    pub fn new(total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{wide_msg} {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} eta {eta:>4} [{bar:25}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar
        });
        Progress { bar, done: 0 }
    }

    /// Names the file being copied (a remote name: made printable, it is drawn on the bar).
    pub fn file(&self, name: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(printable(name).into_owned());
        }
    }

    /// Bytes of the current file so far.
    pub fn at(&self, position: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(self.done + position);
        }
    }

    /// The current file is complete with `size` bytes.
    pub fn file_done(&mut self, size: u64) {
        self.done += size;
        self.at(0);
    }

    /// A line on stderr that does not garble the bar.
    pub fn say(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| say!("{text}")),
            None => say!("{text}"),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
