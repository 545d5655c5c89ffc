//! The shape of the code, checked: the hub's layers only import downwards, no crate of the
//! workspace has an import circle between its modules, `AppState` stays in `http/`, the domain
//! stays free of HTTP, SQL and sockets, and no source file grows past 600 lines.
//!
//! It reads the `use crate::...` trees and inline `crate::...` paths of every source file: no
//! compiler involvement, so a failure names the file and the import.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// The hub's layers, lowest first. A module may import from its own layer and those before it.
const HUB_LAYERS: &[&str] = &["metrics", "config", "domain", "store", "relay", "service", "http"];

/// Longest source file allowed anywhere in the workspace.
const MAX_LINES: usize = 600;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(directory: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(directory) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            found.push(path);
        }
    }
}

/// The module path of a file below `src/`: `http/server.rs` is `["http", "server"]`,
/// `store/mod.rs` is `["store"]`, `lib.rs` is `[]`.
fn module_of(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    let file = parts.pop().unwrap_or_default();
    let stem = file.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_owned());
    }
    parts
}

/// Source text without comments, so that doc links and prose do not count as imports.
fn without_comments(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(start) => &line[..start],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Expands a use tree (`a::{b, c::{d, e}}`) into full paths.
fn expand(tree: &str, prefix: &str, paths: &mut Vec<String>) {
    let tree = tree.trim();
    if tree.is_empty() {
        return;
    }
    if let Some(open) = tree.find('{') {
        let base = tree[..open].trim().trim_end_matches("::");
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let prefix = if base.is_empty() {
            prefix.to_owned()
        } else {
            format!("{prefix}{base}::")
        };
        let mut depth = 0;
        let mut start = 0;
        for (index, character) in inner.char_indices() {
            match character {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&inner[start..index], &prefix, paths);
                    start = index + 1;
                }
                _ => {}
            }
        }
        expand(&inner[start..], &prefix, paths);
        return;
    }
    let path = tree.split(" as ").next().unwrap_or(tree).trim();
    paths.push(format!("{prefix}{path}").trim_end_matches("::self").to_owned());
}

