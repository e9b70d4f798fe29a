//! The dashboard's reads (issue 14): pages of the decision audit with filters, one decision,
//! the decision for a playing session, counts per day for the charts. Each query is bounded
//! (a `LIMIT`, a time range on `decisions_time`, or the primary key), so it stays fast
//! however long the audit grows.

use anyhow::Result;
use rusqlite::{params, OptionalExtension, Row};

use super::Store;

/// A stored decision, as the dashboard shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditRow {
    pub id: i64,
    pub time: String,
    pub origin: String,
    pub job: Option<String>,
    pub decision: Option<String>,
    pub reason: Option<String>,
    pub session: Option<String>,
    pub input: Option<String>,
    pub user: Option<String>,
    pub outcome: Option<String>,
    /// The record as written (JSON text).
    pub record: String,
}

const COLUMNS: &str =
    "id, time, origin, job, decision, reason, session, input, user, outcome, record";

fn row(r: &Row<'_>) -> rusqlite::Result<AuditRow> {
    Ok(AuditRow {
        id: r.get(0)?,
        time: r.get(1)?,
        origin: r.get(2)?,
        job: r.get(3)?,
        decision: r.get(4)?,
        reason: r.get(5)?,
        session: r.get(6)?,
        input: r.get(7)?,
        user: r.get(8)?,
        outcome: r.get(9)?,
        record: r.get(10)?,
    })
}

/// Which decisions a page lists.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter<'a> {
    pub decision: Option<&'a str>,
    pub user: Option<&'a str>,
    pub origin: Option<&'a str>,
    /// Only ids below this one (the next page).
    pub before_id: Option<i64>,
    pub limit: usize,
}

/// The job-state name of the seconds throttled per day.
pub const THROTTLE_DAYS: &str = "throttle_days";

/// How many of the newest decisions the filter lists (`kinds`, `users`) are read from.
pub const FILTER_VALUES_FROM: i64 = 5000;

