//! The throttle loop: who is streaming (the `sessions` job's snapshots) in, qBittorrent's
//! limits out, and the record of every change in the store before it is made.
//!
//! [`Engine`] holds the decision ([`Throttler`]), the qBittorrent client and what we changed
//! ([`ThrottleState`]). Each pass reconciles what the decision wants with what is in force:
//! engage, move (budget), verify (qBittorrent restarted: re-apply; the user changed it by
//! hand: leave it and forget ours), release. A failed qBittorrent call is retried on the next
//! pass; a failed Plex poll is no observation at all (the sessions job publishes nothing).
//! The daemon's job ([`job`]) and `downshiftarr throttle` drive the same engine.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::apply::{retarget, Applier, ApplyError, ThrottleState};
use super::machine::{describe, Action, Phase, Policy, Throttler};
use super::restore::Plan;
use super::streams::{count_streams, CountRules, CountedStream, StreamInput};
use crate::clients::qbittorrent::{QbitError, Qbittorrent};
use crate::config::throttle::{Mode, ThrottleSettings};
use crate::daemon::ctx::Ctx;
use crate::daemon::lifecycle::Shutdown;
use crate::daemon::metrics::{Counter, Gauge, Histogram, Registry};
use crate::jobs::Job;
use crate::plex::sessions::Session;
use crate::store::Store;

/// The job's name: in the job table, the store, `status` and the metrics.
pub const JOB: &str = "throttle";

/// After a failed qBittorrent call, the next try waits at least this long.
const RETRY: Duration = Duration::from_secs(5);

/// Where the record of what we changed is kept (the store; a map in tests). Keyed by the
/// qBittorrent URL, so a record made on one server is never restored onto another.
pub trait Record {
    /// Every record, by URL.
    fn all(&self) -> Result<Vec<ThrottleState>, String>;
    fn save(&self, state: &ThrottleState) -> Result<(), String>;
    fn clear(&self, url: &str) -> Result<(), String>;
    /// A throttle that was in force from `since_s` to `until_s` (unix seconds) ended: the
    /// dashboard charts the hours throttled per day. Never fails the release it follows.
    fn throttled(&self, _since_s: u64, _until_s: u64) {}
}

impl Record for Store {
    fn all(&self) -> Result<Vec<ThrottleState>, String> {
        let keys = self.state_keys(JOB).map_err(|e| format!("{e:#}"))?;
        let mut out = Vec::new();
        for k in keys {
            let raw: Option<serde_json::Value> =
                self.state_get(JOB, &k).map_err(|e| format!("{e:#}"))?;
            if let Some(v) = raw {
                out.push(ThrottleState::from_json(&v.to_string())?);
            }
        }
        Ok(out)
    }

    fn save(&self, state: &ThrottleState) -> Result<(), String> {
        self.state_put(JOB, &state.qbittorrent_url, state)
            .map_err(|e| format!("{e:#}"))
    }

    fn clear(&self, url: &str) -> Result<(), String> {
        self.state_delete(JOB, url)
            .map(drop)
            .map_err(|e| format!("{e:#}"))
    }

    fn throttled(&self, since_s: u64, until_s: u64) {
        if let Err(e) = self.throttled_add(since_s, until_s) {
            tracing::warn!("throttle: the hours throttled were not counted: {e:#}");
        }
    }
}

/// The job's metrics (registered once; a restarted job gets the same series).
#[derive(Clone)]
pub struct Metrics {
    state: Gauge,
    streams: Gauge,
    transitions: Counter,
    reaction: Histogram,
    errors: Counter,
}

