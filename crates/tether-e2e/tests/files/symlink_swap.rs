//! A directory swapped for a symlink during a transfer cannot redirect it outside the roots.

use std::{path::Path, time::Duration};

use tether_e2e::{
    CliOutput,
    peers::{sha256_file, write_deterministic_file},
};

use crate::common::*;

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
