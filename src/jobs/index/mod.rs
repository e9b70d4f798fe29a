//! The library index: what every file in the Plex library is, and its sibling versions.
//!
//! SQLite (rusqlite, bundled) in WAL mode is the durable copy, written by one writer (the sync
//! job) in one transaction per batch, so a `kill -9` at any moment leaves a consistent index
//! and the next sync finishes the job. The shim is answered from memory: [`Lookup`] maps every
//! file path (as Plex sees it — the transcoder runs in Plex's namespace) to its facts and its
//! item's versions, rebuilt from the database after each sync (`lookup.rs`).

pub mod deletions;
pub mod job;
mod lookup;
pub mod sync;

pub use lookup::Lookup;

use std::path::Path;

use anyhow::{Context, Result};
use downshiftarr_shim::facts::DynamicRange;
use downshiftarr_shim::protocol::StreamKind;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use crate::plex::json::{n, s, ExternalIds, Version};

/// Schema migrations, in order; `PRAGMA user_version` is the number applied.
const MIGRATIONS: &[&str] = &[
    // 1: the library
    "CREATE TABLE sections (
        key TEXT PRIMARY KEY, type TEXT NOT NULL, title TEXT NOT NULL,
        updated_at INTEGER, locations TEXT NOT NULL DEFAULT '[]');
     CREATE TABLE items (
        rating_key TEXT PRIMARY KEY, section_key TEXT NOT NULL, type TEXT NOT NULL,
        title TEXT NOT NULL, year INTEGER, parent_key TEXT, grandparent_key TEXT,
        season INTEGER, episode INTEGER, guid TEXT, updated_at INTEGER,
        imdb TEXT, tmdb TEXT, tvdb TEXT, plex TEXT, preferred_id TEXT);
     CREATE INDEX items_section ON items(section_key);
     CREATE INDEX items_title ON items(title, year);
     CREATE INDEX items_show ON items(grandparent_key);
     CREATE TABLE media (
        id TEXT PRIMARY KEY, rating_key TEXT NOT NULL REFERENCES items(rating_key) ON DELETE CASCADE,
        width INTEGER, height INTEGER, bit_depth INTEGER, dynamic_range TEXT, dv_profile INTEGER,
        dv_bl_compatible INTEGER, bitrate_kbps INTEGER, container TEXT, video_codec TEXT, edition TEXT);
     CREATE INDEX media_item ON media(rating_key);
     CREATE TABLE parts (
        id TEXT PRIMARY KEY, media_id TEXT NOT NULL REFERENCES media(id) ON DELETE CASCADE,
        file TEXT NOT NULL);
     CREATE INDEX parts_file ON parts(file);
     CREATE INDEX parts_media ON parts(media_id);
     CREATE TABLE streams (
        part_id TEXT NOT NULL REFERENCES parts(id) ON DELETE CASCADE, idx INTEGER NOT NULL,
        kind TEXT NOT NULL, codec TEXT, language TEXT, channels INTEGER,
        is_default INTEGER NOT NULL, forced INTEGER NOT NULL);
     CREATE INDEX streams_part ON streams(part_id);
     CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    // 2: the decision audit
    "CREATE TABLE decisions (
        id INTEGER PRIMARY KEY, time TEXT NOT NULL, job TEXT, decision TEXT, reason TEXT,
        session TEXT, input TEXT, record TEXT NOT NULL);
     CREATE INDEX decisions_time ON decisions(time);",
    // 3: who decided (shim, guard, tautulli), for whom, and what enforcement did
    "ALTER TABLE decisions ADD COLUMN origin TEXT NOT NULL DEFAULT 'shim';
     ALTER TABLE decisions ADD COLUMN user TEXT;
     ALTER TABLE decisions ADD COLUMN outcome TEXT;
     CREATE INDEX decisions_session ON decisions(session);",
    // 4: `delete_items` finds a season's episodes without scanning every item (issue 9 §1:
    // removing 20,000 items took 17 s); `grandparent_key` has `items_show` already.
    "CREATE INDEX IF NOT EXISTS items_parent ON items(parent_key);",
];

