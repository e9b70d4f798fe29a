//! The `downloads` section of `downshiftarr status` (and `/health`, and
//! `GET /api/downloads/status`): one typed struct the job fills and the CLI reads back, and its
//! readable lines. Every field has a default, so a CLI of one version reads the section of a
//! daemon of another.

use serde::{Deserialize, Serialize};

/// The job's name: in the job table, the status section and the metrics.
pub const JOB: &str = "downloads";

/// A decision waiting in the durable queue (Radarr did not answer, or refused).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Waiting {
    pub decision_id: i64,
    /// `Dune (2021) for alice`.
    pub what: String,
    pub attempts: u32,
    /// When it is tried again (RFC 3339).
    pub next_at: String,
    pub last_error: Option<String>,
}

/// What `status` says of the downloads job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DownloadsStatus {
    pub running: bool,
    /// `downloads.dry_run`: decisions are recorded, Radarr is not changed.
    pub dry_run: bool,
    /// Where plays come from: `jellyfin` (webhooks), `plex` (websocket and webhooks).
    pub sources: Vec<String>,
    /// Plays taken since start, and those that counted (recorded in the watch history).
    pub plays: u64,
    pub plays_counted: u64,
    pub last_play: Option<String>,
    /// The last decision, as the decision log says it.
    pub last_decision: Option<String>,
    /// Searches sent to Radarr since start.
    pub searches: u64,
    /// Decisions waiting for Radarr (never dropped: retried with back-off).
    pub queue_depth: u64,
    pub waiting: Vec<Waiting>,
    /// Searches sent and followed until Radarr says they are done.
    pub searches_in_flight: u64,
    pub last_error: Option<String>,
    /// What keeps the job from doing its work (Radarr's client unusable…).
    pub problem: Option<String>,
}

/// The most waiting decisions the section lists (the depth counts them all).
pub const MAX_WAITING_SHOWN: usize = 20;

/// The section, readable; a section this version cannot read is shown as it is.
pub fn lines(v: &serde_json::Value) -> Vec<String> {
    let Ok(s) = serde_json::from_value::<DownloadsStatus>(v.clone()) else {
        return vec![format!("downloads: {v}")];
    };
    let mut out = Vec::new();
    let sources = if s.sources.is_empty() {
        "no source".to_string()
    } else {
        s.sources.join(" + ")
    };
    out.push(format!(
        "downloads: {}{}, {} play(s) taken, {} counted, {} search(es) sent",
        sources,
        if s.dry_run { " (dry run)" } else { "" },
        s.plays,
        s.plays_counted,
        s.searches
    ));
    if let Some(d) = &s.last_decision {
        out.push(format!("downloads: last decision: {d}"));
    }
    if s.queue_depth > 0 {
        out.push(format!(
            "downloads: {} decision(s) waiting for Radarr (retried, never dropped)",
            s.queue_depth
        ));
        for w in &s.waiting {
            out.push(format!(
                "  #{} {}: attempt {}, next {}{}",
                w.decision_id,
                w.what,
                w.attempts,
                w.next_at,
                w.last_error
                    .as_ref()
                    .map(|e| format!(" — {e}"))
                    .unwrap_or_default()
            ));
        }
    }
    if let Some(p) = &s.problem {
        out.push(format!("downloads: PROBLEM: {p}"));
    } else if let Some(e) = &s.last_error {
        out.push(format!("downloads: last error: {e}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_reads_back_and_shows_what_waits() {
        let s = DownloadsStatus {
            running: true,
            sources: vec!["jellyfin".into(), "plex".into()],
            plays: 3,
            plays_counted: 2,
            queue_depth: 1,
            waiting: vec![Waiting {
                decision_id: 7,
                what: "Dune (2021) for alice".into(),
                attempts: 2,
                next_at: "2026-12-04T10:00:00Z".into(),
                last_error: Some("Radarr at http://r/api/v3/movie answered 500".into()),
            }],
            ..DownloadsStatus::default()
        };
        let l = lines(&serde_json::to_value(&s).unwrap()).join("\n");
        assert!(
            l.contains("jellyfin + plex, 3 play(s) taken, 2 counted"),
            "{l}"
        );
        assert!(l.contains("1 decision(s) waiting for Radarr"), "{l}");
        assert!(
            l.contains("#7 Dune (2021) for alice: attempt 2") && l.contains("answered 500"),
            "{l}"
        );
        assert_eq!(lines(&serde_json::json!([1])), vec!["downloads: [1]"]);
    }
}
