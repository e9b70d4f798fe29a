//! The switch, end to end through the policy: version choice, stream remap, output plan.

use std::ffi::OsString;

use super::*;
use crate::argv::{self, Parsed};
use crate::edit;
use crate::facts::DynamicRange;
use crate::policy::{decide, Action, Context, Viewer};
use crate::protocol::StreamInfo;

fn st(index: u32, kind: StreamKind, codec: &str, lang: Option<&str>) -> StreamInfo {
    StreamInfo {
        index,
        kind,
        codec: Some(codec.into()),
        language: lang.map(Into::into),
        channels: match kind {
            StreamKind::Audio if codec == "aac" => Some(2),
            StreamKind::Audio => Some(6),
            _ => None,
        },
        default: index <= 1,
        forced: false,
    }
}

fn uhd() -> MediaVersion {
    MediaVersion {
        media_id: "41".into(),
        width: Some(3840),
        height: Some(2160),
        dynamic_range: Some(DynamicRange::Hdr10),
        file: "/m/Film (2020)/Film - 2160p.mkv".into(),
        streams: vec![
            st(0, StreamKind::Video, "hevc", None),
            st(1, StreamKind::Audio, "eac3", Some("eng")),
            st(2, StreamKind::Audio, "aac", Some("ger")),
            st(3, StreamKind::Subtitle, "srt", Some("eng")),
        ],
        ..MediaVersion::default()
    }
}

/// The 1080p version: German first, English second, a different first track codec.
fn hd(w: u32, h: u32) -> MediaVersion {
    MediaVersion {
        media_id: "40".into(),
        width: Some(w),
        height: Some(h),
        dynamic_range: Some(DynamicRange::Sdr),
        file: "/m/Film (2020)/Film - 1080p.mkv".into(),
        streams: vec![
            st(0, StreamKind::Video, "h264", None),
            st(1, StreamKind::Audio, "aac", Some("deu")),
            st(2, StreamKind::Audio, "ac3", Some("eng")),
            st(3, StreamKind::Subtitle, "subrip", Some("eng")),
        ],
        ..MediaVersion::default()
    }
}

const SW_TONEMAP: &[&str] = &[
    "-codec:0",
    "hevc",
    "-codec:1",
    "eac3_eae",
    "-eae_prefix:1",
    "sess-1_",
    "-analyzeduration",
    "20000000",
    "-i",
    "/m/Film (2020)/Film - 2160p.mkv",
    "-progressurl",
    "http://127.0.0.1:32400/video/:/transcode/session/sess-1/u/progress",
    "-filter_complex",
    "[0:0]scale=w=3840:h=2160:force_divisible_by=4[0];[0]format=p010,tonemap=mobius[1];[1]format=pix_fmts=nv12[2]",
    "-map",
    "[2]",
    "-codec:0",
    "libx264",
    "-maxrate:0",
    "8000k",
    "-filter_complex",
    "[0:1] aresample=async=1:ochl='stereo'[3]",
    "-map",
    "[3]",
    "-codec:1",
    "aac",
    "-f",
    "dash",
    "dash",
];

fn toks(a: &[&str]) -> Vec<OsString> {
    a.iter().map(OsString::from).collect()
}

fn run(args: &[&str], versions: &[MediaVersion], cfg: &ShimConfig) -> crate::policy::Decision {
    let t = toks(args);
    let Parsed::Job(inv) = argv::parse(&t) else {
        panic!("parse")
    };
    let job = job::classify(&inv);
    let facts = version_facts(&versions[0]);
    decide(&Context {
        inv: &inv,
        job: &job,
        facts: Some(&facts),
        versions,
        viewer: &Viewer::default(),
        config: cfg,
    })
}

fn switched(args: &[&str], d: &crate::policy::Decision) -> Vec<String> {
    let Action::Switch(sw) = &d.action else {
        panic!("expected a switch, got {d:?}")
    };
    edit::apply(&toks(args), &sw.edits)
        .iter()
        .map(|t| t.to_string_lossy().into_owned())
        .collect()
}

