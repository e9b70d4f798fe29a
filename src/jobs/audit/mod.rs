//! The decision audit, daemon side: every decision (shim, reactive guard, Tautulli trigger)
//! with its reason and what enforcement did, written to the store; what the shim wrote to
//! its decision log while the daemon was down is imported when the daemon starts
//! ([`import_decision_log`]). `downshiftarr decisions` (`crate::cli::decisions`) lists them.

pub mod logfile;
pub mod writer;

use std::path::Path;

use anyhow::Result;
use serde_json::Value;

use crate::store::Store;

/// Stores one decision record (the shim's JSON record, or the daemon's own).
pub fn insert(db: &Store, rec: &Value) -> Result<()> {
    db.insert_decision(rec)
}

/// The daemon's start-up import of the decision log (see [`logfile`]); never fatal.
pub fn import_decision_log(db: &Store, log: &str) {
    if log.is_empty() {
        return;
    }
    match logfile::import(db, Path::new(log)) {
        Ok(r) if r.records > 0 || r.skipped > 0 => tracing::info!(
            imported = r.records,
            skipped = r.skipped,
            rotated_to = %logfile::rotated_path(Path::new(log)).display(),
            "decision log {log} imported"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("decision log {log} not imported: {e:#}"),
    }
}

/// Records what enforcement did about the shim's latest decision on a transcode session.
pub fn set_outcome(db: &Store, session: &str, outcome: &str, user: Option<&str>) -> Result<()> {
    db.set_decision_outcome(session, outcome, user)
}

/// Names the viewer of the shim's decisions about a transcode session once Plex lists it
/// (the shim decides before the session exists).
pub fn set_user(db: &Store, session: &str, user: &str) -> Result<()> {
    db.set_decision_user(session, user)
}
