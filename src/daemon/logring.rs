//! The last log lines, in memory, for the ops API: `GET /api/logs?job=scrobble&n=80` and its
//! live stream (`/api/logs/stream`). A tracing layer beside journald/stderr formats each event
//! once into a bounded ring; readers take a copy (tail) or wait for lines newer than the last
//! they saw (stream). Lines are redacted before they enter the ring: the Plex token form
//! (`X-Plex-Token=…`) and every secret of the configuration in effect ([`set_secrets`]).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Condvar, LazyLock, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// How many lines the ring keeps.
pub const CAPACITY: usize = 2000;
/// The longest line kept (a runaway message is cut, not stored whole).
const MAX_LINE: usize = 4096;

/// One log line.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Line {
    /// Increases by one per line, never reused: a stream resumes after the last it sent.
    pub seq: u64,
    /// RFC 3339, UTC, seconds.
    pub time: String,
    pub level: String,
    /// The module path that logged (`downshiftarr::jobs::scrobble::run`).
    pub target: String,
    /// The job the line belongs to: a `job` field, else the module's job
    /// (`jobs::<name>`), else none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// The message and its fields, redacted.
    pub text: String,
}

impl Line {
    /// The line as the text tail shows it.
    pub fn render(&self) -> String {
        format!("{} {:>5} {}", self.time, self.level, self.text)
    }

    fn matches(&self, job: Option<&str>) -> bool {
        job.is_none_or(|j| self.job.as_deref() == Some(j))
    }
}

#[derive(Default)]
struct Ring {
    lines: VecDeque<Line>,
    next_seq: u64,
}

/// The ring and its waiters.
pub struct LogRing {
    ring: Mutex<Ring>,
    grew: Condvar,
    secrets: RwLock<Vec<String>>,
}

/// The daemon's ring.
pub static RING: LazyLock<LogRing> = LazyLock::new(LogRing::new);

/// Sets the secrets redacted from every line from now on (at start and on each reload).
pub fn set_secrets(secrets: Vec<String>) {
    *RING.secrets.write().unwrap_or_else(|e| e.into_inner()) = secrets;
}

impl Default for LogRing {
    fn default() -> Self {
        LogRing::new()
    }
}

impl LogRing {
    pub fn new() -> LogRing {
        LogRing {
            ring: Mutex::default(),
            grew: Condvar::new(),
            secrets: RwLock::default(),
        }
    }

    /// Adds a line (redacted here), dropping the oldest beyond [`CAPACITY`].
    pub fn push(&self, level: &str, target: &str, job: Option<String>, text: &str) {
        let mut text = downshiftarr_shim::record::redact(text, None);
        for s in self
            .secrets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            if !s.is_empty() && text.contains(s.as_str()) {
                text = text.replace(s.as_str(), crate::config::secret::REDACTED);
            }
        }
        if text.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        let time = downshiftarr_shim::record::now_rfc3339();
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let seq = ring.next_seq;
        ring.next_seq += 1;
        if ring.lines.len() == CAPACITY {
            ring.lines.pop_front();
        }
        ring.lines.push_back(Line {
            seq,
            time,
            level: level.to_string(),
            target: target.to_string(),
            job,
            text,
        });
        drop(ring);
        self.grew.notify_all();
    }

    /// The last `n` lines (of `job`, when given), oldest first.
    pub fn tail(&self, job: Option<&str>, n: usize) -> Vec<Line> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Line> = ring
            .lines
            .iter()
            .rev()
            .filter(|l| l.matches(job))
            .take(n)
            .cloned()
            .collect();
        out.reverse();
        out
    }

    /// The sequence number the next line will get: a stream starts here.
    pub fn next_seq(&self) -> u64 {
        self.ring.lock().unwrap_or_else(|e| e.into_inner()).next_seq
    }

    /// Lines with `seq >= from` (of `job`), waiting up to `timeout` for the first; and the
    /// `from` to ask for next. Lines that fell off the ring meanwhile are skipped.
    pub fn wait_from(&self, from: u64, job: Option<&str>, timeout: Duration) -> (Vec<Line>, u64) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if ring.next_seq <= from {
            ring = self
                .grew
                .wait_timeout_while(ring, timeout, |r| r.next_seq <= from)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        let next = ring.next_seq;
        let lines = ring
            .lines
            .iter()
            .filter(|l| l.seq >= from && l.matches(job))
            .cloned()
            .collect();
        (lines, next)
    }
}

