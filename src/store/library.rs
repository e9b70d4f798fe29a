//! The library index's queries: sections, items, their versions, parts and streams.
//!
//! A full sync writes ~200,000 items: every statement is cached, a new item skips the
//! deletes an update needs, and an item fetched again whose row and versions hash to the
//! stored digest is not written at all.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use anyhow::Result;
use downshiftarr_shim::facts::DynamicRange;
use downshiftarr_shim::protocol::StreamKind;
use rusqlite::{params, OptionalExtension};
use serde_json::Value;

use super::Store;
use crate::plex::json::{ExternalIds, Item, Version};

/// Counts for `status` and `/metrics`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Counts {
    pub sections: i64,
    pub movies: i64,
    pub shows: i64,
    pub episodes: i64,
    pub files: i64,
}

/// An indexed movie or show, as `discover` lists it.
#[derive(Clone, Debug)]
pub struct Titled {
    pub rating_key: String,
    pub kind: String,
    pub title: String,
    pub year: Option<i64>,
    pub preferred_id: Option<String>,
    pub imdb: Option<String>,
    pub tmdb: Option<String>,
    pub tvdb: Option<String>,
}

/// A version of a movie or of a show's episode, as `discover` lists it.
#[derive(Clone, Debug)]
pub struct VersionRow {
    pub media_id: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub dynamic_range: Option<String>,
    pub dv_profile: Option<u8>,
    pub bitrate_kbps: Option<u32>,
    pub edition: Option<String>,
    pub file: String,
}

/// One row of the lookup's read: a part of a version, with one of its streams (`None` for
/// a part without streams). Rows come grouped by item, version and part, streams in order.
pub struct FileRow<'a> {
    pub rating_key: &'a str,
    pub media_id: &'a str,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub bit_depth: Option<u8>,
    pub dynamic_range: Option<&'a str>,
    pub dv_profile: Option<u8>,
    pub dv_bl_compatible: Option<bool>,
    pub bitrate_kbps: Option<u32>,
    pub container: Option<&'a str>,
    pub edition: Option<&'a str>,
    pub video_codec: Option<&'a str>,
    pub part_id: &'a str,
    pub file: &'a str,
    pub stream: Option<StreamRow<'a>>,
}

/// A stream of a [`FileRow`].
pub struct StreamRow<'a> {
    pub index: u32,
    pub kind: Option<&'a str>,
    pub codec: Option<&'a str>,
    pub language: Option<&'a str>,
    pub channels: Option<u32>,
    pub default: bool,
    pub forced: bool,
}

/// Streams written by one `INSERT`.
const STREAMS_PER_INSERT: usize = 8;

/// `INSERT INTO streams … VALUES (…), (…)` for `n` rows (1 ≤ n ≤ [`STREAMS_PER_INSERT`]).
fn insert_streams_sql(n: usize) -> &'static str {
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        (1..=STREAMS_PER_INSERT)
            .map(|n| {
                let rows: Vec<String> = (0..n)
                    .map(|r| {
                        let p: Vec<String> = (1..=8).map(|c| format!("?{}", r * 8 + c)).collect();
                        format!("({})", p.join(", "))
                    })
                    .collect();
                format!(
                    "INSERT INTO streams(part_id, idx, kind, codec, language, channels, is_default, forced) VALUES {}",
                    rows.join(", ")
                )
            })
            .collect()
    });
    all.get(n.clamp(1, STREAMS_PER_INSERT) - 1)
        .map(String::as_str)
        .unwrap_or_default()
}

pub(crate) const DELETE_ITEM: &str =
    "DELETE FROM items WHERE rating_key = ?1 OR parent_key = ?1 OR grandparent_key = ?1";

impl Store {
    /// Upserts a section from a `/library/sections` directory entry.
    pub fn upsert_section(&self, d: &Value) -> Result<()> {
        use crate::plex::json::{n, s};
        let locations: Vec<String> = crate::plex::json::arr(d, "Location")
            .iter()
            .filter_map(|l| s(l, "path"))
            .collect();
        self.conn
            .prepare_cached(
                "INSERT INTO sections(key, type, title, updated_at, locations) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(key) DO UPDATE SET type = excluded.type, title = excluded.title,
                    updated_at = excluded.updated_at, locations = excluded.locations",
            )?
            .execute(params![
                s(d, "key"),
                s(d, "type").unwrap_or_default(),
                s(d, "title").unwrap_or_default(),
                n(d, "updatedAt"),
                serde_json::to_string(&locations)?
            ])?;
        Ok(())
    }

