//! `downshiftarr downloads import-history [--from plex|jellystat] [--days 90]`: back-fills
//! our watch history so the rewatch rule works from the first day (issue 13).
//!
//! Plex: `GET /status/sessions/history/all` (paged with `X-Plex-Container-Start/Size`,
//! `sort=viewedAt:desc`, `viewedAt>=<since>`), whose rows carry the rating key, the title,
//! `viewedAt` (epoch seconds) and `accountID` — no year, no ids, no user name. The names come
//! from `GET /accounts`; the ids from our library index, else one `/library/metadata` call per
//! 50 keys (a deleted item keeps its title only). Plex writes a history row when an item is
//! watched (its own ~90 % rule), so each row is a full play. Only movies are kept.
//!
//! Jellystat: `GET /api/getHistory` (paged, bounded); a row's kind and ids come from
//! Jellyfin when it is configured.
//!
//! Idempotent: a play is keyed by (source, user, item, time) in the store, so a second run
//! adds nothing. Everything is read first; any failed request stops the import before one
//! row is written (never a half import read as "not watched").

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::downloads::{config, db_path, now_ms, HistorySource, ImportHistoryArgs};
use crate::clients::jellyfin::{Jellyfin, JellyfinItem};
use crate::clients::jellystat::{HistoryRow, Jellystat};
use crate::config::downloads::DownloadsSettings;
use crate::config::secret::Secret;
use crate::jobs::downloads::{Ids, ItemKind, Play, PlaySource};
use crate::plex::json::{n, s, Item};
use crate::plex::Plex;
use crate::store::Store;

/// History rows asked per page.
const PAGE: u64 = 200;
/// The most rows one import reads (a page loop that never ends is a bug, not a history).
pub const MAX_ROWS: usize = 200_000;
/// Rating keys per `/library/metadata` call.
const META_BATCH: usize = 50;

/// What an import found.
#[derive(Debug, Default, PartialEq)]
pub struct Tally {
    pub rows: usize,
    pub plays: Vec<Play>,
    /// Rows that are not movies (episodes, tracks).
    pub not_movies: usize,
    /// Rows older than the window (the server ignored the filter).
    pub too_old: usize,
    /// Rows without a usable rating key, time or title.
    pub unusable: usize,
    pub notes: Vec<String>,
}

/// What is known of a rating key: title, year, ids.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Known {
    pub title: String,
    pub year: Option<u32>,
    pub ids: Ids,
}

/// Plex history rows → plays (pure). `accounts`: accountID → name; `known`: rating key →
/// title, year and ids; `since_s`: the window's start.
pub fn plex_plays(
    rows: &[Value],
    accounts: &BTreeMap<i64, String>,
    known: &BTreeMap<String, Known>,
    since_s: i64,
) -> Tally {
    let mut t = Tally {
        rows: rows.len(),
        ..Tally::default()
    };
    let mut unknown_accounts = BTreeMap::new();
    for r in rows {
        if s(r, "type").as_deref() != Some("movie") {
            t.not_movies += 1;
            continue;
        }
        let (Some(rk), Some(viewed)) = (s(r, "ratingKey"), n(r, "viewedAt")) else {
            t.unusable += 1;
            continue;
        };
        if viewed < since_s {
            t.too_old += 1;
            continue;
        }
        let k = known.get(&rk);
        let title = k
            .map(|k| k.title.clone())
            .filter(|t| !t.trim().is_empty())
            .or_else(|| s(r, "title"))
            .unwrap_or_default();
        if title.trim().is_empty() || rk.trim().is_empty() || viewed <= 0 {
            t.unusable += 1;
            continue;
        }
        let account = n(r, "accountID").unwrap_or(-1);
        let user = match accounts.get(&account).filter(|n| !n.trim().is_empty()) {
            Some(name) => name.clone(),
            None => {
                *unknown_accounts.entry(account).or_insert(0usize) += 1;
                format!("plex account {account}")
            }
        };
        // The year: the index's, else the release date's.
        let year = k.and_then(|k| k.year).or_else(|| {
            s(r, "originallyAvailableAt")
                .and_then(|d| d.get(..4).and_then(|y| y.parse::<u32>().ok()))
        });
        t.plays.push(Play {
            source: PlaySource::PlexHistory,
            at_ms: u64::try_from(viewed).unwrap_or(0).saturating_mul(1000),
            user,
            address: None,
            kind: ItemKind::Movie,
            title,
            year,
            ids: k.map(|k| k.ids.clone()).unwrap_or_default(),
            item_id: rk,
            percent: 100.0,
            genres: Vec::new(),
            client: None,
        });
    }
    for (id, count) in unknown_accounts {
        t.notes.push(format!(
            "{count} play(s) by Plex account {id}, which /accounts does not name: recorded as \"plex account {id}\""
        ));
    }
    t
}