fn after<'a>(argv: &'a [String], opt: &str) -> Vec<&'a str> {
    argv.windows(2)
        .filter(|w| w[0] == opt)
        .map(|w| w[1].as_str())
        .collect()
}

#[test]
fn switches_to_the_sdr_version_and_remaps_by_meaning() {
    let cfg = ShimConfig::default();
    let d = run(SW_TONEMAP, &[uhd(), hd(1920, 1080)], &cfg);
    assert_eq!(d.reason, "protected source switched to a compliant version");
    let a = switched(SW_TONEMAP, &d);
    assert_eq!(after(&a, "-i"), ["/m/Film (2020)/Film - 1080p.mkv"]);
    // Video decoder hint fits the new codec; the English track moved from 1 to 2 and
    // keeps the EAE decoder with Plex's prefix.
    assert_eq!(after(&a, "-codec:0")[0], "h264");
    assert_eq!(after(&a, "-codec:2"), ["ac3_eae"]);
    assert_eq!(after(&a, "-eae_prefix:2"), ["sess-1_"]);
    assert!(after(&a, "-codec:1").iter().all(|v| *v == "aac"));
    let graphs = after(&a, "-filter_complex");
    assert_eq!(
        graphs[0],
        "[0:0]scale=w=1920:h=1080:force_divisible_by=4[0];[0]format=nv12,null[1];[1]format=pix_fmts=nv12[2]"
    );
    assert!(graphs[1].starts_with("[0:2] aresample"), "{}", graphs[1]);
    let Action::Switch(sw) = &d.action else {
        unreachable!()
    };
    assert!(sw.output_rewritten);
    assert_eq!(
        sw.streams
            .iter()
            .map(|m| (m.from, m.to))
            .collect::<Vec<_>>(),
        [(0, 0), (1, 2)]
    );
}

#[test]
fn a_scope_version_is_not_stretched_or_enlarged() {
    let d = run(SW_TONEMAP, &[uhd(), hd(1920, 800)], &ShimConfig::default());
    let a = switched(SW_TONEMAP, &d);
    assert!(after(&a, "-filter_complex")[0].starts_with("[0:0]scale=w=1920:h=800:"));
    let mut small = hd(1280, 720);
    small.file = "/m/Film (2020)/Film - 720p.mkv".into();
    let d = run(SW_TONEMAP, &[uhd(), small], &ShimConfig::default());
    let a = switched(SW_TONEMAP, &d);
    assert!(after(&a, "-filter_complex")[0].starts_with("[0:0]scale=w=1280:h=720:"));
}

#[test]
fn missing_language_or_subtitle_means_no_switch() {
    let cfg = ShimConfig::default();
    let mut no_eng = hd(1920, 1080);
    no_eng.streams.retain(|s| s.index != 2);
    let d = run(SW_TONEMAP, &[uhd(), no_eng], &cfg);
    assert_eq!(d.action.name(), "rewrite");
    assert_eq!(
        d.no_switch,
        Some("the other version has no audio track in the language played")
    );

    let mut with_sub = toks(SW_TONEMAP);
    with_sub.splice(
        with_sub.len() - 1..with_sub.len() - 1,
        toks(&["-map", "0:3", "-codec:2", "ass"]),
    );
    let args: Vec<String> = with_sub
        .iter()
        .map(|t| t.to_string_lossy().into_owned())
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut no_sub = hd(1920, 1080);
    no_sub.streams.retain(|s| s.kind != StreamKind::Subtitle);
    let d = run(&args, &[uhd(), no_sub], &cfg);
    assert_eq!(
        d.no_switch,
        Some("the other version lacks the subtitle shown")
    );
    // With the subtitle present it maps 3 -> 3.
    let d = run(&args, &[uhd(), hd(1920, 1080)], &cfg);
    let a = switched(&args, &d);
    assert!(after(&a, "-map").contains(&"0:3"));

    let strict = ShimConfig {
        kill_on_no_fallback_media: true,
        ..ShimConfig::default()
    };
    let mut no_eng = hd(1920, 1080);
    no_eng.streams.retain(|s| s.index != 2);
    assert_eq!(
        run(SW_TONEMAP, &[uhd(), no_eng], &strict).action,
        Action::Refuse {
            scenario: "no_fallback_media"
        }
    );
}

