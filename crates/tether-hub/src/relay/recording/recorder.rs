//! Writes one session's recording. A thread per session owns the segment being written and a
//! terminal emulator (for keyframes), so compression never runs on the runtime's worker
//! threads; the session's relay feeds it through a bounded channel. Each flush of a segment's
//! gzip stream (about once a second, and at its end) goes as a chunk to a task that appends it
//! to the database (`store/recordings.rs`), where every replica reads it: nothing but the
//! current segment's unflushed tail is held in memory.

use std::{
    io::Write as _,
    num::NonZeroU16,
    sync::Arc,
    time::{Duration, Instant},
};
use tether_proto::clock::unix_millis;

use flate2::{Compression, write::GzEncoder};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::thread_receiver::{Received, ThreadReceiver};
use crate::{domain::recording_format::Record, store::Store, store::recordings::RecordingChunk};
use crate::{domain::recording_format::SessionInfo, relay::Relay};

/// A new segment (and keyframe) after this much output or time.
const SEGMENT_BYTES: usize = 512 * 1024;
const SEGMENT_TIME: Duration = Duration::from_secs(60);
/// The compressed stream is flushed (and stored) this often, so a crash loses at most this much.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Queue between the relay and the recorder.
const QUEUE: usize = 1024;
/// Chunks on their way to the database: a slow database slows the recorder (and, through its
/// queue, the session) instead of growing memory.
const CHUNK_QUEUE: usize = 16;
/// A chunk the database refused is tried once more after this pause, then dropped (logged).
const RETRY_AFTER: Duration = Duration::from_millis(500);

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
    /// The shell's output offset the recording holds already: a re-attach replays output from
    /// the offset its client asks for (0 for `tether terminal --attach`), recorded once.
    recorded_until: u64,
}

