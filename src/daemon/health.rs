//! What the daemon knows about itself: uptime, job health, the last sync, index counts and
//! counters — served as `downshiftarr status` (over the socket), `/health` and `/metrics`.
//!
//! Counts live in the metrics registry (`metrics`), registered here once; `status` reads
//! them back, so `/metrics` and `status` cannot disagree. A new job registers its own metrics on
//! `Health::metrics` in one line and they appear on `/metrics` with no change here.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::metrics::{Counter, Gauge, Histogram, Registry};
use super::status::{
    EnforcementCount, EnforcementStatus, IndexStatus, JobStatus, ShimStatus, Status, SyncStatus,
    SyncSummary,
};
use crate::store::library::Counts;

/// The shim socket's counters (`status` → `shim`, `/metrics`).
pub struct Stats {
    pub connections: Counter,
    pub rejected: Counter,
    pub lookups: Counter,
    pub lookup_hits: Counter,
    pub decisions: Counter,
    pub bad_frames: Counter,
}

impl Stats {
    fn register(m: &Registry) -> Stats {
        Stats {
            connections: m.counter(
                "downshiftarr_socket_connections_total",
                "Socket connections accepted.",
                &[],
            ),
            rejected: m.counter(
                "downshiftarr_socket_rejected_total",
                "Socket connections refused by the peer check.",
                &[],
            ),
            lookups: m.counter(
                "downshiftarr_lookups_total",
                "lookup_source requests served.",
                &[],
            ),
            lookup_hits: m.counter(
                "downshiftarr_lookup_hits_total",
                "lookup_source requests that found the file.",
                &[],
            ),
            decisions: m.counter(
                "downshiftarr_shim_reports_total",
                "Decision records the shim sent over the socket.",
                &[],
            ),
            bad_frames: m.counter(
                "downshiftarr_socket_bad_frames_total",
                "Malformed or oversized frames.",
                &[],
            ),
        }
    }
}

/// The metrics `Health` keeps up to date itself.
struct Metrics {
    uptime: Gauge,
    items: Gauge,
    files: Gauge,
    sync_passes: Counter,
    sync_failures: Counter,
    sync_seconds: Gauge,
    sync_histogram: Histogram,
    plex_calls: Counter,
    decisions: Counter,
    enforcements: Counter,
    plex_pass_missing: Gauge,
    job_restarts: Counter,
}

impl Metrics {
    fn register(m: &Registry) -> Metrics {
        Metrics {
            uptime: m.gauge(
                "downshiftarr_uptime_seconds",
                "Seconds since the daemon started.",
                &[],
            ),
            items: m.gauge(
                "downshiftarr_index_items",
                "Items in the library index.",
                &["type"],
            ),
            files: m.gauge(
                "downshiftarr_index_files",
                "Media files in the library index.",
                &[],
            ),
            sync_passes: m.counter("downshiftarr_sync_passes_total", "Sync passes run.", &[]),
            sync_failures: m.counter(
                "downshiftarr_sync_failures_total",
                "Sync passes that failed.",
                &[],
            ),
            sync_seconds: m.gauge(
                "downshiftarr_sync_duration_seconds",
                "Duration of the last successful sync pass.",
                &[],
            ),
            sync_histogram: m.histogram(
                "downshiftarr_sync_pass_seconds",
                "Durations of successful sync passes.",
                &[],
                &[0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0],
            ),
            plex_calls: m.counter(
                "downshiftarr_plex_api_calls_total",
                "Requests sent to Plex by the sync.",
                &[],
            ),
            decisions: m.counter(
                "downshiftarr_decisions_total",
                "Decisions by origin (shim, guard, tautulli), decision and reason.",
                &["origin", "decision", "reason"],
            ),
            enforcements: m.counter(
                "downshiftarr_enforcements_total",
                "What enforcement did (terminated, switched_client, left_playing, skipped, failed).",
                &["action", "reason"],
            ),
            plex_pass_missing: m.gauge(
                "downshiftarr_plex_pass_missing",
                "1 when Plex answered 401 to the last terminate: no Plex Pass.",
                &[],
            ),
            job_restarts: m.counter(
                "downshiftarr_job_restarts_total",
                "Job restarts after a failure.",
                &["job"],
            ),
        }
    }
}

/// What enforcing did, as health counts it (built by `enforce::Outcome::health`).
#[derive(Clone, Debug, Default)]
pub struct Enforced {
    pub action: &'static str,
    pub reason: &'static str,
    pub via: Option<&'static str>,
    pub plex_pass_missing: bool,
    /// The outcome's one-line description.
    pub line: String,
}

