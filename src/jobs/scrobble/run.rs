//! The scrobble job's loop (issue 12): Plex playback in, Trakt calls out, the outbox between.
//!
//! Two threads, so a slow Trakt never delays following a play:
//! - the **follower** (the job's own thread) takes websocket notifications (the event bus)
//!   and webhooks (`ctx.webhooks`), names the viewer from the sessions job's snapshots
//!   ([`viewers`]; an unlisted session is held ~2 s while the sessions job is asked to poll,
//!   then dropped with a log line — never given to someone else), fills the item's facts
//!   from the index (else one `/library/metadata` call, else the session), applies the
//!   [`filter`]s, runs the [`machine`] and writes its calls to the [`outbox`] — the durable
//!   write — then wakes the deliverer. Once a second it ticks the machine with the session
//!   keys Plex lists (none when the last listing is stale: a failed poll is no observation),
//!   which is where forced stops come from, and publishes the `scrobble` status section;
//! - the **deliverer** runs [`deliver::Deliverer::pass`] at once when woken, else when the
//!   next entry is due, until the daemon stops. What is left in the outbox is sent at the next
//!   start.
//!
//! `POST /api/scrobble/stop` (`ctx.scrobble_paused`): plays are still followed (their state
//! kept), nothing new enters the outbox, what is queued is still delivered. SIGHUP: the rules
//! and filters are read from the configuration in effect at each event; a changed Trakt
//! client id, secret or URL gets a new client.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use serde_json::Value;

use super::deliver::{Deliverer, DeliveryStats};
use super::ids::IndexResolver;
use super::machine::Machines;
use super::status::{ScrobbleStatus, JOB};
use super::viewers::{self, Once, Viewers};
use super::{event, filter, outbox, tokens, Call, ItemFacts, PlaybackEvent, Source};
use crate::clients::trakt::{Trakt, TraktOptions};
use crate::daemon::ctx::Ctx;
use crate::daemon::lifecycle::Shutdown;
use crate::daemon::metrics::{Counter, Gauge, Histogram, Registry};
use crate::jobs::Job;
use crate::plex::events::Event;
use crate::store::Store;

/// How long a websocket event of a session no snapshot lists yet waits for the next one.
const HOLD: Duration = Duration::from_secs(2);
/// How often the machine ticks, the status is published and the outbox gauges are read.
const TICK: Duration = Duration::from_secs(1);
/// How often the linked users are read again from the store.
const LINKED_EVERY: Duration = Duration::from_secs(5);
/// Sessions remembered after their last listing (a long pause, then `stopped`).
const VIEWER_TTL: Duration = Duration::from_secs(12 * 3600);
const VIEWER_CAP: usize = 4096;
/// Item facts fetched from Plex, remembered per rating key.
const FACTS_CAP: usize = 2048;
/// After a failed delivery pass (the store), the next one waits this long.
const PASS_RETRY: Duration = Duration::from_secs(5);
/// The longest the deliverer sleeps without looking at the outbox (entries written by an
/// earlier run, a clock that jumped).
const DELIVER_IDLE: Duration = Duration::from_secs(30);

/// The job's metrics (registered once; a restarted job gets the same series).
#[derive(Clone)]
pub struct Metrics {
    events: Counter,
    calls: Counter,
    depth: Gauge,
    oldest: Gauge,
    dispatch: Histogram,
}

impl Metrics {
    pub fn register(r: &Registry) -> Metrics {
        Metrics {
            events: r.counter(
                "downshiftarr_scrobble_events_total",
                "Playback events, by source (websocket, webhook, daemon) and result (in, filtered, suppressed, unattributed, invalid, paused).",
                &["source", "result"],
            ),
            calls: r.counter(
                "downshiftarr_scrobble_calls_total",
                "Trakt scrobble calls answered, by action (start, pause, stop) and result.",
                &["action", "result"],
            ),
            depth: r.gauge(
                "downshiftarr_scrobble_outbox_depth",
                "Scrobble calls written and not yet delivered.",
                &[],
            ),
            oldest: r.gauge(
                "downshiftarr_scrobble_outbox_oldest_seconds",
                "Age of the oldest undelivered scrobble call (0 when none).",
                &[],
            ),
            dispatch: r.histogram(
                "downshiftarr_scrobble_dispatch_seconds",
                "From a playback event's arrival to its first Trakt call being sent.",
                &[],
                &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0],
            ),
        }
    }
}

