//! Refusals that leave nothing behind: path escapes, permission denied, size and overwrite
//! policy, a full disk.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use tether_e2e::peers::{sha256_deterministic, sha256_file, write_deterministic_file};

use crate::common::*;

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
