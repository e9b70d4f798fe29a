//! The daemon's enforcement: who is watching (for the shim's exemptions), terminating the
//! sessions the shim refused, the reactive guard, and the Tautulli trigger.
//!
//! - **Viewer**: the shim asks `session_context`; the tracker answers from memory, or asks
//!   Plex once within the time the shim allows.
//! - **Refusals**: every `refuse` the shim reports is queued; the worker finds the Plex
//!   session of the transcode (retried: it appears after the transcoder starts) and
//!   terminates it with the scenario's message, Tautulli as the fallback.
//! - **Guard**: `/status/sessions` is polled every `enforce.guard_interval_s` and soon after
//!   each transcode notification; a video transcode of a protected source the shim did not
//!   report is enforced once it has been seen `enforce.guard_observations` times in a row.
//! - **Tautulli**: `downshiftarr tautulli` hands its trigger over the socket.
//!
//! All three share one [`Memory`] of which sessions and files were handled (the shim) or
//! enforced (the guard, the trigger), so no session is enforced twice: a session the trigger
//! terminated is left alone by the guard while Plex still lists it, and the other way round.

pub mod enforce;
pub mod trigger;

use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Result;
use downshiftarr_shim::facts::SourceFacts;
use downshiftarr_shim::policy::{self, Viewer};
use downshiftarr_shim::protocol::MediaVersion;
use serde_json::{json, Value};

use crate::clients::tautulli::Tautulli;
use crate::config::Config;
use crate::daemon::health::Health;
use crate::daemon::lifecycle::Shutdown;
use crate::jobs::index::Lookup;
use crate::jobs::socket::Enforcement;
use crate::plex::events::Event;
use crate::plex::sessions::{self, Session, Tracker};
use crate::plex::Plex;
use enforce::{Enforcer, Outcome, Want};
use trigger::{Knowledge, Trigger};

/// How long the shim's decision about a transcode session is remembered.
const HANDLED_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a decision about a file counts for any session playing it.
const HANDLED_INPUT_TTL: Duration = Duration::from_secs(30 * 60);
/// How long an enforced session is remembered (Plex drops a terminated session within
/// seconds; a client that never reports back stays listed for a while).
const ENFORCED_TTL: Duration = Duration::from_secs(24 * 3600);

/// What the shim handled and what the guard or the trigger enforced.
#[derive(Default)]
pub struct Memory {
    /// Transcode session → the shim decided about it (and did not merely shadow).
    handled: Mutex<HashMap<String, Instant>>,
    /// Input file → the shim last decided about a transcode of it. A safety net: should Plex
    /// ever name a transcode differently from the transcoder's progress URL, a session the
    /// shim handled is still never enforced twice.
    handled_inputs: Mutex<HashMap<String, Instant>>,
    /// `tx:<transcode key>` / `id:<Session.id>` → the guard or the trigger acted on it.
    enforced: Mutex<HashMap<String, Instant>>,
}

