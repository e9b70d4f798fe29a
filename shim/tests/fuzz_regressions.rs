//! Every input a fuzz target ever crashed on, replayed with the target's own assertions.
//! libFuzzer writes them as `artifacts/<target>/crash-*`; we keep them under
//! `shim/fuzz/regressions/<target>/` so a regression fails `cargo test`, not only a fuzz run.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure is a panic

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::time::Instant;

use downshiftarr_shim::argv::{parse, Parsed};
use downshiftarr_shim::config::ShimConfig;
use downshiftarr_shim::facts::{DynamicRange, Origin, SourceFacts};
use downshiftarr_shim::policy::{Action, Viewer};
use downshiftarr_shim::shim::{evaluate, Sources};

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.expect("dir entry").path();
            let bytes = std::fs::read(&p).expect("regression input");
            (p.display().to_string(), bytes)
        })
        .collect();
    out.sort();
    out
}

/// The `argv` target: a pass is byte-identical and a rewrite re-parses, under three fact sets.
#[test]
fn argv_findings_stay_fixed() {
    let found = inputs("argv");
    assert!(!found.is_empty(), "no argv regression inputs");
    for (name, data) in found {
        let tokens: Vec<OsString> = data
            .split(|&b| b == 0)
            .map(|t| OsString::from_vec(t.to_vec()))
            .collect();
        let cfg = ShimConfig {
            socket: String::new(),
            ..ShimConfig::default()
        };
        let viewer = Viewer::default();
        for (h, dr) in [
            (2160, DynamicRange::Hdr10),
            (1080, DynamicRange::Sdr),
            (1080, DynamicRange::DolbyVision),
        ] {
            let mut f = SourceFacts::empty(Origin::Given);
            f.height = Some(h);
            f.width = Some(h * 16 / 9);
            f.dynamic_range = Some(dr);
            let sources = Sources {
                given: Some(f),
                daemon: false,
                viewer: &viewer,
            };
            let out = evaluate(&tokens, &cfg, sources, Instant::now());
            match out.decision.action {
                Action::Pass => assert_eq!(out.argv.as_deref(), Some(&tokens[..]), "{name}"),
                Action::Rewrite(_) => {
                    let new = out.argv.expect("rewritten argv");
                    assert!(
                        matches!(parse(&new), Parsed::Job(_)),
                        "{name}: rewrite {new:?} no longer parses"
                    );
                }
                _ => {}
            }
        }
    }
}
