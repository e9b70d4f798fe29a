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

/// A 4K HDR10 version with a 1080p SDR sibling whose audio tracks are in another order, so a
/// switch re-points every `-map 0:1` (issue 9 §2's shape, through the switch this time).
fn switch_versions(file: &str) -> Vec<MediaVersion> {
    use crate::protocol::{StreamInfo, StreamKind};
    let streams = |video: &str, langs: [&str; 2]| {
        let mut v = vec![StreamInfo {
            index: 0,
            kind: StreamKind::Video,
            codec: Some(video.into()),
            default: true,
            ..StreamInfo::default()
        }];
        for (i, l) in langs.iter().enumerate() {
            v.push(StreamInfo {
                index: 1 + i as u32,
                kind: StreamKind::Audio,
                codec: Some("eac3".into()),
                language: Some((*l).into()),
                channels: Some(6),
                ..StreamInfo::default()
            });
        }
        v
    };
    vec![
        MediaVersion {
            media_id: "1".into(),
            width: Some(3840),
            height: Some(2160),
            dynamic_range: Some(DynamicRange::Hdr10),
            file: file.into(),
            streams: streams("hevc", ["eng", "ger"]),
            ..MediaVersion::default()
        },
        MediaVersion {
            media_id: "2".into(),
            width: Some(1920),
            height: Some(1080),
            dynamic_range: Some(DynamicRange::Sdr),
            file: "/m/a 1080p.mkv".into(),
            streams: streams("h264", ["ger", "eng"]),
            ..MediaVersion::default()
        },
    ]
}

/// A switch re-points every `-map 0:N`, so its edits grow with the command line; applying
/// them (twice: to plan the output, then to exec) scanned every edit for every token, and
/// 100,000 maps took ~3 minutes (10,000: 1.8 s). Counted looks as above; and since a scan of
/// the edits is no option or filter look, a time bound too, far on both sides so a busy
/// machine does not fail it: the 100,000 maps now take ~0.1–0.3 s, the quadratic scan took
/// 170 s. (A 10k/100k time *ratio* is not used: cache effects alone make it ~40× here.)
#[test]
fn a_switch_of_many_maps_stays_linear() {
    let versions = switch_versions("/m/a 2160p.mkv");
    let cfg = ShimConfig::default();
    let mut f = SourceFacts::empty(Origin::Given);
    f.width = Some(3840);
    f.height = Some(2160);
    f.dynamic_range = Some(DynamicRange::Hdr10);
    let cost = |n: usize| {
        let tokens = shape(n, &s(&["-map", "0:0"]), &|i| {
            s(&["-map", &format!("0:{}", 1 + i % 2)])
        });
        let mut best = Duration::MAX;
        let mut looks = 0;
        for _ in 0..3 {
            let before = visits();
            let t = Instant::now();
            let Parsed::Job(inv) = parse(&tokens) else {
                panic!("not a job")
            };
            let job = classify(&inv);
            let d = decide(&Context {
                inv: &inv,
                job: &job,
                facts: Some(&f),
                versions: &versions,
                viewer: &Viewer::default(),
                config: &cfg,
            });
            let Action::Switch(sw) = &d.action else {
                panic!("no switch: {}", d.reason)
            };
            assert!(sw.edits.len() > n, "every map is re-pointed");
            let new = crate::edit::apply(&tokens, &sw.edits);
            std::hint::black_box(new);
            best = best.min(t.elapsed());
            looks = visits() - before;
        }
        (looks, best)
    };
    let (small, ts) = cost(10_000);
    let (large, tl) = cost(100_000);
    eprintln!("switch: 10k maps {small} looks {ts:?}; 100k maps {large} looks {tl:?}");
    assert!(large <= small * 12, "switch: {small} → {large} looks");
    assert!(
        tl < Duration::from_secs(15),
        "switch: 100,000 maps took {tl:?} (10,000: {ts:?})"
    );
}
