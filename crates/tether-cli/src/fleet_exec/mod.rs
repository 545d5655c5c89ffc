//! `tether exec --group GROUP -- COMMAND...`: one command across a fleet. The hub resolves the
//! group (it knows who may see which device) and records the run; then the command runs on
//! each device through the same session as a single `tether exec`, N devices at a time, on
//! this one thread (the work is waiting on sockets). The output streams line by line behind
//! each device's name (or into one file per device), then a summary says how it went on each.

mod device_run;
mod lines;
mod report;

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, Result, bail};
use clap::Args;
use futures_util::StreamExt;
use tether_proto::api::{ExecRun, NewExecRun, paths::EXEC_RUNS_PATH};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::watch,
};

use crate::{
    api::Api,
    fleet_exec::device_run::{Destination, Plan},
    fleet_exec::report::{Report, exit_status, file_names, table_rows},
    hub::{HubOptions, authenticated},
    output::{print_listing, table},
    quoting::command_line,
};

pub const FLEET_HELP: &str = "\
With --group, the command runs on every accepted device of GROUP that you may see: GROUP is
written as in a grant (tag:NAME, * for every device, or a device id). Roles, approval on demand
and the audit log apply to each device as for a single exec; the hub also records the whole run
(action exec.group). Output lines arrive as the devices send them, each behind `NAME: `; then a
table gives each device's outcome (exit N, offline, refused, timed out, no tether-agent,
failed, interrupted) and duration. --output-dir DIR writes each device's output to DIR/NAME.out
instead; --json prints one JSON object per device ({device, device_id, outcome, exit_status,
duration_ms, reason?, output_file?}) instead of the table, with the output lines on stderr.
Exits 0 only when the command exited 0 on every device: 255 if the hub could not be reached,
130 after Ctrl-C (which stops the command everywhere), 1 otherwise.";

/// The options of the `--group` form of `tether exec`.
#[derive(Args, Debug, Clone)]
pub struct FleetArgs {
    /// Run on every device of a group: tag:NAME, * (every device) or a device id
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// With --group: how many devices run the command at once
    #[arg(
        long,
        value_name = "N",
        default_value_t = 10,
        requires = "group",
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub parallel: u16,
    /// With --group: stop the command on a device that has not finished after SECONDS
    #[arg(
        long,
        value_name = "SECONDS",
        requires = "group",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub timeout: Option<u64>,
    /// With --group: print the output lines without the device name in front
    #[arg(long, requires = "group", conflicts_with = "output_dir")]
    pub no_prefix: bool,
    /// With --group: write each device's output to DIR/NAME.out instead of the terminal
    #[arg(long, value_name = "DIR", requires = "group")]
    pub output_dir: Option<PathBuf>,
    /// With --group: one JSON object per device instead of the summary table
    #[arg(long, requires = "group")]
    pub json: bool,
}