/// Opens (creating and migrating) the index database.
pub fn open(path: &Path) -> Result<Connection> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("unable to create {}", dir.display()))?;
    }
    let mut db = Connection::open(path)
        .with_context(|| format!("unable to open index {}", path.display()))?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.pragma_update(None, "synchronous", "NORMAL")?;
    db.pragma_update(None, "foreign_keys", "ON")?;
    db.busy_timeout(std::time::Duration::from_secs(5))?;
    migrate(&mut db)?;
    Ok(db)
}

fn migrate(db: &mut Connection) -> Result<()> {
    let have: usize = db.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(have) {
        let tx = db.transaction()?;
        tx.execute_batch(sql)
            .with_context(|| format!("index migration {} failed", i + 1))?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// A key/value in `meta`.
pub fn meta_get(db: &Connection, key: &str) -> Result<Option<String>> {
    Ok(db
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

pub fn meta_set(db: &Connection, key: &str, value: &str) -> Result<()> {
    db.execute("INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value", params![key, value])?;
    Ok(())
}

/// Upserts a section from a `/library/sections` directory entry.
pub fn upsert_section(db: &Connection, d: &Value) -> Result<()> {
    let locations: Vec<String> = crate::plex::json::arr(d, "Location")
        .iter()
        .filter_map(|l| s(l, "path"))
        .collect();
    db.execute(
        "INSERT INTO sections(key, type, title, updated_at, locations) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(key) DO UPDATE SET type = excluded.type, title = excluded.title,
            updated_at = excluded.updated_at, locations = excluded.locations",
        params![
            s(d, "key"),
            s(d, "type").unwrap_or_default(),
            s(d, "title").unwrap_or_default(),
            n(d, "updatedAt"),
            serde_json::to_string(&locations)?
        ],
    )?;
    Ok(())
}

/// Upserts an item (movie, show, season, episode) and, when the JSON has `Media`, replaces its
/// versions, parts and streams. Returns whether anything changed (a new or re-dated item).
pub fn upsert_item(db: &Connection, section: &str, item: &Value) -> Result<bool> {
    let Some(rk) = s(item, "ratingKey") else {
        return Ok(false);
    };
    let ids: ExternalIds = crate::plex::json::external_ids(item);
    let updated = n(item, "updatedAt");
    // Cached statements: a full sync runs these for each of 200,000 items, and preparing them
    // anew every time cost seconds of its CPU (issue 9, "Memory at scale").
    let before: Option<Option<i64>> = db
        .prepare_cached("SELECT updated_at FROM items WHERE rating_key = ?1")?
        .query_row([&rk], |r| r.get(0))
        .optional()?;
    db.prepare_cached(
        "INSERT INTO items(rating_key, section_key, type, title, year, parent_key, grandparent_key,
                           season, episode, guid, updated_at, imdb, tmdb, tvdb, plex, preferred_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
         ON CONFLICT(rating_key) DO UPDATE SET section_key = excluded.section_key, type = excluded.type,
            title = excluded.title, year = excluded.year, parent_key = excluded.parent_key,
            grandparent_key = excluded.grandparent_key, season = excluded.season, episode = excluded.episode,
            guid = excluded.guid, updated_at = excluded.updated_at, imdb = excluded.imdb, tmdb = excluded.tmdb,
            tvdb = excluded.tvdb, plex = excluded.plex, preferred_id = excluded.preferred_id",
    )?
    .execute(params![
            rk, section, s(item, "type").unwrap_or_default(), s(item, "title").unwrap_or_default(), n(item, "year"),
            s(item, "parentRatingKey"), s(item, "grandparentRatingKey"), n(item, "parentIndex"), n(item, "index"),
            s(item, "guid"), updated, ids.imdb, ids.tmdb, ids.tvdb, ids.plex, ids.preferred()
        ],
    )?;
    if item.get("Media").is_some() {
        replace_versions(db, &rk, &crate::plex::json::versions(item))?;
    }
    Ok(before != Some(updated))
}

fn replace_versions(db: &Connection, rk: &str, versions: &[Version]) -> Result<()> {
    db.prepare_cached("DELETE FROM media WHERE rating_key = ?1")?
        .execute([rk])?;
    let mut m = db.prepare_cached(
        "INSERT OR REPLACE INTO media(id, rating_key, width, height, bit_depth, dynamic_range, dv_profile,
                                      dv_bl_compatible, bitrate_kbps, container, video_codec, edition)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?;
    let mut p =
        db.prepare_cached("INSERT OR REPLACE INTO parts(id, media_id, file) VALUES (?1, ?2, ?3)")?;
    let mut st = db.prepare_cached(
        "INSERT INTO streams(part_id, idx, kind, codec, language, channels, is_default, forced) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for v in versions {
        let mv = &v.media;
        m.execute(params![
            mv.media_id,
            rk,
            mv.width,
            mv.height,
            mv.bit_depth,
            mv.dynamic_range.map(DynamicRange::as_str),
            mv.dv_profile,
            mv.dv_base_layer_compatible,
            mv.bitrate_kbps,
            mv.container,
            v.video_codec,
            mv.edition
        ])?;
        for (part_id, file, streams) in &v.parts {
            let pid = if part_id.is_empty() {
                format!("{}:{file}", mv.media_id)
            } else {
                part_id.clone()
            };
            db.prepare_cached("DELETE FROM streams WHERE part_id = ?1")?
                .execute([&pid])?;
            p.execute(params![pid, mv.media_id, file])?;
            for x in streams {
                st.execute(params![
                    pid,
                    x.index,
                    kind_name(x.kind),
                    x.codec.as_deref(),
                    x.language.as_deref(),
                    x.channels,
                    x.default,
                    x.forced
                ])?;
            }
        }
    }
    Ok(())
}

const DELETE_ITEM: &str =
    "DELETE FROM items WHERE rating_key = ?1 OR parent_key = ?1 OR grandparent_key = ?1";

/// Deletes items (and, through the foreign keys, their versions) by rating key; children of a
/// deleted show or season go with it.
pub fn delete_items(db: &Connection, keys: &[String]) -> Result<usize> {
    let mut d = db.prepare_cached(DELETE_ITEM)?;
    let mut total = 0;
    for k in keys {
        total += d.execute([k])?;
    }
    Ok(total)
}

/// Every rating key of a section at the given level (`movie`, `show`, `episode`).
pub fn rating_keys(db: &Connection, section: &str, kind: &str) -> Result<Vec<String>> {
    let mut q = db.prepare("SELECT rating_key FROM items WHERE section_key = ?1 AND type = ?2")?;
    let keys = q
        .query_map(params![section, kind], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(keys)
}

/// Counts for `status` and `/metrics`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Counts {
    pub sections: i64,
    pub movies: i64,
    pub shows: i64,
    pub episodes: i64,
    pub files: i64,
}

pub fn counts(db: &Connection) -> Result<Counts> {
    let c = |sql: &str| -> Result<i64> { Ok(db.query_row(sql, [], |r| r.get(0))?) };
    Ok(Counts {
        sections: c("SELECT COUNT(*) FROM sections")?,
        movies: c("SELECT COUNT(*) FROM items WHERE type = 'movie'")?,
        shows: c("SELECT COUNT(*) FROM items WHERE type = 'show'")?,
        episodes: c("SELECT COUNT(*) FROM items WHERE type = 'episode'")?,
        files: c("SELECT COUNT(*) FROM parts")?,
    })
}

fn kind_name(k: StreamKind) -> &'static str {
    match k {
        StreamKind::Video => "video",
        StreamKind::Audio => "audio",
        StreamKind::Subtitle => "subtitle",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use downshiftarr_shim::facts::Origin;
    use serde_json::json;

    #[test]
    fn migrates_upserts_and_looks_up() {
        let d = tempfile::tempdir().unwrap();
        let db = open(&d.path().join("index.sqlite")).unwrap();
        let v: i64 = db
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v as usize, MIGRATIONS.len());
        let movie = json!({"ratingKey": "55", "type": "movie", "title": "Dune", "year": 2021, "updatedAt": 100,
            "Guid": [{"id": "tmdb://438631"}],
            "Media": [
              {"id": 1, "width": 3840, "height": 2160, "Part": [{"id": 11, "file": "/m/Dune 2160p.mkv",
                 "Stream": [{"streamType": 1, "index": 0, "codec": "hevc", "bitDepth": 10, "colorTrc": "smpte2084"},
                            {"streamType": 2, "index": 1, "codec": "truehd", "languageCode": "eng", "channels": 8, "default": true}]}]},
              {"id": 2, "width": 1920, "height": 1080, "Part": [{"id": 12, "file": "/m/Dune 1080p.mkv",
                 "Stream": [{"streamType": 1, "index": 0, "codec": "h264", "bitDepth": 8, "colorTrc": "bt709"}]}]}]});
        upsert_section(
            &db,
            &json!({"key": "1", "type": "movie", "title": "Movies", "Location": [{"path": "/m"}]}),
        )
        .unwrap();
        assert!(upsert_item(&db, "1", &movie).unwrap());
        assert!(
            !upsert_item(&db, "1", &movie).unwrap(),
            "unchanged updatedAt is not a change"
        );
        let l = Lookup::default();
        l.rebuild(&db).unwrap();
        let e = l.get("/m/Dune 2160p.mkv").unwrap();
        assert_eq!(
            (e.facts.height, e.facts.dynamic_range, e.facts.from),
            (Some(2160), Some(DynamicRange::Hdr10), Some(Origin::Daemon))
        );
        assert_eq!(e.versions.len(), 2);
        assert_eq!(e.versions[0].streams[1].language.as_deref(), Some("eng"));
        assert_eq!(counts(&db).unwrap().files, 2);
        delete_items(&db, &["55".into()]).unwrap();
        l.rebuild(&db).unwrap();
        assert!(l.get("/m/Dune 2160p.mkv").is_none());
        assert_eq!(counts(&db).unwrap().files, 0, "versions go with their item");
    }

    /// Every lookup `delete_items` does is by index: no `SCAN items` per deleted key.
    #[test]
    fn deleting_items_does_not_scan_the_library() {
        let d = tempfile::tempdir().unwrap();
        let db = open(&d.path().join("index.sqlite")).unwrap();
        let mut q = db
            .prepare(&format!("EXPLAIN QUERY PLAN {DELETE_ITEM}"))
            .unwrap();
        let plan: Vec<String> = q
            .query_map(["1"], |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(!plan.iter().any(|p| p.starts_with("SCAN")), "{plan:?}");
    }

    /// Measures `delete_items` on 20,000 episodes, without and with migration 4's index
    /// (`cargo test --release --bin downshiftarr -- --ignored --nocapture delete_20000`).
    #[test]
    #[ignore]
    fn delete_20000_items_timing() {
        let d = tempfile::tempdir().unwrap();
        let mut db = open(&d.path().join("index.sqlite")).unwrap();
        for with_index in [false, true] {
            if !with_index {
                db.execute_batch("DROP INDEX items_parent").unwrap();
            } else {
                db.execute_batch("CREATE INDEX items_parent ON items(parent_key)")
                    .unwrap();
            }
            let tx = db.transaction().unwrap();
            let mut keys = Vec::new();
            for i in 0..20_000u64 {
                let rk = (100_000 + i).to_string();
                let ep = json!({"ratingKey": rk, "type": "episode", "title": "E", "parentRatingKey": (i / 10).to_string(),
                    "grandparentRatingKey": (i / 100).to_string(), "updatedAt": 1,
                    "Media": [{"id": i, "Part": [{"id": i, "file": format!("/tv/{i}.mkv"),
                        "Stream": [{"streamType": 1, "index": 0, "codec": "h264"}]}]}]});
                upsert_item(&tx, "2", &ep).unwrap();
                keys.push(rk);
            }
            tx.commit().unwrap();
            let t = std::time::Instant::now();
            let tx = db.transaction().unwrap();
            assert_eq!(delete_items(&tx, &keys).unwrap(), 20_000);
            tx.commit().unwrap();
            eprintln!(
                "delete_items: 20,000 items in {:?} (parent_key index: {with_index})",
                t.elapsed()
            );
        }
    }
}
