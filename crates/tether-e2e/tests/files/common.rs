//! What every file-transfer test shares: a hub, an admin CLI and an agent with one allowed root
//! (`Setup`), and helpers that read modes, mtimes and trees on either side.

use std::{
    collections::BTreeMap,
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, UNIX_EPOCH},
};

use tempfile::TempDir;
use tether_e2e::{Agent, Cli, CliOutput, FaultProxy, Hub, peers::sha256_file};

/// Give-up limit for one 200 MB transfer on a loaded 2-core machine with debug builds.
pub(crate) const BIG_LIMIT: Duration = Duration::from_secs(240);

/// A hub, an admin CLI, and an accepted agent whose only file-transfer root is `root`
/// (`<tmp>/data`), plus a local directory for the operator's side.
pub(crate) struct Setup {
    pub(crate) hub: Hub,
    pub(crate) cli: Cli,
    pub(crate) agent: Agent,
    /// `<tmp>`: holds the root and what must stay out of reach.
    pub(crate) device_tmp: TempDir,
    /// The allowed root, `<tmp>/data`.
    pub(crate) root: PathBuf,
    /// The operator's files.
    pub(crate) local: TempDir,
}

pub(crate) fn agent_config(root: &Path, extra: &str) -> String {
    format!(
        "[terminal]\nshell = \"/bin/sh\"\n\n[file_transfer]\nenabled = true\nroots = [{root:?}]\n{extra}",
        root = root.display().to_string()
    )
}

pub(crate) fn device_dirs() -> (TempDir, PathBuf) {
    let device_tmp = tempfile::Builder::new()
        .prefix("tether-e2e-device-")
        .tempdir()
        .expect("temp dir");
    let root = device_tmp.path().join("data");
    std::fs::create_dir(&root).unwrap();
    (device_tmp, root)
}

impl Setup {
    pub(crate) fn start(extra: &str) -> Setup {
        let hub = Hub::start_default();
        let (device_tmp, root) = device_dirs();
        let agent = Agent::start(&hub, &agent_config(&root, extra));
        Setup::finish(hub, agent, device_tmp, root)
    }

    /// The agent dials the hub through `proxy` (built by `make_proxy` for the hub).
    pub(crate) fn start_via_proxy(
        extra: &str,
        make_proxy: impl FnOnce(&Hub) -> FaultProxy,
    ) -> (Setup, FaultProxy) {
        let hub = Hub::start_default();
        let proxy = make_proxy(&hub);
        let (device_tmp, root) = device_dirs();
        let agent = Agent::start_via(&hub, &proxy.url(), &agent_config(&root, extra));
        (Setup::finish(hub, agent, device_tmp, root), proxy)
    }

    pub(crate) fn finish(hub: Hub, agent: Agent, device_tmp: TempDir, root: PathBuf) -> Setup {
        let cli = hub.user_cli("alice", true);
        cli.accept(&agent.name);
        let local = tempfile::Builder::new()
            .prefix("tether-e2e-local-")
            .tempdir()
            .expect("temp dir");
        Setup {
            hub,
            cli,
            agent,
            device_tmp,
            root,
            local,
        }
    }

    /// `DEVICE:PATH`
    pub(crate) fn remote(&self, path: &Path) -> String {
        format!("{}:{}", self.agent.name, path.display())
    }

    pub(crate) fn local(&self, name: &str) -> PathBuf {
        self.local.path().join(name)
    }

    pub(crate) fn outside(&self, name: &str) -> PathBuf {
        self.device_tmp.path().join(name)
    }

    pub(crate) fn cp(&self, args: &[&str]) -> CliOutput {
        self.cp_for(args, Duration::from_secs(60))
    }

    pub(crate) fn cp_for(&self, args: &[&str], limit: Duration) -> CliOutput {
        let mut all = vec!["cp"];
        all.extend_from_slice(args);
        self.cli.run_for(&all, limit)
    }

    /// `curl` against the hub's file API for this device, as the logged-in user: returns the
    /// HTTP status and the body (or headers, with `-I`).
    pub(crate) fn curl(&self, args: &[&str]) -> (u16, String) {
        let output = Command::new("curl")
            .args(["-sS", "--max-time", "60", "--cacert"])
            .arg(&self.hub.cert_path)
            .args(["-H", &format!("Authorization: Bearer {}", self.cli.token())])
            .args(["-w", "\n%{http_code}"])
            .args(args)
            .output()
            .expect("run curl (Debian: curl)");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
        let status = status.trim().parse().unwrap_or_else(|_| {
            panic!(
                "curl {args:?} printed no status: {text}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
        (status, body.to_owned())
    }

    pub(crate) fn api(&self, what: &str) -> String {
        format!(
            "{}/api/management/v1/deviceconnect/devices/{}/{what}",
            self.hub.url,
            self.agent_device_id()
        )
    }

    /// Asserts that `output` is a refusal of `DEVICE:PATH` on stderr (exit 1) naming `needle`.
    pub(crate) fn assert_refused(&self, output: &CliOutput, path: &Path, needle: &str) {
        assert_eq!(output.code, Some(1), "a refusal exits 1:\n{output}");
        let prefix = format!("tether: {}: ", self.remote(path));
        assert!(
            output.stderr.lines().any(|l| l.starts_with(&prefix)),
            "the error should start `{prefix}`:\n{output}"
        );
        assert!(
            output.stderr.contains(needle),
            "the error should name `{needle}`:\n{output}"
        );
    }

    pub(crate) fn agent_device_id(&self) -> String {
        self.cli.device_id_by_name(&self.agent.name)
    }
}

pub(crate) fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .mode()
        & 0o7777
}

pub(crate) fn mtime_of(path: &Path) -> i64 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .mtime()
}

pub(crate) fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub(crate) fn set_mtime(path: &Path, secs: u64) {
    std::fs::File::open(path)
        .and_then(|f| f.set_modified(UNIX_EPOCH + Duration::from_secs(secs)))
        .unwrap_or_else(|e| panic!("set the mtime of {}: {e}", path.display()));
}

/// Names in `dir` (sorted), e.g. to show that nothing was left behind.
pub(crate) fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `name (size bytes)` of each entry in `dir`, for failure messages.
pub(crate) fn describe(dir: &Path) -> String {
    names_in(dir)
        .iter()
        .map(|name| {
            let size = std::fs::symlink_metadata(dir.join(name)).map_or(0, |m| m.len());
            format!("{name} ({size} bytes)")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every entry under `dir`: relative path → (is_dir, mode, sha256 of files).
pub(crate) fn tree(dir: &Path) -> BTreeMap<String, (bool, u32, String)> {
    let mut entries = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(dir).unwrap().display().to_string();
            if path.is_dir() {
                entries.insert(relative, (true, mode_of(&path), String::new()));
                stack.push(path);
            } else {
                entries.insert(relative, (false, mode_of(&path), sha256_file(&path)));
            }
        }
    }
    entries
}

pub(crate) fn parse_json(output: &CliOutput) -> serde_json::Value {
    serde_json::from_str(output.ok().trim())
        .unwrap_or_else(|e| panic!("`--json` printed no JSON ({e}):\n{output}"))
}