impl Store {
    /// The newest decisions matching `f`, newest first.
    pub fn audit_page(&self, f: &AuditFilter<'_>) -> Result<Vec<AuditRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM decisions
             WHERE (?1 IS NULL OR decision = ?1) AND (?2 IS NULL OR user = ?2)
               AND (?3 IS NULL OR origin = ?3) AND id < ?4
             ORDER BY id DESC LIMIT ?5"
        );
        let mut q = self.conn.prepare_cached(&sql)?;
        let rows = q
            .query_map(
                params![
                    f.decision,
                    f.user,
                    f.origin,
                    f.before_id.unwrap_or(i64::MAX),
                    f.limit as i64
                ],
                row,
            )?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// One decision by id.
    pub fn audit_row(&self, id: i64) -> Result<Option<AuditRow>> {
        let sql = format!("SELECT {COLUMNS} FROM decisions WHERE id = ?1");
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row(params![id], row)
            .optional()?)
    }

    /// The distinct decisions and users among the newest [`FILTER_VALUES_FROM`] decisions,
    /// sorted: what the page's filters offer.
    pub fn audit_filter_values(&self) -> Result<(Vec<String>, Vec<String>)> {
        let distinct = |col: &str| -> Result<Vec<String>> {
            let sql = format!(
                "SELECT DISTINCT {col} FROM (SELECT {col} FROM decisions ORDER BY id DESC LIMIT ?1)
                 WHERE {col} IS NOT NULL ORDER BY {col}"
            );
            let mut q = self.conn.prepare_cached(&sql)?;
            let v = q
                .query_map(params![FILTER_VALUES_FROM], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(v)
        };
        Ok((distinct("decision")?, distinct("user")?))
    }

    /// The decision about a playing session: the newest record whose `session` is one of
    /// `keys` (the transcode key the shim and the guard record, the session key a Tautulli
    /// trigger records), a video transcode's record before any other job's.
    pub fn audit_for_session(&self, keys: &[&str]) -> Result<Option<AuditRow>> {
        let (a, b) = match keys {
            [] => return Ok(None),
            [a] => (*a, *a),
            [a, b, ..] => (*a, *b),
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM decisions WHERE session IN (?1, ?2)
             ORDER BY (job = 'video_transcode') DESC, id DESC LIMIT 1"
        );
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row(params![a, b], row)
            .optional()?)
    }

    /// The newest guard switch of one of `files` since `since` (RFC 3339), for `user`: the
    /// guard moved the client to another version, so the session playing now is a new one
    /// the record does not name.
    pub fn audit_guard_switch(
        &self,
        files: &[&str],
        user: Option<&str>,
        since: &str,
    ) -> Result<Option<AuditRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM decisions
             WHERE time >= ?1 AND origin = 'guard' AND decision = 'switch'
               AND (user IS NULL OR ?2 IS NULL OR user = ?2)
             ORDER BY id DESC LIMIT 50"
        );
        let mut q = self.conn.prepare_cached(&sql)?;
        let rows: Vec<AuditRow> = q
            .query_map(params![since, user], row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows
            .into_iter()
            .find(|r| r.input.as_deref().is_some_and(|i| files.contains(&i))))
    }

    /// `(day, decision, count)` for decisions on or after `since_day` (`YYYY-MM-DD`, UTC).
    pub fn audit_per_day(&self, since_day: &str) -> Result<Vec<(String, String, u64)>> {
        let mut q = self.conn.prepare_cached(
            "SELECT substr(time, 1, 10) AS day, COALESCE(decision, ''), count(*) FROM decisions
             WHERE time >= ?1 GROUP BY day, decision",
        )?;
        let rows = q
            .query_map(params![since_day], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// `(unix day, count)` of scrobbles Trakt took (`scrobbled`) delivered at or after
    /// `since_ms`.
    pub fn scrobbles_per_day(&self, since_ms: u64) -> Result<Vec<(i64, u64)>> {
        let mut q = self.conn.prepare_cached(
            "SELECT delivered_ms / 86400000 AS day, count(*) FROM scrobble_history
             WHERE delivered_ms >= ?1 AND outcome = 'scrobbled' GROUP BY day",
        )?;
        let rows = q
            .query_map(params![i64::try_from(since_ms).unwrap_or(i64::MAX)], |r| {
                Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Adds a throttled period (unix seconds) to the seconds throttled per UTC day (job
    /// state `throttle_days`, keyed by the unix day number); days older than a year go.
    pub fn throttled_add(&self, since_s: u64, until_s: u64) -> Result<()> {
        self.write(|s| {
            let mut t = since_s;
            while t < until_s {
                let day = t / 86_400;
                let end = ((day + 1) * 86_400).min(until_s);
                let key = day.to_string();
                let had: u64 = s.state_get(THROTTLE_DAYS, &key)?.unwrap_or(0);
                s.state_put(THROTTLE_DAYS, &key, &(had + (end - t)))?;
                t = end;
            }
            let oldest = (until_s / 86_400).saturating_sub(366);
            for k in s.state_keys(THROTTLE_DAYS)? {
                if k.parse::<u64>().is_ok_and(|d| d < oldest) {
                    s.state_delete(THROTTLE_DAYS, &k)?;
                }
            }
            Ok(())
        })
    }

    /// `(unix day, seconds)` throttled, from [`Store::throttled_add`].
    pub fn throttled_per_day(&self) -> Result<Vec<(i64, u64)>> {
        Ok(self
            .state_all::<u64>(THROTTLE_DAYS)?
            .into_iter()
            .filter_map(|(k, v)| Some((k.parse().ok()?, v)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seeded() -> Store {
        let s = Store::in_memory().unwrap();
        for (t, d, o, sess, user, input) in [
            (
                "2026-12-01T10:00:00Z",
                "pass",
                "shim",
                "tx1",
                Some("alice"),
                "/m/a.mkv",
            ),
            (
                "2026-12-02T10:00:00Z",
                "refuse",
                "shim",
                "tx2",
                Some("bob"),
                "/m/b.mkv",
            ),
            (
                "2026-12-02T11:00:00Z",
                "switch",
                "guard",
                "tx3",
                Some("alice"),
                "/m/c 2160p.mkv",
            ),
            (
                "2026-12-03T10:00:00Z",
                "refuse",
                "shim",
                "tx4",
                None,
                "/m/d.mkv",
            ),
        ] {
            let mut rec = json!({"time": t, "decision": d, "origin": o, "session": sess,
                "job": "video_transcode", "input": input, "reason": "r"});
            if let Some(u) = user {
                rec["viewer"] = json!({"user": u});
            }
            s.insert_decision(&rec).unwrap();
        }
        // A thumbnail job on the same transcode session as the refusal: not its decision.
        s.insert_decision(&json!({"time": "2026-12-02T10:00:01Z", "decision": "pass",
            "session": "tx2", "job": "thumbnail"}))
            .unwrap();
        s
    }

    #[test]
    fn pages_filter_and_go_back_by_id() {
        let s = seeded();
        let all = s
            .audit_page(&AuditFilter {
                limit: 10,
                ..AuditFilter::default()
            })
            .unwrap();
        assert_eq!(
            all.iter().map(|r| r.id).collect::<Vec<_>>(),
            [5, 4, 3, 2, 1]
        );
        let refusals = s
            .audit_page(&AuditFilter {
                decision: Some("refuse"),
                limit: 10,
                ..AuditFilter::default()
            })
            .unwrap();
        assert_eq!(refusals.iter().map(|r| r.id).collect::<Vec<_>>(), [4, 2]);
        let alice = s
            .audit_page(&AuditFilter {
                user: Some("alice"),
                limit: 1,
                ..AuditFilter::default()
            })
            .unwrap();
        assert_eq!(alice[0].id, 3);
        let next = s
            .audit_page(&AuditFilter {
                user: Some("alice"),
                before_id: Some(3),
                limit: 1,
                ..AuditFilter::default()
            })
            .unwrap();
        assert_eq!(next[0].id, 1);
        let guard = s
            .audit_page(&AuditFilter {
                origin: Some("guard"),
                limit: 10,
                ..AuditFilter::default()
            })
            .unwrap();
        assert_eq!(guard.len(), 1);
        assert_eq!(
            s.audit_row(2).unwrap().unwrap().user.as_deref(),
            Some("bob")
        );
        assert!(s.audit_row(99).unwrap().is_none());
        let (kinds, users) = s.audit_filter_values().unwrap();
        assert_eq!(kinds, ["pass", "refuse", "switch"]);
        assert_eq!(users, ["alice", "bob"]);
    }

    #[test]
    fn a_session_gets_its_video_decision_and_a_guard_switch_its_new_session() {
        let s = seeded();
        let r = s.audit_for_session(&["tx2", "99"]).unwrap().unwrap();
        assert_eq!((r.id, r.decision.as_deref()), (2, Some("refuse")));
        assert!(s.audit_for_session(&["nope"]).unwrap().is_none());
        assert!(s.audit_for_session(&[]).unwrap().is_none());
        let g = s
            .audit_guard_switch(&["/m/c 2160p.mkv"], Some("alice"), "2026-12-01")
            .unwrap();
        assert_eq!(g.unwrap().id, 3);
        assert!(s
            .audit_guard_switch(&["/m/c 2160p.mkv"], Some("bob"), "2026-12-01")
            .unwrap()
            .is_none());
        assert!(s
            .audit_guard_switch(&["/m/c 2160p.mkv"], Some("alice"), "2026-12-03")
            .unwrap()
            .is_none());
    }

    #[test]
    fn counts_per_day() {
        let s = seeded();
        let mut d = s.audit_per_day("2026-12-02").unwrap();
        d.sort();
        assert_eq!(
            d,
            [
                ("2026-12-02".into(), "pass".into(), 1),
                ("2026-12-02".into(), "refuse".into(), 1),
                ("2026-12-02".into(), "switch".into(), 1),
                ("2026-12-03".into(), "refuse".into(), 1),
            ]
        );
        assert!(s.scrobbles_per_day(0).unwrap().is_empty());
    }

    #[test]
    fn throttled_periods_split_across_days() {
        let s = Store::in_memory().unwrap();
        let day = 20_000u64 * 86_400;
        s.throttled_add(day - 600, day + 1800).unwrap();
        s.throttled_add(day + 3600, day + 7200).unwrap();
        let mut d = s.throttled_per_day().unwrap();
        d.sort();
        assert_eq!(d, [(19_999, 600), (20_000, 1800 + 3600)]);
        s.throttled_add(day + 400 * 86_400, day + 400 * 86_400 + 10)
            .unwrap();
        assert_eq!(
            s.throttled_per_day().unwrap().len(),
            1,
            "a year old days go"
        );
    }
}
