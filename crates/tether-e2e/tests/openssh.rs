//! OpenSSH through Tether: `ssh`, `scp`, `sftp`, `rsync` and Ansible reach a real `sshd` on the
//! device's loopback as `NAME.tether`, through the block `tether ssh-config` prints (its
//! ProxyCommand is `tether proxy`); a target outside the device's allow-list is refused; a
//! proxied connection is audited as a forward, with the same details as a `port-forward` one.
//!
//! One hub, two agents and one sshd are shared by the tests of this file (started by the first
//! test that needs them, stopped when the last one holding them ends). Each test works in its
//! own temporary directory and only reads what it wrote, so the tests stay independent.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use serde_json::Value;
use tempfile::TempDir;
use tether_e2e::{
    Agent, Cli, Hub, PortForward, StockForwarder, ToolRun, WAIT, hermetic,
    peers::{Sshd, TcpEcho, deterministic_bytes, sha256_bytes, sha256_file, write_deterministic_file},
    run_tool, run_with_deadline, wait_for,
};

/// How long one run of a tool may take before the test gives up on it (a loaded machine).
const TOOL_LIMIT: Duration = Duration::from_secs(120);

/// What the tests share: a hub, an admin CLI, two devices whose allow-list holds the sshd and
/// an echo server, and the ssh configuration built from `tether ssh-config`.
struct Fleet {
    sshd: Sshd,
    /// Allowed: the audit test's target.
    echo: TcpEcho,
    /// Not in the allow-list.
    denied: TcpEcho,
    cli: Cli,
    devices: Vec<Agent>,
    /// The printed block.
    printed: String,
    /// The block plus what the tests need (identity, no known-hosts), for `ssh -F`.
    ssh_config: PathBuf,
    hub: Hub,
    _dir: TempDir,
}

impl Fleet {
    fn host(&self, index: usize) -> String {
        format!("{}.tether", self.devices[index].name)
    }

    /// `PROGRAM` (ssh, scp, sftp, rsync, ansible...) without the developer's Tether settings.
    fn tool(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        hermetic(&mut command);
        command
    }

    /// `ssh -F CONFIG`, the way every OpenSSH tool of these tests is pointed at the block.
    fn ssh(&self) -> Command {
        let mut command = self.tool("ssh");
        command.arg("-F").arg(&self.ssh_config);
        command
    }

    fn logs(&self) -> String {
        let agents: Vec<String> = self.devices.iter().map(Agent::log).collect();
        format!(
            "--- ssh config ---\n{}\n--- sshd ---\n{}\n--- agents ---\n{}",
            std::fs::read_to_string(&self.ssh_config).unwrap_or_default(),
            self.sshd.log(),
            agents.join("\n---\n")
        )
    }
}

/// The shared fleet, started on first use; `None` when sshd is not installed.
fn fleet() -> Option<Arc<Fleet>> {
    static SHARED: Mutex<Weak<Fleet>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(fleet) = shared.upgrade() {
        return Some(fleet);
    }
    let fleet = Arc::new(start_fleet()?);
    *shared = Arc::downgrade(&fleet);
    Some(fleet)
}

fn start_fleet() -> Option<Fleet> {
    let sshd = Sshd::start()?;
    let echo = TcpEcho::start();
    let denied = TcpEcho::start();
    let hub = Hub::start_default();
    let cli = hub.user_cli("alice", true);
    let agent_toml = format!(
        "[port_forward]\nenabled = true\nallow = [\"127.0.0.1:{}\", \"127.0.0.1:{}\"]\n",
        sshd.port,
        echo.port()
    );
    let devices: Vec<Agent> = (0..2).map(|_| Agent::start(&hub, &agent_toml)).collect();
    for device in &devices {
        cli.accept(&device.name);
    }
    let port = sshd.port.to_string();
    let printed = cli
        .run(&["ssh-config", "--user", &sshd.user, "--port", &port])
        .ok()
        .to_owned();
    let dir = tempfile::Builder::new()
        .prefix("tether-e2e-openssh-")
        .tempdir()
        .expect("temp dir");
    // ssh takes the first value it finds for each option: the printed block comes first.
    let ssh_config = dir.path().join("ssh_config");
    let extra = format!(
        "\nHost *\n    IdentityFile {}\n    IdentitiesOnly yes\n    BatchMode yes\n    \
         StrictHostKeyChecking no\n    UserKnownHostsFile /dev/null\n    LogLevel ERROR\n",
        sshd.client_key.display()
    );
    std::fs::write(&ssh_config, format!("{printed}{extra}")).expect("ssh_config");
    Some(Fleet {
        sshd,
        echo,
        denied,
        cli,
        devices,
        printed,
        ssh_config,
        hub,
        _dir: dir,
    })
}

