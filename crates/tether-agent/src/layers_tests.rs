//! The agent's module graph has no circle: reads every `crate::` path in `src/**/*.rs` (code
//! only, not comments or strings), maps each file to its top-level module and fails on a cycle
//! between top-level modules, naming it and the lines that close it.
//!
//! Paths through `super::` are not followed: inside a top-level module they stay inside it, and
//! reaching a sibling module is written `crate::` here.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// One import: the file and line it is on, for the failure message.
#[derive(Debug)]
struct Site {
    file: String,
    line: usize,
}

/// Top-level module -> the top-level modules it imports, with where.
type Graph = BTreeMap<String, BTreeMap<String, Site>>;

#[test]
fn top_level_modules_import_each_other_in_no_circle() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&source);
    assert!(
        graph
            .get("connection")
            .is_some_and(|targets| targets.contains_key("sessions")),
        "the scan must see `connection` importing `sessions`: {graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        let steps: Vec<String> = cycle
            .windows(2)
            .map(|pair| {
                let site = &graph[&pair[0]][&pair[1]];
                format!("  {} -> {} ({}:{})", pair[0], pair[1], site.file, site.line)
            })
            .collect();
        panic!(
            "import cycle between the agent's modules: {}\n{}\nmove the shared item down into a module both can import",
            cycle.join(" -> "),
            steps.join("\n")
        );
    }
}

#[test]
fn paths_are_read_from_code_only() {
    let text = "use crate::{alpha::{self, A}, beta::B};\n\
                // crate::gamma in a comment\n\
                let s = \"crate::delta\"; let c = '\"'; /* crate::epsilon */\n\
                fn f<'a>(x: &'a str) { crate::zeta::run(x) }\n";
    let found: Vec<(String, usize)> = crate_paths(text);
    let names: Vec<&str> = found.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["alpha", "beta", "zeta"]);
    assert_eq!(found[2].1, 4, "line of `crate::zeta`");
}

