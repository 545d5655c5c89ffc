//! Output of many devices on one terminal: whole lines only, each behind its device's name, so
//! that lines of devices running at once never mix. A partial line waits for its newline (or the
//! end of the command); a line longer than [`LONGEST_LINE`] is cut, to bound what waits.

/// Longest partial line kept waiting for its newline.
pub const LONGEST_LINE: usize = 64 * 1024;

/// One device's output, cut into prefixed lines.
pub struct Lines {
    prefix: Vec<u8>,
    partial: Vec<u8>,
}

impl Lines {
    /// Lines behind `prefix` (e.g. `pump-17: `, or nothing).
    pub fn new(prefix: &str) -> Lines {
        Lines {
            prefix: prefix.as_bytes().to_vec(),
            partial: Vec::new(),
        }
    }

    /// Takes output as it arrives and returns the lines it completes, prefixed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut complete = Vec::new();
        for piece in bytes.split_inclusive(|byte| *byte == b'\n') {
            let mut rest = piece;
            while !rest.is_empty() {
                let room = LONGEST_LINE.saturating_sub(self.partial.len()).max(1);
                let (taken, more) = rest.split_at(rest.len().min(room));
                self.partial.extend_from_slice(taken);
                rest = more;
                if self.partial.ends_with(b"\n") {
                    self.emit(&mut complete);
                } else if self.partial.len() >= LONGEST_LINE {
                    self.partial.push(b'\n');
                    self.emit(&mut complete);
                }
            }
        }
        complete
    }

    /// The partial line left at the end of the command, prefixed and ended (empty if none).
    pub fn finish(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        if !self.partial.is_empty() {
            self.partial.push(b'\n');
            self.emit(&mut rest);
        }
        rest
    }

    fn emit(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.prefix);
        out.append(&mut self.partial);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_lines_are_prefixed_and_partial_ones_wait() {
        let mut lines = Lines::new("pump-1: ");
        assert_eq!(lines.push(b"one\ntw"), b"pump-1: one\n");
        assert_eq!(lines.push(b"o"), b"");
        assert_eq!(lines.push(b"\nthree\nfo"), b"pump-1: two\npump-1: three\n");
        assert_eq!(lines.finish(), b"pump-1: fo\n");
        assert_eq!(lines.finish(), b"", "nothing is left");
    }

    #[test]
    fn empty_lines_and_no_prefix() {
        let mut lines = Lines::new("");
        assert_eq!(lines.push(b"\n\na\n"), b"\n\na\n");
        assert_eq!(lines.finish(), b"");
    }

    #[test]
    fn a_line_without_end_is_cut_at_the_limit() {
        let mut lines = Lines::new("d: ");
        let long = vec![b'x'; LONGEST_LINE - 1];
        assert!(lines.push(&long).is_empty());
        let out = lines.push(b"yz\n");
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 2, "cut once");
        assert!(text.starts_with("d: xxx") && text.ends_with("\nd: z\n"));
    }
}
