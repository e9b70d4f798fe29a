//! Reading Plex's JSON as it really is: ids that are strings in one endpoint and numbers in
//! another (`ratingKey: "55"`, `Media.id: 46`), booleans as `true`, `1` or `"1"`, arrays that
//! are absent when empty, `Guid`/`guid` capitalisation that varies (apis.md §1.0, §1.5).
//! Nothing here panics on an odd shape: a missing or mistyped field is `None`.

pub(crate) mod lenient;

use downshiftarr_shim::facts::DynamicRange;
use downshiftarr_shim::protocol::{MediaVersion, StreamInfo, StreamKind};
use serde::Deserialize;
use serde_json::Value;

use lenient::shape;
pub use lenient::{Many, Scalar};

/// A string field, accepting numbers.
pub fn s(v: &Value, k: &str) -> Option<String> {
    match v.get(k)? {
        Value::String(x) => Some(x.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An integer field, accepting numeric strings.
pub fn n(v: &Value, k: &str) -> Option<i64> {
    match v.get(k)? {
        Value::Number(x) => x.as_i64().or_else(|| x.as_f64().map(|f| f as i64)),
        Value::String(x) => x.trim().parse().ok(),
        _ => None,
    }
}

/// A boolean field, accepting `1`/`0` and `"1"`/`"0"` ([`Scalar::b`] reads the same).
#[cfg(test)]
pub fn b(v: &Value, k: &str) -> Option<bool> {
    match v.get(k)? {
        Value::Bool(x) => Some(*x),
        Value::Number(x) => Some(x.as_i64() != Some(0)),
        Value::String(x) => Some(matches!(x.as_str(), "1" | "true")),
        _ => None,
    }
}

/// An array field (absent means empty).
pub fn arr<'a>(v: &'a Value, k: &str) -> &'a [Value] {
    v.get(k)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// External ids of an item.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExternalIds {
    pub imdb: Option<String>,
    pub tmdb: Option<String>,
    pub tvdb: Option<String>,
    pub plex: Option<String>,
}

impl ExternalIds {
    /// The preferred id for shows: TVDB > TMDB > IMDb > Plex (issue 4).
    pub fn preferred(&self) -> Option<String> {
        self.tvdb
            .as_ref()
            .map(|x| format!("tvdb://{x}"))
            .or_else(|| self.tmdb.as_ref().map(|x| format!("tmdb://{x}")))
            .or_else(|| self.imdb.as_ref().map(|x| format!("imdb://{x}")))
            .or_else(|| self.plex.as_ref().map(|x| format!("plex://{x}")))
    }
}

shape! {
    /// One `Guid[]` entry.
    pub struct GuidEntry {
        "id" => id: Scalar,
    }
}

/// `guid` is a string (`plex://movie/…`, legacy agents) or, in some answers, an array like
/// `Guid` (apis.md §1.5).
#[derive(Clone, Debug, Default)]
pub enum GuidField {
    #[default]
    Absent,
    One(Scalar),
    List(Vec<GuidEntry>),
}

impl<'de> Deserialize<'de> for GuidField {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<GuidField, D::Error> {
        // An array is a list of entries; anything else is read as a scalar.
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = GuidField;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a guid")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<GuidField, A::Error> {
                Many::<GuidEntry>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(|m| GuidField::List(m.0))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<GuidField, A::Error> {
                Scalar::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(GuidField::One)
            }
            fn visit_bool<E>(self, v: bool) -> Result<GuidField, E> {
                Ok(GuidField::One(Scalar::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<GuidField, E> {
                Ok(GuidField::One(Scalar::Num(v.into())))
            }
            fn visit_u64<E>(self, v: u64) -> Result<GuidField, E> {
                Ok(GuidField::One(Scalar::Num(v.into())))
            }
            fn visit_f64<E>(self, v: f64) -> Result<GuidField, E> {
                Ok(GuidField::One(
                    serde_json::Number::from_f64(v).map_or(Scalar::Other, Scalar::Num),
                ))
            }
            fn visit_str<E>(self, v: &str) -> Result<GuidField, E> {
                Ok(GuidField::One(Scalar::Str(v.to_string())))
            }
            fn visit_unit<E>(self) -> Result<GuidField, E> {
                Ok(GuidField::Absent)
            }
        }
        d.deserialize_any(V)
    }
}

shape! {
    /// A stream of a part (the fields the index keeps and the dynamic range is read from).
    pub struct Stream {
        "streamType" => stream_type: Scalar,
        "index" => index: Scalar,
        "codec" => codec: Scalar,
        "languageCode" => language_code: Scalar,
        "languageTag" => language_tag: Scalar,
        "channels" => channels: Scalar,
        "default" => default: Scalar,
        "forced" => forced: Scalar,
        "bitDepth" => bit_depth: Scalar,
        "colorTrc" => color_trc: Scalar,
        "displayTitle" => display_title: Scalar,
        "extendedDisplayTitle" => extended_display_title: Scalar,
        "DOVIPresent" => dovi_present: Scalar,
        "DOVIProfile" => dovi_profile: Scalar,
        "DOVIBLCompatID" => dovi_bl_compat_id: Scalar,
        "DOVIBLPresent" => dovi_bl_present: Scalar,
        "width" => width: Scalar,
        "height" => height: Scalar,
    }
}

shape! {
    /// A file of a version.
    pub struct Part {
        "id" => id: Scalar,
        "file" => file: Scalar,
        "Stream" => streams: Many<Stream>,
    }
}

shape! {
    /// A version (`Media[]` entry).
    pub struct Media {
        "id" => id: Scalar,
        "width" => width: Scalar,
        "height" => height: Scalar,
        "bitrate" => bitrate: Scalar,
        "container" => container: Scalar,
        "videoCodec" => video_codec: Scalar,
        "Part" => parts: Many<Part>,
    }
}

shape! {
    /// A library item (movie, show, season, episode) of a listing or a metadata answer; a
    /// listing's items have no `Media` (absent, not empty: `media_given` tells).
    pub struct Item {
        "ratingKey" => rating_key: Scalar,
        "type" => kind: Scalar,
        "title" => title: Scalar,
        "grandparentTitle" => grandparent_title: Scalar,
        "year" => year: Scalar,
        "parentYear" => parent_year: Scalar,
        "parentRatingKey" => parent_rating_key: Scalar,
        "grandparentRatingKey" => grandparent_rating_key: Scalar,
        "parentIndex" => parent_index: Scalar,
        "index" => index: Scalar,
        "updatedAt" => updated_at: Scalar,
        "editionTitle" => edition_title: Scalar,
        "guid" => guid: GuidField,
        "Guid" => guids: Many<GuidEntry>,
        "Media" => media: Option<Many<Media>>,
    }
}

impl Item {
    /// Reads an item held as a `Value` (the guard's answers, tests).
    pub fn from_value(v: &Value) -> Item {
        Item::deserialize(v).unwrap_or_default()
    }

    /// Whether the answer carried `Media` (a metadata answer, not a listing's summary).
    pub fn has_media(&self) -> bool {
        self.media.is_some()
    }

    /// "Show / S01E02 Title" or "Title (Year)" for progress lines.
    pub fn label(&self) -> String {
        let title = self.title.s().unwrap_or_default();
        match (
            self.grandparent_title.s(),
            self.parent_index.n(),
            self.index.n(),
        ) {
            (Some(show), Some(season), Some(ep)) => {
                format!("{show} / S{season:02}E{ep:02} {title}")
            }
            _ => match self.year.n() {
                Some(y) => format!("{title} ({y})"),
                None => title,
            },
        }
    }
}

shape! {
    /// A `MediaContainer` of a listing or metadata answer.
    pub struct Container {
        "Metadata" => metadata: Many<Item>,
        "totalSize" => total_size: Scalar,
    }
}

shape! {
    /// A whole answer: `{"MediaContainer": {…}}`.
    pub struct Envelope {
        "MediaContainer" => container: Container,
    }
}

/// Parses a listing or metadata answer, without a `Value` tree; `None` when it is JSON but
/// holds no `MediaContainer` object.
pub fn container(body: &[u8]) -> Result<Option<Container>, serde_json::Error> {
    let e: Envelope = serde_json::from_slice(body)?;
    Ok(e.container.present.then_some(e.container))
}

/// Parses every GUID form of apis.md §1.5: the new `Guid[]` array and the legacy
/// `com.plexapp.agents.*` strings (`?lang=` stripped, HAMA `tvdb-`/`anidb-` prefixes).
#[cfg(test)]
pub fn external_ids(item: &Value) -> ExternalIds {
    Item::from_value(item).external_ids()
}

impl Item {
    /// The item's external ids (see [`external_ids`]).
    pub fn external_ids(&self) -> ExternalIds {
        let mut ids = ExternalIds::default();
        let mut add = |g: &str| {
            let g = g.split('?').next().unwrap_or(g);
            let Some((scheme, rest)) = g.split_once("://") else {
                return;
            };
            let first = rest.split('/').next().unwrap_or(rest).to_string();
            if first.is_empty() {
                return;
            }
            let set = |slot: &mut Option<String>, v: String| {
                slot.get_or_insert(v);
            };
            match scheme {
                "imdb" | "com.plexapp.agents.imdb" => set(&mut ids.imdb, first),
                "tmdb" | "com.plexapp.agents.themoviedb" => set(&mut ids.tmdb, first),
                "tvdb" | "com.plexapp.agents.thetvdb" | "com.plexapp.agents.thetvdbdvdorder" => {
                    set(&mut ids.tvdb, first)
                }
                "com.plexapp.agents.hama" => {
                    if let Some(t) = first
                        .strip_prefix("tvdb-")
                        .or_else(|| first.strip_prefix("tvdb2-"))
                    {
                        set(&mut ids.tvdb, t.to_string());
                    }
                }
                "plex" => set(
                    &mut ids.plex,
                    rest.rsplit('/').next().unwrap_or(rest).to_string(),
                ),
                _ => {}
            }
        };
        let listed = match &self.guid {
            GuidField::List(l) => &l[..],
            _ => &[],
        };
        for g in self.guids.0.iter().chain(listed) {
            if let Some(id) = g.id.s() {
                add(&id);
            }
        }
        if let GuidField::One(g) = &self.guid {
            if let Some(g) = g.s() {
                add(&g);
            }
        }
        ids
    }
}

/// The dynamic range of a video stream (apis.md §1.4).
#[cfg(test)]
pub fn dynamic_range(video: &Value) -> Option<DynamicRange> {
    Stream::deserialize(video)
        .unwrap_or_default()
        .dynamic_range()
}

impl Stream {
    /// The dynamic range of a video stream (apis.md §1.4).
    pub fn dynamic_range(&self) -> Option<DynamicRange> {
        if self.dovi_present.b() == Some(true) {
            return Some(DynamicRange::DolbyVision);
        }
        let title = self.display_title.s().unwrap_or_default()
            + &self.extended_display_title.s().unwrap_or_default();
        match self.color_trc.s().as_deref() {
            Some("smpte2084") if title.contains("HDR10+") => Some(DynamicRange::Hdr10plus),
            Some("smpte2084") => Some(DynamicRange::Hdr10),
            Some("arib-std-b67") => Some(DynamicRange::Hlg),
            Some(_) => Some(DynamicRange::Sdr),
            None if title.contains("DoVi") || title.contains("Dolby Vision") => {
                Some(DynamicRange::DolbyVision)
            }
            None if title.contains("HDR10+") => Some(DynamicRange::Hdr10plus),
            None if title.contains("HDR") => Some(DynamicRange::Hdr10),
            None if title.contains("HLG") => Some(DynamicRange::Hlg),
            // Plex writes no colour fields for plain SDR files of some containers.
            None => Some(DynamicRange::Sdr),
        }
    }

    fn info(&self) -> Option<StreamInfo> {
        let kind = match self.stream_type.n()? {
            1 => StreamKind::Video,
            2 => StreamKind::Audio,
            3 => StreamKind::Subtitle,
            _ => return None,
        };
        Some(StreamInfo {
            index: self.index.u32().unwrap_or(0),
            kind,
            codec: self.codec.s().map(Into::into),
            language: self
                .language_code
                .s()
                .or_else(|| self.language_tag.s())
                .map(Into::into),
            channels: self.channels.u32(),
            default: self.default.b().unwrap_or(false),
            forced: self.forced.b().unwrap_or(false),
        })
    }
}

/// One media version with its parts, as stored and as the shim receives it.
#[derive(Clone, Debug, Default)]
pub struct Version {
    pub media: MediaVersion,
    pub video_codec: Option<String>,
    /// (part id, file) — multi-part items have several.
    pub parts: Vec<(String, String, Vec<StreamInfo>)>,
}

/// The versions of a metadata item (`Media[]`), with streams when the response has them.
pub fn versions(item: &Value) -> Vec<Version> {
    Item::from_value(item).versions()
}

impl Item {
    /// The item's versions (`Media[]`), with streams when the answer has them.
    pub fn versions(&self) -> Vec<Version> {
        let edition = self.edition_title.s();
        let media = self.media.as_ref().map(|m| &m.0[..]).unwrap_or_default();
        media
            .iter()
            .map(|m| {
                let mut v = Version {
                    media: MediaVersion {
                        media_id: m.id.s().unwrap_or_default(),
                        width: m.width.u32(),
                        height: m.height.u32(),
                        bitrate_kbps: m.bitrate.u32(),
                        container: m.container.s().map(Into::into),
                        edition: edition.clone().map(Into::into),
                        ..MediaVersion::default()
                    },
                    video_codec: m.video_codec.s(),
                    ..Version::default()
                };
                for p in &m.parts.0 {
                    let streams: Vec<StreamInfo> =
                        p.streams.0.iter().filter_map(Stream::info).collect();
                    if let Some(video) = p.streams.0.iter().find(|st| st.stream_type.n() == Some(1))
                    {
                        v.media.dynamic_range = v.media.dynamic_range.or(video.dynamic_range());
                        v.media.bit_depth = v.media.bit_depth.or(video.bit_depth.u8());
                        v.media.dv_profile = v.media.dv_profile.or(video.dovi_profile.u8());
                        if video.dovi_present.b() == Some(true) {
                            let compat = video.dovi_bl_compat_id.n();
                            v.media.dv_base_layer_compatible = Some(
                                video.dovi_bl_present.b().unwrap_or(true)
                                    && matches!(compat, Some(1 | 2 | 4 | 6))
                                    && v.media.dv_profile != Some(5),
                            );
                        }
                        v.media.width = v.media.width.or(video.width.u32());
                        v.media.height = v.media.height.or(video.height.u32());
                    }
                    if let Some(file) = p.file.s() {
                        v.parts.push((p.id.s().unwrap_or_default(), file, streams));
                    }
                }
                v.media.file = v.parts.first().map(|p| p.1.clone()).unwrap_or_default();
                v
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(name: &str) -> Value {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/plex-payloads")
            .join(name);
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    }

    #[test]
    fn guid_forms() {
        let new = payload("plex-metadata-movie-newagent-guids.json");
        let ids = external_ids(&new["MediaContainer"]["Metadata"][0]);
        assert_eq!(
            (
                ids.imdb.as_deref(),
                ids.tmdb.as_deref(),
                ids.tvdb.as_deref()
            ),
            (Some("tt2294629"), Some("109445"), Some("89"))
        );
        let legacy = payload("plex-metadata-movie-legacy-agent.json");
        let ids = external_ids(&legacy["MediaContainer"]["Metadata"][0]);
        assert!(ids.imdb.is_some() || ids.tmdb.is_some(), "{ids:?}");
        let tv = external_ids(&json!({"guid": "com.plexapp.agents.thetvdb://268592/1/1?lang=en"}));
        assert_eq!(tv.tvdb.as_deref(), Some("268592"));
        let hama =
            external_ids(&json!({"guid": "com.plexapp.agents.hama://tvdb-81797/22/70?lang=en"}));
        assert_eq!(hama.tvdb.as_deref(), Some("81797"));
        assert_eq!(
            external_ids(&json!({"guid": "com.plexapp.agents.none://abc?lang=xn"})),
            ExternalIds::default()
        );
        let both = external_ids(
            &json!({"guid": "plex://show/5d9c086c46115600200aa2fe", "Guid": [{"id": "tmdb://1"}, {"id": "imdb://tt2"}]}),
        );
        assert_eq!(both.preferred().as_deref(), Some("tmdb://1"));
    }

    #[test]
    fn versions_and_streams_from_real_payloads() {
        let new = payload("plex-metadata-movie-newagent-guids.json");
        let v = versions(&new["MediaContainer"]["Metadata"][0]);
        assert!(!v.is_empty());
        assert_eq!(
            v[0].media.file,
            "/mnt/media/Libraries/movies/Frozen (2013)/Frozen (2013).mp4"
        );
        assert_eq!(
            (
                v[0].media.width,
                v[0].media.height,
                v[0].media.dynamic_range
            ),
            (Some(1280), Some(568), Some(DynamicRange::Sdr))
        );
        // The bit depth travels in the version itself (issue 10): the trigger's facts and
        // the shim's switch read it from there.
        assert_eq!(v[0].media.bit_depth, Some(8));
        assert!(v[0].parts[0]
            .2
            .iter()
            .any(|s| s.kind == StreamKind::Audio && s.language.as_deref() == Some("eng")));
    }

    #[test]
    fn hdr_and_dv_classification() {
        assert_eq!(
            dynamic_range(&json!({"colorTrc": "smpte2084"})),
            Some(DynamicRange::Hdr10)
        );
        assert_eq!(
            dynamic_range(&json!({"colorTrc": "arib-std-b67"})),
            Some(DynamicRange::Hlg)
        );
        assert_eq!(
            dynamic_range(&json!({"colorTrc": "smpte2084", "DOVIPresent": "1"})),
            Some(DynamicRange::DolbyVision)
        );
        assert_eq!(
            dynamic_range(
                &json!({"colorTrc": "smpte2084", "displayTitle": "4K HDR10+ (HEVC Main 10)"})
            ),
            Some(DynamicRange::Hdr10plus)
        );
        assert_eq!(
            dynamic_range(&json!({"colorTrc": "bt709"})),
            Some(DynamicRange::Sdr)
        );
    }

    /// Read from the body bytes or from a `Value`, a real answer is the same items.
    #[test]
    fn typed_items_read_from_bytes_as_from_values() {
        for name in [
            "plex-metadata-movie-newagent-guids.json",
            "plex-metadata-movie-legacy-agent.json",
        ] {
            let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures/plex-payloads")
                .join(name);
            let body = std::fs::read(p).unwrap();
            let c = container(&body).unwrap().unwrap();
            let v = payload(name);
            let items = v["MediaContainer"]["Metadata"].as_array().unwrap();
            assert_eq!(c.metadata.0.len(), items.len());
            for (typed, value) in c.metadata.0.iter().zip(items) {
                assert_eq!(typed.rating_key.s(), s(value, "ratingKey"));
                assert_eq!(typed.external_ids(), external_ids(value));
                assert_eq!(
                    format!("{:?}", typed.versions()),
                    format!("{:?}", versions(value))
                );
                assert!(!typed.versions().is_empty(), "{name}");
            }
        }
    }

    /// A malformed item costs that item only: the page and its other items are read.
    #[test]
    fn a_malformed_item_is_skipped_not_the_page() {
        let body = br#"{"MediaContainer": {"totalSize": "4", "Metadata": [
            "not an item", {"title": "no key"}, {"ratingKey": 7, "ratingKey": "8", "Media": {"id": 1}},
            {"ratingKey": "9", "updatedAt": "12", "Media": [{"id": "m", "Part": [{"id": 1, "file": "/f.mkv",
                "Stream": [{"streamType": "1", "height": 2160, "colorTrc": "smpte2084"}, 5]}]}]}]}}"#;
        let c = container(body).unwrap().unwrap();
        assert_eq!(c.total_size.n(), Some(4));
        let keys: Vec<Option<String>> = c.metadata.0.iter().map(|i| i.rating_key.s()).collect();
        assert_eq!(keys, [None, None, Some("8".into()), Some("9".into())]);
        assert!(c.metadata.0[2].has_media() && c.metadata.0[2].versions().is_empty());
        let v = c.metadata.0[3].versions();
        assert_eq!(
            (
                v[0].media.height,
                v[0].media.dynamic_range,
                v[0].parts.len()
            ),
            (Some(2160), Some(DynamicRange::Hdr10), 1)
        );
        // Not a MediaContainer, or not JSON at all: the caller's error, never "empty".
        assert!(container(b"{}").unwrap().is_none());
        assert!(container(br#"{"MediaContainer": []}"#).unwrap().is_none());
        assert!(container(br#"{"MediaContainer": {"#).is_err());
        assert!(container(b"<html>").is_err());
    }

    #[test]
    fn odd_shapes_are_none_not_panics() {
        let v = json!({"Media": ["x", {"Part": ["y", {"Stream": [1, "z"]}]}], "Guid": "not-an-array", "guid": 7});
        let _ = versions(&v);
        let _ = external_ids(&v);
        assert_eq!(n(&json!({"a": "12"}), "a"), Some(12));
        assert_eq!(b(&json!({"a": "1"}), "a"), Some(true));
    }
}