impl RecordingHandle {
    /// Output at the shell's output `offset` (None: a device that numbers none).
    pub async fn output(&self, offset: Option<u64>, data: &[u8]) {
        let skip = offset.map_or(0, |offset| self.recorded_until.saturating_sub(offset));
        let Some(data) = data
            .get(skip.min(data.len() as u64) as usize..)
            .filter(|rest| !rest.is_empty())
        else {
            return;
        };
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

/// Where a re-attached session's recording goes on: the row's start, the segment number and
/// byte count to continue from, and the screen as the recording left it (for the keyframes).
struct Continuation {
    started_at: i64,
    next_segment: u32,
    bytes_out: u64,
    screen: Option<(u16, u16, Vec<u8>)>,
}

/// How long a re-attached session waits for the recording of its previous part to be finished
/// (by its user leg, here or on another replica) before continuing it.
const PREVIOUS_PART_WAIT: Duration = Duration::from_secs(10);

/// Starts recording a session. The recording ends when the handle is dropped. Fails (and the
/// session is refused) when its row cannot be written: the database is where it would go.
///
/// A session re-attached after a drop (`resumed`) continues its own recording: one recording
/// per shell, the time it was detached an idle gap in it.
pub async fn start(state: &Relay, info: SessionInfo, resumed: bool) -> anyhow::Result<RecordingHandle> {
    let continuation = match resumed {
        true => continuation(state, &info.sid).await?,
        false => None,
    };
    if continuation.is_none() {
        state.store.insert_terminal_session(&info, unix_millis()).await?;
    }
    let (sender, receiver) = mpsc::channel(QUEUE);
    let (chunks, stored) = mpsc::channel(CHUNK_QUEUE);
    let mut recorder = Recorder::new(info.sid.clone(), chunks, info.width, info.height);
    let bytes_before = continuation.as_ref().map_or(0, |continued| continued.bytes_out);
    if let Some(continued) = continuation {
        recorder.continue_from(continued);
    }
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
            .end_terminal_session(&info.sid, unix_millis(), bytes_before)
            .await
        {
            tracing::warn!("recording {}: {error:#}", info.sid);
        }
        return Err(anyhow::Error::new(error).context("cannot start the recording's writer thread"));
    }
    let registered = state.live.insert(&info.sid, sender.downgrade());
    let record_input = state.config.record_input;
    let state = state.clone();
    let sid = info.sid.clone();
    tokio::spawn(async move {
        // Ends when the writer thread has sent its last chunk (the end of its last segment).
        store_chunks(&state.store, &sid, stored).await;
        let bytes_out = bytes_out.await.unwrap_or_else(|_| {
            tracing::error!("recording {sid}: the writer thread stopped before finishing");
            0
        });
        state.live.remove(&sid, registered);
        if let Err(error) = state
            .store
            .end_terminal_session(&sid, unix_millis(), bytes_before + bytes_out)
            .await
        {
            tracing::warn!("recording {sid}: {error:#}");
        }
    });
    Ok(RecordingHandle {
        sender,
        record_input,
        recorded_until: bytes_before,
    })
}

/// The recording a re-attached session continues, its row open again; None when the session
/// has no recording yet (its first part was not recorded).
async fn continuation(state: &Relay, sid: &str) -> anyhow::Result<Option<Continuation>> {
    // The previous part's user leg may still be finishing its recording (a take-over ends it
    // while this one starts): its last segment must be stored before this one numbers its own.
    let deadline = Instant::now() + PREVIOUS_PART_WAIT;
    let (session, finished) = loop {
        let Some(session) = state.store.terminal_session(sid).await? else {
            return Ok(None);
        };
        if session.ended_at.is_some() {
            break (session, true);
        }
        if Instant::now() >= deadline {
            break (session, false);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let segments = state.store.recording_segments(sid).await?;
    let last = segments.iter().map(|(number, _)| *number).max();
    // Unfinished: the previous writer may still open the segment after its last stored one.
    let next_segment = last.map_or(0, |number| number + 1) + u32::from(!finished);
    if !finished {
        tracing::warn!("recording {sid}: its previous part is still open; continuing it anyway");
    }
    let (store, directory, id) = (state.store.clone(), state.recordings_dir.clone(), sid.to_owned());
    // Reading a recording blocks (player.rs): off the runtime's worker threads. The screen at
    // its end replays only its last segment.
    let screen = tokio::task::spawn_blocking(move || {
        let recording = super::player::Recording::open(&store, &directory, &id)?;
        let mut playback = super::player::Playback::open(recording, u64::MAX)?;
        Ok::<_, std::io::Error>(match playback.next() {
            Some(Ok(Record::Keyframe {
                width,
                height,
                screen,
                ..
            })) => Some((width, height, screen)),
            _ => None,
        })
    })
    .await?
    .unwrap_or_else(|error| {
        tracing::warn!("recording {sid}: reading its screen: {error}");
        None
    });
    state.store.reopen_terminal_session(sid).await?;
    Ok(Some(Continuation {
        started_at: session.started_at,
        next_segment,
        bytes_out: session.bytes_out.max(0) as u64,
        screen,
    }))
}

/// Appends the chunks of recording `sid` in the order they come, until the writer is done.
async fn store_chunks(store: &Store, sid: &str, mut chunks: mpsc::Receiver<RecordingChunk>) {
    let mut failed = false;
    while let Some(chunk) = chunks.recv().await {
        let mut result = store.append_recording_chunk(sid, &chunk).await;
        if result.is_err() {
            tokio::time::sleep(RETRY_AFTER).await;
            // The same chunk again: if the first write did commit, this one changes nothing.
            result = store.append_recording_chunk(sid, &chunk).await;
        }
        if let Err(error) = result
            && !std::mem::replace(&mut failed, true)
        {
            tracing::error!("recording {sid}: storing segment {}: {error:#}", chunk.segment);
        }
    }
}

struct Recorder {
    sid: String,
    started: Instant,
    terminal: vt100::Parser,
    width: u16,
    height: u16,
    segment: Option<Segment>,
    segment_index: u32,
    chunks: mpsc::Sender<RecordingChunk>,
    last_flush: Instant,
    bytes_out: u64,
    live: broadcast::Sender<LiveEvent>,
    scratch: Vec<u8>,
}

/// The segment being written: its gzip stream, whose output is taken at each flush.
struct Segment {
    encoder: GzEncoder<Vec<u8>>,
    start_ms: u64,
    next_chunk: u32,
    /// Output bytes in it, for the size limit.
    bytes: usize,
    started: Instant,
    /// Written to since the last flush (an idle segment stores no empty chunks).
    dirty: bool,
}

fn size(value: u16) -> NonZeroU16 {
    NonZeroU16::new(value).unwrap_or(NonZeroU16::MIN)
}

impl Recorder {
    fn new(sid: String, chunks: mpsc::Sender<RecordingChunk>, width: u16, height: u16) -> Recorder {
        let now = Instant::now();
        Recorder {
            sid,
            started: now,
            terminal: vt100::Parser::new(size(height), size(width), 0),
            width,
            height,
            segment: None,
            segment_index: 0,
            chunks,
            last_flush: now,
            bytes_out: 0,
            live: broadcast::channel(256).0,
            scratch: Vec::new(),
        }
    }

    /// Goes on with an earlier part's recording: times count from the session's start (so the
    /// recording stays in order), segments from the next number, the screen from where it was.
    fn continue_from(&mut self, continued: Continuation) {
        let since_start = (unix_millis() - continued.started_at).max(0) as u64;
        let now = Instant::now();
        self.started = now.checked_sub(Duration::from_millis(since_start)).unwrap_or(now);
        self.segment_index = continued.next_segment;
        if let Some((width, height, screen)) = continued.screen {
            self.terminal = vt100::Parser::new(size(height), size(width), 0);
            self.terminal.process(&screen);
            (self.width, self.height) = (width, height);
        }
    }

    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Processes commands until the session drops its handle; returns the output byte count.
    /// Runs on the recording's own thread, where waiting for compression or for the database
    /// holds up no other task.
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
                    tracing::error!("recording {} failed: {error}", self.sid);
                }
                failed = true;
            }
        }
        if let Err(error) = self.finish_segment() {
            tracing::error!("finishing recording {}: {error}", self.sid);
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
                if let Some(segment) = &mut self.segment {
                    segment.bytes += live.len();
                }
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

    /// At most once a second: the segment's compressed bytes so far go to the database.
    fn flush(&mut self) -> std::io::Result<()> {
        if self.last_flush.elapsed() < FLUSH_EVERY {
            return Ok(());
        }
        self.last_flush = Instant::now();
        let Some(segment) = &mut self.segment else {
            return Ok(());
        };
        if !segment.dirty {
            return Ok(());
        }
        // A sync flush: what was written so far decodes without the rest of the stream.
        segment.encoder.flush()?;
        segment.dirty = false;
        let data = std::mem::take(segment.encoder.get_mut());
        let chunk = segment.take_chunk(self.segment_index, data);
        self.send(chunk)
    }

    fn send(&self, chunk: RecordingChunk) -> std::io::Result<()> {
        if chunk.data.is_empty() {
            return Ok(());
        }
        self.chunks
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::other("the recording's store task has stopped"))
    }