/// Shared by every job.
pub struct Health {
    started: Instant,
    started_at: String,
    /// Every metric of the daemon; jobs register theirs here.
    pub metrics: Arc<Registry>,
    /// The shim socket's counters.
    pub socket: Arc<Stats>,
    m: Metrics,
    jobs: Mutex<BTreeMap<&'static str, JobStatus>>,
    last_sync: Mutex<Option<SyncStatus>>,
    counts: Mutex<IndexStatus>,
    /// The last enforcement failure, with its time.
    enforcement_error: Mutex<Option<String>>,
    /// The sections jobs bring to `status` (`throttle`…), by job name.
    sections: Mutex<BTreeMap<String, serde_json::Value>>,
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

impl Health {
    pub fn new() -> Health {
        let metrics = Arc::new(Registry::default());
        let m = Metrics::register(&metrics);
        let socket = Arc::new(Stats::register(&metrics));
        Health {
            started: Instant::now(),
            started_at: downshiftarr_shim::record::now_rfc3339(),
            metrics,
            socket,
            m,
            jobs: Mutex::default(),
            last_sync: Mutex::default(),
            counts: Mutex::default(),
            enforcement_error: Mutex::default(),
            sections: Mutex::default(),
        }
    }

    pub fn job_failed(&self, name: &'static str, error: String) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let j = jobs.entry(name).or_default();
        j.restarts += 1;
        j.last_error = Some(error);
        self.m.job_restarts.inc_with(&[name]);
    }

    pub fn job_started(&self, name: &'static str) {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name)
            .or_default();
        // The series exists (at 0) from the job's start, as a hand-written exposition had it.
        self.m.job_restarts.add_with(&[name], 0.0);
    }

    pub fn synced(&self, result: Result<&SyncSummary, String>, counts: Option<Counts>) {
        self.m.sync_passes.inc();
        match &result {
            Ok(sum) => {
                self.m.sync_seconds.set(sum.seconds);
                self.m.sync_histogram.observe(sum.seconds);
                self.m.plex_calls.add_with(&[], sum.api_calls as f64);
            }
            Err(_) => self.m.sync_failures.inc(),
        }
        *self.last_sync.lock().unwrap_or_else(|e| e.into_inner()) = Some(SyncStatus {
            at: downshiftarr_shim::record::now_rfc3339(),
            ok: result.is_ok(),
            summary: result.as_ref().ok().map(|s| (*s).clone()),
            error: result.err(),
        });
        if let Some(c) = counts {
            self.set_counts(c);
        }
    }

    /// The index's counts (at boot, from the database already loaded; after each sync).
    pub fn set_counts(&self, c: Counts) {
        self.m.items.set_with(&["movie"], c.movies as f64);
        self.m.items.set_with(&["show"], c.shows as f64);
        self.m.items.set_with(&["episode"], c.episodes as f64);
        self.m.files.set(c.files as f64);
        *self.counts.lock().unwrap_or_else(|e| e.into_inner()) = IndexStatus {
            sections: c.sections,
            movies: c.movies,
            shows: c.shows,
            episodes: c.episodes,
            files: c.files,
        };
    }

    pub fn decision(&self, origin: &str, decision: &str, reason: &str) {
        self.m.decisions.inc_with(&[origin, decision, reason]);
    }

    /// Counts what enforcement did; remembers the last failure and a missing Plex Pass.
    pub fn enforced(&self, o: &Enforced) {
        self.m.enforcements.inc_with(&[o.action, o.reason]);
        if o.plex_pass_missing {
            self.m.plex_pass_missing.set(1.0);
        }
        if o.action == "failed" || o.plex_pass_missing {
            *self
                .enforcement_error
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(format!(
                "{} {}",
                downshiftarr_shim::record::now_rfc3339(),
                o.line
            ));
        } else if o.action == "terminated" && o.via == Some("plex") {
            self.m.plex_pass_missing.set(0.0);
        }
    }

    /// A job's own `status` section, replaced whole.
    pub fn set_section(&self, job: &str, value: serde_json::Value) {
        self.sections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job.to_string(), value);
    }

    /// Whether every job is healthy (no job failing right now).
    pub fn healthy(&self) -> bool {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .all(|j| j.last_error.is_none())
    }

