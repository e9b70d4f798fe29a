//! The decision: pass, rewrite, switch or refuse, each with a static reason.
//!
//! [`decide`] is a pure function of the parsed command line, the classified job, the source
//! facts, the session context and the configuration; it does no I/O and is tested with plain
//! data. Its reasons are `&'static str` so they double as counter labels (sccache's habit).
//!
//! The ladder for a guarded, protected video transcode is switch (a ≤1080p SDR sibling
//! version, when the daemon knows one — issue 5) → rewrite (make the output ≤1080p SDR) →
//! refuse. Every fail-open / fail-closed branch is one arm below, with its toggle.

use crate::argv::Invocation;
use crate::config::{GuardedJob, ShimConfig};
use crate::edit::Edit;
use crate::facts::SourceFacts;
use crate::job::{Job, JobKind, Location};
use crate::protocol::MediaVersion;
use crate::rewrite;
use crate::switch::{self, Purpose, Switch};

// Re-exported: the daemon names it through the policy; its home is a leaf module, so the
// protocol and the record can carry it without importing the policy (no cycle).
pub use crate::viewer::Viewer;

/// The message a refused viewer sees. A `KILL_MESSAGE_<SCENARIO>` wins, then a changed
/// `KILL_MESSAGE_DEFAULT`; otherwise scenarios that are not about a 4K/HDR source get a
/// message of their own (a file that could not be read is not "this 4K/HDR version").
pub fn refusal_message<'a>(cfg: &'a ShimConfig, scenario: &str) -> &'a str {
    if let Some(m) = cfg.kill_messages.get(scenario) {
        return m;
    }
    let own = match scenario {
        "unknown_source" => Some(
            "This video could not be checked before converting it for this device. \
             Please try again, or ask the server owner to check the file.",
        ),
        "unexpected_error" => Some(
            "Something went wrong while preparing this video for this device. \
             Please try again, or ask the server owner to check the downshiftarr log.",
        ),
        _ => None,
    };
    match own {
        Some(m) if cfg.kill_message_default == ShimConfig::default().kill_message_default => m,
        _ => &cfg.kill_message_default,
    }
}

/// What the shim does with the job.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Exec the original arguments byte-for-byte.
    Pass,
    /// Exec the arguments with these edits applied.
    Rewrite(Vec<Edit>),
    /// Exec with the input swapped to another version of the same title.
    Switch(Box<Switch>),
    /// Do not exec: exit non-zero, tell the daemon.
    Refuse { scenario: &'static str },
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Pass => "pass",
            Action::Rewrite(_) => "rewrite",
            Action::Switch(_) => "switch",
            Action::Refuse { .. } => "refuse",
        }
    }
}

/// A decision and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub action: Action,
    pub reason: &'static str,
    /// In shadow mode: what would have been done.
    pub shadowed: Option<&'static str>,
    /// Why a protected source was not switched to another version, when it was not.
    pub no_switch: Option<&'static str>,
}

impl Decision {
    pub fn pass(reason: &'static str) -> Decision {
        Decision {
            action: Action::Pass,
            reason,
            shadowed: None,
            no_switch: None,
        }
    }

    fn of(action: Action, reason: &'static str) -> Decision {
        Decision {
            action,
            reason,
            shadowed: None,
            no_switch: None,
        }
    }

    /// The edits this decision applies to the command line.
    pub fn edits(&self) -> &[Edit] {
        match &self.action {
            Action::Rewrite(e) => e,
            Action::Switch(s) => &s.edits,
            _ => &[],
        }
    }
}

/// Everything [`decide`] looks at.
pub struct Context<'a, 'b> {
    pub inv: &'a Invocation<'b>,
    pub job: &'a Job,
    pub facts: Option<&'a SourceFacts>,
    /// Every version of the item (the input's own included), when the daemon knows it.
    pub versions: &'a [MediaVersion],
    pub viewer: &'a Viewer,
    pub config: &'a ShimConfig,
}

/// Whether the job is one the policy looks at, and if not, why.
pub fn guarded(job: &Job, config: &ShimConfig) -> Result<(), &'static str> {
    let kind = match job.kind {
        JobKind::VideoTranscode => GuardedJob::Streaming,
        JobKind::Optimize => GuardedJob::Optimize,
        JobKind::LiveTv => GuardedJob::LiveTv,
        JobKind::DirectStream => return Err("direct stream: video is copied"),
        JobKind::AudioOnly => return Err("audio-only job"),
        JobKind::Thumbnail => return Err("thumbnail job"),
        JobKind::Analysis => return Err("analysis job"),
        JobKind::Informational => return Err("informational call"),
        JobKind::Unknown => return Err("not a recognised transcode"),
    };
    if !job.video_encoded() {
        return Err("no video is encoded");
    }
    if !config.guards(kind) {
        return Err(match kind {
            GuardedJob::Optimize => "optimize jobs are not guarded",
            GuardedJob::LiveTv => "live tv is not guarded",
            GuardedJob::Streaming => "streaming transcodes are not guarded",
        });
    }
    if job.primary_location != Some(Location::File) && !config.guards(GuardedJob::LiveTv) {
        return Err("network inputs are not guarded");
    }
    Ok(())
}