    fn write(&mut self, record: Record) -> std::io::Result<()> {
        let rollover = self.segment.as_ref().is_none_or(|segment| {
            segment.bytes >= SEGMENT_BYTES || segment.started.elapsed() >= SEGMENT_TIME
        });
        if rollover {
            self.open_segment(record.time_ms())?;
        }
        self.scratch.clear();
        record.encode(&mut self.scratch);
        if let Some(segment) = &mut self.segment {
            segment.encoder.write_all(&self.scratch)?;
            segment.dirty = true;
        }
        self.flush()
    }

    /// Ends the current segment's gzip stream (its trailer goes with its last chunk).
    fn finish_segment(&mut self) -> std::io::Result<()> {
        let Some(mut segment) = self.segment.take() else {
            return Ok(());
        };
        let encoder = std::mem::replace(
            &mut segment.encoder,
            GzEncoder::new(Vec::new(), Compression::fast()),
        );
        let data = encoder.finish()?;
        let chunk = segment.take_chunk(self.segment_index, data);
        self.segment_index += 1;
        self.send(chunk)
    }

    /// Closes the current segment and starts the next with a keyframe of the screen.
    fn open_segment(&mut self, time_ms: u64) -> std::io::Result<()> {
        self.finish_segment()?;
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        let keyframe = Record::Keyframe {
            time_ms,
            width: self.width,
            height: self.height,
            screen: self.terminal.screen().state_formatted().into_bytes(),
        };
        self.scratch.clear();
        keyframe.encode(&mut self.scratch);
        encoder.write_all(&self.scratch)?;
        self.segment = Some(Segment {
            encoder,
            start_ms: time_ms,
            next_chunk: 0,
            bytes: 0,
            started: Instant::now(),
            dirty: true,
        });
        Ok(())
    }
}

