//! The hub's Mender-compatible HTTP file API, driven with `curl`.

use tether_e2e::peers::{sha256_deterministic, sha256_file, write_deterministic_file};

use crate::common::*;

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
