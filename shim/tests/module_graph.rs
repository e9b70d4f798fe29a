//! The shim's modules import one way: no cycle between the crate's modules, none between
//! the parts of a split module (`switch/`, `rewrite/`, `job/`). A cycle (the policy importing
//! the protocol for `MediaVersion` while the protocol imported the policy for `Viewer`, issue
//! 10) makes each side impossible to read, test or move without the other.
//!
//! Read from the sources: `crate::x` names module `x`; `super::y` in `dir/z.rs` names the
//! sibling `dir/y.rs` when there is one. Test code (`tests.rs`, a trailing `#[cfg(test)] mod`)
//! and comments do not count.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure is a panic

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read shim/src") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without comments and without a trailing inline test module.
fn code(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut end = lines.len();
    for (i, l) in lines.iter().enumerate() {
        let next = lines.get(i + 1).map(|n| n.trim()).unwrap_or_default();
        if l.trim() == "#[cfg(test)]" && next.starts_with("mod ") && next.ends_with('{') {
            end = i;
            break;
        }
    }
    lines[..end]
        .iter()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Identifiers following `prefix` (`crate::` → `policy` in `crate::policy::decide`), and each
/// name of a `prefix{a, b::c}` group.
fn named_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in code.match_indices(prefix) {
        let rest = &code[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let body = group.split('}').next().unwrap_or_default();
            for part in body.split(',') {
                names.insert(ident(part.trim()));
            }
        } else {
            names.insert(ident(rest));
        }
    }
    names.remove("");
    names
}

/// A cycle in `edges`, as a path that starts and ends at the same node.
fn cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let from = path.iter().position(|p| p == n).unwrap_or(0);
                let mut c = path[from..].to_vec();
                c.push(n.to_string());
                return Some(c);
            }
            _ => {}
        }
        state.insert(n.to_string(), 1);
        path.push(n.to_string());
        for m in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, edges, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        if let Some(c) = visit(n, edges, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

#[test]
fn shim_modules_import_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let top: BTreeSet<String> = files
        .iter()
        .filter_map(|f| {
            let rel = f.strip_prefix(&src).ok()?;
            let first = rel.components().next()?.as_os_str().to_str()?;
            Some(first.trim_end_matches(".rs").to_string())
        })
        .filter(|m| m != "lib" && m != "main")
        .collect();
    let mut crate_edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut part_edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let rel = f.strip_prefix(&src).expect("under src");
        let parts: Vec<String> = rel
            .iter()
            .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
            .collect();
        let name = parts.last().cloned().unwrap_or_default();
        if name == "tests" || parts[0] == "lib" || parts[0] == "main" {
            continue;
        }
        let text = code(&std::fs::read_to_string(f).expect("read a source file"));
        let module = parts[0].clone();
        for m in named_after(&text, "crate::") {
            if top.contains(&m) && m != module {
                crate_edges.entry(module.clone()).or_default().insert(m);
            }
        }
        // Siblings inside a split module (`switch/choice.rs` → `switch/remap.rs`).
        if parts.len() >= 2 && name != "mod" {
            let dir = f.parent().expect("a parent dir");
            let here = parts[..parts.len() - 1].join("::");
            for m in named_after(&text, "super::") {
                if m != name && dir.join(format!("{m}.rs")).exists() {
                    part_edges
                        .entry(format!("{here}::{name}"))
                        .or_default()
                        .insert(format!("{here}::{m}"));
                }
            }
        }
    }
    // The check must see the crate: the policy imports several modules.
    assert!(
        crate_edges.get("policy").is_some_and(|e| e.len() >= 3),
        "no imports found: {crate_edges:?}"
    );
    assert_eq!(
        cycle(&crate_edges),
        None,
        "an import cycle between shim modules"
    );
    assert_eq!(
        cycle(&part_edges),
        None,
        "an import cycle inside a split module"
    );
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let edges = |pairs: &[(&str, &str)]| {
        let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in pairs {
            m.entry(a.to_string()).or_default().insert(b.to_string());
        }
        m
    };
    assert_eq!(
        cycle(&edges(&[("config", "policy"), ("policy", "config")])),
        Some(vec!["config".into(), "policy".into(), "config".into()])
    );
    assert_eq!(
        cycle(&edges(&[("policy", "switch"), ("switch", "protocol")])),
        None
    );
    let text = code("use crate::{argv::Invocation, facts};\n// crate::policy\nfn f() { crate::edit::apply() }\n#[cfg(test)]\nmod tests {\n    use crate::policy;\n}\n");
    assert_eq!(
        named_after(&text, "crate::"),
        ["argv", "edit", "facts"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
}