impl Metrics {
    pub fn register(r: &Registry) -> Metrics {
        Metrics {
            state: r.gauge(
                "downshiftarr_throttle_state",
                "1 while qBittorrent is throttled for remote streams, else 0.",
                &[],
            ),
            streams: r.gauge(
                "downshiftarr_throttle_remote_streams",
                "Remote streams counted at the last observation.",
                &[],
            ),
            transitions: r.counter(
                "downshiftarr_throttle_transitions_total",
                "Throttle changes carried out, by kind (engage, move, reapply, release, left_to_user).",
                &["kind"],
            ),
            reaction: r.histogram(
                "downshiftarr_throttle_reaction_seconds",
                "From the Plex notification (or poll) that showed a change to qBittorrent's limit changed.",
                &[],
                &[0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 5.0, 15.0, 60.0],
            ),
            errors: r.counter(
                "downshiftarr_throttle_qbittorrent_errors_total",
                "Failed qBittorrent calls, by kind.",
                &["kind"],
            ),
        }
    }
}

/// The `throttle` section of `downshiftarr status` (and `/health`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ThrottleStatus {
    /// `idle` or `streaming`.
    pub state: Phase,
    pub mode: Mode,
    pub qbittorrent_url: String,
    /// The remote streams counted at the last observation, each with why.
    pub remote_streams: Vec<String>,
    /// What we set and what it was (`upload 500 KiB/s (found unlimited)`); `null`: nothing.
    pub in_force: Option<String>,
    /// What goes back on release.
    pub will_restore: Option<String>,
    /// When the throttle began (RFC 3339).
    pub since: Option<String>,
    /// The last transition, with its reason.
    pub last_transition: Option<String>,
    /// The user changed what we set: left to them until the streams end.
    pub left_to_user: Option<String>,
    /// What is wrong now (qBittorrent unreachable, login refused and backing off…).
    pub problem: Option<String>,
    /// qBittorrent login attempts since start (a wrong password must stay low).
    pub login_attempts: u64,
}

/// What one pass did, for the CLI's `--once` and for tests.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Nothing,
    Engaged(ThrottleState),
    Moved(ThrottleState),
    Reapplied(Vec<String>),
    Released {
        plan: Plan,
    },
    LeftToUser(Vec<String>),
    /// `--dry-run`: what would be set.
    WouldEngage(ThrottleState),
    WouldRelease(ThrottleState),
}

/// The throttle's state and its client.
pub struct Engine {
    settings: ThrottleSettings,
    rules: CountRules,
    throttler: Throttler,
    client: Qbittorrent,
    /// What we changed, as stored.
    current: Option<ThrottleState>,
    /// The user changed our setting by hand; nothing is touched until the streams end.
    left_to_user: Option<String>,
    dry_run: bool,
    /// The reason of the last decision (for the engage/move log line).
    reason: String,
    last_streams: Vec<CountedStream>,
    last_transition: Option<String>,
    problem: Option<String>,
    /// `error_kind` of `problem`.
    problem_kind: Option<&'static str>,
    next_try: Option<Instant>,
    next_verify: Option<Instant>,
    /// A record on another qBittorrent is still owed: when to try it again.
    elsewhere_retry: Option<Instant>,
    /// Records on another qBittorrent that refused us: left for `--restore`, never retried.
    elsewhere_given_up: Vec<String>,
    /// When the streak that led to the pending change began (its first notification).
    cause: Option<Instant>,
    metrics: Option<Metrics>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn rfc3339(unix_s: u64) -> String {
    downshiftarr_shim::record::rfc3339(UNIX_EPOCH + Duration::from_secs(unix_s))
}

/// One session as the throttle counts it.
pub fn input(s: &Session) -> StreamInput {
    let kbps = |v: Option<i64>| v.and_then(|b| u64::try_from(b).ok());
    StreamInput {
        user: s.viewer.user.clone().unwrap_or_default(),
        player: s.viewer.device.clone().unwrap_or_default(),
        product: s.viewer.client.clone().unwrap_or_default(),
        address: s.address.clone(),
        location: s.location.clone(),
        local: s.viewer.local,
        state: s.state.clone(),
        bandwidth_kbps: kbps(s.bandwidth_kbps),
        media_bitrate_kbps: kbps(s.bitrate_kbps),
    }
}

impl Engine {
    /// A client for `settings` (validated); `Err` names what cannot be used.
    pub fn new(settings: ThrottleSettings, dry_run: bool) -> Result<Engine, String> {
        let opts = settings.qbit_options()?;
        let client = Qbittorrent::new(opts).map_err(|e| e.to_string())?;
        Ok(Engine {
            rules: CountRules::from_settings(&settings),
            throttler: Throttler::new(Policy::from_settings(&settings)),
            settings,
            client,
            current: None,
            left_to_user: None,
            dry_run,
            reason: String::new(),
            last_streams: Vec::new(),
            last_transition: None,
            problem: None,
            problem_kind: None,
            next_try: None,
            next_verify: None,
            elsewhere_retry: None,
            elsewhere_given_up: Vec::new(),
            cause: None,
            metrics: None,
        })
    }

