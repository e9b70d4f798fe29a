//! Parse, decide, act: the shim's whole run, in order.
//!
//! [`evaluate`] is the decision path without side effects on the job (it may talk to the
//! daemon and read the input file's header); `downshiftarr explain` calls exactly this.
//! [`run`] adds the two effects: record the decision, then exec (or refuse).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::argv::{self, Invocation, Parsed};
use crate::config::{self, ShimConfig};
use crate::edit;
use crate::exec;
use crate::facts::{self, DynamicRange, Origin, SourceFacts};
use crate::job::{self, Job, JobKind, Location};
use crate::policy::{self, Action, Context, Decision, Viewer};
use crate::probe;
use crate::protocol::{Client, MediaVersion, Request, Response};
use crate::record::{self, Record};

/// Everything a decision produced.
pub struct Outcome {
    pub job: JobKind,
    pub session: Option<String>,
    pub input: Option<Vec<u8>>,
    pub facts: Option<SourceFacts>,
    /// Every version of the item, when the daemon's index knows the input.
    pub versions: Vec<MediaVersion>,
    /// Who is watching, when it was asked and known.
    pub viewer: Viewer,
    pub decision: Decision,
    /// The arguments that would be exec'd (without argv[0]); `None` for refuse.
    pub argv: Option<Vec<OsString>>,
    pub edits: Vec<edit::Edit>,
    /// The message for a refused viewer.
    pub message: Option<String>,
    /// What happened on the way (daemon errors, probe errors), for the log.
    pub notes: Vec<String>,
    /// An open daemon connection, reused to report the decision.
    pub daemon: Option<Client>,
    /// The daemon was asked this run (and is not to be reconnected to if it failed).
    pub daemon_asked: bool,
}

/// How facts may be learned.
pub struct Sources<'a> {
    /// Facts handed in by the caller (`explain --source-json`); skips everything else.
    pub given: Option<SourceFacts>,
    /// Ask the daemon (the shim does; tests can turn it off).
    pub daemon: bool,
    pub viewer: &'a Viewer,
}

/// Decides what to do with `tokens` (argv without argv[0]).
pub fn evaluate(
    tokens: &[OsString],
    cfg: &ShimConfig,
    sources: Sources<'_>,
    started: Instant,
) -> Outcome {
    let mut out = Outcome {
        job: JobKind::Unknown,
        session: None,
        input: None,
        facts: None,
        versions: Vec::new(),
        viewer: sources.viewer.clone(),
        decision: Decision::pass("not a recognised transcode"),
        argv: Some(tokens.to_vec()),
        edits: Vec::new(),
        message: None,
        notes: Vec::new(),
        daemon: None,
        daemon_asked: false,
    };
    let inv = match argv::parse(tokens) {
        Parsed::Job(inv) => inv,
        Parsed::Informational => {
            out.job = JobKind::Informational;
            out.decision.reason = "informational call";
            return out;
        }
        Parsed::Invalid(why) => {
            out.decision.reason = why;
            return out;
        }
    };
    // A bug in our own code must never stop a job the policy did not mean to stop: the
    // decision runs under catch_unwind, and on a panic only a guarded video transcode is
    // refused (KILL_ON_UNEXPECTED_ERROR), everything else passes untouched.
    let mut job =
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job::classify(&inv))) {
            Ok(j) => j,
            Err(_) => {
                out.decision.reason = "internal error while classifying";
                return out;
            }
        };
    out.job = job.kind;
    out.session = job.session.clone();
    // Worked out once: it says what to learn, what to decide and whether a panic refuses.
    let guard = policy::guarded(&job, cfg);
    if guard.is_ok() {
        let deadline = started + Duration::from_millis(cfg.daemon_budget_ms as u64);
        let ask = sources.daemon && sources.given.is_none() && !cfg.socket.is_empty();
        out.daemon_asked = ask;
        let mut learn_for = |job: &Job, versions: &mut Vec<MediaVersion>| {
            learn(
                &inv,
                job,
                cfg,
                sources.given.clone(),
                ask,
                deadline,
                &mut out.notes,
                &mut out.daemon,
                versions,
            )
        };
        // No `-map` and several inputs: ffmpeg encodes the largest video of them all, so
        // learn each input's facts and judge that one (issue 9 §3).
        let candidates = job.implicit_candidates(&inv);
        if candidates.len() > 1 && sources.given.is_none() {
            let mut learned = Vec::new();
            for (n, &(i, loc)) in candidates.iter().enumerate() {
                if n >= MAX_IMPLICIT_CANDIDATES {
                    // A hostile argv of thousands of inputs: the rest stay unmeasured, and an
                    // unmeasured local file is the one judged (fail closed), in bounded time.
                    learned.push(((i, loc, None), None, Vec::new()));
                    continue;
                }
                let mut j = job.clone();
                j.select_input(&inv, i);
                let mut versions = Vec::new();
                let f = learn_for(&j, &mut versions);
                let size = f.as_ref().and_then(|f| Some((f.width?, f.height?)));
                let size = size.or(f
                    .as_ref()
                    .and_then(|f| f.height.map(|h| (h.saturating_mul(16) / 9, h))));
                learned.push(((i, loc, size), f, versions));
            }
            let sizes: Vec<_> = learned.iter().map(|l| l.0).collect();
            if let Some(pick) = job::implicit_video_input(&sizes) {
                job.select_input(&inv, pick);
                if let Some((_, f, v)) = learned.into_iter().find(|l| l.0 .0 == pick) {
                    out.facts = f;
                    out.versions = v;
                }
            }
        } else {
            out.facts = learn_for(&job, &mut out.versions);
        }
    }
    out.input = job
        .primary_input
        .and_then(|i| inv.inputs[i].url)
        .map(|u| inv.token(u).to_vec());
    let decided = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        policy::verdict(
            &Context {
                inv: &inv,
                job: &job,
                facts: out.facts.as_ref(),
                versions: &out.versions,
                viewer: sources.viewer,
                config: cfg,
            },
            guard,
        )
    }));
    let verdict = decided.unwrap_or_else(|_| policy::Verdict::internal_error(guard, cfg));
    // Exemptions: the viewer is only worth a question to the daemon when it could change
    // the decision.
    if verdict.viewer_matters(cfg) && !out.viewer.is_known() && sources.daemon {
        if let Some(session) = out.session.clone() {
            let deadline = started + Duration::from_millis(cfg.daemon_budget_ms as u64);
            out.viewer = ask_viewer(cfg, &session, deadline, &mut out.daemon, &mut out.notes);
        }
    }
    out.decision = verdict.for_viewer(&out.viewer, cfg);
    match &out.decision.action {
        Action::Pass => {}
        Action::Rewrite(_) | Action::Switch(_) => {
            let edits = out.decision.edits();
            out.argv = Some(edit::apply(tokens, edits));
            out.edits = edits.to_vec();
        }
        Action::Refuse { scenario } => {
            out.argv = None;
            out.message = Some(policy::refusal_message(cfg, scenario).to_string());
        }
    }
    out
}

