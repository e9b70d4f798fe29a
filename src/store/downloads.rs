//! The downloads job's tables (issue 13, migration 9): our own watch history
//! (`download_plays`), every decision with its reasons and facts (`download_decisions`), the
//! durable action queue (`download_queue`: a decision waiting for Radarr, retried with
//! back-off) and the searches sent (`download_searches`: one per movie per window).

use anyhow::{Context, Result};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::Store;
use crate::jobs::downloads::{Facts, Ids, Play, Verdict};

/// Migration 9.
pub const MIGRATION: &str = "CREATE TABLE download_plays (
        id INTEGER PRIMARY KEY, source TEXT NOT NULL, user TEXT NOT NULL, user_lc TEXT NOT NULL,
        item_id TEXT NOT NULL, at_ms INTEGER NOT NULL, percent REAL NOT NULL, kind TEXT NOT NULL,
        title TEXT NOT NULL, title_lc TEXT NOT NULL, year INTEGER, imdb TEXT, tmdb INTEGER,
        tvdb INTEGER, address TEXT, UNIQUE (source, user_lc, item_id, at_ms));
     CREATE INDEX download_plays_user ON download_plays(user_lc, at_ms);
     CREATE INDEX download_plays_tmdb ON download_plays(tmdb);
     CREATE TABLE download_decisions (
        id INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL, user TEXT NOT NULL,
        title TEXT NOT NULL, tier TEXT NOT NULL, download INTEGER NOT NULL,
        status TEXT NOT NULL, detail TEXT, radarr_id INTEGER, record TEXT NOT NULL);
     CREATE INDEX download_decisions_at ON download_decisions(at_ms);
     CREATE TABLE download_queue (
        decision_id INTEGER PRIMARY KEY REFERENCES download_decisions(id) ON DELETE CASCADE,
        attempts INTEGER NOT NULL DEFAULT 0, next_at_ms INTEGER NOT NULL, last_error TEXT);
     CREATE TABLE download_searches (
        tmdb INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, radarr_id INTEGER NOT NULL,
        command_id INTEGER);";

/// A decision, stored with all its reasons and facts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DownloadDecision {
    pub id: i64,
    pub at_ms: u64,
    pub play: Play,
    pub verdict: Verdict,
    pub facts: Facts,
    /// decided | queued | searching | searched | already_local | dry_run | no_download |
    /// failed | retrying
    pub status: String,
    pub detail: Option<String>,
    pub radarr_id: Option<i64>,
}

/// A decision waiting for Radarr.
#[derive(Clone, Debug, PartialEq)]
pub struct QueuedDownload {
    pub decision_id: i64,
    pub attempts: u32,
    pub next_at_ms: u64,
    pub last_error: Option<String>,
}

/// What `record` holds (the rest has columns of its own).
#[derive(Serialize, Deserialize)]
struct Record {
    play: Play,
    verdict: Verdict,
    facts: Facts,
}

/// (id, at_ms, status, detail, radarr_id, record).
type DecisionRow = (i64, i64, String, Option<String>, Option<i64>, String);

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn kind_str(p: &Play) -> &'static str {
    match p.kind {
        crate::jobs::downloads::ItemKind::Movie => "movie",
        crate::jobs::downloads::ItemKind::Episode => "episode",
        crate::jobs::downloads::ItemKind::Other => "other",
    }
}