    pub fn with_metrics(mut self, m: Metrics) -> Engine {
        self.metrics = Some(m);
        self
    }

    /// Decides on one observation, as if every threshold were met (`--once`: one look, one
    /// decision).
    pub fn decide_now(mut self) -> Engine {
        let mut s = self.settings.clone();
        s.streaming_threshold = 1;
        s.idle_threshold = 1;
        s.restore_delay_s = 0;
        self.throttler = Throttler::new(Policy::from_settings(&s));
        self
    }

    pub fn settings(&self) -> &ThrottleSettings {
        &self.settings
    }

    /// Picks up a record left by an earlier run: one made on this qBittorrent resumes (the
    /// streams playing now keep it, their absence releases it); one made on another URL is
    /// given back there if that server answers, else kept and said.
    pub fn resume(&mut self, record: &dyn Record, now: Instant) -> Result<(), String> {
        for state in record.all()? {
            if state.qbittorrent_url == self.client.url() {
                tracing::info!(
                    "throttle left in force by an earlier run: {}; it is released when no remote stream is left",
                    state.describe()
                );
                self.throttler =
                    Throttler::resume(self.throttler.policy().clone(), state.target, now);
                self.reason = state.reason.clone();
                self.current = Some(state);
                self.next_verify = Some(now);
            } else {
                self.restore_elsewhere(record, &state);
            }
        }
        Ok(())
    }

    /// Gives back a record made on another qBittorrent; when that server does not answer the
    /// record stays and is tried again every [`RETRY`] (`retry_elsewhere`), warned once. A
    /// refused login is never retried: that server may not take these credentials, and
    /// five refusals would ban the owner there.
    fn restore_elsewhere(&mut self, record: &dyn Record, state: &ThrottleState) {
        let mut other = self.settings.clone();
        other.qbittorrent_url = state.qbittorrent_url.clone();
        // (why, worth retrying)
        let restored = other
            .qbit_options()
            .map_err(|e| (e, false))
            .and_then(|o| Qbittorrent::new(o).map_err(|e| (e.to_string(), false)))
            .and_then(|mut c| {
                Applier::new(&mut c)
                    .release(state, self.settings.idle_upload())
                    .map_err(|e| {
                        let again =
                            matches!(e, QbitError::Unreachable { .. } | QbitError::Status { .. });
                        (e.to_string(), again)
                    })
            });
        match restored {
            Ok(plan) => {
                let line = log_release(&plan, &state.qbittorrent_url, "qbittorrent_url changed");
                tracing::info!("throttle: {line}");
                if let Err(e) = record.clear(&state.qbittorrent_url) {
                    tracing::warn!("throttle: {e}");
                }
            }
            Err((e, false)) => {
                tracing::warn!(
                    "throttle: a throttle recorded on {} (before throttle.qbittorrent_url changed) could not be given back: {e}; it stays recorded, run `downshiftarr throttle --restore` with that server's url and credentials",
                    state.qbittorrent_url
                );
                self.elsewhere_given_up.push(state.qbittorrent_url.clone());
            }
            Err((e, true)) => {
                if self.elsewhere_retry.is_none() {
                    tracing::warn!(
                        "throttle: a throttle recorded on {} (before throttle.qbittorrent_url changed) could not be given back: {e}; it stays recorded and is tried again every {}s (or run `downshiftarr throttle --restore` once that server answers)",
                        state.qbittorrent_url,
                        RETRY.as_secs()
                    );
                }
                self.elsewhere_retry = Some(Instant::now() + RETRY);
            }
        }
    }

