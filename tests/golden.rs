//! Golden tests over every captured Plex command line (`fixtures/plex-argv`) and our own
//! cases (`fixtures/plex-argv-own`): expected job kind and decision for given source facts,
//! and the exact exec'd arguments, kept in `fixtures/golden/*.argv.json`.
//!
//! `DOWNSHIFTARR_BLESS=1 cargo test --release --test integration golden` rewrites the golden
//! argument files after a deliberate change; review the diff before committing it.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Instant;

use downshiftarr_shim::argv::{self, Parsed};
use downshiftarr_shim::config::{GuardedJob, ShimConfig};
use downshiftarr_shim::edit::Edit;
use downshiftarr_shim::facts::SourceFacts;
use downshiftarr_shim::filtergraph::{self, Graph};
use downshiftarr_shim::policy::{Action, Viewer};
use downshiftarr_shim::protocol::{MediaVersion, StreamInfo, StreamKind};
use downshiftarr_shim::shim::{evaluate, Outcome, Sources};

use crate::util::{self, facts};

fn decide(tokens: &[OsString], f: Option<SourceFacts>, cfg: &ShimConfig) -> Outcome {
    let viewer = Viewer::default();
    // No daemon, and facts given: the decision is a pure function of the inputs.
    let cfg = ShimConfig {
        socket: String::new(),
        ..cfg.clone()
    };
    let given_none = f.is_none();
    let mut out = evaluate(
        tokens,
        &cfg,
        Sources {
            given: f,
            daemon: false,
            viewer: &viewer,
        },
        Instant::now(),
    );
    if given_none {
        out.notes.clear();
    }
    out
}

/// One expected decision.
struct Case {
    id: &'static str,
    fixture: &'static str,
    source: Option<SourceFacts>,
    cfg: ShimConfig,
    job: &'static str,
    decision: &'static str,
    reason: &'static str,
}

fn hdr10_4k() -> Option<SourceFacts> {
    Some(facts(3840, 2160, 10, "hdr10"))
}
fn sdr_1080() -> Option<SourceFacts> {
    Some(facts(1920, 1080, 8, "sdr"))
}
fn from_fixture(id: &str) -> Option<SourceFacts> {
    let v = util::fixture_json(id)["source_media"].clone();
    let mut f: SourceFacts = serde_json::from_value(v).ok()?;
    if f.height.is_none() || f.dynamic_range.is_none() {
        return None;
    }
    f.codec = None;
    Some(f)
}