/// Every `crate::` path a file refers to, as segments.
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    let text = without_comments(text);
    let mut paths = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("crate::") {
        let after = &rest[start + "crate::".len()..];
        let preceded_by_identifier = rest[..start]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        if preceded_by_identifier {
            rest = after;
            continue;
        }
        if after.starts_with('{') {
            let mut depth = 0;
            let mut end = after.len();
            for (index, character) in after.char_indices() {
                match character {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = index + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            expand(&after[..end], "", &mut paths);
            rest = &after[end..];
        } else {
            let end = after
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(after.len());
            paths.push(after[..end].trim_end_matches(':').to_owned());
            rest = &after[end..];
        }
    }
    paths
        .into_iter()
        .map(|path| {
            path.split("::")
                .filter(|segment| !segment.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// A crate's sources: (module path, file, text).
fn sources(crate_directory: &Path) -> Vec<(Vec<String>, PathBuf, String)> {
    let source = crate_directory.join("src");
    let mut files = Vec::new();
    rust_files(&source, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let relative = file.strip_prefix(&source).unwrap_or(&file).to_owned();
            let text = fs::read_to_string(&file).unwrap_or_default();
            (module_of(&relative), relative, text)
        })
        .collect()
}

fn rank(layer: &str) -> usize {
    HUB_LAYERS
        .iter()
        .position(|known| *known == layer)
        // lib.rs, main.rs and demo.rs sit on top.
        .unwrap_or(HUB_LAYERS.len())
}

#[test]
fn hub_layers_import_only_downwards() {
    let mut upward = Vec::new();
    for (module, file, text) in sources(&workspace().join("crates/tether-hub")) {
        let own = module.first().map(String::as_str).unwrap_or("");
        for path in crate_paths(&text) {
            let target = path.first().map(String::as_str).unwrap_or("");
            if rank(target) > rank(own) {
                upward.push(format!("{}: crate::{}", file.display(), path.join("::")));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports from a layer above ({}):\n{}",
        HUB_LAYERS.join(" < "),
        upward.join("\n")
    );
}

#[test]
fn only_http_sees_the_app_state_and_the_domain_has_no_io() {
    let mut wrong = Vec::new();
    for (module, file, text) in sources(&workspace().join("crates/tether-hub")) {
        let layer = module.first().map(String::as_str).unwrap_or("");
        let code = without_comments(&text);
        if !matches!(layer, "http" | "") && code.contains("AppState") {
            wrong.push(format!("{}: AppState outside http/", file.display()));
        }
        // Unit tests may read their fixtures from disk.
        let is_test = file.to_string_lossy().ends_with("tests.rs");
        if layer == "domain" && !is_test {
            for forbidden in ["axum", "sqlx", "hyper", "tokio::net", "std::fs", "async_nats"] {
                if code.contains(&format!("{forbidden}::")) || code.contains(&format!("use {forbidden}")) {
                    wrong.push(format!("{}: {forbidden} in the domain", file.display()));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The import graph between the modules of one crate, at `depth` segments (1: top-level
/// modules; 2 for the hub, whose top level is its layers).
fn import_graph(crate_directory: &Path, depth: usize) -> BTreeMap<String, BTreeSet<String>> {
    let files = sources(crate_directory);
    let known: BTreeSet<Vec<String>> = files.iter().map(|(module, _, _)| module.clone()).collect();
    let node = |path: &[String]| -> Option<String> {
        // The longest known module the path starts with, cut to `depth`.
        let module = (1..=path.len())
            .rev()
            .map(|length| path[..length].to_vec())
            .find(|prefix| known.contains(prefix))?;
        (!module.is_empty()).then(|| module[..module.len().min(depth)].join("::"))
    };
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, _, text) in &files {
        let Some(from) = node(module) else { continue };
        for path in crate_paths(text) {
            // A submodule may use what its parent defines (a layer's shared context lives in
            // its `mod.rs`): only edges between siblings and across branches can close a circle.
            if let Some(to) = node(&path)
                && to != from
                && !from.starts_with(&format!("{to}::"))
            {
                graph.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    graph
}

/// One import circle in `graph`, if there is any.
fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(position) = stack.iter().position(|seen| seen == node) {
            let mut circle = stack[position..].to_vec();
            circle.push(node.to_owned());
            return Some(circle);
        }
        if !done.insert(node.to_owned()) {
            return None;
        }
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, done, stack) {
                return Some(circle);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|start| visit(start, graph, &mut done, &mut Vec::new()))
}

#[test]
fn no_crate_has_an_import_circle() {
    let mut circles = Vec::new();
    for (name, depth) in [
        ("tether-hub", 2),
        ("tether-agent", 1),
        ("tether-cli", 1),
        ("tether-proto", 1),
        ("tether-net", 1),
    ] {
        let graph = import_graph(&workspace().join("crates").join(name), depth);
        if let Some(circle) = find_circle(&graph) {
            circles.push(format!("{name}: {}", circle.join(" -> ")));
        }
    }
    assert!(circles.is_empty(), "import circles:\n{}", circles.join("\n"));
}

#[test]
fn no_source_file_is_over_600_lines() {
    let mut files = Vec::new();
    for directory in ["crates", "fuzz"] {
        rust_files(&workspace().join(directory), &mut files);
    }
    let long: Vec<String> = files
        .iter()
        .filter(|file| !file.components().any(|part| part.as_os_str() == "target"))
        .filter_map(|file| {
            let lines = fs::read_to_string(file).ok()?.lines().count();
            (lines > MAX_LINES).then(|| format!("{} ({lines} lines)", file.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_checker_reads_use_trees() {
    let paths = crate_paths(
        "use crate::{a::{b, c::D}, e as f};\nlet x = crate::g::h(); // crate::ignored\nuse other_crate::x;",
    );
    let joined: Vec<String> = paths.iter().map(|path| path.join("::")).collect();
    assert_eq!(joined, ["a::b", "a::c::D", "e", "g::h"]);
    let mut graph = BTreeMap::new();
    graph.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    graph.insert("b".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(
        find_circle(&graph),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
}
