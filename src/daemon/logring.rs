//! The last log lines, in memory, for `GET /api/logs` and `/api/logs/stream`: a bounded ring
//! (2,000 lines) fed by a tracing layer. Each line is redacted before it is stored
//! (`X-Plex-Token=…` and every secret of the configuration in effect), so no secret is ever
//! in the ring.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// Lines kept.
pub const CAPACITY: usize = 2000;
/// The longest line kept (a longer message is cut).
const MAX_LINE: usize = 4096;

/// One log line.
#[derive(Clone, Debug, Serialize)]
pub struct Line {
    /// Rises by one per line, from 1.
    pub seq: u64,
    pub at: String,
    pub level: String,
    pub target: String,
    pub message: String,
}

impl Line {
    /// The line as text: `<at> <LEVEL> <target>: <message>`.
    pub fn text(&self) -> String {
        format!(
            "{} {} {}: {}",
            self.at, self.level, self.target, self.message
        )
    }

    /// Whether the line belongs to `job` (`scrobble`: a target with a `::scrobble` part).
    pub fn is_of(&self, job: Option<&str>) -> bool {
        match job {
            None | Some("") => true,
            Some(j) => self
                .target
                .split("::")
                .skip(1)
                .any(|part| part == j || part.starts_with(&format!("{j}_"))),
        }
    }
}

struct State {
    lines: VecDeque<Line>,
    next: u64,
    secrets: Vec<String>,
}

/// The ring. One per process ([`ring`]).
pub struct Ring {
    state: Mutex<State>,
    grew: Condvar,
}

impl Ring {
    pub fn new() -> Ring {
        Ring {
            state: Mutex::new(State {
                lines: VecDeque::with_capacity(CAPACITY),
                next: 1,
                secrets: Vec::new(),
            }),
            grew: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The secrets redacted from every later line (the configuration's, set at each load).
    pub fn set_secrets(&self, mut secrets: Vec<String>) {
        secrets.retain(|s| !s.is_empty());
        // Longest first: a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        self.lock().secrets = secrets;
    }

    /// Stores a line (redacted here).
    pub fn push(&self, level: &str, target: &str, message: &str) {
        let mut st = self.lock();
        let mut text = downshiftarr_shim::record::redact(message, None);
        for s in &st.secrets {
            if text.contains(s.as_str()) {
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
        let seq = st.next;
        st.next += 1;
        if st.lines.len() == CAPACITY {
            st.lines.pop_front();
        }
        st.lines.push_back(Line {
            seq,
            at: downshiftarr_shim::record::now_rfc3339(),
            level: level.to_string(),
            target: target.to_string(),
            message: text,
        });
        drop(st);
        self.grew.notify_all();
    }

    /// The last `n` lines of `job` (all jobs when `None`), oldest first.
    pub fn tail(&self, job: Option<&str>, n: usize) -> Vec<Line> {
        let st = self.lock();
        let mut out: Vec<Line> = st
            .lines
            .iter()
            .rev()
            .filter(|l| l.is_of(job))
            .take(n)
            .cloned()
            .collect();
        out.reverse();
        out
    }

    /// The sequence number the next line will get.
    pub fn next_seq(&self) -> u64 {
        self.lock().next
    }

    /// The lines numbered `from` or later, waiting up to `wait` for one when there is none.
    pub fn since(&self, from: u64, wait: Duration) -> Vec<Line> {
        let mut st = self.lock();
        if st.next <= from {
            st = self
                .grew
                .wait_timeout_while(st, wait, |s| s.next <= from)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        st.lines.iter().filter(|l| l.seq >= from).cloned().collect()
    }
}

impl Default for Ring {
    fn default() -> Self {
        Ring::new()
    }
}

/// The process's ring.
pub fn ring() -> &'static Ring {
    static RING: OnceLock<Ring> = OnceLock::new();
    RING.get_or_init(Ring::new)
}

/// The tracing layer that feeds [`ring`].
pub struct RingLayer;

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let mut m = format!("{value:?}");
            if !self.0.is_empty() {
                m.push(' ');
                m.push_str(&self.0);
            }
            self.0 = m;
        } else {
            if !self.0.is_empty() {
                self.0.push(' ');
            }
            let _ = write!(self.0, "{}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            if !self.0.is_empty() {
                self.0.push(' ');
            }
            let _ = write!(self.0, "{}={value}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for RingLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut f = Fields(String::new());
        event.record(&mut f);
        let meta = event.metadata();
        ring().push(meta.level().as_str(), meta.target(), &f.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_is_bounded_redacted_and_filtered_by_job() {
        let r = Ring::new();
        r.set_secrets(vec!["s3cr3t".into(), String::new()]);
        for i in 0..CAPACITY + 10 {
            r.push("INFO", "downshiftarr::jobs::sync", &format!("line {i}"));
        }
        r.push(
            "WARN",
            "downshiftarr::jobs::scrobble::run",
            "token s3cr3t and X-Plex-Token=abcdef in a URL",
        );
        let all = r.tail(None, 5000);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all[0].message, "line 11");
        let s = r.tail(Some("scrobble"), 80);
        assert_eq!(s.len(), 1);
        assert!(!s[0].message.contains("s3cr3t"), "{}", s[0].message);
        assert!(!s[0].message.contains("abcdef"), "{}", s[0].message);
        assert!(s[0]
            .text()
            .contains("WARN downshiftarr::jobs::scrobble::run: token"));
        assert!(r.tail(Some("throttle"), 80).is_empty());
        assert_eq!(r.tail(None, 3).len(), 3);
    }

    #[test]
    fn since_waits_for_a_new_line() {
        let r = std::sync::Arc::new(Ring::new());
        let from = r.next_seq();
        assert!(r.since(from, Duration::from_millis(10)).is_empty());
        let r2 = r.clone();
        let t = std::thread::spawn(move || r2.since(from, Duration::from_secs(15)));
        std::thread::sleep(Duration::from_millis(50));
        r.push("INFO", "x::scrobble", "hello");
        let got = t.join().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].message, "hello");
    }
}
