//! Runs the web UI's browser scripts (`web/tests/*.e2e.mjs`, playwright-core driving Debian's
//! `/usr/bin/chromium`) against a real hub, and does to the hub what only the test can do
//! (SIGKILL, restart) when a script asks for it.
//!
//! A script asks by printing a line `[ANYTHING] control: WHAT` (`kill-hub`, `restart-hub`); the
//! launcher acts, then creates `TETHER_CONTROL/WHAT.done`, which the script waits for.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use crate::{Hub, Proc};

/// Give-up limit for one browser script on a loaded 2-core machine.
const SCRIPT_LIMIT: Duration = Duration::from_secs(480);
/// What precedes a request in a script's output line (after its `[name]` tag).
const CONTROL_MARK: &str = "] control: ";

/// The `web/` directory of the workspace.
pub fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web")
}

/// Where every script saves its screenshots (`target/web-screenshots`); file names are prefixed
/// by page so scripts do not overwrite each other's.
pub fn screenshots_dir() -> PathBuf {
    crate::bin_dir()
        .parent()
        .expect("target dir")
        .join("web-screenshots")
}

/// The Chromium to drive (`CHROMIUM` or Debian's), after checking that it and playwright-core
/// are installed, with a message saying how to get them.
fn chromium() -> String {
    let web = web_dir();
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "web/node_modules is missing: run `npm ci` in web/ (scripts/test does)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).is_file(),
        "{chromium} is missing: install the Debian package `chromium` (scripts/test does)"
    );
    chromium
}

/// Runs `web/tests/SCRIPT` with node (working directory `web/`), giving it `TETHER_URL` (the
/// hub), `CHROMIUM`, `TETHER_SCREENSHOTS`, `TETHER_CONTROL` (a fresh directory) and `env`.
/// Panics, with the script's output and the hub's log, when the script fails or overruns.
pub fn run_web_script(hub: &mut Hub, script: &str, env: &[(&str, String)]) {
    let chromium = chromium();
    let web = web_dir();
    let scratch = tempfile::Builder::new()
        .prefix("tether-e2e-browser-")
        .tempdir()
        .expect("temp dir");
    let control = scratch.path().join("control");
    std::fs::create_dir(&control).expect("control dir");
    let screenshots = screenshots_dir();
    std::fs::create_dir_all(&screenshots).expect("screenshots dir");

    let mut command = Command::new("node");
    command
        .arg(web.join("tests").join(script))
        .current_dir(&web)
        .env("TETHER_URL", &hub.url)
        .env("TETHER_SCREENSHOTS", &screenshots)
        .env("TETHER_CONTROL", &control)
        .env("CHROMIUM", &chromium);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut process = Proc::spawn(script, command, scratch.path());
    let started = Instant::now();
    let mut handled = 0;
    let status = loop {
        if let Some(status) = process.try_wait() {
            break Some(status);
        }
        let output = process.stdout();
        let requests: Vec<String> = output
            .lines()
            .filter_map(|line| line.split_once(CONTROL_MARK))
            .filter(|(tag, _)| tag.starts_with('['))
            .map(|(_, request)| request.trim().to_owned())
            .collect();
        for request in requests.iter().skip(handled) {
            match request.as_str() {
                "kill-hub" => hub.kill(),
                "restart-hub" => hub.restart(),
                other => panic!("the browser script asked for an unknown action {other:?}"),
            }
            std::fs::write(control.join(format!("{request}.done")), b"").expect("done file");
            handled += 1;
        }
        if started.elapsed() > SCRIPT_LIMIT {
            process.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        status.is_some_and(|status| status.success()),
        "the browser script {script} failed ({status:?}); its output:\n{}\n{}\nhub log:\n{}",
        process.stdout(),
        process.stderr(),
        hub.log()
    );
}