/// The keys a session is remembered by: its transcode key and its `Session.id` (both unique
/// to one playback; the session key is reused across Plex restarts, so it is not one).
fn enforced_keys(s: &Session) -> impl Iterator<Item = String> + '_ {
    let tx = s.transcode.as_deref().map(|t| format!("tx:{t}"));
    let id = s.session_id.as_deref().map(|i| format!("id:{i}"));
    tx.into_iter().chain(id)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Memory {
    /// A shim record: its transcode session and its file are handled.
    pub fn note_shim(&self, rec: &Value) {
        let Some(session) = rec.get("session").and_then(Value::as_str) else {
            return;
        };
        if rec.get("shadowed").is_some_and(|s| !s.is_null()) {
            return;
        }
        let mut h = lock(&self.handled);
        h.retain(|_, t| t.elapsed() < HANDLED_TTL);
        h.insert(session.to_string(), Instant::now());
        if let Some(input) = rec.get("input").and_then(Value::as_str) {
            let mut i = lock(&self.handled_inputs);
            i.retain(|_, t| t.elapsed() < HANDLED_INPUT_TTL);
            i.insert(input.to_string(), Instant::now());
        }
    }

    pub fn is_handled(&self, transcode: &str) -> bool {
        lock(&self.handled).contains_key(transcode)
    }

    /// The shim decided about a transcode of this file recently (every seek starts a new
    /// transcoder, so a session the shim handles keeps reporting).
    pub fn input_handled(&self, file: &str) -> bool {
        lock(&self.handled_inputs)
            .get(file)
            .is_some_and(|t| t.elapsed() < HANDLED_INPUT_TTL)
    }

    /// The guard or the trigger acted on this session.
    pub fn note_enforced(&self, s: &Session) {
        let mut e = lock(&self.enforced);
        e.retain(|_, t| t.elapsed() < ENFORCED_TTL);
        for k in enforced_keys(s) {
            e.insert(k, Instant::now());
        }
    }

    pub fn is_enforced(&self, s: &Session) -> bool {
        let e = lock(&self.enforced);
        enforced_keys(s).any(|k| e.get(&k).is_some_and(|t| t.elapsed() < ENFORCED_TTL))
    }
}

/// A client and the (URL, secret) it was built for.
type Cached<T> = ((String, String), Arc<T>);

/// The cached client when it was built for `key`, else a new one (then cached).
fn reuse<T>(
    slot: &Mutex<Option<Cached<T>>>,
    key: (String, String),
    build: impl FnOnce(&(String, String)) -> Option<T>,
) -> Option<Arc<T>> {
    let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((k, c)) = slot.as_ref() {
        if *k == key {
            return Some(c.clone());
        }
    }
    let c = Arc::new(build(&key)?);
    *slot = Some((key, c.clone()));
    Some(c)
}

/// Everything the enforcement jobs and socket workers share.
pub struct Shared {
    pub tracker: Tracker,
    pub lookup: Lookup,
    pub live: Arc<RwLock<Config>>,
    pub health: Arc<Health>,
    /// Handled and enforced sessions, for every enforcer.
    pub memory: Memory,
    /// Records for the audit job.
    audit: SyncSender<Value>,
    plex: Mutex<Option<Cached<Plex>>>,
    tautulli: Mutex<Option<Cached<Tautulli>>>,
    /// One on-demand `/status/sessions` at a time for the viewer question.
    refreshing: Mutex<()>,
}

impl Shared {
    pub fn new(
        lookup: Lookup,
        live: Arc<RwLock<Config>>,
        health: Arc<Health>,
        audit: SyncSender<Value>,
    ) -> Shared {
        Shared {
            tracker: Tracker::default(),
            lookup,
            live,
            health,
            memory: Memory::default(),
            audit,
            plex: Mutex::default(),
            tautulli: Mutex::default(),
            refreshing: Mutex::default(),
        }
    }