/// Whether a source is protected: `Some(true)` when its resolution class reaches
/// `max_allowed_height` or it is not SDR, `Some(false)` when it is known to be neither,
/// `None` when unknown.
///
/// The class is the one the switch uses ([`crate::facts::nominal_height`]): a 3840×1600 scope film
/// is 4K to decode although it is only 1600 lines tall, so it is protected at the default
/// 2000 whatever its aspect ratio (issue 9 §3), while a 1920×800 film is 1080p. A 1440p SDR
/// source (2560×1440, class 1440) is *not* protected at the default: the original design's
/// documented policy, kept.
pub fn protected(facts: &SourceFacts, config: &ShimConfig) -> Option<bool> {
    protected_source(facts, None, config)
}

/// [`protected`], also knowing the source's overall bitrate (from the library index): with
/// `remux_1080_min_bitrate_kbps` set, a 1080p-class source at or above it is protected too
/// (the peer's `REMUX_1080_MIN_BITRATE_KBPS`, heavy remuxes).
pub fn protected_source(
    facts: &SourceFacts,
    bitrate_kbps: Option<u32>,
    config: &ShimConfig,
) -> Option<bool> {
    let class = facts
        .height
        .and_then(|h| crate::facts::nominal_height(facts.width, Some(h)).map(|n| n.max(h)));
    let tall = class.map(|c| c >= config.max_allowed_height);
    let heavy = config.remux_1080_min_bitrate_kbps > 0
        && class == Some(1080)
        && bitrate_kbps.is_some_and(|b| b >= config.remux_1080_min_bitrate_kbps);
    let hdr = facts.dynamic_range.map(|d| !d.is_sdr());
    let legacy = facts
        .codec
        .as_deref()
        .is_some_and(|c| crate::facts::is_legacy_sdr_codec(c.as_bytes()));
    match (tall, hdr) {
        _ if heavy => Some(true),
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), Some(false)) => Some(false),
        (None, Some(false)) if legacy => Some(false),
        _ => None,
    }
}

/// The overall bitrate of the playing version, when the daemon's index knows it.
fn input_bitrate(ctx: &Context<'_, '_>) -> Option<u32> {
    let url = ctx.inv.inputs.get(ctx.job.primary_input?)?.url?;
    let path = crate::job::file_path(ctx.inv.token(url));
    ctx.versions
        .iter()
        .find(|v| v.file.as_bytes() == path)
        .and_then(|v| v.bitrate_kbps)
}

/// Decides for a viewer already known (or known to be unknown). Pure: no I/O.
///
/// The same as [`verdict`] then [`Verdict::for_viewer`], with "guarded" worked out here.
pub fn decide(ctx: &Context<'_, '_>) -> Decision {
    verdict(ctx, guarded(ctx.job, ctx.config)).for_viewer(ctx.viewer, ctx.config)
}

/// What the policy does with the job before exemptions: `guard` is [`guarded`]'s answer,
/// worked out once by the caller (the shim also needs it to decide what to learn). Pure.
pub fn verdict(ctx: &Context<'_, '_>, guard: Result<(), &'static str>) -> Verdict {
    if let Err(reason) = guard {
        return Verdict {
            decision: Decision::pass(reason),
            guarded: false,
        };
    }
    let cfg = ctx.config;
    let verdict = enforce(ctx);
    let decision = if cfg.shadow_mode && verdict.action != Action::Pass {
        Decision {
            action: Action::Pass,
            reason: "shadow mode",
            shadowed: Some(verdict.reason),
            no_switch: verdict.no_switch,
        }
    } else {
        verdict
    };
    Verdict {
        decision,
        guarded: true,
    }
}

/// A decision before exemptions, and whether exemptions can apply to it.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub decision: Decision,
    /// The job is one the policy looks at ([`guarded`]): only then can a viewer be exempt.
    guarded: bool,
}

impl Verdict {
    /// Deciding failed (a bug of ours, caught): a guarded video job is refused with
    /// `KILL_ON_UNEXPECTED_ERROR=1` (never in shadow mode), everything else passes untouched.
    pub fn internal_error(guard: Result<(), &'static str>, cfg: &ShimConfig) -> Verdict {
        let reason = "internal error while deciding";
        let guarded = guard.is_ok();
        let decision = if guarded && cfg.kill_on_unexpected_error && !cfg.shadow_mode {
            Decision::of(
                Action::Refuse {
                    scenario: "unexpected_error",
                },
                reason,
            )
        } else {
            Decision::pass(reason)
        };
        Verdict { decision, guarded }
    }

    /// Who is watching could change the decision: it would touch the job (or shadow mode
    /// would log that it does) and someone is exempt at all. Only then is the viewer worth
    /// a question to the daemon.
    pub fn viewer_matters(&self, cfg: &ShimConfig) -> bool {
        self.guarded && self.touches() && has_exemptions(cfg)
    }