    /// Upserts an item (movie, show, season, episode) and, when the answer has `Media`,
    /// replaces its versions, parts and streams. Returns whether its `updatedAt` is new (a
    /// new or re-dated item). An item without a `ratingKey` is skipped (`false`).
    pub fn upsert_item(&self, section: &str, item: &Item) -> Result<bool> {
        let Some(rk) = item.rating_key.s() else {
            return Ok(false);
        };
        let ids: ExternalIds = item.external_ids();
        let updated = item.updated_at.n();
        let versions = item.has_media().then(|| item.versions());
        let row = Row {
            section,
            kind: item.kind.s().unwrap_or_default(),
            title: item.title.s().unwrap_or_default(),
            year: item.year.n(),
            parent: item.parent_rating_key.s(),
            grandparent: item.grandparent_rating_key.s(),
            season: item.parent_index.n(),
            episode: item.index.n(),
            guid: match &item.guid {
                crate::plex::json::GuidField::One(g) => g.s(),
                _ => None,
            },
            updated,
            preferred: ids.preferred(),
            ids,
        };
        let digest = digest(&row, versions.as_deref());
        let before: Option<(Option<i64>, Option<i64>)> = self
            .conn
            .prepare_cached("SELECT updated_at, digest FROM items WHERE rating_key = ?1")?
            .query_row([&rk], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if before == Some((updated, Some(digest))) {
            return Ok(false);
        }
        self.conn
            .prepare_cached(
                "INSERT INTO items(rating_key, section_key, type, title, year, parent_key, grandparent_key,
                                   season, episode, guid, updated_at, imdb, tmdb, tvdb, plex, preferred_id, digest)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
                 ON CONFLICT(rating_key) DO UPDATE SET section_key = excluded.section_key, type = excluded.type,
                    title = excluded.title, year = excluded.year, parent_key = excluded.parent_key,
                    grandparent_key = excluded.grandparent_key, season = excluded.season, episode = excluded.episode,
                    guid = excluded.guid, updated_at = excluded.updated_at, imdb = excluded.imdb, tmdb = excluded.tmdb,
                    tvdb = excluded.tvdb, plex = excluded.plex, preferred_id = excluded.preferred_id,
                    digest = excluded.digest",
            )?
            .execute(params![
                rk, row.section, row.kind, row.title, row.year, row.parent, row.grandparent, row.season,
                row.episode, row.guid, row.updated, row.ids.imdb, row.ids.tmdb, row.ids.tvdb, row.ids.plex,
                row.preferred, digest
            ])?;
        if let Some(versions) = &versions {
            self.replace_versions(&rk, versions, before.is_some())?;
        }
        Ok(before.map(|b| b.0) != Some(updated))
    }

