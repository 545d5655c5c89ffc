//! The Debian packages of `scripts/package`: what they contain, their systemd units (checked by
//! `systemd-analyze verify`), and the agent package installed, removed and purged on this machine
//! as Debian policy says (removal keeps the configuration and the device's identity; purge deletes
//! them).
//!
//! The packages are built from this build's binaries (`--bin-dir`), so no release or cross build
//! is needed here. Installing needs root: without it the install test says so and stops.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Builds the amd64 packages into a temporary directory: (directory, agent, hub, cli).
fn build_packages() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let out = tempfile::tempdir().expect("output dir");
    let listing = run(Command::new(workspace_root().join("scripts/package"))
        .args(["--arch", "amd64", "--bin-dir"])
        .arg(tether_e2e::bin_dir())
        .arg("--out")
        .arg(out.path()));
    let built = text(&listing);
    let find = |name: &str| {
        let path = out
            .path()
            .join(format!("{name}_{}_amd64.deb", env!("CARGO_PKG_VERSION")));
        assert!(
            path.is_file(),
            "{} was not built; scripts/package printed:\n{built}",
            path.display()
        );
        path
    };
    let (agent, hub, cli) = (find("tether-agent"), find("tether-hub"), find("tether"));
    (out, agent, hub, cli)
}

/// `dpkg-deb -c`: one line per file, "MODE OWNER/GROUP SIZE DATE TIME ./PATH".
fn contents(deb: &Path) -> Vec<(String, String, String)> {
    text(&run(Command::new("dpkg-deb").arg("-c").arg(deb)))
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let path = fields.last().expect("path").trim_start_matches('.').to_owned();
            (path, fields[0].to_owned(), fields[1].to_owned())
        })
        .collect()
}

fn assert_has(contents: &[(String, String, String)], path: &str, mode: &str) {
    let entry = contents
        .iter()
        .find(|(p, _, _)| p.trim_end_matches('/') == path)
        .unwrap_or_else(|| panic!("{path} is not in the package: {contents:#?}"));
    assert_eq!(entry.1, mode, "mode of {path}");
    assert_eq!(entry.2, "root/root", "owner of {path}");
}

