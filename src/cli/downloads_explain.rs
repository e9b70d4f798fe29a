//! `downshiftarr downloads explain "<title>"` and `downloads test`: a movie evaluated NOW
//! through the job's own path (`engine::evaluate`: who, counts, facts, rules) with no side
//! effect — nothing recorded, nothing sent to Radarr — and printed with the tier, every
//! reason, and each fact with its source.
//!
//! `explain` finds the movie in Radarr's library by title (or original title) and year,
//! else in the Plex index; `test` replays a Jellyfin PlaybackStop body (a file, or a built-in
//! sample) through the webhook intake first, as the original's `smart_download.py test`.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::downloads::{config, enabled, now_ms, ExplainArgs, TestArgs};
use crate::clients::radarr::Movie;
use crate::config::downloads::DownloadsSettings;
use crate::jobs::downloads::engine::{self, Evaluation, Services};
use crate::jobs::downloads::notify::label;
use crate::jobs::downloads::settings::Who;
use crate::jobs::downloads::{intake, Facts, Ids, ItemKind, Play, PlaySource};
use crate::store::Store;

/// The largest webhook body `test --file` reads.
const MAX_BODY: u64 = 1 << 20;

/// The user a command imagines: the flag, else the first tracked user, else "owner" (every
/// user not a guest counts when tracked_users is empty).
fn user_of(s: &DownloadsSettings, flag: Option<&str>) -> String {
    flag.map(str::trim)
        .filter(|u| !u.is_empty())
        .map(String::from)
        .or_else(|| s.tracked_users.first().cloned())
        .unwrap_or_else(|| "owner".into())
}

/// Lower-case, trimmed, inner whitespace collapsed: how titles are compared.
fn norm(t: &str) -> String {
    t.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Radarr's movies titled `title` (or with that original title), of `year` when given.
pub fn matching<'a>(movies: &'a [Movie], title: &str, year: Option<u32>) -> Vec<&'a Movie> {
    let want = norm(title);
    movies
        .iter()
        .filter(|m| {
            let original = m.raw.get("originalTitle").and_then(Value::as_str);
            (norm(&m.title) == want || original.is_some_and(|o| norm(o) == want))
                && year.is_none_or(|y| m.year == Some(y))
        })
        .collect()
}

/// A play of `movie` by `user` now, watched to the end.
fn play_of(user: &str, title: &str, year: Option<u32>, ids: Ids, genres: Vec<String>) -> Play {
    Play {
        source: PlaySource::Test,
        at_ms: now_ms(),
        user: user.to_string(),
        address: None,
        kind: ItemKind::Movie,
        title: title.to_string(),
        year,
        item_id: match (&ids.tmdb, &ids.imdb) {
            (Some(t), _) => format!("tmdb:{t}"),
            (None, Some(i)) => format!("imdb:{i}"),
            _ => format!("title:{}", norm(title)),
        },
        ids,
        percent: 100.0,
        genres,
        client: Some("downshiftarr explain".into()),
    }
}

/// The store for evaluating: the daemon's, read-only, or an empty one (no history yet).
fn store(cfg: &crate::config::Config, notes: &mut Vec<String>) -> Result<Store> {
    match super::downloads::store_read_only(cfg)? {
        Some(s) => Ok(s),
        None => {
            notes.push(format!(
                "no store at {} yet: our watch history is empty",
                super::downloads::db_path(cfg).display()
            ));
            Store::in_memory()
        }
    }
}

