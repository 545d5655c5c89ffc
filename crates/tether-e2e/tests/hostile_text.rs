//! Terminal escape injection: a pending device names itself (no login needed) with control
//! characters that would erase its own row, forge another and retitle the window, and a file on
//! a device has such a name too. Every listing and message of the CLI shows them escaped
//! (`\r`, `\e`, `\a`...), never raw; `--json` keeps them exact.

use std::{os::unix::ffi::OsStrExt as _, path::Path, time::Duration};

use tether_e2e::{Agent, CliOutput, FakeDevice, Hub};

/// Erases the line, prints a forged row, retitles the terminal window.
const HOSTILE_NAME: &str = "\r\u{1b}[2Kprod-gw  accepted  yes\u{1b}]0;owned\u{7}";
const HOSTILE_NAME_SHOWN: &str = r"\r\e[2Kprod-gw  accepted  yes\e]0;owned\a";
/// A file name with a newline (a forged line), a C1 CSI and a bidi override as well.
const HOSTILE_FILE: &str = "report\u{1b}]0;owned\u{7}\n\u{9b}2Kfake\u{202e}txt.sh";
const HOSTILE_FILE_SHOWN: &str = r"report\e]0;owned\a\n\u{9b}2Kfake\u{202e}txt.sh";

fn assert_no_raw_controls(output: &CliOutput) {
    for (stream, text) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
        let raw: Vec<char> = text
            .chars()
            .filter(|c| (c.is_control() && *c != '\n') || *c == '\u{202e}')
            .collect();
        assert!(
            raw.is_empty(),
            "raw control characters {raw:?} on {stream}:\n{output}"
        );
    }
}

fn write_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn make_fifo(path: &Path) {
    let name = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo has no other preconditions.
    assert_eq!(
        unsafe { libc::mkfifo(name.as_ptr(), 0o644) },
        0,
        "mkfifo {}",
        path.display()
    );
}

#[test]
fn device_and_file_names_with_control_characters_are_shown_escaped() {
    let hub = Hub::start_default();
    let cli = hub.user_cli("alice", true);
    let device_tmp = tempfile::tempdir().expect("temp dir");
    let root = device_tmp.path().join("data");
    std::fs::create_dir(&root).unwrap();
    write_file(&root.join(HOSTILE_FILE), "hostile content\n");
    make_fifo(&root.join(format!("pipe{HOSTILE_NAME}")));
    let agent = Agent::start(
        &hub,
        &format!(
            "[terminal]\nshell = \"/bin/sh\"\n\n[file_transfer]\nenabled = true\nroots = [{:?}]\n",
            root.display().to_string()
        ),
    );
    cli.accept(&agent.name);

    // Anyone reaching the hub can enrol a pending device with any name.
    let squatter = FakeDevice::named(&hub, HOSTILE_NAME);
    squatter.authenticate(None);
    let squatter_id = cli.device_id_by_name(HOSTILE_NAME);

    let list = cli.run(&["devices", "list"]);
    assert!(list.success(), "{list}");
    assert_no_raw_controls(&list);
    assert!(list.stdout.contains(HOSTILE_NAME_SHOWN), "{list}");
    assert_eq!(
        list.stdout.lines().count(),
        3,
        "a header and one line per device:\n{list}"
    );
    let pending_row = list
        .stdout
        .lines()
        .find(|line| line.contains(&squatter_id))
        .unwrap_or_default();
    assert!(
        pending_row.contains("pending"),
        "the squatter's own row says pending: {pending_row}"
    );
    // JSON stays exact: it escapes itself.
    let json = cli.run(&["devices", "list", "--json"]);
    assert!(json.stdout.contains(r"\r\u001b[2Kprod-gw"), "{json}");
    assert!(
        cli.device(HOSTILE_NAME).is_some(),
        "the exact name round-trips in JSON"
    );

    // Messages: the CLI's own (no such device, echoing the query) and the hub's answers.
    let nothing = cli.run(&["devices", "accept", &format!("{HOSTILE_NAME}-missing")]);
    assert_eq!(nothing.code, Some(1), "{nothing}");
    assert_no_raw_controls(&nothing);
    assert!(nothing.stderr.contains(HOSTILE_NAME_SHOWN), "{nothing}");
    let accepted = cli.run(&["devices", "accept", &squatter_id]);
    assert!(accepted.success(), "{accepted}");
    assert_no_raw_controls(&accepted);
    assert!(accepted.stdout.contains(HOSTILE_NAME_SHOWN), "{accepted}");
    let tags = cli.run(&[
        "devices",
        "set-tags",
        &squatter_id,
        "ok",
        "bad\u{1b}]0;owned\u{7}",
    ]);
    assert_no_raw_controls(&tags);
    let audit = cli.run(&["audit", "list"]);
    assert!(audit.success(), "{audit}");
    assert_no_raw_controls(&audit);
    assert!(
        audit.stdout.contains(HOSTILE_NAME_SHOWN),
        "the accept event names the device:\n{audit}"
    );

    // File names on the device: `ls`, `cp`, and the device's refusals.
    let remote_root = format!("{}:{}", agent.name, root.display());
    let ls = cli.run(&["ls", &remote_root]);
    assert!(ls.success(), "{ls}");
    assert_no_raw_controls(&ls);
    assert!(ls.stdout.contains(HOSTILE_FILE_SHOWN), "{ls}");
    assert_eq!(ls.stdout.lines().count(), 2, "one line per entry:\n{ls}");
    let ls_json = cli.run(&["ls", "--json", &remote_root]);
    let entries: serde_json::Value = serde_json::from_str(ls_json.ok()).expect("ls --json");
    assert!(
        entries
            .as_array()
            .unwrap()
            .iter()
            .any(|entry| entry["name"] == HOSTILE_FILE),
        "{entries}"
    );

    let local = tempfile::tempdir().expect("temp dir");
    let copy = local.path().join("copy");
    let cp = cli.run_for(
        &["cp", "-r", &remote_root, copy.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert!(cp.success(), "{cp}");
    assert_no_raw_controls(&cp);
    assert!(
        cp.stderr.contains("skipped"),
        "the FIFO is skipped, by its escaped name:\n{cp}"
    );
    assert!(cp.stderr.contains(HOSTILE_NAME_SHOWN), "{cp}");
    assert_eq!(
        std::fs::read_to_string(copy.join(HOSTILE_FILE)).expect("the file is copied under its exact name"),
        "hostile content\n"
    );
    let missing = format!("{}:{}/missing{HOSTILE_NAME}", agent.name, root.display());
    let refused = cli.run(&["cp", &missing, local.path().to_str().unwrap()]);
    assert_eq!(refused.code, Some(1), "{refused}");
    assert_no_raw_controls(&refused);
    assert!(refused.stderr.contains(HOSTILE_NAME_SHOWN), "{refused}");
}

/// A user name is shown to other users (lists, audit, watch notices): one with control
/// characters is refused when the user is created.
#[test]
fn a_user_name_with_control_characters_is_refused() {
    let hub = Hub::start_default();
    let cli = hub.user_cli("alice", true);
    let authorization = format!("Bearer {}", cli.token());
    let body = serde_json::json!({ "name": "\u{1b}[2Jmallory", "password": "pw-long-enough" });
    let (status, answer) = hub.request(
        "POST",
        tether_proto::api::paths::USERS_PATH,
        &[
            ("Authorization", &authorization),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("control characters"), "{answer}");
    let users = cli.run(&["users", "list"]);
    assert!(!users.ok().contains("mallory"), "{users}");
}