    /// Tries again to give back what is recorded on another qBittorrent, when one is due.
    pub fn retry_elsewhere(&mut self, record: &dyn Record, now: Instant) {
        if self.elsewhere_retry.is_none_or(|t| now < t) {
            return;
        }
        let Ok(all) = record.all() else {
            self.elsewhere_retry = Some(now + RETRY);
            return;
        };
        let pending: Vec<ThrottleState> = all
            .into_iter()
            .filter(|s| {
                s.qbittorrent_url != self.client.url()
                    && !self.elsewhere_given_up.contains(&s.qbittorrent_url)
            })
            .collect();
        for state in pending {
            self.restore_elsewhere(record, &state);
        }
        if self.elsewhere_retry.is_some_and(|t| t <= now) {
            // Every one was given back.
            self.elsewhere_retry = None;
        }
    }

    /// One successful listing of Plex's sessions at `now`; `cause` is when the notification
    /// that asked for it arrived. Returns whether the decision would like a confirmation soon
    /// (a stream seen, the threshold not met yet).
    pub fn observe(&mut self, now: Instant, sessions: &[Session], cause: Option<Instant>) -> bool {
        let inputs: Vec<StreamInput> = sessions.iter().map(input).collect();
        let streams = count_streams(&inputs, &self.rules);
        if let Some(m) = &self.metrics {
            m.streams.set(streams.len() as f64);
        }
        let was = self.throttler.phase();
        let action = self.throttler.observe(now, &streams);
        let changed_side = (was == Phase::Idle) != streams.is_empty();
        if changed_side {
            self.cause.get_or_insert(cause.unwrap_or(now));
        } else if action.is_none() {
            self.cause = None;
        }
        match &action {
            Some(Action::Apply { reason, .. }) | Some(Action::Release { reason }) => {
                self.reason = reason.clone()
            }
            None if !streams.is_empty() => self.reason = describe(&streams),
            None => {}
        }
        self.last_streams = streams;
        if action.is_some() {
            // A new decision is tried at once, whatever the pacing of the last failure.
            self.next_try = None;
        }
        // A stream seen while idle: confirm it soon instead of at the next backstop poll.
        self.throttler.phase() == Phase::Idle && !self.last_streams.is_empty()
    }

    /// Brings qBittorrent to what the decision wants, if it is time to try.
    pub fn reconcile(&mut self, record: &dyn Record, now: Instant) -> Outcome {
        if self.next_try.is_some_and(|t| now < t) {
            return Outcome::Nothing;
        }
        let outcome = self.step(record, now);
        // The gauge follows what is in force after the pass (set here, not in `transition`:
        // an engage logs its transition before it records the state, and a throttle resumed
        // from the store makes no transition at all).
        self.show_state();
        match outcome {
            Ok(o) => {
                if self.problem.take().is_some() {
                    tracing::info!("throttle: qbittorrent answers again");
                }
                self.problem_kind = None;
                self.next_try = None;
                o
            }
            Err(e) => {
                let msg = e.to_string();
                let kind = error_kind(&e);
                if let Some(m) = &self.metrics {
                    m.errors.inc_with(&[kind]);
                }
                // A back-off's message counts down ("next attempt in 55s"): warned once per
                // back-off, not on every retry.
                let repeat = kind == "backing_off" && self.problem_kind == Some(kind);
                if self.problem.as_ref() != Some(&msg) && !repeat {
                    tracing::warn!("throttle: {msg}");
                }
                self.problem_kind = Some(kind);
                self.problem = Some(msg);
                self.next_try = Some(now + RETRY);
                Outcome::Nothing
            }
        }
    }

