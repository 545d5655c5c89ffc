//! Reads recordings back: from the start, or from any moment (the segment's keyframe is replayed
//! through a terminal emulator up to that moment, never the whole recording), and as asciicast v2.
//! Segments come from the database, one at a time, or, for a recording made before it held
//! them, from files on this replica's disk.

use std::{
    fs::File,
    io::{self, BufRead, BufReader},
    num::NonZeroU16,
    path::{Path, PathBuf},
};

use flate2::read::MultiGzDecoder;

use crate::{domain::recording_format::Record, domain::recording_format::parse_segment_name, store::Store};

/// Where one segment is.
enum SegmentAt {
    /// In the database (`store/recordings.rs`), by number.
    Stored(u32),
    /// A file of a recording made before the database held them (migration 0017).
    File(PathBuf),
}

/// A recording's segments, in order, and where to read them. Its methods block (the database
/// is asked through the runtime's handle): call them off the runtime's worker threads, as
/// `spawn_blocking` does.
pub struct Recording {
    store: Store,
    runtime: tokio::runtime::Handle,
    sid: String,
    segments: Vec<(u64, SegmentAt)>,
}

type SegmentReader = MultiGzDecoder<Box<dyn BufRead + Send>>;

impl Recording {
    /// The recording of session `sid`: its segments in the database or, for one made before
    /// they were kept there, its files in `recordings_dir/<sid>/` on this replica. None found
    /// (nothing recorded yet) reads as an empty recording.
    pub fn open(store: &Store, recordings_dir: &Path, sid: &str) -> io::Result<Recording> {
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let stored = runtime
            .block_on(store.recording_segments(sid))
            .map_err(|error| io::Error::other(format!("{error:#}")))?;
        let segments = if stored.is_empty() {
            // Session ids are UUIDs the hub made (checked against its rows); never a path
            // from outside.
            match files(&recordings_dir.join(sid)) {
                Ok(files) => files,
                Err(error) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
                Err(error) => return Err(error),
            }
        } else {
            stored
                .into_iter()
                .map(|(segment, start)| (start, SegmentAt::Stored(segment)))
                .collect()
        };
        Ok(Recording {
            store: store.clone(),
            runtime,
            sid: sid.to_owned(),
            segments,
        })
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// When each segment (each keyframe) starts, in ms since the session began, in order.
    pub fn segment_starts(&self) -> Vec<u64> {
        self.segments.iter().map(|(start, _)| *start).collect()
    }

    /// One segment's records, decompressed as they are read. A stored segment is fetched
    /// whole: segments are bounded, a recording is not.
    fn read(&self, at: &SegmentAt) -> io::Result<SegmentReader> {
        let source: Box<dyn BufRead + Send> = match at {
            SegmentAt::Stored(segment) => {
                let bytes = self
                    .runtime
                    .block_on(self.store.recording_segment(&self.sid, *segment))
                    .map_err(|error| io::Error::other(format!("{error:#}")))?;
                Box::new(io::Cursor::new(bytes))
            }
            SegmentAt::File(path) => Box::new(BufReader::new(File::open(path)?)),
        };
        Ok(MultiGzDecoder::new(source))
    }
}

/// The segment files of a recording made before migration 0017, in order.
fn files(directory: &Path) -> io::Result<Vec<(u64, SegmentAt)>> {
    let mut found: Vec<(u32, u64, PathBuf)> = std::fs::read_dir(directory)?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let (index, start) = parse_segment_name(&name)?;
            Some((index, start, entry.path()))
        })
        .collect();
    found.sort();
    Ok(found
        .into_iter()
        .map(|(_, start, path)| (start, SegmentAt::File(path)))
        .collect())
}

