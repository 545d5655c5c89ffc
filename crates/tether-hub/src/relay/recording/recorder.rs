//! Writes one session's recording. A thread per session owns the files and a terminal emulator
//! (for keyframes), so compression and disk writes never run on the runtime's worker threads;
//! the session's relay feeds it through a bounded channel and never blocks on disk.

use std::{
    fs::File,
    io::Write as _,
    num::NonZeroU16,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};
use tether_proto::clock::unix_millis;

use flate2::{Compression, write::GzEncoder};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::thread_receiver::{Received, ThreadReceiver};
use crate::{domain::recording_format::Record, domain::recording_format::segment_name};
use crate::{domain::recording_format::SessionInfo, relay::Relay};

/// A new segment (and keyframe) after this much output or time.
const SEGMENT_BYTES: usize = 512 * 1024;
const SEGMENT_TIME: Duration = Duration::from_secs(60);
/// The compressed stream is flushed this often, so a crash loses at most this much.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Queue between the relay and the recorder.
const QUEUE: usize = 1024;

pub enum Command {
    Output(Vec<u8>),
    Input(Vec<u8>),
    Resize(u16, u16),
    Subscribe(oneshot::Sender<Snapshot>),
}

/// What live watchers receive after their snapshot.
#[derive(Debug, Clone)]
pub enum LiveEvent {
    Output(Arc<Vec<u8>>),
    Resize(u16, u16),
}

/// The screen as a watcher joins, and what follows.
pub struct Snapshot {
    pub width: u16,
    pub height: u16,
    pub screen: Vec<u8>,
    pub events: broadcast::Receiver<LiveEvent>,
}

/// What a session holds to feed its recording.
pub struct RecordingHandle {
    sender: mpsc::Sender<Command>,
    record_input: bool,
}

impl RecordingHandle {
    pub async fn output(&self, data: &[u8]) {
        let _ = self.sender.send(Command::Output(data.to_vec())).await;
    }

    pub async fn input(&self, data: &[u8]) {
        if self.record_input {
            let _ = self.sender.send(Command::Input(data.to_vec())).await;
        }
    }

    pub async fn resize(&self, width: u16, height: u16) {
        let _ = self.sender.send(Command::Resize(width, height)).await;
    }
}

/// Starts recording a session. The recording ends when the handle is dropped.
pub async fn start(state: &Relay, info: SessionInfo) -> anyhow::Result<RecordingHandle> {
    let directory = state.recordings_dir.join(&info.sid);
    tokio::fs::create_dir_all(&directory).await?;
    state.store.insert_terminal_session(&info, unix_millis()).await?;
    let (sender, receiver) = mpsc::channel(QUEUE);
    let recorder = Recorder::new(directory, info.width, info.height)?;
    let (finished, bytes_out) = oneshot::channel();
    let writer = std::thread::Builder::new()
        .name("recording".to_owned())
        .spawn(move || {
            let _ = finished.send(recorder.run(receiver));
        });
    if let Err(error) = writer {
        // Nothing will be written: the session's record is closed now.
        if let Err(error) = state
            .store
            .end_terminal_session(&info.sid, unix_millis(), 0)
            .await
        {
            tracing::warn!("recording {}: {error:#}", info.sid);
        }
        return Err(anyhow::Error::new(error).context("cannot start the recording's writer thread"));
    }
    state.live.insert(&info.sid, sender.downgrade());
    let record_input = state.config.record_input;
    let state = state.clone();
    let sid = info.sid.clone();
    tokio::spawn(async move {
        // The writer answers once the last segment is finished and synced.
        let bytes_out = bytes_out.await.unwrap_or_else(|_| {
            tracing::error!("recording {sid}: the writer thread stopped before finishing");
            0
        });
        state.live.remove(&sid);
        if let Err(error) = state
            .store
            .end_terminal_session(&sid, unix_millis(), bytes_out)
            .await
        {
            tracing::warn!("recording {sid}: {error:#}");
        }
    });
    Ok(RecordingHandle { sender, record_input })
}