    fn config(&self) -> Config {
        self.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The Plex client for the configuration in effect (rebuilt after SIGHUP changes it).
    pub fn plex(&self) -> Option<Arc<Plex>> {
        let cfg = self.config();
        let key = cfg.plex.resolved().ok()?;
        reuse(&self.plex, key, |_| {
            let mut plex = cfg.plex.clone();
            plex.read_timeout_ms = plex.read_timeout_ms.min(8000);
            Plex::from_config(&plex).ok()
        })
    }

    /// The Tautulli client, when Tautulli is configured.
    pub fn tautulli(&self) -> Option<Arc<Tautulli>> {
        let cfg = self.config();
        let key = match cfg.tautulli.resolved() {
            Ok(k) => k?,
            Err(e) => {
                tracing::warn!("{e:#}");
                return None;
            }
        };
        reuse(&self.tautulli, key, |(url, api_key)| {
            Tautulli::new(url, api_key, Duration::from_millis(cfg.tautulli.timeout_ms)).ok()
        })
    }

    /// Called by the audit job for every shim record.
    pub fn note_shim(&self, rec: &Value) {
        self.memory.note_shim(rec);
    }

    fn is_handled(&self, transcode: &str) -> bool {
        self.memory.is_handled(transcode)
    }

    fn input_handled(&self, file: &str) -> bool {
        self.memory.input_handled(file)
    }

    fn shadow(cfg: &Config) -> bool {
        cfg.enforce.shadow_mode.unwrap_or(cfg.shim.shadow_mode)
    }

    /// Stores a decision of the daemon's own and counts it.
    /// `input` is the file when known, else the session's title.
    fn record(
        &self,
        origin: &str,
        session: &Session,
        input: Option<&str>,
        reason: &str,
        outcome: &Outcome,
    ) {
        self.health.decision(origin, outcome.decision(), reason);
        self.health.enforced(outcome);
        let rec = outcome.record(origin, session, input, reason);
        if self.audit.try_send(rec).is_err() {
            tracing::warn!("decision audit queue full: a record was dropped");
        }
    }

    fn enforcer<'a>(
        &'a self,
        cfg: &'a Config,
        plex: Option<&'a Plex>,
        tautulli: Option<&'a Tautulli>,
        shutdown: Option<&'a Shutdown>,
    ) -> Enforcer<'a> {
        Enforcer {
            plex,
            tautulli,
            cfg: &cfg.enforce,
            shim: &cfg.shim,
            notifier: cfg
                .tautulli
                .log_notifier_id
                .map(|id| (id, cfg.tautulli.log_subject.clone())),
            tracker: Some(&self.tracker),
            shutdown,
        }
    }

    fn log(&self, what: &str, o: &Outcome) {
        if o.plex_pass_missing {
            tracing::error!(
                user = o.user.as_deref().unwrap_or(""),
                "{what}: {}",
                o.line()
            );
        } else if o.action == "failed" {
            tracing::warn!(
                user = o.user.as_deref().unwrap_or(""),
                "{what}: {}",
                o.line()
            );
        } else {
            tracing::info!(
                user = o.user.as_deref().unwrap_or(""),
                "{what}: {}",
                o.line()
            );
        }
    }

    /// Terminates the session of a transcode the shim refused.
    pub fn handle_refusal(&self, rec: &Value, shutdown: &Shutdown) {
        let cfg = self.config();
        let Some(tx) = rec.get("session").and_then(Value::as_str) else {
            tracing::warn!("a refused transcode without a session id: nothing to terminate");
            return;
        };
        if !cfg.enforce.terminate_refused {
            return;
        }
        let scenario = rec
            .get("scenario")
            .and_then(Value::as_str)
            .unwrap_or("unexpected_error");
        let input = rec.get("input").and_then(Value::as_str).unwrap_or_default();
        let media_ids = self
            .lookup
            .get(input)
            .map(|e| vec![e.media_id.to_string()])
            .unwrap_or_default();
        let (plex, taut) = (self.plex(), self.tautulli());
        let enf = self.enforcer(&cfg, plex.as_deref(), taut.as_deref(), Some(shutdown));
        let want = Want {
            transcode: Some(tx.to_string()),
            media_ids,
            ..Want::default()
        };
        let outcome = match enf.find(&want) {
            Ok(Some(s)) => {
                let mut o = enf.terminate(
                    s.session_id.as_deref(),
                    Some(&s.session_key),
                    cfg.shim.kill_message(scenario),
                    "refused by the shim",
                );
                o.user = s.viewer.user.clone();
                o
            }
            Ok(None) => Outcome::new(
                "failed",
                "session not found",
                "Plex never listed the refused transcode",
            ),
            Err(e) => Outcome::new("failed", "session lookup failed", e.to_string()),
        };
        self.health.enforced(&outcome);
        self.log("refused transcode", &outcome);
        enf.notify("refused transcode", &outcome);
        let upd = json!({"kind": "outcome", "session": tx, "outcome": outcome.line(), "user": outcome.user});
        let _ = self.audit.try_send(upd);
    }

    /// Once Plex lists a session the shim decided about, its viewer goes into the audit.
    fn name_viewers(&self, list: &[Session], named: &mut HashSet<String>) {
        for s in list {
            let (Some(tx), Some(user)) = (s.transcode.as_deref(), s.viewer.user.as_deref()) else {
                continue;
            };
            if self.is_handled(tx) && named.insert(tx.to_string()) {
                let _ = self
                    .audit
                    .try_send(json!({"kind": "viewer", "session": tx, "user": user}));
            }
        }
        if named.len() > 10_000 {
            named.clear();
        }
    }

    /// One guard pass over a fresh session list.
    fn guard_pass(
        &self,
        cfg: &Config,
        list: &[Session],
        seen: &mut HashMap<String, u32>,
        shutdown: &Shutdown,
    ) {
        let mut now_seen = HashSet::new();
        for s in list {
            let Some(tx) = s.transcode.as_deref() else {
                continue;
            };
            if !s.video_transcode || s.live || self.is_handled(tx) {
                continue;
            }
            let Some(entry) = s.media_id.as_deref().and_then(|m| self.lookup.by_media(m)) else {
                continue; // not in the index: nothing proves it protected
            };
            let file = entry
                .versions
                .iter()
                .find(|v| Some(v.media_id.as_str()) == s.media_id.as_deref())
                .map(|v| v.file.as_str());
            if !enforce::protected(&entry.facts, &cfg.shim)
                || policy::is_exempt(&s.viewer, &cfg.shim)
                || file.is_some_and(|f| self.input_handled(f))
            {
                continue;
            }
            now_seen.insert(tx.to_string());
            let n = seen.entry(tx.to_string()).or_default();
            *n += 1;
            if *n < cfg.enforce.guard_observations || self.memory.is_enforced(s) {
                continue;
            }
            self.memory.note_enforced(s);
            let outcome = if Self::shadow(cfg) {
                Outcome::new("skipped", "shadow mode: would enforce", "")
            } else {
                let (plex, taut) = (self.plex(), self.tautulli());
                let enf = self.enforcer(cfg, plex.as_deref(), taut.as_deref(), Some(shutdown));
                let o = enf.guarded(s.session_id.as_deref(), Some(&s.session_key), true, || {
                    enf.act_on(s, &entry.versions)
                });
                enf.notify("protected transcode the shim missed", &o);
                o
            };
            self.log("reactive guard", &outcome);
            self.record(
                "guard",
                s,
                file,
                "protected transcode the shim did not handle",
                &outcome,
            );
        }
        // A transcode seen once and then gone (Plex settling on direct play) starts over.
        seen.retain(|k, _| now_seen.contains(k));
    }
}