/// What the two threads share.
struct Shared {
    /// Set by the follower after a push; the deliverer takes it.
    wake: Mutex<bool>,
    cv: Condvar,
    stop: AtomicBool,
    /// The deliverer's view, for the status section: (last delivery, last error, problem).
    delivery: Mutex<DeliveryView>,
    /// Outbox id → when the event that made it arrived (dispatch latency), bounded.
    arrivals: Mutex<HashMap<i64, Instant>>,
}

#[derive(Clone, Default)]
struct DeliveryView {
    last_delivery: Option<String>,
    last_error: Option<String>,
    problem: Option<String>,
}

impl Shared {
    fn wake(&self) {
        *self.wake.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cv.notify_all();
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn view(&self) -> std::sync::MutexGuard<'_, DeliveryView> {
        self.delivery.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One input of the follower, with when it arrived.
enum Input {
    Websocket(Event, Instant),
    Webhook(Value, Instant),
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn now_rfc3339() -> String {
    downshiftarr_shim::record::now_rfc3339()
}

/// The daemon's job: on when `scrobble.client_id` is set.
pub fn job(ctx: &Ctx) -> Result<Option<Job>> {
    if !ctx.config().scrobble.enabled() {
        tracing::info!("scrobble: off (scrobble.client_id is not set)");
        return Ok(None);
    }
    // Subscribed once, at build: a restarted job keeps the events that came meanwhile.
    let events = Arc::new(Mutex::new(ctx.events.subscribe()));
    let ctx = ctx.clone();
    Ok(Some(Box::new(move |sd: &Shutdown| run(&ctx, &events, sd))))
}

/// The follower's loop until `sd` is set; the deliverer and the input threads are stopped and
/// joined before it returns.
pub fn run(ctx: &Ctx, events: &Arc<Mutex<Receiver<Event>>>, sd: &Shutdown) -> Result<()> {
    let metrics = Metrics::register(&ctx.health.metrics);
    let store = Store::open(&ctx.db_path)?;
    let shared = Arc::new(Shared {
        wake: Mutex::new(true),
        cv: Condvar::new(),
        stop: AtomicBool::new(false),
        delivery: Mutex::default(),
        arrivals: Mutex::default(),
    });
    let (tx, rx) = channel();
    let threads = vec![
        forward_events(events.clone(), tx.clone(), shared.clone()),
        forward_webhooks(ctx.clone(), tx, shared.clone()),
        deliverer(ctx.clone(), shared.clone(), metrics.clone()),
    ];
    let mut f = Follower::new(ctx, &store, &shared, &metrics);
    tracing::info!("scrobble: following Plex playback");
    let out = f.follow(&rx, sd);
    shared.stop.store(true, Ordering::Relaxed);
    shared.wake();
    // A Trakt call in flight may last its whole timeout: the daemon's shutdown grace (4 s)
    // does not wait for it. Its entry stays in the outbox and is sent again at the next start
    // (a repeated stop is a 409 on Trakt, "already done").
    let deadline = Instant::now() + Duration::from_millis(2500);
    while threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    for t in threads {
        if t.is_finished() {
            let _ = t.join();
        } else {
            tracing::info!("scrobble: a Trakt call is still in flight at shutdown; its entry stays in the outbox");
        }
    }
    f.publish();
    out
}

/// The bus → the follower (its receiver is shared: a restarted job takes it again).
fn forward_events(
    events: Arc<Mutex<Receiver<Event>>>,
    tx: Sender<Input>,
    shared: Arc<Shared>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let rx = events.lock().unwrap_or_else(|e| e.into_inner());
        while !shared.stopping() {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(e @ Event::Playing { .. }) => {
                    if tx.send(Input::Websocket(e, Instant::now())).is_err() {
                        return;
                    }
                }
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    })
}

/// `ctx.webhooks` → the follower.
fn forward_webhooks(ctx: Ctx, tx: Sender<Input>, shared: Arc<Shared>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        while !shared.stopping() {
            if let Some(v) = ctx.webhooks.recv_timeout(Duration::from_millis(200)) {
                if tx.send(Input::Webhook(v, Instant::now())).is_err() {
                    return;
                }
            }
        }
    })
}

