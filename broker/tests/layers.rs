//! The broker's modules import one way only, top to bottom (README, "Layout"). This
//! test reads every `crate::…` path in `src/`, builds the graph of top-level modules,
//! and fails on an import cycle, on an import that climbs a floor, and on one endpoint
//! module importing another.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: an unreadable source file should stop it loudly

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Floors from the top. A module may import modules on its own floor or below; on
/// the floors marked `peers_apart`, never another module of the same floor.
const FLOORS: &[(&[&str], bool)] = &[
    (&["main", "cli"], false),
    (&["app"], false),
    (&["access"], false),
    (&["oidc", "login", "account", "admin"], true),
    (&["flow"], false),
    (&["web"], false),
    (
        &[
            "identity",
            "sessions",
            "tokens",
            "providers",
            "rekey",
            "email",
        ],
        false,
    ),
    (&["config"], false),
    (&["roles"], false),
    (&["store", "secrets", "clock", "metrics"], false),
];

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Top-level module names a line of Rust refers to through `crate::`.
fn crate_paths(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            found.extend(group_heads(group));
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
    }
    found
}

/// The first segment of each path in a `use crate::{a, b::c, d::{e, f}}` group.
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0usize;
    let mut expecting = true;
    let mut name = String::new();
    for c in group.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                if !name.is_empty() {
                    heads.push(std::mem::take(&mut name));
                }
                expecting = true;
            }
            c if expecting && (c.is_alphanumeric() || c == '_') => name.push(c),
            _ if expecting && !name.is_empty() => {
                heads.push(std::mem::take(&mut name));
                expecting = false;
            }
            _ => {}
        }
    }
    if !name.is_empty() {
        heads.push(name);
    }
    heads
}

/// The top-level module a source file belongs to (`src/login/redirect.rs` → `login`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib").then(|| name.to_string())
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn read_graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let Some(module) = module_of(src, &file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        let edges = graph.entry(module.clone()).or_default();
        for line in text.lines() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for target in crate_paths(line) {
                if target != module {
                    edges.insert(target);
                }
            }
        }
    }
    graph
}

/// A cycle, as the list of modules on it, if there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|start| visit(start, graph, &mut Vec::new(), &mut done))
}

/// Every import that breaks the floors.
fn floor_violations(graph: &Graph) -> Vec<String> {
    let floor = |m: &str| FLOORS.iter().position(|(names, _)| names.contains(&m));
    let mut wrong = Vec::new();
    for (from, targets) in graph {
        let Some(here) = floor(from) else {
            wrong.push(format!(
                "{from} is on no floor: add it to FLOORS and the README"
            ));
            continue;
        };
        for to in targets {
            match floor(to) {
                None => wrong.push(format!("{from} → {to}: {to} is on no floor")),
                Some(there) if there < here => wrong.push(format!("{from} → {to} climbs")),
                Some(there) if there == here && FLOORS[here].1 => wrong.push(format!(
                    "{from} → {to}: endpoint modules never import each other"
                )),
                Some(_) => {}
            }
        }
    }
    wrong
}

#[test]
fn the_broker_imports_one_way_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = read_graph(&src);
    assert!(
        graph.contains_key("web") && graph.contains_key("oidc"),
        "{graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle: {}", cycle.join(" → "));
    }
    let wrong = floor_violations(&graph);
    assert!(
        wrong.is_empty(),
        "imports against the floors:\n{}",
        wrong.join("\n")
    );
}

fn graph_of(edges: &[(&str, &str)]) -> Graph {
    let mut g = Graph::new();
    for (from, to) in edges {
        g.entry(from.to_string())
            .or_default()
            .insert(to.to_string());
        g.entry(to.to_string()).or_default();
    }
    g
}

#[test]
fn a_cycle_is_found_and_named() {
    let g = graph_of(&[("login", "flow"), ("flow", "web"), ("web", "login")]);
    let cycle = find_cycle(&g).expect("a cycle");
    assert_eq!(cycle.first(), cycle.last());
    assert!(cycle.contains(&"web".to_string()) && cycle.contains(&"flow".to_string()));
    assert_eq!(
        find_cycle(&graph_of(&[("login", "flow"), ("flow", "web")])),
        None
    );
}

#[test]
fn climbing_and_endpoint_to_endpoint_imports_are_refused() {
    let wrong = floor_violations(&graph_of(&[("web", "oidc"), ("login", "account")]));
    assert_eq!(wrong.len(), 2, "{wrong:?}");
    assert!(floor_violations(&graph_of(&[("login", "flow"), ("flow", "store")])).is_empty());
}

#[test]
fn paths_are_read_from_plain_and_grouped_uses() {
    assert_eq!(crate_paths("use crate::web::{AppState, Params};"), ["web"]);
    assert_eq!(
        crate_paths("use crate::{flow::{A, B}, store, web::x};"),
        ["flow", "store", "web"]
    );
    assert_eq!(
        crate_paths("let x = crate::secrets::hash(y) + mycrate::z;"),
        ["secrets"]
    );
    assert!(crate_paths("let s = \"no paths here\";").is_empty());
}