fn run(command: Command, stdin: Option<&[u8]>) -> ToolRun {
    run_tool(command, stdin, TOOL_LIMIT)
}

#[test]
fn the_printed_block_proxies_every_name_dot_tether_through_this_binary() {
    let Some(fleet) = fleet() else { return };
    let printed = &fleet.printed;
    assert!(printed.contains("\nHost *.tether\n"), "{printed}");
    let proxy_line = printed
        .lines()
        .find(|line| line.trim_start().starts_with("ProxyCommand "))
        .unwrap_or_else(|| panic!("no ProxyCommand in:\n{printed}"));
    let tether = tether_e2e::binary("tether");
    assert!(
        proxy_line.contains(&format!(" {} ", tether.display())),
        "the ProxyCommand runs this tether by its absolute path: {proxy_line}"
    );
    assert!(proxy_line.ends_with(" proxy %n %p"), "{proxy_line}");
    assert!(
        proxy_line.contains(&format!("TETHER_CONFIG_DIR={}", fleet.cli.config_dir().display())),
        "the ProxyCommand uses the same stored login: {proxy_line}"
    );
    assert!(
        proxy_line.contains(&format!("--hub {}", fleet.cli.hub_url)),
        "{proxy_line}"
    );
    assert!(
        printed.contains(&format!("    User {}\n", fleet.sshd.user)),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("    Port {}\n", fleet.sshd.port)),
        "{printed}"
    );
}

#[test]
fn ssh_runs_a_command_on_each_device_and_returns_its_exit_status() {
    let Some(fleet) = fleet() else { return };
    for index in 0..2 {
        let mut ssh = fleet.ssh();
        ssh.arg(fleet.host(index)).arg("echo through-$((6*7)); exit 3");
        let run = run(ssh, None);
        assert_eq!(
            run.code,
            Some(3),
            "ssh should exit with the remote command's status\n{}\n{}\n{}",
            run.stdout,
            run.stderr,
            fleet.logs()
        );
        assert_eq!(run.stdout, "through-42\n");
    }
    // With the user written out, as people type it.
    let mut ssh = fleet.ssh();
    ssh.arg(format!("{}@{}", fleet.sshd.user, fleet.host(1)))
        .arg("id -un");
    let run = run(ssh, None);
    assert_eq!(
        run.ok("ssh user@host", || fleet.logs()),
        format!("{}\n", fleet.sshd.user)
    );
}

#[test]
fn scp_copies_both_ways_and_the_checksums_match() {
    let Some(fleet) = fleet() else { return };
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("firmware.bin");
    write_deterministic_file(&local, 0x5c9, 3 * 1024 * 1024 + 17);
    // The device's side is this machine's file system (sshd runs here).
    let remote_dir = work.path().join("remote");
    std::fs::create_dir(&remote_dir).unwrap();
    let config = fleet.ssh_config.clone();

    let mut upload = fleet.tool("scp");
    upload
        .arg("-F")
        .arg(&config)
        .arg(&local)
        .arg(format!("{}:{}/", fleet.host(0), remote_dir.display()));
    run(upload, None).ok("scp upload", || fleet.logs());
    let uploaded = remote_dir.join("firmware.bin");
    assert_eq!(sha256_file(&uploaded), sha256_file(&local));

    let back = work.path().join("back.bin");
    let mut download = fleet.tool("scp");
    download
        .arg("-F")
        .arg(&config)
        .arg(format!("{}:{}", fleet.host(1), uploaded.display()))
        .arg(&back);
    run(download, None).ok("scp download", || fleet.logs());
    assert_eq!(sha256_file(&back), sha256_file(&local));
}

#[test]
fn sftp_runs_a_batch() {
    let Some(fleet) = fleet() else { return };
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("config.txt");
    std::fs::write(&local, "mode = pump\n").unwrap();
    let remote = work.path().join("remote");
    std::fs::create_dir(&remote).unwrap();
    let back = work.path().join("back.txt");
    let batch = work.path().join("batch");
    std::fs::write(
        &batch,
        format!(
            "cd {remote}\nmkdir etc\nput {local} etc/config.txt\nrename etc/config.txt etc/pump.conf\n\
             ls etc\nget etc/pump.conf {back}\n",
            remote = remote.display(),
            local = local.display(),
            back = back.display()
        ),
    )
    .unwrap();
    let mut sftp = fleet.tool("sftp");
    sftp.arg("-F")
        .arg(&fleet.ssh_config)
        .arg("-b")
        .arg(&batch)
        .arg(fleet.host(0));
    let run = run(sftp, None);
    let listing = run.ok("sftp -b", || fleet.logs());
    assert!(
        listing.contains("pump.conf"),
        "the batch's ls shows the file:\n{listing}"
    );
    assert_eq!(
        std::fs::read_to_string(remote.join("etc/pump.conf")).unwrap(),
        "mode = pump\n"
    );
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "mode = pump\n");
}