    /// `existed`: the item was indexed before (a new one has no versions to delete).
    fn replace_versions(&self, rk: &str, versions: &[Version], existed: bool) -> Result<()> {
        if existed {
            self.conn
                .prepare_cached("DELETE FROM media WHERE rating_key = ?1")?
                .execute([rk])?;
        }
        let mut m = self.conn.prepare_cached(
            "INSERT OR REPLACE INTO media(id, rating_key, width, height, bit_depth, dynamic_range, dv_profile,
                                          dv_bl_compatible, bitrate_kbps, container, video_codec, edition)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?;
        let mut p = self.conn.prepare_cached(
            "INSERT OR REPLACE INTO parts(id, media_id, file) VALUES (?1, ?2, ?3)",
        )?;
        let mut del = self
            .conn
            .prepare_cached("DELETE FROM streams WHERE part_id = ?1")?;
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
                // A part id Plex moved from another item keeps no streams of its old life.
                del.execute([&pid])?;
                p.execute(params![pid, mv.media_id, file])?;
                // Up to `STREAMS_PER_INSERT` rows per statement: a part has four or five
                // streams, and one statement for each was a fifth of a full sync's writes.
                for chunk in streams.chunks(STREAMS_PER_INSERT) {
                    let mut st = self.conn.prepare_cached(insert_streams_sql(chunk.len()))?;
                    let mut i = 1;
                    for x in chunk {
                        st.raw_bind_parameter(i, &pid)?;
                        st.raw_bind_parameter(i + 1, x.index)?;
                        st.raw_bind_parameter(i + 2, kind_name(x.kind))?;
                        st.raw_bind_parameter(i + 3, x.codec.as_deref())?;
                        st.raw_bind_parameter(i + 4, x.language.as_deref())?;
                        st.raw_bind_parameter(i + 5, x.channels)?;
                        st.raw_bind_parameter(i + 6, x.default)?;
                        st.raw_bind_parameter(i + 7, x.forced)?;
                        i += 8;
                    }
                    st.raw_execute()?;
                }
            }
        }
        Ok(())
    }

    /// Deletes items (and, through the foreign keys, their versions) by rating key; children
    /// of a deleted show or season go with them. Returns the rows deleted.
    pub fn delete_items(&self, keys: &[String]) -> Result<usize> {
        let mut d = self.conn.prepare_cached(DELETE_ITEM)?;
        let mut total = 0;
        for k in keys {
            total += d.execute([k])?;
        }
        Ok(total)
    }

    /// Every rating key of a section at the given level (`movie`, `show`, `episode`).
    pub fn rating_keys(&self, section: &str, kind: &str) -> Result<Vec<String>> {
        let mut q = self
            .conn
            .prepare_cached("SELECT rating_key FROM items WHERE section_key = ?1 AND type = ?2")?;
        let keys = q
            .query_map(params![section, kind], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(keys)
    }

    /// `updated_at` of every indexed item of a section, in one query.
    pub fn stored_updated(&self, section: &str) -> Result<HashMap<String, Option<i64>>> {
        let mut q = self
            .conn
            .prepare_cached("SELECT rating_key, updated_at FROM items WHERE section_key = ?1")?;
        let rows = q.query_map([section], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<HashMap<_, _>>>()?)
    }

    pub fn counts(&self) -> Result<Counts> {
        let c = |sql: &str| -> Result<i64> { Ok(self.conn.query_row(sql, [], |r| r.get(0))?) };
        Ok(Counts {
            sections: c("SELECT COUNT(*) FROM sections")?,
            movies: c("SELECT COUNT(*) FROM items WHERE type = 'movie'")?,
            shows: c("SELECT COUNT(*) FROM items WHERE type = 'show'")?,
            episodes: c("SELECT COUNT(*) FROM items WHERE type = 'episode'")?,
            files: c("SELECT COUNT(*) FROM parts")?,
        })
    }

    /// "Show / S01E02 Title [rk]", "Title (Year) [rk]" of indexed items, for `removed:` and
    /// held-back lines; a key the index does not know stays a bare ratingKey.
    pub fn labels(&self, keys: &[String]) -> Result<HashMap<String, String>> {
        let mut q = self.conn.prepare_cached(
            "SELECT i.title, i.year, i.season, i.episode, s.title
             FROM items i LEFT JOIN items s ON s.rating_key = i.grandparent_key
             WHERE i.rating_key = ?1",
        )?;
        let mut out = HashMap::with_capacity(keys.len());
        for k in keys {
            let row = q
                .query_row([k], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<i64>>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                    ))
                })
                .ok();
            let label = match row {
                Some((title, _, Some(se), Some(ep), Some(show))) => {
                    format!("{show} / S{se:02}E{ep:02} {title} [{k}]")
                }
                Some((title, Some(y), ..)) => format!("{title} ({y}) [{k}]"),
                Some((title, ..)) => format!("{title} [{k}]"),
                None => k.clone(),
            };
            out.insert(k.clone(), label);
        }
        Ok(out)
    }

    /// Movies and shows titled `title` (any case), of `year` when given, oldest first.
    pub fn titled(&self, title: &str, year: Option<i64>) -> Result<Vec<Titled>> {
        let mut q = self.conn.prepare(
            "SELECT rating_key, type, title, year, preferred_id, imdb, tmdb, tvdb FROM items
             WHERE title = ?1 COLLATE NOCASE AND (?2 IS NULL OR year = ?2) AND type IN ('movie', 'show') ORDER BY year",
        )?;
        let rows = q
            .query_map(params![title, year], |r| {
                Ok(Titled {
                    rating_key: r.get(0)?,
                    kind: r.get(1)?,
                    title: r.get(2)?,
                    year: r.get(3)?,
                    preferred_id: r.get(4)?,
                    imdb: r.get(5)?,
                    tmdb: r.get(6)?,
                    tvdb: r.get(7)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// The versions of a movie, or of a show's episodes: tallest first, at most `limit`.
    pub fn versions_of(&self, rating_key: &str, limit: usize) -> Result<Vec<VersionRow>> {
        let mut q = self.conn.prepare(
            "SELECT m.id, m.width, m.height, m.dynamic_range, m.dv_profile, m.bitrate_kbps, m.edition, p.file
             FROM media m JOIN parts p ON p.media_id = m.id WHERE m.rating_key = ?1
                OR m.rating_key IN (SELECT rating_key FROM items WHERE grandparent_key = ?1)
             ORDER BY m.height DESC LIMIT ?2",
        )?;
        let rows = q
            .query_map(params![rating_key, limit as i64], |r| {
                Ok(VersionRow {
                    media_id: r.get(0)?,
                    width: r.get(1)?,
                    height: r.get(2)?,
                    dynamic_range: r.get(3)?,
                    dv_profile: r.get(4)?,
                    bitrate_kbps: r.get(5)?,
                    edition: r.get(6)?,
                    file: r.get(7)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Reads every part of every version, with its streams, in one pass grouped by item,
    /// version and part (the lookup's rebuild): `f` sees each row borrowed, nothing is copied.
    pub fn for_each_file_row(&self, mut f: impl FnMut(&FileRow<'_>) -> Result<()>) -> Result<()> {
        let mut q = self.conn.prepare(
            "SELECT m.rating_key, m.id, m.width, m.height, m.bit_depth, m.dynamic_range, m.dv_profile,
                    m.dv_bl_compatible, m.bitrate_kbps, m.container, m.edition, m.video_codec,
                    p.id, p.file, s.idx, s.kind, s.codec, s.language, s.channels, s.is_default, s.forced
             FROM media m JOIN parts p ON p.media_id = m.id
                  LEFT JOIN streams s ON s.part_id = p.id
             ORDER BY m.rating_key, m.id, p.id, s.idx",
        )?;
        let mut rows = q.query([])?;
        while let Some(r) = rows.next()? {
            let stream = match r.get::<_, Option<u32>>(14)? {
                None => None,
                Some(index) => Some(StreamRow {
                    index,
                    kind: r.get_ref(15)?.as_str_or_null()?,
                    codec: r.get_ref(16)?.as_str_or_null()?,
                    language: r.get_ref(17)?.as_str_or_null()?,
                    channels: r.get(18)?,
                    default: r.get(19)?,
                    forced: r.get(20)?,
                }),
            };
            f(&FileRow {
                rating_key: r.get_ref(0)?.as_str()?,
                media_id: r.get_ref(1)?.as_str()?,
                width: r.get(2)?,
                height: r.get(3)?,
                bit_depth: r.get(4)?,
                dynamic_range: r.get_ref(5)?.as_str_or_null()?,
                dv_profile: r.get(6)?,
                dv_bl_compatible: r.get(7)?,
                bitrate_kbps: r.get(8)?,
                container: r.get_ref(9)?.as_str_or_null()?,
                edition: r.get_ref(10)?.as_str_or_null()?,
                video_codec: r.get_ref(11)?.as_str_or_null()?,
                part_id: r.get_ref(12)?.as_str()?,
                file: r.get_ref(13)?.as_str()?,
                stream,
            })?;
        }
        Ok(())
    }
}

/// An item's row as stored.
struct Row<'a> {
    section: &'a str,
    kind: String,
    title: String,
    year: Option<i64>,
    parent: Option<String>,
    grandparent: Option<String>,
    season: Option<i64>,
    episode: Option<i64>,
    guid: Option<String>,
    updated: Option<i64>,
    ids: ExternalIds,
    preferred: Option<String>,
}

/// A hash of everything `upsert_item` would write for an item. Stored beside the row; a
/// change of Rust's hasher between builds only costs one rewrite of each item.
fn digest(row: &Row<'_>, versions: Option<&[Version]>) -> i64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (
        row.section,
        &row.kind,
        &row.title,
        row.year,
        &row.parent,
        &row.grandparent,
        row.season,
        row.episode,
        &row.guid,
        row.updated,
    )
        .hash(&mut h);
    (&row.ids.imdb, &row.ids.tmdb, &row.ids.tvdb, &row.ids.plex).hash(&mut h);
    match versions {
        None => 0u8.hash(&mut h),
        Some(vs) => {
            1u8.hash(&mut h);
            vs.len().hash(&mut h);
            for v in vs {
                let m = &v.media;
                (
                    &m.media_id,
                    m.width,
                    m.height,
                    m.dynamic_range.map(DynamicRange::as_str),
                    m.dv_profile,
                    m.bitrate_kbps,
                    m.container.as_deref(),
                    m.edition.as_deref(),
                )
                    .hash(&mut h);
                (
                    v.media.bit_depth,
                    v.media.dv_base_layer_compatible,
                    &v.video_codec,
                    v.parts.len(),
                )
                    .hash(&mut h);
                for (id, file, streams) in &v.parts {
                    (id, file, streams.len()).hash(&mut h);
                    for s in streams {
                        (
                            s.index,
                            kind_name(s.kind),
                            s.codec.as_deref(),
                            s.language.as_deref(),
                            s.channels,
                            s.default,
                            s.forced,
                        )
                            .hash(&mut h);
                    }
                }
            }
        }
    }
    h.finish() as i64
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
    use serde_json::json;

    fn episode(i: u64, title: &str) -> Item {
        Item::from_value(
            &json!({"ratingKey": (100_000 + i).to_string(), "type": "episode", "title": title,
            "parentRatingKey": (i / 10).to_string(), "grandparentRatingKey": (i / 100).to_string(), "updatedAt": 1,
            "Media": [{"id": i, "Part": [{"id": i, "file": format!("/tv/{i}.mkv"),
                "Stream": [{"streamType": 1, "index": 0, "codec": "h264"}]}]}]}),
        )
    }

    /// Every lookup `delete_items` does is by index: no `SCAN items` per deleted key.
    #[test]
    fn deleting_items_does_not_scan_the_library() {
        let s = Store::in_memory().unwrap();
        let mut q = s
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {DELETE_ITEM}"))
            .unwrap();
        let plan: Vec<String> = q
            .query_map(["1"], |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(!plan.iter().any(|p| p.starts_with("SCAN")), "{plan:?}");
    }

    /// An item fetched again unchanged writes nothing; a same-second edit (same `updatedAt`,
    /// other content) is written and reported unchanged by date, as before.
    #[test]
    fn an_unchanged_item_is_not_rewritten() {
        let s = Store::in_memory().unwrap();
        assert!(s.upsert_item("2", &episode(1, "Pilot")).unwrap());
        let before = s.conn.total_changes();
        assert!(!s.upsert_item("2", &episode(1, "Pilot")).unwrap());
        assert_eq!(s.conn.total_changes(), before, "nothing written");
        assert!(!s.upsert_item("2", &episode(1, "Pilot (extended)")).unwrap());
        assert!(s.conn.total_changes() > before, "the edit is written");
        assert_eq!(
            s.labels(&["100001".into()]).unwrap()["100001"],
            "Pilot (extended) [100001]"
        );
        assert_eq!(s.counts().unwrap().files, 1, "versions replaced, not added");
    }

    fn full_episode(i: u64) -> Item {
        let id = 5_000_000 + i;
        Item::from_value(
            &json!({"ratingKey": (100_000 + i).to_string(), "type": "episode", "title": format!("Episode {i}"),
            "parentRatingKey": (i / 10).to_string(), "grandparentRatingKey": (i / 100).to_string(), "updatedAt": 1_700_000_000 + i,
            "parentIndex": 1, "index": i % 100, "guid": format!("plex://episode/{i:024x}"),
            "Guid": [{"id": format!("imdb://tt{i}")}, {"id": format!("tvdb://{i}")}],
            "Media": [{"id": id, "width": 1920, "height": 1080, "bitrate": 10000, "container": "mkv", "videoCodec": "h264",
                "Part": [{"id": id * 10 + 1, "file": format!("/data/TV/Show {}/Season 01/Show {} - S01E{:02}.mkv", i / 100, i / 100, i % 100),
                "Stream": [{"streamType": 1, "index": 0, "codec": "h264", "bitDepth": 8, "colorTrc": "bt709", "default": true},
                  {"streamType": 2, "index": 1, "codec": "eac3", "channels": 6, "languageCode": "eng", "default": true},
                  {"streamType": 2, "index": 2, "codec": "aac", "channels": 2, "languageCode": "ger"},
                  {"streamType": 3, "index": 3, "codec": "srt", "languageCode": "eng", "forced": true}]}]}]}),
        )
    }

    /// CPU of writing 24,000 full episodes as a sync does (1,000 per transaction)
    /// (`cargo test --release --bin downshiftarr -- --ignored --nocapture write_24000`).
    #[test]
    #[ignore]
    fn write_24000_items_timing() {
        let items: Vec<Item> = (0..24_000).map(full_episode).collect();
        let variants: &[(&str, &str)] = &[
            ("32 MiB cache (as a sync writes)", ""),
            ("SQLite's default cache", "PRAGMA cache_size = -2000"),
            (
                "with migration 1's title and file indexes",
                "CREATE INDEX items_title ON items(title, year); CREATE INDEX parts_file ON parts(file)",
            ),
            ("32 MiB cache (as a sync writes)", ""),
            (
                "with migration 1's title and file indexes",
                "CREATE INDEX items_title ON items(title, year); CREATE INDEX parts_file ON parts(file)",
            ),
        ];
        for (name, sql) in variants {
            let d = tempfile::tempdir().unwrap();
            let s = Store::open(&d.path().join("index.sqlite")).unwrap();
            s.set_cache_kib(32 * 1024).unwrap();
            s.exec_for_tests(sql);
            let t = std::time::Instant::now();
            for chunk in items.chunks(1000) {
                s.write(|s| {
                    for it in chunk {
                        s.upsert_item("2", it)?;
                    }
                    Ok(())
                })
                .unwrap();
            }
            let w = t.elapsed();
            let t = std::time::Instant::now();
            let v: Vec<_> = items.iter().map(|i| i.versions()).collect();
            eprintln!("{name}: {w:?} to write; versions() alone {:?}", t.elapsed());
            drop(v);
        }
    }

    /// Measures `delete_items` on 20,000 episodes, without and with migration 4's index
    /// (`cargo test --release --bin downshiftarr -- --ignored --nocapture delete_20000`).
    #[test]
    #[ignore]
    fn delete_20000_items_timing() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("index.sqlite")).unwrap();
        for with_index in [false, true] {
            if !with_index {
                s.conn.execute_batch("DROP INDEX items_parent").unwrap();
            } else {
                s.conn
                    .execute_batch("CREATE INDEX items_parent ON items(parent_key)")
                    .unwrap();
            }
            let keys = s
                .write(|s| {
                    let mut keys = Vec::new();
                    for i in 0..20_000u64 {
                        s.upsert_item("2", &episode(i, "E"))?;
                        keys.push((100_000 + i).to_string());
                    }
                    Ok(keys)
                })
                .unwrap();
            let t = std::time::Instant::now();
            assert_eq!(s.write(|s| s.delete_items(&keys)).unwrap(), 20_000);
            eprintln!(
                "delete_items: 20,000 items in {:?} (parent_key index: {with_index})",
                t.elapsed()
            );
        }
    }
}
