//! `tether replay SESSION`: plays a recording in the terminal with its timing. Idle gaps are
//! cut to 2 s; with a terminal on stdin, keys control the playback (space pauses, + and -
//! change the speed, arrows seek 10 s, q quits). Seeking asks the hub for the recording from
//! the new moment, which starts with the screen as it was then.

use std::{
    io::{IsTerminal, Write},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use clap::Args;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
    time::{Instant, sleep_until},
};

use super::{
    recording::{self, Record, RecordStream, parse_offset},
    resolve_sid,
    watch::CLEAR,
};
use crate::{
    api::Api,
    hub::{Authenticated, HubOptions, authenticated},
    input::{Input, spawn_stdin_reader},
    output::say_on_new_line,
    raw_mode::RawMode,
};

/// The longest pause played (in recording time): longer idle gaps are cut to this.
const MAX_GAP_MS: u64 = 2_000;
const SEEK_STEP_MS: u64 = 10_000;
const MIN_SPEED: f64 = 1.0 / 64.0;
const MAX_SPEED: f64 = 64.0;

pub const REPLAY_HELP: &str = "\
SESSION is a session id or a unique prefix of one (see `tether sessions list`).
Idle gaps longer than 2 s are cut to 2 s. Keys while playing (with a terminal on stdin):
  space  pause / resume
  + -    double / halve the speed
  → ←    seek 10 s forward / back
  q      quit
Replaying a recording is recorded in the audit log.";

#[derive(Args)]
pub struct ReplayArgs {
    /// Session id or unique prefix
    session: String,
    /// Playback speed multiplier, e.g. 2 or 0.5
    #[arg(long, default_value_t = 1.0, value_parser = parse_speed)]
    speed: f64,
    /// Start at this moment of the session, e.g. 90s, 1m30s, 1:30
    #[arg(long, value_name = "DURATION", value_parser = parse_offset)]
    from: Option<u64>,
    /// Write the output at once, without the recorded timing (for pipes and scripts)
    #[arg(long)]
    no_wait: bool,
}

fn parse_speed(text: &str) -> Result<f64> {
    let speed: f64 = text
        .trim()
        .trim_end_matches('x')
        .parse()
        .with_context(|| format!("`{text}` is not a number"))?;
    if !(MIN_SPEED..=MAX_SPEED).contains(&speed) {
        bail!("the speed must be between {MIN_SPEED} and {MAX_SPEED}");
    }
    Ok(speed)
}

pub async fn run(options: &HubOptions, args: ReplayArgs) -> Result<i32> {
    let login = authenticated(options)?;
    let api = Api::new(&login.hub, Some(login.token.clone()))?;
    let sid = resolve_sid(&api, &args.session).await?;
    let client = crate::api::streaming_client(&login)?;
    let from = args.from.unwrap_or(0);
    let stream = RecordStream::open(&login, &client, &sid, from).await?;
    if args.no_wait {
        return dump(stream).await;
    }
    let interactive = std::io::stdin().is_terminal();
    let mut player = Player {
        login: &login,
        client: &client,
        sid: &sid,
        speed: args.speed,
        paused_at: None,
        anchor_time: from,
        anchor_instant: Instant::now(),
        skipped: 0,
        last_time: from,
        duration: recording::duration_ms(&stream.header),
    };
    let raw_mode = if interactive {
        Some(RawMode::enable()?)
    } else {
        None
    };
    let input = interactive.then(spawn_stdin_reader);
    let result = player.play(stream, input).await;
    drop(raw_mode);
    let message = result?;
    say_on_new_line!("tether: {message}");
    Ok(0)
}

/// `--no-wait`: the screen, then all output as fast as it arrives.
async fn dump(mut stream: RecordStream) -> Result<i32> {
    let mut stdout = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    let result: Result<()> = async {
        while let Some(record) = stream.next().await? {
            match record {
                Record::Screen { data, .. } => {
                    stdout.write_all(CLEAR)?;
                    stdout.write_all(&data)?;
                }
                Record::Output { data, .. } => stdout.write_all(&data)?,
                Record::Input { .. } | Record::Resize { .. } => {}
            }
        }
        stdout.flush()?;
        Ok(())
    }
    .await;
    match result {
        Err(error)
            if error
                .downcast_ref::<std::io::Error>()
                .is_some_and(|error| error.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(0)
        }
        other => other.map(|()| 0).context("replaying"),
    }
}

/// A player's clock: recording time runs at `speed` from an anchor, minus the idle time cut.
struct Player<'a> {
    login: &'a Authenticated,
    client: &'a reqwest::Client,
    sid: &'a str,
    speed: f64,
    /// The playback position when paused.
    paused_at: Option<u64>,
    /// The (gap-cut) playback time at `anchor_instant`.
    anchor_time: u64,
    anchor_instant: Instant,
    /// Recording time cut out of idle gaps so far; recording time = playback time + skipped.
    skipped: u64,
    /// The recording time of the last record played.
    last_time: u64,
    /// The recording's length, to keep forward seeks inside it.
    duration: u64,
}

enum Key {
    Pause,
    Faster,
    Slower,
    Forward,
    Back,
    Quit,
}

fn keys(bytes: &[u8]) -> Vec<Key> {
    let mut keys = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        let rest = &bytes[index..];
        if rest.starts_with(b"\x1b[C") || rest.starts_with(b"\x1bOC") {
            keys.push(Key::Forward);
            index += 3;
            continue;
        }
        if rest.starts_with(b"\x1b[D") || rest.starts_with(b"\x1bOD") {
            keys.push(Key::Back);
            index += 3;
            continue;
        }
        match rest[0] {
            b' ' | b'p' => keys.push(Key::Pause),
            b'+' | b'=' => keys.push(Key::Faster),
            b'-' | b'_' => keys.push(Key::Slower),
            b'l' => keys.push(Key::Forward),
            b'h' => keys.push(Key::Back),
            b'q' | b'Q' | 0x03 => keys.push(Key::Quit),
            _ => {}
        }
        index += 1;
    }
    keys
}

