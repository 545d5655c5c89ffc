//! Reads recordings back: from the start, or from any moment (the segment's keyframe is replayed
//! through a terminal emulator up to that moment, never the whole recording), and as asciicast v2.

use std::{
    fs::File,
    io::{self, BufReader},
    num::NonZeroU16,
    path::{Path, PathBuf},
};

use flate2::read::MultiGzDecoder;

use crate::{domain::recording_format::Record, domain::recording_format::parse_segment_name};

/// A recording's segments in order: (start time, path).
pub fn segments(directory: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found: Vec<(u32, u64, PathBuf)> = std::fs::read_dir(directory)?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let (index, start) = parse_segment_name(&name)?;
            Some((index, start, entry.path()))
        })
        .collect();
    found.sort();
    Ok(found.into_iter().map(|(_, start, path)| (start, path)).collect())
}

/// The output bytes a recording holds and the time of its last record (ms since it began):
/// what a terminal the hub stopped under had sent, as far as the recording got.
pub fn output_totals(directory: &Path) -> io::Result<(u64, u64)> {
    let (mut bytes, mut last_ms) = (0u64, 0u64);
    for (_, path) in segments(directory)? {
        let mut reader = open(&path)?;
        // A damaged tail (cut by the crash) ends the count where it is.
        while let Ok(Some(record)) = Record::read(&mut reader) {
            last_ms = last_ms.max(record.time_ms());
            if let Record::Output { data, .. } = &record {
                bytes += data.len() as u64;
            }
        }
    }
    Ok((bytes, last_ms))
}

fn open(path: &Path) -> io::Result<MultiGzDecoder<BufReader<File>>> {
    Ok(MultiGzDecoder::new(BufReader::new(File::open(path)?)))
}

/// The records of a recording from `from_ms` on. The first is a keyframe of the screen at
/// `from_ms` (or the recording's first keyframe when starting at 0); later keyframes are
/// skipped, since a continuous player does not need them.
pub struct Playback {
    segments: std::vec::IntoIter<(u64, PathBuf)>,
    current: Option<MultiGzDecoder<BufReader<File>>>,
    /// The keyframe of the seek point, then the first record after it.
    pending: Option<Record>,
    after_first: Option<Record>,
}

impl Playback {
    pub fn open(directory: &Path, from_ms: u64) -> io::Result<Playback> {
        let mut all = segments(directory)?;
        // The last segment that starts at or before the moment asked for.
        let first = all.iter().rposition(|(start, _)| *start <= from_ms).unwrap_or(0);
        let mut remaining = all.split_off(first).into_iter();
        let Some((_, path)) = remaining.next() else {
            return Ok(Playback {
                segments: remaining,
                current: None,
                pending: None,
                after_first: None,
            });
        };
        let mut reader = open(&path)?;
        let mut terminal: Option<vt100::Parser> = None;
        let mut size = (80u16, 24u16);
        let mut pending = None;
        while let Some(record) = Record::read(&mut reader)? {
            if record.time_ms() >= from_ms && !matches!(record, Record::Keyframe { .. }) {
                pending = Some(record);
                break;
            }
            match record {
                Record::Keyframe {
                    width,
                    height,
                    screen,
                    ..
                } => {
                    size = (width, height);
                    let mut parser = vt100::Parser::new(nonzero(height), nonzero(width), 0);
                    parser.process(&screen);
                    terminal = Some(parser);
                }
                Record::Output { data, .. } => {
                    if let Some(parser) = &mut terminal {
                        parser.process(&data);
                    }
                }
                Record::Resize { width, height, .. } => {
                    size = (width, height);
                    if let Some(parser) = &mut terminal {
                        parser.set_size(nonzero(height), nonzero(width));
                    }
                }
                Record::Input { .. } => {}
            }
        }
        let screen = terminal
            .map(|parser| parser.screen().state_formatted().into_bytes())
            .unwrap_or_default();
        let keyframe = Record::Keyframe {
            time_ms: from_ms,
            width: size.0,
            height: size.1,
            screen,
        };
        let playback = Playback {
            segments: remaining,
            current: Some(reader),
            pending,
            after_first: None,
        };
        Ok(playback.with_first(keyframe))
    }