/// Runs `words` on every device of `group` the caller may see; returns the exit status.
pub async fn run(options: &HubOptions, group: &str, args: &FleetArgs, words: Vec<String>) -> Result<i32> {
    let login = authenticated(options)?;
    let api = Api::new(&login.hub, Some(login.token.clone()))?;
    let request = NewExecRun {
        group: group.to_owned(),
        command: command_line(&words),
    };
    let run: ExecRun = api.post(EXEC_RUNS_PATH, &request).await?;
    if run.devices.is_empty() {
        bail!("no accepted device in {} that you may see", run.group);
    }
    let destination = match (&args.output_dir, args.json) {
        (Some(directory), _) => {
            std::fs::create_dir_all(directory)
                .with_context(|| format!("cannot create the directory {}", directory.display()))?;
            Destination::Directory(directory.clone())
        }
        (None, true) => Destination::Stderr,
        (None, false) => Destination::Stdout {
            prefix: !args.no_prefix,
        },
    };
    let names: Vec<Option<String>> = match destination {
        Destination::Directory(_) => file_names(&run.devices).into_iter().map(Some).collect(),
        _ => vec![None; run.devices.len()],
    };
    let plan = Plan {
        login,
        words,
        timeout: args.timeout.map(Duration::from_secs),
        destination,
    };
    let (cancel, cancelled) = watch::channel(false);
    let runs = futures_util::stream::iter(run.devices.into_iter().zip(names).enumerate())
        .map(|(index, (device, file_name))| {
            let plan = &plan;
            let cancelled = cancelled.clone();
            async move { (index, device_run::run(plan, device, file_name, cancelled).await) }
        })
        .buffer_unordered(usize::from(args.parallel))
        .collect::<Vec<(usize, Report)>>();
    tokio::pin!(runs);
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut signalled = None;
    let mut finished = loop {
        tokio::select! {
            finished = &mut runs => break finished,
            number = async {
                tokio::select! {
                    _ = interrupt.recv() => libc::SIGINT,
                    _ = terminate.recv() => libc::SIGTERM,
                    _ = hangup.recv() => libc::SIGHUP,
                }
            }, if signalled.is_none() => {
                // Every running command is stopped; devices not yet started are not.
                signalled = Some(number);
                let _ = cancel.send(true);
            }
        }
    };
    finished.sort_by_key(|(index, _)| *index);
    let reports: Vec<Report> = finished.into_iter().map(|(_, report)| report).collect();
    let listing = if args.json {
        reports.iter().map(|report| report.json() + "\n").collect()
    } else {
        let separator = if matches!(plan.destination, Destination::Stdout { .. }) {
            "\n"
        } else {
            ""
        };
        format!("{separator}{}", table(&table_rows(&reports), None))
    };
    print_listing(&listing)?;
    Ok(exit_status(&reports, signalled))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::{Cli, Command};

    fn exec(args: &[&str]) -> Result<(Option<String>, super::FleetArgs, Vec<String>), clap::Error> {
        let mut line = vec!["tether", "exec"];
        line.extend_from_slice(args);
        match Cli::try_parse_from(line)?.command {
            Command::Exec {
                device,
                fleet,
                command,
            } => Ok((device, fleet, command)),
            _ => panic!("not exec"),
        }
    }

    #[test]
    fn the_single_device_form_is_unchanged() {
        let (device, fleet, command) = exec(&["pump-1", "--", "uname", "-a"]).unwrap();
        assert_eq!(device.as_deref(), Some("pump-1"));
        assert_eq!(command, ["uname", "-a"]);
        assert!(fleet.group.is_none());
        let (device, _, command) = exec(&["pump-1", "echo", "-n", "x"]).unwrap();
        assert_eq!(device.as_deref(), Some("pump-1"));
        assert_eq!(command, ["echo", "-n", "x"]);
        assert!(exec(&["pump-1"]).is_err(), "a command is required");
        assert!(exec(&["--", "uname"]).is_err(), "a device or a group is required");
    }

    #[test]
    fn the_group_form_takes_its_options() {
        let (device, fleet, command) = exec(&[
            "--group",
            "tag:site-a",
            "--parallel",
            "3",
            "--timeout",
            "20",
            "--json",
            "--",
            "sh",
            "-c",
            "exit 3",
        ])
        .unwrap();
        assert_eq!(device, None);
        assert_eq!(fleet.group.as_deref(), Some("tag:site-a"));
        assert_eq!((fleet.parallel, fleet.timeout, fleet.json), (3, Some(20), true));
        assert_eq!(command, ["sh", "-c", "exit 3"]);
        let (_, fleet, _) = exec(&["--group", "*", "--", "true"]).unwrap();
        assert_eq!(fleet.parallel, 10, "the default");
    }

    #[test]
    fn the_forms_do_not_mix() {
        assert!(exec(&["--group", "*", "pump-1", "--", "true"]).is_err());
        assert!(exec(&["pump-1", "--parallel", "2", "--", "true"]).is_err());
        assert!(exec(&["pump-1", "--json", "--", "true"]).is_err());
        assert!(exec(&["--group", "*", "--parallel", "0", "--", "true"]).is_err());
        assert!(exec(&["--group", "*", "--no-prefix", "--output-dir", "d", "--", "true"]).is_err());
    }
}
