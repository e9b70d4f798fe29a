//! The fuzz targets' bodies: one function per target, each running the shim code the target
//! covers and panicking when an invariant breaks.
//!
//! Included by path from every `fuzz_targets/*.rs` and from `shim/tests/fuzz_regressions.rs`,
//! so an input kept in `regressions/<target>/` is replayed by `cargo test` (stable) through
//! exactly the code and the assertions the fuzzer ran.
//!
//! A panic inside `shim::evaluate` is caught there (a bug of ours must not stop a job); the
//! fuzzer's panic hook aborts before that, but a replay under `cargo test` would not see it,
//! so the harness also rejects the "internal error" reasons `evaluate` gives a caught panic.

#![allow(dead_code)] // each fuzz target uses one of these

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::time::Instant;

use downshiftarr_shim::argv::{parse, Parsed};
use downshiftarr_shim::config::ShimConfig;
use downshiftarr_shim::edit;
use downshiftarr_shim::facts::{DynamicRange, Origin, SourceFacts};
use downshiftarr_shim::filtergraph::{self, render_args, split_args, Graph};
use downshiftarr_shim::job::{classify, file_path};
use downshiftarr_shim::policy::{decide, Action, Context, Decision, Viewer};
use downshiftarr_shim::protocol::{MediaVersion, StreamInfo, StreamKind};
use downshiftarr_shim::shim::{evaluate, Sources};
use downshiftarr_shim::switch::version_facts;

/// Bytes split on NUL into argv tokens (argv[0] left out, as the shim sees them).
pub fn tokens(data: &[u8]) -> Vec<OsString> {
    data.split(|&b| b == 0)
        .map(|t| OsString::from_vec(t.to_vec()))
        .collect()
}

fn config() -> ShimConfig {
    ShimConfig {
        socket: String::new(),
        ..ShimConfig::default()
    }
}

fn given(height: u32, dr: DynamicRange) -> SourceFacts {
    let mut f = SourceFacts::empty(Origin::Given);
    f.height = Some(height);
    f.width = Some(height * 16 / 9);
    f.dynamic_range = Some(dr);
    f
}

/// What an input reached (decision action names, `"switch+output"` when a switch also
/// replanned the output), so a test can check that the targets still get to the code they
/// are meant to cover; the fuzz targets ignore it.
pub type Reached = Vec<&'static str>;

fn show(tokens: &[OsString]) -> String {
    format!("{tokens:?}")
}

/// `argv`: any token list, decided by `shim::evaluate` under three fact sets. Nothing panics
/// (not even inside `evaluate`'s guard); a pass is byte-identical; a rewrite re-parses.
pub fn argv(data: &[u8]) -> Reached {
    let mut reached = Reached::new();
    let tokens = tokens(data);
    let cfg = config();
    let viewer = Viewer::default();
    for (h, dr) in [
        (2160, DynamicRange::Hdr10),
        (1080, DynamicRange::Sdr),
        (1080, DynamicRange::DolbyVision),
    ] {
        let sources = Sources {
            given: Some(given(h, dr)),
            daemon: false,
            viewer: &viewer,
        };
        let out = evaluate(&tokens, &cfg, sources, Instant::now());
        reached.push(out.decision.action.name());
        assert!(
            !out.decision.reason.starts_with("internal error"),
            "{}: {}",
            out.decision.reason,
            show(&tokens)
        );
        match out.decision.action {
            Action::Pass => assert_eq!(out.argv.as_deref(), Some(&tokens[..]), "pass changed"),
            Action::Rewrite(_) => {
                let Some(new) = out.argv else {
                    panic!("a rewrite without an argv")
                };
                assert!(
                    matches!(parse(&new), Parsed::Job(_)),
                    "rewrite {} no longer parses",
                    show(&new)
                );
            }
            _ => {}
        }
    }
    reached
}

/// The input of the `switch` and `filtergraph` harnesses, as the index knows it.
const UHD_FILE: &str = "/m/Film (2020)/Film - 2160p.mkv";

fn streams(video: &str, langs: &[&str]) -> Vec<StreamInfo> {
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
    v.push(StreamInfo {
        index: 1 + langs.len() as u32,
        kind: StreamKind::Subtitle,
        codec: Some("srt".into()),
        language: Some("eng".into()),
        ..StreamInfo::default()
    });
    v
}