/// `rsync -a -i -e "ssh -F CONFIG" SOURCE/ HOST:DESTINATION/`; returns the itemized changes.
fn rsync(fleet: &Fleet, source: &Path, host: &str, destination: &Path) -> String {
    let mut rsync = fleet.tool("rsync");
    rsync
        .args(["-a", "--itemize-changes", "-e"])
        .arg(format!("ssh -F {}", fleet.ssh_config.display()))
        .arg(format!("{}/", source.display()))
        .arg(format!("{host}:{}/", destination.display()));
    run(rsync, None).ok("rsync", || fleet.logs()).to_owned()
}

/// The files (not directories) an itemized rsync run sent (`<f...` lines).
fn transferred_files(itemized: &str) -> Vec<String> {
    itemized
        .lines()
        .filter(|line| line.starts_with("<f"))
        .filter_map(|line| line.split_once(' ').map(|(_, path)| path.trim().to_owned()))
        .collect()
}

#[test]
fn rsync_sends_a_tree_then_only_the_changed_file() {
    let Some(fleet) = fleet() else { return };
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("site");
    let files = [
        "index.html",
        "css/site.css",
        "js/app.js",
        "img/logo.bin",
        "img/icons/a.bin",
    ];
    for (seed, file) in files.iter().enumerate() {
        let path = source.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        write_deterministic_file(&path, seed as u64, 20_000 + seed as u64 * 1_000);
    }
    let destination = work.path().join("deployed");

    let first = rsync(&fleet, &source, &fleet.host(0), &destination);
    let mut sent = transferred_files(&first);
    sent.sort();
    let mut expected: Vec<String> = files.iter().map(|f| f.to_string()).collect();
    expected.sort();
    assert_eq!(sent, expected, "the first run sends every file:\n{first}");

    // A different size, so that rsync's quick check sees the change whatever the clock says.
    write_deterministic_file(&source.join("js/app.js"), 99, 30_001);
    let second = rsync(&fleet, &source, &fleet.host(0), &destination);
    assert_eq!(
        transferred_files(&second),
        ["js/app.js"],
        "the second run sends only the changed file:\n{second}"
    );
    for file in files {
        assert_eq!(
            sha256_file(&destination.join(file)),
            sha256_file(&source.join(file)),
            "{file} differs after the second run"
        );
    }
}

/// The Python Ansible runs its modules with on the "device" (this machine, through sshd): the
/// system's, since discovery may pick a version-manager shim that sshd's environment lacks.
fn python_on_the_device() -> &'static str {
    ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|path| Path::new(path).is_file())
        .unwrap_or("auto_silent")
}

