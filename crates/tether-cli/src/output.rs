//! Where the CLI's output goes. Remote terminal output is written raw ([`write_stdout`]); every
//! other line passes through [`crate::printable::printable`] on the way: table cells in
//! [`table`], messages in [`say!`] (stderr), [`say_on_new_line!`] (stderr, for a terminal that
//! may be in raw mode) and [`tell!`] (stdout). [`print_listing`] writes text that is already
//! safe: a table built here, or JSON.

use std::io::Write;

use crate::printable::printable;

/// Writes remote output to stdout unchanged, flushed at once (an interactive shell's echo must
/// not wait in a buffer).
pub fn write_stdout(bytes: &[u8]) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()
}

/// Prints a listing (a [`table`] or JSON); a reader that stopped early (`| head`) is not an
/// error, and must not turn into the panic `println!` would raise.
pub fn print_listing(text: &str) -> std::io::Result<()> {
    match write_stdout(text.as_bytes()) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Rows as columns padded to their widest cell, two spaces apart (the last column is not
/// padded), every cell made printable first, so that a cell can neither move the cursor nor
/// start a line of its own. With `last_width`, the last column is cut to fit a terminal that
/// wide (at least 20 characters are kept). Every tabular listing of the CLI is printed here.
pub fn table<Row: AsRef<[String]>>(rows: &[Row], last_width: Option<usize>) -> String {
    let layout = Layout {
        gap: "  ",
        right_aligned: &[],
        last_width,
    };
    table_with(rows, &layout)
}

/// How [`table_with`] sets the columns out.
pub struct Layout<'a> {
    /// What separates two columns.
    pub gap: &'a str,
    /// The columns (counted from 0) aligned to the right, as `ls -l` shows numbers.
    pub right_aligned: &'a [usize],
    /// Cut the last column to fit a terminal this wide.
    pub last_width: Option<usize>,
}

/// [`table`] with another gap or right-aligned columns.
pub fn table_with<Row: AsRef<[String]>>(rows: &[Row], layout: &Layout<'_>) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            row.as_ref()
                .iter()
                .map(|cell| printable(cell).into_owned())
                .collect()
        })
        .collect();
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (index, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if index + 1 < row.len() {
                if layout.right_aligned.contains(&index) {
                    line.push_str(&format!("{cell:>width$}{}", layout.gap));
                } else {
                    line.push_str(&format!("{cell:<width$}{}", layout.gap));
                }
                continue;
            }
            match layout.last_width {
                Some(total) => {
                    let room = total.saturating_sub(line.chars().count()).max(20);
                    line.push_str(&truncate(cell, room));
                }
                None => line.push_str(cell),
            }
        }
        // Only the padding the table added goes: a last cell is shown as it is.
        if row.last().is_none_or(String::is_empty) {
            line.truncate(line.trim_end().len());
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn truncate(text: &str, room: usize) -> String {
    if text.chars().count() <= room {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(room.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The terminal's size as (columns, rows); 80x24 when there is no terminal to ask.
pub fn window_size() -> (u16, u16) {
    match crossterm::terminal::size() {
        Ok((columns, rows)) if columns > 0 && rows > 0 => (columns, rows),
        _ => (80, 24),
    }
}

/// One message line on stderr, made printable; never fails (on a hung-up terminal stderr fails
/// with EIO, and the way out must still restore and exit cleanly).
pub fn message(text: &str) {
    let _ = writeln!(std::io::stderr(), "{}", printable(text));
}

/// A message on a line of its own while the terminal may be in raw mode (no newline
/// translation) or the remote output left the cursor mid-line: CR LF before and after.
pub fn message_on_new_line(text: &str) {
    let _ = write!(std::io::stderr(), "\r\n{}\r\n", printable(text));
}

/// Ends the line the remote output may have left the cursor on (CR LF: raw mode or not).
pub fn end_line() {
    let _ = write!(std::io::stderr(), "\r\n");
}

/// One line on stdout, made printable and flushed at once (scripts wait for lines such as
/// port-forward's `Forwarding`); a closed stdout is ignored, as `println!` would panic.
pub fn answer(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{}", printable(text));
    let _ = stdout.flush();
}

/// `eprintln!` through [`message`].
macro_rules! say {
    ($($argument:tt)*) => {
        $crate::output::message(&format!($($argument)*))
    };
}
pub(crate) use say;

/// `eprintln!` through [`message_on_new_line`].
macro_rules! say_on_new_line {
    ($($argument:tt)*) => {
        $crate::output::message_on_new_line(&format!($($argument)*))
    };
}
pub(crate) use say_on_new_line;

/// `println!` through [`answer`].
macro_rules! tell {
    ($($argument:tt)*) => {
        $crate::output::answer(&format!($($argument)*))
    };
}
pub(crate) use tell;

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|cell| cell.to_string()).collect()
    }

    #[test]
    fn tables_align_and_leave_the_last_column_unpadded() {
        let rows = [row(&["ID", "NAME", "TAGS"]), row(&["1", "pump-17", ""])];
        assert_eq!(table(&rows, None), "ID  NAME     TAGS\n1   pump-17\n");
    }

    #[test]
    fn cells_cannot_move_the_cursor_or_start_a_line() {
        let rows = [
            row(&["NAME", "STATUS"]),
            row(&["\r\u{1b}[2Kprod-gw\naccepted", "pending\u{1b}]0;owned\u{7}"]),
        ];
        let text = table(&rows, None);
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(!text.contains(['\r', '\u{1b}', '\u{7}']), "{text:?}");
        assert!(
            text.ends_with("\\r\\e[2Kprod-gw\\naccepted  pending\\e]0;owned\\a\n"),
            "{text}"
        );
    }

    #[test]
    fn columns_can_be_right_aligned_with_another_gap() {
        let rows = [
            row(&["-rw-r--r--", "5", "a "]),
            row(&["drwxr-xr-x", "4096", "sub"]),
        ];
        let layout = Layout {
            gap: " ",
            right_aligned: &[1],
            last_width: None,
        };
        assert_eq!(
            table_with(&rows, &layout),
            "-rw-r--r--    5 a \ndrwxr-xr-x 4096 sub\n"
        );
    }

    #[test]
    fn the_last_column_is_cut_to_the_width() {
        let rows = [row(&["A", "0123456789012345678901234567890123456789"])];
        assert_eq!(table(&rows, Some(25)), "A  012345678901234567890…\n");
    }
}
