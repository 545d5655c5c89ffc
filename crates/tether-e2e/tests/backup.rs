//! Backups of a live SQLite hub: `tether-hub backup` while a terminal is open, files are copied
//! (`tether cp`) and audit events are written; `tether-hub restore` into a new data directory;
//! the hub started on it has every user and device, the same certificate, the terminal that was
//! open at the backup closed as `interrupted`, and an audit chain that verifies. Restore refuses
//! the data directory of a running hub, and one that already has a database.

use std::{
    os::unix::fs::PermissionsExt as _,
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    time::Duration,
};

use serde_json::Value;
use tether_e2e::{
    Agent, Cli, Hub, HubOptions, PtySession, WAIT,
    peers::{sha256_file, write_deterministic_file},
    wait_for,
};

fn json(cli: &Cli, args: &[&str]) -> Value {
    let output = cli.run(args);
    serde_json::from_str(output.ok()).unwrap_or_else(|e| panic!("{args:?} is not JSON: {e}\n{output}"))
}

fn names(list: &Value, key: &str) -> Vec<String> {
    let mut names: Vec<String> = list
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list:#}"))
        .iter()
        .filter_map(|item| item[key].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

#[test]
fn a_backup_taken_under_load_restores_into_a_new_hub() {
    let mut hub = Hub::start(HubOptions::default().provisioning_key("backup-key"));
    let cli = hub.user_cli("alice", true);
    hub.add_user("bob", false, "pw-bob-correct-horse");
    let files = tempfile::tempdir().unwrap();
    let root = files.path().join("device");
    std::fs::create_dir(&root).unwrap();
    let agent = Agent::start(
        &hub,
        &format!(
            "provisioning_key = \"backup-key\"\n[terminal]\nshell = \"/bin/sh\"\n\n\
             [file_transfer]\nenabled = true\nroots = [{:?}]\n",
            root.display().to_string()
        ),
    );
    cli.wait_online(&agent.name);
    let terminal = PtySession::terminal(&cli, &agent.name);
    terminal.send_line("echo open-$((6*7))");
    terminal.expect("open-42", WAIT);
    let open_sid = wait_for("the terminal's open event", WAIT, || {
        json(&cli, &["audit", "list", "--json", "--action", "terminal.open"])[0]["session_id"]
            .as_str()
            .map(str::to_owned)
    });
    // The recording is in the database (stored every second) before the backup copies it.
    wait_for("the terminal's output recorded", WAIT, || {
        let cast = cli.run(&["sessions", "export", &open_sid]);
        let recorded = cast.stdout.lines().skip(1).any(|line| line.contains("open-42"));
        (cast.success() && recorded).then_some(())
    });

    let original = files.path().join("original.bin");
    write_deterministic_file(&original, 3, 8 * 1024 * 1024 + 17);
    let backup = files.path().join("hub-backup.tar");
    let stop = AtomicBool::new(false);
    let (copies, logins) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let remote = format!("{}:{}", agent.name, root.join("copied.bin").display());
            while !stop.load(Ordering::SeqCst) {
                cli.run_for(
                    &["cp", original.to_str().unwrap(), &remote],
                    Duration::from_secs(120),
                )
                .ok();
                copies.fetch_add(1, Ordering::SeqCst);
            }
        });
        scope.spawn(|| {
            let bob = hub.cli();
            while !stop.load(Ordering::SeqCst) {
                bob.login("bob", "pw-bob-correct-horse");
                logins.fetch_add(1, Ordering::SeqCst);
            }
        });
        // Both kinds of work are under way (one round done, the next running) before the backup.
        wait_for("a copy and a few logins", Duration::from_secs(120), || {
            (copies.load(Ordering::SeqCst) >= 1 && logins.load(Ordering::SeqCst) >= 3).then_some(())
        });
        let output = hub.run_hub(&["backup".as_ref(), backup.as_os_str()]);
        stop.store(true, Ordering::SeqCst);
        assert!(
            output.status.success(),
            "backup failed: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            hub.log()
        );
    });
    assert_eq!(
        sha256_file(&root.join("copied.bin")),
        sha256_file(&original),
        "the copies went on during the backup"
    );
    let mode = std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the backup holds keys: private");
    terminal.send_line("echo after-backup-$((6*7))");
    terminal.expect("after-backup-42", WAIT);

    let restored = Hub::start(HubOptions::default().restored_from(&backup));
    assert_eq!(
        restored.fingerprint, hub.fingerprint,
        "the restored hub has the same TLS certificate"
    );
    assert!(
        !restored.log().contains("created the first administrator"),
        "users came back with the database\n{}",
        restored.log()
    );
    let restored_cli = restored.cli();
    restored_cli.login("alice", "pw-alice-correct-horse");
    let users = names(&json(&restored_cli, &["users", "list", "--json"]), "name");
    assert_eq!(users, names(&json(&cli, &["users", "list", "--json"]), "name"));
    assert!(users.contains(&"bob".to_owned()), "{users:?}");
    let devices = names(&json(&restored_cli, &["devices", "list", "--json"]), "name");
    assert_eq!(devices, vec![agent.name.clone()]);
    let verify = restored_cli.run(&["audit", "verify"]);
    assert!(verify.ok().contains("audit log intact"), "{verify}");
    // The terminal open at the backup was the hub's (its replica id came back): closed at start.
    let closed = wait_for("the interrupted close of the open terminal", WAIT, || {
        let events = json(
            &restored_cli,
            &[
                "audit",
                "list",
                "--json",
                "--action",
                "terminal.close",
                "--outcome",
                "interrupted",
            ],
        );
        (!events.as_array()?.is_empty()).then_some(events)
    });
    assert_eq!(closed[0]["session_id"], open_sid.as_str(), "{closed:#}");
    // Its recording came back with the database: the restored hub replays it.
    let replayed = restored_cli.run(&["replay", &open_sid, "--no-wait"]);
    assert!(replayed.ok().contains("open-42"), "{replayed}");

    // Never over a running hub, never over an existing database.
    let refused = restored.run_hub(&["restore".as_ref(), backup.as_os_str()]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("a hub is running"),
        "{stderr}"
    );
    hub.kill();
    let refused = hub.run_hub(&["restore".as_ref(), backup.as_os_str()]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("hub.db already exists"),
        "{stderr}"
    );
}

#[test]
fn restore_refuses_a_file_that_is_not_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.tar");
    std::fs::write(&bogus, b"not a tar archive at all").unwrap();
    let target = dir.path().join("new-data");
    let mut command = std::process::Command::new(tether_e2e::binary("tether-hub"));
    tether_e2e::hermetic(&mut command);
    command.arg("--data-dir").arg(&target).arg("restore").arg(&bogus);
    let (output, timed_out) = tether_e2e::run_with_deadline(command, None, WAIT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !timed_out && !output.status.success() && stderr.contains("is not a Tether hub backup"),
        "{stderr}"
    );
    assert!(!target.join("hub.db").exists());
}