/// Asks the daemon who is watching `session`, within what is left of the budget.
fn ask_viewer(
    cfg: &ShimConfig,
    session: &str,
    deadline: Instant,
    daemon: &mut Option<Client>,
    notes: &mut Vec<String>,
) -> Viewer {
    let left = deadline.saturating_duration_since(Instant::now());
    if left < Duration::from_millis(2) {
        notes.push("viewer: no time left to ask".into());
        return Viewer::default();
    }
    let mut client = match daemon.take() {
        Some(c) => c,
        None => match Client::connect(Path::new(&cfg.socket), deadline) {
            Ok(c) => c,
            Err(e) => {
                notes.push(format!("viewer: {}", e.label()));
                return Viewer::default();
            }
        },
    };
    // Leave the daemon a little less than we have, so its answer still arrives in time.
    let wait_ms = (left.as_millis() as u32).saturating_sub(2).max(1);
    let req = Request::SessionContext {
        transcode_session: session.to_string(),
        wait_ms,
    };
    let viewer = match client.call(&req) {
        Ok(Response::Session { viewer }) => {
            if !viewer.is_known() {
                notes.push("viewer: unknown to the daemon in time".into());
            }
            viewer
        }
        Ok(Response::Error { message }) => {
            notes.push(format!("viewer: {message}"));
            Viewer::default()
        }
        Ok(_) => {
            notes.push("viewer: unexpected response".into());
            Viewer::default()
        }
        Err(e) => {
            notes.push(format!("viewer: {}", e.label()));
            return Viewer::default();
        }
    };
    *daemon = Some(client);
    viewer
}

