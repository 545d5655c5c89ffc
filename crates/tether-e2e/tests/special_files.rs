//! FIFOs and device nodes on a device: `stat` and `list` report their real type (Go's
//! `os.FileMode` type bits, as the stock agent does), `tether ls` shows it, and neither
//! `tether cp` nor the hub's HTTP file API transfers them: a FIFO opened for reading would block
//! (or return nothing, which the API used to serve as an empty 200), and reading a device may
//! act on it. The agent keeps serving afterwards.

use std::{
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use tether_e2e::{Agent, Cli, CliOutput, Hub, is_root};

const DEADLINE: Duration = Duration::from_secs(30);

fn make_node(path: &Path, mode: libc::mode_t, device: libc::dev_t) {
    let name = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mknod has no other preconditions.
    let code = unsafe { libc::mknod(name.as_ptr(), mode, device) };
    assert_eq!(
        code,
        0,
        "mknod {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

fn assert_refused(output: &CliOutput, needle: &str) {
    assert!(!output.timed_out, "the command hung:\n{output}");
    assert_eq!(output.code, Some(1), "a refusal exits 1:\n{output}");
    assert!(
        output.stderr.contains(needle),
        "stderr should say `{needle}`:\n{output}"
    );
}

/// `curl` against the hub's file API as `cli`'s user: the HTTP status and the body.
fn curl(hub: &Hub, cli: &Cli, args: &[&str]) -> (u16, String) {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "30", "--cacert"])
        .arg(&hub.cert_path)
        .args(["-H", &format!("Authorization: Bearer {}", cli.token())])
        .args(["-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl (Debian: curl)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn fifos_and_devices_are_listed_as_such_and_never_transferred() {
    let hub = Hub::start_default();
    let cli = hub.user_cli("alice", true);
    let device_tmp = tempfile::tempdir().expect("temp dir");
    let root = device_tmp.path().join("data");
    std::fs::create_dir(&root).unwrap();
    let fifo = root.join("fifo");
    make_node(&fifo, libc::S_IFIFO | 0o644, 0);
    // Device nodes need root; /dev/null's numbers (1, 3) make a harmless one.
    let null: Option<PathBuf> = is_root().then(|| {
        let path = root.join("null");
        make_node(&path, libc::S_IFCHR | 0o666, libc::makedev(1, 3));
        path
    });
    std::fs::write(root.join("plain"), "plain\n").unwrap();
    let agent = Agent::start(
        &hub,
        &format!(
            "[terminal]\nshell = \"/bin/sh\"\n\n[file_transfer]\nenabled = true\nroots = [{:?}]\n",
            root.display().to_string()
        ),
    );
    cli.accept(&agent.name);
    let remote = |path: &Path| format!("{}:{}", agent.name, path.display());

    // `ls`: the type letter, and the type in JSON, for the directory and for one entry.
    let ls = cli.run(&["ls", &remote(&root)]);
    let fifo_line = ls
        .ok()
        .lines()
        .find(|line| line.ends_with(" fifo"))
        .unwrap_or_default();
    assert!(fifo_line.starts_with("prw-r--r-- "), "a FIFO lists as p:\n{ls}");
    if null.is_some() {
        let null_line = ls
            .stdout
            .lines()
            .find(|line| line.ends_with(" null"))
            .unwrap_or_default();
        assert!(null_line.starts_with("crw-"), "a char device lists as c:\n{ls}");
    }
    let json = cli.run(&["ls", "--json", &remote(&fifo)]);
    let entries: serde_json::Value = serde_json::from_str(json.ok()).expect("ls --json");
    assert_eq!(entries[0]["type"], "fifo", "{entries}");

    // `cp` refuses it by type, at once (before, the FIFO was a 0644 file).
    let local = tempfile::tempdir().expect("temp dir");
    let cp = cli.run_for(&["cp", &remote(&fifo), local.path().to_str().unwrap()], DEADLINE);
    assert_refused(&cp, "not a regular file (fifo)");
    assert!(!local.path().join("fifo").exists(), "nothing is written");
    if let Some(null) = &null {
        let cp = cli.run_for(&["cp", &remote(null), local.path().to_str().unwrap()], DEADLINE);
        assert_refused(&cp, "not a regular file (char device)");
    }
    // An upload onto the FIFO is refused by the agent, which never opens it.
    let source = local.path().join("source");
    std::fs::write(&source, "data\n").unwrap();
    let upload = cli.run_for(&["cp", source.to_str().unwrap(), &remote(&fifo)], DEADLINE);
    assert_refused(&upload, "a FIFO: only regular files are transferred");

    // The HTTP file API: a clear 400, not an empty 200.
    let device_id = cli.device_id_by_name(&agent.name);
    let download = format!(
        "{}/api/management/v1/deviceconnect/devices/{device_id}/download",
        hub.url
    );
    let query = format!("path={}", fifo.display());
    let (status, body) = curl(&hub, &cli, &["--get", "--data-urlencode", &query, &download]);
    assert_eq!(status, 400, "downloading a FIFO: {body}");
    assert!(
        body.contains("is a fifo: only regular files are transferred"),
        "{body}"
    );
    let upload_url = download.replace("/download", "/upload");
    let (status, body) = curl(
        &hub,
        &cli,
        &[
            "-X",
            "PUT",
            "-F",
            &format!("path={}", fifo.display()),
            "-F",
            "mode=0644",
            "-F",
            &format!("file=@{}", source.display()),
            &upload_url,
        ],
    );
    assert_eq!(status, 403, "uploading onto a FIFO: {body}");
    assert!(body.contains("FIFO"), "{body}");

    // The agent was never blocked: a plain file still copies.
    let plain = cli.run_for(
        &["cp", &remote(&root.join("plain")), local.path().to_str().unwrap()],
        DEADLINE,
    );
    assert!(plain.success(), "{plain}");
    assert_eq!(
        std::fs::read_to_string(local.path().join("plain")).unwrap(),
        "plain\n"
    );
}