/// A 4K HDR10 version at `file` and a 1080p SDR sibling whose audio is in another order.
fn versions(file: String) -> [MediaVersion; 2] {
    let cur = MediaVersion {
        media_id: "1".into(),
        width: Some(3840),
        height: Some(2160),
        bit_depth: Some(10),
        dynamic_range: Some(DynamicRange::Hdr10),
        file,
        streams: streams("hevc", &["eng", "ger"]),
        ..MediaVersion::default()
    };
    let sib = MediaVersion {
        media_id: "2".into(),
        width: Some(1920),
        height: Some(1080),
        bit_depth: Some(8),
        dynamic_range: Some(DynamicRange::Sdr),
        file: "/m/Film (2020)/Film - 1080p.mkv".into(),
        streams: streams("h264", &["ger", "eng"]),
        ..MediaVersion::default()
    };
    [cur, sib]
}

fn decide_on(
    tokens: &[OsString],
    facts: &SourceFacts,
    versions: &[MediaVersion],
    cfg: &ShimConfig,
) -> Option<Decision> {
    let Parsed::Job(inv) = parse(tokens) else {
        return None;
    };
    let job = classify(&inv);
    Some(decide(&Context {
        inv: &inv,
        job: &job,
        facts: Some(facts),
        versions,
        viewer: &Viewer::default(),
        config: cfg,
    }))
}

/// A switch re-parses, its graphs are consistent, and deciding again on the switched job
/// with the sibling's facts passes.
fn check_switch(
    tokens: &[OsString],
    d: &Decision,
    versions: &[MediaVersion],
    cfg: &ShimConfig,
) -> Reached {
    let Action::Switch(sw) = &d.action else {
        return vec![d.action.name()];
    };
    let reached = vec![if sw.output_rewritten {
        "switch+output"
    } else {
        "switch"
    }];
    let new = edit::apply(tokens, &sw.edits);
    check_graphs(tokens, &new);
    let Some(again) = decide_on(&new, &version_facts(&versions[1]), versions, cfg) else {
        panic!("switched argv {} does not parse", show(&new))
    };
    assert_eq!(
        again.action,
        Action::Pass,
        "{}: {} switched to {}",
        again.reason,
        show(tokens),
        show(&new)
    );
    reached
}

/// An edit leaves the graphs sound if they were: every graph parses with consistent labels
/// and every `-map [X]` names one of their outputs. (A graph that was broken before — a
/// label nobody produces — may stay broken: ffmpeg rejects it either way.)
fn check_graphs(before: &[OsString], after: &[OsString]) {
    if graph_fault(before).is_some() {
        return;
    }
    if let Some(fault) = graph_fault(after) {
        panic!("{fault}: {} became {}", show(before), show(after));
    }
}

/// What is wrong with the graphs of `tokens`, if anything.
fn graph_fault(tokens: &[OsString]) -> Option<String> {
    let Parsed::Job(inv) = parse(tokens) else {
        return Some("the argv does not parse".into());
    };
    let mut outputs: Vec<Vec<u8>> = Vec::new();
    for o in inv.all_opts() {
        if matches!(inv.name(&o), b"filter_complex" | b"vf" | b"filter") {
            let Some(v) = inv.value(&o) else { continue };
            let text = String::from_utf8_lossy(v);
            let Ok(g) = Graph::parse(v) else {
                return Some(format!("graph {text:?} does not parse"));
            };
            if !filtergraph::labels_consistent(&g) {
                return Some(format!("graph {text:?} has inconsistent labels"));
            }
            outputs.extend(g.open_outputs().into_iter().map(<[u8]>::to_vec));
        }
    }
    for o in inv.all_opts() {
        if inv.name(&o) == b"map" {
            let Some(v) = inv.value(&o) else { continue };
            if let Some(l) = v.strip_prefix(b"[").and_then(|v| v.strip_suffix(b"]")) {
                if !outputs.iter().any(|o| o[..] == l[..]) {
                    return Some(format!(
                        "-map {} names no graph output",
                        String::from_utf8_lossy(v)
                    ));
                }
            }
        }
    }
    None
}

