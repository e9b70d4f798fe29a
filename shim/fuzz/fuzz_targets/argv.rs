//! Any byte string, split on NUL into argv tokens: parse, classify, decide under several
//! source facts, apply the edits. Nothing may panic; a pass must be byte-identical; a
//! rewrite must re-parse.
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::time::Instant;

use downshiftarr_shim::config::ShimConfig;
use downshiftarr_shim::facts::{DynamicRange, Origin, SourceFacts};
use downshiftarr_shim::policy::{Action, Viewer};
use downshiftarr_shim::shim::{evaluate, Sources};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let tokens: Vec<OsString> = data.split(|&b| b == 0).map(|t| OsString::from_vec(t.to_vec())).collect();
    let cfg = ShimConfig { socket: String::new(), ..ShimConfig::default() };
    let viewer = Viewer::default();
    for (h, dr) in [(2160, DynamicRange::Hdr10), (1080, DynamicRange::Sdr), (1080, DynamicRange::DolbyVision)] {
        let mut f = SourceFacts::empty(Origin::Given);
        f.height = Some(h);
        f.width = Some(h * 16 / 9);
        f.dynamic_range = Some(dr);
        let out = evaluate(&tokens, &cfg, Sources { given: Some(f), daemon: false, viewer: &viewer }, Instant::now());
        match out.decision.action {
            Action::Pass => assert_eq!(out.argv.as_deref(), Some(&tokens[..])),
            Action::Rewrite(_) => {
                let new = out.argv.expect("rewritten argv");
                assert!(matches!(downshiftarr_shim::argv::parse(&new), downshiftarr_shim::argv::Parsed::Job(_)));
            }
            _ => {}
        }
    }
});