#[test]
fn editions_heights_and_hdr_rules() {
    let cfg = ShimConfig::default();
    let mut cut = hd(1920, 1080);
    cut.edition = Some("Director's Cut".into());
    let d = run(SW_TONEMAP, &[uhd(), cut], &cfg);
    assert_eq!(d.no_switch, Some("no compliant version of this title"));

    let mut hdr = hd(1920, 1080);
    hdr.dynamic_range = Some(DynamicRange::Hdr10);
    assert_eq!(
        run(SW_TONEMAP, &[uhd(), hdr.clone()], &cfg).action.name(),
        "rewrite"
    );
    let lenient = ShimConfig {
        fallback_sdr_only: false,
        allow_hdr_fallback: true,
        ..ShimConfig::default()
    };
    let d = run(SW_TONEMAP, &[uhd(), hdr], &lenient);
    let a = switched(SW_TONEMAP, &d);
    // An HDR version keeps (here: Plex's own) tone mapping.
    assert!(after(&a, "-filter_complex")[0].contains("tonemap=mobius"));

    // PREFER_HEIGHTS decides between two SDR versions.
    let mut small = hd(1280, 720);
    small.file = "/m/Film (2020)/Film - 720p.mkv".into();
    small.media_id = "39".into();
    let d = run(SW_TONEMAP, &[uhd(), hd(1920, 1080), small.clone()], &cfg);
    let Action::Switch(sw) = &d.action else {
        panic!()
    };
    assert_eq!(sw.version.media_id, "40");
    let prefer_720 = ShimConfig {
        prefer_heights: vec![720, 1080],
        ..ShimConfig::default()
    };
    let d = run(SW_TONEMAP, &[uhd(), hd(1920, 1080), small], &prefer_720);
    let Action::Switch(sw) = &d.action else {
        panic!()
    };
    assert_eq!(sw.version.media_id, "39");
}

#[test]
fn dolby_vision_rpu_handling_goes_with_a_non_dv_version() {
    let mut args = SW_TONEMAP.to_vec();
    let at = args.iter().position(|a| *a == "-maxrate:0").unwrap();
    args.splice(at..at, ["-bsf:0", "dovi_rpu=strip=1"]);
    let mut dv = uhd();
    dv.dynamic_range = Some(DynamicRange::DolbyVision);
    dv.dv_profile = Some(8);
    let d = run(&args, &[dv, hd(1920, 1080)], &ShimConfig::default());
    let a = switched(&args, &d);
    assert!(!a.iter().any(|t| t.contains("dovi_rpu")), "{a:?}");
    assert!(!a.iter().any(|t| t == "-bsf:0"));
}

#[test]
fn waterfall_only_when_asked_and_only_if_the_output_is_filled() {
    let mut full = hd(1920, 1080);
    full.file = "/m/Film (2020)/Film - 2160p.mkv".into(); // the playing file
    let mut small = hd(1280, 720);
    small.file = "/m/Film (2020)/Film - 720p.mkv".into();
    small.media_id = "39".into();
    let args: Vec<&str> = SW_TONEMAP
        .iter()
        .map(|a| {
            if a.starts_with("[0:0]scale") {
                "[0:0]scale=w=1280:h=720:force_divisible_by=4[0];[0]format=pix_fmts=yuv420p|nv12[2]"
            } else {
                a
            }
        })
        .collect();
    let off = ShimConfig::default();
    assert_eq!(
        run(&args, &[full.clone(), small.clone()], &off).reason,
        "source not protected"
    );
    let on = ShimConfig {
        waterfall: true,
        ..ShimConfig::default()
    };
    let d = run(&args, &[full.clone(), small.clone()], &on);
    assert_eq!(d.reason, "waterfall: a smaller version fills the output");
    // A 1080p output is not filled by a 720p version.
    let d = run(SW_TONEMAP, &[full, small], &on);
    assert_eq!(d.reason, "source not protected");
}