/// `switch`: any token list, decided as if the index knew its input as a 4K HDR10 version
/// with a 1080p SDR sibling whose streams are in another order. Nothing panics; a switch
/// re-parses, keeps its graphs consistent and passes when decided again.
pub fn switch(data: &[u8]) -> Reached {
    let tokens = tokens(data);
    let Parsed::Job(inv) = parse(&tokens) else {
        return Reached::new();
    };
    let job = classify(&inv);
    let Some(url) = job.primary_input.and_then(|p| inv.inputs[p].url) else {
        return Reached::new();
    };
    let path = String::from_utf8_lossy(file_path(inv.token(url))).into_owned();
    let versions = versions(path);
    let cfg = config();
    let Some(d) = decide_on(&tokens, &version_facts(&versions[0]), &versions, &cfg) else {
        return Reached::new();
    };
    check_switch(&tokens, &d, &versions, &cfg)
}

/// `filtergraph`: any bytes as a filter graph. Parsing, path finding and argument splitting
/// never panic and splitting round-trips; then the graph is put in a Plex-shaped 4K job
/// (as `-filter_complex` mapped by its first output, and as a one-chain `-filter:0`) and
/// decided twice: with 4K HDR10 facts (the rewrite's graph edit — the result re-parses, its
/// labels hold, and deciding it again passes) and with a 1080p SDR sibling in the index (the
/// switch's stream remap and output plan, checked as in `switch`).
pub fn filtergraph(data: &[u8]) -> Reached {
    let mut reached = Reached::new();
    let Ok(g) = Graph::parse(data) else {
        return reached;
    };
    let _ = filtergraph::labels_consistent(&g);
    let outs = g.open_outputs();
    for l in &outs {
        let _ = g.path_to(l);
    }
    for at in g.positions() {
        if let Some(r) = &g.filter(at).args {
            let a = g.text(r);
            assert_eq!(render_args(&split_args(a)), a);
        }
    }

    let graph = OsString::from_vec(data.to_vec());
    let t = |v: &[&str]| -> Vec<OsString> { v.iter().map(OsString::from).collect() };
    let head = t(&["-codec:0", "hevc", "-i", UHD_FILE]);
    let tail = t(&["-codec:0", "libx264", "-f", "dash", "dash"]);
    let mut shapes: Vec<Vec<OsString>> = Vec::new();
    if let Some(l) = outs.first() {
        let mut map = b"[".to_vec();
        map.extend_from_slice(l);
        map.push(b']');
        let mut s = head.clone();
        s.extend([
            "-filter_complex".into(),
            graph.clone(),
            "-map".into(),
            OsString::from_vec(map),
        ]);
        s.extend(t(&["-map", "0:1"]));
        s.extend(tail.iter().cloned());
        shapes.push(s);
    }
    if g.chains.len() == 1 {
        let mut s = head.clone();
        s.extend(t(&["-map", "0:0", "-map", "0:1", "-filter:0"]));
        s.push(graph);
        s.extend(tail.iter().cloned());
        shapes.push(s);
    }
    let cfg = config();
    let versions = versions(UHD_FILE.into());
    let mut uhd = given(2160, DynamicRange::Hdr10);
    uhd.width = Some(3840);
    uhd.bit_depth = Some(10);
    for tokens in shapes {
        let Some(d) = decide_on(&tokens, &uhd, &[], &cfg) else {
            continue;
        };
        reached.push(d.action.name());
        if let Action::Rewrite(edits) = &d.action {
            let new = edit::apply(&tokens, edits);
            check_graphs(&tokens, &new);
            let again = decide_on(&new, &uhd, &[], &cfg);
            assert_eq!(
                again.as_ref().map(|d| &d.action),
                Some(&Action::Pass),
                "{:?}: rewrite of {} is not idempotent: {}",
                again.as_ref().map(|d| d.reason),
                show(&tokens),
                show(&new)
            );
        }
        if let Some(d) = decide_on(&tokens, &version_facts(&versions[0]), &versions, &cfg) {
            reached.extend(check_switch(&tokens, &d, &versions, &cfg));
        }
    }
    reached
}

/// `probe`: any bytes as a media file: the header probe and the SPS readers return, never
/// panic, never read past their budget.
pub fn probe(data: &[u8]) -> Reached {
    let mut reached = Reached::new();
    if downshiftarr_shim::probe::probe_bytes(data, 1 << 20).is_ok() {
        reached.push("container");
    }
    if downshiftarr_shim::probe::sps::hevc(data).is_some() {
        reached.push("hevc sps");
    }
    if downshiftarr_shim::probe::sps::h264(data).is_some() {
        reached.push("h264 sps");
    }
    reached
}