#[test]
fn a_cycle_is_found_and_named() {
    let site = || Site {
        file: "x.rs".into(),
        line: 1,
    };
    let mut graph = Graph::new();
    graph.entry("a".into()).or_default().insert("b".into(), site());
    graph.entry("b".into()).or_default().insert("c".into(), site());
    assert_eq!(find_cycle(&graph), None);
    graph.entry("c".into()).or_default().insert("a".into(), site());
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

/// Reads every file under `src` into the graph of top-level modules.
fn module_graph(source: &Path) -> Graph {
    let mut files = Vec::new();
    collect_files(source, &mut files);
    let modules: BTreeSet<String> = files
        .iter()
        .filter_map(|file| top_level_module(source, file))
        .collect();
    let mut graph = Graph::new();
    for file in &files {
        let Some(from) = top_level_module(source, file) else {
            continue;
        };
        let text = fs::read_to_string(file).expect("read a source file");
        let shown = file.strip_prefix(source).unwrap_or(file).display().to_string();
        for (to, line) in crate_paths(&text) {
            if to != from && modules.contains(&to) {
                let site = Site {
                    file: shown.clone(),
                    line,
                };
                graph.entry(from.clone()).or_default().entry(to).or_insert(site);
            }
        }
    }
    graph
}

fn collect_files(directory: &Path, files: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(directory).expect("read a source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect_files(&path, files);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
    files.sort();
}

/// `src/sessions/tests.rs` -> `sessions`, `src/config.rs` -> `config`; the crate roots
/// (`lib.rs`, `main.rs`) and this check belong to no module.
fn top_level_module(source: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(source).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main" | "layers_tests")).then(|| name.to_owned())
}

/// The first segment after each `crate::` in code, with its line: `crate::a::b` gives `a`,
/// `crate::{a::x, b}` gives `a` and `b`.
fn crate_paths(text: &str) -> Vec<(String, usize)> {
    let code = code_only(text);
    let mut found = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let before = &code[..code.len() - rest.len() + at];
        let preceded_by_word = before
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        rest = &rest[at + "crate::".len()..];
        if preceded_by_word {
            continue;
        }
        let line = before.matches('\n').count() + 1;
        for name in first_segments(rest) {
            found.push((name, line));
        }
    }
    found
}

/// The leading names of a path's continuation: `a::b` gives `a`; a `{...}` group gives the first
/// name of each of its items (`self` and `*` give none).
fn first_segments(path: &str) -> Vec<String> {
    let path = path.trim_start();
    let Some(group) = path.strip_prefix('{') else {
        return identifier(path).into_iter().collect();
    };
    let mut names = Vec::new();
    let mut depth = 0;
    let mut item_start = true;
    for (index, character) in group.char_indices() {
        match character {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => item_start = true,
            c if item_start && !c.is_whitespace() => {
                item_start = false;
                names.extend(identifier(&group[index..]).filter(|name| name != "self"));
            }
            _ => {}
        }
    }
    names
}

fn identifier(text: &str) -> Option<String> {
    let name: String = text
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// The text with comments, string literals and character literals blanked out (newlines kept,
/// so that line numbers stay true).
fn code_only(text: &str) -> String {
    let characters: Vec<char> = text.chars().collect();
    let mut code = String::with_capacity(text.len());
    let mut index = 0;
    while index < characters.len() {
        let at = |offset: usize| characters.get(index + offset).copied();
        // `r"`, `r#"` (and `br"`) open a raw string only at the start of a word.
        let word_start = index == 0
            || !(characters[index - 1].is_alphanumeric() || characters[index - 1] == '_')
            || (characters[index - 1] == 'b' && (index < 2 || !characters[index - 2].is_alphanumeric()));
        let end = match (characters[index], at(1), at(2)) {
            ('/', Some('/'), _) => (index..characters.len())
                .find(|&i| characters[i] == '\n')
                .unwrap_or(characters.len()),
            ('/', Some('*'), _) => find_after(&characters, index + 2, &['*', '/']),
            ('"', _, _) => string_end(&characters, index + 1, None),
            ('r', Some('"' | '#'), _) if word_start => {
                let hashes = characters[index + 1..].iter().take_while(|&&c| c == '#').count();
                string_end(&characters, index + 2 + hashes, Some(hashes))
            }
            // A character literal; a lifetime (`'a`) has no closing quote and stays.
            ('\'', Some('\\'), _) => find_after(&characters, index + 3, &['\'']),
            ('\'', Some(_), Some('\'')) => index + 3,
            (character, _, _) => {
                code.push(character);
                index += 1;
                continue;
            }
        };
        let end = end.clamp(index + 1, characters.len());
        code.extend(
            characters[index..end]
                .iter()
                .map(|&c| if c == '\n' { '\n' } else { ' ' }),
        );
        index = end;
    }
    code
}

/// Index just past the first `pattern` at or after `from` (or the end).
fn find_after(characters: &[char], from: usize, pattern: &[char]) -> usize {
    (from..characters.len())
        .find(|&i| characters[i..].starts_with(pattern))
        .map_or(characters.len(), |i| i + pattern.len())
}

/// Index just past the closing quote of a string whose body starts at `from`: a plain string
/// (`raw_hashes` is `None`) skips escapes, a raw one ends at `"` and its number of `#`.
fn string_end(characters: &[char], from: usize, raw_hashes: Option<usize>) -> usize {
    let mut index = from;
    while index < characters.len() {
        match (characters[index], raw_hashes) {
            ('\\', None) => index += 2,
            ('"', None) => return index + 1,
            ('"', Some(hashes))
                if characters[index + 1..]
                    .iter()
                    .take(hashes)
                    .filter(|&&c| c == '#')
                    .count()
                    == hashes =>
            {
                return index + 1 + hashes;
            }
            _ => index += 1,
        }
    }
    characters.len()
}

/// A cycle as a path that ends where it starts, or `None`; depth-first, in name order.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    enum Mark {
        OnPath,
        Done,
    }
    fn visit(
        node: &str,
        graph: &Graph,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(node.to_owned(), Mark::OnPath);
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flat_map(|targets| targets.keys()) {
            match marks.get(next) {
                Some(Mark::OnPath) => {
                    let start = path.iter().position(|step| step == next).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some(cycle) = visit(next, graph, marks, path) {
                        return Some(cycle);
                    }
                }
            }
        }
        path.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if !marks.contains_key(node)
            && let Some(cycle) = visit(node, graph, &mut marks, &mut Vec::new())
        {
            return Some(cycle);
        }
    }
    None
}
