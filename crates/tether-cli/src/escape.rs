//! The ssh-style escape sequence of `tether terminal`: `~.` typed at the start of a line ends
//! the session from the client side even when the remote shell hangs; `~~` sends one `~`.

/// What the session should do with one read of keyboard input.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Filtered {
    /// The bytes to send to the remote shell (possibly empty: a lone `~` waits for the next key).
    pub send: Vec<u8>,
    /// `~.` was typed: end the session.
    pub disconnect: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// After Enter, or at session start: a `~` here may begin an escape.
    LineStart,
    /// Inside a line: `~` is an ordinary character.
    InLine,
    /// A `~` at the start of a line was held back, waiting for the next byte.
    Tilde,
}

/// Watches the input stream for escapes, byte by byte, across reads.
#[derive(Debug)]
pub struct EscapeDetector {
    state: State,
}

impl Default for EscapeDetector {
    fn default() -> Self {
        EscapeDetector {
            state: State::LineStart,
        }
    }
}

impl EscapeDetector {
    pub fn new() -> Self {
        Self::default()
    }

    /// Filters one read of input. Bytes after `~.` are dropped: the session is ending.
    pub fn filter(&mut self, input: &[u8]) -> Filtered {
        let mut out = Filtered::default();
        for &byte in input {
            match self.state {
                State::Tilde => match byte {
                    b'.' => {
                        out.disconnect = true;
                        self.state = State::LineStart;
                        return out;
                    }
                    b'~' => {
                        out.send.push(b'~');
                        self.state = State::InLine;
                    }
                    other => {
                        // Not an escape: release the held `~` with the byte that followed it.
                        out.send.extend_from_slice(&[b'~', other]);
                        self.state = after(other);
                    }
                },
                State::LineStart if byte == b'~' => self.state = State::Tilde,
                State::LineStart | State::InLine => {
                    out.send.push(byte);
                    self.state = after(byte);
                }
            }
        }
        out
    }
}

fn after(byte: u8) -> State {
    if byte == b'\r' || byte == b'\n' {
        State::LineStart
    } else {
        State::InLine
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(detector: &mut EscapeDetector, input: &[u8]) -> Vec<u8> {
        let out = detector.filter(input);
        assert!(!out.disconnect);
        out.send
    }

    #[test]
    fn tilde_dot_at_session_start_disconnects() {
        let mut detector = EscapeDetector::new();
        assert!(detector.filter(b"~.").disconnect);
    }

    #[test]
    fn tilde_dot_after_enter_disconnects_even_across_reads() {
        let mut detector = EscapeDetector::new();
        assert_eq!(sent(&mut detector, b"ls\r"), b"ls\r");
        assert_eq!(sent(&mut detector, b"~"), b"");
        let out = detector.filter(b".rest");
        assert!(out.disconnect);
        assert!(out.send.is_empty());
    }

    #[test]
    fn bytes_before_the_escape_in_the_same_read_are_sent() {
        let mut detector = EscapeDetector::new();
        let out = detector.filter(b"exit\r~.");
        assert!(out.disconnect);
        assert_eq!(out.send, b"exit\r");
    }

    #[test]
    fn tilde_inside_a_line_is_ordinary() {
        let mut detector = EscapeDetector::new();
        assert_eq!(sent(&mut detector, b"cd ~."), b"cd ~.");
    }

    #[test]
    fn double_tilde_sends_one_tilde() {
        let mut detector = EscapeDetector::new();
        assert_eq!(sent(&mut detector, b"~~"), b"~");
        // The line is no longer at its start: `~.` now passes through.
        assert_eq!(sent(&mut detector, b"~."), b"~.");
    }

    #[test]
    fn tilde_followed_by_another_key_is_released() {
        let mut detector = EscapeDetector::new();
        assert_eq!(sent(&mut detector, b"~"), b"");
        assert_eq!(sent(&mut detector, b"x"), b"~x");
        let mut detector = EscapeDetector::new();
        assert_eq!(sent(&mut detector, b"~\r"), b"~\r");
        assert!(detector.filter(b"~.").disconnect);
    }

    #[test]
    fn newline_also_starts_a_line() {
        let mut detector = EscapeDetector::new();
        assert_eq!(sent(&mut detector, b"a\n"), b"a\n");
        assert!(detector.filter(b"~.").disconnect);
    }
}
