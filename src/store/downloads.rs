//! The downloads job's SQL (issue 13): our own watch history (`download_plays`), every
//! decision with its reasons and facts (`download_decisions`), the durable queue of decisions
//! waiting for Radarr (`download_queue`) and the searches made (`download_searches`, one per
//! movie per window). The meaning (what counts, which tier) lives in `jobs::downloads`; this
//! module keeps the rows.
//!
//! A viewing seen by two sources (Plex's websocket and its webhook, a Jellyfin webhook and
//! the Jellystat import of the same play) is stored once per source and counted once:
//! plays of one movie by one user closer than [`SAME_VIEWING_MS`] are one viewing.

use anyhow::{Context, Result};
use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::Store;
use crate::model::downloads::{Facts, Ids, Play, Verdict};

/// Plays of one movie by one user closer than this are one viewing (a source's stop and
/// another's start of the same play are a film's length apart at most).
pub const SAME_VIEWING_MS: u64 = 6 * 3_600_000;
/// The most plays read to count one movie's viewings.
const MAX_PLAYS_COUNTED: i64 = 10_000;

/// One decision, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DownloadDecision {
    pub id: i64,
    pub at_ms: u64,
    pub play: Play,
    pub verdict: Verdict,
    pub facts: Facts,
    /// `decided`, `queued`, `searching`, `searched`, `already_local`, `dry_run`,
    /// `no_download`, `failed`, `retrying`.
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

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn decision_row(r: &Row<'_>) -> rusqlite::Result<RawDecision> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

type RawDecision = (
    i64,
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<i64>,
);

fn decision_from(raw: RawDecision) -> Result<DownloadDecision> {
    let (id, at_ms, play, verdict, facts, status, detail, radarr_id) = raw;
    Ok(DownloadDecision {
        id,
        at_ms: to_u64(at_ms),
        play: serde_json::from_str(&play)
            .with_context(|| format!("download decision {id}: its play"))?,
        verdict: serde_json::from_str(&verdict)
            .with_context(|| format!("download decision {id}: its verdict"))?,
        facts: serde_json::from_str(&facts)
            .with_context(|| format!("download decision {id}: its facts"))?,
        status,
        detail,
        radarr_id,
    })
}

const DECISION_COLUMNS: &str =
    "id, at_ms, play, verdict, facts, status, detail, radarr_id FROM download_decisions";

impl Store {
    /// Records a play in our watch history; false when the same (source, user, item, time)
    /// is already there (a webhook posted twice).
    pub fn record_play(&self, p: &Play) -> Result<bool> {
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO download_plays
               (source, user, item_id, at_ms, kind, title, year, imdb, tmdb, tvdb, percent, address, client)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            params![
                p.source.as_str(),
                p.user,
                p.item_id,
                to_i64(p.at_ms),
                serde_json::to_value(p.kind)?.as_str().unwrap_or("other"),
                p.title,
                p.year,
                p.ids.imdb,
                p.ids.tmdb.map(to_i64),
                p.ids.tvdb.map(to_i64),
                p.percent,
                p.address.map(|a| a.to_string()),
                p.client,
            ],
        )?;
        Ok(n == 1)
    }

    /// Viewings of a movie by `user` (case-insensitive) since `since_ms`: plays matched by a
    /// shared TMDB or IMDb id, or by title and year when the play has neither; plays closer
    /// than [`SAME_VIEWING_MS`] are one viewing.
    pub fn watch_count(
        &self,
        user: &str,
        ids: &Ids,
        title: &str,
        year: Option<u32>,
        since_ms: u64,
    ) -> Result<u32> {
        let mut times: Vec<i64> = Vec::new();
        let by_ids = ids.tmdb.is_some() || ids.imdb.is_some();
        if by_ids {
            let mut st = self.conn.prepare_cached(
                "SELECT at_ms FROM download_plays
                 WHERE user = ?1 COLLATE NOCASE AND at_ms >= ?2
                   AND ((?3 IS NOT NULL AND tmdb = ?3) OR (?4 IS NOT NULL AND imdb = ?4)
                        OR (tmdb IS NULL AND imdb IS NULL AND title = ?5 COLLATE NOCASE
                            AND (year IS ?6)))
                 ORDER BY at_ms LIMIT ?7",
            )?;
            let rows = st.query_map(
                params![
                    user,
                    to_i64(since_ms),
                    ids.tmdb.map(to_i64),
                    ids.imdb,
                    title,
                    year,
                    MAX_PLAYS_COUNTED
                ],
                |r| r.get(0),
            )?;
            for t in rows {
                times.push(t?);
            }
        } else {
            let mut st = self.conn.prepare_cached(
                "SELECT at_ms FROM download_plays
                 WHERE user = ?1 COLLATE NOCASE AND at_ms >= ?2
                   AND title = ?3 COLLATE NOCASE AND (year IS ?4)
                 ORDER BY at_ms LIMIT ?5",
            )?;
            let rows = st.query_map(
                params![user, to_i64(since_ms), title, year, MAX_PLAYS_COUNTED],
                |r| r.get(0),
            )?;
            for t in rows {
                times.push(t?);
            }
        }
        let mut viewings = 0u32;
        let mut last: Option<i64> = None;
        for t in times {
            match last {
                Some(l) if to_u64(t - l) < SAME_VIEWING_MS => {}
                _ => viewings = viewings.saturating_add(1),
            }
            last = Some(t);
        }
        Ok(viewings)
    }

    /// The last play of a movie by anyone (the prune report), by TMDB id.
    pub fn last_played(&self, tmdb: u64) -> Result<Option<u64>> {
        let t: Option<i64> = self
            .conn
            .query_row(
                "SELECT MAX(at_ms) FROM download_plays WHERE tmdb = ?1",
                params![to_i64(tmdb)],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        Ok(t.map(to_u64))
    }

    /// Stores a decision with its play, verdict and facts; returns its id (the given `id`
    /// is ignored).
    pub fn insert_download_decision(&self, d: &DownloadDecision) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO download_decisions
               (at_ms, user, title, year, tmdb, tier, download, status, detail, radarr_id,
                play, verdict, facts, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?1)",
            params![
                to_i64(d.at_ms),
                d.play.user,
                d.play.title,
                d.play.year,
                d.play.ids.tmdb.map(to_i64),
                d.verdict.tier.as_str(),
                d.verdict.download,
                d.status,
                d.detail,
                d.radarr_id,
                serde_json::to_string(&d.play)?,
                serde_json::to_string(&d.verdict)?,
                serde_json::to_string(&d.facts)?,
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Moves a decision on; `radarr_id` `None` keeps the one stored.
    pub fn set_download_status(
        &self,
        id: i64,
        status: &str,
        detail: Option<&str>,
        radarr_id: Option<i64>,
    ) -> Result<()> {
        let now = now_ms();
        let n = self.conn.execute(
            "UPDATE download_decisions
             SET status = ?2, detail = ?3, radarr_id = COALESCE(?4, radarr_id), updated_ms = ?5
             WHERE id = ?1",
            params![id, status, detail, radarr_id, to_i64(now)],
        )?;
        anyhow::ensure!(n == 1, "download decision {id} is not in the store");
        Ok(())
    }

    /// One decision; `None` when no decision has that id.
    pub fn download_decision(&self, id: i64) -> Result<Option<DownloadDecision>> {
        let raw = self
            .conn
            .query_row(
                &format!("SELECT {DECISION_COLUMNS} WHERE id = ?1"),
                params![id],
                decision_row,
            )
            .optional()?;
        raw.map(decision_from).transpose()
    }

    /// Decisions since `since_ms`, newest first, at most `limit`. A row that cannot be read
    /// (a hand-edited file) is skipped with a warning rather than hiding the others.
    pub fn download_decisions(&self, since_ms: u64, limit: usize) -> Result<Vec<DownloadDecision>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {DECISION_COLUMNS} WHERE at_ms >= ?1 ORDER BY at_ms DESC, id DESC LIMIT ?2"
        ))?;
        let rows = st.query_map(
            params![to_i64(since_ms), i64::try_from(limit).unwrap_or(i64::MAX)],
            decision_row,
        )?;
        let mut out = Vec::new();
        for raw in rows {
            match decision_from(raw?) {
                Ok(d) => out.push(d),
                Err(e) => tracing::warn!("skipping an unreadable download decision: {e:#}"),
            }
        }
        Ok(out)
    }

    /// Puts a decision in the durable queue (again: its attempts are kept).
    pub fn enqueue_download(&self, decision_id: i64, next_at_ms: u64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO download_queue (decision_id, attempts, next_at_ms) VALUES (?1, 0, ?2)
             ON CONFLICT(decision_id) DO UPDATE SET next_at_ms = excluded.next_at_ms",
            params![decision_id, to_i64(next_at_ms)],
        )?;
        Ok(())
    }

    /// The queued decisions due at `now_ms`, the oldest due first.
    pub fn due_downloads(&self, now_ms: u64, limit: usize) -> Result<Vec<QueuedDownload>> {
        self.queue_where("WHERE next_at_ms <= ?1", to_i64(now_ms), limit)
    }

    /// Every queued decision (for `status`).
    pub fn queued_downloads(&self) -> Result<Vec<QueuedDownload>> {
        self.queue_where("WHERE ?1 IS NOT NULL", 0, 10_000)
    }

    fn queue_where(&self, clause: &str, arg: i64, limit: usize) -> Result<Vec<QueuedDownload>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT decision_id, attempts, next_at_ms, last_error FROM download_queue {clause}
             ORDER BY next_at_ms, decision_id LIMIT ?2"
        ))?;
        let rows = st.query_map(
            params![arg, i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| {
                Ok(QueuedDownload {
                    decision_id: r.get(0)?,
                    attempts: u32::try_from(r.get::<_, i64>(1)?).unwrap_or(u32::MAX),
                    next_at_ms: to_u64(r.get(2)?),
                    last_error: r.get(3)?,
                })
            },
        )?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// A failed attempt: one more, the next try at `next_at_ms`, and why.
    pub fn reschedule_download(
        &self,
        decision_id: i64,
        next_at_ms: u64,
        error: &str,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE download_queue SET attempts = attempts + 1, next_at_ms = ?2, last_error = ?3
             WHERE decision_id = ?1",
            params![decision_id, to_i64(next_at_ms), error],
        )?;
        Ok(())
    }

    /// The decision was acted on (or finally refused): out of the queue.
    pub fn finish_download(&self, decision_id: i64) -> Result<()> {
        self.conn.execute(
            "DELETE FROM download_queue WHERE decision_id = ?1",
            params![decision_id],
        )?;
        Ok(())
    }

    /// When a search for this movie was last started.
    pub fn last_search(&self, tmdb: u64) -> Result<Option<u64>> {
        let t: Option<i64> = self
            .conn
            .query_row(
                "SELECT at_ms FROM download_searches WHERE tmdb = ?1",
                params![to_i64(tmdb)],
                |r| r.get(0),
            )
            .optional()?;
        Ok(t.map(to_u64))
    }

    /// A search was started for this movie.
    pub fn record_search(
        &self,
        tmdb: u64,
        at_ms: u64,
        radarr_id: i64,
        command_id: Option<i64>,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT INTO download_searches (tmdb, at_ms, radarr_id, command_id) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(tmdb) DO UPDATE SET at_ms = excluded.at_ms, radarr_id = excluded.radarr_id,
               command_id = excluded.command_id",
            params![to_i64(tmdb), to_i64(at_ms), radarr_id, command_id],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::downloads::{ItemKind, PlaySource, Tier};

    const DAY: u64 = 86_400_000;

    fn play(user: &str, at_ms: u64, tmdb: Option<u64>, source: PlaySource) -> Play {
        Play {
            source,
            at_ms,
            user: user.into(),
            address: Some("192.168.1.5".parse().unwrap()),
            kind: ItemKind::Movie,
            title: "Arrival".into(),
            year: Some(2016),
            ids: Ids {
                imdb: Some("tt2543164".into()),
                tmdb,
                tvdb: None,
            },
            item_id: "abc".into(),
            percent: 97.0,
            genres: vec!["Drama".into()],
            client: Some("Jellyfin Web".into()),
        }
    }

    fn decision(p: Play) -> DownloadDecision {
        DownloadDecision {
            id: 0,
            at_ms: p.at_ms,
            play: p,
            verdict: Verdict {
                tier: Tier::AfterRewatch,
                download: true,
                reasons: vec!["watched 2 times in 90 days ≥ 2 (history)".into()],
            },
            facts: Facts::default(),
            status: "queued".into(),
            detail: None,
            radarr_id: None,
        }
    }

    #[test]
    fn a_play_posted_twice_is_stored_once_and_sources_of_one_viewing_count_once() {
        let s = Store::in_memory().unwrap();
        let t = 100 * DAY;
        assert!(s
            .record_play(&play("Alice", t, Some(329865), PlaySource::Jellyfin))
            .unwrap());
        assert!(!s
            .record_play(&play("Alice", t, Some(329865), PlaySource::Jellyfin))
            .unwrap());
        // The same viewing from Jellystat, an hour earlier (its start): one viewing.
        assert!(s
            .record_play(&play(
                "alice",
                t - 3_600_000,
                Some(329865),
                PlaySource::Jellystat
            ))
            .unwrap());
        let ids = play("x", 0, Some(329865), PlaySource::Test).ids;
        assert_eq!(
            s.watch_count("ALICE", &ids, "Arrival", Some(2016), t - 90 * DAY)
                .unwrap(),
            1
        );
        // A rewatch a week later counts; matched by IMDb id alone too.
        s.record_play(&play("alice", t + 7 * DAY, None, PlaySource::PlexWebhook))
            .unwrap();
        assert_eq!(
            s.watch_count("alice", &ids, "Arrival", Some(2016), t - 90 * DAY)
                .unwrap(),
            2
        );
        // Another user's plays do not count for alice.
        s.record_play(&play(
            "bob",
            t + 9 * DAY,
            Some(329865),
            PlaySource::Jellyfin,
        ))
        .unwrap();
        assert_eq!(
            s.watch_count("alice", &ids, "Arrival", Some(2016), 0)
                .unwrap(),
            2
        );
    }

    #[test]
    fn the_window_edge_is_inclusive_and_plays_without_ids_match_by_title_and_year() {
        let s = Store::in_memory().unwrap();
        let mut p = play("alice", 10 * DAY, None, PlaySource::PlexHistory);
        p.ids = Ids::default();
        s.record_play(&p).unwrap();
        let none = Ids::default();
        assert_eq!(
            s.watch_count("alice", &none, "arrival", Some(2016), 10 * DAY)
                .unwrap(),
            1
        );
        assert_eq!(
            s.watch_count("alice", &none, "arrival", Some(2016), 10 * DAY + 1)
                .unwrap(),
            0
        );
        assert_eq!(
            s.watch_count("alice", &none, "arrival", Some(2017), 0)
                .unwrap(),
            0
        );
        // A play with ids finds the id-less play of the same title and year.
        let ids = play("x", 0, Some(329865), PlaySource::Test).ids;
        assert_eq!(
            s.watch_count("alice", &ids, "Arrival", Some(2016), 0)
                .unwrap(),
            1
        );
        assert_eq!(s.last_played(329865).unwrap(), None);
        s.record_play(&play("bob", 20 * DAY, Some(329865), PlaySource::Jellyfin))
            .unwrap();
        assert_eq!(s.last_played(329865).unwrap(), Some(20 * DAY));
    }

    #[test]
    fn decisions_keep_their_reasons_and_the_queue_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.sqlite");
        let id = {
            let s = Store::open(&path).unwrap();
            let id = s
                .insert_download_decision(&decision(play(
                    "alice",
                    5 * DAY,
                    Some(1),
                    PlaySource::Jellyfin,
                )))
                .unwrap();
            s.enqueue_download(id, 6 * DAY).unwrap();
            s.reschedule_download(id, 7 * DAY, "Radarr answered 500")
                .unwrap();
            id
        };
        let s = Store::open(&path).unwrap();
        let d = s.download_decision(id).unwrap().unwrap();
        assert_eq!(
            d.verdict.reasons,
            ["watched 2 times in 90 days ≥ 2 (history)"]
        );
        assert_eq!(d.play.user, "alice");
        assert_eq!(s.due_downloads(6 * DAY, 10).unwrap(), []);
        let q = s.due_downloads(7 * DAY, 10).unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(
            (q[0].attempts, q[0].last_error.as_deref()),
            (1, Some("Radarr answered 500"))
        );
        s.set_download_status(id, "searched", Some("MoviesSearch 12 completed"), Some(42))
            .unwrap();
        s.set_download_status(id, "searched", None, None).unwrap();
        assert_eq!(
            s.download_decision(id).unwrap().unwrap().radarr_id,
            Some(42)
        );
        assert!(s.set_download_status(id + 1, "x", None, None).is_err());
        s.finish_download(id).unwrap();
        assert!(s.queued_downloads().unwrap().is_empty());
        assert_eq!(s.download_decisions(0, 10).unwrap().len(), 1);
        assert!(s.download_decisions(5 * DAY + 1, 10).unwrap().is_empty());
        assert_eq!(s.last_search(1).unwrap(), None);
        s.record_search(1, 8 * DAY, 42, Some(7)).unwrap();
        s.record_search(1, 9 * DAY, 42, None).unwrap();
        assert_eq!(s.last_search(1).unwrap(), Some(9 * DAY));
    }
}
