//! Searching recorded output for a text (`GET /sessions?text=`): each recording's output is read
//! segment by segment, its escape sequences taken out and ASCII letters folded to lower case, so
//! that `error` finds `ERROR` printed in red. Reading recordings costs, so a search is bounded
//! (by recordings and by bytes) and says how far it got.

use std::{io, path::Path};

use crate::{domain::recording_format::Record, store::Store};

use super::player::{Playback, Recording};

/// At most this many recordings are read per search, newest first.
pub const SCAN_LIMIT: u32 = 100;
/// At most this much output is read per search.
pub const BYTE_LIMIT: u64 = 256 * 1024 * 1024;
/// The longest text searched for.
pub const MAX_TEXT: usize = 200;
/// Text kept before a match, for its excerpt.
const CONTEXT: usize = 120;

/// Where an escape sequence being taken out is.
#[derive(Clone, Copy, PartialEq)]
enum Escape {
    None,
    /// After ESC.
    Start,
    /// In `ESC [ ...`, up to its final byte.
    Control,
    /// In `ESC ] ...` (a title, a link), up to BEL or ESC \.
    Operating,
    /// ESC inside an operating-system command: a `\` after it ends the command.
    OperatingEnd,
}

/// Finds a text in output given piece by piece (a match may span two pieces).
pub struct TextFinder {
    needle: Vec<u8>,
    escape: Escape,
    /// The plain text so far: what the previous pieces ended with, then the current piece.
    text: Vec<u8>,
}

impl TextFinder {
    pub fn new(needle: &str) -> TextFinder {
        TextFinder {
            needle: needle.as_bytes().to_ascii_lowercase(),
            escape: Escape::None,
            text: Vec::new(),
        }
    }

    /// Starts a new recording.
    fn reset(&mut self) {
        self.escape = Escape::None;
        self.text.clear();
    }

    /// Adds output; returns the end of the line where the text was found, when it is.
    pub fn push(&mut self, data: &[u8]) -> Option<String> {
        let searched_before = self.text.len();
        for &byte in data {
            self.escape = match (self.escape, byte) {
                (Escape::None, 0x1b) => Escape::Start,
                (Escape::None, b'\r' | b'\n') => {
                    self.text.push(b'\n');
                    Escape::None
                }
                (Escape::None, byte) if byte < 0x20 || byte == 0x7f => Escape::None,
                (Escape::None, byte) => {
                    self.text.push(byte.to_ascii_lowercase());
                    Escape::None
                }
                (Escape::Start, b'[') => Escape::Control,
                (Escape::Start, b']') => Escape::Operating,
                (Escape::Start, _) => Escape::None,
                (Escape::Control, 0x40..=0x7e) => Escape::None,
                (Escape::Control, _) => Escape::Control,
                (Escape::Operating | Escape::OperatingEnd, 0x07) => Escape::None,
                (Escape::Operating, 0x1b) => Escape::OperatingEnd,
                (Escape::OperatingEnd, b'\\') => Escape::None,
                (Escape::Operating | Escape::OperatingEnd, _) => Escape::Operating,
            };
        }
        // A match must end in the new text: what came before was searched already.
        let first_start = searched_before.saturating_sub(self.needle.len().saturating_sub(1));
        let found = self.text[first_start..]
            .windows(self.needle.len().max(1))
            .position(|window| window == self.needle.as_slice())
            .map(|at| first_start + at);
        if let Some(at) = found {
            let line_start = self.text[..at]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            let end = at + self.needle.len();
            let line_end = self.text[end..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(self.text.len(), |i| end + i)
                .min(end + CONTEXT / 2);
            return Some(
                String::from_utf8_lossy(&self.text[line_start..line_end])
                    .trim()
                    .to_owned(),
            );
        }
        // Keep enough for a match across the next piece, and for an excerpt's start.
        let keep = CONTEXT.max(self.needle.len());
        if self.text.len() > keep {
            self.text.drain(..self.text.len() - keep);
        }
        None
    }
}

/// What searching one recording found.
pub enum Searched {
    Found(String),
    NotFound,
    /// The byte budget ran out before the recording's end.
    OutOfBudget,
}

/// Searches the output of recording `sid`, taking what it reads from `budget`. Blocks: call it
/// off the runtime's worker threads.
pub fn search_recording(
    store: &Store,
    recordings_dir: &Path,
    sid: &str,
    finder: &mut TextFinder,
    budget: &mut u64,
) -> io::Result<Searched> {
    finder.reset();
    let recording = Recording::open(store, recordings_dir, sid)?;
    for record in Playback::open(recording, 0)? {
        let Record::Output { data, .. } = record? else {
            continue;
        };
        let Some(left) = budget.checked_sub(data.len() as u64) else {
            *budget = 0;
            return Ok(Searched::OutOfBudget);
        };
        *budget = left;
        if let Some(excerpt) = finder.push(&data) {
            return Ok(Searched::Found(excerpt));
        }
    }
    Ok(Searched::NotFound)
}

#[cfg(test)]
mod tests {
    use super::TextFinder;

    #[test]
    fn text_is_found_through_colours_case_and_piece_boundaries() {
        let mut finder = TextFinder::new("Disk Error");
        assert_eq!(finder.push(b"ok\r\nwarning: dis"), None);
        let found = finder.push(b"k \x1b[1;31mERROR\x1b[0m on sda\r\nnext line");
        assert_eq!(found.as_deref(), Some("warning: disk error on sda"));

        // A title (an operating-system command) is not output text.
        let mut finder = TextFinder::new("secret");
        assert_eq!(finder.push(b"\x1b]0;secret title\x07plain"), None);
        assert_eq!(finder.push(b"\x1b]0;secret\x1b\\ text"), None);
        assert_eq!(
            finder.push(b" and a SECRET").as_deref(),
            Some("plain text and a secret")
        );
    }

    #[test]
    fn a_match_is_reported_once_and_old_text_is_not_searched_again() {
        let mut finder = TextFinder::new("abc");
        assert_eq!(finder.push(b"xxab").as_deref(), None);
        assert!(finder.push(b"c").is_some());
        let long = vec![b'z'; 10_000];
        let mut finder = TextFinder::new("abc");
        for _ in 0..10 {
            assert_eq!(finder.push(&long), None);
        }
        assert!(finder.text.len() <= 200, "bounded memory");
    }
}
