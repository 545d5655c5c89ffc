//! Foreign text made safe to show on a terminal. Device names and tags (a pending device sets
//! its own name without logging in), file names on a device, user, token and role names, audit
//! details and the hub's or a device's error texts can all hold control characters: printed raw,
//! `\r\e[2K` erases the line, `\e]0;…\a` retitles the window, a newline forges a table row, and
//! a bidi override reorders what the operator reads. Every table cell and message the CLI prints
//! goes through [`printable`] (see `crate::output`); JSON output (`--json`) and a session's PTY
//! stream are the only exceptions: JSON escapes itself, and the PTY stream is the point.

use std::{borrow::Cow, fmt::Write as _};

/// `text` with every control character replaced by a visible escape, like `ls -b`: `\e`, `\r`,
/// `\n`, `\t`, `\a`, `\b`, `\f`, `\v`, `\0`, else `\xNN` (C0 and DEL) or `\u{NNNN}` (C1 controls,
/// bidi overrides and other invisible format characters). Borrowed when nothing needed escaping.
/// A backslash stays as it is, so that escaping twice changes nothing.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for character in text.chars() {
        if !needs_escape(character) {
            out.push(character);
            continue;
        }
        match character {
            '\u{1b}' => out.push_str(r"\e"),
            '\r' => out.push_str(r"\r"),
            '\n' => out.push_str(r"\n"),
            '\t' => out.push_str(r"\t"),
            '\u{7}' => out.push_str(r"\a"),
            '\u{8}' => out.push_str(r"\b"),
            '\u{c}' => out.push_str(r"\f"),
            '\u{b}' => out.push_str(r"\v"),
            '\0' => out.push_str(r"\0"),
            other if (other as u32) < 0x80 => {
                let _ = write!(out, r"\x{:02x}", other as u32);
            }
            other => {
                let _ = write!(out, r"\u{{{:x}}}", other as u32);
            }
        }
    }
    Cow::Owned(out)
}

/// C0, DEL and C1 controls (C1 includes the one-byte CSI, U+009B), and the invisible characters
/// that change how the rest of a line is shown: bidi embeddings, overrides and isolates, zero
/// width marks, the line and paragraph separators, the byte order mark.
fn needs_escape(character: char) -> bool {
    character.is_control()
        || matches!(
            character,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{feff}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for text in ["pump-17", "site a, b", "Grüße 東京 ✓", "a\\b", ""] {
            assert!(matches!(printable(text), Cow::Borrowed(same) if same == text));
        }
    }

    #[test]
    fn the_forged_row_of_the_issue_is_defused() {
        let name = "\r\u{1b}[2Kprod-gw  accepted\u{1b}]0;owned\u{7}";
        assert_eq!(printable(name), r"\r\e[2Kprod-gw  accepted\e]0;owned\a");
    }

    #[test]
    fn every_control_character_becomes_visible() {
        assert_eq!(printable("a\nb\tc\0d\u{8}\u{c}\u{b}"), r"a\nb\tc\0d\b\f\v");
        assert_eq!(printable("\u{1}\u{1f}\u{7f}"), r"\x01\x1f\x7f");
        assert_eq!(printable("\u{9b}31m"), r"\u{9b}31m");
        assert_eq!(printable("abc\u{202e}txt.exe"), r"abc\u{202e}txt.exe");
        assert_eq!(
            printable("zero\u{200b}width\u{feff}"),
            r"zero\u{200b}width\u{feff}"
        );
        for code in (0..0x20).chain(0x7f..0xa0) {
            let character = char::from_u32(code).unwrap();
            let shown = printable(&character.to_string()).into_owned();
            assert!(shown.chars().all(|c| !c.is_control()), "{code:#x} -> {shown:?}");
        }
    }

    #[test]
    fn escaping_twice_changes_nothing() {
        let once = printable("x\u{1b}[31my\r").into_owned();
        assert_eq!(printable(&once), once);
    }
}