    fn step(&mut self, record: &dyn Record, now: Instant) -> Result<Outcome, ApplyError> {
        let want = if self.throttler.phase() == Phase::Streaming {
            self.throttler.applied()
        } else {
            None
        };
        if want.is_none() {
            self.left_to_user = None;
        }
        let reason = self.reason.clone();
        match (want, self.current.clone()) {
            (Some(target), None) if self.left_to_user.is_none() => {
                let mut applier = Applier::new(&mut self.client);
                if self.dry_run {
                    // Remembered, not stored: the next passes see it "in force".
                    let s = applier.prepare(target, &reason, unix_now())?;
                    self.transition(
                        "engage",
                        format!("dry run: would throttle: {}; {reason}", s.describe()),
                    );
                    self.current = Some(s.clone());
                    return Ok(Outcome::WouldEngage(s));
                }
                let s = applier.engage(target, &reason, unix_now(), |s| record.save(s))?;
                self.transition("engage", format!("throttled: {}; {reason}", s.describe()));
                self.current = Some(s.clone());
                self.next_verify = Some(now + self.verify_every());
                Ok(Outcome::Engaged(s))
            }
            (Some(target), Some(s)) if s.target != target => {
                let moved = retarget(&s, target, &reason);
                if self.dry_run {
                    self.transition(
                        "move",
                        format!(
                            "dry run: would move the throttle: {}; {reason}",
                            moved.describe()
                        ),
                    );
                    self.current = Some(moved.clone());
                    return Ok(Outcome::WouldEngage(moved));
                }
                record.save(&moved).map_err(ApplyError::Persist)?;
                self.current = Some(moved.clone());
                Applier::new(&mut self.client).apply(&moved)?;
                self.transition(
                    "move",
                    format!("throttle moved: {}; {reason}", moved.describe()),
                );
                Ok(Outcome::Moved(moved))
            }
            (Some(_), Some(s)) => {
                if self.dry_run || self.next_verify.is_some_and(|t| now < t) {
                    return Ok(Outcome::Nothing);
                }
                self.next_verify = Some(now + self.verify_every());
                let plan = Applier::new(&mut self.client).verify(&s)?;
                if !plan.user_changed.is_empty() {
                    self.forget(record, &s)?;
                    let what = plan.user_changed.join(", ");
                    self.left_to_user = Some(what.clone());
                    self.transition(
                        "left_to_user",
                        format!("changed by hand while throttled ({what}): left as the user set it, and not restored"),
                    );
                    return Ok(Outcome::LeftToUser(plan.user_changed));
                }
                if plan.writes.is_empty() {
                    return Ok(Outcome::Nothing);
                }
                let writes: Vec<String> = plan.writes.iter().map(|w| w.to_string()).collect();
                self.transition(
                    "reapply",
                    format!(
                        "qbittorrent dropped our limits (it restarted?): re-applied {}",
                        writes.join(", ")
                    ),
                );
                Ok(Outcome::Reapplied(writes))
            }
            (None, Some(s)) => {
                if self.dry_run {
                    self.current = None;
                    let back = self.restores(&s);
                    self.transition(
                        "release",
                        format!("dry run: would give back {back}; {reason}"),
                    );
                    return Ok(Outcome::WouldRelease(s));
                }
                let plan =
                    Applier::new(&mut self.client).release(&s, self.settings.idle_upload())?;
                self.forget(record, &s)?;
                let line = log_release(&plan, &s.qbittorrent_url, &reason);
                self.transition("release", line);
                Ok(Outcome::Released { plan })
            }
            _ => Ok(Outcome::Nothing),
        }
    }

    fn show_state(&self) {
        if let Some(m) = &self.metrics {
            m.state.set(f64::from(u8::from(self.current.is_some())));
        }
    }