impl Store {
    /// Records a play in our watch history; false when the same (source, user, item_id,
    /// at_ms) is there.
    pub fn record_play(&self, p: &Play) -> Result<bool> {
        let n = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO download_plays (source, user, user_lc, item_id, at_ms, percent,
                kind, title, title_lc, year, imdb, tmdb, tvdb, address)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )?
        .execute(params![
            p.source.as_str(),
            p.user,
            p.user.to_lowercase(),
            p.item_id,
            ms(p.at_ms),
            p.percent,
            kind_str(p),
            p.title,
            p.title.to_lowercase(),
            p.year,
            p.ids.imdb,
            p.ids.tmdb.map(ms),
            p.ids.tvdb.map(ms),
            p.address.map(|a| a.to_string()),
        ])
        .context("recording a play")?;
        Ok(n > 0)
    }

    /// Plays of this movie by `user` (case-insensitive) since `since_ms`, matched by any
    /// shared id (tmdb, imdb), or by title and year where one side has no ids.
    pub fn watch_count(
        &self,
        user: &str,
        ids: &Ids,
        title: &str,
        year: Option<u32>,
        since_ms: u64,
    ) -> Result<u32> {
        let has_ids = ids.tmdb.is_some() || ids.imdb.is_some();
        let n: i64 = self
            .conn
            .prepare_cached(
                "SELECT COUNT(*) FROM download_plays
                 WHERE user_lc = ?1 AND at_ms >= ?2 AND (
                    (?3 IS NOT NULL AND tmdb = ?3)
                    OR (?4 IS NOT NULL AND imdb = ?4)
                    OR ((?7 = 0 OR (tmdb IS NULL AND imdb IS NULL))
                        AND title_lc = ?5 AND year IS ?6))",
            )?
            .query_row(
                params![
                    user.to_lowercase(),
                    ms(since_ms),
                    ids.tmdb.map(ms),
                    ids.imdb,
                    title.to_lowercase(),
                    year,
                    has_ids as i64
                ],
                |r| r.get(0),
            )
            .context("counting plays")?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// The last play of a movie by anyone, by TMDB id.
    pub fn last_played(&self, tmdb: u64) -> Result<Option<u64>> {
        let v: Option<i64> = self
            .conn
            .prepare_cached("SELECT MAX(at_ms) FROM download_plays WHERE tmdb = ?1")?
            .query_row(params![ms(tmdb)], |r| r.get(0))?;
        Ok(v.map(|v| v.max(0) as u64))
    }

    /// A decision, stored with all its reasons and facts; its id.
    pub fn insert_download_decision(&self, d: &DownloadDecision) -> Result<i64> {
        let record = serde_json::to_string(&Record {
            play: d.play.clone(),
            verdict: d.verdict.clone(),
            facts: d.facts.clone(),
        })?;
        self.conn
            .prepare_cached(
                "INSERT INTO download_decisions (at_ms, user, title, tier, download, status,
                    detail, radarr_id, record) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                ms(d.at_ms),
                d.play.user,
                d.play.title,
                d.verdict.tier.as_str(),
                d.verdict.download as i64,
                d.status,
                d.detail,
                d.radarr_id,
                record
            ])
            .context("storing a download decision")?;
        Ok(self.conn.last_insert_rowid())
    }

    /// A decision's new status (its detail replaced; the Radarr id kept unless one is given).
    pub fn set_download_status(
        &self,
        id: i64,
        status: &str,
        detail: Option<&str>,
        radarr_id: Option<i64>,
    ) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE download_decisions SET status = ?2, detail = ?3,
                    radarr_id = COALESCE(?4, radarr_id) WHERE id = ?1",
            )?
            .execute(params![id, status, detail, radarr_id])?;
        Ok(())
    }

    fn decision_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DecisionRow> {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    }

    fn decision_of(row: DecisionRow) -> Result<DownloadDecision> {
        let (id, at, status, detail, radarr_id, record) = row;
        let rec: Record = serde_json::from_str(&record)
            .with_context(|| format!("download decision {id}: unreadable record"))?;
        Ok(DownloadDecision {
            id,
            at_ms: at.max(0) as u64,
            play: rec.play,
            verdict: rec.verdict,
            facts: rec.facts,
            status,
            detail,
            radarr_id,
        })
    }

    pub fn download_decision(&self, id: i64) -> Result<Option<DownloadDecision>> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT id, at_ms, status, detail, radarr_id, record FROM download_decisions
                 WHERE id = ?1",
            )?
            .query_row(params![id], Store::decision_row)
            .optional()?;
        row.map(Store::decision_of).transpose()
    }

    /// Newest first.
    pub fn download_decisions(&self, since_ms: u64, limit: usize) -> Result<Vec<DownloadDecision>> {
        let mut q = self.conn.prepare_cached(
            "SELECT id, at_ms, status, detail, radarr_id, record FROM download_decisions
             WHERE at_ms >= ?1 ORDER BY at_ms DESC, id DESC LIMIT ?2",
        )?;
        let rows = q.query_map(
            params![ms(since_ms), i64::try_from(limit).unwrap_or(i64::MAX)],
            Store::decision_row,
        )?;
        let mut out = Vec::new();
        for r in rows {
            out.push(Store::decision_of(r?)?);
        }
        Ok(out)
    }

    /// Queues a decision for Radarr (again: its attempts kept).
    pub fn enqueue_download(&self, decision_id: i64, next_at_ms: u64) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO download_queue (decision_id, next_at_ms) VALUES (?1, ?2)
                 ON CONFLICT (decision_id) DO UPDATE SET next_at_ms = excluded.next_at_ms",
            )?
            .execute(params![decision_id, ms(next_at_ms)])?;
        Ok(())
    }

    fn queued_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueuedDownload> {
        Ok(QueuedDownload {
            decision_id: r.get(0)?,
            attempts: r.get::<_, i64>(1)?.clamp(0, u32::MAX as i64) as u32,
            next_at_ms: r.get::<_, i64>(2)?.max(0) as u64,
            last_error: r.get(3)?,
        })
    }

    pub fn due_downloads(&self, now_ms: u64, limit: usize) -> Result<Vec<QueuedDownload>> {
        let mut q = self.conn.prepare_cached(
            "SELECT decision_id, attempts, next_at_ms, last_error FROM download_queue
             WHERE next_at_ms <= ?1 ORDER BY next_at_ms, decision_id LIMIT ?2",
        )?;
        let rows = q.query_map(
            params![ms(now_ms), i64::try_from(limit).unwrap_or(i64::MAX)],
            Store::queued_row,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// One more failed attempt: tried again at `next_at_ms`.
    pub fn reschedule_download(
        &self,
        decision_id: i64,
        next_at_ms: u64,
        error: &str,
    ) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE download_queue SET attempts = attempts + 1, next_at_ms = ?2,
                    last_error = ?3 WHERE decision_id = ?1",
            )?
            .execute(params![decision_id, ms(next_at_ms), error])?;
        Ok(())
    }

    pub fn finish_download(&self, decision_id: i64) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM download_queue WHERE decision_id = ?1")?
            .execute(params![decision_id])?;
        Ok(())
    }

    pub fn queued_downloads(&self) -> Result<Vec<QueuedDownload>> {
        let mut q = self.conn.prepare_cached(
            "SELECT decision_id, attempts, next_at_ms, last_error FROM download_queue
             ORDER BY next_at_ms, decision_id",
        )?;
        let rows = q.query_map([], Store::queued_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// When the last search of this movie was sent.
    pub fn last_search(&self, tmdb: u64) -> Result<Option<u64>> {
        let v: Option<i64> = self
            .conn
            .prepare_cached("SELECT at_ms FROM download_searches WHERE tmdb = ?1")?
            .query_row(params![ms(tmdb)], |r| r.get(0))
            .optional()?;
        Ok(v.map(|v| v.max(0) as u64))
    }

    pub fn record_search(
        &self,
        tmdb: u64,
        at_ms: u64,
        radarr_id: i64,
        command_id: Option<i64>,
    ) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO download_searches (tmdb, at_ms, radarr_id, command_id)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (tmdb) DO UPDATE SET at_ms = excluded.at_ms,
                    radarr_id = excluded.radarr_id, command_id = excluded.command_id",
            )?
            .execute(params![ms(tmdb), ms(at_ms), radarr_id, command_id])?;
        Ok(())
    }
}
