//! Confinement on real directories: escapes by `..`, by absolute paths, by symbolic links in
//! the middle and at the end, by a root's name prefix, and by a link swapped in after the check.

use std::{
    fs,
    io::Read as _,
    os::{fd::AsFd as _, unix::fs::symlink},
    path::PathBuf,
};

use super::*;

/// A scratch directory under the system's temporary directory, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(label: &str) -> Scratch {
        let path = std::env::temp_dir().join(format!(
            "tether-agent-{label}-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        fs::create_dir_all(&path).unwrap();
        Scratch(fs::canonicalize(&path).unwrap())
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.0.join(relative)
    }

    pub fn text(&self, relative: &str) -> String {
        self.path(relative).to_str().unwrap().to_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A tree: `scratch/data` (the root) with `sub/file`, `scratch/database/x`, `scratch/secret`,
/// links `data/up` → scratch, `data/secret-link` → secret, `data/sub-link` → data/sub.
fn tree() -> (Scratch, Roots) {
    let scratch = Scratch::new("confine");
    fs::create_dir_all(scratch.path("data/sub")).unwrap();
    fs::write(scratch.path("data/sub/file"), "inside").unwrap();
    fs::create_dir_all(scratch.path("database")).unwrap();
    fs::write(scratch.path("database/x"), "outside").unwrap();
    fs::write(scratch.path("secret"), "secret").unwrap();
    symlink(&scratch.0, scratch.path("data/up")).unwrap();
    symlink(scratch.path("secret"), scratch.path("data/secret-link")).unwrap();
    symlink(scratch.path("data/sub"), scratch.path("data/sub-link")).unwrap();
    let roots = Roots::new(&[scratch.path("data")]);
    (scratch, roots)
}

fn refusal(roots: &Roots, path: &str) -> Refusal {
    match roots.resolve(path) {
        Ok(location) => panic!("{path} resolved to {:?}", location.name),
        Err(refusal) => refusal,
    }
}

/// Resolves and `lstat`s like `stat` does (a link at the end refused).
fn stat(roots: &Roots, path: &str) -> Result<std::fs::Metadata, Refusal> {
    roots.resolve(path)?.metadata_no_link()
}

#[test]
fn paths_inside_the_root_resolve() {
    let (scratch, roots) = tree();
    let location = roots.resolve(&scratch.text("data/sub/file")).unwrap();
    assert_eq!(location.name.as_deref(), Some(c"file"));
    assert!(stat(&roots, &scratch.text("data/sub/file")).unwrap().is_file());
    // Redundant slashes and `.` are harmless.
    assert!(stat(&roots, &format!("{}//./sub/./file", scratch.text("data"))).is_ok());
    // The root itself: no final name, its own metadata.
    let root = roots.resolve(&format!("{}/", scratch.text("data"))).unwrap();
    assert!(root.name.is_none());
    assert!(root.metadata().unwrap().is_dir());
}

#[test]
fn dot_dot_and_relative_paths_are_refused() {
    let (scratch, roots) = tree();
    for path in [
        format!("{}/../secret", scratch.text("data")),
        format!("{}/sub/../../secret", scratch.text("data")),
        format!("{}/sub/..", scratch.text("data")),
    ] {
        let refused = refusal(&roots, &path);
        assert_eq!(refused.code, 403, "{path}");
        assert!(refused.text.contains("file_transfer.roots"), "{}", refused.text);
    }
    let refused = refusal(&roots, "data/sub/file");
    assert_eq!(refused.code, 403);
    assert!(refused.text.contains("not absolute"), "{}", refused.text);
}

#[test]
fn absolute_paths_outside_and_name_prefixes_are_refused() {
    let (scratch, roots) = tree();
    for path in [
        "/etc/passwd".to_owned(),
        "/".to_owned(),
        scratch.text("secret"),
        scratch.text("database/x"),
        scratch.text("database"),
        scratch.text("dat"),
    ] {
        let refused = refusal(&roots, &path);
        assert_eq!(refused.code, 403, "{path}");
        assert_eq!(
            refused.text,
            format!("path {path} is outside the allowed roots (file_transfer.roots)")
        );
    }
    // No roots at all: nothing is allowed.
    let none = Roots::new(&[]);
    assert!(none.is_empty());
    assert_eq!(refusal(&none, &scratch.text("data/sub/file")).code, 403);
}

#[test]
fn symbolic_links_in_the_middle_and_at_the_end_are_refused() {
    let (scratch, roots) = tree();
    for path in [
        scratch.text("data/up/secret"),
        scratch.text("data/up/data/sub/file"),
        scratch.text("data/sub-link/file"),
    ] {
        let refused = refusal(&roots, &path);
        assert_eq!(refused.code, 403, "{path}");
        assert!(refused.text.contains("symbolic link"), "{}", refused.text);
        assert!(refused.text.contains("file_transfer.roots"), "{}", refused.text);
    }
    // A final link resolves to its directory, but nothing may use it as a file or directory.
    for path in [scratch.text("data/secret-link"), scratch.text("data/up")] {
        let refused = stat(&roots, &path).unwrap_err();
        assert_eq!(refused.code, 403, "{path}");
        assert!(refused.text.contains("symbolic link"), "{}", refused.text);
        let location = roots.resolve(&path).unwrap();
        assert_eq!(location.open_as_directory().unwrap_err().code, 403);
    }
}

#[test]
fn a_root_given_through_a_link_is_matched_by_both_spellings() {
    let scratch = Scratch::new("root-link");
    fs::create_dir_all(scratch.path("real")).unwrap();
    fs::write(scratch.path("real/f"), "x").unwrap();
    symlink(scratch.path("real"), scratch.path("alias")).unwrap();
    let roots = Roots::new(&[scratch.path("alias"), scratch.path("missing")]);
    assert!(stat(&roots, &scratch.text("alias/f")).unwrap().is_file());
    assert!(stat(&roots, &scratch.text("real/f")).unwrap().is_file());
    assert_eq!(refusal(&roots, &scratch.text("missing/f")).code, 403);
}

#[test]
fn missing_files_and_files_used_as_directories_are_reported() {
    let (scratch, roots) = tree();
    let missing = stat(&roots, &scratch.text("data/nothing")).unwrap_err();
    assert_eq!(missing.code, 404, "{}", missing.text);
    let missing = refusal(&roots, &scratch.text("data/nothing/deeper"));
    assert_eq!(missing.code, 404, "{}", missing.text);
    let not_a_directory = refusal(&roots, &scratch.text("data/sub/file/deeper"));
    assert_eq!(not_a_directory.code, 409, "{}", not_a_directory.text);
    assert!(
        not_a_directory.text.contains("not a directory"),
        "{}",
        not_a_directory.text
    );
}

#[test]
fn a_link_swapped_in_after_resolution_cannot_redirect_the_descriptor() {
    let (scratch, roots) = tree();
    let location = roots.resolve(&scratch.text("data/sub/file")).unwrap();
    // The directory is replaced by a link to somewhere else after the check.
    fs::rename(scratch.path("data/sub"), scratch.path("data/moved")).unwrap();
    fs::create_dir_all(scratch.path("elsewhere")).unwrap();
    fs::write(scratch.path("elsewhere/file"), "redirected").unwrap();
    symlink(scratch.path("elsewhere"), scratch.path("data/sub")).unwrap();
    // Work through the descriptor still reaches the original directory.
    let fd = system::open_at(
        location.directory.as_fd(),
        location.name.as_deref().unwrap(),
        libc::O_RDONLY | libc::O_NOFOLLOW,
        0,
    )
    .unwrap();
    let mut text = String::new();
    std::fs::File::from(fd).read_to_string(&mut text).unwrap();
    assert_eq!(text, "inside");
    // And a fresh resolution now refuses the link.
    let refused = refusal(&roots, &scratch.text("data/sub/file"));
    assert!(refused.text.contains("symbolic link"), "{}", refused.text);
}

#[test]
fn nul_bytes_are_refused() {
    let (scratch, roots) = tree();
    let path = format!("{}/a\0b", scratch.text("data"));
    assert_eq!(refusal(&roots, &path).code, 400);
}
