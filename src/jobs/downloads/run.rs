//! The downloads job's loop (issue 13): plays in, decisions stored, Radarr acted on.
//!
//! One thread. It takes the work the HTTP listener queued (`ctx.downloads`: Jellyfin and Plex
//! webhook bodies, re-evaluations) and, when Plex is configured and `downloads.plex_plays`,
//! the websocket's playback notifications (attributed by [`plex::Follower`]). For each play:
//!
//! 1. a play that reached the user's `min_watched_percent` is recorded in our watch history
//!    (the same Plex play heard twice is recorded once);
//! 2. it is evaluated ([`engine::evaluate`]: who, counts, facts, verdict) and the decision is
//!    stored with all its reasons and facts, and logged as the original did
//!    (`DOWNLOAD TRIGGERED … Reason: …` / `No download needed …`);
//! 3. a decision to download is queued in SQLite, then acted on at once ([`engine::act`]).
//!
//! When Radarr fails (500, timeout, 401, unreachable) while deciding or acting, nothing is
//! lost and nothing is read as "absent": the decision waits in the durable queue (an
//! undecided one with empty reasons and the error in its facts' notes) and is tried again
//! after `retry_initial_s`, doubling up to an hour; `status` lists what waits. A decided retry
//! is stored as a new decision, the waiting one pointing at it. A search Radarr took is
//! followed (`GET /api/v3/command/{id}`) until it is final or `command_timeout_s` passed.

use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::Result;

use super::engine::{self, unix_ms, Services};
use super::plex::{Ended, Follower, Recent};
use super::status::{DownloadsStatus, Waiting, JOB, MAX_WAITING_SHOWN};
use super::{
    intake, notify, settings, Facts, Ids, Intake, ItemKind, Play, PlaySource, Tier, Verdict,
};
use crate::config::downloads::DownloadsSettings;
use crate::daemon::ctx::Ctx;
use crate::daemon::lifecycle::Shutdown;
use crate::daemon::metrics::{Counter, Gauge, Histogram, Registry};
use crate::jobs::Job;
use crate::plex::events::Event;
use crate::store::downloads::DownloadDecision;
use crate::store::Store;

/// How often the queue is looked at, searches followed and the status published.
const TICK: Duration = Duration::from_secs(1);
/// How often a search in flight is asked about.
const POLL_COMMAND: Duration = Duration::from_secs(2);
/// The longest a retry waits.
const MAX_BACKOFF_S: u64 = 3600;
/// Queued decisions acted on per pass (the rest next pass).
const DUE_BATCH: usize = 32;
/// Queued work taken in one go before the queue, the searches and the status get a look.
const DRAIN_BATCH: usize = 256;
/// The same Plex play heard again within this is one play.
const PLEX_REPEAT: Duration = Duration::from_secs(3 * 3600);

/// The job's metrics (registered once; a restarted job gets the same series).
#[derive(Clone)]
pub struct Metrics {
    plays: Counter,
    decisions: Counter,
    actions: Counter,
    depth: Gauge,
    dispatch: Histogram,
}

impl Metrics {
    pub fn register(r: &Registry) -> Metrics {
        Metrics {
            plays: r.counter(
                "downshiftarr_downloads_plays_total",
                "Plays taken by the downloads job, by source and result (counted, not_counted, repeat, ignored, invalid, unattributed).",
                &["source", "result"],
            ),
            decisions: r.counter(
                "downshiftarr_downloads_decisions_total",
                "Decisions stored, by tier and whether they download (undecided: Radarr did not answer yet).",
                &["tier", "download"],
            ),
            actions: r.counter(
                "downshiftarr_downloads_actions_total",
                "Actions on decisions, by result (searching, searched, already_local, dry_run, no_download, failed, retrying).",
                &["result"],
            ),
            depth: r.gauge(
                "downshiftarr_downloads_queue_depth",
                "Decisions waiting in the durable queue for Radarr.",
                &[],
            ),
            dispatch: r.histogram(
                "downshiftarr_downloads_dispatch_seconds",
                "From a play's arrival to Radarr's search command sent.",
                &[],
                &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0],
            ),
        }
    }
}

