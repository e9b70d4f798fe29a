//! The daemon's enforcement: who is watching (for the shim's exemptions), terminating the
//! sessions the shim refused, the reactive guard, and the Tautulli trigger.
//!
//! - **Viewer**: the shim asks `session_context`; the tracker answers from memory, or asks
//!   Plex once within the time the shim allows.
//! - **Refusals**: every `refuse` the shim reports is queued; the worker finds the Plex
//!   session of the transcode (retried: it appears after the transcoder starts) and
//!   terminates it with the scenario's message, Tautulli as the fallback.
//! - **Guard**: every session snapshot the `sessions` job publishes (polled every
//!   `enforce.guard_interval_s` and soon after each transcode notification) is checked; a video
//!   transcode of a protected source the shim did not report is enforced once it has been seen
//!   `enforce.guard_observations` times in a row.
//! - **Tautulli**: `downshiftarr tautulli` hands its trigger over the socket.
//!
//! All three share the context's `Memory` of which sessions and files were handled (the shim)
//! or enforced (the guard, the trigger), so no session is enforced twice.

pub mod enforce;
pub mod trigger;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Result;
use downshiftarr_shim::facts::SourceFacts;
use downshiftarr_shim::policy::{self, Viewer};
use downshiftarr_shim::protocol::MediaVersion;
use serde_json::{json, Value};

use super::Job;
use crate::clients::tautulli::Tautulli;
use crate::config::Config;
use crate::daemon::ctx::{AuditMsg, Ctx};
use crate::daemon::lifecycle::Shutdown;
use crate::jobs::socket::Answers;
use crate::plex::sessions::{self, Session};
use crate::plex::Plex;
use enforce::{Enforcer, Outcome, Want};
use trigger::{Knowledge, Trigger};

/// The enforcement side of the daemon, over the context. Built by each job that needs it
/// (the refusal worker, the guard, the socket's answers); all state lives in the context.
pub struct Guard {
    ctx: Ctx,
}

impl Guard {
    pub fn new(ctx: &Ctx) -> Guard {
        Guard { ctx: ctx.clone() }
    }

    fn is_handled(&self, transcode: &str) -> bool {
        self.ctx.memory.is_handled(transcode)
    }

    fn input_handled(&self, file: &str) -> bool {
        self.ctx.memory.input_handled(file)
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
        self.ctx.health.decision(origin, outcome.decision(), reason);
        self.ctx.health.enforced(&outcome.health());
        let rec = outcome.record(origin, session, input, reason);
        self.ctx.audit.send(AuditMsg::Daemon(rec));
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
            tracker: Some(&self.ctx.sessions.tracker),
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
        let cfg = self.ctx.config();
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
            .ctx
            .lookup
            .get(input)
            .map(|e| vec![e.media_id.to_string()])
            .unwrap_or_default();
        let (plex, taut) = (self.ctx.plex_interactive(), self.ctx.tautulli());
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
        self.ctx.health.enforced(&outcome.health());
        self.log("refused transcode", &outcome);
        enf.notify("refused transcode", &outcome);
        self.ctx.audit.send(AuditMsg::Outcome {
            session: tx.to_string(),
            outcome: outcome.line(),
            user: outcome.user.clone(),
        });
    }