impl Segment {
    /// The next chunk of this segment (an empty one, never sent, takes no number: the numbers
    /// stay gapless).
    fn take_chunk(&mut self, segment: u32, data: Vec<u8>) -> RecordingChunk {
        let chunk = self.next_chunk;
        if !data.is_empty() {
            self.next_chunk += 1;
        }
        RecordingChunk {
            segment,
            chunk,
            start_ms: self.start_ms,
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use flate2::read::GzDecoder;

    use super::*;

    /// The recorder on its thread, fed and drained through real channels.
    fn recorder() -> (
        mpsc::Sender<Command>,
        mpsc::Receiver<RecordingChunk>,
        std::thread::JoinHandle<u64>,
    ) {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let (chunks, stored) = mpsc::channel(CHUNK_QUEUE);
        let recorder = Recorder::new("s".into(), chunks, 80, 24);
        let writer = std::thread::spawn(move || recorder.run(receiver));
        (sender, stored, writer)
    }

    fn records(mut reader: impl std::io::Read) -> Vec<Record> {
        let mut records = Vec::new();
        while let Ok(Some(record)) = Record::read(&mut reader) {
            records.push(record);
        }
        records
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_writer_thread_records_what_the_relay_sends_and_finishes_its_segment() {
        let (sender, mut stored, writer) = recorder();
        sender.send(Command::Output(b"hello".to_vec())).await.unwrap();
        sender.send(Command::Resize(100, 30)).await.unwrap();
        let (reply, answer) = oneshot::channel();
        sender.send(Command::Subscribe(reply)).await.unwrap();
        let snapshot = answer.await.unwrap();
        assert_eq!((snapshot.width, snapshot.height), (100, 30));
        assert!(String::from_utf8_lossy(&snapshot.screen).contains("hello"));
        // Dropping the last sender ends the recording: the thread finishes the segment.
        drop(sender);
        let mut chunks = Vec::new();
        while let Some(chunk) = stored.recv().await {
            chunks.push(chunk);
        }
        let bytes_out = tokio::task::spawn_blocking(move || writer.join().unwrap())
            .await
            .unwrap();
        assert_eq!(bytes_out, 5);
        assert!(chunks.iter().all(|chunk| chunk.segment == 0), "{chunks:?}");
        let numbers: Vec<u32> = chunks.iter().map(|chunk| chunk.chunk).collect();
        assert_eq!(
            numbers,
            (0..chunks.len() as u32).collect::<Vec<_>>(),
            "in order, gapless"
        );
        let stream: Vec<u8> = chunks.into_iter().flat_map(|chunk| chunk.data).collect();
        // A finished gzip stream (a missing trailer would be an error here).
        let mut whole = Vec::new();
        GzDecoder::new(stream.as_slice()).read_to_end(&mut whole).unwrap();
        assert!(matches!(&records(GzDecoder::new(stream.as_slice()))[..], [
            Record::Keyframe { width: 80, height: 24, .. },
            Record::Output { data, .. },
            Record::Resize { width: 100, height: 30, .. },
        ] if data == b"hello"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_quiet_session_is_stored_within_about_a_second() {
        let (sender, mut stored, writer) = recorder();
        sender.send(Command::Output(b"quiet".to_vec())).await.unwrap();
        // The segment is still open, as after a crash: what was flushed decodes on its own.
        let chunk = tokio::time::timeout(FLUSH_EVERY * 10, stored.recv())
            .await
            .expect("a chunk while the session is quiet")
            .unwrap();
        let records = records(GzDecoder::new(chunk.data.as_slice()));
        assert!(
            matches!(&records[..], [Record::Keyframe { .. }, Record::Output { data, .. }] if data == b"quiet"),
            "{records:?}"
        );
        drop(sender);
        while stored.recv().await.is_some() {}
        tokio::task::spawn_blocking(move || writer.join().unwrap())
            .await
            .unwrap();
    }
}