/// A websocket event waiting for a listing that names its viewer.
struct Held {
    ev: PlaybackEvent,
    arrived: Instant,
    until: Instant,
}

/// The follower's state.
struct Follower<'a> {
    ctx: &'a Ctx,
    store: &'a Store,
    shared: &'a Shared,
    metrics: &'a Metrics,
    machines: Machines,
    viewers: Viewers,
    seen_generation: u64,
    held: VecDeque<Held>,
    /// Item facts Plex gave for rating keys the index does not hold.
    fetched: HashMap<String, ItemFacts>,
    refusals: Once,
    linked: Vec<String>,
    linked_read: Option<Instant>,
    last_ws: Option<String>,
    last_hook: Option<String>,
    shown: Option<ScrobbleStatus>,
    /// The outbox as last read: (depth, oldest age in seconds).
    outbox: (u64, Option<u64>),
    store_error: Option<String>,
}

impl<'a> Follower<'a> {
    fn new(ctx: &'a Ctx, store: &'a Store, shared: &'a Shared, metrics: &'a Metrics) -> Self {
        Follower {
            ctx,
            store,
            shared,
            metrics,
            machines: Machines::new(ctx.config().scrobble.rules()),
            viewers: Viewers::new(VIEWER_CAP, VIEWER_TTL),
            seen_generation: 0,
            held: VecDeque::new(),
            fetched: HashMap::new(),
            refusals: Once::new(4096),
            linked: Vec::new(),
            linked_read: None,
            last_ws: None,
            last_hook: None,
            shown: None,
            outbox: (0, None),
            store_error: None,
        }
    }