impl Enforcement for Shared {
    fn viewer(&self, transcode: &str, wait: Duration) -> Viewer {
        if let Some(v) = self.tracker.viewer(transcode) {
            return v;
        }
        if wait < Duration::from_millis(3) {
            return Viewer::default();
        }
        let started = Instant::now();
        let Some(plex) = self.plex() else {
            return Viewer::default();
        };
        // Callers arriving together share one request.
        let _one = self.refreshing.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = self.tracker.viewer(transcode) {
            return v;
        }
        let left = wait.saturating_sub(started.elapsed());
        if left < Duration::from_millis(2) {
            return Viewer::default();
        }
        match plex.sessions(Some(left)) {
            Ok(list) => self.tracker.replace(sessions::parse_sessions(&list)),
            Err(e) => tracing::debug!("viewer lookup: {e}"),
        }
        self.tracker.viewer(transcode).unwrap_or_default()
    }

    fn tautulli(&self, event: &Value) -> Value {
        let t: Trigger = match serde_json::from_value(event.clone()) {
            Ok(t) => t,
            Err(e) => {
                return json!({"action": "failed", "reason": "malformed trigger", "detail": e.to_string()})
            }
        };
        let cfg = self.config();
        let (plex, taut) = (self.plex(), self.tautulli());
        let enf = self.enforcer(&cfg, plex.as_deref(), taut.as_deref(), None);
        let o = trigger::handle(&enf, &t, self, Self::shadow(&cfg));
        self.log("tautulli trigger", &o);
        if matches!(o.action, "terminated" | "switched_client" | "failed") {
            enf.notify("tautulli trigger", &o);
        }
        self.record("tautulli", &t.audit_session(), None, o.reason, &o);
        serde_json::to_value(&o).unwrap_or(Value::Null)
    }
}

