//! File transfer: `tether cp` and `tether ls` and the hub's Mender-compatible HTTP file API
//! (driven with `curl`) against a real agent whose `file_transfer.roots` is a temporary
//! directory: round trips with checksums, modes and mtimes; directory trees; refusals (path
//! escapes, permissions, size and overwrite policy, a full disk) that leave nothing behind; a
//! 200 MB transfer that survives dropped connections; a terminal that stays responsive while a
//! 200 MB transfer runs.

use std::{
    collections::BTreeMap,
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, UNIX_EPOCH},
};

use tempfile::TempDir;
use tether_e2e::{
    Agent, Cli, CliOutput, FaultProxy, Hub, PtySession, WAIT,
    peers::{sha256_deterministic, sha256_file, write_deterministic_file},
    wait_for,
};

/// Big transfers: 200 MB (the acceptance size), run once each.
const BIG: u64 = 200 * 1024 * 1024;
/// Give-up limit for one 200 MB transfer on a loaded 2-core machine with debug builds.
const BIG_LIMIT: Duration = Duration::from_secs(240);

/// A hub, an admin CLI, and an accepted agent whose only file-transfer root is `root`
/// (`<tmp>/data`), plus a local directory for the operator's side.
struct Setup {
    hub: Hub,
    cli: Cli,
    agent: Agent,
    /// `<tmp>`: holds the root and what must stay out of reach.
    device_tmp: TempDir,
    /// The allowed root, `<tmp>/data`.
    root: PathBuf,
    /// The operator's files.
    local: TempDir,
}

fn agent_config(root: &Path, extra: &str) -> String {
    format!(
        "[terminal]\nshell = \"/bin/sh\"\n\n[file_transfer]\nenabled = true\nroots = [{root:?}]\n{extra}",
        root = root.display().to_string()
    )
}

fn device_dirs() -> (TempDir, PathBuf) {
    let device_tmp = tempfile::Builder::new()
        .prefix("tether-e2e-device-")
        .tempdir()
        .expect("temp dir");
    let root = device_tmp.path().join("data");
    std::fs::create_dir(&root).unwrap();
    (device_tmp, root)
}

impl Setup {
    fn start(extra: &str) -> Setup {
        let hub = Hub::start_default();
        let (device_tmp, root) = device_dirs();
        let agent = Agent::start(&hub, &agent_config(&root, extra));
        Setup::finish(hub, agent, device_tmp, root)
    }

    /// The agent dials the hub through `proxy` (built by `make_proxy` for the hub).
    fn start_via_proxy(extra: &str, make_proxy: impl FnOnce(&Hub) -> FaultProxy) -> (Setup, FaultProxy) {
        let hub = Hub::start_default();
        let proxy = make_proxy(&hub);
        let (device_tmp, root) = device_dirs();
        let agent = Agent::start_via(&hub, &proxy.url(), &agent_config(&root, extra));
        (Setup::finish(hub, agent, device_tmp, root), proxy)
    }