/// Every history row since `since_s`, newest first, page by page (bounded by [`MAX_ROWS`]).
fn plex_history(plex: &Plex, since_s: i64, notes: &mut Vec<String>) -> Result<Vec<Value>> {
    let path = "/status/sessions/history/all";
    let mut rows: Vec<Value> = Vec::new();
    let mut start = 0u64;
    loop {
        let mc = plex
            .get(
                path,
                &[
                    ("sort", "viewedAt:desc".to_string()),
                    ("viewedAt>", since_s.to_string()),
                ],
                &[
                    ("X-Plex-Container-Start", start.to_string()),
                    ("X-Plex-Container-Size", PAGE.to_string()),
                ],
            )
            .map_err(|e| anyhow::anyhow!("{e}: nothing imported"))?;
        let page: Vec<Value> = mc
            .get("Metadata")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let got = page.len() as u64;
        // A server that ignores the filter still sorts: past the window, stop.
        let oldest = page.iter().filter_map(|r| n(r, "viewedAt")).min();
        rows.extend(page);
        let total = n(&mc, "totalSize").and_then(|t| u64::try_from(t).ok());
        start += got;
        if got == 0 || got < PAGE || total.is_some_and(|t| start >= t) {
            break;
        }
        if oldest.is_some_and(|o| o < since_s) {
            break;
        }
        if rows.len() >= MAX_ROWS {
            notes.push(format!(
                "stopped after {MAX_ROWS} history rows: the rest (older) is not imported"
            ));
            break;
        }
    }
    Ok(rows)
}

/// accountID → name, from `GET /accounts`.
fn plex_accounts(plex: &Plex) -> Result<BTreeMap<i64, String>> {
    let mc = plex.get("/accounts", &[], &[]).map_err(|e| {
        anyhow::anyhow!("{e}: nothing imported (the history names users by account id only)")
    })?;
    Ok(mc
        .get("Account")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|a| Some((n(a, "id")?, s(a, "name")?)))
        .collect())
}

/// Title, year and ids of each movie rating key: the index, else Plex (`/library/metadata`,
/// 50 keys a call). A key Plex no longer has (404) is left to the row's title.
fn plex_known(plex: &Plex, store: &Store, rows: &[Value]) -> Result<BTreeMap<String, Known>> {
    let mut known = BTreeMap::new();
    let mut missing = Vec::new();
    for r in rows
        .iter()
        .filter(|r| s(r, "type").as_deref() == Some("movie"))
    {
        let Some(rk) = s(r, "ratingKey") else {
            continue;
        };
        if known.contains_key(&rk) || missing.contains(&rk) {
            continue;
        }
        match store.item_row(&rk) {
            Ok(Some(row)) if row.imdb.is_some() || row.tmdb.is_some() => {
                known.insert(
                    rk,
                    Known {
                        title: row.title,
                        year: row.year.and_then(|y| u32::try_from(y).ok()),
                        ids: Ids {
                            imdb: row.imdb,
                            tmdb: row.tmdb.and_then(|t| t.parse().ok()),
                            tvdb: None,
                        },
                    },
                );
            }
            Ok(_) => missing.push(rk),
            Err(e) => return Err(e.context(format!("reading the index for rating key {rk}"))),
        }
    }
    for chunk in missing.chunks(META_BATCH) {
        let items = match plex.metadata(chunk) {
            Ok(items) => items,
            // None of these exists any more: their rows keep their titles.
            Err(e) if e.status() == Some(404) => continue,
            Err(e) => bail!("{e}: nothing imported"),
        };
        for v in &items {
            let it = Item::from_value(v);
            let Some(rk) = s(v, "ratingKey") else {
                continue;
            };
            let ext = it.external_ids();
            known.insert(
                rk,
                Known {
                    title: s(v, "title").unwrap_or_default(),
                    year: n(v, "year").and_then(|y| u32::try_from(y).ok()),
                    ids: Ids {
                        imdb: ext.imdb,
                        tmdb: ext.tmdb.and_then(|t| t.parse().ok()),
                        tvdb: None,
                    },
                },
            );
        }
    }
    Ok(known)
}

