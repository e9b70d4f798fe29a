//! The scrobble outbox's SQL (issue 12): `scrobble_outbox` holds every Trakt call owed, in
//! the order it was owed; `scrobble_history` what became of each one. The meaning (what
//! supersedes what, which answer is final) lives in `jobs::scrobble::outbox`; this module
//! only keeps the rows, each change in the caller's transaction.

use anyhow::Result;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::Store;

/// History is kept this many rows at most…
pub const HISTORY_MAX_ROWS: i64 = 10_000;
/// …and this long (90 days, in milliseconds).
pub const HISTORY_MAX_AGE_MS: u64 = 90 * 86_400_000;

/// One owed call, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: i64,
    /// The `Call` as JSON.
    pub call: String,
    pub attempts: u32,
    pub not_before_ms: u64,
    pub last_error: Option<String>,
}

/// What to store for a new call.
pub struct NewOutboxRow<'a> {
    pub user: &'a str,
    pub play: &'a str,
    pub rating_key: &'a str,
    pub action: &'a str,
    pub call: &'a str,
    pub title: Option<&'a str>,
    pub at_ms: u64,
}

/// One finished call (`downshiftarr scrobble history`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryRow {
    pub id: i64,
    pub user: String,
    pub rating_key: String,
    pub play: String,
    pub action: String,
    pub progress: f64,
    pub title: Option<String>,
    pub at_ms: u64,
    pub delivered_ms: u64,
    /// `scrobbled`, `paused`, `started`, `already_scrobbled`, `not_found`, `refused`,
    /// `superseded`, `unreadable`.
    pub outcome: String,
    /// Trakt's answer, when it sent one worth keeping.
    pub trakt: Option<serde_json::Value>,
}

