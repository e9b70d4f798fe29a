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
    if cfg.kill_on_no_fallback_media {
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
mod scaling;
#[cfg(test)]
mod tests;