fn from_plex(cfg: &crate::config::Config, store: &Store, since_s: i64) -> Result<Tally> {
    let plex = Plex::from_config(&cfg.plex).context("import-history --from plex")?;
    let accounts = plex_accounts(&plex)?;
    let mut notes = Vec::new();
    let rows = plex_history(&plex, since_s, &mut notes)?;
    let known = plex_known(&plex, store, &rows)?;
    let mut t = plex_plays(&rows, &accounts, &known, since_s);
    t.notes.extend(notes);
    let no_ids = t
        .plays
        .iter()
        .filter(|p| p.ids.tmdb.is_none() && p.ids.imdb.is_none())
        .count();
    if no_ids > 0 {
        t.notes.push(format!(
            "{no_ids} play(s) of movies Plex no longer has: kept with their title only (matched by title and year)"
        ));
    }
    Ok(t)
}

/// Jellystat rows → plays (pure). `items`: the Jellyfin item of each row's item id (`None`:
/// Jellyfin no longer has it). A row counts when the item is a movie and the play reached
/// `min_percent` of its runtime (Jellystat keeps plays from 60 s on: a one-minute look is
/// not a watch).
pub fn jellystat_plays(
    rows: &[HistoryRow],
    items: &BTreeMap<String, Option<JellyfinItem>>,
    min_percent: f64,
    since_ms: u64,
) -> Tally {
    let mut t = Tally {
        rows: rows.len(),
        ..Tally::default()
    };
    let (mut gone, mut partial, mut no_runtime) = (0usize, 0usize, 0usize);
    for r in rows {
        if r.at_ms < since_ms {
            t.too_old += 1;
            continue;
        }
        let Some(Some(item)) = items.get(&r.item_id) else {
            gone += 1;
            continue;
        };
        if !item.kind.eq_ignore_ascii_case("movie") {
            t.not_movies += 1;
            continue;
        }
        let Some(runtime) = item.runtime_s else {
            no_runtime += 1;
            continue;
        };
        let percent = (r.duration_s as f64 * 100.0 / runtime as f64).min(100.0);
        if percent < min_percent {
            partial += 1;
            continue;
        }
        t.plays.push(Play {
            source: PlaySource::Jellystat,
            at_ms: r.at_ms,
            user: r.user.clone(),
            address: r.address.as_deref().and_then(|a| a.trim().parse().ok()),
            kind: ItemKind::Movie,
            title: if item.name.trim().is_empty() {
                r.item_name.clone()
            } else {
                item.name.clone()
            },
            year: item.year,
            ids: item.ids.clone(),
            item_id: r.item_id.clone(),
            percent,
            genres: item.genres.clone(),
            client: None,
        });
    }
    t.unusable = gone + no_runtime;
    if partial > 0 {
        t.notes.push(format!(
            "{partial} movie play(s) shorter than {min_percent}% of the runtime: not counted"
        ));
    }
    if gone > 0 {
        t.notes.push(format!(
            "{gone} play(s) of items Jellyfin no longer has (or of users it no longer knows): skipped"
        ));
    }
    if no_runtime > 0 {
        t.notes.push(format!(
            "{no_runtime} play(s) of movies without a runtime in Jellyfin: skipped (the share watched is unknown)"
        ));
    }
    t
}

/// A service's key, or why there is none.
fn key(secret: &Secret, what: &str) -> Result<String> {
    match secret.get() {
        Ok(Some(k)) => Ok(k.expose().to_string()),
        Ok(None) => bail!("no {what} API key configured"),
        Err(e) => bail!("{e}"),
    }
}