/// What the library index knows of an item, for the Trakt id resolution.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexedItem {
    /// `movie`, `show`, `season`, `episode`.
    pub kind: String,
    pub title: String,
    pub year: Option<i64>,
    /// The item's own `guid` (`plex://…`, or a legacy agent's string).
    pub guid: Option<String>,
    pub imdb: Option<String>,
    pub tmdb: Option<String>,
    pub tvdb: Option<String>,
    /// Episodes: the show.
    pub grandparent_key: Option<String>,
    pub season: Option<i64>,
    pub episode: Option<i64>,
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    /// Stores a call, after moving the undelivered `start`/`pause` rows of the same
    /// `(user, play)` to history as `superseded` (a `stop` is never superseded). Run it in
    /// a [`Store::write`]: both steps or neither.
    pub fn outbox_insert(&self, row: &NewOutboxRow<'_>, now_ms: u64) -> Result<i64> {
        self.conn
            .prepare_cached(
                "INSERT INTO scrobble_history(user, rating_key, play, action, progress, title,
                    at_ms, delivered_ms, outcome, trakt)
                 SELECT user, rating_key, play, action,
                    COALESCE(json_extract(call, '$.progress'), 0), title, at_ms, ?3,
                    'superseded', NULL
                 FROM scrobble_outbox
                 WHERE user = ?1 AND play = ?2 AND action IN ('start', 'pause') ORDER BY id",
            )?
            .execute(params![row.user, row.play, to_i64(now_ms)])?;
        self.conn
            .prepare_cached(
                "DELETE FROM scrobble_outbox
                 WHERE user = ?1 AND play = ?2 AND action IN ('start', 'pause')",
            )?
            .execute(params![row.user, row.play])?;
        self.conn
            .prepare_cached(
                "INSERT INTO scrobble_outbox(user, play, rating_key, action, call, title, at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                row.user,
                row.play,
                row.rating_key,
                row.action,
                row.call,
                row.title,
                to_i64(row.at_ms)
            ])?;
        let id = self.conn.last_insert_rowid();
        self.history_prune(now_ms)?;
        Ok(id)
    }

    /// The head of each user's queue when it is due at `now_ms`, oldest first.
    pub fn outbox_due(&self, now_ms: u64, limit: usize) -> Result<Vec<OutboxRow>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, call, attempts, not_before_ms, last_error FROM scrobble_outbox
             WHERE id IN (SELECT MIN(id) FROM scrobble_outbox GROUP BY user)
               AND not_before_ms <= ?1
             ORDER BY id LIMIT ?2",
        )?;
        let rows = st
            .query_map(
                params![to_i64(now_ms), i64::try_from(limit).unwrap_or(i64::MAX)],
                |r| {
                    Ok(OutboxRow {
                        id: r.get(0)?,
                        call: r.get(1)?,
                        attempts: u32::try_from(r.get::<_, i64>(2)?).unwrap_or(u32::MAX),
                        not_before_ms: to_u64(r.get(3)?),
                        last_error: r.get(4)?,
                    })
                },
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// The earliest `not_before_ms` among the users' heads (when the next one is due).
    pub fn outbox_next_due_ms(&self) -> Result<Option<u64>> {
        let v: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT MIN(not_before_ms) FROM scrobble_outbox
                 WHERE id IN (SELECT MIN(id) FROM scrobble_outbox GROUP BY user)",
            )?
            .query_row([], |r| r.get(0))?;
        Ok(v.map(to_u64))
    }

    /// (rows owed, `at_ms` of the oldest).
    pub fn outbox_depth(&self) -> Result<(u64, Option<u64>)> {
        let (n, oldest): (i64, Option<i64>) = self
            .conn
            .prepare_cached("SELECT COUNT(*), MIN(at_ms) FROM scrobble_outbox")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok((to_u64(n), oldest.map(to_u64)))
    }

    /// Moves row `id` to history with `outcome`; false when it is gone already (superseded
    /// meanwhile by another writer). Run it in a [`Store::write`].
    pub fn outbox_finish(
        &self,
        id: i64,
        outcome: &str,
        trakt: Option<&str>,
        now_ms: u64,
    ) -> Result<bool> {
        let n = self
            .conn
            .prepare_cached(
                "INSERT INTO scrobble_history(user, rating_key, play, action, progress, title,
                    at_ms, delivered_ms, outcome, trakt)
                 SELECT user, rating_key, play, action,
                    COALESCE(json_extract(call, '$.progress'), 0), title, at_ms, ?2, ?3, ?4
                 FROM scrobble_outbox WHERE id = ?1",
            )?
            .execute(params![id, to_i64(now_ms), outcome, trakt])?;
        self.conn
            .prepare_cached("DELETE FROM scrobble_outbox WHERE id = ?1")?
            .execute(params![id])?;
        self.history_prune(now_ms)?;
        Ok(n > 0)
    }

    /// Keeps row `id` for a later attempt, not before `not_before_ms`.
    pub fn outbox_retry_later(&self, id: i64, not_before_ms: u64, error: &str) -> Result<bool> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE scrobble_outbox SET attempts = attempts + 1, not_before_ms = ?2,
                    last_error = ?3 WHERE id = ?1",
            )?
            .execute(params![id, to_i64(not_before_ms), error])?;
        Ok(n > 0)
    }

    /// The attempts and last error of row `id` (None: not owed any more).
    pub fn outbox_row(&self, id: i64) -> Result<Option<(u32, Option<String>)>> {
        Ok(self
            .conn
            .prepare_cached("SELECT attempts, last_error FROM scrobble_outbox WHERE id = ?1")?
            .query_row(params![id], |r| {
                Ok((
                    u32::try_from(r.get::<_, i64>(0)?).unwrap_or(u32::MAX),
                    r.get(1)?,
                ))
            })
            .optional()?)
    }

    /// History finished at or after `since_ms`: the newest `limit` rows, newest last.
    pub fn scrobble_history(&self, since_ms: u64, limit: usize) -> Result<Vec<HistoryRow>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, user, rating_key, play, action, progress, title, at_ms, delivered_ms,
                outcome, trakt
             FROM scrobble_history WHERE delivered_ms >= ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let mut rows = st
            .query_map(
                params![to_i64(since_ms), i64::try_from(limit).unwrap_or(i64::MAX)],
                |r| {
                    let trakt: Option<String> = r.get(10)?;
                    Ok(HistoryRow {
                        id: r.get(0)?,
                        user: r.get(1)?,
                        rating_key: r.get(2)?,
                        play: r.get(3)?,
                        action: r.get(4)?,
                        progress: r.get(5)?,
                        title: r.get(6)?,
                        at_ms: to_u64(r.get(7)?),
                        delivered_ms: to_u64(r.get(8)?),
                        outcome: r.get(9)?,
                        trakt: trakt.and_then(|t| serde_json::from_str(&t).ok()),
                    })
                },
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.reverse();
        Ok(rows)
    }

    /// The index's row of `rating_key`, if it has one.
    pub fn scrobble_item(&self, rating_key: &str) -> Result<Option<IndexedItem>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT type, title, year, imdb, tmdb, tvdb, grandparent_key, season, episode, guid
                 FROM items WHERE rating_key = ?1",
            )?
            .query_row(params![rating_key], |r| {
                Ok(IndexedItem {
                    kind: r.get(0)?,
                    title: r.get(1)?,
                    year: r.get(2)?,
                    imdb: r.get(3)?,
                    tmdb: r.get(4)?,
                    tvdb: r.get(5)?,
                    grandparent_key: r.get(6)?,
                    season: r.get(7)?,
                    episode: r.get(8)?,
                    guid: r.get(9)?,
                })
            })
            .optional()?)
    }

    /// History stays bounded: [`HISTORY_MAX_ROWS`] rows, [`HISTORY_MAX_AGE_MS`] old.
    fn history_prune(&self, now_ms: u64) -> Result<()> {
        self.conn
            .prepare_cached(
                "DELETE FROM scrobble_history WHERE delivered_ms < ?1
                    OR id <= (SELECT id FROM scrobble_history ORDER BY id DESC
                              LIMIT 1 OFFSET ?2)",
            )?
            .execute(params![
                to_i64(now_ms.saturating_sub(HISTORY_MAX_AGE_MS)),
                HISTORY_MAX_ROWS
            ])?;
        Ok(())
    }
}
