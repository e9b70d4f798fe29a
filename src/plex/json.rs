//! Reading Plex's JSON as it really is: ids that are strings in one endpoint and numbers in
//! another (`ratingKey: "55"`, `Media.id: 46`), booleans as `true`, `1` or `"1"`, arrays that
//! are absent when empty, `Guid`/`guid` capitalisation that varies (apis.md §1.0, §1.5).
//! Nothing here panics on an odd shape: a missing or mistyped field is `None`.

use downshiftarr_shim::facts::DynamicRange;
use downshiftarr_shim::protocol::{MediaVersion, StreamInfo, StreamKind};
use serde_json::Value;

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

/// A boolean field, accepting `1`/`0` and `"1"`/`"0"`.
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

/// Parses every GUID form of apis.md §1.5: the new `Guid[]` array and the legacy
/// `com.plexapp.agents.*` strings (`?lang=` stripped, HAMA `tvdb-`/`anidb-` prefixes).
pub fn external_ids(item: &Value) -> ExternalIds {
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
    for key in ["Guid", "guid"] {
        if let Some(a) = item.get(key).and_then(Value::as_array) {
            for g in a {
                if let Some(id) = s(g, "id") {
                    add(&id);
                }
            }
        }
    }
    if let Some(g) = s(item, "guid") {
        add(&g);
    }
    ids
}

/// The dynamic range of a video stream (apis.md §1.4).
pub fn dynamic_range(video: &Value) -> Option<DynamicRange> {
    if b(video, "DOVIPresent") == Some(true) {
        return Some(DynamicRange::DolbyVision);
    }
    let title = s(video, "displayTitle").unwrap_or_default()
        + &s(video, "extendedDisplayTitle").unwrap_or_default();
    match s(video, "colorTrc").as_deref() {
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
    let edition = s(item, "editionTitle");
    arr(item, "Media")
        .iter()
        .map(|m| {
            let mut v = Version {
                media: MediaVersion {
                    media_id: s(m, "id").unwrap_or_default(),
                    width: n(m, "width").and_then(|x| u32::try_from(x).ok()),
                    height: n(m, "height").and_then(|x| u32::try_from(x).ok()),
                    bitrate_kbps: n(m, "bitrate").and_then(|x| u32::try_from(x).ok()),
                    container: s(m, "container").map(Into::into),
                    edition: edition.clone().map(Into::into),
                    ..MediaVersion::default()
                },
                video_codec: s(m, "videoCodec"),
                ..Version::default()
            };
            for p in arr(m, "Part") {
                let streams: Vec<StreamInfo> = arr(p, "Stream")
                    .iter()
                    .filter_map(|st| {
                        let kind = match n(st, "streamType")? {
                            1 => StreamKind::Video,
                            2 => StreamKind::Audio,
                            3 => StreamKind::Subtitle,
                            _ => return None,
                        };
                        Some(StreamInfo {
                            index: n(st, "index")
                                .and_then(|x| u32::try_from(x).ok())
                                .unwrap_or(0),
                            kind,
                            codec: s(st, "codec").map(Into::into),
                            language: s(st, "languageCode")
                                .or_else(|| s(st, "languageTag"))
                                .map(Into::into),
                            channels: n(st, "channels").and_then(|x| u32::try_from(x).ok()),
                            default: b(st, "default").unwrap_or(false),
                            forced: b(st, "forced").unwrap_or(false),
                        })
                    })
                    .collect();
                if let Some(video) = arr(p, "Stream")
                    .iter()
                    .find(|st| n(st, "streamType") == Some(1))
                {
                    v.media.dynamic_range = v.media.dynamic_range.or(dynamic_range(video));
                    v.media.bit_depth = v
                        .media
                        .bit_depth
                        .or(n(video, "bitDepth").and_then(|x| u8::try_from(x).ok()));
                    v.media.dv_profile = v
                        .media
                        .dv_profile
                        .or(n(video, "DOVIProfile").and_then(|x| u8::try_from(x).ok()));
                    if b(video, "DOVIPresent") == Some(true) {
                        let compat = n(video, "DOVIBLCompatID");
                        v.media.dv_base_layer_compatible = Some(
                            b(video, "DOVIBLPresent").unwrap_or(true)
                                && matches!(compat, Some(1 | 2 | 4 | 6))
                                && v.media.dv_profile != Some(5),
                        );
                    }
                    v.media.width = v
                        .media
                        .width
                        .or(n(video, "width").and_then(|x| u32::try_from(x).ok()));
                    v.media.height = v
                        .media
                        .height
                        .or(n(video, "height").and_then(|x| u32::try_from(x).ok()));
                }
                if let Some(file) = s(p, "file") {
                    v.parts
                        .push((s(p, "id").unwrap_or_default(), file, streams));
                }
            }
            v.media.file = v.parts.first().map(|p| p.1.clone()).unwrap_or_default();
            v
        })
        .collect()
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

    #[test]
    fn odd_shapes_are_none_not_panics() {
        let v = json!({"Media": ["x", {"Part": ["y", {"Stream": [1, "z"]}]}], "Guid": "not-an-array", "guid": 7});
        let _ = versions(&v);
        let _ = external_ids(&v);
        assert_eq!(n(&json!({"a": "12"}), "a"), Some(12));
        assert_eq!(b(&json!({"a": "1"}), "a"), Some(true));
    }
}