struct Recorder {
    directory: PathBuf,
    started: Instant,
    terminal: vt100::Parser,
    width: u16,
    height: u16,
    segment: Option<GzEncoder<File>>,
    segment_index: u32,
    segment_bytes: usize,
    segment_started: Instant,
    last_flush: Instant,
    bytes_out: u64,
    live: broadcast::Sender<LiveEvent>,
    scratch: Vec<u8>,
}

fn size(value: u16) -> NonZeroU16 {
    NonZeroU16::new(value).unwrap_or(NonZeroU16::MIN)
}

impl Recorder {
    fn new(directory: PathBuf, width: u16, height: u16) -> anyhow::Result<Recorder> {
        let now = Instant::now();
        Ok(Recorder {
            directory,
            started: now,
            terminal: vt100::Parser::new(size(height), size(width), 0),
            width,
            height,
            segment: None,
            segment_index: 0,
            segment_bytes: 0,
            segment_started: now,
            last_flush: now,
            bytes_out: 0,
            live: broadcast::channel(256).0,
            scratch: Vec::new(),
        })
    }

    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Processes commands until the session drops its handle; returns the output byte count.
    /// Runs on the recording's own thread, where waiting for the disk holds up no other task.
    fn run(mut self, commands: mpsc::Receiver<Command>) -> u64 {
        let mut commands = ThreadReceiver::new(commands);
        let mut failed = false;
        let mut next_tick = Instant::now();
        loop {
            let result = match commands.receive_until(next_tick) {
                Received::Message(command) => self.handle(command),
                Received::Closed => break,
                // Quiet sessions are flushed too, so a crash loses at most a second.
                Received::TimedOut => {
                    next_tick = Instant::now() + FLUSH_EVERY;
                    self.flush()
                }
            };
            if let Err(error) = result {
                if !failed {
                    tracing::error!("recording in {} failed: {error}", self.directory.display());
                }
                failed = true;
            }
        }
        if let Some(segment) = self.segment.take()
            && let Err(error) = segment.finish().and_then(|file| file.sync_all())
        {
            tracing::error!("finishing recording {}: {error}", self.directory.display());
        }
        self.bytes_out
    }

