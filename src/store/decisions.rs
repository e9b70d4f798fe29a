//! The decision audit's queries: every decision (shim, reactive guard, Tautulli trigger)
//! with its reason and what enforcement did, and the decision log's read positions.

use anyhow::Result;
use rusqlite::{params, OptionalExtension};
use serde_json::Value;

use super::Store;

/// A stored decision as `decisions` lists it.
#[derive(Clone, Debug)]
pub struct DecisionRow {
    pub origin: String,
    pub user: Option<String>,
    pub outcome: Option<String>,
    /// The record as written (JSON).
    pub record: String,
}

impl Store {
    /// Stores one decision record (the shim's JSON record, or the daemon's own).
    pub fn insert_decision(&self, rec: &Value) -> Result<()> {
        let field = |k: &str| rec.get(k).and_then(Value::as_str).map(String::from);
        let user = rec
            .get("viewer")
            .and_then(|v| v.get("user"))
            .and_then(Value::as_str)
            .map(String::from);
        self.conn
            .prepare_cached(
                "INSERT INTO decisions(time, job, decision, reason, session, input, record, origin, user, outcome)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                field("time").unwrap_or_else(downshiftarr_shim::record::now_rfc3339),
                field("job"),
                field("decision"),
                field("reason"),
                field("session"),
                field("input"),
                rec.to_string(),
                field("origin").unwrap_or_else(|| "shim".into()),
                user,
                field("outcome"),
            ])?;
        Ok(())
    }

    /// Records what enforcement did about the shim's latest decision on a transcode session.
    pub fn set_decision_outcome(
        &self,
        session: &str,
        outcome: &str,
        user: Option<&str>,
    ) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE decisions SET outcome = ?1, user = COALESCE(user, ?3)
                 WHERE id = (SELECT max(id) FROM decisions WHERE session = ?2 AND origin = 'shim')",
            )?
            .execute(params![outcome, session, user])?;
        Ok(())
    }

    /// Names the viewer of the shim's decisions about a session once Plex lists it.
    pub fn set_decision_user(&self, session: &str, user: &str) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE decisions SET user = ?1 WHERE session = ?2 AND origin = 'shim' AND user IS NULL",
            )?
            .execute(params![user, session])?;
        Ok(())
    }

    /// The newest `limit` decisions with a `time` at or after `since`, oldest first. Reads a
    /// database of any version (one from before migration 3 has no origin, user, outcome).
    pub fn decisions_since(&self, since: &str, limit: usize) -> Result<Vec<DecisionRow>> {
        let sql = if self.version().unwrap_or(0) >= 3 {
            "SELECT origin, user, outcome, record FROM decisions
             WHERE time >= ?1 ORDER BY id DESC LIMIT ?2"
        } else {
            "SELECT 'shim', NULL, NULL, record FROM decisions
             WHERE time >= ?1 ORDER BY id DESC LIMIT ?2"
        };
        let mut q = self.conn.prepare(sql)?;
        let mut rows: Vec<DecisionRow> = q
            .query_map(params![since, limit as i64], |r| {
                Ok(DecisionRow {
                    origin: r.get(0)?,
                    user: r.get(1)?,
                    outcome: r.get(2)?,
                    record: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        rows.reverse();
        Ok(rows)
    }

    /// The byte offset imported so far of the decision log file `(dev, ino, head)`; 0 for a
    /// file never seen (or a read-only database older than migration 5).
    pub fn import_offset(&self, dev: i64, ino: i64, head: &str) -> Result<u64> {
        let has_table = self
            .conn
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'decision_log_import'",
                [],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if !has_table {
            return Ok(0);
        }
        let off: Option<i64> = self
            .conn
            .query_row(
                "SELECT offset FROM decision_log_import WHERE dev = ?1 AND ino = ?2 AND head = ?3",
                params![dev, ino, head],
                |r| r.get(0),
            )
            .optional()?;
        Ok(off.unwrap_or(0).max(0) as u64)
    }

    pub fn set_import_offset(&self, dev: i64, ino: i64, head: &str, offset: u64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO decision_log_import(dev, ino, head, offset) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(dev, ino, head) DO UPDATE SET offset = excluded.offset",
            params![dev, ino, head, offset as i64],
        )?;
        Ok(())
    }

    /// Every `(dev, ino, head)` with a stored offset.
    pub fn import_files(&self) -> Result<Vec<(i64, i64, String)>> {
        let mut q = self
            .conn
            .prepare("SELECT dev, ino, head FROM decision_log_import")?;
        let rows = q
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    pub fn forget_import_file(&self, dev: i64, ino: i64, head: &str) -> Result<()> {
        self.conn.execute(
            "DELETE FROM decision_log_import WHERE dev = ?1 AND ino = ?2 AND head = ?3",
            params![dev, ino, head],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn insert_outcome_user_and_list() {
        let s = Store::in_memory().unwrap();
        s.insert_decision(
            &json!({"time": "2026-01-01T00:00:01Z", "decision": "rewrite", "session": "t1"}),
        )
        .unwrap();
        s.insert_decision(
            &json!({"time": "2026-01-01T00:00:02Z", "decision": "terminate", "origin": "guard",
            "session": "t1", "viewer": {"user": "bob"}, "outcome": "terminated"}),
        )
        .unwrap();
        s.set_decision_user("t1", "ann").unwrap();
        s.set_decision_outcome("t1", "kept", None).unwrap();
        let rows = s.decisions_since("2026-01-01T00:00:01Z", 10).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (
                rows[0].origin.as_str(),
                rows[0].user.as_deref(),
                rows[0].outcome.as_deref()
            ),
            ("shim", Some("ann"), Some("kept"))
        );
        assert_eq!(
            (rows[1].origin.as_str(), rows[1].user.as_deref()),
            ("guard", Some("bob"))
        );
        assert_eq!(
            s.decisions_since("2026-01-01T00:00:02Z", 10).unwrap().len(),
            1
        );
        assert_eq!(
            s.decisions_since("", 1).unwrap()[0].origin,
            "guard",
            "the newest"
        );
    }
}
