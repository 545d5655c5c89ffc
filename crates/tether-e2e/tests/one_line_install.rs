//! The one-line install: `tether devices install-command` prints a line that, pasted on a device
//! with nothing but `sh`, `curl`, `sha256sum` and the basic file tools, downloads the agent from
//! the hub (pinned to the hub's public key), checks its SHA-256, writes the configuration (0600)
//! and starts the agent, which enrols with a one-time token and gets the token's tags. Used-up,
//! expired and revoked tokens are refused with a clear message; a binary whose hash does not
//! match is not installed.
//!
//! Where network namespaces are available (root, `ip netns`), the line runs inside one, as on a
//! device of its own: it reaches the hub only through the namespace's link (a relay on the host
//! end), with a PATH of nothing but the tools below and an empty environment.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use tempfile::TempDir;
use tether_e2e::{Cli, FaultProxy, Hub, HubOptions, Namespace, Proc, binary, unique_name, wait_for};

/// The programs the install line may use: nothing else is on its PATH.
const TOOLS: &[&str] = &["sh", "curl", "sha256sum", "uname", "mkdir", "chmod", "mv", "rm"];

/// A hub serving the debug agent as the x86_64 build, and a logged-in administrator.
struct Setup {
    /// Holds agents_dir and the restricted PATH; kept for the test's duration.
    dir: TempDir,
    hub: Hub,
    cli: Cli,
    /// The device's own network, when namespaces are available.
    network: Option<DeviceNetwork>,
}

/// A network namespace for the device, and the relay on its link's host end to the hub.
struct DeviceNetwork {
    // Field order matters: the relay goes before its namespace's link.
    relay: FaultProxy,
    namespace: Namespace,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let agents = dir.path().join("agents");
        std::fs::create_dir(&agents).unwrap();
        std::fs::copy(binary("tether-agent"), agents.join("tether-agent-x86_64-linux"))
            .expect("copy the agent binary into agents_dir");
        let tools = dir.path().join("tools");
        std::fs::create_dir(&tools).unwrap();
        for tool in TOOLS {
            let real = find_program(tool);
            std::os::unix::fs::symlink(&real, tools.join(tool)).unwrap();
        }
        let hub = Hub::start(
            HubOptions::default().config(&format!("agents_dir = {:?}", agents.display().to_string())),
        );
        let cli = hub.user_cli("admin", true);
        let network = match Namespace::unavailable() {
            Some(why) => {
                eprintln!("no network namespace ({why}): the line runs on this host's network");
                None
            }
            None => {
                let namespace = Namespace::create().expect("a network namespace with a veth link");
                let hub_address = format!("127.0.0.1:{}", hub.port).parse().expect("hub address");
                let relay = FaultProxy::start_on(namespace.host_address.into(), hub_address);
                Some(DeviceNetwork { relay, namespace })
            }
        };
        Setup {
            dir,
            hub,
            cli,
            network,
        }
    }

    /// The hub's URL as the device reaches it.
    fn hub_url(&self) -> String {
        match &self.network {
            Some(network) => network.relay.url(),
            None => self.hub.url.clone(),
        }
    }

    fn agents_dir(&self) -> PathBuf {
        self.dir.path().join("agents")
    }

    /// `tether devices install-command ARGS...`: the line it prints.
    fn install_line(&self, args: &[&str]) -> String {
        let hub_url = self.hub_url();
        let mut full = vec!["devices", "install-command", "--hub-url", &hub_url];
        full.extend_from_slice(args);
        let output = self.cli.run(&full);
        let line = output.ok().trim().to_owned();
        assert!(
            line.starts_with("curl ") && line.contains("| sh -s -- --token "),
            "{output}"
        );
        assert_eq!(line.lines().count(), 1, "one line: {output}");
        line
    }

    /// Runs `line` followed by `extra` in a shell whose PATH holds only [`TOOLS`] and whose
    /// environment is otherwise empty.
    fn command(&self, line: &str, extra: &str) -> Command {
        let mut command = match &self.network {
            Some(network) => {
                let mut command = Command::new(find_program("ip"));
                command.args(["netns", "exec", &network.namespace.name, "/bin/sh"]);
                command
            }
            None => Command::new("/bin/sh"),
        };
        command
            .arg("-c")
            .arg(format!("{line} {extra}"))
            .env_clear()
            .env("PATH", self.dir.path().join("tools"))
            .env("RUST_LOG", "info");
        command
    }

    /// Runs the line to completion (`--no-start` installs, or refusals by the script).
    fn run(&self, line: &str, extra: &str) -> std::process::Output {
        let output = self.command(line, extra).output().expect("run the install line");
        eprintln!(
            "install line {extra}: {}\nstdout:\n{}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Runs the line with `--foreground`: the shell becomes the agent, owned by the returned guard.
    fn start(&self, line: &str, prefix: &Path, name: &str) -> Proc {
        let extra = format!("--prefix {} --name {name} --foreground", prefix.display());
        Proc::spawn(name, self.command(line, &extra), self.dir.path())
    }
}

fn find_program(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/bin", "/usr/local/bin", "/usr/sbin", "/sbin"] {
        let path = Path::new(dir).join(name);
        if path.is_file() {
            return path;
        }
    }
    panic!("{name} is needed by the install script and is not installed");
}