    fn forget(&mut self, record: &dyn Record, s: &ThrottleState) -> Result<(), ApplyError> {
        self.current = None;
        record.throttled(s.since_unix_s, unix_now());
        record
            .clear(&s.qbittorrent_url)
            .map_err(ApplyError::Persist)
    }

    fn verify_every(&self) -> Duration {
        Duration::from_secs(self.settings.poll_interval_s.max(1))
    }

    fn transition(&mut self, kind: &str, line: String) {
        tracing::info!("throttle: {line}");
        if let Some(m) = &self.metrics {
            m.transitions.inc_with(&[kind]);
            // Engaging is what a viewer waits for; a release waits for the restore delay
            // on purpose.
            if let Some(c) = self.cause.take() {
                if kind == "engage" {
                    m.reaction.observe(c.elapsed().as_secs_f64());
                }
            }
        }
        self.last_transition = Some(format!(
            "{} {line}",
            downshiftarr_shim::record::now_rfc3339()
        ));
    }

    /// Gives back whatever we changed, now (shutdown, `--restore`). The record is cleared
    /// only when qBittorrent took it back (or the user's own choice stands).
    pub fn restore(&mut self, record: &dyn Record, why: &str) -> Result<Option<Plan>, String> {
        let Some(s) = self.current.clone() else {
            return Ok(None);
        };
        if self.dry_run {
            self.current = None;
            return Ok(None);
        }
        // Within a shutdown's grace: one attempt per request, not the reads' retries.
        self.client.set_retry_reads(false);
        let released = Applier::new(&mut self.client).release(&s, self.settings.idle_upload());
        self.client.set_retry_reads(true);
        let plan = released.map_err(|e| e.to_string())?;
        self.current = None;
        self.show_state();
        record.throttled(s.since_unix_s, unix_now());
        record.clear(&s.qbittorrent_url)?;
        let line = log_release(&plan, &s.qbittorrent_url, why);
        self.transition("release", line);
        Ok(Some(plan))
    }

    /// Gives qBittorrent its limits back now, on the owner's request (`POST
    /// /api/throttle/restore`), and says what was done. While remote streams still play the
    /// throttle is not engaged again until they end (as after a change by hand).
    pub fn restore_now(&mut self, record: &dyn Record, why: &str) -> Result<String, String> {
        let url = self.client.url().to_string();
        let Some(plan) = self.restore(record, why)? else {
            return Ok(format!(
                "nothing to restore: downshiftarr has not throttled qBittorrent at {url}"
            ));
        };
        let mut msg = if !plan.user_changed.is_empty() {
            format!(
                "left as the user set it (changed by hand): {}",
                plan.user_changed.join(", ")
            )
        } else if plan.writes.is_empty() {
            "qBittorrent already had its own limits back; the record is cleared".to_string()
        } else {
            let w: Vec<String> = plan.writes.iter().map(|w| w.to_string()).collect();
            format!("restored on {url}: {}", w.join(", "))
        };
        if self.throttler.phase() == Phase::Streaming {
            self.left_to_user = Some(format!("restored on request ({why})"));
            msg.push_str("; not throttled again until the remote streams end");
        }
        Ok(msg)
    }