#[test]
fn unsupported_references_mean_no_switch() {
    let mut args = SW_TONEMAP.to_vec();
    let n = args.len();
    args.splice(n - 1..n - 1, ["-map", "0:m:language:eng"]);
    let d = run(&args, &[uhd(), hd(1920, 1080)], &ShimConfig::default());
    assert_eq!(d.no_switch, Some("a stream specifier cannot be remapped"));
}

/// SW_TONEMAP with no size anywhere: `-map 0:0 -codec:0 libx264`, no graph.
fn no_size_args() -> Vec<&'static str> {
    vec![
        "-codec:0",
        "hevc",
        "-i",
        "/m/Film (2020)/Film - 2160p.mkv",
        "-map",
        "0:0",
        "-codec:0",
        "libx264",
        "-map",
        "0:1",
        "-codec:1",
        "aac",
        "-f",
        "dash",
        "dash",
    ]
}

#[test]
fn waterfall_with_no_output_size_takes_the_best_smaller_version() {
    let mut full = hd(1920, 1080);
    full.file = "/m/Film (2020)/Film - 2160p.mkv".into(); // the playing file
    let version = |w, h, id: &str| {
        let mut v = hd(w, h);
        v.file = format!("/m/Film (2020)/Film - {h}p.mkv");
        v.media_id = id.into();
        v
    };
    let on = ShimConfig {
        waterfall: true,
        ..ShimConfig::default()
    };
    let versions = [
        full,
        version(640, 360, "36"),
        version(1280, 720, "39"),
        version(854, 480, "38"),
    ];
    let d = run(&no_size_args(), &versions, &on);
    let Action::Switch(sw) = &d.action else {
        panic!("expected a switch, got {d:?}")
    };
    assert_eq!(sw.version.height, Some(720), "not the 360p one");
}

#[test]
fn a_4k_scope_version_is_no_fallback_and_a_heavy_remux_takes_a_lighter_one() {
    // A 3840×1600 SDR version is 4K to decode: not a compliant stand-in for 4K HDR.
    let mut scope = hd(3840, 1600);
    scope.file = "/m/Film (2020)/Film - 2160p scope SDR.mkv".into();
    let d = run(SW_TONEMAP, &[uhd(), scope], &ShimConfig::default());
    assert_eq!(d.action.name(), "rewrite", "{d:?}");
    // REMUX_1080_MIN_BITRATE_KBPS: a heavy 1080p SDR remux is protected and switches
    // to a lighter 1080p version.
    let mut remux = hd(1920, 1080);
    remux.file = "/m/Film (2020)/Film - 2160p.mkv".into(); // the playing file
    remux.bitrate_kbps = Some(35_000);
    let mut light = hd(1920, 1080);
    light.file = "/m/Film (2020)/Film - 1080p web.mkv".into();
    light.media_id = "42".into();
    light.bitrate_kbps = Some(8_000);
    let args = no_size_args();
    let off = ShimConfig::default();
    assert_eq!(
        run(&args, &[remux.clone(), light.clone()], &off).reason,
        "source not protected"
    );
    let on = ShimConfig {
        remux_1080_min_bitrate_kbps: 25_000,
        ..ShimConfig::default()
    };
    let d = run(&args, &[remux, light], &on);
    let Action::Switch(sw) = &d.action else {
        panic!("expected a switch, got {d:?}")
    };
    assert_eq!(sw.version.media_id, "42");
}

