//! Guards the house's one-way imports: no two modules of `src/` (top-level rooms, and the files
//! inside one room) may import each other, directly or through others. Reads the sources, so a
//! new circle fails `cargo test` with the path it takes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// `module -> modules it refers to`, from `crate::a` (between rooms) and `super::b` (within one).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src/") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !name.ends_with(".rs") || name.ends_with("tests.rs") {
                continue;
            }
            let rel = path.strip_prefix(&root).expect("under src/");
            let parts: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
                .collect();
            let room = parts[0].clone();
            if room == "lib" || room == "main" || room == "layout_check" {
                continue;
            }
            // `room/mod.rs` is the room itself; `room/file.rs` is `room::file`.
            let me = match parts.as_slice() {
                [_] => room.clone(),
                [_, m] if m == "mod" => room.clone(),
                [_, file, ..] => format!("{room}::{file}"),
                [] => continue,
            };
            let text = std::fs::read_to_string(&path).expect("read a source file");
            // Unit tests may reach anywhere; they are not part of the shape.
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
            for line in code.lines().map(str::trim) {
                if line.starts_with("//") {
                    continue;
                }
                for (prefix, inside) in [("crate::", false), ("super::", true)] {
                    for (i, _) in line.match_indices(prefix) {
                        let rest = &line[i + prefix.len()..];
                        let target: String = rest
                            .chars()
                            .take_while(|c| {
                                c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit()
                            })
                            .collect();
                        if target.is_empty() {
                            continue;
                        }
                        let to = if inside {
                            // Only files inside a room say `super::`; the room is their parent.
                            if !me.contains("::") {
                                continue;
                            }
                            format!("{room}::{target}")
                        } else {
                            target
                        };
                        let from = if inside { me.clone() } else { room.clone() };
                        if to != from {
                            edges.entry(from).or_default().insert(to);
                        }
                    }
                }
            }
        }
    }
    edges
}

/// A path `a -> ... -> a`, if the graph has one.
fn cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == n) {
            let mut c = path[at..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for m in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in edges.keys() {
        if let Some(c) = visit(n, edges, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_module_imports_its_way_back_to_itself() {
    let edges = graph();
    assert!(
        edges.contains_key("service"),
        "the scan found the rooms: {edges:?}"
    );
    if let Some(c) = cycle(&edges) {
        panic!("import circle: {}", c.join(" -> "));
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    edges.entry("a".into()).or_default().insert("b".into());
    edges.entry("b".into()).or_default().insert("c".into());
    assert_eq!(cycle(&edges), None);
    edges.entry("c".into()).or_default().insert("a".into());
    assert_eq!(cycle(&edges).map(|c| c.len()), Some(4));
}
