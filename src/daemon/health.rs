//! What the daemon knows about itself: uptime, job health, the last sync, index counts and
//! counters — served as `downshiftarr status` (over the socket), `/health` and `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Value};

use crate::jobs::index::sync::Summary;
use crate::jobs::index::Counts;

/// One job's state.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct JobState {
    pub restarts: u32,
    pub last_error: Option<String>,
}

/// The last sync pass.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SyncReport {
    pub at: String,
    pub ok: bool,
    pub summary: Option<Summary>,
    pub error: Option<String>,
}

/// What enforcement did since the daemon started.
#[derive(Debug, Default)]
pub struct Enforcement {
    pub counts: BTreeMap<(String, String), u64>,
    pub last_error: Option<String>,
    /// The last terminate Plex answered with 401: no Plex Pass on the owner's account.
    pub plex_pass_missing: bool,
}

/// Shared by every job.
pub struct Health {
    started: Instant,
    started_at: String,
    pub jobs: Mutex<BTreeMap<&'static str, JobState>>,
    pub last_sync: Mutex<Option<SyncReport>>,
    pub counts: Mutex<Counts>,
    /// (origin, decision, reason) → count: the shim's reports and the daemon's own.
    pub decisions: Mutex<BTreeMap<(String, String, String), u64>>,
    pub enforcement: Mutex<Enforcement>,
    pub syncs: Mutex<(u64, u64, f64, u64)>, // passes, failures, last duration s, API calls
    pub socket: Arc<Stats>,
}

impl Health {
    pub fn new(socket: Arc<Stats>) -> Health {
        Health {
            started: Instant::now(),
            started_at: downshiftarr_shim::record::now_rfc3339(),
            jobs: Mutex::default(),
            last_sync: Mutex::default(),
            counts: Mutex::default(),
            decisions: Mutex::default(),
            enforcement: Mutex::default(),
            syncs: Mutex::default(),
            socket,
        }
    }

    pub fn job_failed(&self, name: &'static str, error: String) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let j = jobs.entry(name).or_default();
        j.restarts += 1;
        j.last_error = Some(error);
    }

    pub fn job_started(&self, name: &'static str) {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name)
            .or_default();
    }

    pub fn synced(&self, result: Result<&Summary, String>, counts: Option<Counts>) {
        let mut s = self.syncs.lock().unwrap_or_else(|e| e.into_inner());
        s.0 += 1;
        match &result {
            Ok(sum) => {
                s.2 = sum.seconds;
                s.3 += sum.api_calls;
            }
            Err(_) => s.1 += 1,
        }
        *self.last_sync.lock().unwrap_or_else(|e| e.into_inner()) = Some(SyncReport {
            at: downshiftarr_shim::record::now_rfc3339(),
            ok: result.is_ok(),
            summary: result.as_ref().ok().map(|x| (*x).clone()),
            error: result.err(),
        });
        if let Some(c) = counts {
            *self.counts.lock().unwrap_or_else(|e| e.into_inner()) = c;
        }
    }

    /// The index's counts (at boot, from the database already loaded).
    pub fn set_counts(&self, counts: Counts) {
        *self.counts.lock().unwrap_or_else(|e| e.into_inner()) = counts;
    }

    pub fn decision(&self, origin: &str, decision: &str, reason: &str) {
        *self
            .decisions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((origin.into(), decision.into(), reason.into()))
            .or_default() += 1;
    }

    /// Counts what enforcement did; remembers the last failure and a missing Plex Pass.
    pub fn enforced(&self, o: &crate::jobs::guard::enforce::Outcome) {
        let mut e = self.enforcement.lock().unwrap_or_else(|e| e.into_inner());
        *e.counts
            .entry((o.action.to_string(), o.reason.to_string()))
            .or_default() += 1;
        if o.plex_pass_missing {
            e.plex_pass_missing = true;
        }
        if o.action == "failed" || o.plex_pass_missing {
            e.last_error = Some(format!(
                "{} {}",
                downshiftarr_shim::record::now_rfc3339(),
                o.line()
            ));
        } else if o.action == "terminated" && o.via == Some("plex") {
            e.plex_pass_missing = false;
        }
    }

    /// Whether every job is healthy (no job failing right now).
    pub fn healthy(&self) -> bool {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .all(|j| j.last_error.is_none())
    }

    pub fn status(&self) -> Value {
        let st = &self.socket;
        json!({
            "version": downshiftarr_shim::VERSION,
            "started_at": self.started_at,
            "uptime_s": self.started.elapsed().as_secs(),
            "healthy": self.healthy(),
            "index": *self.counts.lock().unwrap_or_else(|e| e.into_inner()),
            "last_sync": *self.last_sync.lock().unwrap_or_else(|e| e.into_inner()),
            "jobs": *self.jobs.lock().unwrap_or_else(|e| e.into_inner()),
            "enforcement": self.enforcement_json(),
            "shim": {
                "lookups": st.lookups.load(Ordering::Relaxed),
                "lookup_hits": st.lookup_hits.load(Ordering::Relaxed),
                "decisions": st.decisions.load(Ordering::Relaxed),
                "rejected_connections": st.rejected.load(Ordering::Relaxed),
            },
        })
    }