impl Knowledge for Shared {
    fn versions(&self, s: &Session) -> Option<(SourceFacts, Vec<MediaVersion>)> {
        let e = self.lookup.by_media(s.media_id.as_deref()?)?;
        Some((e.facts, (*e.versions).clone()))
    }
    fn handled(&self, transcode: Option<&str>, file: Option<&str>) -> bool {
        transcode.is_some_and(|t| self.is_handled(t)) || file.is_some_and(|f| self.input_handled(f))
    }
    fn enforced(&self, s: &Session) -> bool {
        self.memory.is_enforced(s)
    }
    fn note_enforced(&self, s: &Session) {
        self.memory.note_enforced(s);
    }
}

/// The refusal worker: terminates the sessions of refused transcodes, one at a time.
pub fn refusals(shared: &Shared, rx: &Mutex<Receiver<Value>>, shutdown: &Shutdown) -> Result<()> {
    let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
    while !shutdown.is_set() {
        match rx.recv_timeout(Duration::from_millis(250)) {
            Ok(rec) => shared.handle_refusal(&rec, shutdown),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
    Ok(())
}

/// The session tracker's feed and the reactive guard.
pub fn guard(shared: &Shared, events: &Mutex<Receiver<Event>>, shutdown: &Shutdown) -> Result<()> {
    let events = events.lock().unwrap_or_else(|e| e.into_inner());
    let mut seen: HashMap<String, u32> = HashMap::new();
    let mut next_poll = Instant::now();
    let mut dirty: Option<Instant> = None;
    let mut last_poll: Option<Instant> = None;
    let mut last_error: Option<String> = None;
    let mut named: HashSet<String> = HashSet::new();
    while !shutdown.is_set() {
        match events.recv_timeout(Duration::from_millis(200)) {
            Ok(e) => {
                shared.tracker.on_event(&e);
                let interesting = match &e {
                    Event::TranscodeSession { phase, .. } => phase != "end",
                    Event::Playing {
                        transcode_session, ..
                    } => transcode_session.is_some(),
                    _ => false,
                };
                if interesting {
                    dirty.get_or_insert_with(Instant::now);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {}
        }
        let cfg = shared.config();
        let now = Instant::now();
        let spaced = last_poll.is_none_or(|t| t.elapsed() >= Duration::from_millis(900));
        let due =
            now >= next_poll || dirty.is_some_and(|t| t.elapsed() >= Duration::from_millis(300));
        if !due || !spaced {
            continue;
        }
        next_poll = now + Duration::from_secs(cfg.enforce.guard_interval_s);
        dirty = None;
        last_poll = Some(now);
        let Some(plex) = shared.plex() else { continue };
        let list = match plex.sessions(None) {
            Ok(l) => {
                last_error = None;
                sessions::parse_sessions(&l)
            }
            Err(e) => {
                let msg = e.to_string();
                if last_error.as_ref() != Some(&msg) {
                    tracing::warn!("session poll: {msg}");
                }
                last_error = Some(msg);
                continue;
            }
        };
        shared.tracker.replace(list.clone());
        shared.name_viewers(&list, &mut named);
        if cfg.enforce.guard {
            shared.guard_pass(&cfg, &list, &mut seen, shutdown);
        }
    }
    Ok(())
}
