//! Deciding must stay linear in the number of tokens (issue 9 §2: 50,000 `-map`s took
//! 8 s). Counted, not timed: every look at an option or a filter is counted
//! (`argv::visit`), and 10× the tokens may cost at most 12× the looks (the per-stream
//! scans this replaces cost ~100×). Wall-clock times are printed for the README.

use super::*;
use crate::argv::{parse, visits, Parsed};
use crate::facts::{DynamicRange, Origin};
use crate::job::classify;
use std::ffi::OsString;
use std::time::{Duration, Instant};

/// Parse, classify and decide `tokens` as a 4K HDR10 source: looks and time taken.
fn decide_cost(tokens: &[OsString]) -> (u64, Duration) {
    let mut f = SourceFacts::empty(Origin::Given);
    f.width = Some(3840);
    f.height = Some(2160);
    f.dynamic_range = Some(DynamicRange::Hdr10);
    f.bit_depth = Some(10);
    let cfg = ShimConfig::default();
    let before = visits();
    let t = Instant::now();
    let Parsed::Job(inv) = parse(tokens) else {
        panic!("not a job")
    };
    let job = classify(&inv);
    let d = decide(&Context {
        inv: &inv,
        job: &job,
        facts: Some(&f),
        versions: &[],
        viewer: &Viewer::default(),
        config: &cfg,
    });
    std::hint::black_box(d);
    (visits() - before, t.elapsed())
}

/// A 4K software transcode with `n` repetitions of `unit` before the output.
fn shape(n: usize, head: &[String], unit: &dyn Fn(usize) -> Vec<String>) -> Vec<OsString> {
    let mut v: Vec<String> = ["-codec:0", "hevc", "-i", "/m/a 2160p.mkv"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.extend(head.iter().cloned());
    for i in 0..n {
        v.extend(unit(i));
    }
    v.extend(
        ["-codec:0", "libx264", "-f", "dash", "dash"]
            .iter()
            .map(|s| s.to_string()),
    );
    v.into_iter().map(OsString::from).collect()
}

fn assert_linear(name: &str, make: &dyn Fn(usize) -> Vec<OsString>) {
    let (small, ts) = decide_cost(&make(10_000));
    let large_tokens = make(100_000);
    let (large, tl) = decide_cost(&large_tokens);
    eprintln!(
        "{name}: 10k units {small} looks {ts:?}; 100k units ({} tokens) {large} looks {tl:?}",
        large_tokens.len()
    );
    assert!(
        large <= small * 12,
        "{name}: 10× the tokens took {small} → {large} looks"
    );
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn many_maps_codecs_filters_and_labels_stay_linear() {
    let graph = "[0:0]scale=w=3840:h=2160[0];[0]format=pix_fmts=yuv420p|nv12[1]".to_string();
    assert_linear("-map 0:N", &|n| {
        shape(n, &[], &|i| s(&["-map", &format!("0:{}", i % 7)]))
    });
    assert_linear("-map [label] and -codec:N", &|n| {
        shape(n, &s(&["-filter_complex", &graph]), &|i| {
            s(&["-map", "[1]", &format!("-codec:{i}"), "libx264"])
        })
    });
    assert_linear("-map 0:N with -filter:N", &|n| {
        shape(n, &[], &|i| {
            s(&[
                "-map",
                "0:0",
                &format!("-filter:{i}"),
                "scale=w=1920:h=1080",
            ])
        })
    });
    assert_linear("one long filter chain", &|n| {
        let mut g = String::from("[0:0]");
        for _ in 0..n {
            g.push_str("null,");
        }
        g.push_str("scale=w=3840:h=2160[v]");
        shape(1, &s(&["-filter_complex", &g]), &|_| s(&["-map", "[v]"]))
    });
    assert_linear("a split feeding many maps", &|n| {
        let mut g = String::from("[0:0]null,null,null,null,split=outputs=2");
        for i in 0..n {
            g.push_str(&format!("[s{i}]"));
        }
        shape(n, &s(&["-filter_complex", &g]), &|i| {
            s(&["-map", &format!("[s{i}]")])
        })
    });
    assert_linear("many graphs", &|n| {
        shape(n, &[], &|i| {
            s(&[
                "-filter_complex",
                &format!("[0:0]null[l{i}]"),
                "-map",
                &format!("[l{i}]"),
            ])
        })
    });
}
