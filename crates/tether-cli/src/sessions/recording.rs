//! Reading the hub's recordings: the JSON Lines stream of `GET .../recording` decoded into
//! records on a task (so a player's `select!` can drop and re-request it at will), and the
//! small helpers the session commands share (times, durations, sizes, base64).

use anyhow::{Context, Result, bail};
use tether_proto::api::{
    RecordingHeader, RecordingRecord,
    paths::{segment, session_recording_path},
};
use tokio::{sync::mpsc, task::JoinHandle};

use crate::{api::get_with, failure, hub::Authenticated};

/// One record of a recording, times in milliseconds since the session began.
#[derive(Debug, Clone)]
pub enum Record {
    /// The screen at the start of the stream, as escape sequences.
    Screen {
        t: u64,
        data: Vec<u8>,
    },
    Output {
        t: u64,
        data: Vec<u8>,
    },
    Input {
        t: u64,
    },
    Resize {
        t: u64,
        width: u16,
        height: u16,
    },
}

impl Record {
    pub fn time(&self) -> u64 {
        match self {
            Record::Screen { t, .. }
            | Record::Output { t, .. }
            | Record::Input { t }
            | Record::Resize { t, .. } => *t,
        }
    }
}

/// How long the recording (whose first line is `header`) is so far, in milliseconds.
pub fn duration_ms(header: &RecordingHeader) -> u64 {
    let end = header.ended_at.unwrap_or_else(tether_proto::clock::unix_millis);
    end.saturating_sub(header.started_at).max(0) as u64
}

fn parse_record(line: &str) -> Result<Option<Record>> {
    let line: RecordingRecord = serde_json::from_str(line).context("unexpected record in the recording")?;
    let data = || -> Result<Vec<u8>> { base64_decode(line.d.as_deref().unwrap_or("")) };
    Ok(Some(match line.k.as_str() {
        "screen" => Record::Screen {
            t: line.t,
            data: data()?,
        },
        "o" => Record::Output {
            t: line.t,
            data: data()?,
        },
        "i" => Record::Input { t: line.t },
        "r" => Record::Resize {
            t: line.t,
            width: line.w.unwrap_or(80),
            height: line.h.unwrap_or(24),
        },
        // A kind this version does not know: skip it.
        _ => return Ok(None),
    }))
}

pub fn reading_error(login: &Authenticated, error: reqwest::Error) -> anyhow::Error {
    failure::transport(format!(
        "reading the recording from the hub at {}: {}",
        login.hub.url,
        failure::describe(&error.without_url())
    ))
}

/// A recording being read on a task; dropping it stops the download.
pub struct RecordStream {
    pub header: RecordingHeader,
    records: mpsc::Receiver<Result<Record>>,
    task: JoinHandle<()>,
}

impl Drop for RecordStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RecordStream {
    /// Requests the recording of `sid` from `from_ms` and reads its header.
    pub async fn open(
        login: &Authenticated,
        client: &reqwest::Client,
        sid: &str,
        from_ms: u64,
    ) -> Result<RecordStream> {
        let path = format!("{}?from_ms={from_ms}", session_recording_path(&segment(sid)));
        let mut response = get_with(client, login, &path).await?;
        let mut lines = LineSplitter::default();
        let header = loop {
            if let Some(line) = lines.next_line() {
                break serde_json::from_str::<RecordingHeader>(&line)
                    .context("unexpected recording header from the hub")?;
            }
            match response
                .chunk()
                .await
                .map_err(|error| reading_error(login, error))?
            {
                Some(chunk) => lines.push(&chunk),
                None => bail!("the hub sent an empty recording"),
            }
        };
        let (sender, records) = mpsc::channel(256);
        let hub = login.hub.url.to_string();
        let task = tokio::spawn(async move {
            loop {
                while let Some(line) = lines.next_line() {
                    let record = match parse_record(&line) {
                        Ok(Some(record)) => Ok(record),
                        Ok(None) => continue,
                        Err(error) => Err(error),
                    };
                    let failed = record.is_err();
                    if sender.send(record).await.is_err() || failed {
                        return;
                    }
                }
                match response.chunk().await {
                    Ok(Some(chunk)) => lines.push(&chunk),
                    Ok(None) => return,
                    Err(error) => {
                        let error = failure::transport(format!(
                            "reading the recording from the hub at {hub}: {}",
                            failure::describe(&error.without_url())
                        ));
                        let _ = sender.send(Err(error)).await;
                        return;
                    }
                }
            }
        });
        Ok(RecordStream {
            header,
            records,
            task,
        })
    }

    /// The next record, `None` at the end of the recording. Cancel-safe.
    pub async fn next(&mut self) -> Result<Option<Record>> {
        self.records.recv().await.transpose()
    }
}

/// Splits a byte stream into lines.
#[derive(Default)]
struct LineSplitter {
    buffer: Vec<u8>,
    start: usize,
}

impl LineSplitter {
    fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    fn next_line(&mut self) -> Option<String> {
        loop {
            let rest = &self.buffer[self.start..];
            let end = rest.iter().position(|&b| b == b'\n')?;
            let line = String::from_utf8_lossy(&rest[..end]).trim().to_owned();
            self.start += end + 1;
            if !line.is_empty() {
                return Some(line);
            }
        }
    }
}

