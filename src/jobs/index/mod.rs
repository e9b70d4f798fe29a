//! The library index: what every file in the Plex library is, and its sibling versions.
//!
//! SQLite (`crate::store`, WAL) is the durable copy, written by one writer (the sync job)
//! in one transaction per batch, so a `kill -9` at any moment leaves a consistent index and
//! the next sync finishes the job. The shim is answered from memory: [`Lookup`] maps every
//! file path (as Plex sees it — the transcoder runs in Plex's namespace) to its facts and its
//! item's versions, rebuilt from the database after each sync (`lookup.rs`).

pub mod deletions;
pub mod job;

pub mod sync;

pub use crate::store::lookup::Lookup;

use std::path::Path;

use anyhow::Result;

pub use crate::store::library::Counts;
use crate::store::Store;

/// Opens (creating and migrating) the index database.
pub fn open(path: &Path) -> Result<Store> {
    Store::open(path)
}

/// Counts for `status` and `/metrics`.
pub fn counts(db: &Store) -> Result<Counts> {
    db.counts()
}

/// Deletes items (and their versions; children of a deleted show or season go with it) in
/// one transaction.
pub fn delete_items(db: &Store, keys: &[String]) -> Result<usize> {
    db.write(|db| db.delete_items(keys))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plex::json::Item;
    use downshiftarr_shim::facts::{DynamicRange, Origin};
    use serde_json::json;

    #[test]
    fn migrates_upserts_and_looks_up() {
        let d = tempfile::tempdir().unwrap();
        let db = open(&d.path().join("index.sqlite")).unwrap();
        let movie = json!({"ratingKey": "55", "type": "movie", "title": "Dune", "year": 2021, "updatedAt": 100,
            "Guid": [{"id": "tmdb://438631"}],
            "Media": [
              {"id": 1, "width": 3840, "height": 2160, "Part": [{"id": 11, "file": "/m/Dune 2160p.mkv",
                 "Stream": [{"streamType": 1, "index": 0, "codec": "hevc", "bitDepth": 10, "colorTrc": "smpte2084"},
                            {"streamType": 2, "index": 1, "codec": "truehd", "languageCode": "eng", "channels": 8, "default": true}]}]},
              {"id": 2, "width": 1920, "height": 1080, "Part": [{"id": 12, "file": "/m/Dune 1080p.mkv",
                 "Stream": [{"streamType": 1, "index": 0, "codec": "h264", "bitDepth": 8, "colorTrc": "bt709"}]}]}]});
        db.upsert_section(
            &json!({"key": "1", "type": "movie", "title": "Movies", "Location": [{"path": "/m"}]}),
        )
        .unwrap();
        let movie = Item::from_value(&movie);
        assert!(db.upsert_item("1", &movie).unwrap());
        assert!(
            !db.upsert_item("1", &movie).unwrap(),
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
}
