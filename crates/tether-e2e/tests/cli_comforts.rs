//! The CLI's everyday comforts with the real binaries: two hubs logged in to as two profiles
//! (`--profile`, `TETHER_PROFILE`, `tether profiles list|use|remove`, files owner-only), bash
//! completion of device names from the chosen hub with a real agent connected, and the man
//! page.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use tether_e2e::{Agent, Hub, HubOptions, WAIT, bin_dir, binary, hermetic, run_with_deadline};

/// Two hubs, each with an accepted agent online, and one CLI configuration directory.
struct Setup {
    hub_a: Hub,
    hub_b: Hub,
    agent_a: Agent,
    agent_b: Agent,
    config: tempfile::TempDir,
}

const PASSWORD: &str = "pw-comforts-correct-horse";

impl Setup {
    fn start() -> Setup {
        let hub_a = Hub::start(HubOptions::default());
        let hub_b = Hub::start(HubOptions::default());
        let agent_a = Agent::start(&hub_a, "");
        let agent_b = Agent::start(&hub_b, "");
        hub_a.user_cli("ops", true).accept(&agent_a.name);
        hub_b.user_cli("ops", true).accept(&agent_b.name);
        hub_a.add_user("alice", true, PASSWORD);
        hub_b.add_user("bob", true, PASSWORD);
        let config = tempfile::Builder::new()
            .prefix("tether-e2e-comforts-")
            .tempdir()
            .expect("config dir");
        Setup {
            hub_a,
            hub_b,
            agent_a,
            agent_b,
            config,
        }
    }

