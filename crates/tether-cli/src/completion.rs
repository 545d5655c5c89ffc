//! Shell completion (`tether completions bash|zsh|fish`) and the man pages (`tether man`).
//!
//! Completion is clap_complete's dynamic kind: the script a shell sources only calls
//! `TETHER_COMPLETE=SHELL tether -- WORDS…` back, and this binary answers from its own command
//! definition. One definition thus serves three shells, a new flag completes without printing
//! the script again, and device names come from the hub through the stored login like any
//! command's (a hand-written hook per shell would repeat the argument grammar three times).
//! Completing a device is quiet and quick on every failure: no login, hub unreachable, a
//! refusal — it offers nothing.

use std::{
    collections::HashMap,
    ffi::{OsStr, OsString},
    path::Path,
    time::Duration,
};

use anyhow::{Context, Result};
use clap::ValueEnum;
use clap_complete::{
    engine::{CompletionCandidate, PathCompleter, ValueCompleter},
    env::{Bash, CompleteEnv, EnvCompleter, Fish, Zsh},
};

use crate::{api::authenticated_api, config, hub::HubOptions};

/// The variable that turns a run of `tether` into a completion request.
const COMPLETE_VARIABLE: &str = "TETHER_COMPLETE";
/// How long a completion waits for the hub before offering nothing.
const HUB_WAIT: Duration = Duration::from_secs(4);

pub const COMPLETIONS_HELP: &str = "\
Load the completions in the current shell, or install them for every new one:
  bash:  source <(tether completions bash)
         tether completions bash > ~/.local/share/bash-completion/completions/tether
  zsh:   tether completions zsh > \"${fpath[1]}/_tether\"
  fish:  tether completions fish > ~/.config/fish/completions/tether.fish
DEVICE arguments complete with the device names of the hub you are logged in to (the
profile chosen by TETHER_PROFILE or --profile on the line, else the current one). The script
calls `tether` from PATH.";

#[derive(Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Answers a completion request and exits, if this run is one; otherwise returns.
pub fn complete_if_asked(command: fn() -> clap::Command) {
    CompleteEnv::with_factory(command)
        .var(COMPLETE_VARIABLE)
        .complete();
}

/// `tether completions SHELL`: prints the script that registers the completion.
pub fn print_script(shell: Shell) -> Result<i32> {
    let adapter: &dyn EnvCompleter = match shell {
        Shell::Bash => &Bash,
        Shell::Zsh => &Zsh,
        Shell::Fish => &Fish,
    };
    let mut script = Vec::new();
    adapter.write_registration(COMPLETE_VARIABLE, "tether", "tether", "tether", &mut script)?;
    crate::output::write_stdout(&script)?;
    Ok(0)
}

/// `tether man [--dir DIR]`: the `tether(1)` page on stdout, or one page per command in DIR.
pub fn man(command: clap::Command, dir: Option<&Path>) -> Result<i32> {
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(command, dir)
                .with_context(|| format!("cannot write the man pages to {}", dir.display()))?;
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command).render(&mut page)?;
            crate::output::write_stdout(&page)?;
        }
    }
    Ok(0)
}

/// Which devices a DEVICE argument offers.
#[derive(Clone, Copy)]
pub enum Devices {
    /// Those a session can be opened to (terminal, exec, cp, port-forward…).
    Accepted,
    /// All of them (accept, reject, remove, set-tags).
    Any,
    /// Accepted ones as `NAME:` for a `DEVICE:PATH`, beside local paths (cp).
    WithPath,
    /// Accepted ones as `NAME:` for a `DEVICE:PATH` only (ls).
    Remote,
}

impl ValueCompleter for Devices {
    fn complete(&self, current: &OsStr) -> Vec<CompletionCandidate> {
        let typed = current.to_string_lossy();
        let mut candidates = Vec::new();
        let with_path = matches!(self, Devices::WithPath | Devices::Remote);
        if with_path && typed.contains(':') {
            return candidates; // a remote path: not completed
        }
        if matches!(self, Devices::WithPath) {
            candidates.extend(PathCompleter::any().complete(current));
        }
        let status = match self {
            Devices::Any => None,
            Devices::Accepted | Devices::WithPath | Devices::Remote => Some("accepted"),
        };
        let suffix = if with_path { ":" } else { "" };
        candidates.extend(
            device_names(status)
                .into_iter()
                .filter(|name| name.starts_with(typed.as_ref()))
                .map(|name| CompletionCandidate::new(OsString::from(format!("{name}{suffix}")))),
        );
        candidates
    }
}

/// The names of the hub's devices (the id instead, where a name is not unique), or nothing
/// on any failure.
fn device_names(status: Option<&str>) -> Vec<String> {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        return Vec::new();
    };
    let answer = runtime.block_on(async { tokio::time::timeout(HUB_WAIT, fetch_names(status)).await });
    runtime.shutdown_background();
    answer.ok().and_then(Result::ok).unwrap_or_default()
}

async fn fetch_names(status: Option<&str>) -> Result<Vec<String>> {
    let non_empty = |name| std::env::var(name).ok().filter(|value| !value.is_empty());
    let options = HubOptions {
        hub: non_empty("TETHER_HUB"),
        ca: non_empty("TETHER_CA").map(Into::into),
        profile: profile_on_line().or_else(|| non_empty("TETHER_PROFILE")),
    };
    let devices = authenticated_api(&options)?.devices(status).await?;
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for device in &devices {
        *counts.entry(device.name.as_str()).or_default() += 1;
    }
    let mut names: Vec<String> = devices
        .iter()
        .map(|device| match counts.get(device.name.as_str()) {
            Some(1) => device.name.clone(),
            _ => device.id.clone(),
        })
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// A `--profile NAME` (or `--profile=NAME`) among the words being completed.
fn profile_on_line() -> Option<String> {
    let words: Vec<String> = std::env::args().skip_while(|word| word != "--").collect();
    let mut found = None;
    for (index, word) in words.iter().enumerate() {
        if let Some(name) = word.strip_prefix("--profile=") {
            found = Some(name.to_owned());
        } else if word == "--profile" {
            found = words.get(index + 1).cloned();
        }
    }
    found.filter(|name| config::parse_profile_name(name).is_ok())
}
