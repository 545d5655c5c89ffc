//! What a run across a group tells at the end: each device's outcome and duration, as the
//! summary table or as one JSON object per device, the exit status of the whole run, and the
//! names of the per-device output files (device names come from devices: they are made safe
//! as file names here).

use std::{path::PathBuf, time::Duration};

use serde::Serialize;
use tether_proto::api::ExecRunDevice;

use crate::{api::HttpError, failure::is_refusal};

/// How the command went on one device.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// It ran and exited with this status.
    Exited(i32),
    /// The device was not connected to the hub.
    Offline,
    /// The hub or the device refused the session or the shell, with their reason.
    Refused(String),
    /// `--timeout` passed; the command was stopped.
    TimedOut,
    /// The device's agent speaks protocol version 1 only (a stock mender-connect).
    NoTetherAgent,
    /// The connection failed, the command ended abnormally, or its output could not be kept.
    Failed(String),
    /// Ctrl-C (or SIGTERM, SIGHUP) stopped the run; `started` tells whether this device had
    /// begun.
    Interrupted { started: bool },
}

impl Outcome {
    /// The word of the summary table.
    pub fn text(&self) -> String {
        match self {
            Outcome::Exited(code) => format!("exit {code}"),
            Outcome::Offline => "offline".into(),
            Outcome::Refused(_) => "refused".into(),
            Outcome::TimedOut => "timed out".into(),
            Outcome::NoTetherAgent => "no tether-agent".into(),
            Outcome::Failed(_) => "failed".into(),
            Outcome::Interrupted { .. } => "interrupted".into(),
        }
    }

    /// The word of `--json`.
    pub fn key(&self) -> &'static str {
        match self {
            Outcome::Exited(_) => "exited",
            Outcome::Offline => "offline",
            Outcome::Refused(_) => "refused",
            Outcome::TimedOut => "timed_out",
            Outcome::NoTetherAgent => "no_tether_agent",
            Outcome::Failed(_) => "failed",
            Outcome::Interrupted { .. } => "interrupted",
        }
    }

    /// Why, when the outcome has a reason beyond its word.
    pub fn reason(&self) -> Option<String> {
        match self {
            Outcome::Refused(reason) | Outcome::Failed(reason) => Some(reason.clone()),
            Outcome::NoTetherAgent => Some("exec needs a tether-agent (protocol version 2)".into()),
            Outcome::Interrupted { started: false } => Some("before it started".into()),
            _ => None,
        }
    }

    /// What a failure to open or follow the session on `device_name` means for the run.
    pub fn of_error(error: &anyhow::Error, device_name: &str) -> Outcome {
        if let Some(refused) = error.downcast_ref::<HttpError>() {
            // The hub's words for a device that went away since the run started.
            if refused.status == reqwest::StatusCode::CONFLICT && refused.message.ends_with("is offline") {
                return Outcome::Offline;
            }
            if refused.status.is_client_error() {
                return Outcome::Refused(refused.message.clone());
            }
        }
        let text = format!("{error:#}");
        // The device's name is in the table's first column already.
        let text = text
            .strip_prefix(&format!("{device_name}: "))
            .map(str::to_owned)
            .unwrap_or(text);
        if is_refusal(error) {
            Outcome::Refused(text)
        } else {
            Outcome::Failed(text)
        }
    }
}

/// One device's part of the run.
#[derive(Debug, Clone)]
pub struct Report {
    pub device: ExecRunDevice,
    pub outcome: Outcome,
    pub duration: Duration,
    /// Where its output went (`--output-dir`), if it ran.
    pub output_file: Option<PathBuf>,
}

/// One line of `--json`.
#[derive(Serialize)]
struct JsonReport<'a> {
    device: &'a str,
    device_id: &'a str,
    outcome: &'static str,
    exit_status: Option<i32>,
    duration_ms: u128,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_file: Option<String>,
}

impl Report {
    pub fn json(&self) -> String {
        let report = JsonReport {
            device: &self.device.name,
            device_id: &self.device.id,
            outcome: self.outcome.key(),
            exit_status: match self.outcome {
                Outcome::Exited(code) => Some(code),
                _ => None,
            },
            duration_ms: self.duration.as_millis(),
            reason: self.outcome.reason(),
            output_file: self.output_file.as_ref().map(|path| path.display().to_string()),
        };
        serde_json::to_string(&report).unwrap_or_default()
    }
}

/// The summary table: a header, then one row per device.
pub fn table_rows(reports: &[Report]) -> Vec<Vec<String>> {
    let header = ["DEVICE", "OUTCOME", "DURATION", "DETAIL"]
        .map(String::from)
        .to_vec();
    let rows = reports.iter().map(|report| {
        vec![
            report.device.name.clone(),
            report.outcome.text(),
            duration_text(report.duration),
            report.outcome.reason().unwrap_or_default(),
        ]
    });
    std::iter::once(header).chain(rows).collect()
}

/// `0.4s`, `12.0s`, `3m07s`.
pub fn duration_text(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if seconds < 60 {
        format!("{:.1}s", duration.as_secs_f64())
    } else {
        format!("{}m{:02}s", seconds / 60, seconds % 60)
    }
}

/// 0 only when the command exited 0 on every device; 128 + N after signal N; 1 otherwise.
pub fn exit_status(reports: &[Report], signalled: Option<i32>) -> i32 {
    if let Some(signal) = signalled {
        return 128 + signal;
    }
    if reports.iter().all(|report| report.outcome == Outcome::Exited(0)) {
        0
    } else {
        1
    }
}

