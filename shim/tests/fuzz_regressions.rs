//! Every input a fuzz target ever failed on, replayed with the target's own body and
//! assertions (`shim/fuzz/harness.rs`, included below, is what the targets run).
//! libFuzzer writes them as `artifacts/<target>/crash-*` (or `timeout-*`, `oom-*`); we keep
//! them, minimised, under `shim/fuzz/regressions/<target>/` so a regression fails
//! `cargo test` on stable, not only a fuzz run.
//!
//! Also checked here: the targets still reach the code they exist for (the switch's version
//! choice, stream remap and output plan; the rewrite's graph edit), seeded from the Plex argv
//! fixtures as the fuzz corpora are.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure is a panic

#[path = "../fuzz/harness.rs"]
mod harness;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

type Body = fn(&[u8]) -> harness::Reached;

/// Every fuzz target and its body.
const TARGETS: &[(&str, Body)] = &[
    ("argv", harness::argv),
    ("switch", harness::switch),
    ("filtergraph", harness::filtergraph),
    ("probe", harness::probe),
];

fn regressions() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions")
}

fn inputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.expect("dir entry").path();
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.display().to_string(), bytes)
        })
        .collect();
    out.sort();
    out
}

/// Replays every kept input of `target`, naming the file that fails.
fn replay(target: &str) -> usize {
    let (_, body) = TARGETS
        .iter()
        .find(|(t, _)| *t == target)
        .expect("a known target");
    let dir = regressions().join(target);
    if !dir.exists() {
        return 0;
    }
    let found = inputs(&dir);
    for (name, data) in &found {
        let r = std::panic::catch_unwind(|| body(data));
        assert!(r.is_ok(), "{target}: {name} fails again (replayed above)");
    }
    found.len()
}

#[test]
fn argv_findings_stay_fixed() {
    assert!(replay("argv") > 0, "the argv findings are missing");
}

#[test]
fn switch_findings_stay_fixed() {
    replay("switch");
}

#[test]
fn filtergraph_findings_stay_fixed() {
    replay("filtergraph");
}

#[test]
fn probe_findings_stay_fixed() {
    replay("probe");
}

/// A directory of regressions for a target that does not exist would never be replayed.
#[test]
fn every_regressions_dir_is_a_target() {
    for e in std::fs::read_dir(regressions()).expect("shim/fuzz/regressions") {
        let name = e.expect("dir entry").file_name();
        let name = name.to_string_lossy();
        assert!(
            TARGETS.iter().any(|(t, _)| *t == name),
            "shim/fuzz/regressions/{name} is not a fuzz target: {:?}",
            TARGETS.iter().map(|t| t.0).collect::<Vec<_>>()
        );
    }
}

/// The Plex argv fixtures (`fixtures/plex-argv*`), as the argv and switch corpora are seeded.
fn fixture_argvs() -> Vec<(String, Vec<String>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
    let mut out = Vec::new();
    for dir in ["plex-argv", "plex-argv-own"] {
        for (name, bytes) in inputs(&root.join(dir)) {
            if !name.ends_with(".json") {
                continue;
            }
            let v: serde_json::Value = serde_json::from_slice(&bytes).expect("fixture json");
            let args = v["args"]
                .as_array()
                .expect("args")
                .iter()
                .map(|a| a.as_str().expect("arg").to_string())
                .collect();
            out.push((name, args));
        }
    }
    assert!(out.len() >= 10, "fixtures missing");
    out
}

fn nul_joined(args: &[String]) -> Vec<u8> {
    args.join("\0").into_bytes()
}

/// The switch target gets to a switch whose output is planned again (choice, remap,
/// `rewrite::plan_with` in switched mode) from the Plex captures it is seeded with.
#[test]
fn switch_target_reaches_the_switch_and_its_output_plan() {
    let reached: Vec<&str> = fixture_argvs()
        .iter()
        .flat_map(|(_, a)| harness::switch(&nul_joined(a)))
        .collect();
    assert!(reached.contains(&"switch+output"), "{reached:?}");
}

/// The argv target gets to rewrites (and passes) from the same seeds.
#[test]
fn argv_target_reaches_the_rewrite() {
    let reached: Vec<&str> = fixture_argvs()
        .iter()
        .flat_map(|(_, a)| harness::argv(&nul_joined(a)))
        .collect();
    assert!(reached.contains(&"rewrite"), "{reached:?}");
    assert!(reached.contains(&"pass"), "{reached:?}");
}

/// The filter graph target gets to the rewrite's graph edit and to a switch that plans the
/// output again, from the graphs of the Plex captures.
#[test]
fn filtergraph_target_reaches_the_rewrite_and_the_switch() {
    let mut graphs: Vec<String> = Vec::new();
    for (_, args) in fixture_argvs() {
        for w in args.windows(2) {
            if w[0] == "-filter_complex" || w[0].starts_with("-filter:") || w[0] == "-vf" {
                graphs.push(w[1].clone());
            }
        }
    }
    let reached: Vec<&str> = graphs
        .iter()
        .flat_map(|g| harness::filtergraph(g.as_bytes()))
        .collect();
    assert!(reached.contains(&"rewrite"), "{reached:?}");
    assert!(reached.contains(&"switch+output"), "{reached:?}");
}

/// The harness splits on NUL exactly as the shim receives argv (no token lost or added).
#[test]
fn tokens_split_on_nul() {
    assert_eq!(
        harness::tokens(b"-i\0a b\0\0out"),
        ["-i", "a b", "", "out"]
            .iter()
            .map(OsString::from)
            .collect::<Vec<_>>()
    );
}
