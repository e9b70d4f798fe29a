//! The decision ladder, exemptions and protection rules over plain data.

use super::*;
use crate::argv::{parse, Parsed};
use crate::facts::{DynamicRange, Origin};
use crate::job::classify;
use std::ffi::OsString;

/// The shared 4K DASH Plex job (`tests/support/plex_job.rs`), with a bitrate cap.
fn sw_4k() -> Vec<String> {
    crate::plex_job::PlexJob::sw_dash("/m/a.mkv")
        .progress(None)
        .output_opts(&["-maxrate:0", "40000k"])
        .strings()
}

fn facts(h: u32, dr: DynamicRange) -> SourceFacts {
    let mut f = SourceFacts::empty(Origin::Given);
    f.width = Some(h * 16 / 9);
    f.height = Some(h);
    f.dynamic_range = Some(dr);
    f.bit_depth = Some(if dr.is_sdr() { 8 } else { 10 });
    f
}

fn run<S: AsRef<str>>(args: &[S], f: Option<SourceFacts>, cfg: &ShimConfig) -> Decision {
    let t: Vec<OsString> = args.iter().map(|a| OsString::from(a.as_ref())).collect();
    let Parsed::Job(inv) = parse(&t) else {
        panic!()
    };
    let job = classify(&inv);
    decide(&Context {
        inv: &inv,
        job: &job,
        facts: f.as_ref(),
        versions: &[],
        viewer: &Viewer::default(),
        config: cfg,
    })
}

#[test]
fn ladder() {
    let c = ShimConfig::default();
    assert_eq!(
        run(&sw_4k(), Some(facts(1080, DynamicRange::Sdr)), &c).reason,
        "source not protected"
    );
    assert_eq!(
        run(&sw_4k(), Some(facts(2160, DynamicRange::Hdr10)), &c)
            .action
            .name(),
        "rewrite"
    );
    assert_eq!(
        run(&sw_4k(), None, &c).action,
        Action::Refuse {
            scenario: "unknown_source"
        }
    );
    let lenient = ShimConfig {
        kill_on_unknown_source: false,
        ..ShimConfig::default()
    };
    assert_eq!(run(&sw_4k(), None, &lenient).action, Action::Pass);
    let strict = ShimConfig {
        kill_on_no_fallback_media: true,
        ..ShimConfig::default()
    };
    assert_eq!(
        run(&sw_4k(), Some(facts(2160, DynamicRange::Hdr10)), &strict)
            .action
            .name(),
        "refuse"
    );
}

#[test]
fn shadow_mode_never_changes_argv() {
    let c = ShimConfig {
        shadow_mode: true,
        ..ShimConfig::default()
    };
    let d = run(&sw_4k(), Some(facts(2160, DynamicRange::Hdr10)), &c);
    assert_eq!(d.action, Action::Pass);
    assert_eq!(d.shadowed, Some("protected source rewritten to 1080p sdr"));
    assert_eq!(
        run(&sw_4k(), None, &c).shadowed,
        Some("source facts unknown")
    );
}

#[test]
fn dv_profile_5() {
    let mut f = facts(2160, DynamicRange::DolbyVision);
    f.dv_profile = Some(5);
    let c = ShimConfig::default();
    assert_eq!(
        run(&sw_4k(), Some(f.clone()), &c).action,
        Action::Refuse {
            scenario: "rewrite_unsupported"
        }
    );
    let lenient = ShimConfig {
        kill_on_rewrite_unsupported: false,
        ..ShimConfig::default()
    };
    assert_eq!(run(&sw_4k(), Some(f), &lenient).action, Action::Pass);
}

#[test]
fn non_video_jobs_are_never_touched_whatever_the_config() {
    let c = ShimConfig {
        kill_on_unknown_source: true,
        guarded_jobs: vec![
            GuardedJob::Streaming,
            GuardedJob::Optimize,
            GuardedJob::LiveTv,
        ],
        ..ShimConfig::default()
    };
    let thumb = [
        "-i",
        "/m/a.mkv",
        "-vf",
        "fps=1",
        "-f",
        "image2",
        "t-%05d.jpeg",
    ];
    assert_eq!(run(&thumb, None, &c).action, Action::Pass);
    let copy = [
        "-i", "/m/a.mkv", "-map", "0:0", "-codec:0", "copy", "-f", "dash", "dash",
    ];
    assert_eq!(run(&copy, None, &c).action, Action::Pass);
}