    /// What a restart of the settings keeps: the decision's phase and our record. The client
    /// is new when the URL or the credentials changed (a changed URL is released first).
    pub fn reconfigure(
        &mut self,
        settings: ThrottleSettings,
        record: &dyn Record,
        now: Instant,
    ) -> Result<(), String> {
        if settings == self.settings {
            return Ok(());
        }
        let url_changed = settings.qbittorrent_url.trim() != self.settings.qbittorrent_url.trim();
        if url_changed {
            if let Some(old) = self.current.clone() {
                // The old server not answering must not hold the new settings back (and
                // retry on every pass): its record stays, given back by `retry_elsewhere`.
                if let Err(e) = self.restore(record, "throttle.qbittorrent_url changed") {
                    tracing::warn!(
                        "throttle: could not give back what we set on {} before moving to {}: {e}; it stays recorded and is tried again every {}s (or run `downshiftarr throttle --restore` once that server answers)",
                        old.qbittorrent_url,
                        settings.qbittorrent_url.trim(),
                        RETRY.as_secs()
                    );
                    self.current = None;
                    self.elsewhere_retry = Some(now + RETRY);
                }
            }
        }
        let fresh = Engine::new(settings, self.dry_run)?;
        let policy = fresh.throttler.policy().clone();
        self.throttler = match (self.throttler.phase(), self.throttler.applied()) {
            (Phase::Streaming, Some(t)) if !url_changed => Throttler::resume(policy, t, now),
            _ => Throttler::new(policy),
        };
        self.rules = fresh.rules;
        // A reload that leaves the login as it was keeps the client: a new one would forget
        // a login back-off, and each reload would then cost a refused login (five = a ban).
        if !same_login(&self.settings, &fresh.settings) {
            self.client = fresh.client;
        }
        self.settings = fresh.settings;
        self.next_try = None;
        tracing::info!("throttle: settings reloaded");
        Ok(())
    }

    pub fn phase(&self) -> Phase {
        self.throttler.phase()
    }

    pub fn current(&self) -> Option<&ThrottleState> {
        self.current.as_ref()
    }

    pub fn status(&self) -> ThrottleStatus {
        let problem = self.client.auth_problem().or_else(|| self.problem.clone());
        ThrottleStatus {
            state: self.throttler.phase(),
            mode: self.settings.mode,
            qbittorrent_url: self.client.url().to_string(),
            remote_streams: self.last_streams.iter().map(|s| s.reason.clone()).collect(),
            in_force: self.current.as_ref().map(ThrottleState::describe),
            will_restore: self.current.as_ref().map(|s| self.restores(s)),
            since: self.current.as_ref().map(|s| rfc3339(s.since_unix_s)),
            last_transition: self.last_transition.clone(),
            left_to_user: self.left_to_user.clone(),
            problem,
            login_attempts: self.client.login_attempts(),
        }
    }

    /// "upload unlimited" — what the release writes back.
    fn restores(&self, s: &ThrottleState) -> String {
        let mut parts = Vec::new();
        if s.set.upload.is_some() {
            let back = self.settings.idle_upload().unwrap_or(s.found.upload);
            parts.push(format!("upload {back}"));
        }
        if s.set.download.is_some() {
            parts.push(format!("download {}", s.found.download));
        }
        if s.set.alt_mode.is_some() {
            parts.push(format!(
                "alternative speed mode {}",
                if s.found.alt_mode { "on" } else { "off" }
            ));
        }
        if parts.is_empty() {
            return "nothing".into();
        }
        parts.join(", ")
    }
}

/// Whether two settings reach the same qBittorrent with the same credentials.
fn same_login(a: &ThrottleSettings, b: &ThrottleSettings) -> bool {
    a.qbittorrent_url.trim() == b.qbittorrent_url.trim()
        && a.username == b.username
        && a.password == b.password
        && a.password_file == b.password_file
        && a.api_key == b.api_key
        && a.request_timeout_ms == b.request_timeout_ms
}

fn log_release(plan: &Plan, url: &str, why: &str) -> String {
    if !plan.user_changed.is_empty() {
        return format!(
            "released on {url} ({why}); changed by hand meanwhile, left as the user set it: {}",
            plan.user_changed.join(", ")
        );
    }
    if plan.writes.is_empty() {
        return format!("released on {url} ({why}); qbittorrent already had its own limits back");
    }
    let writes: Vec<String> = plan.writes.iter().map(|w| w.to_string()).collect();
    format!("released on {url} ({why}): {}", writes.join(", "))
}

fn error_kind(e: &ApplyError) -> &'static str {
    match e {
        ApplyError::Persist(_) => "store",
        ApplyError::Qbittorrent(q) => match q {
            QbitError::BadUrl { .. } => "bad_url",
            QbitError::Unreachable { .. } => "unreachable",
            QbitError::LoginRefused { .. } => "login_refused",
            QbitError::Banned { .. } => "banned",
            QbitError::BackingOff { .. } => "backing_off",
            QbitError::NoCredentials { .. } => "no_credentials",
            QbitError::Forbidden { .. } => "forbidden",
            QbitError::Status { .. } => "status",
            QbitError::BadAnswer { .. } => "bad_answer",
        },
    }
}