    fn touches(&self) -> bool {
        self.decision.action != Action::Pass || self.decision.shadowed.is_some()
    }

    /// The decision for this viewer: the one place exemptions are decided. An exempt viewer
    /// passes any guarded job; an unknown viewer passes a job that would be touched when
    /// someone is exempt and `EXEMPT_WHEN_VIEWER_UNKNOWN=1`.
    pub fn for_viewer(self, viewer: &Viewer, cfg: &ShimConfig) -> Decision {
        if !self.guarded {
            return self.decision;
        }
        if is_exempt(viewer, cfg) {
            return Decision::pass("viewer is exempt");
        }
        if self.viewer_matters(cfg) && !viewer.is_known() && cfg.exempt_when_viewer_unknown {
            return Decision::pass("viewer unknown in time; EXEMPT_WHEN_VIEWER_UNKNOWN=1");
        }
        self.decision
    }
}

/// Someone is on `EXEMPT_USERS` / `EXEMPT_CLIENTS`.
fn has_exemptions(cfg: &ShimConfig) -> bool {
    !cfg.exempt_users.is_empty() || !cfg.exempt_clients.is_empty()
}

fn enforce(ctx: &Context<'_, '_>) -> Decision {
    let cfg = ctx.config;
    let refuse = |scenario, reason| Decision::of(Action::Refuse { scenario }, reason);
    let Some(facts) = ctx.facts else {
        return if cfg.kill_on_unknown_source {
            refuse("unknown_source", "source facts unknown")
        } else {
            Decision::pass("source facts unknown; KILL_ON_UNKNOWN_SOURCE=0")
        };
    };
    match protected_source(facts, input_bitrate(ctx), cfg) {
        Some(false) => {
            if cfg.waterfall && !ctx.versions.is_empty() {
                if let Ok(sw) =
                    switch::plan(ctx.inv, ctx.job, ctx.versions, cfg, Purpose::Waterfall)
                {
                    return Decision::of(
                        Action::Switch(Box::new(sw)),
                        "waterfall: a smaller version fills the output",
                    );
                }
            }
            return Decision::pass("source not protected");
        }
        None if cfg.kill_on_unknown_source => {
            return refuse("unknown_source", "source facts incomplete")
        }
        None => return Decision::pass("source facts incomplete; KILL_ON_UNKNOWN_SOURCE=0"),
        Some(true) => {}
    }
    let no_switch = if ctx.versions.is_empty() {
        "the library index does not know this file"
    } else {
        match switch::plan(ctx.inv, ctx.job, ctx.versions, cfg, Purpose::Protect) {
            Ok(sw) => {
                return Decision::of(
                    Action::Switch(Box::new(sw)),
                    "protected source switched to a compliant version",
                )
            }
            Err(e) => e,
        }
    };
    let mut d = fall_back(ctx, facts);
    d.no_switch = Some(no_switch);
    d
}

/// No compliant version to switch to: rewrite, or refuse, per the toggles.
fn fall_back(ctx: &Context<'_, '_>, facts: &SourceFacts) -> Decision {
    let cfg = ctx.config;
    let refuse = |scenario, reason| Decision::of(Action::Refuse { scenario }, reason);
    if cfg.kill_on_no_fallback_media == Some(true) {
        return refuse(
            "no_fallback_media",
            "no compliant version; KILL_ON_NO_FALLBACK_MEDIA=1",
        );
    }
    let unsupported = |reason| {
        if cfg.kill_on_rewrite_unsupported {
            refuse("rewrite_unsupported", reason)
        } else {
            Decision::pass(reason)
        }
    };
    if facts.is_untonemappable_dv() {
        return unsupported("dolby vision profile 5 cannot be tone mapped");
    }
    match rewrite::plan(ctx.inv, ctx.job, facts, cfg) {
        Ok(None) => Decision::pass("output already 1080p sdr or below"),
        Ok(Some(edits)) => Decision::of(
            Action::Rewrite(edits),
            "protected source rewritten to 1080p sdr",
        ),
        Err(reason) => unsupported(reason),
    }
}

/// Whether the viewer is on `EXEMPT_USERS` / `EXEMPT_CLIENTS`.
pub fn is_exempt(viewer: &Viewer, cfg: &ShimConfig) -> bool {
    let hit = |v: &Option<String>, list: &[String]| {
        v.as_deref()
            .is_some_and(|v| list.iter().any(|x| x.eq_ignore_ascii_case(v)))
    };
    hit(&viewer.user, &cfg.exempt_users)
        || [
            &viewer.client,
            &viewer.device,
            &viewer.platform,
            &viewer.client_id,
        ]
        .into_iter()
        .any(|c| hit(c, &cfg.exempt_clients))
}

#[cfg(test)]
mod tests {
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
            kill_on_no_fallback_media: Some(true),
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
}

#[cfg(test)]
mod scaling {
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
}