    fn follow(&mut self, rx: &Receiver<Input>, sd: &Shutdown) -> Result<()> {
        let mut next_tick = Instant::now();
        let mut rules = self.ctx.config().scrobble.rules();
        while !sd.is_set() {
            let now = Instant::now();
            let mut until = next_tick;
            if let Some(h) = self.held.front() {
                // A held event is looked at again as soon as a listing may name its viewer.
                until = until.min(h.until).min(now + Duration::from_millis(50));
            }
            let wait = until
                .saturating_duration_since(now)
                .min(Duration::from_millis(500));
            let input = match rx.recv_timeout(wait) {
                Ok(i) => Some(i),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    anyhow::bail!("scrobble: the input threads ended unexpectedly")
                }
            };
            let live = self.ctx.config().scrobble.rules();
            if live != rules {
                self.machines.set_rules(live.clone());
                rules = live;
                tracing::info!("scrobble: rules reloaded");
            }
            self.learn_sessions();
            match input {
                Some(Input::Websocket(e, at)) => self.on_websocket(&e, at),
                Some(Input::Webhook(v, at)) => self.on_webhook(&v, at),
                None => {}
            }
            self.release_held(Instant::now());
            if Instant::now() >= next_tick {
                next_tick = Instant::now() + TICK;
                self.tick();
                self.publish();
            }
        }
        Ok(())
    }

    /// Learns the viewers of a newer listing.
    fn learn_sessions(&mut self) {
        let p = self.ctx.sessions.latest();
        if p.generation != self.seen_generation {
            self.seen_generation = p.generation;
            self.viewers.learn(&p.list, Instant::now());
        }
    }

    fn on_websocket(&mut self, e: &Event, at: Instant) {
        let Some(ev) = event::from_websocket(e, unix_ms()) else {
            return;
        };
        self.last_ws = Some(now_rfc3339());
        self.metrics.events.inc_with(&["websocket", "in"]);
        let key = ev.session_key.clone().unwrap_or_default();
        self.viewers.heard(&key, ev.view_offset_ms, Instant::now());
        // Order per session: behind an event already waiting, this one waits too.
        let waiting = self
            .held
            .iter()
            .any(|h| h.ev.session_key.as_deref() == Some(key.as_str()));
        if !waiting {
            let latest = self.ctx.sessions.latest();
            if let Some(seen) = self.viewers.of(&latest.list, &key) {
                self.handle(ev, seen.user.clone(), Some(seen), at);
                return;
            }
            self.ctx.sessions.request_confirmation();
        }
        self.held.push_back(Held {
            ev,
            arrived: at,
            until: at + HOLD,
        });
    }

    /// Held events whose viewer a listing now names go on, in order per session; those past
    /// their hold are dropped, said once per session. A session still waiting holds only its
    /// own later events, never another session's.
    fn release_held(&mut self, now: Instant) {
        if self.held.is_empty() {
            return;
        }
        let latest = self.ctx.sessions.latest();
        let mut waiting: HashSet<String> = HashSet::new();
        let mut keep = VecDeque::new();
        let mut ready = Vec::new();
        for h in self.held.drain(..) {
            let key = h.ev.session_key.clone().unwrap_or_default();
            if waiting.contains(&key) {
                keep.push_back(h);
                continue;
            }
            if let Some(seen) = self.viewers.of(&latest.list, &key) {
                ready.push((h, seen));
            } else if now < h.until {
                waiting.insert(key);
                keep.push_back(h);
            } else {
                self.metrics.events.inc_with(&["websocket", "unattributed"]);
                if self.refusals.first(format!("{key}|unattributed")) {
                    tracing::info!(
                        "not scrobbled: Plex did not list session {key} (rating key {}) within {} s, so its viewer is unknown; it is not given to anybody",
                        h.ev.rating_key,
                        HOLD.as_secs()
                    );
                }
            }
        }
        self.held = keep;
        for (h, seen) in ready {
            let user = seen.user.clone();
            self.handle(h.ev, user, Some(seen), h.arrived);
        }
    }

    fn on_webhook(&mut self, payload: &Value, at: Instant) {
        self.last_hook = Some(now_rfc3339());
        match event::from_webhook(payload, unix_ms()) {
            Ok(None) => {}
            Err(e) => {
                self.metrics.events.inc_with(&["webhook", "invalid"]);
                tracing::warn!("scrobble: a Plex webhook was ignored: {e}");
            }
            Ok(Some(ev)) => {
                self.metrics.events.inc_with(&["webhook", "in"]);
                let Some(user) = ev.user.clone().filter(|u| !u.trim().is_empty()) else {
                    self.metrics.events.inc_with(&["webhook", "unattributed"]);
                    tracing::info!(
                        "not scrobbled: a Plex webhook for rating key {} names no account (Account.title)",
                        ev.rating_key
                    );
                    return;
                };
                let seen = self
                    .viewers
                    .for_webhook(&user, ev.client_id.as_deref(), &ev.rating_key)
                    .cloned();
                self.handle(ev, user, seen, at);
            }
        }
    }

    /// One attributed event: facts, filters, machine, outbox.
    fn handle(
        &mut self,
        mut ev: PlaybackEvent,
        user: String,
        seen: Option<viewers::Seen>,
        at: Instant,
    ) {
        let source = source_label(ev.source);
        ev.user = Some(user.clone());
        if ev.view_offset_ms.is_none() {
            ev.view_offset_ms = seen.as_ref().and_then(|s| s.view_offset_ms);
        }
        if ev.item.is_none() {
            ev.item = self.facts(&ev.rating_key, seen.as_ref());
        } else if let Some(item) = ev.item.as_mut() {
            if item.duration_ms.is_none() {
                item.duration_ms = seen.as_ref().and_then(|s| s.duration_ms);
            }
        }
        self.read_linked(false);
        let cfg = self.ctx.config();
        let filters = cfg.scrobble.filters();
        let linked = &self.linked;
        let is_linked = |u: &str| linked.iter().any(|l| *l == tokens::key(u));
        if let Err(reason) = filter::check(&filters, &ev, &is_linked) {
            self.metrics.events.inc_with(&[source, "filtered"]);
            let play = ev
                .session_key
                .clone()
                .or_else(|| ev.client_id.clone())
                .unwrap_or_default();
            if self
                .refusals
                .first(format!("{play}|{}|{reason}", ev.rating_key))
            {
                tracing::info!("{reason}");
            }
            return;
        }
        let dropped = self.machines.suppressed();
        let calls = self.machines.on_event(&user, &ev);
        if self.machines.suppressed() > dropped {
            self.metrics.events.inc_with(&[source, "suppressed"]);
        }
        self.queue(&calls, source, at);
    }

    /// The facts of an item: the index, else one Plex call (remembered), else the session.
    fn facts(&mut self, rating_key: &str, seen: Option<&viewers::Seen>) -> Option<ItemFacts> {
        match self.store.item_row(rating_key) {
            Ok(Some(row)) => return Some(viewers::facts_from_row(&row, seen)),
            Ok(None) => {}
            Err(e) => tracing::warn!("scrobble: reading item {rating_key} from the index: {e:#}"),
        }
        if let Some(f) = self.fetched.get(rating_key) {
            return Some(with_duration(f.clone(), seen));
        }
        if let Some(plex) = self.ctx.plex_interactive() {
            match plex.metadata(&[rating_key.to_string()]) {
                Ok(list) => {
                    if let Some(m) = list.first() {
                        let f = event::facts_from_metadata(m);
                        if self.fetched.len() >= FACTS_CAP {
                            self.fetched.clear();
                        }
                        self.fetched.insert(rating_key.to_string(), f.clone());
                        return Some(with_duration(f, seen));
                    }
                }
                Err(e) => tracing::warn!(
                    "scrobble: asking Plex about item {rating_key} (not in the index): {e}"
                ),
            }
        }
        seen.map(viewers::facts_from_session)
    }

    /// Writes the calls to the outbox (unless paused) and wakes the deliverer.
    fn queue(&mut self, calls: &[Call], source: &'static str, at: Instant) {
        if calls.is_empty() {
            return;
        }
        if self.ctx.scrobble_paused.load(Ordering::Relaxed) {
            self.metrics.events.inc_with(&[source, "paused"]);
            if self.refusals.first(format!("paused|{}", calls[0].play)) {
                tracing::info!(
                    "scrobble paused (POST /api/scrobble/start resumes): {} call(s) for {} not queued",
                    calls.len(),
                    calls[0].user
                );
            }
            return;
        }
        for call in calls {
            match outbox::push(self.store, call) {
                Ok(id) => {
                    let mut a = self
                        .shared
                        .arrivals
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    if a.len() >= 10_000 {
                        a.clear();
                    }
                    a.insert(id, at);
                    self.store_error = None;
                }
                Err(e) => {
                    // The store refused the durable write: said loudly, as nothing will be sent.
                    let msg = format!(
                        "scrobble: could not write a {} call of {} to the outbox in {}: {e:#}",
                        call.action.as_str(),
                        call.user,
                        self.ctx.db_path.display()
                    );
                    tracing::error!("{msg}");
                    self.store_error = Some(format!("{} {msg}", now_rfc3339()));
                }
            }
        }
        self.shared.wake();
    }

    /// Time passes: forced stops, the linked users, the outbox gauges.
    fn tick(&mut self) {
        let cfg = self.ctx.config();
        let latest = self.ctx.sessions.latest();
        let listed = viewers::listed(&latest, Instant::now(), stale_after(&cfg));
        let calls = self.machines.tick(unix_ms(), listed.as_ref());
        for c in &calls {
            tracing::info!(
                "scrobble: {} of {} (rating key {}) at {:.0}%{}",
                c.action.as_str(),
                c.user,
                c.rating_key,
                c.progress,
                if c.forced {
                    ": Plex no longer lists the session (forced stop)"
                } else {
                    ""
                }
            );
        }
        self.queue(&calls, "daemon", Instant::now());
        self.read_linked(true);
        match outbox::depth(self.store) {
            Ok((n, oldest)) => {
                let age = oldest.map(|t| unix_ms().saturating_sub(t) / 1000);
                self.metrics.depth.set(n as f64);
                self.metrics.oldest.set(age.unwrap_or(0) as f64);
                self.outbox = (n, age);
            }
            Err(e) => tracing::warn!("scrobble: reading the outbox depth: {e:#}"),
        }
    }

    /// Reads the linked users again when due (`force`: at each tick's own schedule).
    fn read_linked(&mut self, force: bool) {
        let due = self.linked_read.is_none_or(|t| t.elapsed() >= LINKED_EVERY);
        if !due || (!force && self.linked_read.is_some()) {
            return;
        }
        self.linked_read = Some(Instant::now());
        match tokens::users(self.store) {
            Ok(users) => {
                if users.is_empty() && (!self.linked.is_empty() || self.shown.is_none()) {
                    tracing::warn!("scrobble: {}", NO_USER);
                }
                if users != self.linked && !users.is_empty() {
                    tracing::info!("scrobble: Trakt accounts linked for {}", users.join(", "));
                }
                self.linked = users;
            }
            Err(e) => tracing::warn!("scrobble: reading the linked Trakt accounts: {e:#}"),
        }
    }

    fn status(&self) -> ScrobbleStatus {
        let events_job_ok = self
            .ctx
            .health
            .status()
            .jobs
            .get("events")
            .is_some_and(|j| j.last_error.is_none());
        let d = self.shared.view().clone();
        let problem = if self.linked.is_empty() {
            Some(NO_USER.to_string())
        } else {
            d.problem
        };
        ScrobbleStatus {
            websocket_connected: events_job_ok && self.ctx.config().plex_access.is_ok(),
            last_websocket_event: self.last_ws.clone(),
            last_webhook: self.last_hook.clone(),
            users_linked: self.linked.clone(),
            outbox_depth: self.outbox.0,
            outbox_oldest_s: self.outbox.1,
            paused: self.ctx.scrobble_paused.load(Ordering::Relaxed),
            active_plays: self.machines.active() as u64,
            duplicates_suppressed: self.machines.suppressed(),
            last_delivery: d.last_delivery,
            last_error: self.store_error.clone().or(d.last_error),
            problem,
        }
    }

    fn publish(&mut self) {
        let s = self.status();
        if self.shown.as_ref() != Some(&s) {
            if let Ok(v) = serde_json::to_value(&s) {
                self.ctx.health.set_section(JOB, v);
            }
            self.shown = Some(s);
        }
    }
}