/// The daemon's job: on when `downloads.radarr_url` is set.
pub fn job(ctx: &Ctx) -> Result<Option<Job>> {
    if !ctx.config().downloads.enabled() {
        tracing::info!("downloads: off (downloads.radarr_url is not set)");
        return Ok(None);
    }
    // Subscribed once, at build: a restarted job keeps the events that came meanwhile.
    let events = Arc::new(Mutex::new(ctx.events.subscribe()));
    let ctx = ctx.clone();
    Ok(Some(Box::new(move |sd: &Shutdown| {
        let events = events.lock().unwrap_or_else(|e| e.into_inner());
        Runner::new(&ctx)?.run(&events, sd)
    })))
}

fn rfc3339(ms: u64) -> String {
    downshiftarr_shim::record::rfc3339(UNIX_EPOCH + Duration::from_millis(ms))
}

fn now_rfc3339() -> String {
    downshiftarr_shim::record::now_rfc3339()
}

/// `"Dune" (2021)`.
fn title_of(p: &Play) -> String {
    match p.year {
        Some(y) => format!("\"{}\" ({y})", p.title),
        None => format!("\"{}\"", p.title),
    }
}

/// Why a play is being decided.
#[derive(Clone, Copy)]
enum Origin {
    /// A new play.
    New,
    /// A waiting (undecided) decision tried again: it points at the new one once decided.
    Retry(i64),
    /// `POST /api/downloads/reevaluate/<id>`.
    Reevaluate(i64),
}

/// A search sent, followed to its end.
struct InFlight {
    decision_id: i64,
    command_id: i64,
    sent: Instant,
    next_poll: Instant,
}

/// The job's state.
struct Runner<'a> {
    ctx: &'a Ctx,
    store: Store,
    metrics: Metrics,
    /// The services and the settings they were built for.
    services: Option<(DownloadsSettings, Services)>,
    /// Why the services could not be built (shown in status, said once).
    problem: Option<String>,
    follower: Follower,
    recent: Recent,
    seen_generation: u64,
    in_flight: Vec<InFlight>,
    status: DownloadsStatus,
    shown: Option<DownloadsStatus>,
}

