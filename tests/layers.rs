//! The daemon's layers import only downward (issue 10): cli → jobs → daemon → plex, clients,
//! store, config → model → the shim crate. A `use crate::<upper layer>` in a lower one fails here.

use std::path::Path;

/// Each layer and the layers above it, which it must not import.
const LAYERS: &[(&str, &[&str])] = &[
    ("jobs", &["cli"]),
    ("daemon", &["cli", "jobs"]),
    ("plex", &["cli", "jobs", "daemon"]),
    ("clients", &["cli", "jobs", "daemon"]),
    ("store", &["cli", "jobs", "daemon"]),
    ("config", &["cli", "jobs", "daemon", "store"]),
    (
        "model",
        &[
            "cli", "jobs", "daemon", "plex", "clients", "store", "config",
        ],
    ),
];

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_module_imports_upward() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut bad = Vec::new();
    for (layer, above) in LAYERS {
        let mut files = Vec::new();
        sources(&src.join(layer), &mut files);
        assert!(!files.is_empty(), "src/{layer} has no sources");
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for up in *above {
                    if code.contains(&format!("crate::{up}::")) {
                        bad.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(bad.is_empty(), "upward imports:\n{}", bad.join("\n"));
}