const NO_USER: &str =
    "no Plex user has a Trakt account linked: downshiftarr trakt login --user NAME";

fn source_label(s: Source) -> &'static str {
    match s {
        Source::Websocket => "websocket",
        Source::Webhook => "webhook",
        Source::Daemon => "daemon",
    }
}

fn with_duration(mut f: ItemFacts, seen: Option<&viewers::Seen>) -> ItemFacts {
    if f.duration_ms.is_none() {
        f.duration_ms = seen.and_then(|s| s.duration_ms);
    }
    f
}

/// A listing older than this is no listing: the sessions job polls at least every
/// `enforce.guard_interval_s` (or `throttle.poll_interval_s`), and publishes nothing when a
/// poll fails.
fn stale_after(cfg: &crate::config::Config) -> Duration {
    let mut s = cfg.enforce.guard_interval_s.max(1);
    if cfg.throttle.enabled() {
        s = s.min(cfg.throttle.poll_interval_s.max(1));
    }
    Duration::from_secs(3 * s + 5)
}

/// The Trakt client settings a deliverer was built for.
fn trakt_key(o: &TraktOptions) -> (String, String, String) {
    (
        o.base_url.clone(),
        o.client_id.clone(),
        o.client_secret.clone(),
    )
}

/// The delivery thread.
fn deliverer(ctx: Ctx, shared: Arc<Shared>, metrics: Metrics) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut store: Option<Store> = None;
        let mut built: Option<((String, String, String), Deliverer)> = None;
        let mut resolver: Option<IndexResolver> = None;
        let mut counted = HashMap::new();
        while !shared.stopping() {
            let mut next = Instant::now() + DELIVER_IDLE;
            match deliver_once(
                &ctx,
                &shared,
                &metrics,
                &mut store,
                &mut built,
                &mut resolver,
            ) {
                Ok(due) => {
                    if let Some(t) = due {
                        next = next.min(t);
                    }
                    shared.view().problem = None;
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    tracing::warn!("scrobble: delivery: {msg}");
                    let mut v = shared.view();
                    v.problem = Some(msg.clone());
                    v.last_error = Some(format!("{} {msg}", now_rfc3339()));
                    next = Instant::now() + PASS_RETRY;
                }
            }
            if let Some((_, d)) = &built {
                report(d.stats(), &shared, &metrics, &mut counted);
            }
            let guard = shared.wake.lock().unwrap_or_else(|e| e.into_inner());
            let wait = next.saturating_duration_since(Instant::now());
            let (mut woken, _) = shared
                .cv
                .wait_timeout_while(guard, wait, |w| !*w && !shared.stop.load(Ordering::Relaxed))
                .unwrap_or_else(|e| e.into_inner());
            *woken = false;
        }
    })
}

