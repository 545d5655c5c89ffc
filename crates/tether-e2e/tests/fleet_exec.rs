//! `tether exec --group`: one command across a fleet of 20 real agents in two groups. Each
//! agent's shell is a wrapper that exports the device's name as `FLEET_NAME`, so one command
//! can fail on some devices and not on others. Covered: the summary table and `--json`, a
//! command failing on some devices, `--parallel 1` running the devices one after another in
//! name order, `--output-dir`, devices a user may see but not reach (refused, with the hub's
//! reason) and devices they may not see (never named), approval on demand per device, offline
//! devices, the one `exec.group` audit event besides each device's own, `--timeout`, Ctrl-C.

use std::{
    collections::BTreeMap,
    os::unix::fs::PermissionsExt,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use serde_json::Value;
use tether_e2e::{Agent, Cli, FakeDevice, Hub, Proc, WAIT, stock_terminal_device, wait_for};

/// A hub with its administrator and accepted agents, tagged by group.
struct Fleet {
    hub: Hub,
    alice: Cli,
    agents: Vec<Agent>,
    _shells: tempfile::TempDir,
}

/// Names `{prefix}-00`, `{prefix}-01`... for each `(prefix, tag, count)`.
fn start_fleet(groups: &[(&str, &str, usize)]) -> Fleet {
    let hub = Hub::start_default();
    let alice = hub.user_cli("alice", true);
    let shells = tempfile::tempdir().expect("a directory for the shells");
    let mut agents = Vec::new();
    let mut tags = Vec::new();
    for (prefix, tag, count) in groups {
        for index in 0..*count {
            let name = format!("{prefix}-{index:02}");
            let shell = shells.path().join(format!("shell-{name}"));
            std::fs::write(
                &shell,
                format!("#!/bin/sh\nFLEET_NAME='{name}'\nexport FLEET_NAME\nexec /bin/sh \"$@\"\n"),
            )
            .expect("write a shell wrapper");
            std::fs::set_permissions(&shell, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            let config = format!("[terminal]\nshell = {:?}\n", shell.display().to_string());
            agents.push(Agent::start_named(&hub, &name, &config));
            tags.push((name, tag.to_string()));
        }
    }
    for (name, tag) in &tags {
        alice.device_id_by_name(name);
        alice.run(&["devices", "accept", name]).ok();
        alice.run(&["devices", "set-tags", name, tag]).ok();
    }
    for (name, _) in &tags {
        alice.wait_online(name);
    }
    Fleet {
        hub,
        alice,
        agents,
        _shells: shells,
    }
}

/// `tether exec --group GROUP OPTIONS... -- COMMAND`.
fn group_exec(cli: &Cli, group: &str, options: &[&str], command: &str) -> tether_e2e::CliOutput {
    let mut args = vec!["exec", "--group", group];
    args.extend_from_slice(options);
    args.extend(["--", command]);
    cli.run_for(&args, WAIT * 2)
}

/// The summary table's rows: device name to its other cells (outcome, duration, detail).
fn summary(stdout: &str) -> BTreeMap<String, Vec<String>> {
    let lines: Vec<&str> = stdout.lines().collect();
    let header = lines
        .iter()
        .rposition(|line| line.starts_with("DEVICE") && line.contains("OUTCOME"))
        .unwrap_or_else(|| panic!("no summary table in:\n{stdout}"));
    lines[header + 1..]
        .iter()
        .map(|line| {
            let mut cells = line
                .split("  ")
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .map(str::to_owned);
            let device = cells.next().expect("a device cell");
            (device, cells.collect())
        })
        .collect()
}

/// `--json`'s lines, parsed, by device name.
fn json_reports(stdout: &str) -> BTreeMap<String, Value> {
    stdout
        .lines()
        .map(|line| {
            let report: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
            (
                report["device"].as_str().expect("a device name").to_owned(),
                report,
            )
        })
        .collect()
}

fn names(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|index| format!("{prefix}-{index:02}")).collect()
}

/// `tether audit list --json --all --action ACTION`, parsed.
fn events(cli: &Cli, action: &str) -> Vec<Value> {
    let output = cli.run(&["audit", "list", "--json", "--all", "--action", action]);
    serde_json::from_str(output.ok()).unwrap_or_else(|e| panic!("not JSON ({e}):\n{output}"))
}

/// Exits 3 on the devices whose name ends in an odd digit, after a line of output.
const SOME_FAIL: &str = r#"echo "hello from $FLEET_NAME"; case $FLEET_NAME in *[13579]) exit 3;; esac"#;

#[test]
fn a_command_across_twenty_devices_in_two_groups() {
    let mut fleet = start_fleet(&[("a", "site-a", 10), ("b", "site-b", 10)]);
    let alice = &fleet.alice;

    // One group: every device of it runs the command; some fail; nothing of the other group.
    let output = group_exec(alice, "tag:site-a", &[], SOME_FAIL);
    assert_eq!(output.code, Some(1), "some devices exited 3:\n{output}");
    let rows = summary(&output.stdout);
    assert_eq!(
        rows.keys().cloned().collect::<Vec<_>>(),
        names("a", 10),
        "{output}"
    );
    for (index, name) in names("a", 10).iter().enumerate() {
        assert!(
            output.stdout.contains(&format!("{name}: hello from {name}\n")),
            "{name}'s line, behind its name:\n{output}"
        );
        let expected = if index % 2 == 1 { "exit 3" } else { "exit 0" };
        assert_eq!(rows[name][0], expected, "{name}:\n{output}");
    }
    assert!(!output.stdout.contains("b-0"), "{output}");

    // The run is one audit event naming its devices; each device's run is its own.
    let runs = events(alice, "exec.group");
    let run = runs
        .iter()
        .find(|event| event["object_name"] == "tag:site-a")
        .unwrap_or_else(|| panic!("an exec.group event for tag:site-a: {runs:#?}"));
    assert_eq!(run["object_kind"], "group");
    assert_eq!(run["details"]["command"], SOME_FAIL);
    let named: Vec<&str> = run["details"]["devices"]
        .as_array()
        .expect("the devices")
        .iter()
        .map(|device| device["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(named, names("a", 10), "{run:#}");
    let opened = wait_for("a terminal.open per device", WAIT, || {
        let opened: Vec<String> = events(alice, "terminal.open")
            .iter()
            .filter(|event| event["details"]["command"] == SOME_FAIL)
            .filter_map(|event| event["object_name"].as_str().map(str::to_owned))
            .collect();
        (opened.len() >= 10).then_some(opened)
    });
    let mut opened = opened;
    opened.sort();
    assert_eq!(opened, names("a", 10));

    // Every device, as JSON: one object per device on stdout, the output on stderr.
    let output = group_exec(alice, "*", &["--json"], SOME_FAIL);
    assert_eq!(output.code, Some(1), "{output}");
    let reports = json_reports(&output.stdout);
    assert_eq!(reports.len(), 20, "{output}");
    for (index, name) in names("a", 10).into_iter().chain(names("b", 10)).enumerate() {
        let report = &reports[&name];
        let status = if index % 2 == 1 { 3 } else { 0 };
        assert_eq!(report["outcome"], "exited", "{report}");
        assert_eq!(report["exit_status"], status, "{report}");
        assert!(
            report["device_id"].as_str().is_some_and(|id| !id.is_empty()),
            "{report}"
        );
        assert!(report["duration_ms"].is_u64(), "{report}");
        assert!(
            output.stderr.contains(&format!("{name}: hello from {name}\n")),
            "{output}"
        );
    }

    // One at a time, in name order: each device's lines before the next device's.
    let output = group_exec(
        alice,
        "tag:site-b",
        &["--parallel", "1", "--no-prefix"],
        "echo start $FLEET_NAME; sleep 0.1; echo end $FLEET_NAME",
    );
    assert_eq!(output.code, Some(0), "{output}");
    let expected: Vec<String> = names("b", 10)
        .iter()
        .flat_map(|name| [format!("start {name}"), format!("end {name}")])
        .collect();
    let lines: Vec<&str> = output.stdout.lines().take(20).collect();
    assert_eq!(lines, expected, "{output}");

    // One file per device, stdout and stderr together; the JSON names it.
    let directory = tempfile::tempdir().expect("an output directory");
    let out = directory.path().join("out");
    let output = group_exec(
        alice,
        "tag:site-a",
        &["--output-dir", out.to_str().expect("UTF-8"), "--json"],
        "echo out $FLEET_NAME; echo err $FLEET_NAME >&2",
    );
    assert_eq!(output.code, Some(0), "{output}");
    for (name, report) in json_reports(&output.stdout) {
        let file = report["output_file"].as_str().expect("an output file").to_owned();
        assert_eq!(Path::new(&file), out.join(format!("{name}.out")));
        let text = std::fs::read_to_string(&file).expect("the output file");
        assert!(
            text.contains(&format!("out {name}\n")) && text.contains(&format!("err {name}\n")),
            "{text}"
        );
    }
    assert!(
        !output.stderr.contains("out a-"),
        "nothing on the terminal:\n{output}"
    );

    // A user who may see every device but reach only group A: B is refused, with the reason.
    fleet.hub.add_user("bob", false, "pw-bob-correct-horse");
    let grants = r#"{"grants":[{"role":"operator","scope":"tag:site-a"},{"role":"auditor","scope":"*"}]}"#;
    let bearer = format!("Bearer {}", alice.token());
    let headers = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    let (status, body) = fleet.hub.request(
        "PUT",
        "/api/management/v1/users/bob/roles",
        &headers,
        grants.as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let bob = fleet.hub.cli();
    bob.login("bob", "pw-bob-correct-horse");
    let output = group_exec(&bob, "*", &[], "echo hi");
    assert_eq!(output.code, Some(1), "{output}");
    let rows = summary(&output.stdout);
    assert_eq!(rows.len(), 20, "{output}");
    for name in names("a", 10) {
        assert_eq!(rows[&name][0], "exit 0", "{output}");
    }
    for name in names("b", 10) {
        assert_eq!(rows[&name][0], "refused", "{output}");
        assert!(rows[&name][2].contains("may not"), "the hub's reason:\n{output}");
    }

    // A user of group A only never hears of group B's devices.
    let carol = fleet
        .hub
        .user_cli_with("carol", &["--role", "operator", "--group", "tag:site-a"]);
    let output = group_exec(&carol, "*", &[], "echo hi");
    assert_eq!(output.code, Some(0), "{output}");
    assert_eq!(summary(&output.stdout).len(), 10, "{output}");
    let output = group_exec(&carol, "tag:site-b", &[], "echo hi");
    assert_eq!(output.code, Some(1), "{output}");
    assert!(
        output.stderr.contains("no accepted device in tag:site-b"),
        "{output}"
    );
    assert!(
        !format!("{}{}", output.stdout, output.stderr).contains("b-0"),
        "{output}"
    );

    // Approval on demand applies per device: on b-09 nobody has standing access.
    alice
        .run(&["access", "require", &alice.device_id_by_name("b-09")])
        .ok();
    let output = group_exec(alice, "tag:site-b", &[], "echo hi");
    assert_eq!(output.code, Some(1), "{output}");
    let rows = summary(&output.stdout);
    assert_eq!(rows["b-09"][0], "refused", "{output}");
    assert_eq!(rows["b-08"][0], "exit 0", "{output}");

    // Offline devices are reported as such; the others still run.
    for agent in fleet
        .agents
        .iter_mut()
        .filter(|agent| ["a-08", "a-09"].contains(&agent.name.as_str()))
    {
        agent.kill();
    }
    for name in ["a-08", "a-09"] {
        alice.wait_device(name, "offline", |device| !device.online);
    }
    let output = group_exec(alice, "tag:site-a", &[], "echo hi");
    assert_eq!(output.code, Some(1), "{output}");
    let rows = summary(&output.stdout);
    assert_eq!(rows["a-08"][0], "offline", "{output}");
    assert_eq!(rows["a-09"][0], "offline", "{output}");
    assert_eq!(rows["a-07"][0], "exit 0", "{output}");
}

#[test]
fn timeouts_and_ctrl_c_stop_the_commands() {
    let fleet = start_fleet(&[("t", "slow", 3)]);
    let alice = &fleet.alice;
    // And a device of the group without a tether-agent.
    let fake = FakeDevice::named(&fleet.hub, "t-03");
    fake.authenticate(None);
    alice.device_id_by_name("t-03");
    alice.run(&["devices", "accept", "t-03"]).ok();
    alice.run(&["devices", "set-tags", "t-03", "slow"]).ok();
    let token = fake.token(None);
    let stop = Arc::new(AtomicBool::new(false));
    let stock = stock_terminal_device(fake, token, stop.clone());
    alice.wait_online("t-03");

    // --timeout stops the command on the device that takes too long.
    let output = group_exec(
        alice,
        "tag:slow",
        &["--timeout", "3"],
        "case $FLEET_NAME in t-01) sleep 120;; esac; echo done",
    );
    assert_eq!(output.code, Some(1), "{output}");
    let rows = summary(&output.stdout);
    assert_eq!(rows["t-00"][0], "exit 0", "{output}");
    assert_eq!(rows["t-01"][0], "timed out", "{output}");
    assert_eq!(rows["t-02"][0], "exit 0", "{output}");
    assert_eq!(rows["t-03"][0], "no tether-agent", "{output}");

    // Ctrl-C stops every running command, then the summary says so.
    let command = alice.command(&[
        "exec",
        "--group",
        "tag:slow",
        "--",
        "echo started $FLEET_NAME; sleep 120",
    ]);
    let directory = tempfile::tempdir().expect("a log directory");
    let mut run = Proc::spawn("fleet-exec", command, directory.path());
    wait_for("every device to start", WAIT, || {
        (run.stdout().matches("started t-").count() == 3).then_some(())
    });
    run.signal(libc::SIGINT);
    let status = run
        .wait_exit(WAIT)
        .unwrap_or_else(|| panic!("the CLI did not stop:\n{}", run.logs()));
    assert_eq!(status.code(), Some(130), "{}", run.logs());
    let rows = summary(&run.stdout());
    assert_eq!(rows.len(), 4, "{}", run.logs());
    for name in names("t", 3) {
        assert_eq!(rows[&name][0], "interrupted", "{}", run.logs());
    }
    stop.store(true, Ordering::Relaxed);
    stock.join().expect("the stock device's thread");
}
