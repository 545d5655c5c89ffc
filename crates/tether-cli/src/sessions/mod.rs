//! `tether sessions ...` and `tether replay`: the hub's terminal session recordings — listing
//! them, replaying one with its timing, exporting it as asciicast v2, and watching a live
//! session read-only.

pub mod active;
pub mod recording;
pub mod replay;
pub mod watch;

use std::{io::IsTerminal, io::Write, path::PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde::Serialize;
use tether_proto::{
    api::{
        DetachedList, SessionList, SessionQuery, TerminalSession,
        paths::{DETACHED_SESSIONS_PATH, segment, session_asciicast_path},
    },
    clock::unix_millis,
};

use crate::{
    api::Api,
    hub::{Authenticated, HubOptions, authenticated},
    output::{self, print_listing},
    resolve::find,
    sessions::recording::{format_bytes, format_duration},
    time_text::utc_millis as format_time,
};

pub const SESSIONS_HELP: &str = "\
SESSION is a session id or a unique prefix of one (see `tether sessions list`).
Viewing a recording or watching a session is recorded in the audit log.";

#[derive(Subcommand)]
pub enum SessionsCommand {
    /// List recorded terminal sessions, newest first
    List {
        /// Print the sessions as a JSON array
        #[arg(long)]
        json: bool,
        /// Only sessions on this device (id, unique id prefix, or name)
        #[arg(long, value_name = "DEVICE")]
        device: Option<String>,
        /// Only sessions of this user (id or name)
        #[arg(long, value_name = "USER")]
        user: Option<String>,
        /// Only sessions started at or after TIME (a duration before now, or an RFC 3339 time)
        #[arg(long, value_name = "TIME", value_parser = crate::audit::parse_time)]
        since: Option<i64>,
        /// Only sessions started before TIME
        #[arg(long, value_name = "TIME", value_parser = crate::audit::parse_time)]
        until: Option<i64>,
        /// Only sessions whose recorded output contains TEXT (case-insensitive; the hub reads
        /// the newest 100 recordings the other filters keep, and says when that was not all)
        #[arg(long, value_name = "TEXT")]
        text: Option<String>,
        /// How many sessions to show (default 100, at most 1000)
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
    /// Save a session's recording as an asciicast v2 file (plays with `asciinema play`)
    #[command(after_help = SESSIONS_HELP)]
    Export {
        /// Session id or unique prefix
        session: String,
        /// The file to write (default: stdout)
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// List every session running now: terminals, commands, file transfers and port forwards
    Active {
        /// Print the sessions as a JSON array
        #[arg(long)]
        json: bool,
    },
    /// List terminals left running on their device when their connection was lost; re-attach
    /// with `tether terminal DEVICE --attach SESSION`
    Detached {
        /// Print the sessions as a JSON array
        #[arg(long)]
        json: bool,
    },
    /// Watch a live session read-only: its screen, then its output as it happens
    #[command(
        after_help = "SESSION is a session id or a unique prefix of one. Keystrokes are not \
                            sent to the session; q or Ctrl-C leaves."
    )]
    Watch {
        /// Session id or unique prefix
        session: String,
    },
}

pub async fn run(options: &HubOptions, command: SessionsCommand) -> Result<i32> {
    let login = authenticated(options)?;
    let api = Api::new(&login.hub, Some(login.token.clone()))?;
    match command {
        SessionsCommand::List {
            json,
            device,
            user,
            since,
            until,
            text,
            limit,
        } => {
            let query = SessionQuery {
                device,
                user,
                from: since,
                to: until,
                text,
                limit: limit.map(i64::from),
            };
            list(&api, query, json).await?;
            Ok(0)
        }
        SessionsCommand::Export { session, output } => {
            let sid = resolve_sid(&api, &session).await?;
            export(&login, &sid, output).await?;
            Ok(0)
        }
        SessionsCommand::Active { json } => {
            active::run(&api, json).await?;
            Ok(0)
        }
        SessionsCommand::Detached { json } => {
            detached(&api, json).await?;
            Ok(0)
        }
        SessionsCommand::Watch { session } => {
            let sid = resolve_sid(&api, &session).await?;
            watch::run(&login, &sid).await
        }
    }
}

/// A recorded session as listed here: the hub's, and whether its device keeps it for
/// re-attaching (`tether terminal DEVICE --attach SESSION` takes it back).
#[derive(Debug, Clone, Serialize)]
pub struct ListedSession {
    #[serde(flatten)]
    pub session: TerminalSession,
    pub detached: bool,
}

async fn detached(api: &Api, json: bool) -> Result<()> {
    let list: DetachedList = api.get(DETACHED_SESSIONS_PATH).await?;
    let text = if json {
        serde_json::to_string_pretty(&list.sessions)? + "\n"
    } else {
        let mut rows = vec![
            [
                "SESSION",
                "DEVICE",
                "STARTED (UTC)",
                "DETACHED (UTC)",
                "KEPT UNTIL (UTC)",
            ]
            .map(str::to_owned),
        ];
        for session in &list.sessions {
            let device = if session.device_name.is_empty() {
                session.device_id.clone()
            } else {
                session.device_name.clone()
            };
            rows.push([
                session.sid.clone(),
                device,
                format_time(session.created_at),
                format_time(session.detached_at),
                format_time(session.expires_at),
            ]);
        }
        output::table(&rows, None)
    };
    print_listing(&text).context("writing to stdout")
}

async fn list(api: &Api, mut query: SessionQuery, json: bool) -> Result<()> {
    // A device query is resolved like everywhere else; one matching no device is passed as-is
    // (the id of a removed device).
    if let Some(device) = query.device.take() {
        query.device = Some(match find(api, &device).await {
            Ok(found) => found.id,
            Err(error) if error.to_string().starts_with("no device matches") => device,
            Err(error) => return Err(error),
        });
    }
    let answer = api.get::<SessionList>(&query.path()).await?;
    if let Some(search) = answer.search.as_ref().filter(|search| !search.complete) {
        eprintln!(
            "tether: searched the output of the newest {} recordings only (at most {} or {} MiB per \
             search); narrow the filters (--device, --user, --since, --until) to search older ones",
            search.scanned,
            search.scan_limit,
            search.byte_limit / (1024 * 1024)
        );
    }
    let sessions = answer.sessions;
    // Best effort: an older hub has no list of detached sessions.
    let detached = api
        .get::<DetachedList>(DETACHED_SESSIONS_PATH)
        .await
        .map(|list| list.sessions)
        .unwrap_or_default();
    let sessions: Vec<ListedSession> = sessions
        .into_iter()
        .map(|session| ListedSession {
            detached: detached.iter().any(|d| d.sid == session.sid),
            session,
        })
        .collect();
    let text = if json {
        serde_json::to_string_pretty(&sessions)? + "\n"
    } else {
        table(&sessions, unix_millis())
    };
    print_listing(&text).context("writing to stdout")
}

fn table(sessions: &[ListedSession], now: i64) -> String {
    let mut rows = vec![
        [
            "SESSION",
            "USER",
            "DEVICE",
            "STARTED (UTC)",
            "DURATION",
            "BYTES",
            "STATE",
            "COMMAND",
        ]
        .map(str::to_owned),
    ];
    for listed in sessions {
        let session = &listed.session;
        let end = session.ended_at.unwrap_or(now);
        rows.push([
            session.sid.clone(),
            name_or_id(&session.user_name, &session.user_id),
            name_or_id(&session.device_name, &session.device_id),
            format_time(session.started_at),
            format_duration(end.saturating_sub(session.started_at).max(0) as u64),
            format_bytes(session.bytes_out.max(0) as u64),
            match (session.live, listed.detached) {
                (true, _) => "live",
                (false, true) => "detached",
                (false, false) => "ended",
            }
            .to_owned(),
            session
                .command
                .as_deref()
                .map(|command| command.replace(['\n', '\r', '\t'], " "))
                .unwrap_or_else(|| "(interactive)".to_owned()),
        ]);
    }
    output::table(&rows, None)
}

/// A session id from a full id or a unique prefix of one (among the sessions the caller sees).
pub async fn resolve_sid(api: &Api, query: &str) -> Result<String> {
    let query = query.trim();
    if query.is_empty() {
        bail!("no session given");
    }
    let newest = SessionQuery {
        limit: Some(1000),
        ..SessionQuery::default()
    };
    let sessions = api.get::<SessionList>(&newest.path()).await?.sessions;
    if sessions.iter().any(|session| session.sid == query) {
        return Ok(query.to_owned());
    }
    let matches: Vec<&TerminalSession> = sessions
        .iter()
        .filter(|session| session.sid.starts_with(query))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one.sid.clone()),
        [] => {
            // Perhaps older than the last 1000 sessions: let the hub decide about a full id.
            if query.len() >= 32 {
                Ok(query.to_owned())
            } else {
                bail!("no session matches `{query}` (see `tether sessions list`)")
            }
        }
        several => bail!(
            "`{query}` matches {} sessions ({}...); give more of the id",
            several.len(),
            several
                .iter()
                .take(3)
                .map(|session| session.sid.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Streams the asciicast export to `output` (or stdout); a partial file is removed on failure.
async fn export(login: &Authenticated, sid: &str, output: Option<PathBuf>) -> Result<()> {
    let mut response = crate::api::get_streamed(login, &session_asciicast_path(&segment(sid))).await?;
    let to_stdout = output.is_none();
    let mut sink: Box<dyn Write> = match &output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let result: Result<()> = async {
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| recording::reading_error(login, error))?
        {
            match sink.write_all(&chunk) {
                Err(error) if to_stdout && error.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                other => other.context("writing the recording")?,
            }
        }
        match sink.flush() {
            Err(error) if to_stdout && error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other.context("writing the recording"),
        }
    }
    .await;
    drop(sink);
    match (&result, &output) {
        (Err(_), Some(path)) => {
            let _ = std::fs::remove_file(path);
        }
        (Ok(()), Some(path)) if std::io::stderr().is_terminal() => {
            crate::output::say!("tether: saved {sid} to {}", path.display());
        }
        _ => {}
    }
    result
}

/// The name to show, or the id when the hub knows no name (a removed user or device).
pub(crate) fn name_or_id(name: &str, id: &str) -> String {
    if name.is_empty() { id } else { name }.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_state_and_command() {
        let session = |sid: &str, command: Option<&str>, ended_at: Option<i64>| ListedSession {
            session: TerminalSession {
                sid: sid.to_owned(),
                device_id: "dev-1".to_owned(),
                device_name: "pump".to_owned(),
                user_id: "u1".to_owned(),
                user_name: "alice".to_owned(),
                command: command.map(str::to_owned),
                started_at: 1_714_564_800_000,
                ended_at,
                bytes_out: 2048,
                width: 80,
                height: 24,
                live: ended_at.is_none(),
                excerpt: None,
            },
            detached: false,
        };
        let text = table(
            &[
                session("s1", None, None),
                session("s2", Some("uptime"), Some(1_714_564_865_000)),
            ],
            1_714_564_807_000,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("SESSION  USER   DEVICE  STARTED (UTC)"),
            "{text}"
        );
        assert!(lines[1].contains("2024-05-01 12:00:00  7s"), "{text}");
        assert!(lines[1].contains("2.0K   live   (interactive)"), "{text}");
        assert!(
            lines[2].contains("1m05s") && lines[2].ends_with("ended  uptime"),
            "{text}"
        );
    }
}