/// Learns the facts of the primary input: given → daemon → probe → file name / argv hints.
#[allow(clippy::too_many_arguments)]
fn learn(
    inv: &Invocation<'_>,
    job: &Job,
    cfg: &ShimConfig,
    given: Option<SourceFacts>,
    ask_daemon: bool,
    deadline: Instant,
    notes: &mut Vec<String>,
    daemon: &mut Option<Client>,
    versions: &mut Vec<MediaVersion>,
) -> Option<SourceFacts> {
    if let Some(mut g) = given {
        g.from = Some(Origin::Given);
        return Some(g);
    }
    let url = inv.token(inv.inputs.get(job.primary_input?)?.url?);
    let local = job.primary_location == Some(Location::File);
    let path = job::file_path(url);
    if ask_daemon {
        match Client::connect(Path::new(&cfg.socket), deadline) {
            Ok(mut c) => {
                // A network input (live TV) carries `X-Plex-Token=…`: it never leaves the
                // shim, not even to the daemon (issue 9 §2).
                let req = Request::LookupSource {
                    path: record::redact(&String::from_utf8_lossy(path), None),
                };
                match c.call(&req) {
                    Ok(Response::Source {
                        found: true,
                        facts: Some(mut f),
                        versions: v,
                    }) => {
                        f.from = Some(Origin::Daemon);
                        *daemon = Some(c);
                        *versions = v;
                        return Some(f);
                    }
                    Ok(Response::Source { .. }) => {
                        notes.push("daemon: file not in library index".into());
                        *daemon = Some(c);
                    }
                    Ok(Response::Error { message }) => notes.push(format!("daemon: {message}")),
                    Ok(_) => notes.push("daemon: unexpected response".into()),
                    Err(e) => notes.push(format!("daemon: {}", e.label())),
                }
            }
            Err(e) => notes.push(format!("daemon: {}", e.label())),
        }
    }
    if local {
        match probe::probe(
            Path::new(OsStr::from_bytes(path)),
            cfg.probe_max_bytes as u64,
        ) {
            Ok(t) => return Some(t.facts()),
            Err(e) => notes.push(format!("probe: {e}")),
        }
    }
    hints(inv, job, path)
}

/// Weak facts from the file name and the arguments, merged (file name first).
fn hints(inv: &Invocation<'_>, job: &Job, path: &[u8]) -> Option<SourceFacts> {
    let mut f = facts::from_filename(path);
    let mut argv_f = SourceFacts::empty(Origin::Argv);
    // `-filter_complex` or `-vf`/`-filter:v`: the filter on the video's way.
    if let Some(opt) = job.video.as_ref().and_then(|v| v.feed.filter_opt()) {
        if let Some(g) = inv.value(&opt) {
            if g.windows(7).any(|w| w == b"tonemap") {
                argv_f.dynamic_range = Some(DynamicRange::Hdr10);
            }
        }
    }
    if inv
        .tokens
        .iter()
        .any(|t| t.as_bytes().windows(8).any(|w| w == b"dovi_rpu"))
    {
        argv_f.dynamic_range = Some(DynamicRange::DolbyVision);
    }
    if let Some(input) = job.primary_input.and_then(|i| inv.inputs.get(i)) {
        let hint = inv
            .find_in(input, &["codec", "c"])
            .filter_map(|o| inv.value(o))
            .find(|v| facts::is_legacy_sdr_codec(v));
        if let Some(c) = hint {
            argv_f.codec = Some(String::from_utf8_lossy(c).into_owned());
            argv_f.dynamic_range = argv_f.dynamic_range.or(Some(DynamicRange::Sdr));
        }
    }
    let argv_useful = argv_f.dynamic_range.is_some();
    match (&mut f, argv_useful) {
        (Some(ff), true) => {
            ff.dynamic_range = ff.dynamic_range.or(argv_f.dynamic_range);
            ff.codec = argv_f.codec;
        }
        (None, true) => f = Some(argv_f),
        _ => {}
    }
    f
}

/// Inputs measured to mirror ffmpeg's implicit video pick; Plex never passes more than a few,
/// and each costs a probe and a daemon question.
const MAX_IMPLICIT_CANDIDATES: usize = 8;