#[test]
fn exempt_users() {
    let t: Vec<OsString> = sw_4k().iter().map(OsString::from).collect();
    let Parsed::Job(inv) = parse(&t) else {
        panic!()
    };
    let job = classify(&inv);
    let c = ShimConfig {
        exempt_users: vec!["Alice".into()],
        ..ShimConfig::default()
    };
    let v = Viewer {
        user: Some("alice".into()),
        ..Viewer::default()
    };
    let f = facts(2160, DynamicRange::Hdr10);
    let d = decide(&Context {
        inv: &inv,
        job: &job,
        facts: Some(&f),
        versions: &[],
        viewer: &v,
        config: &c,
    });
    assert_eq!(d.reason, "viewer is exempt");
}

/// `verdict` for `args` with `f`, guarded worked out as the shim does.
fn verdict_of<S: AsRef<str>>(args: &[S], f: Option<SourceFacts>, cfg: &ShimConfig) -> Verdict {
    let t: Vec<OsString> = args.iter().map(|a| OsString::from(a.as_ref())).collect();
    let Parsed::Job(inv) = parse(&t) else {
        panic!()
    };
    let job = classify(&inv);
    let ctx = Context {
        inv: &inv,
        job: &job,
        facts: f.as_ref(),
        versions: &[],
        viewer: &Viewer::default(),
        config: cfg,
    };
    verdict(&ctx, guarded(&job, cfg))
}

#[test]
fn exemption_is_decided_in_one_place_and_only_for_guarded_jobs() {
    let hdr = || Some(facts(2160, DynamicRange::Hdr10));
    let alice = Viewer {
        user: Some("Alice".into()),
        ..Viewer::default()
    };
    let bob = Viewer {
        user: Some("bob".into()),
        ..Viewer::default()
    };
    let unknown = Viewer::default();
    let none_exempt = ShimConfig {
        exempt_when_viewer_unknown: true,
        ..ShimConfig::default()
    };
    // Nobody exempt: the viewer never matters, an unknown one changes nothing.
    let v = verdict_of(&sw_4k(), hdr(), &none_exempt);
    assert!(!v.viewer_matters(&none_exempt));
    assert_eq!(
        v.for_viewer(&unknown, &none_exempt).action.name(),
        "rewrite"
    );
    let cfg = ShimConfig {
        exempt_users: vec!["alice".into()],
        exempt_when_viewer_unknown: true,
        ..ShimConfig::default()
    };
    let v = verdict_of(&sw_4k(), hdr(), &cfg);
    assert!(v.viewer_matters(&cfg));
    assert_eq!(
        v.clone().for_viewer(&alice, &cfg).reason,
        "viewer is exempt"
    );
    assert_eq!(v.clone().for_viewer(&bob, &cfg).action.name(), "rewrite");
    assert_eq!(
        v.for_viewer(&unknown, &cfg).reason,
        "viewer unknown in time; EXEMPT_WHEN_VIEWER_UNKNOWN=1"
    );
    // A pass is not worth asking about, but a known exempt viewer is still named.
    let v = verdict_of(&sw_4k(), Some(facts(1080, DynamicRange::Sdr)), &cfg);
    assert!(!v.viewer_matters(&cfg));
    assert_eq!(
        v.clone().for_viewer(&unknown, &cfg).reason,
        "source not protected"
    );
    assert_eq!(v.for_viewer(&alice, &cfg).reason, "viewer is exempt");
    // Shadow mode touches nothing but logs what it would do: the viewer matters.
    let shadow = ShimConfig {
        shadow_mode: true,
        ..cfg.clone()
    };
    assert!(verdict_of(&sw_4k(), hdr(), &shadow).viewer_matters(&shadow));
    // A job the policy does not guard keeps its own reason, whoever watches.
    let thumb = [
        "-i",
        "/m/a.mkv",
        "-vf",
        "fps=1",
        "-f",
        "image2",
        "t-%05d.jpeg",
    ];
    let v = verdict_of(&thumb, None, &cfg);
    assert!(!v.viewer_matters(&cfg));
    assert_eq!(v.for_viewer(&alice, &cfg).reason, "thumbnail job");
}

