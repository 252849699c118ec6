//! The layering of ARCHITECTURE.md, kept true: every top-level module of the crate
//! may use only the modules below it in [`LAYERS`], so the imports form no cycle and
//! each layer can be read, tested and changed knowing only what is under it. The
//! submodules of one top-level module form no cycle either.
//!
//! The check reads the source as text: `crate::NAME` paths (in `use` lines, grouped
//! `use crate::{a, b}` imports and inline paths) outside comments, and `super::NAME`
//! paths between the submodules of one module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crate's top-level modules, lowest first, grouped in the layers that
/// ARCHITECTURE.md describes. A module may use the modules before it, never one
/// after it.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "foundation",
        &[
            "mask",
            "atomic_file",
            "rate",
            "timestamp",
            "duration_key",
            "stream_name",
            "event_log",
        ],
    ),
    ("formats and protocol, free of I/O", &["flv", "rtmp"]),
    ("fan-out", &["hub"]),
    ("I/O edge", &["transport"]),
    (
        "destinations, users, re-encoding, authorization",
        &[
            "target",
            "backoff",
            "presets",
            "transcode",
            "standby",
            "fmp4",
            "record",
            "hls",
            "users",
            "auth",
        ],
    ),
    ("settings", &["config", "logging"]),
    (
        "services",
        &["cluster", "relay", "server", "reload", "http"],
    ),
    ("the application", &["error", "app"]),
];

fn order() -> Vec<&'static str> {
    LAYERS
        .iter()
        .flat_map(|(_, modules)| modules.iter().copied())
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without comments (line comments and doc comments; prism has no block
/// comments in code).
fn code_of(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            // A `//` inside a string literal ("rtmp://...") is not a comment.
            Some(at) if line[..at].matches('"').count() % 2 == 0 => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn identifier_at(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// Every name that follows `prefix` in `code` (`crate::` or `super::`), with the
/// names inside a brace group (`crate::{a, b::c}`) too.
fn names_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in code.match_indices(prefix) {
        let rest = &code[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                let name = identifier_at(item.trim());
                if !name.is_empty() {
                    names.insert(name.to_owned());
                }
            }
        } else {
            let name = identifier_at(rest);
            if !name.is_empty() {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// The top-level module a file belongs to (`src/hub/queue.rs` -> `hub`).
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// `crate::` uses of each top-level module.
fn crate_uses(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(module) = top_module(src, &file) else {
            continue;
        };
        let code = code_of(&std::fs::read_to_string(&file).unwrap());
        let entry = uses.entry(module.clone()).or_default();
        for name in names_after(&code, "crate::") {
            if name != module {
                entry.insert(name);
            }
        }
    }
    uses
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let order = order();
    let rank = |name: &str| order.iter().position(|m| *m == name);
    let uses = crate_uses(&src);
    let mut problems = Vec::new();
    for (module, used) in &uses {
        let Some(own) = rank(module) else {
            problems.push(format!(
                "src/{module} is in no layer: add it to LAYERS and ARCHITECTURE.md"
            ));
            continue;
        };
        for name in used {
            match rank(name) {
                Some(other) if other < own => {}
                Some(_) => problems.push(format!("{module} uses {name}, which is above it")),
                // Not a module of the crate (a macro, `crate::Error` re-export...).
                None if uses.contains_key(name) => {
                    problems.push(format!("{module} uses {name}, which is in no layer"))
                }
                None => {}
            }
        }
    }
    assert!(
        problems.is_empty(),
        "layering broken:\n{}",
        problems.join("\n")
    );
}

/// The submodules of `dir` (a top-level module's folder) and which of its siblings
/// each uses through `super::`.
fn sibling_uses(dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = Vec::new();
    rust_files(dir, &mut files);
    let siblings: BTreeSet<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let path = e.ok()?.path();
            let name = path.file_stem()?.to_str()?.to_owned();
            (name != "mod" && name != "tests").then_some(name)
        })
        .collect();
    for file in files {
        let relative = file.strip_prefix(dir).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let first = first.to_str().unwrap();
        let name = first.strip_suffix(".rs").unwrap_or(first);
        // Only a direct child's own `super::` reaches its siblings.
        if name == "mod" || name == "tests" || relative.components().count() > 1 {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(&file).unwrap());
        let used = names_after(&code, "super::")
            .into_iter()
            .filter(|n| siblings.contains(n) && n != name)
            .collect();
        uses.insert(name.to_owned(), used);
    }
    uses
}

/// A cycle in `graph`, if any, as the path that closes it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_submodules_of_a_module_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            dirs.push(path.clone());
            for inner in std::fs::read_dir(&path).unwrap() {
                let inner = inner.unwrap().path();
                if inner.is_dir() {
                    dirs.push(inner);
                }
            }
        }
    }
    for dir in dirs {
        let graph = sibling_uses(&dir);
        if let Some(cycle) = find_cycle(&graph) {
            panic!(
                "the submodules of {} import each other: {}",
                dir.display(),
                cycle.join(" -> ")
            );
        }
    }
}

#[test]
fn the_checks_catch_what_they_are_for() {
    // A reversed import is seen, through every form of path...
    let code = code_of(
        "use crate::relay::Relay;\nuse crate::{hub, server::io};\n\
         let x = crate::config::Config::defaults(); // crate::app in a comment\n\
         let url = \"rtmp://host/crate::nothing\";",
    );
    let names = names_after(&code, "crate::");
    let expected: BTreeSet<String> = ["relay", "hub", "server", "config", "nothing"]
        .map(String::from)
        .into();
    assert_eq!(names, expected);
    // ...and a cycle is found.
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("amf0", ["amf3"].as_slice()),
        ("amf3", ["amf0"].as_slice()),
        ("reader", [].as_slice()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.iter().map(|s| s.to_string()).collect()))
    .collect();
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["amf0".into(), "amf3".into(), "amf0".into()])
    );
    // The layers name every module once.
    let order = order();
    let unique: BTreeSet<_> = order.iter().collect();
    assert_eq!(unique.len(), order.len());
}