impl Player<'_> {
    /// The current playback time (gap-cut recording time).
    fn clock(&self, now: Instant) -> u64 {
        match self.paused_at {
            Some(time) => time,
            None => {
                let elapsed = now.saturating_duration_since(self.anchor_instant).as_secs_f64();
                self.anchor_time + (elapsed * 1000.0 * self.speed) as u64
            }
        }
    }

    /// Where in the recording the playback is, for seeking.
    fn position(&self, pending: Option<&Record>) -> u64 {
        let mut position = (self.clock(Instant::now()) + self.skipped).max(self.last_time);
        if let Some(record) = pending {
            position = position.min(record.time().max(self.last_time));
        }
        position
    }

    fn reanchor(&mut self) {
        let now = Instant::now();
        self.anchor_time = self.clock(now);
        self.anchor_instant = now;
    }

    /// When `record` is due, cutting a long idle gap before it.
    fn due(&mut self, time: u64) -> Option<Instant> {
        if time > self.last_time + MAX_GAP_MS {
            // Only cut once per record: the gap is measured from the last record played.
            let cut = time - self.last_time - MAX_GAP_MS;
            self.skipped += cut;
            self.last_time += cut;
        }
        if self.paused_at.is_some() {
            return None;
        }
        let playback = time.saturating_sub(self.skipped);
        let ahead = playback.saturating_sub(self.anchor_time) as f64 / self.speed;
        Some(self.anchor_instant + Duration::from_secs_f64(ahead / 1000.0))
    }

    async fn play(
        &mut self,
        mut stream: RecordStream,
        mut input: Option<mpsc::Receiver<Input>>,
    ) -> Result<&'static str> {
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let mut hangup = signal(SignalKind::hangup())?;
        let mut pending: Option<Record> = None;
        loop {
            if pending.is_none() {
                // Records arrive far faster than they play; waiting here is brief.
                match stream.next().await? {
                    Some(record) => pending = Some(record),
                    None => return Ok("end of recording"),
                }
            }
            let due = match &pending {
                Some(record) => self.due(record.time()),
                None => None,
            };
            let sleep = async {
                match due {
                    Some(instant) => sleep_until(instant).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = sleep => {
                    if let Some(record) = pending.take() {
                        self.last_time = self.last_time.max(record.time());
                        match record {
                            Record::Screen { data, .. } => {
                                crate::output::write_stdout(CLEAR).context("writing to stdout")?;
                                crate::output::write_stdout(&data).context("writing to stdout")?;
                            }
                            Record::Output { data, .. } => {
                                crate::output::write_stdout(&data).context("writing to stdout")?;
                            }
                            // The local terminal keeps its size; a resize only changes how the
                            // output that follows was laid out.
                            Record::Resize { width, height, .. } => {
                                tracing::debug!("the session was resized to {width}x{height}");
                            }
                            Record::Input { .. } => {}
                        }
                    }
                }
                key = next_input(&mut input) => match key {
                    Input::Bytes(bytes) => {
                        for key in keys(&bytes) {
                            match key {
                                Key::Quit => return Ok("stopped"),
                                Key::Pause => match self.paused_at.take() {
                                    Some(time) => {
                                        self.anchor_time = time;
                                        self.anchor_instant = Instant::now();
                                    }
                                    None => self.paused_at = Some(self.clock(Instant::now())),
                                },
                                Key::Faster | Key::Slower => {
                                    self.reanchor();
                                    self.speed = match key {
                                        Key::Faster => (self.speed * 2.0).min(MAX_SPEED),
                                        _ => (self.speed / 2.0).max(MIN_SPEED),
                                    };
                                }
                                Key::Forward | Key::Back => {
                                    let position = self.position(pending.as_ref());
                                    let target = match key {
                                        Key::Forward => (position + SEEK_STEP_MS).min(self.duration),
                                        _ => position.saturating_sub(SEEK_STEP_MS),
                                    };
                                    stream = RecordStream::open(self.login, self.client, self.sid, target).await?;
                                    self.duration = self.duration.max(recording::duration_ms(&stream.header));
                                    pending = None;
                                    self.skipped = 0;
                                    self.last_time = target;
                                    self.anchor_time = target;
                                    self.anchor_instant = Instant::now();
                                    if self.paused_at.is_some() {
                                        self.paused_at = Some(target);
                                    }
                                }
                            }
                        }
                    }
                    Input::End => input = None,
                },
                _ = interrupt.recv() => return Ok("stopped"),
                _ = terminate.recv() => return Ok("terminated"),
                _ = hangup.recv() => return Ok("hung up"),
            }
        }
    }
}

async fn next_input(input: &mut Option<mpsc::Receiver<Input>>) -> Input {
    match input {
        Some(receiver) => receiver.recv().await.unwrap_or(Input::End),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_from_raw_input() {
        let read = keys(b" +-\x1b[C\x1b[Dxq");
        assert!(matches!(
            read.as_slice(),
            [
                Key::Pause,
                Key::Faster,
                Key::Slower,
                Key::Forward,
                Key::Back,
                Key::Quit
            ]
        ));
    }

    #[test]
    fn speeds_parse() {
        assert_eq!(parse_speed("2").unwrap(), 2.0);
        assert_eq!(parse_speed("0.5x").unwrap(), 0.5);
        assert!(parse_speed("0").is_err());
        assert!(parse_speed("fast").is_err());
    }
}