#[test]
fn ansible_pings_two_devices_and_runs_a_playbook() {
    let Some(fleet) = fleet() else { return };
    let work = tempfile::tempdir().unwrap();
    let inventory = work.path().join("inventory.ini");
    std::fs::write(
        &inventory,
        format!(
            "[devices]\n{}\n{}\n\n[devices:vars]\nansible_ssh_common_args=-F {}\n\
             ansible_python_interpreter={}\n",
            fleet.host(0),
            fleet.host(1),
            fleet.ssh_config.display(),
            python_on_the_device()
        ),
    )
    .unwrap();
    let out = work.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let playbook = work.path().join("playbook.yml");
    std::fs::write(
        &playbook,
        format!(
            "- hosts: devices\n  gather_facts: false\n  tasks:\n\
             \x20   - name: write a file named after the device\n\
             \x20     ansible.builtin.copy:\n\
             \x20       content: \"{{{{ inventory_hostname }}}}\\n\"\n\
             \x20       dest: \"{out}/{{{{ inventory_hostname }}}}.txt\"\n\
             \x20   - name: read it back\n\
             \x20     ansible.builtin.command: cat {out}/{{{{ inventory_hostname }}}}.txt\n\
             \x20     register: back\n\
             \x20     changed_when: false\n\
             \x20     failed_when: back.stdout != inventory_hostname\n",
            out = out.display()
        ),
    )
    .unwrap();
    let ansible = |program: &str| {
        let mut command = fleet.tool(program);
        // No lingering control masters; Ansible's temporary files in the test's directory.
        command
            .env("ANSIBLE_SSH_ARGS", "-o ControlMaster=no")
            .env("ANSIBLE_HOST_KEY_CHECKING", "False")
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_LOCAL_TEMP", work.path().join("local-tmp"))
            .env("ANSIBLE_REMOTE_TEMP", work.path().join("remote-tmp"))
            .env("ANSIBLE_CONFIG", work.path().join("none.cfg"))
            .arg("-i")
            .arg(&inventory);
        command
    };
    let Ok(_) = Command::new("ansible").arg("--version").output() else {
        eprintln!("note: ansible is not installed (PyPI: ansible-core); skipping");
        return;
    };

    let mut ping = ansible("ansible");
    ping.args(["devices", "-m", "ping"]);
    let ping = run(ping, None);
    let pinged = ping.ok("ansible -m ping", || fleet.logs());
    for index in 0..2 {
        assert!(
            pinged.contains(&format!("{} | SUCCESS", fleet.host(index))),
            "{pinged}"
        );
    }
    assert_eq!(pinged.matches("\"pong\"").count(), 2, "{pinged}");

    let mut play = ansible("ansible-playbook");
    play.arg(&playbook);
    let play = run(play, None);
    let recap = play.ok("ansible-playbook", || fleet.logs());
    for index in 0..2 {
        let host = fleet.host(index);
        let line = recap
            .lines()
            .find(|line| line.starts_with(&host) && line.contains("ok="))
            .unwrap_or_else(|| panic!("no recap for {host}:\n{recap}"));
        assert!(line.contains("ok=2") && line.contains("failed=0"), "{line}");
        assert_eq!(
            std::fs::read_to_string(out.join(format!("{host}.txt"))).unwrap(),
            format!("{host}\n")
        );
    }
}

#[test]
fn a_target_outside_the_allow_list_is_refused_and_never_dialled() {
    let Some(fleet) = fleet() else { return };
    let denied = fleet.denied.port().to_string();
    let device = fleet.host(0);
    let refused = fleet
        .cli
        .run_with_stdin(&["proxy", &device, &denied], Some("let me in"));
    assert_eq!(refused.code, Some(1), "{refused}");
    assert!(
        refused.stdout.is_empty(),
        "nothing but relayed bytes on stdout: {refused}"
    );
    let needle = format!("{} refused 127.0.0.1:{denied}", fleet.devices[0].name);
    assert!(refused.stderr.contains(&needle), "{refused}");
    assert!(
        refused.stderr.contains("port_forward.allow"),
        "the rule is named: {refused}"
    );

    // Through ssh: ssh fails (255) and shows the proxy's reason.
    let mut ssh = fleet.ssh();
    ssh.args(["-p", &denied]).arg(&device).arg("true");
    let run = run(ssh, None);
    assert_eq!(run.code, Some(255), "{}", run.stderr);
    assert!(run.stderr.contains("port_forward.allow"), "{}", run.stderr);
    assert_eq!(fleet.denied.accepted(), 0, "the device dialled a refused target");

    // A device that does not exist: refused by name, before any session.
    let unknown = fleet.cli.run(&["proxy", "no-such-device.tether", "22"]);
    assert_eq!(unknown.code, Some(1), "{unknown}");
    assert!(unknown.stdout.is_empty(), "{unknown}");
    assert!(unknown.stderr.contains("no-such-device"), "{unknown}");
}

/// The audit events of `action` whose target is `target`.
fn forward_events(cli: &Cli, action: &str, target: &str) -> Vec<Value> {
    let output = cli.run(&["audit", "list", "--json", "--all", "--action", action]);
    let events: Vec<Value> = serde_json::from_str(output.ok())
        .unwrap_or_else(|e| panic!("`audit list --json` is not a JSON array: {e}\n{output}"));
    events
        .into_iter()
        .filter(|event| event["details"]["target"] == target)
        .collect()
}