/// One output file name per device (`NAME.out`), in the devices' order: characters other than
/// letters, digits, `-`, `_` and `.` become `_`, no name starts with a dot, and devices sharing
/// a name get their id added.
pub fn file_names(devices: &[ExecRunDevice]) -> Vec<String> {
    let safe: Vec<String> = devices
        .iter()
        .map(|device| safe_file_name(&device.name))
        .collect();
    devices
        .iter()
        .zip(&safe)
        .map(|(device, name)| {
            if safe.iter().filter(|other| *other == name).count() > 1 {
                format!("{name}-{}.out", safe_file_name(&device.id))
            } else {
                format!("{name}.out")
            }
        })
        .collect()
}

fn safe_file_name(name: &str) -> String {
    let mut safe: String = name
        .chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() || safe.starts_with('.') {
        safe.insert(0, '_');
    }
    safe
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str, name: &str) -> ExecRunDevice {
        ExecRunDevice {
            id: id.into(),
            name: name.into(),
            online: true,
        }
    }

    fn report(name: &str, outcome: Outcome) -> Report {
        Report {
            device: device(&format!("id-{name}"), name),
            outcome,
            duration: Duration::from_millis(1500),
            output_file: None,
        }
    }

    #[test]
    fn the_exit_status_is_zero_only_when_every_device_exited_zero() {
        let good = [report("a", Outcome::Exited(0)), report("b", Outcome::Exited(0))];
        assert_eq!(exit_status(&good, None), 0);
        assert_eq!(exit_status(&good, Some(libc::SIGINT)), 130);
        for bad in [
            Outcome::Exited(3),
            Outcome::Offline,
            Outcome::Refused("no".into()),
            Outcome::TimedOut,
            Outcome::NoTetherAgent,
            Outcome::Failed("lost".into()),
        ] {
            let reports = [report("a", Outcome::Exited(0)), report("b", bad)];
            assert_eq!(exit_status(&reports, None), 1);
        }
    }

    #[test]
    fn the_table_names_outcomes_and_reasons() {
        let reports = [
            report("pump-1", Outcome::Exited(0)),
            report(
                "pump-2",
                Outcome::Refused("user bob may not open a terminal".into()),
            ),
            report("pump-3", Outcome::TimedOut),
        ];
        let rows = table_rows(&reports);
        assert_eq!(rows[0], ["DEVICE", "OUTCOME", "DURATION", "DETAIL"]);
        assert_eq!(rows[1], ["pump-1", "exit 0", "1.5s", ""]);
        assert_eq!(rows[2][1], "refused");
        assert_eq!(rows[2][3], "user bob may not open a terminal");
        assert_eq!(rows[3][1], "timed out");
        assert_eq!(duration_text(Duration::from_secs(187)), "3m07s");
    }

    #[test]
    fn json_lines_carry_the_outcome_and_status() {
        let exited: serde_json::Value =
            serde_json::from_str(&report("a", Outcome::Exited(3)).json()).unwrap();
        assert_eq!(
            exited,
            serde_json::json!({"device": "a", "device_id": "id-a", "outcome": "exited",
                "exit_status": 3, "duration_ms": 1500})
        );
        let mut offline = report("b", Outcome::Offline);
        offline.output_file = Some(PathBuf::from("/tmp/out/b.out"));
        let offline: serde_json::Value = serde_json::from_str(&offline.json()).unwrap();
        assert_eq!(offline["outcome"], "offline");
        assert_eq!(offline["exit_status"], serde_json::Value::Null);
        assert_eq!(offline["output_file"], "/tmp/out/b.out");
        let refused: serde_json::Value =
            serde_json::from_str(&report("c", Outcome::Refused("why".into())).json()).unwrap();
        assert_eq!(refused["reason"], "why");
    }

    #[test]
    fn errors_become_outcomes() {
        let offline = anyhow::Error::new(HttpError {
            status: reqwest::StatusCode::CONFLICT,
            message: "device pump-1 is offline".into(),
        });
        assert_eq!(Outcome::of_error(&offline, "pump-1"), Outcome::Offline);
        let forbidden = anyhow::Error::new(HttpError {
            status: reqwest::StatusCode::FORBIDDEN,
            message: "user bob may not open a terminal on device pump-1".into(),
        });
        assert_eq!(
            Outcome::of_error(&forbidden, "pump-1"),
            Outcome::Refused("user bob may not open a terminal on device pump-1".into())
        );
        let refused = crate::failure::refusal("pump-1: consent denied");
        assert_eq!(
            Outcome::of_error(&refused, "pump-1"),
            Outcome::Refused("consent denied".into())
        );
        let lost = crate::failure::lost("connection to the hub lost");
        assert_eq!(
            Outcome::of_error(&lost, "pump-1"),
            Outcome::Failed("connection to the hub lost".into())
        );
    }

    #[test]
    fn file_names_are_safe_and_distinct() {
        let devices = [
            device("1", "pump-1"),
            device("2", "../../etc/passwd"),
            device("3", "twin"),
            device("4", "twin"),
            device("5", ""),
            device("6", "a b/ü"),
        ];
        assert_eq!(
            file_names(&devices),
            [
                "pump-1.out",
                "_.._.._etc_passwd.out",
                "twin-3.out",
                "twin-4.out",
                "_.out",
                "a_b__.out"
            ]
        );
    }
}
