//! The on-disk format of terminal recordings, with no I/O policy in it.
//!
//! A recording is a directory of segments `NNNNNN-TTTTTTTTTT.seg.gz` (sequence number, start time
//! in ms since the session began). Each segment is a gzip stream of records
//! `[kind: u8][time_ms: u64 BE][length: u32 BE][payload]` and starts with a keyframe: the terminal
//! screen as escape sequences that redraw it, so a player can start at any segment.

use std::io::{self, Read};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// The screen at this moment (payload: width u16, height u16, escape sequences).
    Keyframe {
        time_ms: u64,
        width: u16,
        height: u16,
        screen: Vec<u8>,
    },
    Output {
        time_ms: u64,
        data: Vec<u8>,
    },
    Input {
        time_ms: u64,
        data: Vec<u8>,
    },
    Resize {
        time_ms: u64,
        width: u16,
        height: u16,
    },
}

const KEYFRAME: u8 = 0;
const OUTPUT: u8 = 1;
const INPUT: u8 = 2;
const RESIZE: u8 = 3;
/// Records are small; a larger length means a damaged file.
const MAX_PAYLOAD: u32 = 16 << 20;

impl Record {
    pub fn time_ms(&self) -> u64 {
        match self {
            Record::Keyframe { time_ms, .. }
            | Record::Output { time_ms, .. }
            | Record::Input { time_ms, .. }
            | Record::Resize { time_ms, .. } => *time_ms,
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let (kind, time_ms, payload): (u8, u64, Vec<u8>) = match self {
            Record::Keyframe {
                time_ms,
                width,
                height,
                screen,
            } => {
                let mut payload = Vec::with_capacity(4 + screen.len());
                payload.extend_from_slice(&width.to_be_bytes());
                payload.extend_from_slice(&height.to_be_bytes());
                payload.extend_from_slice(screen);
                (KEYFRAME, *time_ms, payload)
            }
            Record::Output { time_ms, data } => (OUTPUT, *time_ms, data.clone()),
            Record::Input { time_ms, data } => (INPUT, *time_ms, data.clone()),
            Record::Resize {
                time_ms,
                width,
                height,
            } => {
                let mut payload = width.to_be_bytes().to_vec();
                payload.extend_from_slice(&height.to_be_bytes());
                (RESIZE, *time_ms, payload)
            }
        };
        out.push(kind);
        out.extend_from_slice(&time_ms.to_be_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&payload);
    }

    /// Reads the next record; `None` at the end of the stream (or where a crash cut it off).
    pub fn read(reader: &mut impl Read) -> io::Result<Option<Record>> {
        let mut head = [0u8; 13];
        match read_full(reader, &mut head)? {
            0 => return Ok(None),
            13 => {}
            _ => return Ok(None),
        }
        let kind = head[0];
        let time_ms = u64::from_be_bytes(head[1..9].try_into().unwrap_or_default());
        let length = u32::from_be_bytes(head[9..13].try_into().unwrap_or_default());
        if length > MAX_PAYLOAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "damaged recording: record too long",
            ));
        }
        let mut payload = vec![0u8; length as usize];
        if read_full(reader, &mut payload)? < payload.len() {
            return Ok(None);
        }
        let size = |p: &[u8]| -> Option<(u16, u16)> {
            Some((
                u16::from_be_bytes(p.get(0..2)?.try_into().ok()?),
                u16::from_be_bytes(p.get(2..4)?.try_into().ok()?),
            ))
        };
        let damaged = || io::Error::new(io::ErrorKind::InvalidData, "damaged recording: short record");
        Ok(Some(match kind {
            KEYFRAME => {
                let (width, height) = size(&payload).ok_or_else(damaged)?;
                Record::Keyframe {
                    time_ms,
                    width,
                    height,
                    screen: payload[4..].to_vec(),
                }
            }
            OUTPUT => Record::Output {
                time_ms,
                data: payload,
            },
            INPUT => Record::Input {
                time_ms,
                data: payload,
            },
            RESIZE => {
                let (width, height) = size(&payload).ok_or_else(damaged)?;
                Record::Resize {
                    time_ms,
                    width,
                    height,
                }
            }
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("damaged recording: kind {other}"),
                ));
            }
        }))
    }
}

/// Reads until `buffer` is full or the stream ends (a truncated gzip tail counts as the end).
fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A segment cut off by a crash ends where its data ends.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The file name of segment `index` starting at `start_ms`.
pub fn segment_name(index: u32, start_ms: u64) -> String {
    format!("{index:06}-{start_ms:010}.seg.gz")
}

/// Parses a segment file name back into its index and start time.
pub fn parse_segment_name(name: &str) -> Option<(u32, u64)> {
    let stem = name.strip_suffix(".seg.gz")?;
    let (index, start) = stem.split_once('-')?;
    Some((index.parse().ok()?, start.parse().ok()?))
}

/// Who and what a recording is of.
pub struct SessionInfo {
    pub sid: String,
    pub device_id: String,
    pub device_name: String,
    pub user_id: String,
    pub user_name: String,
    pub command: Option<String>,
    pub width: u16,
    pub height: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let records = [
            Record::Keyframe {
                time_ms: 0,
                width: 80,
                height: 24,
                screen: b"\x1b[Hhi".to_vec(),
            },
            Record::Output {
                time_ms: 5,
                data: vec![0xff, 0x00, b'a'],
            },
            Record::Input {
                time_ms: 6,
                data: b"ls\r".to_vec(),
            },
            Record::Resize {
                time_ms: 7,
                width: 120,
                height: 40,
            },
        ];
        let mut bytes = Vec::new();
        records.iter().for_each(|r| r.encode(&mut bytes));
        let mut reader = bytes.as_slice();
        for expected in &records {
            assert_eq!(Record::read(&mut reader).unwrap().as_ref(), Some(expected));
        }
        assert_eq!(Record::read(&mut reader).unwrap(), None);
    }

    #[test]
    fn a_truncated_tail_reads_as_the_end() {
        let mut bytes = Vec::new();
        Record::Output {
            time_ms: 1,
            data: b"abcdef".to_vec(),
        }
        .encode(&mut bytes);
        bytes.truncate(bytes.len() - 2);
        assert_eq!(Record::read(&mut bytes.as_slice()).unwrap(), None);
    }

    #[test]
    fn segment_names_parse() {
        assert_eq!(parse_segment_name(&segment_name(3, 12_345)), Some((3, 12_345)));
        assert_eq!(parse_segment_name("junk"), None);
    }
}