/// One delivery pass with what the configuration in effect asks for; when the next entry is
/// due.
fn deliver_once(
    ctx: &Ctx,
    shared: &Shared,
    metrics: &Metrics,
    store: &mut Option<Store>,
    built: &mut Option<((String, String, String), Deliverer)>,
    resolver: &mut Option<IndexResolver>,
) -> Result<Option<Instant>> {
    if store.is_none() {
        *store = Some(Store::open(&ctx.db_path)?);
    }
    let Some(store) = store.as_ref() else {
        return Ok(None);
    };
    let cfg = ctx.config();
    if !cfg.scrobble.enabled() {
        return Ok(None);
    }
    let opts = cfg.scrobble.trakt_options()?;
    let key = trakt_key(&opts);
    if built.as_ref().is_none_or(|(k, _)| *k != key) {
        let secrets = (opts.client_id.clone(), opts.client_secret.clone());
        let trakt = Trakt::new(opts).map_err(|e| anyhow::anyhow!("the Trakt client: {e}"))?;
        *built = Some((key, Deliverer::new(trakt, secrets)));
    }
    if resolver.is_none() {
        // Its own connection on the daemon's file; the interactive timeouts (a Plex call is
        // made only for an item the index does not hold yet).
        let plex = ctx
            .config()
            .plex_access
            .clone()
            .ok()
            .and_then(|(url, token)| {
                let read =
                    Duration::from_millis(cfg.plex.read_timeout_ms).min(Duration::from_secs(8));
                let connect = Duration::from_millis(cfg.plex.connect_timeout_ms);
                crate::plex::Plex::new(&url, &token, connect, read).ok()
            });
        *resolver = Some(IndexResolver::new(Store::open(&ctx.db_path)?, plex));
    }
    let (Some((_, d)), Some(r)) = (built.as_mut(), resolver.as_mut()) else {
        return Ok(None);
    };
    let started = Instant::now();
    observe_dispatch(shared, metrics, store, started);
    let report = d.pass(store, r, started, &|| shared.stopping())?;
    // The pass returns when nothing more may go now (a back-off, a user's 1 s pacing): sleep
    // until then, unless a new call wakes us first.
    Ok(report
        .next_due
        .map(|t| t.max(Instant::now() + Duration::from_millis(5))))
}

