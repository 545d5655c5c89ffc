//! `tether audit ...`: reading the hub's audit log (a table or JSON, filtered and paged),
//! exporting it (CSV or JSON Lines, streamed to stdout or a file), and verifying its hash chain
//! (by the hub, or here against signed checkpoints: `crate::audit_checkpoint`).

use std::{io::IsTerminal, io::Write, path::PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;
use tether_proto::api::{
    AuditEvent, AuditQuery, EventPage, Verification,
    paths::{self, AUDIT_EVENTS_PATH, AUDIT_EXPORT_PATH, AUDIT_VERIFY_PATH},
};

use crate::{
    api::{Api, get_streamed},
    failure,
    hub::{Authenticated, HubOptions, authenticated},
    output::{print_listing, tell},
    resolve::find,
    time_text::{parse_duration_millis, parse_rfc3339, utc_millis},
};

/// The most events the hub returns in one page.
const MAX_PAGE: i64 = 1000;

pub const AUDIT_HELP: &str = "\
Reading the audit log needs an administrator's login.

TIME (--since, --until) is a duration before now (90s, 30m, 1h, 2d, 1w, or combined: 1h30m)
or an RFC 3339 time (2024-05-01T12:00:00Z, 2024-05-01T14:00:00+02:00, 2024-05-01).
DEVICE is a device id, a unique id prefix, or a device name; the id of a removed device can
be given in full.";

#[derive(Subcommand)]
pub enum AuditCommand {
    /// List audit events, newest first
    List {
        /// Print the events as a JSON array
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        filters: Filters,
        /// How many events to show (default 100)
        #[arg(long, value_name = "N", conflicts_with = "all")]
        limit: Option<u64>,
        /// Show every matching event (follows the pages)
        #[arg(long)]
        all: bool,
    },
    /// Write the audit log, oldest first, as CSV or JSON Lines
    Export {
        /// Output format
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
        /// Write to FILE instead of stdout
        #[arg(short, long, value_name = "FILE", conflicts_with = "follow")]
        output: Option<PathBuf>,
        /// Only events after this sequence number (the `seq` of the last event you have)
        #[arg(long, value_name = "SEQ")]
        after: Option<i64>,
        /// Keep running: print new events as they are written (JSON Lines, polling the hub)
        #[arg(long)]
        follow: bool,
        /// With --follow: seconds between polls
        #[arg(long, value_name = "SECONDS", default_value_t = 2, requires = "follow")]
        poll_interval: u64,
        #[command(flatten)]
        filters: Filters,
    },
    /// Check the audit log's hash chain; exits 1 if it was tampered with
    Verify {
        /// Print the verification result as JSON
        #[arg(long)]
        json: bool,
        /// Verify here, over the exported events, against the signed checkpoints in FILE (one
        /// JSON line each, from `tether audit checkpoint` or the hub's checkpoint file): also
        /// finds a chain rewritten with recomputed hashes, deleted newest events and a forged
        /// retention anchor
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
    },
    /// Print a fresh signed checkpoint of the chain's head (one JSON line); keep these away
    /// from the hub for `verify --checkpoint`
    Checkpoint,
}

#[derive(Args)]
pub struct Filters {
    /// Only events at or after TIME (a duration before now, or an RFC 3339 time)
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<i64>,
    /// Only events before TIME
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    until: Option<i64>,
    /// Only events by this user or device (id or user name)
    #[arg(long, value_name = "ACTOR")]
    actor: Option<String>,
    /// Only events about this device (id, unique id prefix, or name)
    #[arg(long, value_name = "DEVICE")]
    device: Option<String>,
    /// Only events of this action, e.g. login, device.accept, terminal.open
    #[arg(long, value_name = "ACTION")]
    action: Option<String>,
    /// Only events of this session id
    #[arg(long, value_name = "SESSION")]
    session: Option<String>,
    /// Only events with this outcome
    #[arg(long, value_enum)]
    outcome: Option<Outcome>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Outcome {
    Success,
    Failure,
    Refused,
    Interrupted,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Refused => "refused",
            Outcome::Interrupted => "interrupted",
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Jsonl,
}

pub async fn run(options: &HubOptions, command: AuditCommand) -> Result<i32> {
    let login = authenticated(options)?;
    let api = Api::new(&login.hub, Some(login.token.clone()))?;
    match command {
        AuditCommand::List {
            json,
            filters,
            limit,
            all,
        } => {
            let query = audit_query(&api, &filters).await?;
            list(
                &api,
                query,
                if all { None } else { Some(limit.unwrap_or(100)) },
                json,
            )
            .await?;
            Ok(0)
        }
        AuditCommand::Export {
            format,
            output,
            after,
            follow,
            poll_interval,
            filters,
        } => {
            let mut query = audit_query(&api, &filters).await?.pairs();
            if follow {
                anyhow::ensure!(
                    matches!(format, ExportFormat::Jsonl),
                    "--follow prints JSON Lines only (leave out --format csv)"
                );
                let interval = std::time::Duration::from_secs(poll_interval.max(1));
                crate::audit_follow::follow(&login, &query, after.unwrap_or(0), interval).await?;
                return Ok(0);
            }
            let format = match format {
                ExportFormat::Csv => "csv",
                ExportFormat::Jsonl => "jsonl",
            };
            query.insert(0, ("format", format.to_owned()));
            if let Some(after) = after {
                query.push(("after", after.to_string()));
            }
            export(&login, &query, output).await?;
            Ok(0)
        }
        AuditCommand::Verify {
            json,
            checkpoint: Some(file),
        } => crate::audit_checkpoint::verify(&api, &login, &file, json).await,
        AuditCommand::Verify {
            json,
            checkpoint: None,
        } => verify(&api, json).await,
        AuditCommand::Checkpoint => crate::audit_checkpoint::checkpoint(&api).await,
    }
}

/// The filters as the hub's query; `--device` is resolved against the device list, and a
/// query that matches no device is passed as-is (the id of a removed device).
async fn audit_query(api: &Api, filters: &Filters) -> Result<AuditQuery> {
    let device = match &filters.device {
        Some(query) => Some(match find(api, query).await {
            Ok(device) => device.id,
            Err(error) if error.to_string().starts_with("no device matches") => query.clone(),
            Err(error) => return Err(error),
        }),
        None => None,
    };
    Ok(AuditQuery {
        from: filters.since,
        to: filters.until,
        actor: filters.actor.clone(),
        device,
        action: filters.action.clone(),
        session: filters.session.clone(),
        outcome: filters.outcome.map(|outcome| outcome.as_str().to_owned()),
        before: None,
        limit: None,
    })
}

/// Fetches up to `limit` events (all of them with `None`), newest first, following pages.
async fn list(api: &Api, mut query: AuditQuery, limit: Option<u64>, json: bool) -> Result<()> {
    let mut events: Vec<AuditEvent> = Vec::new();
    loop {
        let wanted = match limit {
            Some(limit) => {
                let left = limit.saturating_sub(events.len() as u64);
                let left = i64::try_from(left).unwrap_or(MAX_PAGE);
                if left == 0 {
                    break;
                }
                left.min(MAX_PAGE)
            }
            None => MAX_PAGE,
        };
        query.limit = Some(wanted);
        let page: EventPage = api
            .get(&format!("{AUDIT_EVENTS_PATH}?{}", paths::query(&query.pairs())))
            .await?;
        events.extend(page.events);
        match page.next_before {
            Some(next) => query.before = Some(next),
            None => break,
        }
    }
    let text = if json {
        serde_json::to_string_pretty(&events)? + "\n"
    } else {
        let width = if std::io::stdout().is_terminal() {
            Some(crate::output::window_size().0 as usize)
        } else {
            None
        };
        table(&events, width)
    };
    print_listing(&text).context("writing to stdout")
}

/// The text, unless it is absent or empty.
fn text(value: Option<&str>) -> Option<&str> {
    value.filter(|text| !text.is_empty())
}

/// The event table; with a terminal `width`, DETAILS is cut to fit it.
fn table(events: &[AuditEvent], width: Option<usize>) -> String {
    let mut rows = vec![[
        "TIME".to_owned(),
        "ACTOR".to_owned(),
        "ACTION".to_owned(),
        "OBJECT".to_owned(),
        "OUTCOME".to_owned(),
        "DETAILS".to_owned(),
    ]];
    for event in events {
        let actor = text(event.actor_name.as_deref())
            .or_else(|| text(event.actor_id.as_deref()))
            .or_else(|| text(Some(&event.actor_kind)))
            .unwrap_or("-");
        let object = text(event.object_name.as_deref())
            .or_else(|| text(event.object_id.as_deref()))
            .unwrap_or("-");
        rows.push([
            utc_millis(event.time),
            actor.to_owned(),
            text(Some(&event.action)).unwrap_or("-").to_owned(),
            object.to_owned(),
            text(Some(&event.outcome)).unwrap_or("-").to_owned(),
            compact_details(Some(&event.details)),
        ]);
    }
    crate::output::table(&rows, width)
}

/// `key=value` pairs on one line; strings with spaces or quotes are JSON-quoted.
fn compact_details(details: Option<&Value>) -> String {
    let Some(Value::Object(map)) = details else {
        return match details {
            None | Some(Value::Null) => String::new(),
            Some(other) => other.to_string(),
        };
    };
    map.iter()
        .map(|(key, value)| {
            let value = match value {
                Value::String(s) if !s.is_empty() && !s.contains([' ', '"', '=', '\n', '\t']) => s.clone(),
                other => other.to_string(),
            };
            format!("{key}={value}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Streams the export to `output` (or stdout); a partial file is removed on failure.
async fn export(login: &Authenticated, query: &[(&str, String)], output: Option<PathBuf>) -> Result<()> {
    let base = login.hub.url.to_string();
    let path = format!("{AUDIT_EXPORT_PATH}?{}", paths::query(query));
    let mut response = get_streamed(login, &path).await?;
    let mut sink: Box<dyn Write> = match &output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let result: Result<()> = async {
        while let Some(chunk) = response.chunk().await.map_err(|error| {
            failure::transport(format!(
                "reading the export from the hub at {base}: {}",
                failure::describe(&error.without_url())
            ))
        })? {
            match sink.write_all(&chunk) {
                Err(error) if output.is_none() && error.kind() == std::io::ErrorKind::BrokenPipe => {
                    return Ok(());
                }
                other => other.context("writing the export")?,
            }
        }
        match sink.flush() {
            Err(error) if output.is_none() && error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other.context("writing the export"),
        }
    }
    .await;
    drop(sink);
    if result.is_err()
        && let Some(path) = &output
    {
        let _ = std::fs::remove_file(path);
    }
    result
}

async fn verify(api: &Api, json: bool) -> Result<i32> {
    let verification: Verification = api.get(AUDIT_VERIFY_PATH).await?;
    if json {
        print_listing(&(serde_json::to_string_pretty(&verification)? + "\n")).context("writing to stdout")?;
    } else if verification.ok {
        tell!("audit log intact: {} events checked", verification.checked);
    } else {
        match &verification.problem {
            Some(problem) => tell!(
                "audit log BROKEN at event {}: {} ({})",
                problem.seq,
                problem.kind,
                problem.detail
            ),
            None => tell!("audit log BROKEN ({} events checked)", verification.checked),
        }
    }
    Ok(if verification.ok { 0 } else { 1 })
}

/// `--since`/`--until`: a duration before now or an RFC 3339 time, as unix milliseconds.
pub(crate) fn parse_time(text: &str) -> Result<i64> {
    parse_time_at(text, tether_proto::clock::unix_millis())
}

fn parse_time_at(text: &str, now: i64) -> Result<i64> {
    let text = text.trim();
    if let Some(millis) = parse_duration_millis(text) {
        return Ok(now - millis);
    }
    parse_rfc3339(text).with_context(|| {
        format!("`{text}` is neither a duration (30m, 1h, 2d) nor an RFC 3339 time (2024-05-01T12:00:00Z)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_count_back_from_now() {
        let now = 10_000_000_000;
        assert_eq!(parse_time_at("30m", now).unwrap(), now - 1_800_000);
        assert_eq!(parse_time_at("1h", now).unwrap(), now - 3_600_000);
        assert_eq!(parse_time_at("2d", now).unwrap(), now - 2 * 86_400_000);
        assert_eq!(parse_time_at("1h30m", now).unwrap(), now - 5_400_000);
        assert!(parse_time_at("1x", now).is_err());
        assert!(parse_time_at("h", now).is_err());
        assert!(parse_time_at("", now).is_err());
    }

    #[test]
    fn rfc3339_times_parse() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(parse_rfc3339("2024-05-01T12:00:00Z").unwrap(), 1_714_564_800_000);
        assert_eq!(
            parse_rfc3339("2024-05-01T14:00:00+02:00").unwrap(),
            1_714_564_800_000
        );
        assert_eq!(
            parse_rfc3339("2024-05-01 12:00:00.25Z").unwrap(),
            1_714_564_800_250
        );
        assert_eq!(parse_rfc3339("2024-05-01").unwrap(), 1_714_521_600_000);
        assert!(parse_rfc3339("2024-02-30").is_err());
        assert!(parse_rfc3339("2024-05-01T12:00:00").is_err());
    }

    #[test]
    fn times_print_in_utc() {
        assert_eq!(utc_millis(0), "1970-01-01 00:00:00");
        assert_eq!(utc_millis(1_714_564_800_999), "2024-05-01 12:00:00");
        assert_eq!(utc_millis(951_782_400_000), "2000-02-29 00:00:00");
    }

    #[test]
    fn details_are_compact() {
        let details = serde_json::json!({"path": "/tmp/a", "reason": "wrong password", "size": 3});
        assert_eq!(
            compact_details(Some(&details)),
            "path=/tmp/a reason=\"wrong password\" size=3"
        );
        assert_eq!(compact_details(Some(&serde_json::json!({}))), "");
    }

    #[test]
    fn queries_are_encoded() {
        let pairs = [
            ("actor", "a b&c".to_owned()),
            ("action", "device.accept".to_owned()),
        ];
        assert_eq!(paths::query(&pairs), "actor=a%20b%26c&action=device.accept");
    }

    /// An event with the fields `partial` gives, the others empty.
    fn event(partial: Value) -> AuditEvent {
        let mut full = serde_json::json!({
            "seq": 1, "id": "e1", "time": 0, "actor_kind": "", "actor_id": null, "actor_name": null,
            "client_address": null, "user_agent": null, "action": "", "object_kind": null,
            "object_id": null, "object_name": null, "outcome": "", "details": {}, "session_id": null,
            "prev_hash": "", "hash": ""
        });
        for (key, value) in partial.as_object().expect("an object") {
            full[key] = value.clone();
        }
        serde_json::from_value(full).expect("an audit event")
    }

    #[test]
    fn table_falls_back_to_ids_and_kinds() {
        let events = vec![event(serde_json::json!({
            "time": 0, "actor_kind": "anonymous", "actor_name": null, "action": "authentication",
            "object_id": null, "outcome": "refused", "details": {"reason": "bad token"}
        }))];
        let long = vec![event(serde_json::json!({
            "time": 0, "actor_kind": "system", "action": "x", "outcome": "success",
            "details": {"reason": "a reason that is far too long to fit in a narrow terminal"}
        }))];
        assert_eq!(
            table(&events, None),
            "TIME                 ACTOR      ACTION          OBJECT  OUTCOME  DETAILS\n\
             1970-01-01 00:00:00  anonymous  authentication  -       refused  reason=\"bad token\"\n"
        );
        let narrow = table(&long, Some(10));
        assert!(narrow.lines().nth(1).unwrap().ends_with('…'), "{narrow}");
    }
}
