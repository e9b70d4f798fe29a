//! The `scrobble` section of `downshiftarr status` (and `/health`, and
//! `GET /api/scrobble/status`): one typed struct the job fills and the CLI reads back, and its
//! readable lines. Every field has a default, so a CLI of one version reads the section of a
//! daemon of another.

use serde::{Deserialize, Serialize};

/// The job's name: in the job table, the status section and the metrics.
pub const JOB: &str = "scrobble";

/// What `status` says of the scrobble job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScrobbleStatus {
    /// Whether Plex's notification websocket is open now (the `events` job runs without a
    /// failure); `false` also when Plex is not configured (webhooks only).
    pub websocket_connected: bool,
    /// The last playback notification from the websocket (RFC 3339).
    pub last_websocket_event: Option<String>,
    /// The last Plex webhook taken (RFC 3339).
    pub last_webhook: Option<String>,
    /// The Plex users with a Trakt account linked (their stored, lower-cased names).
    pub users_linked: Vec<String>,
    /// Calls waiting in the outbox, and the age of the oldest (seconds).
    pub outbox_depth: u64,
    pub outbox_oldest_s: Option<u64>,
    /// `POST /api/scrobble/stop`: events are followed, nothing new is queued.
    pub paused: bool,
    /// Plays being followed now.
    pub active_plays: u64,
    /// Duplicate events dropped since start.
    pub duplicates_suppressed: u64,
    /// The last call Trakt took (`2026-12-04T10:00:00Z stop alice Dune (2021) 93% → scrobble`).
    pub last_delivery: Option<String>,
    /// The last failure (Trakt unreachable, a refused token…), with when.
    pub last_error: Option<String>,
    /// What keeps the job from doing its work (no user linked, Trakt client unusable…).
    pub problem: Option<String>,
}

/// The section, readable (a few lines); a section this version cannot read is shown as it is.
pub fn lines(v: &serde_json::Value) -> Vec<String> {
    let Ok(s) = serde_json::from_value::<ScrobbleStatus>(v.clone()) else {
        return vec![format!("scrobble: {v}")];
    };
    let mut out = Vec::new();
    let watcher = if s.websocket_connected {
        "websocket connected".to_string()
    } else {
        "websocket NOT connected".to_string()
    };
    let last = match (&s.last_websocket_event, &s.last_webhook) {
        (Some(w), Some(h)) => format!(", last event {w}, last webhook {h}"),
        (Some(w), None) => format!(", last event {w}"),
        (None, Some(h)) => format!(", last webhook {h}"),
        (None, None) => ", no event yet".to_string(),
    };
    let users = if s.users_linked.is_empty() {
        "no user linked".to_string()
    } else {
        format!("users linked: {}", s.users_linked.join(", "))
    };
    out.push(format!(
        "scrobble: {}{watcher}{last}; {users}",
        if s.paused {
            "PAUSED (nothing new is queued), "
        } else {
            ""
        }
    ));
    let oldest = s
        .outbox_oldest_s
        .map(|a| format!(" (oldest {a} s)"))
        .unwrap_or_default();
    out.push(format!(
        "scrobble: {} play(s) followed, {} call(s) waiting{oldest}, {} duplicate(s) suppressed",
        s.active_plays, s.outbox_depth, s.duplicates_suppressed
    ));
    if let Some(d) = &s.last_delivery {
        out.push(format!("scrobble last delivery: {d}"));
    }
    if let Some(e) = &s.last_error {
        out.push(format!("scrobble last error: {e}"));
    }
    if let Some(p) = &s.problem {
        out.push(format!("scrobble PROBLEM: {p}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_section_reads_as_a_few_lines_that_say_what_is_wrong() {
        let v = json!({"websocket_connected": true, "last_websocket_event": "2026-12-04T10:00:00Z",
            "users_linked": ["alice", "bob"], "outbox_depth": 2, "outbox_oldest_s": 31,
            "active_plays": 1, "duplicates_suppressed": 4,
            "last_delivery": "2026-12-04T10:00:01Z stop alice 93% → scrobble",
            "last_error": "2026-12-04T09:59:00Z trakt: 503"});
        let l = lines(&v).join("\n");
        for want in [
            "scrobble: websocket connected, last event 2026-12-04T10:00:00Z; users linked: alice, bob",
            "scrobble: 1 play(s) followed, 2 call(s) waiting (oldest 31 s), 4 duplicate(s) suppressed",
            "scrobble last delivery: 2026-12-04T10:00:01Z stop alice 93% → scrobble",
            "scrobble last error: 2026-12-04T09:59:00Z trakt: 503",
        ] {
            assert!(l.contains(want), "{want:?} not in\n{l}");
        }
        assert!(!l.contains("PROBLEM") && !l.contains("PAUSED"), "{l}");
        let v = json!({"paused": true, "problem": "no Plex user has a Trakt account linked"});
        let l = lines(&v).join("\n");
        assert!(l.contains("scrobble: PAUSED (nothing new is queued), websocket NOT connected, no event yet; no user linked"), "{l}");
        assert!(
            l.contains("scrobble PROBLEM: no Plex user has a Trakt account linked"),
            "{l}"
        );
        // A section of another shape is shown as it came, never dropped.
        assert_eq!(
            lines(&json!({"paused": "maybe"})),
            vec![r#"scrobble: {"paused":"maybe"}"#]
        );
    }
}