fn from_jellystat(s: &DownloadsSettings, since_ms: u64) -> Result<Tally> {
    if s.jellystat_url.trim().is_empty() {
        bail!("import-history --from jellystat: downloads.jellystat_url (or JELLYSTAT_URL) is not set");
    }
    if s.jellyfin_url.trim().is_empty() {
        bail!(
            "import-history --from jellystat also needs Jellyfin (downloads.jellyfin_url or JELLYFIN_URL): \
             Jellystat's rows say neither whether a play is a movie nor its runtime or ids"
        );
    }
    let stat = Jellystat::new(
        &s.jellystat_url,
        &key(
            &s.jellystat_api_key,
            "Jellystat (downloads.jellystat_api_key)",
        )?,
        s.connect_timeout_ms,
        s.request_timeout_ms,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let jf = Jellyfin::new(
        &s.jellyfin_url,
        &key(&s.jellyfin_api_key, "Jellyfin (downloads.jellyfin_api_key)")?,
        s.connect_timeout_ms,
        s.request_timeout_ms,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let rows: Vec<HistoryRow> = stat
        .history(MAX_ROWS)
        .map_err(|e| anyhow::anyhow!("{e}: nothing imported"))?;
    let mut notes = Vec::new();
    if rows.len() >= MAX_ROWS {
        notes.push(format!(
            "read the newest {MAX_ROWS} Jellystat rows only: older ones are not imported"
        ));
    }
    // Each user's Jellyfin id, then each item once (as its first user sees it).
    let mut users: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut items: BTreeMap<String, Option<JellyfinItem>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.at_ms >= since_ms) {
        if items.contains_key(&r.item_id) {
            continue;
        }
        if !users.contains_key(&r.user) {
            let id = jf
                .user_id(&r.user)
                .map_err(|e| anyhow::anyhow!("{e}: nothing imported"))?;
            users.insert(r.user.clone(), id);
        }
        let item = match users.get(&r.user).cloned().flatten() {
            Some(uid) => jf
                .item(&uid, &r.item_id)
                .map_err(|e| anyhow::anyhow!("{e}: nothing imported"))?,
            None => None,
        };
        items.insert(r.item_id.clone(), item);
    }
    let mut t = jellystat_plays(&rows, &items, s.min_watched_percent, since_ms);
    t.notes.extend(notes);
    Ok(t)
}

pub fn run(args: ImportHistoryArgs) -> Result<ExitCode> {
    let cfg = config(args.config.as_deref())?;
    let days = args.days.unwrap_or(cfg.downloads.window_days);
    let now = now_ms();
    let since_ms = now.saturating_sub(u64::from(days).saturating_mul(86_400_000));
    let since_s = i64::try_from(since_ms / 1000).unwrap_or(0);
    let db = db_path(&cfg);
    let store = Store::open(&db).with_context(|| format!("the store {}", db.display()))?;
    let t = match args.from {
        HistorySource::Plex => from_plex(&cfg, &store, since_s)?,
        HistorySource::Jellystat => from_jellystat(&cfg.downloads, since_ms)?,
    };
    let source = match args.from {
        HistorySource::Plex => "Plex",
        HistorySource::Jellystat => "Jellystat",
    };
    println!(
        "{source}: {} history row(s) read, window {days} days: {} movie play(s) to record, {} not movies, {} unusable{}",
        t.rows,
        t.plays.len(),
        t.not_movies,
        t.unusable,
        if t.too_old > 0 {
            format!(", {} older than the window", t.too_old)
        } else {
            String::new()
        }
    );
    for n in &t.notes {
        println!("note: {n}");
    }
    if args.dry_run {
        for p in &t.plays {
            println!(
                "would import: {}  {}  {}",
                super::downloads::time(p.at_ms),
                p.user,
                crate::jobs::downloads::notify::label(&p.title, p.year)
            );
        }
        println!("dry run: nothing written");
        return Ok(ExitCode::SUCCESS);
    }
    let added = store.write(|st| {
        let mut added = 0usize;
        for p in &t.plays {
            if st.record_play(p)? {
                added += 1;
            }
        }
        Ok(added)
    })?;
    println!(
        "imported {added} play(s) into {} ({} already there)",
        db.display(),
        t.plays.len() - added
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(rk: u64, kind: &str, account: i64, viewed: i64) -> Value {
        json!({"historyKey": format!("/status/sessions/history/{rk}"), "ratingKey": rk.to_string(),
               "title": format!("Title {rk}"), "type": kind, "viewedAt": viewed, "accountID": account,
               "originallyAvailableAt": "1999-03-31", "deviceID": 3})
    }

    #[test]
    fn movie_rows_become_full_plays_with_names_ids_and_years() {
        let accounts = BTreeMap::from([(1, "alice".to_string()), (0, String::new())]);
        let known = BTreeMap::from([(
            "10".to_string(),
            Known {
                title: "The Matrix".into(),
                year: Some(1999),
                ids: Ids {
                    tmdb: Some(603),
                    imdb: Some("tt0133093".into()),
                    tvdb: None,
                },
            },
        )]);
        let rows = vec![
            row(10, "movie", 1, 1_700_000_000),
            row(11, "movie", 7, 1_700_000_100),
            row(12, "episode", 1, 1_700_000_200),
            row(13, "movie", 1, 1_600_000_000),
            json!({"type": "movie", "viewedAt": 1_700_000_000}),
            json!({"type": "movie", "ratingKey": "14", "viewedAt": "1700000300", "accountID": "1", "title": " "}),
        ];
        let t = plex_plays(&rows, &accounts, &known, 1_650_000_000);
        assert_eq!((t.rows, t.not_movies, t.too_old, t.unusable), (6, 1, 1, 2));
        assert_eq!(t.plays.len(), 2);
        let p = &t.plays[0];
        assert_eq!(p.source, PlaySource::PlexHistory);
        assert_eq!(
            (p.user.as_str(), p.title.as_str(), p.year),
            ("alice", "The Matrix", Some(1999))
        );
        assert_eq!(p.ids.tmdb, Some(603));
        assert_eq!(
            (p.at_ms, p.percent, p.item_id.as_str()),
            (1_700_000_000_000, 100.0, "10")
        );
        let q = &t.plays[1];
        assert_eq!(q.user, "plex account 7");
        assert_eq!((q.title.as_str(), q.year), ("Title 11", Some(1999)));
        assert_eq!(q.ids, Ids::default());
        assert!(t.notes[0].contains("Plex account 7"), "{:?}", t.notes);
    }

    fn jrow(item: &str, at_ms: u64, duration_s: u64) -> HistoryRow {
        HistoryRow {
            user: "alice".into(),
            item_id: item.into(),
            item_name: format!("name of {item}"),
            at_ms,
            duration_s,
            address: Some("192.168.1.20".into()),
        }
    }

    fn jitem(kind: &str, runtime_s: Option<u64>) -> JellyfinItem {
        JellyfinItem {
            name: "Paprika".into(),
            year: Some(2006),
            kind: kind.into(),
            community_rating: Some(7.7),
            genres: vec!["Animation".into()],
            ids: Ids {
                tmdb: Some(4977),
                ..Ids::default()
            },
            play_count: None,
            runtime_s,
        }
    }

    #[test]
    fn jellystat_rows_count_only_movies_watched_past_the_threshold() {
        let items = BTreeMap::from([
            ("movie".to_string(), Some(jitem("Movie", Some(5400)))),
            ("episode".to_string(), Some(jitem("Episode", Some(1800)))),
            ("no-runtime".to_string(), Some(jitem("Movie", None))),
            ("gone".to_string(), None),
        ]);
        let rows = vec![
            jrow("movie", 2_000, 5_300),   // 98 %: counts
            jrow("movie", 3_000, 60),      // one minute: not a watch
            jrow("movie", 500, 5_400),     // before the window
            jrow("episode", 2_000, 1_800), // not a movie
            jrow("no-runtime", 2_000, 5_000),
            jrow("gone", 2_000, 5_000),
            jrow("unknown", 2_000, 5_000),
        ];
        let t = jellystat_plays(&rows, &items, 90.0, 1_000);
        assert_eq!((t.rows, t.too_old, t.not_movies, t.unusable), (7, 1, 1, 3));
        assert_eq!(t.plays.len(), 1);
        let p = &t.plays[0];
        assert_eq!(p.source, PlaySource::Jellystat);
        assert_eq!(
            (p.title.as_str(), p.year, p.ids.tmdb),
            ("Paprika", Some(2006), Some(4977))
        );
        assert!((p.percent - 98.148).abs() < 0.01, "{}", p.percent);
        assert_eq!(p.address, Some("192.168.1.20".parse().unwrap()));
        let notes = t.notes.join("\n");
        assert!(
            notes.contains("1 movie play(s) shorter than 90% of the runtime"),
            "{notes}"
        );
        assert!(
            notes.contains("2 play(s) of items Jellyfin no longer has"),
            "{notes}"
        );
        assert!(
            notes.contains("1 play(s) of movies without a runtime"),
            "{notes}"
        );
    }
}