    /// A command with only the configuration directory set: no TETHER_HUB, no TETHER_CA.
    fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        hermetic(&mut command);
        command.env("TETHER_CONFIG_DIR", self.config.path());
        command
    }

    /// Runs `tether ARGS` (with `environment` and `stdin`); returns (success, stdout, stderr).
    fn tether(
        &self,
        args: &[&str],
        environment: &[(&str, &str)],
        stdin: Option<&str>,
    ) -> (bool, String, String) {
        let mut command = self.command(&binary("tether"));
        command.args(args);
        for (key, value) in environment {
            command.env(key, value);
        }
        let (output, timed_out) = run_with_deadline(command, stdin.map(str::as_bytes), WAIT);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (!timed_out && output.status.success(), stdout, stderr)
    }

    /// Like [`Setup::tether`], panicking unless it succeeds; returns stdout.
    fn ok(&self, args: &[&str], environment: &[(&str, &str)]) -> String {
        let (success, stdout, stderr) = self.tether(args, environment, None);
        assert!(success, "tether {args:?} failed:\n{stdout}\n{stderr}");
        stdout
    }

    /// What bash's completion offers for `words` (the last one being completed), after
    /// sourcing `tether completions bash`; flags (offered beside values) left out.
    fn complete(&self, words: &[&str], environment: &[(&str, &str)]) -> Vec<String> {
        let script = self.ok(&["completions", "bash"], &[]);
        let script_path = self.config.path().join("completion.bash");
        std::fs::write(&script_path, script).expect("write the script");
        let quoted: Vec<String> = words.iter().map(|word| format!("'{word}'")).collect();
        let program = format!(
            "source {script}\n\
             COMP_WORDS=({words})\n\
             COMP_CWORD={cword}\n\
             COMP_LINE=\"${{COMP_WORDS[*]}}\"\n\
             COMP_POINT=${{#COMP_LINE}}\n\
             _clap_complete_tether tether '{current}' '{previous}'\n\
             printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
            script = script_path.display(),
            words = quoted.join(" "),
            cword = words.len() - 1,
            current = words[words.len() - 1],
            previous = words[words.len() - 2],
        );
        let mut command = self.command(Path::new("bash"));
        // The script calls `tether` from PATH, as an installed one would.
        let path = format!(
            "{}:{}",
            bin_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        command.env("PATH", path).arg("-c").arg(program);
        for (key, value) in environment {
            command.env(key, value);
        }
        let (output, timed_out) = run_with_deadline(command, None, WAIT);
        assert!(
            !timed_out && output.status.success(),
            "bash completion failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| !line.is_empty() && !line.starts_with('-'))
            .map(str::to_owned)
            .collect()
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.config.path().join(relative)
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn profiles_json(setup: &Setup) -> Vec<serde_json::Value> {
    serde_json::from_str(&setup.ok(&["profiles", "list", "--json"], &[])).expect("profiles JSON")
}

#[test]
fn two_hubs_as_two_profiles_with_completion_of_their_device_names() {
    let setup = Setup::start();
    let (hub_a, hub_b) = (&setup.hub_a, &setup.hub_b);
    let ca_a = hub_a.cert_path.display().to_string();
    let ca_b = hub_b.cert_path.display().to_string();
    let password = Some(format!("{PASSWORD}\n"));

    // The global flag before the command, and after it.
    let (success, stdout, stderr) = setup.tether(
        &[
            "--profile",
            "lab",
            "--hub",
            &hub_a.url,
            "--ca",
            &ca_a,
            "login",
            "alice",
            "--password-stdin",
        ],
        &[],
        password.as_deref(),
    );
    assert!(success, "{stdout}\n{stderr}");
    assert!(stdout.contains("(profile lab)"), "{stdout}");
    let (success, stdout, stderr) = setup.tether(
        &[
            "login",
            "bob",
            "--password-stdin",
            "--profile",
            "prod",
            "--hub",
            &hub_b.url,
            "--ca",
            &ca_b,
        ],
        &[],
        password.as_deref(),
    );
    assert!(success, "{stdout}\n{stderr}");

    // The last login is current.
    let profiles = profiles_json(&setup);
    assert_eq!(profiles.len(), 2, "{profiles:?}");
    assert_eq!(profiles[0]["name"], "lab");
    assert_eq!(profiles[0]["user"], "alice");
    assert_eq!(profiles[0]["current"], false);
    assert_eq!(profiles[1]["name"], "prod");
    assert_eq!(profiles[1]["hub"], hub_b.hub_url().to_string());
    assert_eq!(profiles[1]["user"], "bob");
    assert_eq!(profiles[1]["current"], true);
    let table = setup.ok(&["profiles", "list"], &[]);
    let current_line = table
        .lines()
        .find(|line| line.starts_with('*'))
        .expect("a current line");
    assert!(
        current_line.contains("prod") && current_line.contains("bob"),
        "{table}"
    );

    // Tokens stay owner-only (the configuration directory itself was made by this test).
    assert_eq!(mode(&setup.path("profiles")), 0o700);
    for file in ["profiles/lab.json", "profiles/prod.json", "current-profile"] {
        assert_eq!(mode(&setup.path(file)), 0o600, "{file}");
    }

    // Each hub's devices through its profile: flag, variable, the current one.
    let (name_a, name_b) = (setup.agent_a.name.as_str(), setup.agent_b.name.as_str());
    let listed = setup.ok(&["--profile", "lab", "devices", "list"], &[]);
    assert!(listed.contains(name_a) && !listed.contains(name_b), "{listed}");
    let listed = setup.ok(&["devices", "list"], &[("TETHER_PROFILE", "lab")]);
    assert!(listed.contains(name_a) && !listed.contains(name_b), "{listed}");
    let listed = setup.ok(&["devices", "list"], &[]);
    assert!(listed.contains(name_b) && !listed.contains(name_a), "{listed}");
    let ran = setup.ok(&["exec", name_b, "--", "echo", "on-b"], &[]);
    assert_eq!(ran.trim(), "on-b");
    setup.ok(&["profiles", "use", "lab"], &[]);
    let listed = setup.ok(&["devices", "list"], &[]);
    assert!(listed.contains(name_a) && !listed.contains(name_b), "{listed}");
    assert_eq!(mode(&setup.path("current-profile")), 0o600);
    let (success, _, stderr) = setup.tether(&["profiles", "use", "nowhere"], &[], None);
    assert!(!success && stderr.contains("no profile nowhere"), "{stderr}");

    // ssh-config pins the profile, so ssh reaches the same hub whatever is current later.
    let block = setup.ok(&["--profile", "prod", "ssh-config"], &[]);
    assert!(block.contains("TETHER_PROFILE=prod"), "{block}");

    // Completion of DEVICE from the chosen hub: current, variable, the flag on the line.
    assert_eq!(
        setup.complete(&["tether", "terminal", ""], &[]),
        vec![name_a.to_owned()]
    );
    assert_eq!(
        setup.complete(&["tether", "terminal", ""], &[("TETHER_PROFILE", "prod")]),
        vec![name_b.to_owned()]
    );
    assert_eq!(
        setup.complete(&["tether", "--profile", "prod", "exec", &name_b[..3]], &[]),
        vec![name_b.to_owned()]
    );
    assert_eq!(
        setup.complete(&["tether", "ls", &name_a[..4]], &[]),
        vec![format!("{name_a}:")]
    );
    let commands = setup.complete(&["tether", "prof"], &[]);
    assert_eq!(commands, vec!["profiles".to_owned()]);
    // No login: nothing offered, no error.
    let offered = setup.complete(&["tether", "terminal", ""], &[("TETHER_PROFILE", "absent")]);
    assert!(offered.is_empty(), "{offered:?}");

    // Removing a profile logs out of it; the other one stays.
    setup.ok(&["profiles", "remove", "prod"], &[]);
    let profiles = profiles_json(&setup);
    assert_eq!(profiles.len(), 1, "{profiles:?}");
    assert_eq!(profiles[0]["name"], "lab");
    assert_eq!(profiles[0]["current"], true);
}

#[test]
fn the_old_single_login_still_works_as_the_default_profile() {
    let hub = Hub::start(HubOptions::default());
    let cli = hub.user_cli("carol", true);
    // What an earlier version stored: CONFIG_DIR/credentials.json.
    let dir = cli.config_dir();
    std::fs::rename(dir.join("profiles/default.json"), dir.join("credentials.json")).expect("move back");
    std::fs::remove_file(dir.join("current-profile")).expect("no current profile");
    std::fs::remove_dir(dir.join("profiles")).expect("no profiles");

    cli.run(&["devices", "list"]).ok();
    assert!(!dir.join("credentials.json").exists());
    assert_eq!(mode(&dir.join("profiles/default.json")), 0o600);
    let listed: Vec<serde_json::Value> =
        serde_json::from_str(cli.run(&["profiles", "list", "--json"]).ok()).expect("JSON");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], "default");
    assert_eq!(listed[0]["user"], "carol");
    assert_eq!(listed[0]["current"], true);
}

#[test]
fn the_man_page_names_the_commands() {
    let page = Command::new(binary("tether"))
        .arg("man")
        .output()
        .expect("tether man");
    assert!(page.status.success());
    let page = String::from_utf8_lossy(&page.stdout);
    assert!(page.contains(".TH tether 1"), "{page}");
    for command in [
        "login",
        "terminal",
        "profiles",
        "completions",
        "proxy",
        r"ssh\-config",
    ] {
        assert!(
            page.contains(command),
            "{command} is not in the man page:\n{page}"
        );
    }

    let dir = tempfile::tempdir().expect("man dir");
    let written = Command::new(binary("tether"))
        .args(["man", "--dir"])
        .arg(dir.path())
        .output()
        .expect("tether man --dir");
    assert!(written.status.success());
    for page in [
        "tether.1",
        "tether-login.1",
        "tether-profiles-list.1",
        "tether-devices-accept.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page)).expect(page);
        assert!(text.contains(".TH"), "{page}");
    }
}