    /// Once Plex lists a session the shim decided about, its viewer goes into the audit.
    fn name_viewers(&self, list: &[Session], named: &mut HashSet<String>) {
        for s in list {
            let (Some(tx), Some(user)) = (s.transcode.as_deref(), s.viewer.user.as_deref()) else {
                continue;
            };
            if self.is_handled(tx) && named.insert(tx.to_string()) {
                self.ctx.audit.send(AuditMsg::Viewer {
                    session: tx.to_string(),
                    user: user.to_string(),
                });
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
            let Some(entry) = s
                .media_id
                .as_deref()
                .and_then(|m| self.ctx.lookup.by_media(m))
            else {
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
            if *n < cfg.enforce.guard_observations || self.ctx.memory.is_enforced(s) {
                continue;
            }
            self.ctx.memory.note_enforced(s);
            let outcome = if Self::shadow(cfg) {
                Outcome::new("skipped", "shadow mode: would enforce", "")
            } else {
                let (plex, taut) = (self.ctx.plex_interactive(), self.ctx.tautulli());
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

impl Answers for Guard {
    fn viewer(&self, transcode: &str, wait: Duration) -> Viewer {
        let sessions = &self.ctx.sessions;
        if let Some(v) = sessions.tracker.viewer(transcode) {
            return v;
        }
        if wait < Duration::from_millis(3) {
            return Viewer::default();
        }
        let started = Instant::now();
        let Some(plex) = self.ctx.plex_interactive() else {
            return Viewer::default();
        };
        // Callers arriving together share one request.
        let _one = sessions
            .refreshing
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(v) = sessions.tracker.viewer(transcode) {
            return v;
        }
        let left = wait.saturating_sub(started.elapsed());
        if left < Duration::from_millis(2) {
            return Viewer::default();
        }
        match plex.sessions(Some(left)) {
            Ok(list) => sessions.publish(sessions::parse_sessions(&list)),
            Err(e) => tracing::debug!("viewer lookup: {e}"),
        }
        sessions.tracker.viewer(transcode).unwrap_or_default()
    }

    fn tautulli(&self, event: &Value) -> Value {
        let t: Trigger = match serde_json::from_value(event.clone()) {
            Ok(t) => t,
            Err(e) => {
                return json!({"action": "failed", "reason": "malformed trigger", "detail": e.to_string()})
            }
        };
        let cfg = self.ctx.config();
        let (plex, taut) = (self.ctx.plex_interactive(), self.ctx.tautulli());
        let enf = self.enforcer(&cfg, plex.as_deref(), taut.as_deref(), None);
        let o = trigger::handle(&enf, &t, self, Self::shadow(&cfg));
        self.log("tautulli trigger", &o);
        if trigger::notifies(&o, t.notify_min_level.as_deref()) {
            enf.notify("tautulli trigger", &o);
        }
        self.record("tautulli", &t.audit_session(), None, o.reason, &o);
        serde_json::to_value(&o).unwrap_or(Value::Null)
    }
}

impl Knowledge for Guard {
    fn versions(&self, s: &Session) -> Option<(SourceFacts, Vec<MediaVersion>)> {
        let e = self.ctx.lookup.by_media(s.media_id.as_deref()?)?;
        Some((e.facts, (*e.versions).clone()))
    }
    fn handled(&self, transcode: Option<&str>, file: Option<&str>) -> bool {
        transcode.is_some_and(|t| self.is_handled(t)) || file.is_some_and(|f| self.input_handled(f))
    }
    fn enforced(&self, s: &Session) -> bool {
        self.ctx.memory.is_enforced(s)
    }
    fn note_enforced(&self, s: &Session) {
        self.ctx.memory.note_enforced(s);
    }
}

/// The refusal worker: terminates the sessions of refused transcodes, one at a time.
pub fn refusals_job(ctx: &Ctx) -> Result<Option<Job>> {
    let g = Guard::new(ctx);
    Ok(Some(Box::new(move |sd: &Shutdown| {
        while !sd.is_set() {
            if let Some(rec) = g.ctx.refusals.recv_timeout(Duration::from_millis(250)) {
                g.handle_refusal(&rec, sd);
            }
        }
        Ok(())
    })))
}

/// The reactive guard, on every session snapshot; also names the viewers of the transcodes
/// the shim decided about in the audit.
pub fn job(ctx: &Ctx) -> Result<Option<Job>> {
    let g = Guard::new(ctx);
    Ok(Some(Box::new(move |sd: &Shutdown| {
        let mut seen: HashMap<String, u32> = HashMap::new();
        let mut named: HashSet<String> = HashSet::new();
        let mut generation = g.ctx.sessions.latest().generation;
        while !sd.is_set() {
            let Some(snap) = g
                .ctx
                .sessions
                .wait_newer(generation, Duration::from_millis(250))
            else {
                continue;
            };
            generation = snap.generation;
            g.name_viewers(&snap.list, &mut named);
            let cfg = g.ctx.config();
            if cfg.enforce.guard {
                g.guard_pass(&cfg, &snap.list, &mut seen, sd);
            }
        }
        Ok(())
    })))
}