fn token_of(line: &str) -> String {
    let rest = line.split("--token '").nth(1).expect("the line carries a token");
    rest.split('\'').next().unwrap().to_owned()
}

/// Waits until the process's output (the script, then the agent) contains `needle`.
fn wait_log(process: &Proc, needle: &str) -> String {
    wait_for(
        &format!("the install log to say {needle:?}"),
        Duration::from_secs(60),
        || {
            let logs = process.logs();
            logs.contains(needle).then_some(logs)
        },
    )
}

#[test]
fn the_printed_line_installs_an_agent_that_enrols_with_its_tags() {
    let setup = Setup::new();
    let line = setup.install_line(&["--tag", "site-a"]);
    assert!(
        line.contains("--pinnedpubkey 'sha256//"),
        "the first download is pinned too: {line}"
    );

    let prefix = tempfile::tempdir().unwrap();
    let name = unique_name("installed");
    let agent = setup.start(&line, prefix.path(), &name);
    wait_log(&agent, "installed ");

    // Installed, with its configuration private (it holds the token).
    let installed = prefix.path().join("bin/tether-agent");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(setup.agents_dir().join("tether-agent-x86_64-linux")).unwrap()
    );
    let config = prefix.path().join("etc/tether/agent.toml");
    let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "agent.toml must be 0600");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains(&format!("enrolment_token = \"{}\"", token_of(&line))),
        "{text}"
    );
    assert!(
        text.contains(&format!("hubs = [\"{}\"]", setup.hub_url())),
        "{text}"
    );
    assert!(text.contains("hub_fingerprint = \"sha256:"), "{text}");
    assert!(text.contains("tags = \"site-a\""), "{text}");

    // Accepted on first contact, with the token's tag; it answers exec.
    let device = setup.cli.wait_online(&name);
    assert_eq!(device.tags, ["site-a"], "{device:#?}");
    let output =
        setup
            .cli
            .exec_when_ready(&name, &["echo", "installed-by-one-line"], Duration::from_secs(30));
    assert_eq!(output.ok(), "installed-by-one-line\n");

    // Once accepted, the device never spends its token again: without its saved device token it
    // authenticates afresh, presenting the used-up enrolment token, and is still let in.
    drop(agent);
    std::fs::remove_file(prefix.path().join("var/lib/tether-agent/token"))
        .expect("the agent saved its device token");
    let mut again = Command::new(&installed);
    again
        .arg("--config")
        .arg(&config)
        .env_clear()
        .env("RUST_LOG", "info");
    let agent = Proc::spawn(&format!("{name}-again"), again, setup.dir.path());
    wait_log(&agent, "authenticated with");
    let output = setup
        .cli
        .exec_when_ready(&name, &["echo", "still-in"], Duration::from_secs(30));
    assert_eq!(output.ok(), "still-in\n");

    // The token is spent: a second device using the same line is refused and stays pending.
    let second_prefix = tempfile::tempdir().unwrap();
    let second_name = unique_name("second");
    let second = setup.start(&line, second_prefix.path(), &second_name);
    let logs = wait_log(&second, "used up");
    assert!(logs.contains("the device stays pending"), "{logs}");
    let pending = setup.cli.wait_device(&second_name, "listed", |_| true);
    assert_eq!(pending.status, "pending", "{pending:#?}");
    assert!(pending.tags.is_empty(), "{pending:#?}");

    // Listed with its use, never with its secret; creation and uses are audited.
    let listed = setup.cli.run(&["devices", "install-tokens", "list", "--json"]);
    let tokens: serde_json::Value = serde_json::from_str(listed.ok()).unwrap();
    assert_eq!(tokens[0]["uses"], 1, "{tokens:#}");
    assert_eq!(tokens[0]["tags"], serde_json::json!(["site-a"]), "{tokens:#}");
    assert!(
        !listed.stdout.contains(&token_of(&line)),
        "the list must not show the token"
    );
    let audit = setup.cli.run(&["audit", "list", "--json"]).ok().to_owned();
    for action in ["install_token.create", "install_token.use"] {
        assert!(audit.contains(action), "no {action} in the audit log:\n{audit}");
    }
    assert!(audit.contains("used up"), "the refused use is audited:\n{audit}");
    assert!(
        !audit.contains(&token_of(&line)),
        "the token must never reach the audit log"
    );
    assert!(
        !setup.hub.log().contains(&token_of(&line)),
        "the token must never be logged"
    );
    drop(agent);
    drop(second);
}

