//! The in-memory lookup the socket service answers from: file path (as Plex sees it — the
//! transcoder runs in Plex's namespace) → the file's facts and every version of its item.
//!
//! Why it is shaped like this (issue 9, "Memory at scale"): a map of `String` → `Entry` with
//! a `MediaVersion` per version (a `String` for the media id and the file, a `Vec` of streams
//! with their own `Arc`s) cost about 1.3 KB per file — 281 MB at 207,000 files, beside Plex on
//! a NAS or a Raspberry Pi. Here every path and media id is stored once, back to back, in one
//! text arena; versions and streams are flat arrays of small fixed-size records that refer to
//! the arena and to a table of interned names (codecs, languages, containers, editions) by
//! `u32`; the path index is an array of (hash, file) sorted by hash, the path verified on a
//! hit. A lookup materialises the answer — the same [`Entry`] as before, every version with
//! its streams — in a few microseconds.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, RwLock};

use anyhow::Result;
use downshiftarr_shim::facts::{DynamicRange, Origin, SourceFacts};
use downshiftarr_shim::protocol::{MediaVersion, StreamInfo, StreamKind};

use crate::store::library::{FileRow, StreamRow};
use crate::store::Store;

/// What the shim is told about one file.
#[derive(Clone, Debug)]
pub struct Entry {
    pub facts: SourceFacts,
    pub versions: Arc<Vec<MediaVersion>>,
    pub media_id: Arc<str>,
}

/// The in-memory path → entry map the socket service answers from.
#[derive(Clone, Default)]
pub struct Lookup {
    library: Arc<RwLock<Arc<Library>>>,
}

impl Lookup {
    pub fn get(&self, path: &str) -> Option<Entry> {
        self.current().get(path)
    }

    /// The entry of a version by its media id (sessions name the media, not the file).
    pub fn by_media(&self, media_id: &str) -> Option<Entry> {
        self.current().by_media(media_id)
    }

