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

use tether_e2e::{
    Agent, Hub, WAIT,
    browser::{run_web_script, screenshots_dir},
    peers::{sha256_file, write_deterministic_file},
    wait_for,
};

#[test]
fn the_web_ui_drives_a_device_end_to_end() {
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
    let screenshots = screenshots_dir();
    let text = |value: &std::path::Path| value.display().to_string();
    run_web_script(
        &mut hub,
        "ui.e2e.mjs",
        &[
            ("TETHER_USER", "webadmin".into()),
            ("TETHER_PASSWORD", password.into()),
            ("TETHER_DEVICE", agent.name.clone()),
            ("TETHER_DEVICE_ROOT", text(&root)),
            ("TETHER_DOWNLOAD", text(&download)),
            ("TETHER_DOWNLOAD_SHA256", sha256_file(&download)),
            ("TETHER_UPLOAD_TEXT", upload_text.clone()),
            ("TETHER_OFFLINE_DEVICE", gone.name.clone()),
            ("TETHER_REJECT_DEVICE", unwanted.name.clone()),
            ("TETHER_OPERATOR", "weboperator".into()),
            ("TETHER_OPERATOR_PASSWORD", operator_password.into()),
        ],
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