pub fn explain(args: ExplainArgs) -> Result<ExitCode> {
    let cfg = config(args.config.as_deref())?;
    let s = enabled(&cfg)?;
    let sv = Services::from_settings(s)?;
    let mut notes = Vec::new();
    let movies = sv
        .radarr
        .movies()
        .map_err(|e| anyhow::anyhow!("{e}: cannot look the movie up, nothing evaluated"))?;
    let found = matching(&movies, &args.title, args.year);
    let user = user_of(s, args.user.as_deref());
    let play = match found.as_slice() {
        [m] => play_of(
            &user,
            &m.title,
            m.year,
            Ids {
                imdb: m.imdb_id.clone(),
                tmdb: Some(m.tmdb_id),
                tvdb: None,
            },
            m.genres.clone(),
        ),
        [] => {
            // Not in Radarr: the Plex index may know its ids.
            let db = store(&cfg, &mut Vec::new())?;
            let indexed = db
                .titled(&args.title, args.year.map(i64::from))
                .context("reading the Plex index: nothing evaluated")?;
            let Some(it) = indexed.iter().find(|t| t.kind == "movie") else {
                bail!(
                    "no movie titled {:?}{} in Radarr ({} movies) or the Plex index",
                    args.title,
                    args.year.map(|y| format!(" ({y})")).unwrap_or_default(),
                    movies.len()
                );
            };
            notes.push(format!(
                "not in Radarr: found in the Plex index [{}]",
                it.rating_key
            ));
            play_of(
                &user,
                &it.title,
                it.year.and_then(|y| u32::try_from(y).ok()),
                Ids {
                    imdb: it.imdb.clone(),
                    tmdb: it.tmdb.as_deref().and_then(|t| t.parse().ok()),
                    tvdb: None,
                },
                Vec::new(),
            )
        }
        many if args.year.is_none() => {
            let list: Vec<String> = many.iter().map(|m| label(&m.title, m.year)).collect();
            bail!(
                "{} movies are titled {:?} in Radarr: {}; say which with --year",
                many.len(),
                args.title,
                list.join(", ")
            );
        }
        [first, ..] => {
            notes.push(format!(
                "{} movies in Radarr match; the first (id {}) is explained",
                found.len(),
                first.id
            ));
            play_of(
                &user,
                &first.title,
                first.year,
                Ids {
                    imdb: first.imdb_id.clone(),
                    tmdb: Some(first.tmdb_id),
                    tvdb: None,
                },
                first.genres.clone(),
            )
        }
    };
    let db = store(&cfg, &mut notes)?;
    let ev = engine::evaluate(&sv, &db, s, &play).map_err(|e| {
        anyhow::anyhow!("{e}: nothing evaluated (a failed request is not an answer)")
    })?;
    print_evaluation(&play, &ev, &notes, args.json, s)?;
    Ok(ExitCode::SUCCESS)
}

/// The sample PlaybackStop of `test`: what the Jellyfin webhook plugin posts with "Send All
/// Properties" (payloads/jellyfin-webhook-playbackstop.FIELDS.md).
pub fn sample_body(user: &str) -> Value {
    json!({
        "ServerId": "downshiftarr-test", "ServerName": "test", "NotificationType": "PlaybackStop",
        "Timestamp": "2026-01-01T12:00:00", "UtcTimestamp": "2026-01-01T11:00:00Z",
        "Name": "The Matrix", "ItemId": "downshiftarr-test-the-matrix", "ItemType": "Movie",
        "RunTimeTicks": 81_840_000_000u64, "RunTime": "02:16:24", "Year": 1999,
        "Genres": "Action, Science Fiction", "Provider_imdb": "tt0133093", "Provider_tmdb": "603",
        "PlaybackPositionTicks": 81_840_000_000u64, "PlaybackPosition": "02:16:24",
        "IsPaused": false, "DeviceId": "downshiftarr-test", "DeviceName": "downshiftarr",
        "ClientName": "downshiftarr test", "PlayMethod": "DirectPlay", "PlayedToCompletion": true,
        "NotificationUsername": user, "UserId": "00000000000000000000000000000001"
    })
}

/// Reads a webhook body file: a regular file, at most [`MAX_BODY`], JSON.
fn read_body(path: &Path) -> Result<Value> {
    use downshiftarr_shim::open::{self, OpenError};
    let f = match open::read(path, open::Kind::Regular) {
        Ok(f) => f,
        Err(OpenError::NotFound) => bail!("{}: no such file", path.display()),
        Err(e) => bail!("unable to read {}: {e}", path.display()),
    };
    let mut text = String::new();
    f.take(MAX_BODY + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("unable to read {}", path.display()))?;
    if text.len() as u64 > MAX_BODY {
        bail!(
            "{}: larger than {} bytes, not a webhook body",
            path.display(),
            MAX_BODY
        );
    }
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not JSON (the Jellyfin webhook plugin must send all properties as JSON)",
            path.display()
        )
    })
}

