//! The last bytes of a shell's output, addressed by their offset in the shell's output stream,
//! so that a session can be resumed from any offset still held. Bounded: beyond its capacity the
//! oldest bytes are dropped (the reader learns how many it missed).

use std::collections::VecDeque;

pub struct OutputBuffer {
    bytes: VecDeque<u8>,
    /// Stream offset of `bytes[0]`.
    start: u64,
    capacity: usize,
}

/// What a read found at the requested offset.
#[derive(Debug, PartialEq)]
pub struct Slice {
    /// Stream offset of `bytes[0]` (later than asked when bytes were dropped).
    pub offset: u64,
    /// Bytes asked for that were dropped before they could be read.
    pub lost: u64,
    pub bytes: Vec<u8>,
}

impl OutputBuffer {
    pub fn new(capacity: usize) -> OutputBuffer {
        OutputBuffer {
            bytes: VecDeque::new(),
            start: 0,
            capacity: capacity.max(1),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The offset the next byte of output will have.
    pub fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }

    /// Appends output, dropping the oldest bytes beyond the capacity.
    pub fn push(&mut self, data: &[u8]) {
        let data = if data.len() > self.capacity {
            // Only the tail can be kept; the rest counts as dropped at once.
            let skipped = data.len() - self.capacity;
            self.start += (self.bytes.len() + skipped) as u64;
            self.bytes.clear();
            &data[skipped..]
        } else {
            data
        };
        self.bytes.extend(data);
        let excess = self.bytes.len().saturating_sub(self.capacity);
        if excess > 0 {
            self.bytes.drain(..excess);
            self.start += excess as u64;
        }
    }

    /// Up to `max` bytes from `offset` on (from the oldest byte held when `offset` was dropped;
    /// nothing when `offset` is at or beyond the end).
    pub fn read(&self, offset: u64, max: usize) -> Slice {
        let from = offset.clamp(self.start, self.end());
        let skip = (from - self.start) as usize;
        let take = (self.bytes.len() - skip).min(max);
        let (front, back) = self.bytes.as_slices();
        let mut bytes = Vec::with_capacity(take);
        if skip < front.len() {
            let end = (skip + take).min(front.len());
            bytes.extend_from_slice(&front[skip..end]);
            bytes.extend_from_slice(&back[..take - (end - skip)]);
        } else {
            let skip = skip - front.len();
            bytes.extend_from_slice(&back[skip..skip + take]);
        }
        Slice {
            offset: from,
            lost: from.saturating_sub(offset),
            bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_from_any_offset_still_held() {
        let mut buffer = OutputBuffer::new(8);
        buffer.push(b"abc");
        buffer.push(b"def");
        assert_eq!(buffer.end(), 6);
        assert_eq!(buffer.read(2, 100).bytes, b"cdef");
        assert_eq!(buffer.read(2, 2).bytes, b"cd");
        assert!(buffer.read(6, 100).bytes.is_empty());
        assert!(buffer.read(60, 100).bytes.is_empty());
    }

    #[test]
    fn overflow_drops_the_oldest_and_reports_the_loss() {
        let mut buffer = OutputBuffer::new(4);
        buffer.push(b"abc");
        buffer.push(b"defg");
        let slice = buffer.read(1, 100);
        assert_eq!(
            slice,
            Slice {
                offset: 3,
                lost: 2,
                bytes: b"defg".to_vec()
            }
        );
        buffer.push(b"0123456789");
        assert_eq!(buffer.end(), 17);
        let slice = buffer.read(7, 100);
        assert_eq!((slice.offset, slice.lost), (13, 6));
        assert_eq!(slice.bytes, b"6789");
    }

    #[test]
    fn wrapped_storage_reads_in_order() {
        let mut buffer = OutputBuffer::new(5);
        for chunk in [b"ab".as_slice(), b"cd", b"ef", b"gh", b"i"] {
            buffer.push(chunk);
        }
        assert_eq!(buffer.read(4, 100).bytes, b"efghi");
        assert_eq!(buffer.read(5, 3).bytes, b"fgh");
        assert_eq!(buffer.read(7, 3).bytes, b"hi");
    }
}