#[test]
fn expired_and_revoked_tokens_are_refused() {
    let setup = Setup::new();

    let expired = setup.install_line(&["--expires", "1s"]);
    let listed = setup.cli.run(&["devices", "install-tokens", "list", "--json"]);
    let tokens: serde_json::Value = serde_json::from_str(listed.ok()).unwrap();
    let expires_at = tokens[0]["expires_at"].as_i64().unwrap();
    wait_for("the token to expire", Duration::from_secs(30), || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        (now > expires_at + 1).then_some(())
    });
    let prefix = tempfile::tempdir().unwrap();
    let name = unique_name("expired");
    let agent = setup.start(&expired, prefix.path(), &name);
    let logs = wait_log(&agent, "has expired");
    assert!(logs.contains("the device stays pending"), "{logs}");
    assert_eq!(setup.cli.wait_device(&name, "listed", |_| true).status, "pending");
    drop(agent);

    let revoked = setup.install_line(&["--uses", "5"]);
    let listed = setup.cli.run(&["devices", "install-tokens", "list", "--json"]);
    let tokens: serde_json::Value = serde_json::from_str(listed.ok()).unwrap();
    let id = tokens[0]["id"].as_str().unwrap().to_owned();
    setup.cli.run(&["devices", "install-tokens", "revoke", &id]).ok();
    let table = setup
        .cli
        .run(&["devices", "install-tokens", "list"])
        .ok()
        .to_owned();
    assert!(table.contains("revoked") && table.contains("expired"), "{table}");
    let prefix = tempfile::tempdir().unwrap();
    let name = unique_name("revoked");
    let agent = setup.start(&revoked, prefix.path(), &name);
    wait_log(&agent, "was revoked");
    assert_eq!(setup.cli.wait_device(&name, "listed", |_| true).status, "pending");
    drop(agent);

    // Only who manages every device may make tokens.
    let operator = setup.hub.user_cli("olga", false);
    let refused = operator.run(&["devices", "install-command"]);
    assert!(!refused.success(), "{refused}");
    assert!(
        refused.stderr.contains("403") || refused.stderr.to_lowercase().contains("not"),
        "{refused}"
    );
}

#[test]
fn a_binary_that_does_not_match_its_hash_is_not_installed_and_the_pin_is_enforced() {
    let setup = Setup::new();
    let line = setup.install_line(&[]);
    // The script as the device gets it, carrying the hash of the binary the hub has now ...
    let script_line = line.split(" | sh").next().unwrap().to_owned();
    let script = setup.run(&script_line, "");
    assert!(script.status.success());
    let script_file = setup.dir.path().join("agent.sh");
    std::fs::write(&script_file, &script.stdout).unwrap();
    // ... then the binary changes (in transit, or on the hub's disk).
    let served = setup.agents_dir().join("tether-agent-x86_64-linux");
    let mut bytes = std::fs::read(&served).unwrap();
    bytes.extend_from_slice(b"tampered");
    std::fs::write(&served, bytes).unwrap();

    let prefix = tempfile::tempdir().unwrap();
    let token = token_of(&line);
    let output = setup.run(
        &format!("sh {} --token {token}", script_file.display()),
        &format!("--prefix {} --no-start", prefix.path().display()),
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("SHA-256") && stderr.contains("not installed"),
        "{stderr}"
    );
    assert!(
        !prefix.path().join("bin/tether-agent").exists(),
        "a mismatching binary was installed"
    );
    assert!(
        !prefix.path().join("bin/.tether-agent.download").exists(),
        "the download was left behind"
    );
    assert!(
        !prefix.path().join("etc/tether/agent.toml").exists(),
        "configured without an agent"
    );

    // A hub with another key (a wrong pin) is refused by curl before anything is downloaded,
    // although -k is given: the pin is what the line trusts.
    let pin = line.split("sha256//").nth(1).unwrap().split('\'').next().unwrap();
    let wrong_pin = line.replace(pin, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    let fetch = setup.run(wrong_pin.split(" | sh").next().unwrap(), "");
    // 90: CURLE_SSL_PINNEDPUBKEYNOTMATCH.
    assert_eq!(
        fetch.status.code(),
        Some(90),
        "curl must refuse a hub whose key is not pinned"
    );
    assert!(fetch.stdout.is_empty());
    let output = setup.run(
        &wrong_pin,
        &format!("--prefix {} --no-start", prefix.path().display()),
    );
    assert!(!prefix.path().join("bin/tether-agent").exists(), "{output:?}");
}