impl<'a> Runner<'a> {
    fn new(ctx: &'a Ctx) -> Result<Runner<'a>> {
        Ok(Runner {
            ctx,
            store: Store::open(&ctx.db_path)?,
            metrics: Metrics::register(&ctx.health.metrics),
            services: None,
            problem: None,
            follower: Follower::new(),
            recent: Recent::new(PLEX_REPEAT),
            seen_generation: 0,
            in_flight: Vec::new(),
            status: DownloadsStatus {
                running: true,
                ..DownloadsStatus::default()
            },
            shown: None,
        })
    }

    fn settings(&self) -> DownloadsSettings {
        self.ctx.config().downloads.clone()
    }

    /// Whether Plex plays are followed: `downloads.plex_plays` and a Plex to follow.
    fn plex_on(&self) -> bool {
        let cfg = self.ctx.config();
        cfg.downloads.plex_plays && cfg.plex_access.is_ok()
    }

    fn run(&mut self, events: &Receiver<Event>, sd: &Shutdown) -> Result<()> {
        let s = self.settings();
        tracing::info!(
            "downloads: deciding through Radarr at {}{}",
            s.radarr_url,
            if s.dry_run {
                " (dry run: Radarr is not changed)"
            } else {
                ""
            }
        );
        self.ensure_services(&s);
        let mut next_tick = Instant::now();
        while !sd.is_set() {
            let wait = next_tick
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100));
            if let Some(work) = self.ctx.downloads.recv_timeout(wait) {
                let arrived = Instant::now();
                self.take(work, arrived);
                // What else is queued, at once (a burst is taken in one go), bounded so a
                // flood never starves the retries and the status.
                for _ in 0..DRAIN_BATCH {
                    let Some(more) = self.ctx.downloads.recv_timeout(Duration::ZERO) else {
                        break;
                    };
                    self.take(more, Instant::now());
                }
            }
            let plex = self.plex_on();
            while let Ok(e) = events.try_recv() {
                if plex {
                    self.on_event(&e);
                }
            }
            if Instant::now() >= next_tick {
                next_tick = Instant::now() + TICK;
                if plex {
                    self.plex_tick();
                }
                self.retry_due();
                self.follow_searches();
                self.weekly();
                self.publish();
            }
        }
        self.publish();
        Ok(())
    }

    /// The services for the settings in effect (rebuilt when they changed); `None` with the
    /// problem recorded when they cannot be built.
    fn ensure_services(&mut self, s: &DownloadsSettings) -> bool {
        if self.services.as_ref().is_some_and(|(k, _)| k == s) {
            return true;
        }
        match Services::from_settings(s) {
            Ok(sv) => {
                if self.problem.take().is_some() {
                    tracing::info!("downloads: the Radarr client is usable again");
                }
                self.services = Some((s.clone(), sv));
                true
            }
            Err(e) => {
                let msg = format!("{e:#}");
                if self.problem.as_deref() != Some(msg.as_str()) {
                    tracing::error!("downloads: {msg}");
                }
                self.problem = Some(msg);
                self.services = None;
                false
            }
        }
    }

    /// One piece of queued work.
    fn take(&mut self, work: Intake, arrived: Instant) {
        let now = unix_ms();
        match work {
            Intake::Jellyfin(v) => match intake::from_jellyfin(&v, now) {
                Ok(Some(p)) => self.on_play(p, arrived),
                Ok(None) => self.metrics.plays.inc_with(&["jellyfin", "ignored"]),
                Err(e) => {
                    self.metrics.plays.inc_with(&["jellyfin", "invalid"]);
                    tracing::warn!("downloads: a Jellyfin webhook could not be read: {e}");
                }
            },
            Intake::PlexWebhook(v) => {
                if !self.settings().plex_plays {
                    return;
                }
                match intake::from_plex_webhook(&v, now) {
                    Ok(Some(p)) => self.on_play(p, arrived),
                    Ok(None) => self.metrics.plays.inc_with(&["plex_webhook", "ignored"]),
                    Err(e) => {
                        self.metrics.plays.inc_with(&["plex_webhook", "invalid"]);
                        tracing::warn!("downloads: a Plex webhook could not be read: {e}");
                    }
                }
            }
            Intake::Play(p) => self.on_play(p, arrived),
            Intake::Reevaluate(id) => self.reevaluate(id, arrived),
        }
    }

    /// A play from any source: recorded when it counts, evaluated, decided, acted on.
    fn on_play(&mut self, play: Play, arrived: Instant) {
        let s = self.settings();
        let src = play.source.as_str();
        self.status.plays += 1;
        self.status.last_play = Some(format!(
            "{} {} {} {:.0}% ({src})",
            now_rfc3339(),
            play.user,
            title_of(&play),
            play.percent
        ));
        let t = settings::thresholds(&s, &play.user);
        let full = play.kind != ItemKind::Other && play.percent >= t.min_watched_percent;
        let plex = matches!(
            play.source,
            PlaySource::PlexWebhook | PlaySource::PlexWebsocket
        );
        if full && plex && self.recent.is_repeat(&play.user, &play.item_id, play.at_ms) {
            // The websocket's stop, `media.scrobble` and `media.stop` of one play.
            self.metrics.plays.inc_with(&[src, "repeat"]);
            tracing::debug!(
                "downloads: {} of {} heard again from Plex: one play",
                title_of(&play),
                play.user
            );
            return;
        }
        if full {
            if plex {
                self.recent.remember(&play.user, &play.item_id, play.at_ms);
            }
            match self.store.record_play(&play) {
                Ok(_) => {
                    self.status.plays_counted += 1;
                    self.metrics.plays.inc_with(&[src, "counted"]);
                }
                Err(e) => {
                    let msg = format!(
                        "downloads: could not record a play of {} by {} in {}: {e:#}",
                        title_of(&play),
                        play.user,
                        self.ctx.db_path.display()
                    );
                    tracing::error!("{msg}");
                    self.status.last_error = Some(format!("{} {msg}", now_rfc3339()));
                }
            }
        } else {
            self.metrics.plays.inc_with(&[src, "not_counted"]);
        }
        self.decide(play, arrived, Origin::New);
    }

    /// Evaluates a play and stores the decision; acts on it when it downloads.
    fn decide(&mut self, play: Play, arrived: Instant, origin: Origin) -> Option<i64> {
        let s = self.settings();
        let evaluation = if self.ensure_services(&s) {
            let (_, sv) = self.services.as_ref()?;
            engine::evaluate(sv, &self.store, &s, &play).map_err(|e| e.to_string())
        } else {
            Err(self.problem.clone().unwrap_or_default())
        };
        let now = unix_ms();
        let ev = match evaluation {
            Ok(ev) => ev,
            Err(e) => {
                if let Origin::Retry(old) = origin {
                    // Still undecided: the waiting decision stays, tried again later.
                    self.reschedule(old, &e);
                    return Some(old);
                }
                return self.wait_undecided(play, &e, now);
            }
        };
        let download = ev.verdict.download;
        let d = DownloadDecision {
            id: 0,
            at_ms: now,
            play: play.clone(),
            verdict: ev.verdict.clone(),
            facts: ev.facts.clone(),
            status: if download { "queued" } else { "no_download" }.into(),
            detail: match origin {
                Origin::New => None,
                Origin::Retry(o) => Some(format!("decided when decision {o} was tried again")),
                Origin::Reevaluate(o) => Some(format!("re-evaluation of decision {o}")),
            },
            radarr_id: ev.movie.as_ref().map(|m| m.id),
        };
        let id = match self.store.insert_download_decision(&d) {
            Ok(id) => id,
            Err(e) => {
                let msg = format!(
                    "downloads: could not store the decision on {} by {} in {}: {e:#}",
                    title_of(&play),
                    play.user,
                    self.ctx.db_path.display()
                );
                tracing::error!("{msg}");
                self.status.last_error = Some(format!("{} {msg}", now_rfc3339()));
                return None;
            }
        };
        self.metrics.decisions.inc_with(&[
            ev.verdict.tier.as_str(),
            if download { "yes" } else { "no" },
        ]);
        let line = decision_line(&play, &ev.verdict, &ev.facts);
        tracing::info!("{line}");
        self.status.last_decision = Some(format!("{} {line}", now_rfc3339()));
        if let Origin::Retry(old) = origin {
            let _ = self.store.set_download_status(
                old,
                "decided",
                Some(&format!("decided on a later try: decision {id}")),
                d.radarr_id,
            );
            let _ = self.store.finish_download(old);
        }
        if download {
            if let Err(e) = self.store.enqueue_download(id, now) {
                tracing::error!("downloads: could not queue decision {id}: {e:#}");
            }
            self.act(id, 0, Some(arrived));
        }
        Some(id)
    }

    /// A play Radarr could not be asked about: stored undecided (no reasons yet, the error in
    /// its notes) and queued to be decided later. Never read as "not in Radarr".
    fn wait_undecided(&mut self, play: Play, error: &str, now: u64) -> Option<i64> {
        let d = DownloadDecision {
            id: 0,
            at_ms: now,
            play: play.clone(),
            verdict: Verdict {
                tier: Tier::Never,
                download: false,
                reasons: Vec::new(),
            },
            facts: Facts {
                notes: vec![format!("not decided yet: {error}")],
                ..Facts::default()
            },
            status: "retrying".into(),
            detail: Some(error.to_string()),
            radarr_id: None,
        };
        let s = self.settings();
        let next = now + backoff_ms(&s, 0);
        let stored = self
            .store
            .insert_download_decision(&d)
            .and_then(|id| self.store.enqueue_download(id, next).map(|_| id));
        self.metrics.decisions.inc_with(&["undecided", "no"]);
        self.metrics.actions.inc_with(&["retrying"]);
        match stored {
            Ok(id) => {
                tracing::warn!(
                    "downloads: {} by {}: not decided yet, tried again at {}: {error}",
                    title_of(&play),
                    play.user,
                    rfc3339(next)
                );
                self.status.last_error = Some(format!("{} {error}", now_rfc3339()));
                Some(id)
            }
            Err(e) => {
                let msg = format!(
                    "downloads: could not queue the undecided play of {} by {} in {}: {e:#}",
                    title_of(&play),
                    play.user,
                    self.ctx.db_path.display()
                );
                tracing::error!("{msg}");
                self.status.last_error = Some(format!("{} {msg}", now_rfc3339()));
                None
            }
        }
    }

    /// Acts on a queued decision; on a Radarr failure it stays queued with back-off.
    fn act(&mut self, id: i64, attempts: u32, arrived: Option<Instant>) {
        let s = self.settings();
        if !self.ensure_services(&s) {
            let why = self.problem.clone().unwrap_or_default();
            self.reschedule_after(id, attempts, &why);
            return;
        }
        let Some((_, sv)) = self.services.as_ref() else {
            return;
        };
        match engine::act_detailed(sv, &self.store, &s, id) {
            Ok(a) => {
                self.metrics.actions.inc_with(&[a.status.as_str()]);
                if a.command_id.is_some() {
                    self.status.searches += 1;
                    if let Some(at) = arrived {
                        self.metrics.dispatch.observe(at.elapsed().as_secs_f64());
                    }
                }
                if let Some(c) = a.command_id.filter(|_| a.status == "searching") {
                    self.in_flight.push(InFlight {
                        decision_id: id,
                        command_id: c,
                        sent: Instant::now(),
                        next_poll: Instant::now() + POLL_COMMAND,
                    });
                }
                tracing::info!(
                    "downloads: decision {id}: {}{}",
                    a.status,
                    a.detail
                        .as_ref()
                        .map(|d| format!(" — {d}"))
                        .unwrap_or_default()
                );
                if let Err(e) = self.store.finish_download(id) {
                    tracing::error!("downloads: could not take decision {id} off the queue: {e:#}");
                }
                if a.command_id.is_some() || a.status == "dry_run" {
                    self.notify_triggered(&s, id);
                }
            }
            Err(e) => self.reschedule_after(id, attempts, &e.to_string()),
        }
    }

    /// `downloads.notify`: the "download triggered" message, sent off the loop (a slow
    /// webhook must not hold the decisions behind it); a failure is logged, never retried
    /// into a second message.
    fn notify_triggered(&self, s: &DownloadsSettings, id: i64) {
        if s.notify.url.expose().trim().is_empty() {
            return;
        }
        let d = match self.store.download_decision(id) {
            Ok(Some(d)) => d,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("downloads: decision {id} unreadable for its notification: {e:#}");
                return;
            }
        };
        let s = s.clone();
        let spawned = std::thread::Builder::new()
            .name("downloads-notify".into())
            .spawn(move || {
                if let Err(e) = notify::on_download(&s, &d.play, &d.verdict) {
                    tracing::warn!("downloads: the download notification was not sent: {e}");
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("downloads: no thread for the download notification: {e}");
        }
    }

    /// `downloads.notify.weekly_summary`, checked once a tick (due once a week).
    fn weekly(&mut self) {
        let s = self.settings();
        if !s.notify.weekly_summary {
            return;
        }
        let Some((_, sv)) = self.services.as_ref() else {
            return;
        };
        if let Err(e) = notify::weekly_tick(&self.store, &sv.radarr, &s, unix_ms()) {
            tracing::warn!("downloads: the weekly summary was not sent: {e:#}");
        }
    }

    fn reschedule(&mut self, id: i64, error: &str) {
        let attempts = self
            .store
            .queued_downloads()
            .ok()
            .and_then(|q| q.into_iter().find(|q| q.decision_id == id))
            .map_or(0, |q| q.attempts);
        self.reschedule_after(id, attempts, error);
    }

    fn reschedule_after(&mut self, id: i64, attempts: u32, error: &str) {
        let s = self.settings();
        let next = unix_ms() + backoff_ms(&s, attempts + 1);
        self.metrics.actions.inc_with(&["retrying"]);
        let stored = self
            .store
            .reschedule_download(id, next, error)
            .and_then(|_| {
                self.store
                    .set_download_status(id, "retrying", Some(error), None)
            });
        if let Err(e) = stored {
            tracing::error!("downloads: could not reschedule decision {id}: {e:#}");
        }
        tracing::warn!(
            "downloads: decision {id} waits (attempt {}), tried again at {}: {error}",
            attempts + 1,
            rfc3339(next)
        );
        self.status.last_error = Some(format!("{} {error}", now_rfc3339()));
    }

    /// The queued decisions that are due: undecided ones are evaluated again, decided ones
    /// acted on.
    fn retry_due(&mut self) {
        let due = match self.store.due_downloads(unix_ms(), DUE_BATCH) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("downloads: reading the queue: {e:#}");
                return;
            }
        };
        for q in due {
            let d = match self.store.download_decision(q.decision_id) {
                Ok(Some(d)) => d,
                Ok(None) => {
                    let _ = self.store.finish_download(q.decision_id);
                    continue;
                }
                Err(e) => {
                    tracing::warn!("downloads: reading decision {}: {e:#}", q.decision_id);
                    continue;
                }
            };
            if undecided(&d) {
                self.decide(d.play, Instant::now(), Origin::Retry(q.decision_id));
            } else {
                self.act(q.decision_id, q.attempts, None);
            }
        }
    }

    /// `POST /api/downloads/reevaluate/<id>`: the stored play evaluated again, a new decision.
    fn reevaluate(&mut self, id: i64, arrived: Instant) {
        match self.store.download_decision(id) {
            Ok(Some(d)) => {
                tracing::info!("downloads: decision {id} evaluated again on request");
                self.decide(d.play, arrived, Origin::Reevaluate(id));
            }
            Ok(None) => tracing::warn!("downloads: re-evaluate: no decision {id}"),
            Err(e) => tracing::warn!("downloads: re-evaluate: reading decision {id}: {e:#}"),
        }
    }

    /// Searches Radarr took, asked about until final.
    fn follow_searches(&mut self) {
        if self.in_flight.is_empty() {
            return;
        }
        let s = self.settings();
        let timeout = Duration::from_secs(s.command_timeout_s.max(1));
        let now = Instant::now();
        let mut keep = Vec::new();
        for f in std::mem::take(&mut self.in_flight) {
            if now < f.next_poll {
                keep.push(f);
                continue;
            }
            let answer = match self.services.as_ref() {
                Some((_, sv)) => sv.radarr.command(f.command_id).map_err(|e| e.to_string()),
                None => Err("the Radarr client is unusable".into()),
            };
            let (status, detail) = match answer {
                Ok(c) if c.is_final() => (
                    if c.succeeded() { "searched" } else { "failed" },
                    format!("MoviesSearch command {} ended: {}", c.id, c.status),
                ),
                Ok(c) if now.saturating_duration_since(f.sent) >= timeout => (
                    "searched",
                    format!(
                        "MoviesSearch command {} still {} after {}s: not followed further",
                        c.id,
                        c.status,
                        timeout.as_secs()
                    ),
                ),
                Err(e) if now.saturating_duration_since(f.sent) >= timeout => (
                    "searched",
                    format!(
                        "MoviesSearch command {} sent; its end is unknown ({e})",
                        f.command_id
                    ),
                ),
                _ => {
                    keep.push(InFlight {
                        next_poll: now + POLL_COMMAND,
                        ..f
                    });
                    continue;
                }
            };
            tracing::info!("downloads: decision {}: {status} — {detail}", f.decision_id);
            if let Err(e) =
                self.store
                    .set_download_status(f.decision_id, status, Some(&detail), None)
            {
                tracing::warn!("downloads: storing the end of a search: {e:#}");
            }
        }
        self.in_flight = keep;
    }

    // ---- Plex -------------------------------------------------------------------------

    fn learn_sessions(&mut self) -> crate::plex::sessions::Published {
        let p = self.ctx.sessions.latest();
        if p.generation != self.seen_generation {
            self.seen_generation = p.generation;
            self.follower.learn(&p.list, Instant::now());
        }
        p
    }

    fn on_event(&mut self, e: &Event) {
        if !matches!(e, Event::Playing { .. }) {
            return;
        }
        let p = self.learn_sessions();
        let (ended, ask) = self.follower.on_event(e, &p.list, Instant::now());
        if ask {
            self.ctx.sessions.request_confirmation();
        }
        for x in ended {
            self.on_plex_end(x);
        }
    }

    fn plex_tick(&mut self) {
        let p = self.learn_sessions();
        let cfg = self.ctx.config();
        let stale = Duration::from_secs(3 * cfg.enforce.guard_interval_s.max(1) + 5);
        let listed = crate::jobs::scrobble::viewers::listed(&p, Instant::now(), stale);
        let (ended, dropped) = self.follower.tick(&p.list, listed.as_ref(), Instant::now());
        for d in dropped {
            self.metrics
                .plays
                .inc_with(&["plex_websocket", "unattributed"]);
            tracing::info!(
                "downloads: a Plex play not counted: no listing named the viewer of {d}"
            );
        }
        for x in ended {
            self.on_plex_end(x);
        }
    }

    /// A play that ended on Plex: what was played, from the index (else Plex, else the
    /// listing), then the common path.
    fn on_plex_end(&mut self, x: Ended) {
        let Some(percent) = x.percent else {
            self.metrics.plays.inc_with(&["plex_websocket", "ignored"]);
            return;
        };
        let mut play = Play {
            source: PlaySource::PlexWebsocket,
            at_ms: unix_ms(),
            user: x.user.clone(),
            address: x.address.as_deref().and_then(|a| a.parse().ok()),
            kind: kind_of(&x.kind),
            title: x.title.clone(),
            year: None,
            ids: Ids::default(),
            item_id: x.rating_key.clone(),
            percent,
            genres: Vec::new(),
            client: x.client.clone(),
        };
        match self.store.item_row(&x.rating_key) {
            Ok(Some(row)) => {
                play.kind = kind_of(&row.kind);
                play.title = row.title.clone();
                play.year = row.year.and_then(|y| u32::try_from(y).ok());
                play.ids = Ids {
                    imdb: row.imdb.clone(),
                    tmdb: row.tmdb.as_deref().and_then(|t| t.parse().ok()),
                    tvdb: row.tvdb.as_deref().and_then(|t| t.parse().ok()),
                };
            }
            Ok(None) => self.plex_metadata(&mut play),
            Err(e) => {
                tracing::warn!(
                    "downloads: reading item {} from the index: {e:#}",
                    x.rating_key
                );
                self.plex_metadata(&mut play);
            }
        }
        self.on_play(play, Instant::now());
    }

    /// Fills a play from `/library/metadata/{key}` (an item the index does not hold yet).
    fn plex_metadata(&self, play: &mut Play) {
        let Some(plex) = self.ctx.plex_interactive() else {
            return;
        };
        match plex.metadata(std::slice::from_ref(&play.item_id)) {
            Ok(list) => {
                if let Some(m) = list.first() {
                    let ids = crate::plex::json::Item::from_value(m).external_ids();
                    play.ids = Ids {
                        imdb: ids.imdb,
                        tmdb: ids.tmdb.and_then(|t| t.parse().ok()),
                        tvdb: ids.tvdb.and_then(|t| t.parse().ok()),
                    };
                    if let Some(t) = m["title"].as_str() {
                        play.title = t.to_string();
                    }
                    play.year = m["year"].as_u64().and_then(|y| u32::try_from(y).ok());
                    if let Some(k) = m["type"].as_str() {
                        play.kind = kind_of(k);
                    }
                    if let Some(g) = m["Genre"].as_array() {
                        play.genres = g
                            .iter()
                            .filter_map(|g| g["tag"].as_str().map(String::from))
                            .collect();
                    }
                }
            }
            Err(e) => tracing::warn!(
                "downloads: asking Plex about item {} (not in the index): {e}",
                play.item_id
            ),
        }
    }

    // ---- Status -----------------------------------------------------------------------

    fn publish(&mut self) {
        let s = self.settings();
        let mut st = self.status.clone();
        st.dry_run = s.dry_run;
        st.sources = vec!["jellyfin".to_string()];
        if self.plex_on() {
            st.sources.push("plex".into());
        }
        st.problem = self.problem.clone();
        st.searches_in_flight = self.in_flight.len() as u64;
        match self.store.queued_downloads() {
            Ok(q) => {
                st.queue_depth = q.len() as u64;
                self.metrics.depth.set(q.len() as f64);
                st.waiting = q
                    .iter()
                    .take(MAX_WAITING_SHOWN)
                    .map(|w| Waiting {
                        decision_id: w.decision_id,
                        what: self
                            .store
                            .download_decision(w.decision_id)
                            .ok()
                            .flatten()
                            .map(|d| format!("{} for {}", title_of(&d.play), d.play.user))
                            .unwrap_or_default(),
                        attempts: w.attempts,
                        next_at: rfc3339(w.next_at_ms),
                        last_error: w.last_error.clone(),
                    })
                    .collect();
            }
            Err(e) => tracing::warn!("downloads: reading the queue: {e:#}"),
        }
        if self.shown.as_ref() != Some(&st) {
            if let Ok(v) = serde_json::to_value(&st) {
                self.ctx.health.set_section(JOB, v);
            }
            self.shown = Some(st);
        }
    }
}