    /// The status `downshiftarr status` and `/health` show.
    pub fn status(&self) -> Status {
        let st = &self.socket;
        let n = |c: &Counter| c.get(&[]) as u64;
        Status {
            version: downshiftarr_shim::VERSION.into(),
            started_at: self.started_at.clone(),
            uptime_s: self.started.elapsed().as_secs(),
            healthy: self.healthy(),
            index: self
                .counts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            last_sync: self
                .last_sync
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            jobs: self
                .jobs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            enforcement: EnforcementStatus {
                counts: self
                    .m
                    .enforcements
                    .series()
                    .into_iter()
                    .map(|(labels, count)| {
                        let mut l = labels.into_iter();
                        EnforcementCount {
                            action: l.next().unwrap_or_default(),
                            reason: l.next().unwrap_or_default(),
                            count: count as u64,
                        }
                    })
                    .collect(),
                last_error: self
                    .enforcement_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone(),
                plex_pass_missing: self.m.plex_pass_missing.get(&[]) == 1.0,
            },
            shim: ShimStatus {
                lookups: n(&st.lookups),
                lookup_hits: n(&st.lookup_hits),
                decisions: n(&st.decisions),
                rejected_connections: n(&st.rejected),
            },
            sections: self
                .sections
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    /// The status as JSON (`/health`'s body).
    pub fn status_json(&self) -> serde_json::Value {
        serde_json::to_value(self.status()).unwrap_or_default()
    }

    /// Prometheus text exposition of every registered metric.
    pub fn metrics(&self) -> String {
        self.m.uptime.set(self.started.elapsed().as_secs_f64());
        self.metrics.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_keep_the_names_and_labels_of_the_hand_written_exposition() {
        let h = Health::new();
        h.set_counts(Counts {
            sections: 2,
            movies: 9,
            shows: 1,
            episodes: 4,
            files: 16,
        });
        h.synced(
            Ok(&SyncSummary {
                api_calls: 7,
                seconds: 0.5,
                ..SyncSummary::default()
            }),
            None,
        );
        h.synced(Err("boom".into()), None);
        h.decision("shim", "refuse", "source \"facts\" unknown");
        h.socket.lookups.inc();
        h.socket.lookup_hits.inc();
        h.socket.rejected.inc();
        h.socket.bad_frames.inc();
        h.job_started("sync");
        h.job_failed("socket", "x".into());
        h.enforced(&Enforced {
            action: "terminated",
            reason: "refused by the shim",
            plex_pass_missing: true,
            ..Enforced::default()
        });
        let text = h.metrics();
        for line in [
            "# TYPE downshiftarr_uptime_seconds gauge",
            "downshiftarr_index_items{type=\"movie\"} 9",
            "downshiftarr_index_items{type=\"show\"} 1",
            "downshiftarr_index_items{type=\"episode\"} 4",
            "downshiftarr_index_files 16",
            "# TYPE downshiftarr_sync_passes_total counter",
            "downshiftarr_sync_passes_total 2",
            "downshiftarr_sync_failures_total 1",
            "downshiftarr_sync_duration_seconds 0.5",
            "downshiftarr_plex_api_calls_total 7",
            "downshiftarr_sync_pass_seconds_bucket{le=\"0.5\"} 1",
            "downshiftarr_sync_pass_seconds_bucket{le=\"0.1\"} 0",
            "downshiftarr_sync_pass_seconds_count 1",
            "# TYPE downshiftarr_lookups_total counter",
            "downshiftarr_lookups_total 1",
            "downshiftarr_lookup_hits_total 1",
            "downshiftarr_socket_rejected_total 1",
            "downshiftarr_socket_bad_frames_total 1",
            "downshiftarr_decisions_total{origin=\"shim\",decision=\"refuse\",reason=\"source \\\"facts\\\" unknown\"} 1",
            "downshiftarr_enforcements_total{action=\"terminated\",reason=\"refused by the shim\"} 1",
            "downshiftarr_plex_pass_missing 1",
            "downshiftarr_job_restarts_total{job=\"socket\"} 1",
            "downshiftarr_job_restarts_total{job=\"sync\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
        let st = h.status();
        assert!(!st.healthy);
        assert_eq!(st.index.movies, 9);
        assert_eq!(st.shim.lookups, 1);
        assert_eq!(st.shim.rejected_connections, 1);
        assert_eq!(st.enforcement.counts[0].count, 1);
        assert!(st.enforcement.plex_pass_missing);
        assert!(st.enforcement.last_error.is_some());
        let last = st.last_sync.unwrap();
        assert!(!last.ok && last.summary.is_none() && last.error.as_deref() == Some("boom"));
        assert_eq!(st.jobs["socket"].restarts, 1);
    }

    #[test]
    fn a_job_adds_a_metric_in_one_line() {
        let h = Health::new();
        h.metrics
            .counter("downshiftarr_x_total", "Xs.", &["kind"])
            .inc_with(&["movie"]);
        assert!(h
            .metrics()
            .contains("\ndownshiftarr_x_total{kind=\"movie\"} 1\n"));
    }
}