    fn with_first(mut self, keyframe: Record) -> Playback {
        // Keep the record found after the seek point for right after the keyframe.
        let after = self.pending.take();
        self.pending = Some(keyframe);
        self.after_first = after;
        self
    }
}

impl Iterator for Playback {
    type Item = io::Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(record) = self.pending.take() {
            return Some(Ok(record));
        }
        if let Some(record) = self.after_first.take() {
            return Some(Ok(record));
        }
        loop {
            let reader = match &mut self.current {
                Some(reader) => reader,
                None => {
                    let (_, path) = self.segments.next()?;
                    match open(&path) {
                        Ok(reader) => self.current.insert(reader),
                        Err(error) => return Some(Err(error)),
                    }
                }
            };
            match Record::read(reader) {
                Ok(Some(Record::Keyframe { .. })) => continue,
                Ok(Some(record)) => return Some(Ok(record)),
                Ok(None) => self.current = None,
                Err(error) => return Some(Err(error)),
            }
        }
    }
}

fn nonzero(value: u16) -> NonZeroU16 {
    NonZeroU16::new(value).unwrap_or(NonZeroU16::MIN)
}

/// Converts bytes to text for asciicast, carrying an incomplete UTF-8 sequence at the end of one
/// chunk over to the next (terminal output splits characters anywhere).
#[derive(Default)]
pub struct Utf8Carry {
    carry: Vec<u8>,
}

impl Utf8Carry {
    pub fn push(&mut self, data: &[u8]) -> String {
        self.carry.extend_from_slice(data);
        let valid_up_to = match std::str::from_utf8(&self.carry) {
            Ok(_) => self.carry.len(),
            Err(error) if error.error_len().is_none() => error.valid_up_to(),
            // Invalid bytes (not just cut off): replace them, keep nothing back.
            Err(_) => self.carry.len(),
        };
        let text = String::from_utf8_lossy(&self.carry[..valid_up_to]).into_owned();
        self.carry.drain(..valid_up_to);
        text
    }
}

/// An asciicast v2 file: the header line, then `[seconds, "o"|"i"|"r", text]` lines.
pub fn asciicast_lines(
    directory: &Path,
    started_at_ms: i64,
    command: Option<&str>,
) -> io::Result<impl Iterator<Item = io::Result<String>> + use<>> {
    let mut playback = Playback::open(directory, 0)?.peekable();
    let (width, height) = match playback.peek() {
        Some(Ok(Record::Keyframe { width, height, .. })) => (*width, *height),
        _ => (80, 24),
    };
    let mut header = serde_json::json!({
        "version": 2,
        "width": width,
        "height": height,
        "timestamp": started_at_ms / 1000,
        "env": { "TERM": "xterm-256color" },
    });
    if let Some(command) = command {
        header["command"] = serde_json::json!(command);
    }
    let mut output = Utf8Carry::default();
    let mut input = Utf8Carry::default();
    let events = playback.filter_map(move |record| {
        let line = |time_ms: u64, kind: &str, text: String| {
            serde_json::json!([time_ms as f64 / 1000.0, kind, text]).to_string()
        };
        Some(match record {
            Err(error) => Err(error),
            // The first keyframe of a recording is the empty screen.
            Ok(Record::Keyframe { .. }) => return None,
            Ok(Record::Output { time_ms, data }) => Ok(line(time_ms, "o", output.push(&data))),
            Ok(Record::Input { time_ms, data }) => Ok(line(time_ms, "i", input.push(&data))),
            Ok(Record::Resize {
                time_ms,
                width,
                height,
            }) => Ok(line(time_ms, "r", format!("{width}x{height}"))),
        })
    });
    Ok(std::iter::once(Ok(header.to_string())).chain(events))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_across_chunks_is_carried() {
        let mut carry = Utf8Carry::default();
        let text = "é€";
        let bytes = text.as_bytes();
        let first = carry.push(&bytes[..1]);
        let second = carry.push(&bytes[1..4]);
        let third = carry.push(&bytes[4..]);
        assert_eq!(format!("{first}{second}{third}"), text);
        assert_eq!(carry.push(&[0xff, b'a']), "\u{fffd}a");
    }
}