fn detail_names(event: &Value) -> Vec<String> {
    let mut names: Vec<String> = event["details"]
        .as_object()
        .map(|details| details.keys().cloned().collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_proxied_connection_is_audited_as_a_forward_like_port_forward() {
    let Some(fleet) = fleet() else { return };
    let target = format!("127.0.0.1:{}", fleet.echo.port());
    let port = fleet.echo.port().to_string();
    let name = &fleet.devices[1].name;

    // The end of stdin is a half-close: the echo still comes back, then both sides close.
    let proxied = fleet
        .cli
        .run_with_stdin(&["proxy", &fleet.host(1), &port], Some("audited bytes"));
    assert_eq!(proxied.ok(), "audited bytes", "{proxied}");
    let close = wait_for("the proxied connection's port_forward.close", WAIT, || {
        let events = forward_events(&fleet.cli, "port_forward.close", &target);
        (!events.is_empty()).then_some(events)
    });
    assert_eq!(close.len(), 1, "{close:#?}");
    let close = &close[0];
    assert_eq!(close["actor_kind"], "user", "{close:#}");
    assert_eq!(close["actor_name"], "alice", "{close:#}");
    assert_eq!(close["object_kind"], "device", "{close:#}");
    assert_eq!(close["object_name"], name.as_str(), "{close:#}");
    assert_eq!(close["details"]["protocol"], "tcp", "{close:#}");
    assert_eq!(close["details"]["bytes_to_device"], 13, "{close:#}");
    assert_eq!(close["details"]["bytes_from_device"], 13, "{close:#}");
    let open = forward_events(&fleet.cli, "port_forward.open", &target);
    assert_eq!(open.len(), 1, "{open:#?}");
    assert_eq!(open[0]["outcome"], "success", "{open:#?}");
    assert_eq!(open[0]["session_id"], close["session_id"], "{open:#?}");

    // The same connection through `tether port-forward` is recorded with the same details.
    let forward = PortForward::start(&fleet.cli, name, &[&format!("0:{target}")], &[]);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", forward.local_port(0))).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    std::io::Write::write_all(&mut stream, b"audited bytes").unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::new();
    std::io::Read::read_to_end(&mut stream, &mut back).unwrap();
    assert_eq!(back, b"audited bytes");
    let closes = wait_for("the port-forward's port_forward.close", WAIT, || {
        let events = forward_events(&fleet.cli, "port_forward.close", &target);
        (events.len() >= 2).then_some(events)
    });
    let forwarded = closes
        .iter()
        .find(|event| event["session_id"] != close["session_id"])
        .expect("the port-forward's event");
    assert_eq!(
        detail_names(forwarded),
        detail_names(close),
        "{forwarded:#}\n{close:#}"
    );
    assert_eq!(forwarded["details"]["bytes_from_device"], 13, "{forwarded:#}");
    let opens = forward_events(&fleet.cli, "port_forward.open", &target);
    assert_eq!(opens.len(), 2, "{opens:#?}");
    assert_eq!(detail_names(&opens[0]), detail_names(&opens[1]), "{opens:#?}");
}

#[test]
fn ssh_works_through_a_stock_protocol_1_device() {
    let Some(fleet) = fleet() else { return };
    let stock = StockForwarder::start(&fleet.hub, &fleet.cli);
    let host = format!("{}.tether", stock.name);

    let mut ssh = fleet.ssh();
    ssh.arg(&host).arg("echo stock-$((6*7)); exit 5");
    let status = run(ssh, None);
    assert_eq!(status.code, Some(5), "{}\n{}", status.stderr, fleet.logs());
    assert_eq!(status.stdout, "stock-42\n");

    // Bytes both ways, in many 4 KiB forwards with one in flight: up through stdin, back as a
    // checksum; then down from a file.
    let input = deterministic_bytes(0x51, 300_000);
    let mut ssh = fleet.ssh();
    ssh.arg(&host).arg("sha256sum");
    let checksum = run(ssh, Some(&input));
    let digest = checksum.ok("ssh sha256sum through the stock device", || fleet.logs());
    assert_eq!(
        digest.split_whitespace().next(),
        Some(sha256_bytes(&input).as_str())
    );
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("log.bin");
    write_deterministic_file(&file, 0x52, 200_000);
    let mut ssh = fleet.ssh();
    ssh.arg(&host).arg(format!("cat {}", file.display()));
    let (output, timed_out) = run_with_deadline(ssh, None, TOOL_LIMIT);
    assert!(!timed_out && output.status.success(), "{output:?}");
    assert_eq!(sha256_bytes(&output.stdout), sha256_file(&file));
    assert_eq!(
        stock.violations(),
        Vec::<String>::new(),
        "version 1's flow control was broken"
    );

    // Once the device is gone, the proxy is refused by the hub, with the reason.
    let name = stock.name.clone();
    drop(stock);
    fleet.cli.wait_device(&name, "offline", |device| !device.online);
    let offline = fleet.cli.run(&["proxy", &host, "22"]);
    assert_eq!(offline.code, Some(1), "{offline}");
    assert!(offline.stdout.is_empty(), "{offline}");
    assert!(
        offline.stderr.contains(&format!("device {name} is offline")),
        "{offline}"
    );
}