#[test]
fn a_version_carries_every_source_fact() {
    // Issue 10: the bit depth and Dolby Vision's base layer used to be lost on the way from
    // the index to the facts a switch plans with (the daemon patched them back).
    let mut v = uhd();
    v.dynamic_range = Some(DynamicRange::DolbyVision);
    v.dv_profile = Some(8);
    v.bit_depth = Some(10);
    v.dv_base_layer_compatible = Some(false);
    let f = version_facts(&v);
    assert_eq!(
        (f.width, f.height, f.bit_depth, f.dynamic_range),
        (
            Some(3840),
            Some(2160),
            Some(10),
            Some(DynamicRange::DolbyVision)
        )
    );
    assert_eq!(
        (f.dv_profile, f.dv_base_layer_compatible),
        (Some(8), Some(false))
    );
    assert_eq!(f.codec.as_deref(), Some("hevc"));
    assert!(f.is_untonemappable_dv());
    // On the wire both are optional both ways: an older daemon's answer still reads, and an
    // unknown fact is not written.
    let old = r#"{"media_id":"1","width":1920,"height":1080,"dynamic_range":"sdr","dv_profile":null,
        "bitrate_kbps":null,"container":null,"edition":null,"file":"/m/a.mkv"}"#;
    let parsed: MediaVersion = serde_json::from_str(old).expect("an older daemon's version");
    assert_eq!(
        (parsed.bit_depth, parsed.dv_base_layer_compatible),
        (None, None)
    );
    let text = serde_json::to_string(&parsed).expect("serialise");
    assert!(
        !text.contains("bit_depth") && !text.contains("dv_base_layer"),
        "{text}"
    );
    let mut known = parsed;
    known.bit_depth = Some(10);
    let back: MediaVersion =
        serde_json::from_str(&serde_json::to_string(&known).expect("serialise")).expect("read");
    assert_eq!(back.bit_depth, Some(10));
}

#[test]
fn the_output_plan_knows_a_10_bit_version() {
    // An SDR version in 10 bits: the switched output must still be made 8-bit, which the
    // planner only knows from the version's bit depth.
    let args = [
        "-codec:0",
        "hevc",
        "-i",
        "/m/Film (2020)/Film - 2160p.mkv",
        "-filter_complex",
        "[0:0]scale=w=1920:h=1080[0]",
        "-map",
        "[0]",
        "-map",
        "0:1",
        "-codec:0",
        "libx264",
        "-codec:1",
        "aac",
        "-f",
        "dash",
        "dash",
    ];
    let cfg = ShimConfig::default();
    let eight = switched(&args, &run(&args, &[uhd(), hd(1920, 1080)], &cfg));
    let mut ten_bit = hd(1920, 1080);
    ten_bit.bit_depth = Some(10);
    let ten = switched(&args, &run(&args, &[uhd(), ten_bit], &cfg));
    let graph = |a: &[String]| after(a, "-filter_complex").join(" ");
    assert!(!graph(&eight).contains("format"), "{eight:?}");
    assert!(graph(&ten).contains("format"), "{ten:?}");
}

#[test]
fn candidates_are_ranked_before_the_switched_argv_is_parsed() {
    // The output plan re-parses the switched command line; that happens for the version
    // chosen, not once per candidate (issue 10): 1 or 12 matching siblings cost the same.
    let cfg = ShimConfig::default();
    let looks = |siblings: usize| {
        let mut versions = vec![uhd()];
        for i in 0..siblings {
            let mut v = hd(1920, 1080);
            v.media_id = format!("{}", 100 + i);
            v.file = format!("/m/Film (2020)/Film - 1080p copy {i}.mkv");
            versions.push(v);
        }
        let before = crate::argv::visits();
        let d = run(SW_TONEMAP, &versions, &cfg);
        assert_eq!(d.action.name(), "switch");
        crate::argv::visits() - before
    };
    let (one, twelve) = (looks(1), looks(12));
    assert_eq!(one, twelve, "1 sibling: {one} looks, 12 siblings: {twelve}");
}
