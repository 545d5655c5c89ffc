//! The path of a shell's output to the hub, across connections. The shell's reader appends to a
//! bounded [`OutputBuffer`]; one forwarder sends from a cursor while the session is attached.
//! Detaching (the operator or the hub link is gone) stops the sending, not the shell: its output
//! keeps going into the buffer (the oldest dropped beyond its capacity). Resuming moves the
//! cursor to the offset the hub asks for, so output is replayed with no gap and no duplicate;
//! bytes already dropped are announced by a visible marker instead.

use std::{
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use tether_proto::{
    Envelope, Value,
    shell::{self, Shell},
};
use tokio::{
    sync::{Notify, mpsc},
    time::{Instant, sleep_until},
};

use super::output_buffer::OutputBuffer;

struct State {
    buffer: OutputBuffer,
    /// Offset of the next byte to send.
    cursor: u64,
    attached: bool,
    /// Changes on every detach and resume: a send begun before does not move the cursor.
    generation: u64,
    detached_since: Option<Instant>,
}

pub struct ShellStream {
    state: Mutex<State>,
    /// Wakes the forwarder: new output, detach or resume.
    changed: Notify,
    /// Wakes a forwarder stuck sending: detach or resume.
    control: Notify,
    /// Wakes the shell's reader: output was sent.
    space: Notify,
    /// Version 2 interactive shell: kept when detached, output carries offsets.
    resumable: bool,
    grace: Duration,
}

/// How [`ShellStream::forward`] ended.
#[derive(Debug, PartialEq)]
pub enum Forwarded {
    /// Everything written was sent (only when asked to stop there).
    Drained,
    /// Detached for longer than the grace period.
    GraceExpired,
}

/// Where the messages go and how large they may be.
#[derive(Clone)]
pub struct Destination {
    pub sid: String,
    pub outbound: mpsc::Sender<Envelope>,
    /// The largest body of one `shell` message.
    pub chunk: usize,
}

enum Next {
    Send {
        generation: u64,
        offset: u64,
        lost: u64,
        bytes: Vec<u8>,
    },
    Wait(Option<Instant>),
    Done,
}

impl ShellStream {
    pub fn new(capacity: usize, resumable: bool, grace: Duration) -> ShellStream {
        ShellStream {
            state: Mutex::new(State {
                buffer: OutputBuffer::new(capacity),
                cursor: 0,
                attached: true,
                generation: 0,
                detached_since: None,
            }),
            changed: Notify::new(),
            control: Notify::new(),
            space: Notify::new(),
            resumable,
            grace,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn is_resumable(&self) -> bool {
        self.resumable
    }

    /// Since when nobody watches (None while attached).
    pub fn detached_since(&self) -> Option<Instant> {
        self.lock().detached_since
    }

    /// Appends output. While attached, waits until at most half the buffer is unsent, so that a
    /// fast shell is slowed down rather than losing output; while detached, never waits.
    pub async fn write(&self, data: &[u8]) {
        loop {
            {
                let mut state = self.lock();
                let unsent = state.buffer.end() - state.cursor;
                if !state.attached || unsent < (state.buffer.capacity() / 2) as u64 {
                    state.buffer.push(data);
                    drop(state);
                    self.changed.notify_one();
                    return;
                }
            }
            self.space.notified().await;
        }
    }

    /// Stops sending (the shell keeps running and its output is buffered).
    pub fn detach(&self) {
        let mut state = self.lock();
        if state.attached {
            state.attached = false;
            state.generation += 1;
            state.detached_since = Some(Instant::now());
        }
        drop(state);
        self.wake_all();
    }

    /// Sends again, from `offset` on (the end of the output, if later than that).
    pub fn resume(&self, offset: u64) {
        let mut state = self.lock();
        state.cursor = offset.min(state.buffer.end());
        state.attached = true;
        state.generation += 1;
        state.detached_since = None;
        drop(state);
        self.wake_all();
    }

    fn wake_all(&self) {
        self.changed.notify_one();
        self.control.notify_one();
        self.space.notify_one();
    }

    fn next(&self, chunk: usize, until_drained: bool) -> Next {
        let state = self.lock();
        if !state.attached {
            return Next::Wait(state.detached_since.map(|since| since + self.grace));
        }
        if state.cursor >= state.buffer.end() {
            return if until_drained {
                Next::Done
            } else {
                Next::Wait(None)
            };
        }
        let slice = state.buffer.read(state.cursor, chunk);
        Next::Send {
            generation: state.generation,
            offset: slice.offset,
            lost: slice.lost,
            bytes: slice.bytes,
        }
    }

    /// Sends output while attached. Returns when a detached stream's grace period runs out or,
    /// with `until_drained`, once all output written so far is sent.
    pub async fn forward(&self, destination: &Destination, until_drained: bool) -> Forwarded {
        loop {
            let (generation, offset, lost, bytes) = match self.next(destination.chunk, until_drained) {
                Next::Done => return Forwarded::Drained,
                Next::Wait(None) => {
                    self.changed.notified().await;
                    continue;
                }
                Next::Wait(Some(deadline)) => {
                    tokio::select! {
                        _ = self.changed.notified() => continue,
                        _ = sleep_until(deadline) => return Forwarded::GraceExpired,
                    }
                }
                Next::Send {
                    generation,
                    offset,
                    lost,
                    bytes,
                } => (generation, offset, lost, bytes),
            };
            let mut messages = Vec::with_capacity(2);
            if lost > 0 {
                let marker = format!(
                    "\r\n[tether: {lost} bytes of output were dropped while disconnected \
                     (terminal.output_buffer_bytes)]\r\n"
                );
                messages.push(data_message(destination, marker.into_bytes(), None));
            }
            let length = bytes.len() as u64;
            messages.push(data_message(destination, bytes, self.resumable.then_some(offset)));
            let mut sent = true;
            for message in messages {
                tokio::select! {
                    biased;
                    // Detached or resumed meanwhile: what was being sent is stale.
                    _ = self.control.notified() => {
                        sent = false;
                        break;
                    }
                    result = destination.outbound.send(message) => {
                        // A closed channel: the agent is shutting down.
                        if result.is_err() {
                            return std::future::pending().await;
                        }
                    }
                }
            }
            let mut state = self.lock();
            if sent && state.generation == generation {
                state.cursor = offset + length;
            }
            drop(state);
            self.space.notify_one();
        }
    }
}

fn data_message(destination: &Destination, bytes: Vec<u8>, offset: Option<u64>) -> Envelope {
    let mut envelope = Shell::Data(bytes).to_envelope(&destination.sid);
    envelope.props.set("status", Value::Int(shell::status::NORMAL));
    if let Some(offset) = offset {
        shell::set_output_offset(&mut envelope, offset);
    }
    envelope
}

#[cfg(test)]
mod tests {
    use super::*;

    fn destination() -> (Destination, mpsc::Receiver<Envelope>) {
        let (outbound, receiver) = mpsc::channel(16);
        let destination = Destination {
            sid: "s".into(),
            outbound,
            chunk: 4,
        };
        (destination, receiver)
    }

    fn drain(receiver: &mut mpsc::Receiver<Envelope>) -> Vec<(Option<u64>, Vec<u8>)> {
        let mut all = Vec::new();
        while let Ok(envelope) = receiver.try_recv() {
            all.push((shell::output_offset(&envelope), envelope.body));
        }
        all
    }

    #[tokio::test]
    async fn a_resumed_stream_replays_from_the_offset_asked() {
        let stream = ShellStream::new(64, true, Duration::from_secs(60));
        let (destination, mut receiver) = destination();
        stream.write(b"hello").await;
        assert_eq!(stream.forward(&destination, true).await, Forwarded::Drained);
        assert_eq!(
            drain(&mut receiver),
            [(Some(0), b"hell".to_vec()), (Some(4), b"o".to_vec())]
        );
        stream.detach();
        stream.write(b" world").await;
        stream.resume(3);
        assert_eq!(stream.forward(&destination, true).await, Forwarded::Drained);
        let replay: Vec<u8> = drain(&mut receiver).into_iter().flat_map(|(_, b)| b).collect();
        assert_eq!(replay, b"lo world");
    }

    #[tokio::test]
    async fn dropped_output_is_announced_by_a_marker() {
        let stream = ShellStream::new(8, true, Duration::from_secs(60));
        let (destination, mut receiver) = destination();
        stream.detach();
        stream.write(b"0123456789abcdef").await;
        stream.resume(0);
        stream.forward(&destination, true).await;
        let messages = drain(&mut receiver);
        assert_eq!(messages[0].0, None, "the marker has no offset");
        assert!(String::from_utf8_lossy(&messages[0].1).contains("8 bytes of output were dropped"));
        assert_eq!(messages[1], (Some(8), b"89ab".to_vec()));
    }

    #[tokio::test]
    async fn a_detached_stream_ends_after_the_grace_period() {
        let stream = ShellStream::new(8, true, Duration::from_millis(50));
        let (destination, _receiver) = destination();
        stream.detach();
        assert_eq!(stream.forward(&destination, false).await, Forwarded::GraceExpired);
    }
}