#[test]
fn an_internal_error_refuses_only_a_guarded_job_and_still_spares_the_exempt() {
    let cfg = ShimConfig {
        exempt_users: vec!["alice".into()],
        ..ShimConfig::default()
    };
    let v = Verdict::internal_error(Ok(()), &cfg);
    assert_eq!(
        v.decision.action,
        Action::Refuse {
            scenario: "unexpected_error"
        }
    );
    assert!(v.viewer_matters(&cfg));
    let alice = Viewer {
        user: Some("alice".into()),
        ..Viewer::default()
    };
    assert_eq!(v.for_viewer(&alice, &cfg).reason, "viewer is exempt");
    let unguarded = Verdict::internal_error(Err("thumbnail job"), &cfg);
    assert_eq!(unguarded.decision.action, Action::Pass);
    let lenient = ShimConfig {
        kill_on_unexpected_error: false,
        ..ShimConfig::default()
    };
    assert_eq!(
        Verdict::internal_error(Ok(()), &lenient).decision.action,
        Action::Pass
    );
    let shadow = ShimConfig {
        shadow_mode: true,
        ..ShimConfig::default()
    };
    assert_eq!(
        Verdict::internal_error(Ok(()), &shadow).decision.action,
        Action::Pass
    );
}

#[test]
fn protection_rules() {
    let c = ShimConfig::default();
    assert_eq!(protected(&facts(2160, DynamicRange::Sdr), &c), Some(true));
    assert_eq!(protected(&facts(1080, DynamicRange::Hlg), &c), Some(true));
    // 3553×1999 is a 4K-class picture (by class, not by lines: issue 9 §3).
    assert_eq!(protected(&facts(1999, DynamicRange::Sdr), &c), Some(true));
    assert_eq!(protected(&facts(1440, DynamicRange::Sdr), &c), Some(false));
    let mut legacy = SourceFacts::empty(Origin::Argv);
    legacy.dynamic_range = Some(DynamicRange::Sdr);
    legacy.codec = Some("mpeg2video".into());
    assert_eq!(protected(&legacy, &c), Some(false));
    let mut unknown_h = SourceFacts::empty(Origin::Filename);
    unknown_h.dynamic_range = Some(DynamicRange::Sdr);
    assert_eq!(protected(&unknown_h, &c), None);
}

#[test]
fn an_unreadable_file_is_not_called_4k_hdr_to_the_viewer() {
    let mut cfg = ShimConfig::default();
    assert!(!refusal_message(&cfg, "unknown_source").contains("4K/HDR"));
    assert!(refusal_message(&cfg, "rewrite_unsupported").contains("4K/HDR"));
    cfg.kill_messages
        .insert("unknown_source".into(), "mine".into());
    assert_eq!(refusal_message(&cfg, "unknown_source"), "mine");
    cfg.kill_messages.clear();
    cfg.kill_message_default = "all".into();
    assert_eq!(refusal_message(&cfg, "unknown_source"), "all");
}

fn sized(w: u32, h: u32) -> SourceFacts {
    let mut f = facts(h, DynamicRange::Sdr);
    f.width = Some(w);
    f
}

#[test]
fn protection_is_by_resolution_class_not_by_lines() {
    let c = ShimConfig::default();
    // A 2.40:1 4K film in SDR is 4K to decode: protected whatever its aspect ratio.
    assert_eq!(protected(&sized(3840, 1600), &c), Some(true));
    assert_eq!(protected(&sized(4096, 1716), &c), Some(true));
    // A 1920×800 film is 1080p; 1440p SDR passes at the default (documented policy).
    assert_eq!(protected(&sized(1920, 800), &c), Some(false));
    assert_eq!(protected(&sized(2560, 1440), &c), Some(false));
    assert_eq!(protected(&sized(2560, 1072), &c), Some(false));
    // With the peer's threshold (1081) every class above 1080p is protected.
    let strict = ShimConfig {
        max_allowed_height: 1081,
        ..ShimConfig::default()
    };
    assert_eq!(protected(&sized(2560, 1072), &strict), Some(true));
    assert_eq!(protected(&sized(1920, 1080), &strict), Some(false));
    // And the decision a viewer sees: the scope film is rewritten, not passed.
    let d = run(&sw_4k(), Some(sized(3840, 1600)), &c);
    assert_eq!(d.reason, "protected source rewritten to 1080p sdr");
}

#[test]
fn the_bitrate_threshold_is_off_by_default_and_protects_heavy_1080p() {
    let hd = sized(1920, 1080);
    let c = ShimConfig::default();
    assert_eq!(protected_source(&hd, Some(40_000), &c), Some(false));
    let on = ShimConfig {
        remux_1080_min_bitrate_kbps: 25_000,
        ..ShimConfig::default()
    };
    assert_eq!(protected_source(&hd, Some(25_000), &on), Some(true));
    assert_eq!(protected_source(&hd, Some(12_000), &on), Some(false));
    assert_eq!(protected_source(&hd, None, &on), Some(false));
    // Only the 1080p class: a heavy 720p file is not a "1080p remux".
    assert_eq!(
        protected_source(&sized(1280, 720), Some(40_000), &on),
        Some(false)
    );
}