/// The machine's unit directory: one test installs and removes the agent's unit there, the other
/// copies the directory to verify the packages' units beside the system's. They take turns: a
/// copy made while dpkg removed the unit failed ("cannot stat .../tether-agent.service").
static SYSTEM_UNITS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn system_units() -> std::sync::MutexGuard<'static, ()> {
    SYSTEM_UNITS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn packages_hold_the_expected_files_scripts_and_units() {
    let (_out, agent, hub, cli) = build_packages();

    let files = contents(&agent);
    assert_has(&files, "/usr/bin/tether-agent", "-rwxr-xr-x");
    // It may hold the provisioning key: readable by root only.
    assert_has(&files, "/etc/tether/agent.toml", "-rw-------");
    assert_has(&files, "/lib/systemd/system/tether-agent.service", "-rw-r--r--");
    assert_has(&files, "/var/lib/tether-agent", "drwx------");
    let files = contents(&hub);
    assert_has(&files, "/usr/bin/tether-hub", "-rwxr-xr-x");
    assert_has(&files, "/etc/tether/hub.toml", "-rw-r-----");
    assert_has(&files, "/lib/systemd/system/tether-hub.service", "-rw-r--r--");
    // The one-line install's agents (agents_dir), from dist/ when they are built.
    assert_has(&files, "/usr/lib/tether/agents", "drwxr-xr-x");
    let files = contents(&cli);
    assert_has(&files, "/usr/bin/tether", "-rwxr-xr-x");
    // Man pages (one per command, gzipped) and completions, generated from the binary.
    for page in [
        "tether.1.gz",
        "tether-login.1.gz",
        "tether-profiles-use.1.gz",
        "tether-terminal.1.gz",
    ] {
        assert_has(&files, &format!("/usr/share/man/man1/{page}"), "-rw-r--r--");
    }
    assert_has(
        &files,
        "/usr/share/bash-completion/completions/tether",
        "-rw-r--r--",
    );
    assert_has(&files, "/usr/share/zsh/vendor-completions/_tether", "-rw-r--r--");
    assert_has(
        &files,
        "/usr/share/fish/vendor_completions.d/tether.fish",
        "-rw-r--r--",
    );

    for (deb, name, config) in [(&agent, "tether-agent", "agent"), (&hub, "tether-hub", "hub")] {
        let info = text(&run(Command::new("dpkg-deb").arg("-I").arg(deb)));
        for script in ["postinst", "prerm", "postrm", "conffiles"] {
            assert!(info.contains(script), "{name} has no {script}:\n{info}");
        }
        let listed = text(&run(Command::new("sh").arg("-c").arg(format!(
            "dpkg-deb --ctrl-tarfile {} | tar -xOf - ./conffiles",
            deb.display()
        ))));
        assert_eq!(
            listed.trim(),
            format!("/etc/tether/{config}.toml"),
            "{name}'s conffiles"
        );
        let fields = text(&run(Command::new("dpkg-deb").arg("-f").arg(deb).args([
            "Package",
            "Version",
            "Architecture",
        ])));
        assert!(fields.contains(&format!("Package: {name}")), "{fields}");
        assert!(fields.contains("Architecture: amd64"), "{fields}");
    }

    // The units, checked by systemd itself in a root holding the packages' files and the
    // system's own units (verify also checks that ExecStart's binary exists).
    let root = tempfile::tempdir().expect("root");
    for deb in [&agent, &hub, &cli] {
        run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(root.path()));
    }
    let page = text(&run(Command::new("sh").arg("-c").arg(format!(
        "gzip -dc {}/usr/share/man/man1/tether.1.gz",
        root.path().display()
    ))));
    assert!(page.contains(".TH tether 1"), "{page}");
    let bash = std::fs::read_to_string(root.path().join("usr/share/bash-completion/completions/tether"))
        .expect("bash completion");
    assert!(
        bash.contains("complete -o nospace") && bash.contains(" tether"),
        "{bash}"
    );
    let _units = system_units();
    run(Command::new("sh").arg("-c").arg(format!(
        "cp -rn /lib/systemd/system/. {}/lib/systemd/system/",
        root.path().display()
    )));
    for unit in ["tether-agent.service", "tether-hub.service"] {
        let verified = Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", root.path().display()))
            .arg(unit)
            .output()
            .expect("systemd-analyze");
        let complaints = String::from_utf8_lossy(&verified.stderr);
        assert!(
            verified.status.success() && complaints.trim().is_empty(),
            "systemd-analyze verify {unit}: {}\n{complaints}",
            verified.status
        );
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn mode(path: &str) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn the_agent_package_installs_removes_and_purges_cleanly() {
    if !is_root() {
        eprintln!("skipped: installing a package needs root");
        return;
    }
    let _units = system_units();
    let installed = |package: &str| {
        Command::new("dpkg-query")
            .args(["-W", "-f=${Status}", package])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
            .unwrap_or(false)
    };
    // A run that died half-way may have left it installed.
    if installed("tether-agent") || Path::new("/var/lib/dpkg/info/tether-agent.list").exists() {
        run(Command::new("dpkg").args(["--purge", "tether-agent"]));
    }
    assert!(
        !Path::new("/etc/tether/agent.toml").exists(),
        "/etc/tether/agent.toml exists but no package owns it: not touching this machine's agent"
    );
    let (_out, agent, _hub, _cli) = build_packages();

    run(Command::new("dpkg").arg("-i").arg(&agent));
    assert!(installed("tether-agent"));
    let version = text(&run(Command::new("/usr/bin/tether-agent").arg("--version")));
    assert!(version.starts_with("tether-agent "), "{version}");
    assert_eq!(mode("/etc/tether/agent.toml"), 0o600);
    assert_eq!(mode("/var/lib/tether-agent"), 0o700);
    assert_eq!(mode("/lib/systemd/system/tether-agent.service"), 0o644);

    // The operator configures it and the agent makes its identity; removal keeps both.
    let configured = std::fs::read_to_string("/etc/tether/agent.toml").expect("agent.toml")
        + "\n# configured by the test\n";
    std::fs::write("/etc/tether/agent.toml", &configured).expect("edit agent.toml");
    std::fs::write("/var/lib/tether-agent/device.key", "identity").expect("device key");
    run(Command::new("dpkg").args(["-r", "tether-agent"]));
    assert!(
        !Path::new("/usr/bin/tether-agent").exists(),
        "remove must delete the binary"
    );
    assert!(!Path::new("/lib/systemd/system/tether-agent.service").exists());
    assert_eq!(
        std::fs::read_to_string("/etc/tether/agent.toml").ok().as_deref(),
        Some(configured.as_str()),
        "remove must keep the configuration as the operator left it"
    );
    assert!(
        Path::new("/var/lib/tether-agent/device.key").exists(),
        "remove must keep the identity"
    );

    // Reinstalling keeps the operator's configuration.
    run(Command::new("dpkg").arg("-i").arg(&agent));
    assert_eq!(
        std::fs::read_to_string("/etc/tether/agent.toml").ok().as_deref(),
        Some(configured.as_str()),
        "an upgrade must not overwrite the configuration"
    );

    run(Command::new("dpkg").args(["--purge", "tether-agent"]));
    assert!(!installed("tether-agent"));
    assert!(
        !Path::new("/etc/tether/agent.toml").exists(),
        "purge must delete the configuration"
    );
    assert!(
        !Path::new("/var/lib/tether-agent").exists(),
        "purge must delete keys and tokens"
    );
}