/// The output bytes a recording holds and the time of its last record (ms since it began):
/// what a terminal the hub stopped under had sent, as far as the recording got.
pub fn output_totals(recording: &Recording) -> io::Result<(u64, u64)> {
    let (mut bytes, mut last_ms) = (0u64, 0u64);
    for (_, at) in &recording.segments {
        let mut reader = recording.read(at)?;
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

/// The records of a recording from `from_ms` on. The first is a keyframe of the screen at
/// `from_ms` (or the recording's first keyframe when starting at 0); later keyframes are
/// skipped, since a continuous player does not need them.
pub struct Playback {
    recording: Recording,
    segments: std::vec::IntoIter<(u64, SegmentAt)>,
    current: Option<SegmentReader>,
    /// The keyframe of the seek point, then the first record after it.
    pending: Option<Record>,
    after_first: Option<Record>,
}

impl Playback {
    pub fn open(mut recording: Recording, from_ms: u64) -> io::Result<Playback> {
        let mut all = std::mem::take(&mut recording.segments);
        // The last segment that starts at or before the moment asked for.
        let first = all.iter().rposition(|(start, _)| *start <= from_ms).unwrap_or(0);
        let mut remaining = all.split_off(first).into_iter();
        let Some((_, at)) = remaining.next() else {
            return Ok(Playback {
                recording,
                segments: remaining,
                current: None,
                pending: None,
                after_first: None,
            });
        };
        let mut reader = recording.read(&at)?;
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
            recording,
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
                    let (_, at) = self.segments.next()?;
                    match self.recording.read(&at) {
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

/// An asciicast v2 file: the header line, then `[seconds, "o"|"i"|"r", text]` lines; from
/// `from_ms` (read from the keyframe before it: the screen at that moment is the first output
/// event) up to `to_ms`, times counted from the session's start either way.
pub fn asciicast_lines(
    recording: Recording,
    started_at_ms: i64,
    command: Option<&str>,
    window: (u64, Option<u64>),
) -> io::Result<impl Iterator<Item = io::Result<String>> + use<>> {
    let (from_ms, to_ms) = window;
    let mut playback = Playback::open(recording, from_ms)?.peekable();
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
    let before_end = move |record: &io::Result<Record>| match (record, to_ms) {
        (Ok(record), Some(to_ms)) => record.time_ms() < to_ms || matches!(record, Record::Keyframe { .. }),
        _ => true,
    };
    let events = playback.take_while(before_end).filter_map(move |record| {
        let line = |time_ms: u64, kind: &str, text: String| {
            serde_json::json!([time_ms as f64 / 1000.0, kind, text]).to_string()
        };
        Some(match record {
            Err(error) => Err(error),
            // The first keyframe of a recording is the empty screen; a later moment's is drawn.
            Ok(Record::Keyframe { .. }) if from_ms == 0 => return None,
            Ok(Record::Keyframe { time_ms, screen, .. }) => {
                let mut drawn = b"\x1b[H\x1b[2J".to_vec();
                drawn.extend_from_slice(&screen);
                Ok(line(time_ms, "o", String::from_utf8_lossy(&drawn).into_owned()))
            }
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
    use std::io::Write as _;

    use super::*;
    use crate::{domain::recording_format::segment_name, store::recordings::RecordingChunk};

    /// A segment's gzip stream of `records`, cut where a sync flush came after the first one.
    fn segment(records: &[Record]) -> (Vec<u8>, Vec<u8>) {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut bytes = Vec::new();
        records[0].encode(&mut bytes);
        encoder.write_all(&bytes).unwrap();
        encoder.flush().unwrap();
        let first = std::mem::take(encoder.get_mut());
        bytes.clear();
        records[1..].iter().for_each(|record| record.encode(&mut bytes));
        encoder.write_all(&bytes).unwrap();
        (first, encoder.finish().unwrap())
    }

    fn keyframe(time_ms: u64) -> Record {
        Record::Keyframe {
            time_ms,
            width: 80,
            height: 24,
            screen: Vec::new(),
        }
    }

    fn output(time_ms: u64, data: &[u8]) -> Record {
        Record::Output {
            time_ms,
            data: data.to_vec(),
        }
    }

    /// Two segments stored in the database play back in order, from the start and from a
    /// moment in the second; a recording of files (from before 0017) still plays.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stored_segments_and_older_files_play_back() {
        let directory = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&directory.path().join("hub.db"))
            .await
            .unwrap();
        let recordings = directory.path().join("recordings");
        let segments = [
            (0, segment(&[keyframe(0), output(5, b"one ")])),
            (
                1_000,
                segment(&[keyframe(1_000), output(1_000, b"two "), output(1_500, b"three")]),
            ),
        ];
        for (number, (start_ms, (first, rest))) in segments.iter().enumerate() {
            for (chunk, data) in [first, rest].into_iter().enumerate() {
                let chunk = RecordingChunk {
                    segment: number as u32,
                    chunk: chunk as u32,
                    start_ms: *start_ms,
                    data: data.clone(),
                };
                store.append_recording_chunk("db", &chunk).await.unwrap();
            }
        }
        std::fs::create_dir_all(recordings.join("files")).unwrap();
        let (first, rest) = &segments[0].1;
        std::fs::write(
            recordings.join("files").join(segment_name(0, 0)),
            [&first[..], rest].concat(),
        )
        .unwrap();

        let played = tokio::task::spawn_blocking(move || {
            let text = |sid: &str, from_ms| -> String {
                let recording = Recording::open(&store, &recordings, sid).unwrap();
                let records: Vec<Record> = Playback::open(recording, from_ms)
                    .unwrap()
                    .collect::<io::Result<_>>()
                    .unwrap();
                assert!(matches!(records[0], Record::Keyframe { .. }), "{records:?}");
                let output = records.iter().filter_map(|record| match record {
                    Record::Output { data, .. } => Some(String::from_utf8_lossy(data).into_owned()),
                    _ => None,
                });
                output.collect()
            };
            let nothing = Recording::open(&store, &recordings, "none").unwrap();
            assert!(nothing.is_empty());
            (text("db", 0), text("db", 1_200), text("files", 0))
        })
        .await
        .unwrap();
        assert_eq!(played, ("one two three".into(), "three".into(), "one ".into()));
    }

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
