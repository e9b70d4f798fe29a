//! The daemon's status, typed: built by `Health::status`, sent over the socket (`status`
//! request) and on `/health`, read back by `downshiftarr status`. One set of structs for both
//! ends, so a field renamed on one side cannot silently vanish on the other.
//!
//! The JSON field names are a contract (`status --json` is read by scripts and tests): change
//! them only with a note in the README. Every field has a default, so a `status` from one
//! version still reads the answer of a daemon of another.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    pub version: String,
    pub started_at: String,
    pub uptime_s: u64,
    /// No job failing right now.
    pub healthy: bool,
    pub index: IndexStatus,
    /// `null` until the first sync pass ends.
    pub last_sync: Option<SyncStatus>,
    /// By job name.
    pub jobs: BTreeMap<String, JobStatus>,
    pub enforcement: EnforcementStatus,
    pub shim: ShimStatus,
    /// The sections of jobs that bring their own (`throttle`, `scrobble`, `downloads`…), at the
    /// top level under the job's name. A job fills its section with its own `Serialize` type;
    /// the CLI prints what it knows and passes the rest through `--json` untouched.
    #[serde(flatten)]
    pub sections: BTreeMap<String, Value>,
}

/// What the library index holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IndexStatus {
    pub sections: i64,
    pub movies: i64,
    pub shows: i64,
    pub episodes: i64,
    pub files: i64,
}

/// The last sync pass.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncStatus {
    pub at: String,
    pub ok: bool,
    /// What a successful pass did; `null` when it failed.
    pub summary: Option<SyncSummary>,
    /// Why it failed; `null` when it did not.
    pub error: Option<String>,
}

/// What a sync pass did (`jobs::index::sync::Summary`); `held_back`: candidate deletions
/// not applied this pass.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncSummary {
    pub seen: u64,
    pub changed: u64,
    pub added: u64,
    pub removed: u64,
    pub held_back: u64,
    pub skipped_sections: u64,
    pub api_calls: u64,
    pub seconds: f64,
}

/// One supervised job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobStatus {
    pub restarts: u32,
    /// The job's last failure, if it failed (any job with one makes the daemon unhealthy).
    pub last_error: Option<String>,
}

/// What enforcement did since the daemon started.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EnforcementStatus {
    /// Sorted by action, then reason.
    pub counts: Vec<EnforcementCount>,
    pub last_error: Option<String>,
    /// The last terminate Plex answered with 401: no Plex Pass on the owner's account.
    pub plex_pass_missing: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EnforcementCount {
    pub action: String,
    pub reason: String,
    pub count: u64,
}

/// The shim's socket.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShimStatus {
    pub lookups: u64,
    pub lookup_hits: u64,
    pub decisions: u64,
    pub rejected_connections: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_field_names_are_the_contract() {
        let mut s = Status {
            version: "1.2.3".into(),
            healthy: true,
            last_sync: Some(SyncStatus {
                at: "t".into(),
                ok: false,
                summary: None,
                error: Some("boom".into()),
            }),
            ..Status::default()
        };
        s.jobs.insert("sync".into(), JobStatus::default());
        s.enforcement.counts.push(EnforcementCount {
            action: "terminated".into(),
            reason: "refused by the shim".into(),
            count: 2,
        });
        s.sections
            .insert("throttle".into(), serde_json::json!({"limited": true}));
        let v = serde_json::to_value(&s).unwrap();
        for p in [
            "/version",
            "/started_at",
            "/uptime_s",
            "/healthy",
            "/index/movies",
            "/index/files",
            "/last_sync/at",
            "/last_sync/ok",
            "/last_sync/summary",
            "/last_sync/error",
            "/jobs/sync/restarts",
            "/jobs/sync/last_error",
            "/enforcement/counts/0/action",
            "/enforcement/counts/0/reason",
            "/enforcement/counts/0/count",
            "/enforcement/last_error",
            "/enforcement/plex_pass_missing",
            "/shim/lookups",
            "/shim/lookup_hits",
            "/shim/decisions",
            "/shim/rejected_connections",
            "/throttle/limited",
        ] {
            assert!(v.pointer(p).is_some(), "{p} missing in {v}");
        }
        assert_eq!(serde_json::from_value::<Status>(v).unwrap(), s);
    }

    #[test]
    fn a_partial_or_newer_answer_still_reads() {
        let s: Status = serde_json::from_str(
            r#"{"version":"9","healthy":false,"index":{"movies":3},"scrobble":{"queued":1}}"#,
        )
        .unwrap();
        assert_eq!(s.index.movies, 3);
        assert_eq!(s.last_sync, None);
        assert_eq!(s.sections["scrobble"]["queued"], 1);
    }
}