    /// How many files the lookup knows.
    pub fn len(&self) -> usize {
        self.current().files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn current(&self) -> Arc<Library> {
        self.library
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Rebuilds the map from the database and swaps it in atomically.
    pub fn rebuild(&self, db: &Store) -> Result<()> {
        let library = Library::load(db)?;
        let old = std::mem::replace(
            &mut *self.library.write().unwrap_or_else(|e| e.into_inner()),
            Arc::new(library),
        );
        // Free the old copy before trimming (a lookup in flight may still hold it: then it
        // goes when that lookup ends).
        drop(old);
        // The rebuild's temporaries are freed now; hand the pages back to the system so the
        // daemon's RSS is what it keeps, not what it once needed.
        // SAFETY: malloc_trim only releases free heap memory.
        #[cfg(target_env = "gnu")]
        unsafe {
            libc::malloc_trim(0)
        };
        Ok(())
    }
}

/// A byte range of [`Library::text`].
#[derive(Clone, Copy, Debug, Default)]
struct Span {
    start: u32,
    len: u32,
}

/// One file (a part) of the library: its path and the version it belongs to.
#[derive(Clone, Copy, Debug)]
struct FileRec {
    hash: u64,
    path: Span,
    version: u32,
}

/// Presence bits of a [`VersionRec`]'s optional numbers.
const HAS_WIDTH: u8 = 1;
const HAS_HEIGHT: u8 = 1 << 1;
const HAS_BITRATE: u8 = 1 << 2;
const HAS_BIT_DEPTH: u8 = 1 << 3;
const HAS_DV_PROFILE: u8 = 1 << 4;
const HAS_DV_BL: u8 = 1 << 5;
const DV_BL_COMPATIBLE: u8 = 1 << 6;

/// One version (a `media` row) with its facts.
#[derive(Clone, Copy, Debug, Default)]
struct VersionRec {
    media_id: Span,
    /// The path of its first part.
    file: Span,
    /// Its item's versions are `versions[item_start..item_end]`.
    item_start: u32,
    item_end: u32,
    /// The streams of its first part are `streams[streams_start..streams_end]`.
    streams_start: u32,
    streams_end: u32,
    width: u32,
    height: u32,
    bitrate_kbps: u32,
    /// [`Names`] ids (0: none).
    container: u32,
    edition: u32,
    codec: u32,
    bit_depth: u8,
    dv_profile: u8,
    /// [`dynamic_range_code`].
    dynamic_range: u8,
    /// `HAS_*` and `DV_BL_COMPATIBLE` bits.
    flags: u8,
}

const STREAM_DEFAULT: u8 = 1;
const STREAM_FORCED: u8 = 1 << 1;
const STREAM_HAS_CHANNELS: u8 = 1 << 2;

/// One stream of a version's first part.
#[derive(Clone, Copy, Debug)]
struct StreamRec {
    index: u32,
    codec: u32,
    language: u32,
    channels: u32,
    kind: StreamKind,
    flags: u8,
}

/// The whole library in flat arrays (see the module header).
#[derive(Default)]
struct Library {
    /// Every path and media id, back to back.
    text: Box<str>,
    /// Interned names; id `n` is `names[n - 1]`, 0 is none.
    names: Box<[Arc<str>]>,
    /// Sorted by hash; one per distinct path.
    files: Box<[FileRec]>,
    versions: Box<[VersionRec]>,
    streams: Box<[StreamRec]>,
    /// (hash of the media id, version), sorted by hash.
    media: Box<[(u64, u32)]>,
    hasher: RandomState,
}

impl Library {
    fn text(&self, s: Span) -> &str {
        self.text
            .get(s.start as usize..(s.start as usize + s.len as usize))
            .unwrap_or_default()
    }

    fn name(&self, id: u32) -> Option<Arc<str>> {
        id.checked_sub(1)
            .and_then(|i| self.names.get(i as usize))
            .cloned()
    }

    /// The files whose path hashes to `hash`.
    fn with_hash<T>(sorted: &[T], hash: u64, key: impl Fn(&T) -> u64) -> &[T] {
        let from = sorted.partition_point(|r| key(r) < hash);
        let len = sorted[from..].partition_point(|r| key(r) == hash);
        &sorted[from..from + len]
    }

    fn get(&self, path: &str) -> Option<Entry> {
        let hash = self.hasher.hash_one(path);
        let f = Self::with_hash(&self.files, hash, |f| f.hash)
            .iter()
            .find(|f| self.text(f.path) == path)?;
        self.entry(f.version)
    }

    fn by_media(&self, media_id: &str) -> Option<Entry> {
        let hash = self.hasher.hash_one(media_id);
        let v = Self::with_hash(&self.media, hash, |m| m.0)
            .iter()
            .map(|m| self.versions.get(m.1 as usize))
            .find(|v| v.is_some_and(|v| self.text(v.media_id) == media_id))??;
        self.get(self.text(v.file))
    }

    fn entry(&self, version: u32) -> Option<Entry> {
        let v = self.versions.get(version as usize)?;
        let versions = self
            .versions
            .get(v.item_start as usize..v.item_end as usize)
            .unwrap_or_default()
            .iter()
            .map(|x| self.media_version(x))
            .collect();
        Some(Entry {
            facts: SourceFacts {
                width: (v.flags & HAS_WIDTH != 0).then_some(v.width),
                height: (v.flags & HAS_HEIGHT != 0).then_some(v.height),
                bit_depth: (v.flags & HAS_BIT_DEPTH != 0).then_some(v.bit_depth),
                dynamic_range: dynamic_range_of(v.dynamic_range),
                dv_profile: (v.flags & HAS_DV_PROFILE != 0).then_some(v.dv_profile),
                dv_base_layer_compatible: (v.flags & HAS_DV_BL != 0)
                    .then_some(v.flags & DV_BL_COMPATIBLE != 0),
                codec: self.name(v.codec).map(|c| c.to_string()),
                from: Some(Origin::Daemon),
            },
            versions: Arc::new(versions),
            media_id: Arc::from(self.text(v.media_id)),
        })
    }

    fn media_version(&self, v: &VersionRec) -> MediaVersion {
        MediaVersion {
            media_id: self.text(v.media_id).to_string(),
            width: (v.flags & HAS_WIDTH != 0).then_some(v.width),
            height: (v.flags & HAS_HEIGHT != 0).then_some(v.height),
            dynamic_range: dynamic_range_of(v.dynamic_range),
            dv_profile: (v.flags & HAS_DV_PROFILE != 0).then_some(v.dv_profile),
            bit_depth: (v.flags & HAS_BIT_DEPTH != 0).then_some(v.bit_depth),
            dv_base_layer_compatible: (v.flags & HAS_DV_BL != 0)
                .then_some(v.flags & DV_BL_COMPATIBLE != 0),
            bitrate_kbps: (v.flags & HAS_BITRATE != 0).then_some(v.bitrate_kbps),
            container: self.name(v.container),
            edition: self.name(v.edition),
            file: self.text(v.file).to_string(),
            streams: self
                .streams
                .get(v.streams_start as usize..v.streams_end as usize)
                .unwrap_or_default()
                .iter()
                .map(|s| StreamInfo {
                    index: s.index,
                    kind: s.kind,
                    codec: self.name(s.codec),
                    language: self.name(s.language),
                    channels: (s.flags & STREAM_HAS_CHANNELS != 0).then_some(s.channels),
                    default: s.flags & STREAM_DEFAULT != 0,
                    forced: s.flags & STREAM_FORCED != 0,
                })
                .collect(),
        }
    }

    /// Reads the index in one pass over its versions, parts and streams, grouped by item.
    fn load(db: &Store) -> Result<Library> {
        let mut b = Builder::default();
        // The item, version and part of the previous row.
        let mut item: Option<String> = None;
        let mut part: Option<String> = None;
        let mut version_of_part = 0u32;
        // Whether the row's part is the first of its version.
        let mut first_part = false;
        let mut item_start = 0u32;
        db.for_each_file_row(|r| {
            let (rk, mid, pid) = (r.rating_key, r.media_id, r.part_id);
            if item.as_deref() != Some(rk) {
                b.close_item(item_start);
                item_start = b.versions.len() as u32;
                item = Some(rk.to_string());
                part = None;
            }
            let new_part = part.as_deref() != Some(pid);
            if new_part {
                part = Some(pid.to_string());
                // Versions of an item are contiguous, so a version seen before is the last one.
                let last = b.versions.len().checked_sub(1);
                let known = last
                    .filter(|&i| i >= item_start as usize)
                    .filter(|&i| b.text_of(b.versions[i].media_id) == mid);
                let file = b.push_text(r.file)?;
                first_part = known.is_none();
                version_of_part = match known {
                    Some(i) => i as u32,
                    None => b.push_version(r, file)?,
                };
                b.files.push(FileRec {
                    hash: 0,
                    path: file,
                    version: version_of_part,
                });
            }
            // Streams count for the first part of a version only (what a lookup answers).
            if first_part {
                if let Some(s) = r.stream.as_ref().map(|s| b.stream(s)) {
                    b.streams.push(s);
                    if let Some(v) = b.versions.get_mut(version_of_part as usize) {
                        v.streams_end = b.streams.len() as u32;
                    }
                }
            }
            Ok(())
        })?;
        b.close_item(item_start);
        Ok(b.finish())
    }
}

/// A library being read.
#[derive(Default)]
struct Builder {
    text: String,
    names: Vec<Arc<str>>,
    ids: HashMap<Arc<str>, u32>,
    files: Vec<FileRec>,
    versions: Vec<VersionRec>,
    streams: Vec<StreamRec>,
}

impl Builder {
    fn text_of(&self, s: Span) -> &str {
        self.text
            .get(s.start as usize..(s.start as usize + s.len as usize))
            .unwrap_or_default()
    }

    fn push_text(&mut self, s: &str) -> Result<Span> {
        let start = u32::try_from(self.text.len())
            .ok()
            .filter(|&n| n.checked_add(s.len() as u32).is_some() && s.len() <= u32::MAX as usize)
            .ok_or_else(|| anyhow::anyhow!("the library index is larger than 4 GB of paths"))?;
        self.text.push_str(s);
        Ok(Span {
            start,
            len: s.len() as u32,
        })
    }

    fn intern(&mut self, v: Option<&str>) -> u32 {
        let Some(v) = v else { return 0 };
        if let Some(&id) = self.ids.get(v) {
            return id;
        }
        let name: Arc<str> = Arc::from(v);
        self.names.push(name.clone());
        let id = self.names.len() as u32;
        self.ids.insert(name, id);
        id
    }

    fn push_version(&mut self, r: &FileRow<'_>, file: Span) -> Result<u32> {
        let mut flags = 0u8;
        let mut opt = |bit: u8, v: Option<u32>| {
            flags |= if v.is_some() { bit } else { 0 };
            v.unwrap_or(0)
        };
        let width = opt(HAS_WIDTH, r.width);
        let height = opt(HAS_HEIGHT, r.height);
        let bitrate_kbps = opt(HAS_BITRATE, r.bitrate_kbps);
        let (bit_depth, dv_profile, dv_bl) = (r.bit_depth, r.dv_profile, r.dv_bl_compatible);
        flags |= if bit_depth.is_some() {
            HAS_BIT_DEPTH
        } else {
            0
        } | if dv_profile.is_some() {
            HAS_DV_PROFILE
        } else {
            0
        } | match dv_bl {
            Some(true) => HAS_DV_BL | DV_BL_COMPATIBLE,
            Some(false) => HAS_DV_BL,
            None => 0,
        };
        let dynamic_range = dynamic_range_code(r.dynamic_range);
        let media_id = self.push_text(r.media_id)?;
        let (container, edition, codec) = (
            self.intern(r.container),
            self.intern(r.edition),
            self.intern(r.video_codec),
        );
        let streams_start = self.streams.len() as u32;
        self.versions.push(VersionRec {
            media_id,
            file,
            streams_start,
            streams_end: streams_start,
            width,
            height,
            bitrate_kbps,
            container,
            edition,
            codec,
            bit_depth: bit_depth.unwrap_or(0),
            dv_profile: dv_profile.unwrap_or(0),
            dynamic_range,
            flags,
            ..VersionRec::default()
        });
        Ok(self.versions.len() as u32 - 1)
    }

    /// A stream row as stored in memory.
    fn stream(&mut self, r: &StreamRow<'_>) -> StreamRec {
        let kind = match r.kind {
            Some("audio") => StreamKind::Audio,
            Some("subtitle") => StreamKind::Subtitle,
            _ => StreamKind::Video,
        };
        let flags = if r.default { STREAM_DEFAULT } else { 0 }
            | if r.forced { STREAM_FORCED } else { 0 }
            | if r.channels.is_some() {
                STREAM_HAS_CHANNELS
            } else {
                0
            };
        StreamRec {
            index: r.index,
            codec: self.intern(r.codec),
            language: self.intern(r.language),
            channels: r.channels.unwrap_or(0),
            kind,
            flags,
        }
    }

    /// Gives the versions pushed since `start` (one item's) their item range.
    fn close_item(&mut self, start: u32) {
        let end = self.versions.len() as u32;
        for v in self.versions.get_mut(start as usize..).unwrap_or_default() {
            v.item_start = start;
            v.item_end = end;
        }
    }

    fn finish(mut self) -> Library {
        let hasher = RandomState::new();
        let mut files = std::mem::take(&mut self.files);
        for f in &mut files {
            f.hash = hasher.hash_one(self.text_of(f.path));
        }
        // Stable: of several parts with one path, the last read wins (as a map insert would).
        files.sort_by_key(|f| f.hash);
        let text_of = |s: Span| {
            self.text
                .get(s.start as usize..(s.start as usize + s.len as usize))
                .unwrap_or_default()
        };
        let mut unique: Vec<FileRec> = Vec::with_capacity(files.len());
        for (i, f) in files.iter().enumerate() {
            let later_same = files[i + 1..]
                .iter()
                .take_while(|g| g.hash == f.hash)
                .any(|g| text_of(g.path) == text_of(f.path));
            if !later_same {
                unique.push(*f);
            }
        }
        let mut media: Vec<(u64, u32)> = self
            .versions
            .iter()
            .enumerate()
            .map(|(i, v)| (hasher.hash_one(text_of(v.media_id)), i as u32))
            .collect();
        media.sort_by_key(|m| m.0);
        Library {
            text: self.text.into_boxed_str(),
            names: self.names.into_boxed_slice(),
            files: unique.into_boxed_slice(),
            versions: self.versions.into_boxed_slice(),
            streams: self.streams.into_boxed_slice(),
            media: media.into_boxed_slice(),
            hasher,
        }
    }
}

/// Every dynamic range, in the order of their codes.
const DYNAMIC_RANGES: [DynamicRange; 5] = [
    DynamicRange::Sdr,
    DynamicRange::Hdr10,
    DynamicRange::Hdr10plus,
    DynamicRange::Hlg,
    DynamicRange::DolbyVision,
];

/// `dynamic_range` as stored (its serde name) → a small code; 0 is none (or unknown).
fn dynamic_range_code(s: Option<&str>) -> u8 {
    DYNAMIC_RANGES
        .iter()
        .position(|d| Some(d.as_str()) == s)
        .map_or(0, |i| i as u8 + 1)
}

fn dynamic_range_of(code: u8) -> Option<DynamicRange> {
    code.checked_sub(1)
        .and_then(|i| DYNAMIC_RANGES.get(i as usize))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    fn open(p: &std::path::Path) -> anyhow::Result<Store> {
        Store::open(p)
    }
    use crate::plex::json::Item;
    use rusqlite::Connection;
    use serde_json::{json, Value};

    /// The map as the daemon built it before issue 9 (a `String` → `Entry` hash map with a
    /// `MediaVersion` per version): the reference every answer is compared with.
    fn reference(db: &Connection) -> (HashMap<String, Entry>, HashMap<String, String>) {
        let mut streams: HashMap<String, Vec<StreamInfo>> = HashMap::new();
        let mut q = db
            .prepare("SELECT part_id, idx, kind, codec, language, channels, is_default, forced FROM streams ORDER BY part_id, idx")
            .unwrap();
        let mut rows = q.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let kind = match r.get::<_, String>(2).unwrap().as_str() {
                "audio" => StreamKind::Audio,
                "subtitle" => StreamKind::Subtitle,
                _ => StreamKind::Video,
            };
            let name = |i| r.get::<_, Option<String>>(i).unwrap().map(Arc::from);
            streams
                .entry(r.get(0).unwrap())
                .or_default()
                .push(StreamInfo {
                    index: r.get(1).unwrap(),
                    kind,
                    codec: name(3),
                    language: name(4),
                    channels: r.get(5).unwrap(),
                    default: r.get(6).unwrap(),
                    forced: r.get(7).unwrap(),
                });
        }
        let mut q = db
            .prepare(
                "SELECT m.rating_key, m.id, m.width, m.height, m.bit_depth, m.dynamic_range, m.dv_profile,
                    m.dv_bl_compatible, m.bitrate_kbps, m.container, m.edition, m.video_codec, p.id, p.file
             FROM media m JOIN parts p ON p.media_id = m.id ORDER BY m.rating_key, m.id, p.id",
            )
            .unwrap();
        let mut rows = q.query([]).unwrap();
        let mut versions: HashMap<String, Vec<MediaVersion>> = HashMap::new();
        let mut files = Vec::new();
        while let Some(r) = rows.next().unwrap() {
            let rk: String = r.get(0).unwrap();
            let mid: String = r.get(1).unwrap();
            let file: String = r.get(13).unwrap();
            let dr: Option<DynamicRange> = r
                .get::<_, Option<String>>(5)
                .unwrap()
                .and_then(|d| serde_json::from_value(Value::String(d)).ok());
            let name = |i| r.get::<_, Option<String>>(i).unwrap().map(Arc::from);
            let vs = versions.entry(rk.clone()).or_default();
            if !vs.iter().any(|v| v.media_id == mid) {
                vs.push(MediaVersion {
                    media_id: mid.clone(),
                    width: r.get(2).unwrap(),
                    height: r.get(3).unwrap(),
                    dynamic_range: dr,
                    dv_profile: r.get(6).unwrap(),
                    bit_depth: r.get(4).unwrap(),
                    dv_base_layer_compatible: r.get(7).unwrap(),
                    bitrate_kbps: r.get(8).unwrap(),
                    container: name(9),
                    edition: name(10),
                    file: file.clone(),
                    streams: streams
                        .remove(&r.get::<_, String>(12).unwrap())
                        .unwrap_or_default(),
                });
            }
            let facts = SourceFacts {
                width: r.get(2).unwrap(),
                height: r.get(3).unwrap(),
                bit_depth: r.get(4).unwrap(),
                dynamic_range: dr,
                dv_profile: r.get(6).unwrap(),
                dv_base_layer_compatible: r.get(7).unwrap(),
                codec: r.get(11).unwrap(),
                from: Some(Origin::Daemon),
            };
            files.push((file, rk, mid, facts));
        }
        let mut map = HashMap::new();
        let mut media = HashMap::new();
        for (file, rk, mid, facts) in files {
            media.entry(mid.clone()).or_insert_with(|| file.clone());
            let entry = Entry {
                facts,
                versions: Arc::new(versions[&rk].clone()),
                media_id: Arc::from(mid.as_str()),
            };
            map.insert(file, entry);
        }
        (map, media)
    }

    fn stream(kind: u8, index: u32, extra: Value) -> Value {
        let mut s = json!({"streamType": kind, "index": index});
        if let (Some(s), Value::Object(extra)) = (s.as_object_mut(), extra) {
            s.extend(extra);
        }
        s
    }

    /// A library with the shapes Plex really has: movies with one to three versions, an
    /// edition, a two-part film, Dolby Vision with and without a compatible base layer,
    /// HDR10+, HLG, versions without sizes or streams, streams without codec, language or
    /// channels, one file listed by two items, and shows with episodes.
    fn up(db: &Store, section: &str, item: &Value) -> Result<bool> {
        db.upsert_item(section, &Item::from_value(item))
    }

    fn library(db: &Store, movies: u64, shows: u64, episodes: u64) {
        db.upsert_section(&json!({"key": "1", "type": "movie", "title": "Movies"}))
            .unwrap();
        db.upsert_section(&json!({"key": "2", "type": "show", "title": "TV"}))
            .unwrap();
        let langs = ["eng", "ger", "fra", "jpn", "spa"];
        let mut rk = 100u64;
        for i in 0..movies {
            rk += 1;
            let dir = format!("/data/Movies/Film {i} ({})", 1950 + i % 70);
            let mut media = Vec::new();
            let versions = 1 + i % 3;
            for v in 0..versions {
                let (w, h, trc, codec) = match v {
                    0 => (1920, 1080, "bt709", "h264"),
                    1 => (3840, 2160, "smpte2084", "hevc"),
                    _ => (1280, 720, "bt709", "h264"),
                };
                let mut video = stream(
                    1,
                    0,
                    json!({"codec": codec, "bitDepth": if h > 1080 { 10 } else { 8 }, "colorTrc": trc}),
                );
                if v == 1 && i % 5 == 0 {
                    video["DOVIPresent"] = json!(true);
                    video["DOVIProfile"] = json!(if i % 10 == 0 { 5 } else { 8 });
                    video["DOVIBLCompatID"] = json!(1);
                }
                if v == 1 && i % 7 == 0 {
                    video["displayTitle"] = json!("4K HDR10+ (HEVC Main 10)");
                }
                if v == 1 && i % 11 == 0 {
                    video["colorTrc"] = json!("arib-std-b67");
                }
                let mut streams = vec![video];
                for a in 0..(i % 4) {
                    let codec = ["eac3", "truehd", "aac"][a as usize % 3];
                    let channels = [6, 8, 2][a as usize % 3];
                    let language = langs[(i + a) as usize % langs.len()];
                    streams.push(stream(
                        2,
                        1 + a as u32,
                        json!({"codec": codec, "languageCode": language, "channels": channels, "default": a == 0}),
                    ));
                }
                if i % 6 == 0 {
                    // A subtitle with no language, and one with neither codec nor channels.
                    streams.push(stream(3, 9, json!({"codec": "srt", "forced": true})));
                    streams.push(stream(3, 10, json!({})));
                }
                let file = format!("{dir}/Film {i} - {h}p.mkv");
                let mut parts =
                    vec![json!({"id": rk * 100 + v * 10 + 1, "file": file, "Stream": streams})];
                if i % 13 == 0 && v == 0 {
                    // A two-part film: the second part has streams of its own.
                    parts.push(json!({"id": rk * 100 + v * 10 + 2, "file": format!("{dir}/Film {i} - {h}p - pt2.mkv"),
                        "Stream": [stream(1, 0, json!({"codec": "mpeg2video"}))]}));
                }
                let mut m = json!({"id": rk * 10 + v, "videoCodec": codec, "Part": parts});
                if i % 17 != 0 {
                    m["width"] = json!(w);
                    m["height"] = json!(h);
                    m["bitrate"] = json!(if h > 1080 { 60000 } else { 9000 + i });
                    m["container"] = json!(if i % 2 == 0 { "mkv" } else { "mp4" });
                }
                media.push(m);
            }
            if i % 19 == 0 {
                media.push(json!({"id": rk * 10 + 9, "Part": []}));
            }
            let mut movie = json!({"ratingKey": rk.to_string(), "type": "movie", "title": format!("Film {i}"),
                "updatedAt": 1000 + i, "Media": media});
            if i % 8 == 0 {
                movie["editionTitle"] = json!("Director's Cut");
            }
            up(db, "1", &movie).unwrap();
        }
        // One file under two items (a copy Plex lists twice): the one read last answers.
        rk += 1;
        up(db, "1", &json!({"ratingKey": rk.to_string(), "type": "movie", "title": "Copy",
            "Media": [{"id": 7, "width": 720, "height": 576, "Part": [{"id": 70, "file": "/data/Movies/Film 1 (1951)/Film 1 - 1080p.mkv"}]}]}))
        .unwrap();
        for sh in 0..shows {
            rk += 1;
            let show = rk;
            up(db, "2", &json!({"ratingKey": show.to_string(), "type": "show", "title": format!("Show {sh}")}))
                .unwrap();
            for e in 0..episodes {
                rk += 1;
                let file = format!("/data/TV/Show {sh}/Season 01/Show {sh} - S01E{e:02}.mkv");
                up(db, "2", &json!({"ratingKey": rk.to_string(), "type": "episode", "title": format!("Episode {e}"),
                    "grandparentRatingKey": show.to_string(), "parentIndex": 1, "index": e,
                    "Media": [{"id": 8_000_000 + rk, "width": 1920, "height": 1080, "videoCodec": "h264", "container": "mkv",
                        "Part": [{"id": 9_000_000 + rk, "file": file, "Stream": [
                            stream(1, 0, json!({"codec": "h264", "bitDepth": 8, "colorTrc": "bt709"})),
                            stream(2, 1, json!({"codec": "aac", "languageCode": langs[(sh % 5) as usize], "channels": 2, "default": true}))]}]}]}))
                .unwrap();
            }
        }
    }

    fn assert_same(got: Option<Entry>, want: Option<&Entry>, what: &str) {
        match (got, want) {
            (None, None) => {}
            (Some(g), Some(w)) => {
                assert_eq!(g.facts, w.facts, "facts of {what}");
                assert_eq!(*g.versions, *w.versions, "versions of {what}");
                assert_eq!(g.media_id, w.media_id, "media id of {what}");
            }
            (g, w) => panic!("{what}: got {g:?}, want {w:?}"),
        }
    }

    #[test]
    fn answers_exactly_what_the_hash_map_answered() {
        let d = tempfile::tempdir().unwrap();
        let db = open(&d.path().join("index.sqlite")).unwrap();
        db.write(|db| {
            library(db, 600, 20, 30);
            Ok(())
        })
        .unwrap();
        let (map, media) = reference(db.conn_for_tests());
        let l = Lookup::default();
        l.rebuild(&db).unwrap();
        assert_eq!(l.len(), map.len());
        assert!(map.len() > 1_700, "{} files", map.len());
        let mut versions_seen = 0;
        for (path, want) in &map {
            versions_seen += want.versions.len();
            assert_same(l.get(path), Some(want), path);
        }
        assert!(versions_seen > 2_000, "{versions_seen} versions");
        for (mid, path) in &media {
            assert_same(l.by_media(mid), map.get(path), mid);
        }
        for absent in [
            "",
            "/data/Movies",
            "/data/Movies/Film 1 (1951)/Film 1 - 1080p.mk",
            "/data/Movies/Film 1 (1951)/Film 1 - 1080p.mkv ",
        ] {
            assert!(l.get(absent).is_none(), "{absent:?}");
        }
        assert!(l.by_media("no such media").is_none());
        // What a user of the two-part film and of the copied file sees.
        let film0 = l
            .get("/data/Movies/Film 0 (1950)/Film 0 - 1080p - pt2.mkv")
            .unwrap();
        assert_eq!(film0.facts.codec.as_deref(), Some("h264"));
        assert_eq!(
            film0.versions[0].file,
            "/data/Movies/Film 0 (1950)/Film 0 - 1080p.mkv"
        );
        let copy = l
            .get("/data/Movies/Film 1 (1951)/Film 1 - 1080p.mkv")
            .unwrap();
        assert_eq!(copy.facts.height, Some(576));
    }

    /// Bytes of heap this thread holds (allocated minus freed), counted by [`Counting`].
    mod heap {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        thread_local! {
            static LIVE: Cell<isize> = const { Cell::new(0) };
        }

        fn add(n: isize) {
            let _ = LIVE.try_with(|c| c.set(c.get() + n));
        }

        pub fn live() -> isize {
            LIVE.with(Cell::get)
        }

        struct Counting;

        // SAFETY: forwards to the system allocator; the counter is a const thread-local.
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, l: Layout) -> *mut u8 {
                add(l.size() as isize);
                unsafe { System.alloc(l) }
            }
            unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
                add(-(l.size() as isize));
                unsafe { System.dealloc(p, l) }
            }
            unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
                add(new as isize - l.size() as isize);
                unsafe { System.realloc(p, l, new) }
            }
        }

        #[global_allocator]
        static COUNTING: Counting = Counting;
    }

    #[test]
    fn holds_a_fraction_of_the_memory_of_the_hash_map() {
        let d = tempfile::tempdir().unwrap();
        let db = open(&d.path().join("index.sqlite")).unwrap();
        db.write(|db| {
            library(db, 600, 40, 60);
            Ok(())
        })
        .unwrap();
        let before = heap::live();
        let old = reference(db.conn_for_tests());
        let old_bytes = heap::live() - before;
        let files = old.0.len() as isize;
        drop(old);
        let before = heap::live();
        let l = Lookup::default();
        l.rebuild(&db).unwrap();
        let new_bytes = heap::live() - before;
        assert_eq!(l.len() as isize, files);
        println!(
            "{files} files: {} bytes per file in the hash map, {} in the lookup",
            old_bytes / files,
            new_bytes / files
        );
        // Issue 9: ≤ 100 MB at 200,000 files, the daemon's own few MB included.
        assert!(
            new_bytes / files <= 300,
            "{} bytes per file",
            new_bytes / files
        );
        assert!(new_bytes * 3 <= old_bytes, "{new_bytes} vs {old_bytes}");
    }

    #[test]
    fn an_empty_index_answers_nothing() {
        let d = tempfile::tempdir().unwrap();
        let db = open(&d.path().join("index.sqlite")).unwrap();
        let l = Lookup::default();
        assert!(l.get("/x.mkv").is_none());
        l.rebuild(&db).unwrap();
        assert_eq!(l.len(), 0);
        assert!(l.get("/x.mkv").is_none() && l.by_media("1").is_none());
    }
}
