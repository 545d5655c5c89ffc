//! Flow control for one TCP connection, local → device. Every `forward` is answered by one
//! `ack`, in order. Version 1 (the stock agent): one `forward` of up to 4 KiB in flight.
//! Version 2: forwards of up to 32 KiB, up to the device's window unacknowledged (the one its
//! `new` named, or 1 MiB).

use std::collections::VecDeque;

use tether_proto::{
    port_forward::{MAX_CHUNK, VERSION_1_CHUNK},
    version,
};

#[derive(Debug)]
pub struct Window {
    windowed: bool,
    /// Bytes that may be unacknowledged (version 2).
    size: usize,
    /// Sizes of the forwards not yet acknowledged, oldest first.
    in_flight: VecDeque<usize>,
    bytes: usize,
}

impl Window {
    pub fn new(session_version: u32, size: usize) -> Window {
        Window {
            windowed: session_version >= version::TETHER,
            size,
            in_flight: VecDeque::new(),
            bytes: 0,
        }
    }

    /// How many bytes the next `forward` may carry now; 0: wait for an `ack`.
    pub fn allowance(&self) -> usize {
        if self.windowed {
            MAX_CHUNK.min(self.size.saturating_sub(self.bytes))
        } else if self.in_flight.is_empty() {
            VERSION_1_CHUNK
        } else {
            0
        }
    }

    /// The device named its window (after the first bytes went under the default one).
    pub fn resize(&mut self, size: usize) {
        self.size = size;
    }

    /// A `forward` of `len` bytes was sent.
    pub fn sent(&mut self, len: usize) {
        self.in_flight.push_back(len);
        self.bytes += len;
    }

    /// An `ack` arrived: it releases the oldest forward. False if nothing was in flight (a
    /// confused peer; ignored).
    pub fn acked(&mut self) -> bool {
        match self.in_flight.pop_front() {
            Some(len) => {
                self.bytes -= len;
                true
            }
            None => false,
        }
    }

    #[cfg(test)]
    pub fn unacknowledged(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_proto::port_forward::WINDOW_BYTES;

    #[test]
    fn version_1_keeps_one_small_forward_in_flight() {
        let mut window = Window::new(1, WINDOW_BYTES);
        assert_eq!(window.allowance(), 4096);
        window.sent(10);
        assert_eq!(window.allowance(), 0);
        assert!(window.acked());
        assert_eq!(window.allowance(), 4096);
        assert!(!window.acked(), "an ack with nothing in flight is ignored");
        assert_eq!(window.allowance(), 4096);
    }

    #[test]
    fn version_2_fills_the_window() {
        let mut window = Window::new(2, WINDOW_BYTES);
        assert_eq!(window.allowance(), MAX_CHUNK);
        for _ in 0..WINDOW_BYTES / MAX_CHUNK - 1 {
            window.sent(MAX_CHUNK);
            assert_eq!(window.allowance(), MAX_CHUNK);
        }
        window.sent(MAX_CHUNK - 100);
        assert_eq!(window.allowance(), 100, "the last forward only fills the window");
        window.sent(100);
        assert_eq!(window.unacknowledged(), WINDOW_BYTES);
        assert_eq!(window.allowance(), 0);
        assert!(window.acked());
        assert_eq!(window.allowance(), MAX_CHUNK);
        assert_eq!(window.unacknowledged(), WINDOW_BYTES - MAX_CHUNK);
    }

    #[test]
    fn acks_release_forwards_oldest_first() {
        let mut window = Window::new(2, WINDOW_BYTES);
        window.sent(5);
        window.sent(7);
        window.sent(11);
        assert!(window.acked());
        assert_eq!(window.unacknowledged(), 18);
        assert!(window.acked());
        assert_eq!(window.unacknowledged(), 11);
        assert!(window.acked());
        assert_eq!(window.unacknowledged(), 0);
        assert!(!window.acked());
    }
}