/// Standard base64 (padding optional).
pub fn base64_decode(text: &str) -> Result<Vec<u8>> {
    fn value(byte: u8) -> Option<u32> {
        Some(match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let bytes = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut accumulator = 0u32;
        for &byte in chunk {
            let Some(v) = value(byte) else {
                bail!("invalid base64 in the recording");
            };
            accumulator = accumulator << 6 | v;
        }
        match chunk.len() {
            4 => out.extend_from_slice(&accumulator.to_be_bytes()[1..]),
            3 => out.extend_from_slice(&(accumulator << 6).to_be_bytes()[1..3]),
            2 => out.push((accumulator >> 4) as u8),
            _ => bail!("invalid base64 in the recording"),
        }
    }
    Ok(out)
}

/// `--from`: "90s", "1m30s", "1h2m", "500ms", "90" (seconds), "1:30" or "1:02:03", in ms.
pub fn parse_offset(text: &str) -> Result<u64> {
    let text = text.trim();
    let invalid = || anyhow::anyhow!("`{text}` is not a duration (e.g. 90s, 1m30s, 1:30)");
    if text.is_empty() {
        return Err(invalid());
    }
    if text.contains(':') {
        let mut seconds_total: f64 = 0.0;
        for part in text.split(':') {
            let seconds: f64 = part.parse().map_err(|_| invalid())?;
            if !(seconds >= 0.0 && seconds.is_finite()) {
                return Err(invalid());
            }
            seconds_total = seconds_total * 60.0 + seconds;
        }
        return Ok((seconds_total * 1000.0) as u64);
    }
    if let Ok(seconds) = text.parse::<f64>() {
        if seconds >= 0.0 && seconds.is_finite() {
            return Ok((seconds * 1000.0) as u64);
        }
        return Err(invalid());
    }
    let mut total: f64 = 0.0;
    let mut number = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let unit = match c {
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                1.0
            }
            'h' => 3_600_000.0,
            'm' => 60_000.0,
            's' => 1_000.0,
            _ => return Err(invalid()),
        };
        let value: f64 = number.parse().map_err(|_| invalid())?;
        total += value * unit;
        number.clear();
    }
    if !number.is_empty() {
        return Err(invalid());
    }
    Ok(total as u64)
}

/// Milliseconds as "1h02m03s", "2m05s", "7s", "0.4s".
pub fn format_duration(ms: u64) -> String {
    let seconds = ms / 1000;
    let (h, m, s) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else if seconds > 0 {
        format!("{s}s")
    } else {
        format!("0.{}s", ms / 100)
    }
}

/// Bytes as "512B", "1.5K", "47.7M", "2.0G" (powers of 1024).
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["K", "M", "G", "T"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("Zg==").unwrap(), b"f");
        assert_eq!(base64_decode("Zm8=").unwrap(), b"fo");
        assert_eq!(base64_decode("Zm9v").unwrap(), b"foo");
        assert_eq!(base64_decode("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(base64_decode("G1tIG1sySg==").unwrap(), b"\x1b[H\x1b[2J");
        assert!(base64_decode("Z!==").is_err());
    }

    #[test]
    fn offsets_parse() {
        assert_eq!(parse_offset("90").unwrap(), 90_000);
        assert_eq!(parse_offset("1.5").unwrap(), 1_500);
        assert_eq!(parse_offset("1m30s").unwrap(), 90_000);
        assert_eq!(parse_offset("1h").unwrap(), 3_600_000);
        assert_eq!(parse_offset("250ms").unwrap(), 250);
        assert_eq!(parse_offset("1:30").unwrap(), 90_000);
        assert_eq!(parse_offset("1:02:03").unwrap(), 3_723_000);
        assert!(parse_offset("").is_err());
        assert!(parse_offset("1x").is_err());
        assert!(parse_offset("m").is_err());
        assert!(parse_offset("5m3").is_err());
    }

    #[test]
    fn figures_print_compactly() {
        assert_eq!(format_duration(400), "0.4s");
        assert_eq!(format_duration(7_000), "7s");
        assert_eq!(format_duration(125_000), "2m05s");
        assert_eq!(format_duration(3_723_000), "1h02m03s");
        assert_eq!(format_bytes(512), "512B");
        assert_eq!(format_bytes(1536), "1.5K");
        assert_eq!(format_bytes(50_000_000), "47.7M");
        assert_eq!(
            crate::time_text::utc_millis(1_714_564_800_999),
            "2024-05-01 12:00:00"
        );
    }

    #[test]
    fn lines_split_across_chunks() {
        let mut lines = LineSplitter::default();
        lines.push(b"{\"a\"");
        assert_eq!(lines.next_line(), None);
        lines.push(b":1}\n\n{\"b\":2}\n{");
        assert_eq!(lines.next_line().as_deref(), Some("{\"a\":1}"));
        assert_eq!(lines.next_line().as_deref(), Some("{\"b\":2}"));
        assert_eq!(lines.next_line(), None);
        lines.push(b"}\n");
        assert_eq!(lines.next_line().as_deref(), Some("{}"));
    }

    #[test]
    fn records_decode() {
        let record = parse_record(r#"{"t":5,"k":"o","d":"aGk="}"#).unwrap().unwrap();
        assert!(matches!(record, Record::Output { t: 5, ref data } if data == b"hi"));
        let record = parse_record(r#"{"t":7,"k":"r","w":100,"h":30}"#)
            .unwrap()
            .unwrap();
        assert!(matches!(
            record,
            Record::Resize {
                t: 7,
                width: 100,
                height: 30
            }
        ));
        assert!(parse_record(r#"{"t":7,"k":"x"}"#).unwrap().is_none());
    }
}