/// The job a module path belongs to: `downshiftarr::jobs::scrobble::run` → `scrobble`.
fn job_of(target: &str) -> Option<String> {
    let mut parts = target.split("::");
    parts.find(|p| *p == "jobs")?;
    parts.next().map(str::to_string)
}

/// The tracing layer that feeds [`RING`].
pub struct RingLayer;

impl<S: Subscriber> Layer<S> for RingLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut v = Fields::default();
        event.record(&mut v);
        let job = v.job.take().or_else(|| job_of(meta.target()));
        RING.push(meta.level().as_str(), meta.target(), job, &v.text);
    }
}

/// The message first, then `key=value` for every other field, as the fmt layer prints them.
#[derive(Default)]
struct Fields {
    text: String,
    job: Option<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "job" {
            self.job = Some(value.to_string());
        }
        if field.name() == "message" {
            self.text.insert_str(0, value);
        } else {
            let _ = write!(self.text, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let m = format!("{value:?}");
            self.text.insert_str(0, &m);
        } else {
            if field.name() == "job" {
                self.job = Some(format!("{value:?}").trim_matches('"').to_string());
            }
            let _ = write!(self.text, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_last_lines_and_filters_by_job() {
        let r = LogRing::new();
        for i in 0..CAPACITY + 5 {
            let job = (i % 2 == 0).then(|| "scrobble".to_string());
            r.push("INFO", "downshiftarr::x", job, &format!("line {i}"));
        }
        let all = r.tail(None, 10_000);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all[0].text, "line 5");
        let s = r.tail(Some("scrobble"), 3);
        assert_eq!(
            s.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
            [
                format!("line {}", CAPACITY),
                format!("line {}", CAPACITY + 2),
                format!("line {}", CAPACITY + 4)
            ]
        );
        assert!(r.tail(Some("throttle"), 5).is_empty());
    }

    #[test]
    fn secrets_and_plex_tokens_never_enter_the_ring() {
        let r = LogRing::new();
        *r.secrets.write().unwrap() = vec!["hunter2-secret".into()];
        r.push(
            "WARN",
            "t",
            None,
            "GET http://plex/x?X-Plex-Token=abcdef123 with hunter2-secret",
        );
        let l = &r.tail(None, 1)[0];
        assert!(!l.text.contains("abcdef123"), "{}", l.text);
        assert!(!l.text.contains("hunter2"), "{}", l.text);
        let long = "é".repeat(MAX_LINE);
        r.push("INFO", "t", None, &long);
        assert!(r.tail(None, 1)[0].text.len() <= MAX_LINE + '…'.len_utf8());
    }

    #[test]
    fn a_waiter_gets_the_lines_after_its_cursor_and_times_out_without_any() {
        let r = std::sync::Arc::new(LogRing::new());
        r.push("INFO", "t", None, "before");
        let from = r.next_seq();
        let (none, next) = r.wait_from(from, None, Duration::from_millis(20));
        assert!(none.is_empty());
        assert_eq!(next, from);
        let w = {
            let r = r.clone();
            std::thread::spawn(move || r.wait_from(from, Some("scrobble"), Duration::from_secs(10)))
        };
        std::thread::sleep(Duration::from_millis(50));
        r.push(
            "INFO",
            "downshiftarr::jobs::scrobble::run",
            job_of("downshiftarr::jobs::scrobble::run"),
            "after",
        );
        let (lines, next) = w.join().unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].text, "after");
        assert_eq!(next, from + 1);
    }

    #[test]
    fn jobs_are_read_from_module_paths() {
        assert_eq!(
            job_of("downshiftarr::jobs::scrobble::run").as_deref(),
            Some("scrobble")
        );
        assert_eq!(
            job_of("downshiftarr::jobs::sessions").as_deref(),
            Some("sessions")
        );
        assert_eq!(job_of("downshiftarr::daemon::http"), None);
        assert_eq!(job_of("downshiftarr::jobs"), None);
    }
}