/// The shim's entry point: never returns when it execs.
pub fn run(argv: Vec<OsString>) -> i32 {
    let started = Instant::now();
    // First, before anything can change them: what Plex handed us is what the real
    // transcoder gets.
    let signals = exec::Signals::record();
    std::panic::set_hook(Box::new(|_| {})); // nothing of ours on stdout/stderr on a panic
    let depth = exec::recursion_depth(std::env::var_os(exec::RECURSION_VAR).as_deref());
    if depth >= exec::MAX_RECURSION {
        exec::say(&exec::recursion_message(depth));
        return exec::EXIT_NOT_EXECUTABLE;
    }
    let mut all = argv.into_iter();
    let argv0 = all
        .next()
        .unwrap_or_else(|| OsString::from("Plex Transcoder"));
    let tokens: Vec<OsString> = all.collect();
    let env = |k: &str| std::env::var(k).ok();
    let loaded = config::load(&config::config_path(&env), &env);
    let cfg = &loaded.config;
    let secret = std::env::var("X_PLEX_TOKEN").ok();

    let real = exec::resolve_real(
        std::env::var_os("DOWNSHIFTARR_REAL_TRANSCODER").as_deref(),
        &cfg.real_transcoder,
    );
    let viewer = Viewer::default();
    let mut outcome = evaluate(
        &tokens,
        cfg,
        Sources {
            given: None,
            daemon: true,
            viewer: &viewer,
        },
        started,
    );

    // Every decision about a video stream is recorded; jobs with no video only on request.
    let video_job = !matches!(
        outcome.job,
        JobKind::Informational | JobKind::Thumbnail | JobKind::AudioOnly | JobKind::Analysis
    );
    if video_job || cfg.log_non_video || !loaded.errors.is_empty() {
        report(
            &mut outcome,
            &tokens,
            &loaded.errors,
            secret.as_deref(),
            cfg,
            started,
        );
    }
    let real = match real {
        Ok(r) => r,
        Err(e) => {
            exec::say(&e);
            return exec::EXIT_NOT_FOUND;
        }
    };
    match outcome.argv {
        Some(args) => {
            let (code, msg) = exec::exec(&real, &argv0, &args, signals.as_ref(), depth);
            exec::say(&msg);
            code
        }
        None => {
            let reason = outcome.decision.reason;
            let msg = outcome.message.as_deref().unwrap_or_default();
            exec::say(&format!(
                "refused ({reason}): {}",
                record::redact(msg, secret.as_deref())
            ));
            exec::EXIT_REFUSED
        }
    }
}

/// Sends the decision record to the daemon, or appends it to the decision log.
fn report(
    out: &mut Outcome,
    tokens: &[OsString],
    config_errors: &[String],
    secret: Option<&str>,
    cfg: &ShimConfig,
    started: Instant,
) {
    let rec = Record {
        time: record::now_rfc3339(),
        pid: std::process::id(),
        session: out.session.clone(),
        job: out.job.as_str(),
        input: out.input.as_deref().map(|i| record::input_text(i, secret)),
        source: out.facts.clone(),
        decision: out.decision.action.name(),
        reason: out.decision.reason,
        shadowed: out.decision.shadowed,
        scenario: match out.decision.action {
            Action::Refuse { scenario } => Some(scenario),
            _ => None,
        },
        no_switch: out.decision.no_switch,
        switched_to: match &out.decision.action {
            Action::Switch(sw) => Some(record::SwitchedTo::of(sw, secret)),
            _ => None,
        },
        viewer: out.viewer.is_known().then(|| out.viewer.clone()),
        changes: record::changes(tokens, &out.edits, secret),
        notes: out.notes.clone(),
        config_errors: config_errors.to_vec(),
        elapsed_us: started.elapsed().as_micros() as u64,
    };
    let Ok(value) = serde_json::to_value(&rec) else {
        return;
    };
    // Reuse the lookup connection when there is one. A daemon that was asked and failed is
    // not asked again this run; otherwise try once, within what is left of the budget. The
    // log file is the fallback.
    let deadline = started + Duration::from_millis(cfg.daemon_budget_ms as u64);
    let mut client = out.daemon.take();
    if client.is_none() && !out.daemon_asked && !cfg.socket.is_empty() && Instant::now() < deadline
    {
        client = Client::connect(Path::new(&cfg.socket), deadline).ok();
    }
    if let Some(c) = client.as_mut() {
        if c.send(&Request::ReportDecision {
            record: value.clone(),
        })
        .is_ok()
        {
            return;
        }
    }
    if let Ok(line) = serde_json::to_vec(&value) {
        record::append(&cfg.decision_log, &line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Thousands of `-i` without `-map` (hostile argv): only a few inputs are measured — each
    /// learned input leaves a note — and an unmeasured local file is judged (fail closed).
    #[test]
    fn an_implicit_pick_among_thousands_of_inputs_measures_only_a_few() {
        let mut t: Vec<OsString> = Vec::new();
        for i in 0..2_000 {
            t.push("-i".into());
            t.push(format!("/nonexistent/m{i}.mkv").into());
        }
        for s in ["-c:v", "libx264", "-f", "mp4", "o.mp4"] {
            t.push(s.into());
        }
        let cfg = ShimConfig {
            socket: String::new(),
            ..ShimConfig::default()
        };
        let viewer = Viewer::default();
        let sources = Sources {
            given: None,
            daemon: false,
            viewer: &viewer,
        };
        let out = evaluate(&t, &cfg, sources, Instant::now());
        assert_eq!(out.job, JobKind::VideoTranscode);
        assert!(
            out.notes.len() <= 40,
            "{} notes: every input was measured",
            out.notes.len()
        );
        assert_eq!(out.input.as_deref(), Some(&b"/nonexistent/m0.mkv"[..]));
    }
}
