//! The web UI in real headless Chromium: a real hub (serving its embedded UI) and real agents,
//! driven by `web/tests/ui.e2e.mjs` (playwright-core with Debian's `/usr/bin/chromium`). The script
//! logs in (after a wrong password), accepts a pending device and rejects another, runs a terminal
//! (echo, a window resize seen by `stty size`, vim, paste), watches it live from a second page,
//! uploads (picked and dropped) and downloads files, plays the recorded session, filters and
//! exports the audit log, tags the device, creates, uses and revokes an access token, creates a
//! user with a role on a group and disables it; an operator requests access to a group, enrols
//! two-factor authentication (TOTP computed by the script) and logs in with the code step (a wrong
//! code is refused), and the administrator approves the request on the Access page; it checks that
//! a cross-origin WebSocket upgrade and a request without the CSRF token are refused, that a
//! logged-out page cannot reach the API, and that a refused second shell, an offline device and a
//! revoked session get clear messages. Issue 19's checks: underscores drawn in the terminal, the
//! live view and the player; leaving a running shell asks first; Esc then Tab leaves the
//! terminal; the download says when it is complete; the audit log's device filter takes a name
//! or an id prefix; a grant without `tag:` is refused; a wrong current password or 2FA
//! enrolment code does not log out; every page fits 400 px; and a terminal running a counter
//! survives a SIGKILL and restart of the hub (asked for by the script, done here), keeping the
//! login, with every line shown exactly once. Screenshots of every page at 1400×900 and 400 px
//! wide land in `target/web-screenshots/`.
//!
//! Needs `node`, `web/node_modules` (`npm ci` in `web/`), Chromium and a hub built after
//! `npm run build`; `scripts/test` provides all of them.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use tether_e2e::{
    Agent, Hub, Proc, WAIT,
    peers::{sha256_file, write_deterministic_file},
    wait_for,
};

/// Give-up limit for the whole browser script on a loaded 2-core machine.
const SCRIPT_LIMIT: Duration = Duration::from_secs(480);
/// How the script asks the test to act on the hub (`kill-hub`, `restart-hub`).
const CONTROL_PREFIX: &str = "[ui.e2e] control: ";

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web")
}

#[test]
fn the_web_ui_drives_a_device_end_to_end() {
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

    let mut hub = Hub::start_default();
    let password = "pw-web-correct-horse-battery";
    hub.add_user("webadmin", true, password);
    let operator_password = "pw-operator-correct-horse";
    hub.add_user_with("weboperator", &["--role", "operator"], operator_password);
    let device_tmp = tempfile::Builder::new()
        .prefix("tether-e2e-web-")
        .tempdir()
        .expect("temp dir");
    let root = device_tmp.path().join("data");
    std::fs::create_dir(&root).unwrap();
    let download = root.join("from-device.bin");
    write_deterministic_file(&download, 7, 300_000);
    let agent_config = format!(
        "[terminal]\nshell = \"/bin/bash\"\nmax_sessions = 1\n\n[file_transfer]\nenabled = true\nroots = [{:?}]\n",
        root.display().to_string()
    );
    // Not accepted here: the browser accepts it. One shell at a time, so a second is refused.
    let agent = Agent::start(&hub, &agent_config);
    // Another pending device, which the browser rejects.
    let unwanted = Agent::start(&hub, "[terminal]\nshell = \"/bin/sh\"\n");
    // An accepted device that has gone offline.
    let mut gone = Agent::start(&hub, "[terminal]\nshell = \"/bin/sh\"\n");
    let cli = hub.user_cli("operator", true);
    cli.accept(&gone.name);
    gone.kill();
    wait_for("the stopped agent to be offline", WAIT, || {
        cli.devices()
            .iter()
            .any(|d| d.name == gone.name && !d.online)
            .then_some(())
    });
    let upload_text = format!("uploaded-through-the-browser-{}", std::process::id());
    let control = device_tmp.path().join("control");
    std::fs::create_dir(&control).unwrap();
    let screenshots = tether_e2e::bin_dir()
        .parent()
        .expect("target dir")
        .join("web-screenshots");

    let mut command = Command::new("node");
    command
        .arg(web.join("tests/ui.e2e.mjs"))
        .current_dir(&web)
        .env("TETHER_URL", &hub.url)
        .env("TETHER_USER", "webadmin")
        .env("TETHER_PASSWORD", password)
        .env("TETHER_DEVICE", &agent.name)
        .env("TETHER_DEVICE_ROOT", &root)
        .env("TETHER_DOWNLOAD", &download)
        .env("TETHER_DOWNLOAD_SHA256", sha256_file(&download))
        .env("TETHER_UPLOAD_TEXT", &upload_text)
        .env("TETHER_SCREENSHOTS", &screenshots)
        .env("TETHER_OFFLINE_DEVICE", &gone.name)
        .env("TETHER_REJECT_DEVICE", &unwanted.name)
        .env("TETHER_OPERATOR", "weboperator")
        .env("TETHER_OPERATOR_PASSWORD", operator_password)
        .env("TETHER_CONTROL", &control)
        .env("CHROMIUM", &chromium);
    let mut script = Proc::spawn("ui-e2e", command, device_tmp.path());
    let started = Instant::now();
    let mut handled = 0;
    let status = loop {
        if let Some(status) = script.try_wait() {
            break Some(status);
        }
        // The script asks for what only the test can do to the hub.
        let output = script.stdout();
        let requests: Vec<&str> = output
            .lines()
            .filter_map(|line| line.strip_prefix(CONTROL_PREFIX))
            .collect();
        for request in requests.iter().skip(handled) {
            match request.trim() {
                "kill-hub" => hub.kill(),
                "restart-hub" => hub.restart(),
                other => panic!("the browser script asked for an unknown action {other:?}"),
            }
            std::fs::write(control.join(format!("{}.done", request.trim())), b"").unwrap();
            handled += 1;
        }
        if started.elapsed() > SCRIPT_LIMIT {
            script.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let report = || {
        format!(
            "browser script output:\n{}\n{}\nhub log:\n{}",
            script.stdout(),
            script.stderr(),
            hub.log()
        )
    };
    assert!(
        status.is_some_and(|s| s.success()),
        "the browser script failed ({status:?}); {}",
        report()
    );

    // The upload really reached the device's disk.
    let uploaded = std::fs::read_to_string(root.join("web-upload.txt")).expect("the uploaded file");
    assert_eq!(uploaded, upload_text);
    let dropped = std::fs::read_to_string(root.join("web-dropped.txt")).expect("the dropped file");
    assert_eq!(dropped, format!("dropped-{upload_text}"));
    for page in ["terminal", "account-2fa-codes"] {
        assert!(
            screenshots.join(format!("{page}.png")).is_file(),
            "screenshot of {page} missing"
        );
    }
    // Every page at 1400×900 and at 400 px wide.
    for page in [
        "login",
        "devices",
        "watch",
        "device",
        "player",
        "recordings",
        "audit",
        "account",
        "users",
        "account-2fa",
        "access",
        "hub-unreachable",
    ] {
        for name in [format!("{page}.png"), format!("{page}-400.png")] {
            assert!(screenshots.join(&name).is_file(), "screenshot {name} missing");
        }
    }
}