/// A decision stored while Radarr could not be asked: no reasons yet.
pub fn undecided(d: &DownloadDecision) -> bool {
    d.verdict.reasons.is_empty()
}

/// The retry delay after `attempts` failures: `retry_initial_s`, doubling, at most an hour.
pub fn backoff_ms(s: &DownloadsSettings, attempts: u32) -> u64 {
    let base = s.retry_initial_s.max(1);
    let factor = 1u64 << attempts.saturating_sub(1).min(20);
    base.saturating_mul(if attempts == 0 { 1 } else { factor })
        .min(MAX_BACKOFF_S)
        * 1000
}

fn kind_of(k: &str) -> ItemKind {
    match k.to_ascii_lowercase().as_str() {
        "movie" => ItemKind::Movie,
        "episode" => ItemKind::Episode,
        _ => ItemKind::Other,
    }
}

/// The decision log line, as the original wrote it.
pub fn decision_line(play: &Play, v: &Verdict, f: &Facts) -> String {
    let reasons = if v.reasons.is_empty() {
        "no rule matched".to_string()
    } else {
        v.reasons.join("; ")
    };
    let notes = if f.notes.is_empty() {
        String::new()
    } else {
        format!(" (notes: {})", f.notes.join("; "))
    };
    if v.download {
        format!(
            "DOWNLOAD TRIGGERED: {} for {} — tier {}. Reason: {reasons}{notes}",
            title_of(play),
            play.user,
            v.tier.as_str()
        )
    } else {
        format!(
            "No download needed: {} for {} — tier {}. Reason: {reasons}{notes}",
            title_of(play),
            play.user,
            v.tier.as_str()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_back_off_doubles_from_the_initial_delay_up_to_an_hour() {
        let s = DownloadsSettings {
            retry_initial_s: 30,
            ..DownloadsSettings::default()
        };
        assert_eq!(backoff_ms(&s, 0), 30_000);
        assert_eq!(backoff_ms(&s, 1), 30_000);
        assert_eq!(backoff_ms(&s, 2), 60_000);
        assert_eq!(backoff_ms(&s, 3), 120_000);
        assert_eq!(backoff_ms(&s, 10), 3_600_000);
        assert_eq!(backoff_ms(&s, u32::MAX), 3_600_000);
    }

    #[test]
    fn the_decision_log_says_it_as_the_original_did() {
        let play = Play {
            source: PlaySource::Jellyfin,
            at_ms: 0,
            user: "alice".into(),
            address: None,
            kind: ItemKind::Movie,
            title: "Dune".into(),
            year: Some(2021),
            ids: Ids::default(),
            item_id: "x".into(),
            percent: 97.0,
            genres: vec![],
            client: None,
        };
        let yes = Verdict {
            tier: Tier::Instant,
            download: true,
            reasons: vec!["IMDb 8.7 ≥ 8.5 (radarr)".into()],
        };
        let l = decision_line(&play, &yes, &Facts::default());
        assert_eq!(
            l,
            "DOWNLOAD TRIGGERED: \"Dune\" (2021) for alice — tier instant. Reason: IMDb 8.7 ≥ 8.5 (radarr)"
        );
        let no = Verdict {
            tier: Tier::Never,
            download: false,
            reasons: vec!["IMDb 6.1 < 7.0".into()],
        };
        let f = Facts {
            notes: vec!["Jellystat unreachable: our own history used".into()],
            ..Facts::default()
        };
        let l = decision_line(&play, &no, &f);
        assert!(l.starts_with("No download needed: \"Dune\" (2021) for alice — tier never. Reason: IMDb 6.1 < 7.0"), "{l}");
        assert!(l.contains("notes: Jellystat unreachable"), "{l}");
    }
}