/// The daemon's job: on when `throttle.qbittorrent_url` is set.
pub fn job(ctx: &Ctx) -> Result<Option<Job>> {
    let cfg = ctx.config();
    if !cfg.throttle.enabled() {
        return Ok(None);
    }
    if ctx.config().plex_access.is_err() {
        tracing::warn!(
            "throttle: Plex is not configured, so no stream can be seen; the throttle job is off"
        );
        return Ok(None);
    }
    let ctx = ctx.clone();
    Ok(Some(Box::new(move |sd: &Shutdown| run(&ctx, sd, false))))
}

/// The loop, until `sd` is set; then whatever we changed is given back. `dry_run`: decide and
/// log, change nothing (`downshiftarr throttle --dry-run`).
pub fn run(ctx: &Ctx, sd: &Shutdown, dry_run: bool) -> Result<()> {
    let metrics = Metrics::register(&ctx.health.metrics);
    let store = Store::open(&ctx.db_path)?;
    let settings = ctx.config().throttle.clone();
    let mut engine = Engine::new(settings, dry_run)
        .map_err(anyhow::Error::msg)?
        .with_metrics(metrics.clone());
    engine
        .resume(&store, Instant::now())
        .map_err(anyhow::Error::msg)?;
    tracing::info!(
        qbittorrent = engine.settings().qbittorrent_url.as_str(),
        mode = ?engine.settings().mode,
        "throttle: watching for remote streams"
    );
    let publish = |e: &Engine| {
        if let Ok(v) = serde_json::to_value(e.status()) {
            ctx.health.set_section(JOB, v);
        }
    };
    let mut seen = ctx.sessions.latest().generation;
    let mut loaded = ctx.config();
    let mut shown = engine.status();
    publish(&engine);
    while !sd.is_set() {
        // Woken by each snapshot; else once a second for retries, re-checks and shutdown.
        let latest = ctx.sessions.wait_newer(seen, Duration::from_secs(1));
        let now = Instant::now();
        let live = ctx.config();
        let reloaded = !Arc::ptr_eq(&live, &loaded);
        loaded = live.clone();
        if !live.throttle.enabled() {
            // Turned off by a reload: give back what we changed, then wait to be turned on.
            if engine.current().is_some() {
                if let Err(e) = engine.restore(&store, "the throttle section was turned off") {
                    tracing::warn!("throttle: {e}");
                }
            }
            continue;
        }
        if reloaded {
            if let Err(e) = engine.reconfigure(live.throttle.clone(), &store, now) {
                tracing::warn!("throttle: {e}");
            }
        }
        if let Some(p) = latest {
            seen = p.generation;
            if engine.observe(now, &p.list, p.cause) {
                ctx.sessions.request_confirmation();
            }
        }
        while let Some(reply) = ctx.dashboard.throttle_restore.recv_timeout(Duration::ZERO) {
            let answer = engine.restore_now(&store, "restored through the ops API");
            // The asker may have given up waiting: nothing to do then.
            let _ = reply.try_send(answer);
        }
        engine.reconcile(&store, now);
        engine.retry_elsewhere(&store, now);
        let status = engine.status();
        if status != shown {
            publish(&engine);
            shown = status;
        }
    }
    match engine.restore(&store, "the daemon is stopping") {
        Ok(_) => {}
        Err(e) => tracing::error!(
            "throttle: could not give the bandwidth back while stopping: {e}; it stays recorded and is restored at the next start (or run `downshiftarr throttle --restore`)"
        ),
    }
    publish(&engine);
    Ok(())
}