/// The dispatch latency of every waiting entry the pass about to start will send first: from
/// its event's arrival to now (the pass sends due entries at once, in order).
fn observe_dispatch(shared: &Shared, metrics: &Metrics, store: &Store, now: Instant) {
    let mut arrivals = shared.arrivals.lock().unwrap_or_else(|e| e.into_inner());
    if arrivals.is_empty() {
        return;
    }
    let Ok(due) = outbox::due(store, unix_ms(), 64) else {
        return;
    };
    for e in due {
        if let Some(at) = arrivals.remove(&e.id) {
            metrics
                .dispatch
                .observe(now.saturating_duration_since(at).as_secs_f64());
        }
    }
}

/// The deliverer's counts → `downshiftarr_scrobble_calls_total` (the increase since the last
/// look; a new deliverer starts its counts again) and the status section's last delivery,
/// last error and the users whose calls wait for a login.
fn report(
    stats: &DeliveryStats,
    shared: &Shared,
    metrics: &Metrics,
    counted: &mut HashMap<(String, String), u64>,
) {
    for (action, results) in &stats.counts {
        for (result, n) in results {
            let before = counted.insert((action.clone(), result.clone()), *n);
            let added = match before {
                Some(b) if *n >= b => n - b,
                _ => *n,
            };
            if added > 0 {
                metrics
                    .calls
                    .add_with(&[action.as_str(), result.as_str()], added as f64);
            }
        }
    }
    let at = |ms: u64| downshiftarr_shim::record::rfc3339(UNIX_EPOCH + Duration::from_millis(ms));
    let mut v = shared.view();
    if let Some(ms) = stats.last_delivery_ms {
        v.last_delivery = Some(at(ms));
    }
    if let Some(e) = &stats.last_error {
        let when = stats.last_error_ms.map(at).unwrap_or_default();
        v.last_error = Some(format!("{when} {e}").trim().to_string());
    }
    if !stats.unlinked.is_empty() {
        let who: Vec<String> = stats
            .unlinked
            .iter()
            .map(|(u, why)| format!("{u} ({why})"))
            .collect();
        v.problem = Some(format!(
            "calls wait for a Trakt login: {} — downshiftarr trakt login --user NAME",
            who.join(", ")
        ));
    }
}