    fn enforcement_json(&self) -> Value {
        let e = self.enforcement.lock().unwrap_or_else(|e| e.into_inner());
        let counts: Vec<Value> = e
            .counts
            .iter()
            .map(|((a, r), n)| json!({"action": a, "reason": r, "count": n}))
            .collect();
        json!({
            "counts": counts,
            "last_error": e.last_error,
            "plex_pass_missing": e.plex_pass_missing,
        })
    }

    /// Prometheus text exposition.
    pub fn metrics(&self) -> String {
        let mut m = String::new();
        let mut gauge = |name: &str, help: &str, kind: &str, rows: &[(String, f64)]| {
            let _ = writeln!(m, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in rows {
                let _ = writeln!(m, "{name}{labels} {v}");
            }
        };
        let c = self
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        gauge(
            "downshiftarr_uptime_seconds",
            "Seconds since the daemon started.",
            "gauge",
            &[(String::new(), self.started.elapsed().as_secs_f64())],
        );
        gauge(
            "downshiftarr_index_items",
            "Items in the library index.",
            "gauge",
            &[
                ("{type=\"movie\"}".into(), c.movies as f64),
                ("{type=\"show\"}".into(), c.shows as f64),
                ("{type=\"episode\"}".into(), c.episodes as f64),
            ],
        );
        gauge(
            "downshiftarr_index_files",
            "Media files in the library index.",
            "gauge",
            &[(String::new(), c.files as f64)],
        );
        let (passes, failures, secs, calls) = *self.syncs.lock().unwrap_or_else(|e| e.into_inner());
        gauge(
            "downshiftarr_sync_passes_total",
            "Sync passes run.",
            "counter",
            &[(String::new(), passes as f64)],
        );
        gauge(
            "downshiftarr_sync_failures_total",
            "Sync passes that failed.",
            "counter",
            &[(String::new(), failures as f64)],
        );
        gauge(
            "downshiftarr_sync_duration_seconds",
            "Duration of the last successful sync pass.",
            "gauge",
            &[(String::new(), secs)],
        );
        gauge(
            "downshiftarr_plex_api_calls_total",
            "Requests sent to Plex by the sync.",
            "counter",
            &[(String::new(), calls as f64)],
        );
        let st = &self.socket;
        gauge(
            "downshiftarr_lookups_total",
            "lookup_source requests served.",
            "counter",
            &[(String::new(), st.lookups.load(Ordering::Relaxed) as f64)],
        );
        gauge(
            "downshiftarr_lookup_hits_total",
            "lookup_source requests that found the file.",
            "counter",
            &[(String::new(), st.lookup_hits.load(Ordering::Relaxed) as f64)],
        );
        gauge(
            "downshiftarr_socket_rejected_total",
            "Socket connections refused by the peer check.",
            "counter",
            &[(String::new(), st.rejected.load(Ordering::Relaxed) as f64)],
        );
        gauge(
            "downshiftarr_socket_bad_frames_total",
            "Malformed or oversized frames.",
            "counter",
            &[(String::new(), st.bad_frames.load(Ordering::Relaxed) as f64)],
        );
        let rows: Vec<(String, f64)> = self
            .decisions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|((o, d, r), n)| {
                (
                    format!(
                        "{{origin=\"{}\",decision=\"{}\",reason=\"{}\"}}",
                        esc(o),
                        esc(d),
                        esc(r)
                    ),
                    *n as f64,
                )
            })
            .collect();
        gauge(
            "downshiftarr_decisions_total",
            "Decisions by origin (shim, guard, tautulli), decision and reason.",
            "counter",
            &rows,
        );
        let (rows, pass_missing): (Vec<(String, f64)>, bool) = {
            let e = self.enforcement.lock().unwrap_or_else(|e| e.into_inner());
            (
                e.counts
                    .iter()
                    .map(|((a, r), n)| {
                        (
                            format!("{{action=\"{}\",reason=\"{}\"}}", esc(a), esc(r)),
                            *n as f64,
                        )
                    })
                    .collect(),
                e.plex_pass_missing,
            )
        };
        gauge(
            "downshiftarr_enforcements_total",
            "What enforcement did (terminated, switched_client, left_playing, skipped, failed).",
            "counter",
            &rows,
        );
        gauge(
            "downshiftarr_plex_pass_missing",
            "1 when Plex answered 401 to the last terminate: no Plex Pass.",
            "gauge",
            &[(String::new(), if pass_missing { 1.0 } else { 0.0 })],
        );
        let jobs: Vec<(String, f64)> = self
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(n, j)| (format!("{{job=\"{n}\"}}",), j.restarts as f64))
            .collect();
        gauge(
            "downshiftarr_job_restarts_total",
            "Job restarts after a failure.",
            "counter",
            &jobs,
        );
        m
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Counters for `status` and `/metrics`.
#[derive(Default)]
pub struct Stats {
    pub connections: AtomicU64,
    pub rejected: AtomicU64,
    pub lookups: AtomicU64,
    pub lookup_hits: AtomicU64,
    pub decisions: AtomicU64,
    pub bad_frames: AtomicU64,
}