    fn handle(&mut self, command: Command) -> std::io::Result<()> {
        let time_ms = self.elapsed_ms();
        match command {
            // Written before the emulator sees it: a segment's keyframe must show the screen
            // before the record that opens the segment.
            Command::Output(data) => {
                let live = Arc::new(data.clone());
                self.write(Record::Output { time_ms, data })?;
                self.terminal.process(&live);
                self.bytes_out += live.len() as u64;
                self.segment_bytes += live.len();
                let _ = self.live.send(LiveEvent::Output(live));
            }
            Command::Input(data) => self.write(Record::Input { time_ms, data })?,
            Command::Resize(width, height) => {
                self.write(Record::Resize {
                    time_ms,
                    width,
                    height,
                })?;
                self.terminal.set_size(size(height), size(width));
                (self.width, self.height) = (width, height);
                let _ = self.live.send(LiveEvent::Resize(width, height));
            }
            Command::Subscribe(reply) => {
                let _ = reply.send(Snapshot {
                    width: self.width,
                    height: self.height,
                    screen: self.terminal.screen().state_formatted().into_bytes(),
                    events: self.live.subscribe(),
                });
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if let Some(segment) = &mut self.segment
            && self.last_flush.elapsed() >= FLUSH_EVERY
        {
            segment.flush()?;
            self.last_flush = Instant::now();
        }
        Ok(())
    }

    fn write(&mut self, record: Record) -> std::io::Result<()> {
        let rollover = self.segment_bytes >= SEGMENT_BYTES || self.segment_started.elapsed() >= SEGMENT_TIME;
        if self.segment.is_none() || rollover {
            self.open_segment(record.time_ms())?;
        }
        self.scratch.clear();
        record.encode(&mut self.scratch);
        if let Some(segment) = &mut self.segment {
            segment.write_all(&self.scratch)?;
        }
        self.flush()
    }

    /// Closes the current segment and starts the next with a keyframe of the screen.
    fn open_segment(&mut self, time_ms: u64) -> std::io::Result<()> {
        if let Some(segment) = self.segment.take() {
            segment.finish()?.sync_all()?;
            self.segment_index += 1;
        }
        let path = self.directory.join(segment_name(self.segment_index, time_ms));
        let mut encoder = GzEncoder::new(File::create(path)?, Compression::fast());
        let keyframe = Record::Keyframe {
            time_ms,
            width: self.width,
            height: self.height,
            screen: self.terminal.screen().state_formatted().into_bytes(),
        };
        self.scratch.clear();
        keyframe.encode(&mut self.scratch);
        encoder.write_all(&self.scratch)?;
        self.segment = Some(encoder);
        self.segment_bytes = 0;
        self.segment_started = Instant::now();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use flate2::read::GzDecoder;

    use super::*;

    #[tokio::test]
    async fn the_writer_thread_records_what_the_relay_sends_and_finishes_its_segment() {
        let directory = std::env::temp_dir().join(format!("tether-recorder-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let (sender, receiver) = mpsc::channel(QUEUE);
        let recorder = Recorder::new(directory.clone(), 80, 24).unwrap();
        let writer = std::thread::spawn(move || recorder.run(receiver));
        sender.send(Command::Output(b"hello".to_vec())).await.unwrap();
        sender.send(Command::Resize(100, 30)).await.unwrap();
        let (reply, answer) = oneshot::channel();
        sender.send(Command::Subscribe(reply)).await.unwrap();
        let snapshot = answer.await.unwrap();
        assert_eq!((snapshot.width, snapshot.height), (100, 30));
        assert!(String::from_utf8_lossy(&snapshot.screen).contains("hello"));
        // Dropping the last sender ends the recording: the thread finishes the segment.
        drop(sender);
        assert_eq!(writer.join().unwrap(), 5);
        let segments: Vec<PathBuf> = std::fs::read_dir(&directory)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        assert_eq!(segments.len(), 1, "{segments:?}");
        // A finished gzip stream (a missing trailer would be an error here).
        let mut whole = Vec::new();
        GzDecoder::new(File::open(&segments[0]).unwrap())
            .read_to_end(&mut whole)
            .unwrap();
        let mut reader = GzDecoder::new(File::open(&segments[0]).unwrap());
        let mut records = Vec::new();
        while let Some(record) = Record::read(&mut reader).unwrap() {
            records.push(record);
        }
        assert!(matches!(&records[..], [
            Record::Keyframe { width: 80, height: 24, .. },
            Record::Output { data, .. },
            Record::Resize { width: 100, height: 30, .. },
        ] if data == b"hello"));
        std::fs::remove_dir_all(&directory).unwrap();
    }

    #[tokio::test]
    async fn a_quiet_session_is_flushed_within_about_a_second() {
        let directory = std::env::temp_dir().join(format!("tether-recorder-quiet-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let (sender, receiver) = mpsc::channel(QUEUE);
        let recorder = Recorder::new(directory.clone(), 80, 24).unwrap();
        let writer = std::thread::spawn(move || recorder.run(receiver));
        sender.send(Command::Output(b"quiet".to_vec())).await.unwrap();
        tokio::time::sleep(FLUSH_EVERY + Duration::from_millis(500)).await;
        // Read while the segment is still open, as after a crash: the output is on disk.
        let segment = std::fs::read_dir(&directory)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut reader = flate2::read::GzDecoder::new(File::open(&segment).unwrap());
        let mut records = Vec::new();
        while let Ok(Some(record)) = Record::read(&mut reader) {
            records.push(record);
        }
        assert!(
            matches!(&records[..], [Record::Keyframe { .. }, Record::Output { data, .. }] if data == b"quiet"),
            "{records:?}"
        );
        drop(sender);
        writer.join().unwrap();
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