pub fn test(args: TestArgs) -> Result<ExitCode> {
    let cfg = config(args.config.as_deref())?;
    let s = enabled(&cfg)?;
    let body = match &args.file {
        Some(f) => read_body(f)?,
        None => sample_body(&user_of(s, args.user.as_deref())),
    };
    let play = match intake::from_jellyfin(&body, now_ms()) {
        Ok(Some(p)) => p,
        Ok(None) => {
            let kind = body
                .get("NotificationType")
                .and_then(Value::as_str)
                .unwrap_or("?");
            let item = body.get("ItemType").and_then(Value::as_str).unwrap_or("?");
            if args.json {
                println!(
                    "{}",
                    json!({"ignored": true, "notification_type": kind, "item_type": item})
                );
            } else {
                println!(
                    "ignored: a {kind} of a {item} is not a video's PlaybackStop — the job would do nothing with it"
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => bail!("the webhook body is unusable: {e}"),
    };
    let sv = Services::from_settings(s)?;
    let mut notes = vec!["test: nothing recorded, nothing sent to Radarr".to_string()];
    let db = store(&cfg, &mut notes)?;
    let ev = engine::evaluate(&sv, &db, s, &play).map_err(|e| {
        anyhow::anyhow!("{e}: nothing evaluated (a failed request is not an answer)")
    })?;
    print_evaluation(&play, &ev, &notes, args.json, s)?;
    Ok(ExitCode::SUCCESS)
}

/// The original's decision log line: "DOWNLOAD TRIGGERED … Reason: …" or "No download
/// needed …".
pub fn headline(play: &Play, ev: &Evaluation) -> String {
    let name = label(&play.title, play.year);
    let why = ev.verdict.reasons.join("; ");
    if let Err(r) = &ev.counted {
        return format!("No download needed: {name} — the play does not count: {r}");
    }
    if ev.verdict.download {
        format!(
            "DOWNLOAD TRIGGERED: {name} — tier {}. Reason: {why}",
            ev.verdict.tier.as_str()
        )
    } else {
        format!(
            "No download needed: {name} — tier {}. Reason: {why}",
            ev.verdict.tier.as_str()
        )
    }
}

/// Each known fact as (name, value, source).
pub fn fact_rows(f: &Facts) -> Vec<(&'static str, String, String)> {
    let mut rows = Vec::new();
    let mut add = |name: &'static str, v: Option<(String, &str)>| {
        if let Some((value, source)) = v {
            rows.push((name, value, source.to_string()));
        }
    };
    add(
        "imdb rating",
        f.imdb_rating
            .as_ref()
            .map(|x| (format!("{:.1}", x.value), x.source.as_str())),
    );
    add(
        "imdb votes",
        f.imdb_votes
            .as_ref()
            .map(|x| (x.value.to_string(), x.source.as_str())),
    );
    add(
        "genres",
        f.genres
            .as_ref()
            .map(|x| (x.value.join(", "), x.source.as_str())),
    );
    add(
        "original language",
        f.original_language
            .as_ref()
            .map(|x| (x.value.clone(), x.source.as_str())),
    );
    add(
        "year",
        f.year
            .as_ref()
            .map(|x| (x.value.to_string(), x.source.as_str())),
    );
    add(
        "title",
        f.title
            .as_ref()
            .map(|x| (x.value.clone(), x.source.as_str())),
    );
    add(
        "edition",
        f.edition
            .as_ref()
            .map(|x| (x.value.clone(), x.source.as_str())),
    );
    add(
        "favourite",
        f.favourite.as_ref().map(|x| {
            (
                if x.value { "yes" } else { "no" }.to_string(),
                x.source.as_str(),
            )
        }),
    );
    add(
        "seeders",
        f.seeders
            .as_ref()
            .map(|x| (x.value.to_string(), x.source.as_str())),
    );
    add(
        "watch count",
        f.watch_count
            .as_ref()
            .map(|x| (x.value.to_string(), x.source.as_str())),
    );
    rows
}

fn print_evaluation(
    play: &Play,
    ev: &Evaluation,
    notes: &[String],
    as_json: bool,
    s: &DownloadsSettings,
) -> Result<()> {
    let who = match &ev.who {
        Who::Tracked => json!({"tracked": true}),
        Who::Guest(r) => json!({"tracked": false, "guest": r}),
    };
    let all_notes: Vec<&String> = notes.iter().chain(ev.facts.notes.iter()).collect();
    if as_json {
        let v = json!({
            "movie": {"title": play.title, "year": play.year, "ids": play.ids,
                      "radarr_id": ev.movie.as_ref().map(|m| m.id),
                      "has_file": ev.movie.as_ref().map(|m| m.has_file)},
            "user": play.user, "who": who,
            "counts": ev.counted.is_ok(),
            "not_counted": ev.counted.as_ref().err(),
            "tier": ev.verdict.tier.as_str(), "download": ev.verdict.download,
            "reasons": ev.verdict.reasons, "facts": ev.facts, "notes": all_notes,
            "dry_run": s.dry_run, "headline": headline(play, ev),
        });
        println!("{v}");
        return Ok(());
    }
    println!("{}", headline(play, ev));
    let radarr = match &ev.movie {
        Some(m) => format!(
            "radarr id {}{}",
            m.id,
            if m.has_file { ", has a file" } else { "" }
        ),
        None => "not in Radarr".into(),
    };
    let mut ids = Vec::new();
    if let Some(t) = play.ids.tmdb {
        ids.push(format!("tmdb {t}"));
    }
    if let Some(i) = &play.ids.imdb {
        ids.push(format!("imdb {i}"));
    }
    println!(
        "movie: {} — {radarr}{}",
        label(&play.title, play.year),
        if ids.is_empty() {
            String::new()
        } else {
            format!(", {}", ids.join(", "))
        }
    );
    println!(
        "user: {} — {}",
        play.user,
        match &ev.who {
            Who::Tracked => "tracked".to_string(),
            Who::Guest(r) => format!("guest ({r})"),
        }
    );
    println!(
        "play counts: {}",
        match &ev.counted {
            Ok(()) => "yes".to_string(),
            Err(r) => format!("no — {r}"),
        }
    );
    println!(
        "tier: {} — {}",
        ev.verdict.tier.as_str(),
        if ev.verdict.download {
            "downloads"
        } else {
            "does not download"
        }
    );
    println!("reasons:");
    for r in &ev.verdict.reasons {
        println!("  - {r}");
    }
    println!("facts:");
    for (name, value, source) in fact_rows(&ev.facts) {
        println!("  {name:<18} {value}  ({source})");
    }
    if !all_notes.is_empty() {
        println!("notes:");
        for n in all_notes {
            println!("  - {n}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn movie(id: i64, title: &str, year: u32, original: &str) -> Movie {
        let raw = json!({"id": id, "tmdbId": 100 + id, "title": title, "originalTitle": original, "year": year});
        Movie {
            id,
            tmdb_id: 100 + id as u64,
            imdb_id: None,
            title: title.into(),
            year: Some(year),
            has_file: false,
            tags: Vec::new(),
            size_on_disk: 0,
            root_folder_path: None,
            path: None,
            imdb_rating: None,
            imdb_votes: None,
            genres: Vec::new(),
            original_language: None,
            edition: None,
            raw,
        }
    }

    #[test]
    fn titles_match_by_case_spacing_original_title_and_year() {
        let ms = vec![
            movie(1, "Dune", 1984, "Dune"),
            movie(2, "Dune", 2021, "Dune"),
            movie(3, "Spirited Away", 2001, "千と千尋の神隠し"),
        ];
        let ids = |v: Vec<&Movie>| v.iter().map(|m| m.id).collect::<Vec<_>>();
        assert_eq!(ids(matching(&ms, "  dUNE ", None)), [1, 2]);
        assert_eq!(ids(matching(&ms, "dune", Some(2021))), [2]);
        assert_eq!(ids(matching(&ms, "千と千尋の神隠し", None)), [3]);
        assert_eq!(
            ids(matching(&ms, "spirited  away", Some(1999))),
            Vec::<i64>::new()
        );
    }

    #[test]
    fn the_user_is_the_flag_else_the_first_tracked_user() {
        let mut s = DownloadsSettings::default();
        assert_eq!(user_of(&s, None), "owner");
        s.tracked_users = vec!["Alice".into(), "bob".into()];
        assert_eq!(user_of(&s, None), "Alice");
        assert_eq!(user_of(&s, Some(" carol ")), "carol");
        assert_eq!(user_of(&s, Some("  ")), "Alice");
    }

    #[test]
    fn the_sample_is_a_full_playback_stop_of_a_movie() {
        let b = sample_body("alice");
        assert_eq!(b["NotificationType"], "PlaybackStop");
        assert_eq!(b["NotificationUsername"], "alice");
        assert_eq!(b["RunTimeTicks"], b["PlaybackPositionTicks"]);
        assert_eq!(b["Provider_tmdb"], "603");
    }
}