fn cases() -> Vec<Case> {
    let d = ShimConfig::default;
    let optimize = || ShimConfig {
        guarded_jobs: vec![GuardedJob::Streaming, GuardedJob::Optimize],
        ..ShimConfig::default()
    };
    let live = || ShimConfig {
        guarded_jobs: vec![GuardedJob::Streaming, GuardedJob::LiveTv],
        ..ShimConfig::default()
    };
    let c = |id, fixture, source, cfg, job, decision, reason| Case {
        id,
        fixture,
        source,
        cfg,
        job,
        decision,
        reason,
    };
    vec![
        // Real captures, with the facts their labels and file names state.
        c("direct-stream-hls", "direct-stream-hevc-1080p-sdr-hls-matroska", from_fixture("direct-stream-hevc-1080p-sdr-hls-matroska"), d(), "direct_stream", "pass", "direct stream: video is copied"),
        c("direct-stream-hls-4k", "direct-stream-hevc-1080p-sdr-hls-matroska", hdr10_4k(), d(), "direct_stream", "pass", "direct stream: video is copied"),
        c("direct-stream-dash-seek", "direct-stream-hevc-dash-seek-pms-log", hdr10_4k(), d(), "direct_stream", "pass", "direct stream: video is copied"),
        c("iptv-2016", "direct-stream-iptv-hls-segment-2016-macos", None, d(), "direct_stream", "pass", "direct stream: video is copied"),
        c("live-tv", "live-tv-tuner-copy-hls-truncated", None, live(), "live_tv", "pass", "no video is encoded"),
        c("nvdec-x264-hdr10", "nvdec-x264-hevc-2160p-hdr10-to-720p-dash", from_fixture("nvdec-x264-hevc-2160p-hdr10-to-720p-dash"), d(), "video_transcode", "rewrite", "protected source rewritten to 1080p sdr"),
        c("nvdec-x264-sdr", "nvdec-x264-hevc-2160p-hdr10-to-720p-dash", sdr_1080(), d(), "video_transcode", "pass", "source not protected"),
        c("nvenc-hdr10", "nvenc-hevc-2160p-hdr10-to-720p-dash", from_fixture("nvenc-hevc-2160p-hdr10-to-720p-dash"), d(), "video_transcode", "rewrite", "protected source rewritten to 1080p sdr"),
        c("nvenc-shadow", "nvenc-hevc-2160p-hdr10-to-720p-dash", hdr10_4k(), ShimConfig { shadow_mode: true, ..d() }, "video_transcode", "pass", "shadow mode"),
        c("optimize-tv-sw-tonemap", "optimize-tv-hevc-2160p-sw-tonemap-800p-x264", Some(facts(3840, 1600, 10, "hdr10")), optimize(), "optimize", "pass", "output already 1080p sdr or below"),
        c("optimize-tv-not-guarded", "optimize-tv-hevc-2160p-sw-tonemap-800p-x264", hdr10_4k(), d(), "optimize", "pass", "optimize jobs are not guarded"),
        c("thumbnail", "thumbnail-av1-1080p-remux", hdr10_4k(), optimize(), "thumbnail", "pass", "thumbnail job"),
        c("vaapi-optimize-guarded", "vaapi-av1-2160p-hdr10-optimize-mobile-720p-hevc", from_fixture("vaapi-av1-2160p-hdr10-optimize-mobile-720p-hevc"), optimize(), "optimize", "rewrite", "protected source rewritten to 1080p sdr"),
        c("vaapi-optimize-default", "vaapi-av1-2160p-hdr10-optimize-mobile-720p-hevc", hdr10_4k(), d(), "optimize", "pass", "optimize jobs are not guarded"),
        c("vaapi-burnin-hdr10plus", "vaapi-av1-2160p-hdr10plus-burnin-hls-2160p-hevc", from_fixture("vaapi-av1-2160p-hdr10plus-burnin-hls-2160p-hevc"), d(), "video_transcode", "rewrite", "protected source rewritten to 1080p sdr"),
        c("vaapi-burnin-dv8", "vaapi-av1-2160p-hdr10plus-burnin-hls-2160p-hevc", Some(serde_json::from_value(serde_json::json!({"width":3840,"height":2160,"bit_depth":10,"dynamic_range":"dolby_vision","dv_profile":8,"dv_base_layer_compatible":true})).unwrap()), d(), "video_transcode", "rewrite", "protected source rewritten to 1080p sdr"),
        c("vaapi-burnin-dv5", "vaapi-av1-2160p-hdr10plus-burnin-hls-2160p-hevc", Some(serde_json::from_value(serde_json::json!({"width":3840,"height":2160,"bit_depth":10,"dynamic_range":"dolby_vision","dv_profile":5})).unwrap()), d(), "video_transcode", "refuse", "dolby vision profile 5 cannot be tone mapped"),
        c("x264-1080-sdr", "x264-h264-1080p-sdr-to-404p-dash", from_fixture("x264-h264-1080p-sdr-to-404p-dash"), d(), "video_transcode", "pass", "source not protected"),
        c("x264-4k-sdr", "x264-h264-1080p-sdr-to-404p-dash", Some(facts(3840, 2160, 8, "sdr")), d(), "video_transcode", "pass", "output already 1080p sdr or below"),
        c("x264-2019-unknown", "x264-h264-1080p-to-1080p-2019-truncated", None, d(), "video_transcode", "refuse", "source facts incomplete"),
        c("x264-2019-unknown-lenient", "x264-h264-1080p-to-1080p-2019-truncated", None, ShimConfig { kill_on_unknown_source: false, ..d() }, "video_transcode", "pass", "source facts incomplete; KILL_ON_UNKNOWN_SOURCE=0"),
        c("x264-2019-hdr", "x264-h264-1080p-to-1080p-2019-truncated", Some(facts(1920, 1080, 10, "hdr10")), d(), "video_transcode", "rewrite", "protected source rewritten to 1080p sdr"),
        c("x264-2019-kill-no-fallback", "x264-h264-1080p-to-1080p-2019-truncated", hdr10_4k(), ShimConfig { kill_on_no_fallback_media: true, ..d() }, "video_transcode", "refuse", "no compliant version; KILL_ON_NO_FALLBACK_MEDIA=1"),
        // Our own shapes.
        c("own-sw-4k-to-4k", "sw-hevc-2160p-hdr10-to-2160p-dash", from_fixture("sw-hevc-2160p-hdr10-to-2160p-dash"), d(), "video_transcode", "rewrite", "protected source rewritten to 1080p sdr"),
        c("own-sw-hlg-hls", "sw-hevc-2160p-hlg-to-1080p-hls-mpegts", from_fixture("sw-hevc-2160p-hlg-to-1080p-hls-mpegts"), d(), "video_transcode", "rewrite", "protected source rewritten to 1080p sdr"),
        c("own-cuda-tonemapped", "cuda-hevc-2160p-hdr10-tonemap-720p-dash", from_fixture("cuda-hevc-2160p-hdr10-tonemap-720p-dash"), d(), "video_transcode", "pass", "output already 1080p sdr or below"),
        c("own-vaapi-pgs", "vaapi-hevc-2160p-hdr10-pgs-burnin-2160p-hls", from_fixture("vaapi-hevc-2160p-hdr10-pgs-burnin-2160p-hls"), d(), "video_transcode", "rewrite", "protected source rewritten to 1080p sdr"),
        c("own-progressive-10bit", "x264-progressive-mp4-no-graph-10bit", from_fixture("x264-progressive-mp4-no-graph-10bit"), d(), "video_transcode", "rewrite", "protected source rewritten to 1080p sdr"),
        c("own-sw-bitmap-overlay", "sw-hevc-2160p-hdr10-bitmap-sub-overlay-hls", from_fixture("sw-hevc-2160p-hdr10-bitmap-sub-overlay-hls"), d(), "video_transcode", "rewrite", "protected source rewritten to 1080p sdr"),
        c("own-qsv", "qsv-hevc-2160p-hdr10-unsupported", from_fixture("qsv-hevc-2160p-hdr10-unsupported"), d(), "video_transcode", "refuse", "unsupported hardware filter pipeline"),
        c("own-qsv-lenient", "qsv-hevc-2160p-hdr10-unsupported", hdr10_4k(), ShimConfig { kill_on_rewrite_unsupported: false, ..d() }, "video_transcode", "pass", "unsupported hardware filter pipeline"),
    ]
}