    fn finish(hub: Hub, agent: Agent, device_tmp: TempDir, root: PathBuf) -> Setup {
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
    fn remote(&self, path: &Path) -> String {
        format!("{}:{}", self.agent.name, path.display())
    }

    fn local(&self, name: &str) -> PathBuf {
        self.local.path().join(name)
    }

    fn outside(&self, name: &str) -> PathBuf {
        self.device_tmp.path().join(name)
    }

    fn cp(&self, args: &[&str]) -> CliOutput {
        self.cp_for(args, Duration::from_secs(60))
    }

    fn cp_for(&self, args: &[&str], limit: Duration) -> CliOutput {
        let mut all = vec!["cp"];
        all.extend_from_slice(args);
        self.cli.run_for(&all, limit)
    }

    /// `curl` against the hub's file API for this device, as the logged-in user: returns the
    /// HTTP status and the body (or headers, with `-I`).
    fn curl(&self, args: &[&str]) -> (u16, String) {
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

    fn api(&self, what: &str) -> String {
        format!(
            "{}/api/management/v1/deviceconnect/devices/{}/{what}",
            self.hub.url,
            self.agent_device_id()
        )
    }

    /// Asserts that `output` is a refusal of `DEVICE:PATH` on stderr (exit 1) naming `needle`.
    fn assert_refused(&self, output: &CliOutput, path: &Path, needle: &str) {
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

    fn agent_device_id(&self) -> String {
        self.cli.device_id_by_name(&self.agent.name)
    }
}

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .mode()
        & 0o7777
}

fn mtime_of(path: &Path) -> i64 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .mtime()
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn set_mtime(path: &Path, secs: u64) {
    std::fs::File::open(path)
        .and_then(|f| f.set_modified(UNIX_EPOCH + Duration::from_secs(secs)))
        .unwrap_or_else(|e| panic!("set the mtime of {}: {e}", path.display()));
}

/// Names in `dir` (sorted), e.g. to show that nothing was left behind.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `name (size bytes)` of each entry in `dir`, for failure messages.
fn describe(dir: &Path) -> String {
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
fn tree(dir: &Path) -> BTreeMap<String, (bool, u32, String)> {
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

fn parse_json(output: &CliOutput) -> serde_json::Value {
    serde_json::from_str(output.ok().trim())
        .unwrap_or_else(|e| panic!("`--json` printed no JSON ({e}):\n{output}"))
}

#[test]
fn small_files_round_trip_with_checksums_modes_and_mtimes() {
    let s = Setup::start("");
    let cases: [(u64, u32, u64); 3] = [
        (0, 0o644, 1_000_000_000),
        (1, 0o600, 1_234_567_890),
        (4097, 0o755, 1_600_000_000),
    ];

    for (i, &(size, mode, mtime)) in cases.iter().enumerate() {
        // Upload, then download what was uploaded.
        let original = s.local(&format!("up-{size}"));
        write_deterministic_file(&original, i as u64, size);
        set_mode(&original, mode);
        set_mtime(&original, mtime);
        let expected = sha256_deterministic(i as u64, size);
        let on_device = s.root.join(format!("up-{size}"));
        let report = parse_json(&s.cp(&["--json", original.to_str().unwrap(), &s.remote(&on_device)]));
        assert_eq!(report["files"], 1, "{report}");
        assert_eq!(report["bytes"], size, "{report}");
        assert_eq!(report["sha256"], expected.as_str(), "{report}");
        assert_eq!(sha256_file(&on_device), expected, "uploaded {size} B differ");
        assert_eq!(
            mode_of(&on_device),
            mode,
            "the upload keeps the local mode {mode:o}"
        );

        let back = s.local(&format!("back-{size}"));
        s.cp(&[&s.remote(&on_device), back.to_str().unwrap()]).ok();
        assert_eq!(sha256_file(&back), expected, "round trip of {size} B differs");
        assert_eq!(mode_of(&back), mode_of(&on_device), "download keeps the mode");
        assert_eq!(mtime_of(&back), mtime_of(&on_device), "download keeps the mtime");

        // A file made on the device, downloaded into an existing local directory.
        let device_file = s.root.join(format!("made-on-device-{size}"));
        write_deterministic_file(&device_file, 100 + i as u64, size);
        let device_mode = [0o640, 0o700, 0o444][i];
        set_mode(&device_file, device_mode);
        set_mtime(&device_file, mtime + 17);
        let into = s.local(&format!("into-{size}"));
        std::fs::create_dir(&into).unwrap();
        let report = parse_json(&s.cp(&["--json", &s.remote(&device_file), into.to_str().unwrap()]));
        let fetched = into.join(format!("made-on-device-{size}"));
        let expected = sha256_deterministic(100 + i as u64, size);
        assert_eq!(report["sha256"], expected.as_str(), "{report}");
        assert_eq!(report["bytes"], size, "{report}");
        assert_eq!(sha256_file(&fetched), expected);
        assert_eq!(
            mode_of(&fetched),
            device_mode,
            "download keeps mode {device_mode:o}"
        );
        assert_eq!(mtime_of(&fetched) as u64, mtime + 17, "download keeps the mtime");
        assert_eq!(
            names_in(&into),
            [format!("made-on-device-{size}")],
            "no temporary files left"
        );
    }

    // `ls --json` lists what is there, with sizes.
    let listing = parse_json(&s.cli.run(&["ls", "--json", &s.remote(&s.root)]));
    let rows = listing.as_array().expect("ls --json prints an array");
    for &(size, _, _) in &cases {
        for name in [format!("up-{size}"), format!("made-on-device-{size}")] {
            let row = rows
                .iter()
                .find(|r| r["name"] == name.as_str())
                .unwrap_or_else(|| panic!("`{name}` not listed: {listing}"));
            assert_eq!(row["size"], size, "{row}");
        }
    }
    assert_eq!(rows.len(), 2 * cases.len(), "only those files: {listing}");
    assert_eq!(
        names_in(&s.root).len(),
        2 * cases.len(),
        "no temporary files on the device"
    );
}

#[test]
fn a_directory_tree_round_trips_with_r() {
    let s = Setup::start("");
    let source = s.local("tree");
    for dir in ["a/b/c", "a/empty", "d"] {
        std::fs::create_dir_all(source.join(dir)).unwrap();
    }
    let files: [(&str, u64, u32); 6] = [
        ("top.txt", 10, 0o644),
        ("a/one", 0, 0o600),
        ("a/b/two", 4097, 0o755),
        ("a/b/c/three", 300_000, 0o640),
        ("d/four", 1, 0o644),
        ("d/.hidden", 99, 0o600),
    ];
    for (i, &(name, size, mode)) in files.iter().enumerate() {
        let path = source.join(name);
        write_deterministic_file(&path, 500 + i as u64, size);
        set_mode(&path, mode);
        set_mtime(&path, 1_500_000_000 + i as u64);
    }
    set_mode(&source.join("d"), 0o750);
    let expected = tree(&source);

    // Into an existing directory on the device: it lands as `<root>/tree`.
    let report = parse_json(&s.cp(&["-r", "--json", source.to_str().unwrap(), &s.remote(&s.root)]));
    assert_eq!(report["files"], files.len(), "{report}");
    let uploaded = s.root.join("tree");
    let on_device = tree(&uploaded);
    assert_eq!(
        on_device.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "the uploaded tree has other entries"
    );
    for (name, (is_dir, mode, sha)) in &expected {
        let (device_is_dir, device_mode, device_sha) = &on_device[name];
        assert_eq!(is_dir, device_is_dir, "{name}");
        assert_eq!(sha, device_sha, "{name} differs on the device");
        if !is_dir {
            assert_eq!(mode, device_mode, "{name} keeps its mode on upload");
        }
    }

    // Back into an existing local directory: `<back>/tree`, same contents, modes and mtimes
    // as on the device.
    let back = s.local("back");
    std::fs::create_dir(&back).unwrap();
    s.cp(&["-r", &s.remote(&uploaded), back.to_str().unwrap()]).ok();
    let downloaded = back.join("tree");
    let round_trip = tree(&downloaded);
    assert_eq!(
        round_trip, on_device,
        "the downloaded tree differs from the device's"
    );
    for (name, (is_dir, _, _)) in &round_trip {
        if !is_dir {
            assert_eq!(
                mtime_of(&downloaded.join(name)),
                mtime_of(&uploaded.join(name)),
                "{name}: download keeps the mtime"
            );
        }
    }
    assert_eq!(names_in(&back), ["tree"]);
}

#[test]
fn path_escapes_are_refused_and_nothing_outside_the_roots_is_touched() {
    let s = Setup::start("");
    // Outside the root: a secret, a sibling directory whose name extends the root's.
    let secret = s.outside("secret");
    std::fs::write(&secret, "outside the root\n").unwrap();
    let database = s.outside("database");
    std::fs::create_dir(&database).unwrap();
    std::fs::write(database.join("x"), "not data\n").unwrap();
    // Inside the root: symlinks pointing out, and one legitimate file.
    std::os::unix::fs::symlink(s.device_tmp.path(), s.root.join("up")).unwrap();
    std::os::unix::fs::symlink(&secret, s.root.join("secret-link")).unwrap();
    std::fs::write(s.root.join("fine"), "inside\n").unwrap();
    let upload = s.local("payload");
    std::fs::write(&upload, "written by the operator\n").unwrap();
    let outside_before = names_in(s.device_tmp.path());

    let downloads: Vec<PathBuf> = vec![
        s.root.join("../secret"),
        s.root.join("sub/../../secret"),
        secret.clone(),
        PathBuf::from("/etc/hostname"),
        s.root.join("up/secret"),
        s.root.join("secret-link"),
        database.join("x"),
    ];
    for (i, path) in downloads.iter().enumerate() {
        let target = s.local(&format!("stolen-{i}"));
        let output = s.cp(&[&s.remote(path), target.to_str().unwrap()]);
        s.assert_refused(&output, path, "file_transfer.roots");
        assert!(
            !target.exists(),
            "a refused download created {}",
            target.display()
        );
    }
    for path in [s.root.join("../secret"), database.clone(), s.root.join("up")] {
        let output = s.cli.run(&["ls", &s.remote(&path)]);
        s.assert_refused(&output, &path, "file_transfer.roots");
        assert!(output.stdout.is_empty(), "a refused listing printed:\n{output}");
    }

    let uploads: Vec<PathBuf> = vec![
        s.root.join("../escaped"),
        s.outside("absolute"),
        s.root.join("up/through-link"),
        s.root.join("secret-link"),
        database.join("y"),
        database.join("x"),
    ];
    for path in &uploads {
        let output = s.cp(&[upload.to_str().unwrap(), &s.remote(path)]);
        s.assert_refused(&output, path, "file_transfer.roots");
    }

    // Nothing outside the root was created or changed; the secret is intact.
    assert_eq!(names_in(s.device_tmp.path()), outside_before);
    assert_eq!(names_in(&database), ["x"]);
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "outside the root\n");
    assert_eq!(std::fs::read_to_string(database.join("x")).unwrap(), "not data\n");
    assert_eq!(names_in(&s.root), ["fine", "secret-link", "up"]);
    assert!(
        std::fs::symlink_metadata(s.root.join("secret-link"))
            .unwrap()
            .is_symlink()
    );

    // The root itself still works.
    let fine = s.local("fine");
    s.cp(&[&s.remote(&s.root.join("fine")), fine.to_str().unwrap()])
        .ok();
    assert_eq!(std::fs::read_to_string(&fine).unwrap(), "inside\n");
}

/// Makes a path immutable (`chattr +i`) for the test's lifetime, even for root.
struct Immutable(PathBuf);

impl Immutable {
    fn set(path: &Path) -> Option<Immutable> {
        let ok = Command::new("chattr")
            .arg("+i")
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Immutable(path.to_path_buf()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[test]
fn permission_denied_is_reported_and_changes_nothing() {
    let s = Setup::start("");
    let payload = s.local("payload");
    std::fs::write(&payload, "new content\n").unwrap();

    // An immutable file and an immutable directory: not writable even by root.
    let locked_file = s.root.join("locked");
    std::fs::write(&locked_file, "original\n").unwrap();
    let locked_dir = s.root.join("locked-dir");
    std::fs::create_dir(&locked_dir).unwrap();
    let (Some(_file_guard), Some(_dir_guard)) = (Immutable::set(&locked_file), Immutable::set(&locked_dir))
    else {
        eprintln!(
            "note: chattr +i is not available here; permission denied is not tested (see the policy test)"
        );
        return;
    };
    let output = s.cp(&[payload.to_str().unwrap(), &s.remote(&locked_file)]);
    assert_eq!(output.code, Some(1), "{output}");
    assert!(
        output
            .stderr
            .starts_with(&format!("tether: {}: ", s.remote(&locked_file))),
        "{output}"
    );
    let lower = output.stderr.to_lowercase();
    assert!(
        lower.contains("permission denied") || lower.contains("not permitted"),
        "the error should say why:\n{output}"
    );
    assert_eq!(std::fs::read_to_string(&locked_file).unwrap(), "original\n");

    let inside = locked_dir.join("new");
    let output = s.cp(&[payload.to_str().unwrap(), &s.remote(&inside)]);
    assert_eq!(output.code, Some(1), "{output}");
    let lower = output.stderr.to_lowercase();
    assert!(
        lower.contains("permission denied") || lower.contains("not permitted"),
        "the error should say why:\n{output}"
    );
    assert!(
        names_in(&locked_dir).is_empty(),
        "nothing may be left in the locked directory"
    );
    assert_eq!(
        names_in(&s.root),
        ["locked", "locked-dir"],
        "no temporary files left"
    );
}

#[test]
fn size_and_overwrite_policies_refuse_uploads_with_the_rule_named() {
    let s = Setup::start("max_file_size = 1000\nallow_overwrite = false\n");
    let small = s.local("small");
    std::fs::write(&small, "fits\n").unwrap();
    let big = s.local("big");
    write_deterministic_file(&big, 9, 2000);

    let too_big = s.root.join("too-big");
    let output = s.cp(&[big.to_str().unwrap(), &s.remote(&too_big)]);
    s.assert_refused(&output, &too_big, "file_transfer.max_file_size");
    assert!(!too_big.exists());

    // A new file is fine; writing it again is refused and leaves it as it was.
    let existing = s.root.join("existing");
    s.cp(&[small.to_str().unwrap(), &s.remote(&existing)]).ok();
    std::fs::write(&small, "changed\n").unwrap();
    let output = s.cp(&[small.to_str().unwrap(), &s.remote(&existing)]);
    s.assert_refused(&output, &existing, "file_transfer.allow_overwrite");
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "fits\n");

    // A device file over the limit cannot be downloaded either.
    let device_big = s.root.join("device-big");
    write_deterministic_file(&device_big, 10, 5000);
    let target = s.local("device-big");
    let output = s.cp(&[&s.remote(&device_big), target.to_str().unwrap()]);
    if output.success() {
        // The limit may be meant for writes only; then the download must at least be right.
        assert_eq!(sha256_file(&target), sha256_deterministic(10, 5000));
    } else {
        s.assert_refused(&output, &device_big, "file_transfer.max_file_size");
        assert!(!target.exists());
    }
    assert_eq!(
        names_in(&s.root),
        ["device-big", "existing"],
        "no temporary files left"
    );
}

/// A tmpfs mounted for the test; unmounted on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_gives_a_clear_error_and_no_partial_file() {
    let s = Setup::start("");
    let small_disk = s.root.join("small-disk");
    std::fs::create_dir(&small_disk).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&small_disk)
        .output();
    let _mount = match mounted {
        Ok(output) if output.status.success() => Mount(small_disk.clone()),
        other => {
            eprintln!("note: cannot mount a tmpfs here ({other:?}); the full-disk test is skipped");
            return;
        }
    };
    let payload = s.local("two-mb");
    write_deterministic_file(&payload, 21, 2 * 1024 * 1024);
    let target = small_disk.join("two-mb");
    let output = s.cp(&[payload.to_str().unwrap(), &s.remote(&target)]);
    assert_eq!(output.code, Some(1), "{output}");
    assert!(
        output
            .stderr
            .starts_with(&format!("tether: {}: ", s.remote(&target))),
        "{output}"
    );
    let lower = output.stderr.to_lowercase();
    assert!(
        lower.contains("no space") || lower.contains("disk full") || lower.contains("full"),
        "the error should say the disk is full:\n{output}"
    );
    assert!(
        names_in(&small_disk).is_empty(),
        "nothing may be left on the full disk (no partial target, no temporary file): {:?}",
        names_in(&small_disk)
    );

    // The disk is usable again afterwards: a small file fits.
    let small = s.local("small");
    std::fs::write(&small, "fits\n").unwrap();
    s.cp(&[small.to_str().unwrap(), &s.remote(&small_disk.join("small"))])
        .ok();
    assert_eq!(names_in(&small_disk), ["small"]);
}

#[test]
fn the_mender_http_api_uploads_and_downloads_with_curl() {
    let mut s = Setup::start("max_file_size = 1048576\n");
    let upload_url = s.api("upload");
    let download_url = s.api("download");
    // SAFETY: getuid and getgid have no preconditions and cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };

    // Multipart upload, the file last, as Mender's clients send it.
    let payload = s.local("payload");
    write_deterministic_file(&payload, 31, 300_000);
    let expected = sha256_deterministic(31, 300_000);
    let target = s.root.join("sub-dir-free-name");
    let (status, body) = s.curl(&[
        "-X",
        "PUT",
        "-F",
        &format!("path={}", target.display()),
        "-F",
        &format!("uid={uid}"),
        "-F",
        &format!("gid={gid}"),
        "-F",
        "mode=0640",
        "-F",
        &format!("file=@{}", payload.display()),
        &upload_url,
    ]);
    assert_eq!(status, 201, "upload: {body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON answer");
    assert_eq!(answer["path"], target.display().to_string(), "{answer}");
    assert_eq!(answer["size"], 300_000, "{answer}");
    assert_eq!(answer["sha256"], expected.as_str(), "{answer}");
    assert_eq!(sha256_file(&target), expected);
    assert_eq!(mode_of(&target), 0o640);

    // Download, and HEAD for the headers only.
    let fetched = s.local("fetched");
    let path_query = format!("path={}", target.display());
    let (status, body) = s.curl(&[
        "--get",
        "--data-urlencode",
        &path_query,
        "-o",
        fetched.to_str().unwrap(),
        &download_url,
    ]);
    assert_eq!(status, 200, "download: {body}");
    assert_eq!(sha256_file(&fetched), expected);
    let (status, headers) = s.curl(&["-I", "--get", "--data-urlencode", &path_query, &download_url]);
    assert_eq!(status, 200, "HEAD: {headers}");
    let headers = headers.to_lowercase();
    assert!(headers.contains("content-length: 300000"), "{headers}");
    assert!(headers.contains("x-men-file-mode:"), "{headers}");

    // Refusals: outside the roots (403, the rule named), missing (404), too large (413).
    let secret = s.outside("secret");
    std::fs::write(&secret, "TOP-SECRET-CONTENT\n").unwrap();
    let (status, body) = s.curl(&[
        "--get",
        "--data-urlencode",
        &format!("path={}", secret.display()),
        &download_url,
    ]);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("file_transfer.roots"), "{body}");
    assert!(!body.contains("TOP-SECRET"), "the secret leaked: {body}");
    let escaped = s.root.join("../escaped");
    let (status, body) = s.curl(&[
        "-X",
        "PUT",
        "-F",
        &format!("path={}", escaped.display()),
        "-F",
        "mode=0644",
        "-F",
        &format!("file=@{}", payload.display()),
        &upload_url,
    ]);
    assert_eq!(status, 403, "{body}");
    assert!(!s.outside("escaped").exists());
    let (status, body) = s.curl(&[
        "--get",
        "--data-urlencode",
        &format!("path={}", s.root.join("missing").display()),
        &download_url,
    ]);
    assert_eq!(status, 404, "{body}");
    let big = s.local("big");
    write_deterministic_file(&big, 32, 2 * 1024 * 1024);
    let too_big = s.root.join("too-big");
    let (status, body) = s.curl(&[
        "-X",
        "PUT",
        "-F",
        &format!("path={}", too_big.display()),
        "-F",
        "mode=0644",
        "-F",
        &format!("file=@{}", big.display()),
        &upload_url,
    ]);
    assert_eq!(status, 413, "{body}");
    assert!(!too_big.exists());
    assert_eq!(
        names_in(&s.root),
        ["sub-dir-free-name"],
        "no temporary files left"
    );

    // An offline device: 409.
    s.agent.kill();
    let name = s.agent.name.clone();
    s.cli.wait_device(&name, "offline", |d| !d.online);
    let (status, body) = s.curl(&["--get", "--data-urlencode", &path_query, &download_url]);
    assert_eq!(status, 409, "{body}");
}

/// Waits until `proxy` forwarded `more` bytes beyond `from` (or `done()`); returns whether it did.
fn wait_for_bytes(proxy: &FaultProxy, from: u64, more: u64, done: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + BIG_LIMIT;
    while std::time::Instant::now() < deadline {
        if proxy.bytes() >= from + more {
            return true;
        }
        if done() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn a_200_mb_transfer_resumes_after_the_connection_drops() {
    let (s, proxy) = Setup::start_via_proxy("", FaultProxy::for_hub);
    let big = s.local("big");
    write_deterministic_file(&big, 200, BIG);
    let expected = sha256_file(&big);
    let on_device = s.root.join("big");

    // Upload; every connection of the agent is cut once 40 MB went through.
    let (output, cut) = std::thread::scope(|scope| {
        let copy = scope.spawn(|| {
            s.cp_for(
                &["--json", big.to_str().unwrap(), &s.remote(&on_device)],
                BIG_LIMIT,
            )
        });
        let cut = wait_for_bytes(&proxy, proxy.bytes(), 40 << 20, || copy.is_finished());
        if cut {
            proxy.cut_all();
        }
        (copy.join().expect("cp thread"), cut)
    });
    assert!(
        cut,
        "the upload ended before 40 MB went through the proxy:\n{output}"
    );
    let report = parse_json(&output);
    assert_eq!(report["sha256"], expected.as_str(), "{report}");
    assert!(
        report["resumed"].as_u64().is_some_and(|n| n >= 1),
        "the CLI should report the resumption: {report}"
    );
    assert!(
        on_device.is_file(),
        "the CLI reported success ({report}) but the device has no {}; the root holds {}",
        on_device.display(),
        describe(&s.root)
    );
    assert_eq!(sha256_file(&on_device), expected, "the uploaded file differs");
    assert_eq!(names_in(&s.root), ["big"], "no temporary upload files left");
    let accepted_before = proxy.accepted();

    // Download through a proxy that drops each connection after 20 MB (both directions; the
    // issue's figure), starting from a fresh connection so that the first drop falls in the
    // middle of the file.
    proxy.cut_all();
    wait_for("the agent to reconnect through the proxy", WAIT, || {
        (proxy.accepted() > accepted_before).then_some(())
    });
    let accepted_before = proxy.accepted();
    wait_for("the device to answer `ls` again", WAIT, || {
        s.cli.run(&["ls", &s.remote(&s.root)]).success().then_some(())
    });
    proxy.drop_every(20 << 20);
    let back = s.local("back");
    let output = s.cp_for(
        &["--json", &s.remote(&on_device), back.to_str().unwrap()],
        BIG_LIMIT,
    );
    proxy.drop_every(0);
    let report = parse_json(&output);
    assert!(
        proxy.accepted() > accepted_before,
        "the agent should have reconnected during the download"
    );
    assert!(
        report["resumed"].as_u64().is_some_and(|n| n >= 1),
        "the CLI should report the resumption: {report}"
    );
    assert_eq!(report["sha256"], expected.as_str(), "{report}");
    assert_eq!(sha256_file(&back), expected, "the downloaded file differs");
    assert_eq!(mtime_of(&back), mtime_of(&on_device));
    assert_eq!(
        names_in(s.local.path()),
        ["back", "big"],
        "no partial download left"
    );
}

#[test]
fn a_terminal_echoes_keystrokes_while_a_200_mb_download_runs() {
    let s = Setup::start("");
    let device_file = s.root.join("big");
    write_deterministic_file(&device_file, 201, BIG);
    set_mode(&device_file, 0o604);
    let expected = sha256_file(&device_file);
    let terminal = PtySession::terminal(&s.cli, &s.agent.name);
    terminal.send_line("echo ready-$((40+2))");
    terminal.expect("ready-42", WAIT);

    let back = s.local("big");
    let (output, echoed_during) = std::thread::scope(|scope| {
        let copy = scope.spawn(|| s.cp_for(&[&s.remote(&device_file), back.to_str().unwrap()], BIG_LIMIT));
        let mut echoed_during = 0;
        let mut n = 0u64;
        while !copy.is_finished() {
            n += 1;
            // The shell computes the marker: only a round trip through the device shows it.
            terminal.send_line(&format!("echo typed-$(({n}*1000+7))"));
            terminal.expect(&format!("typed-{}", n * 1000 + 7), WAIT);
            if !copy.is_finished() {
                echoed_during += 1;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        (copy.join().expect("cp thread"), echoed_during)
    });
    output.ok();
    eprintln!("{echoed_during} keystroke round trip(s) while the 200 MB download ran");
    assert!(
        echoed_during >= 1,
        "the download ended before one keystroke round trip: nothing was shown"
    );
    assert_eq!(sha256_file(&back), expected, "the downloaded file differs");
    assert_eq!(mode_of(&back), 0o604);
    assert_eq!(mtime_of(&back), mtime_of(&device_file));
}

/// Polls until `found()` returns something, giving up (`None`) if `done()` (the transfer ended
/// first) or after `BIG_LIMIT`.
fn poll_until<T>(mut found: impl FnMut() -> Option<T>, done: impl Fn() -> bool) -> Option<T> {
    let deadline = std::time::Instant::now() + BIG_LIMIT;
    while std::time::Instant::now() < deadline {
        if let Some(value) = found() {
            return Some(value);
        }
        if done() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Moves `dir` aside to `moved` and puts a symlink to `target` in its place.
fn swap_for_symlink(dir: &Path, moved: &Path, target: &Path) {
    std::fs::rename(dir, moved)
        .unwrap_or_else(|e| panic!("rename {} → {}: {e}", dir.display(), moved.display()));
    std::os::unix::fs::symlink(target, dir)
        .unwrap_or_else(|e| panic!("symlink {} → {}: {e}", dir.display(), target.display()));
}

/// A failed copy must say why on stderr (`tether: ...`) and exit 1, not hang or crash.
fn assert_clear_failure(output: &CliOutput) {
    assert!(!output.timed_out, "the copy hung:\n{output}");
    assert_eq!(output.code, Some(1), "a failed copy exits 1:\n{output}");
    assert!(
        output.stderr.lines().any(|l| l.starts_with("tether: ")),
        "a failed copy should explain itself on stderr:\n{output}"
    );
}

#[test]
fn a_symlink_swapped_in_during_a_transfer_cannot_redirect_it() {
    const SIZE: u64 = 8 * 1024 * 1024;
    // 1 MB/s each way: an 8 MB transfer takes seconds, long enough to swap a directory.
    let s = Setup::start("write_rate_limit = 1048576\nread_rate_limit = 1048576\n");

    // (1) Upload into `<root>/dir`, which becomes a symlink to `<tmp>/outside` mid-transfer.
    let dir = s.root.join("dir");
    let moved = s.root.join("dir-moved");
    let outside = s.outside("outside");
    std::fs::create_dir(&dir).unwrap();
    std::fs::create_dir(&outside).unwrap();
    let big = s.local("big");
    write_deterministic_file(&big, 301, SIZE);
    let expected = sha256_file(&big);
    let target = dir.join("target");
    let (output, swapped) = std::thread::scope(|scope| {
        let copy =
            scope.spawn(|| s.cp_for(&["--json", big.to_str().unwrap(), &s.remote(&target)], BIG_LIMIT));
        let temporary = poll_until(
            || {
                names_in(&dir)
                    .into_iter()
                    .find(|n| n.starts_with(".target.tether-upload-"))
            },
            || copy.is_finished(),
        );
        if let Some(name) = &temporary {
            eprintln!("upload: swapping {} while {name} is being written", dir.display());
            swap_for_symlink(&dir, &moved, &outside);
        }
        (copy.join().expect("cp thread"), temporary.is_some())
    });
    assert!(
        swapped,
        "the upload ended before its temporary file appeared in {}:\n{output}",
        dir.display()
    );
    eprintln!("upload after the swap:\n{output}");
    assert_eq!(
        names_in(&outside),
        Vec::<String>::new(),
        "the upload wrote outside the roots through the swapped-in symlink: {} holds {}",
        outside.display(),
        describe(&outside)
    );
    if output.success() {
        let landed = moved.join("target");
        assert!(
            landed.is_file(),
            "the CLI reported success but {} is missing; it holds {}",
            landed.display(),
            describe(&moved)
        );
        assert_eq!(sha256_file(&landed), expected, "the uploaded file differs");
        assert_eq!(parse_json(&output)["sha256"], expected.as_str());
    } else {
        assert_clear_failure(&output);
    }

    // (2) Download from `<root>/dir2`, which becomes a symlink to `<tmp>/outside2` (holding a
    // different file of the same name and size) once bytes arrive.
    let dir2 = s.root.join("dir2");
    let moved2 = s.root.join("dir2-moved");
    let outside2 = s.outside("outside2");
    std::fs::create_dir(&dir2).unwrap();
    std::fs::create_dir(&outside2).unwrap();
    let source = dir2.join("source");
    write_deterministic_file(&source, 302, SIZE);
    write_deterministic_file(&outside2.join("source"), 303, SIZE);
    let inside_sum = sha256_file(&source);
    let outside_sum = sha256_file(&outside2.join("source"));
    assert_ne!(inside_sum, outside_sum);
    let back = s.local("source");
    let part = s.local(".source.tether-part");
    let (output, swapped) = std::thread::scope(|scope| {
        let copy =
            scope.spawn(|| s.cp_for(&["--json", &s.remote(&source), back.to_str().unwrap()], BIG_LIMIT));
        let arrived = poll_until(
            || {
                std::fs::metadata(&part)
                    .ok()
                    .filter(|m| m.len() > 0)
                    .map(|m| m.len())
            },
            || copy.is_finished(),
        );
        if let Some(bytes) = arrived {
            eprintln!(
                "download: swapping {} after {bytes} bytes arrived",
                dir2.display()
            );
            swap_for_symlink(&dir2, &moved2, &outside2);
        }
        (copy.join().expect("cp thread"), arrived.is_some())
    });
    assert!(
        swapped,
        "the download ended before bytes arrived in {}:\n{output}",
        part.display()
    );
    eprintln!("download after the swap:\n{output}");
    if output.success() {
        let got = sha256_file(&back);
        assert_ne!(
            got,
            outside_sum,
            "the download was redirected outside the roots: it delivered {}",
            outside2.join("source").display()
        );
        assert_eq!(
            got, inside_sum,
            "the downloaded file is neither the original nor the outside one (a mix?)"
        );
        assert_eq!(parse_json(&output)["sha256"], inside_sum.as_str());
    } else {
        assert_clear_failure(&output);
        if back.exists() {
            assert_ne!(sha256_file(&back), outside_sum, "the outside file was delivered");
        }
    }
    assert_eq!(
        names_in(&outside2),
        ["source"],
        "nothing may appear in {}",
        outside2.display()
    );
}