fn golden_path(id: &str) -> PathBuf {
    util::repo()
        .join("fixtures/golden")
        .join(format!("{id}.argv.json"))
}

#[test]
fn every_fixture_has_a_golden_case() {
    let covered: Vec<&str> = cases().iter().map(|c| c.fixture).collect();
    for id in util::fixture_ids() {
        assert!(
            covered.contains(&id.as_str()),
            "fixture {id} has no golden case"
        );
    }
}

#[test]
fn golden_decisions_and_arguments() {
    let bless = std::env::var_os("DOWNSHIFTARR_BLESS").is_some();
    let mut failures = Vec::new();
    for case in cases() {
        let tokens = util::fixture_args(case.fixture);
        let out = decide(&tokens, case.source.clone(), &case.cfg);
        let got = (
            out.job.as_str(),
            out.decision.action.name(),
            out.decision.reason,
        );
        if got != (case.job, case.decision, case.reason) {
            failures.push(format!(
                "{}: expected {:?}, got {got:?}",
                case.id,
                (case.job, case.decision, case.reason)
            ));
            continue;
        }
        let path = golden_path(case.id);
        match (&out.decision.action, out.argv.as_ref()) {
            (Action::Pass, Some(a)) => assert_eq!(
                a, &tokens,
                "{}: pass must exec the original tokens",
                case.id
            ),
            (Action::Refuse { .. }, None) => {}
            (Action::Rewrite(_), Some(a)) => {
                let got: Vec<String> = a.iter().map(|t| t.to_string_lossy().into_owned()).collect();
                if bless {
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    std::fs::write(&path, serde_json::to_string_pretty(&got).unwrap() + "\n")
                        .unwrap();
                }
                let want: Vec<String> =
                    serde_json::from_str(&util::read(&path)).unwrap_or_default();
                if got != want {
                    failures.push(format!(
                        "{}: argv differs from {} (DOWNSHIFTARR_BLESS=1 to update after review)",
                        case.id,
                        path.display()
                    ));
                }
            }
            other => failures.push(format!("{}: inconsistent outcome {other:?}", case.id)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// What a rewrite may change: filter graphs, rate/format/profile/size values, inserted
/// options. Anything else changing is a bug.
fn allowed_to_change(tokens: &[OsString], at: usize) -> bool {
    let prev = at
        .checked_sub(1)
        .map(|p| tokens[p].to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = prev
        .trim_start_matches('-')
        .split(':')
        .next()
        .unwrap_or_default()
        .to_string();
    matches!(
        name.as_str(),
        "filter_complex"
            | "vf"
            | "filter"
            | "maxrate"
            | "b"
            | "bufsize"
            | "pix_fmt"
            | "profile"
            | "s"
            | "bsf"
    )
}

fn facts_variants() -> Vec<Option<SourceFacts>> {
    vec![
        None,
        sdr_1080(),
        hdr10_4k(),
        Some(facts(3840, 2160, 10, "hlg")),
        Some(facts(1920, 1080, 10, "hdr10")),
        Some(facts(3840, 2160, 8, "sdr")),
        Some(facts(4096, 1716, 10, "dolby_vision")),
        Some(facts(7680, 4320, 10, "hdr10plus")),
    ]
}

#[test]
fn invariants_over_all_fixtures_and_facts() {
    let all_jobs = ShimConfig {
        guarded_jobs: vec![
            GuardedJob::Streaming,
            GuardedJob::Optimize,
            GuardedJob::LiveTv,
        ],
        ..ShimConfig::default()
    };
    for id in util::fixture_ids() {
        let tokens = util::fixture_args(&id);
        // Parsing never panics on any prefix (truncated captures) of any fixture.
        for n in 0..=tokens.len() {
            let _ = argv::parse(&tokens[..n]);
            let _ = decide(&tokens[..n], hdr10_4k(), &all_jobs);
        }
        // Applying no edits is the identity.
        assert_eq!(downshiftarr_shim::edit::apply(&tokens, &[]), tokens, "{id}");
        for f in facts_variants() {
            let out = decide(&tokens, f.clone(), &all_jobs);
            match &out.decision.action {
                Action::Pass => assert_eq!(
                    out.argv.as_ref(),
                    Some(&tokens),
                    "{id}: pass is byte-identical"
                ),
                Action::Refuse { .. } => assert!(out.argv.is_none() && out.message.is_some()),
                Action::Rewrite(edits) => {
                    let new = out.argv.clone().expect("rewritten argv");
                    for e in edits {
                        if let Edit::Replace { at, .. } = e {
                            assert!(
                                allowed_to_change(&tokens, *at),
                                "{id}: token {at} ({:?}) must not change",
                                tokens[*at]
                            );
                        }
                    }
                    check_graphs(&id, &new);
                    // A rewritten job is compliant: deciding again changes nothing.
                    let again = decide(&new, f.clone(), &all_jobs);
                    assert_eq!(
                        again.decision.action,
                        Action::Pass,
                        "{id}: rewrite is not idempotent: {:?} ({})",
                        again.decision.action,
                        again.decision.reason
                    );
                }
                Action::Switch { .. } => unreachable!("no switch without the daemon"),
            }
        }
    }
}

/// Every graph parses, its labels are consistent, and every `-map [X]` names a graph output.
fn check_graphs(id: &str, tokens: &[OsString]) {
    let Parsed::Job(inv) = argv::parse(tokens) else {
        panic!("{id}: rewritten argv does not parse")
    };
    let mut outputs: Vec<Vec<u8>> = Vec::new();
    for o in inv.all_opts() {
        if matches!(inv.name(&o), b"filter_complex" | b"vf" | b"filter") {
            let v = inv.value(&o).expect("value");
            let g = Graph::parse(v)
                .unwrap_or_else(|e| panic!("{id}: {e}: {}", String::from_utf8_lossy(v)));
            assert!(
                filtergraph::labels_consistent(&g),
                "{id}: labels: {}",
                String::from_utf8_lossy(v)
            );
            outputs.extend(g.open_outputs().into_iter().map(<[u8]>::to_vec));
        }
    }
    for o in inv.all_opts() {
        if inv.name(&o) == b"map" {
            let v = inv.value(&o).expect("map value");
            if v.first() == Some(&b'[') {
                assert!(
                    outputs.iter().any(|l| v[1..v.len() - 1] == l[..]),
                    "{id}: -map {} has no graph output",
                    String::from_utf8_lossy(v)
                );
            }
        }
    }
}

#[test]
fn own_edge_cases() {
    let t = |s: &[&str]| -> Vec<OsString> { s.iter().map(OsString::from).collect() };
    let d = ShimConfig::default();
    // Every informational flag passes untouched.
    for def in downshiftarr_shim::argv::table::OPTIONS
        .iter()
        .filter(|o| o.arity == downshiftarr_shim::argv::table::Arity::Info)
    {
        let flag = if def.name == "-help" {
            "--help".to_string()
        } else {
            format!("-{}", def.name)
        };
        let out = decide(&t(&["-hide_banner", &flag]), hdr10_4k(), &d);
        assert_eq!(
            (out.job.as_str(), out.decision.action.name()),
            ("informational", "pass"),
            "{flag}"
        );
    }
    // Missing -i value, option missing its value, no -i at all, `--`.
    for args in [
        &["-i"][..],
        &["-i", "/m/a.mkv", "-codec:0"],
        &["-f", "lavfi", "out.mp4"],
        &["-i", "/m/a.mkv", "-c", "copy", "--", "-o.mkv"],
    ] {
        let tokens = t(args);
        let out = decide(&tokens, hdr10_4k(), &d);
        assert_eq!(out.decision.action, Action::Pass, "{args:?}");
        assert_eq!(out.argv, Some(tokens));
    }
    // 100,000 tokens parse and decide.
    let mut big = t(&["-i", "/m/a.mkv"]);
    for i in 0..49_999 {
        big.push("-metadata".into());
        big.push(format!("k{i}=v").into());
    }
    big.push("out.mkv".into());
    assert_eq!(big.len(), 100_001);
    let out = decide(&big, sdr_1080(), &d);
    assert_eq!(
        (out.job.as_str(), out.decision.reason),
        ("video_transcode", "source not protected")
    );
    assert_eq!(out.argv.as_ref(), Some(&big));
    let out = decide(&big, hdr10_4k(), &d);
    assert_eq!(
        out.decision.action.name(),
        "rewrite",
        "a protected source is still found among 100,000 tokens"
    );
}

#[test]
fn non_utf8_paths_are_passed_and_rewritten_byte_exactly() {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let mut tokens = util::fixture_args("sw-hevc-2160p-hdr10-to-2160p-dash");
    let i = tokens.iter().position(|t| t == "-i").unwrap() + 1;
    tokens[i] = OsString::from_vec(b"/media/Movies/\xe9t\xe9 \xff 2160p.mkv".to_vec());
    let out = decide(&tokens, hdr10_4k(), &ShimConfig::default());
    assert_eq!(out.decision.action.name(), "rewrite");
    assert_eq!(
        out.argv.unwrap()[i].as_bytes(),
        b"/media/Movies/\xe9t\xe9 \xff 2160p.mkv"
    );
}

/// Streams a fixture may reference: video, four audio tracks, three subtitles.
fn synthetic_streams(video: &str, audio_order: &[(&str, &str)]) -> Vec<StreamInfo> {
    let mut v = vec![StreamInfo {
        index: 0,
        kind: StreamKind::Video,
        codec: Some(video.into()),
        default: true,
        ..StreamInfo::default()
    }];
    for (i, (lang, codec)) in audio_order.iter().enumerate() {
        v.push(StreamInfo {
            index: 1 + i as u32,
            kind: StreamKind::Audio,
            codec: Some((*codec).into()),
            language: Some((*lang).into()),
            channels: Some(if *codec == "aac" { 2 } else { 6 }),
            default: i == 0,
            ..StreamInfo::default()
        });
    }
    for (i, (lang, codec)) in [("eng", "srt"), ("eng", "pgs"), ("ger", "srt")]
        .iter()
        .enumerate()
    {
        v.push(StreamInfo {
            index: 5 + i as u32,
            kind: StreamKind::Subtitle,
            codec: Some((*codec).into()),
            language: Some((*lang).into()),
            ..StreamInfo::default()
        });
    }
    v
}

/// Every fixture, as if the index knew its input as a 4K HDR10 version with a 1080p SDR
/// sibling whose audio tracks are in the opposite order: whenever the shim switches, the
/// result parses, its graphs and maps are consistent, only stream references, hints, the input
/// and rewrite-able values changed, and deciding again on the switched job passes.
#[test]
fn switch_invariants_over_all_fixtures() {
    use downshiftarr_shim::facts::DynamicRange;
    use downshiftarr_shim::job;
    use downshiftarr_shim::policy::{self, Context};
    let cfg = ShimConfig {
        guarded_jobs: vec![GuardedJob::Streaming, GuardedJob::Optimize],
        ..ShimConfig::default()
    };
    let audio = [
        ("eng", "eac3"),
        ("ger", "aac"),
        ("fre", "ac3"),
        ("eng", "aac"),
    ];
    let mut reversed = audio;
    reversed.reverse();
    let mut switched = 0;
    for id in util::fixture_ids() {
        let tokens = util::fixture_args(&id);
        let Parsed::Job(inv) = argv::parse(&tokens) else {
            continue;
        };
        let j = job::classify(&inv);
        let Some(url) = j.primary_input.and_then(|p| inv.inputs[p].url) else {
            continue;
        };
        let path = String::from_utf8_lossy(job::file_path(inv.token(url))).into_owned();
        let current = MediaVersion {
            media_id: "1".into(),
            width: Some(3840),
            height: Some(2160),
            dynamic_range: Some(DynamicRange::Hdr10),
            file: path.clone(),
            streams: synthetic_streams("hevc", &audio),
            ..MediaVersion::default()
        };
        let sibling = MediaVersion {
            media_id: "2".into(),
            width: Some(1920),
            height: Some(1080),
            dynamic_range: Some(DynamicRange::Sdr),
            file: "/media/Movies/Sibling (2020)/Sibling - 1080p.mkv".into(),
            streams: synthetic_streams("h264", &reversed),
            ..MediaVersion::default()
        };
        let versions = [current, sibling.clone()];
        let f = downshiftarr_shim::switch::version_facts(&versions[0]);
        let d = policy::decide(&Context {
            inv: &inv,
            job: &j,
            facts: Some(&f),
            versions: &versions,
            viewer: &Viewer::default(),
            config: &cfg,
        });
        let Action::Switch(sw) = &d.action else {
            continue;
        };
        switched += 1;
        let new = downshiftarr_shim::edit::apply(&tokens, &sw.edits);
        for e in &sw.edits {
            let at = match e {
                Edit::Replace { at, .. } | Edit::Remove { at } => *at,
                Edit::Insert { .. } => continue,
            };
            let prev = at
                .checked_sub(1)
                .map(|p| tokens[p].to_string_lossy().into_owned())
                .unwrap_or_default();
            let name = prev.trim_start_matches('-').split(':').next().unwrap_or("");
            let tok = tokens[at].to_string_lossy();
            // Per-stream options of the swapped input (decoder hints) and their values.
            let hint = at < url
                && (tok.starts_with('-') && tok.contains(':')
                    || prev.starts_with('-') && prev.contains(':'));
            assert!(
                at == url
                    || allowed_to_change(&tokens, at)
                    || matches!(
                        name,
                        "map" | "map_inlineass" | "i" | "codec" | "eae_prefix" | "bsf"
                    )
                    || name.starts_with("hwaccel")
                    || hint
                    || tok == "-bsf:0",
                "{id}: token {at} ({tok:?}) must not change in a switch"
            );
        }
        check_graphs(&id, &new);
        let Parsed::Job(inv2) = argv::parse(&new) else {
            panic!("{id}: the switched argv does not parse")
        };
        let j2 = job::classify(&inv2);
        let url2 = j2.primary_input.and_then(|p| inv2.inputs[p].url).unwrap();
        assert_eq!(
            job::file_path(inv2.token(url2)),
            sibling.file.as_bytes(),
            "{id}: the input is the sibling"
        );
        let f2 = downshiftarr_shim::switch::version_facts(&sibling);
        let again = policy::decide(&Context {
            inv: &inv2,
            job: &j2,
            facts: Some(&f2),
            versions: &versions,
            viewer: &Viewer::default(),
            config: &cfg,
        });
        assert_eq!(again.action, Action::Pass, "{id}: {}", again.reason);
    }
    assert!(switched >= 8, "only {switched} fixtures switched");
}

/// Issue 9 §3: with no `-map`, ffmpeg encodes the video with the most pixels of *all*
/// inputs; that input is the one judged. Real files, probed by the shim (no daemon).
#[test]
fn with_no_map_the_largest_video_of_all_inputs_is_judged() {
    let m = util::media();
    let cfg = ShimConfig {
        socket: String::new(),
        ..ShimConfig::default()
    };
    let run = |inputs: &[&str]| {
        let mut t: Vec<OsString> = Vec::new();
        for i in inputs {
            t.push("-i".into());
            t.push(i.into());
        }
        for a in ["-codec:v", "libx264", "-f", "dash", "dash"] {
            t.push(a.into());
        }
        let viewer = Viewer::default();
        evaluate(
            &t,
            &cfg,
            Sources {
                given: None,
                daemon: false,
                viewer: &viewer,
            },
            Instant::now(),
        )
    };
    let bumper = m.sdr_1080.to_str().unwrap();
    let main = m.hdr10_2160.to_str().unwrap();
    // `-i "Bumper 1080p" -i "Main 2160p"`: the 4K main is encoded, so it is judged.
    let out = run(&[bumper, main]);
    assert_eq!(out.input.as_deref(), Some(main.as_bytes()));
    assert_eq!(out.decision.action.name(), "rewrite", "{:?}", out.decision);
    // Order does not matter; the smaller input alone still passes.
    assert_eq!(run(&[main, bumper]).input.as_deref(), Some(main.as_bytes()));
    assert_eq!(run(&[bumper]).decision.reason, "source not protected");
    // `-i pipe:0 -i movie`: the file is the one we can judge.
    let out = run(&["pipe:0", main]);
    assert_eq!(out.input.as_deref(), Some(main.as_bytes()));
    assert_eq!(out.decision.action.name(), "rewrite", "{:?}", out.decision);
    // A subtitle side file never stands in for the video.
    let out = run(&[main, "/m/subs.eng.srt"]);
    assert_eq!(out.input.as_deref(), Some(main.as_bytes()));
}

/// Issue 9 §3: a tone-map filter in `-vf` is as much an HDR hint as one in
/// `-filter_complex` (no daemon, no readable file: the hints are all there is).
#[test]
fn tone_map_hints_are_read_from_vf_too() {
    let cfg = ShimConfig {
        socket: String::new(),
        ..ShimConfig::default()
    };
    for opt in ["-vf", "-filter:v", "-filter_complex"] {
        let graph = if opt == "-filter_complex" {
            "[0:0]scale=w=1920:h=1080,format=p010,tonemap=hable,format=yuv420p[v]"
        } else {
            "scale=w=1920:h=1080,format=p010,tonemap=hable,format=yuv420p"
        };
        let mut t: Vec<&str> = vec!["-i", "/nonexistent/film.mkv", opt, graph];
        if opt == "-filter_complex" {
            t.extend(["-map", "[v]"]);
        }
        t.extend(["-codec:0", "libx264", "-f", "dash", "dash"]);
        let t: Vec<OsString> = t.into_iter().map(OsString::from).collect();
        let viewer = Viewer::default();
        let out = evaluate(
            &t,
            &cfg,
            Sources {
                given: None,
                daemon: false,
                viewer: &viewer,
            },
            Instant::now(),
        );
        let dr = out.facts.as_ref().and_then(|f| f.dynamic_range);
        assert_eq!(
            dr,
            Some(downshiftarr_shim::facts::DynamicRange::Hdr10),
            "{opt}: {:?}",
            out.decision
        );
    }
}
