//! What we know about the video being transcoded, and where that knowledge came from.
//!
//! The arguments alone rarely show whether a source is 4K or HDR: Plex passes the *target*
//! size, and a 2160p HDR10 source can arrive with no tone-map filter at all
//! (`../shared/reference/transcoder-args.md` §0.1). So facts come, best first, from the
//! daemon's library index, a native header probe of the file, and only then from weak hints
//! in the file name or the arguments. Every fact records its origin so logs and `explain`
//! can show how much to trust a decision.

use serde::{Deserialize, Serialize};

/// The dynamic range of a video stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DynamicRange {
    Sdr,
    Hdr10,
    Hdr10plus,
    Hlg,
    DolbyVision,
}

impl DynamicRange {
    pub fn is_sdr(self) -> bool {
        self == DynamicRange::Sdr
    }
    pub fn as_str(self) -> &'static str {
        match self {
            DynamicRange::Sdr => "sdr",
            DynamicRange::Hdr10 => "hdr10",
            DynamicRange::Hdr10plus => "hdr10plus",
            DynamicRange::Hlg => "hlg",
            DynamicRange::DolbyVision => "dolby_vision",
        }
    }
}

/// Where the facts came from, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Handed in by the caller (`explain --source-json`).
    Given,
    /// The daemon's library index.
    Daemon,
    /// The shim's own header probe of the file.
    Probe,
    /// Tokens in the file name (`2160p`, `HDR`, `DV`).
    Filename,
    /// Hints in the arguments (`tonemap`, `p010`, `dovi_rpu=strip`, a decoder name).
    Argv,
}

impl Origin {
    /// Weak origins are guesses, not measurements.
    pub fn is_weak(self) -> bool {
        matches!(self, Origin::Filename | Origin::Argv)
    }
}

/// The facts of the video stream of one source file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceFacts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bit_depth: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_range: Option<DynamicRange>,
    /// Dolby Vision profile (5, 7, 8 …) when `dynamic_range` is Dolby Vision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dv_profile: Option<u8>,
    /// Dolby Vision with an HDR10 (or SDR/HLG) compatible base layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dv_base_layer_compatible: Option<bool>,
    /// Video codec, when known (`hevc`, `h264`, `av1` …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Origin>,
}

impl SourceFacts {
    pub fn empty(from: Origin) -> SourceFacts {
        SourceFacts {
            width: None,
            height: None,
            bit_depth: None,
            dynamic_range: None,
            dv_profile: None,
            dv_base_layer_compatible: None,
            codec: None,
            from: Some(from),
        }
    }

    /// Enough is known to decide: a height and a dynamic range.
    pub fn is_decidable(&self) -> bool {
        self.height.is_some() && self.dynamic_range.is_some()
    }

    /// Dolby Vision that no tone mapper we can emit understands: profile 5 (IPTPQc2, no
    /// backward-compatible base layer). Profiles 7/8 carry an HDR10/HLG/SDR base layer
    /// that Plex tone maps like HDR10 (forum, transcoder-args.md §5).
    pub fn is_untonemappable_dv(&self) -> bool {
        self.dynamic_range == Some(DynamicRange::DolbyVision)
            && (self.dv_profile == Some(5) || self.dv_base_layer_compatible == Some(false))
    }
}

/// The nominal resolution class of a picture, as people name them: a 1920×800 scope film is
/// "1080p", like Plex's own `videoResolution`. The policy protects by it and the switch
/// chooses versions by it.
pub fn nominal_height(width: Option<u32>, height: Option<u32>) -> Option<u32> {
    let h = height?;
    let w = width.unwrap_or(h * 16 / 9);
    Some(match () {
        _ if w >= 3200 || h >= 1800 => 2160,
        _ if w >= 2200 || h >= 1300 => 1440,
        _ if w >= 1600 || h >= 900 => 1080,
        _ if w >= 1100 || h >= 650 => 720,
        _ if h >= 540 => 576,
        _ if h >= 400 => 480,
        _ => h.min(360),
    })
}

/// Facts from the words of a file name. Only whole tokens count, and an explicit resolution
/// (`2160p`, `1080p`) wins over a bare number in a title ("Apollo 1080 (2020) - 720p" is
/// 720p, not 1080p: the peer's W15 bug).
pub fn from_filename(path: &[u8]) -> Option<SourceFacts> {
    let name = match path.iter().rposition(|&b| b == b'/') {
        Some(p) => &path[p + 1..],
        None => path,
    };
    let lower: Vec<u8> = name.iter().map(u8::to_ascii_lowercase).collect();
    let words: Vec<&[u8]> = lower
        .split(|b| !b.is_ascii_alphanumeric() && *b != b'+')
        .filter(|w| !w.is_empty())
        .collect();
    let mut facts = SourceFacts::empty(Origin::Filename);
    let mut resolution: Option<u32> = None;
    let (mut hdr10, mut hdr10p, mut hlg, mut dv, mut sdr) = (false, false, false, false, false);
    for w in &words {
        match *w {
            b"2160p" | b"4k" | b"uhd" | b"2160" => resolution = resolution.or(Some(2160)),
            b"4320p" | b"8k" => resolution = resolution.or(Some(4320)),
            b"1440p" => resolution = resolution.or(Some(1440)),
            b"1080p" | b"1080i" => resolution = resolution.or(Some(1080)),
            b"720p" => resolution = resolution.or(Some(720)),
            b"576p" | b"576i" => resolution = resolution.or(Some(576)),
            b"480p" | b"480i" => resolution = resolution.or(Some(480)),
            b"hdr" | b"hdr10" => hdr10 = true,
            b"hdr10+" | b"hdr10plus" => hdr10p = true,
            b"hlg" => hlg = true,
            b"dv" | b"dovi" | b"dolbyvision" => dv = true,
            b"sdr" => sdr = true,
            _ => {}
        }
    }
    if lower
        .windows(12)
        .any(|w| w == b"dolby vision" || w == b"dolby.vision")
    {
        dv = true;
    }
    facts.height = resolution;
    facts.dynamic_range = if dv {
        Some(DynamicRange::DolbyVision)
    } else if hdr10p {
        Some(DynamicRange::Hdr10plus)
    } else if hdr10 {
        Some(DynamicRange::Hdr10)
    } else if hlg {
        Some(DynamicRange::Hlg)
    } else if sdr {
        Some(DynamicRange::Sdr)
    } else {
        None
    };
    if sdr && (dv || hdr10 || hdr10p || hlg) {
        // "The DV Diaries SDR.mkv": contradictory words prove nothing.
        facts.dynamic_range = None;
    }
    if facts.height.is_none() && facts.dynamic_range.is_none() {
        return None;
    }
    Some(facts)
}

/// Codecs that in practice never carry HDR nor exceed 1080 lines (DVD, broadcast SD/HD,
/// old AVI/WMV rips). A decoder hint naming one of them is a usable weak fact.
pub fn is_legacy_sdr_codec(codec: &[u8]) -> bool {
    matches!(
        codec,
        b"mpeg1video"
            | b"mpeg2video"
            | b"mpeg4"
            | b"msmpeg4v1"
            | b"msmpeg4v2"
            | b"msmpeg4v3"
            | b"msmpeg4"
            | b"wmv1"
            | b"wmv2"
            | b"wmv3"
            | b"vc1"
            | b"h263"
            | b"flv1"
            | b"flv"
            | b"theora"
            | b"vp8"
            | b"mjpeg"
            | b"rv10"
            | b"rv20"
            | b"rv30"
            | b"rv40"
            | b"cinepak"
            | b"indeo3"
            | b"indeo5"
            | b"svq3"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str) -> Option<SourceFacts> {
        from_filename(name.as_bytes())
    }

    #[test]
    fn resolution_tokens() {
        assert_eq!(f("/m/Movie.2160p.mkv").unwrap().height, Some(2160));
        assert_eq!(
            f("/m/Apollo 1080 (2020) - 720p.mkv").unwrap().height,
            Some(720)
        );
        assert!(f("/m/Blade Runner 2049 (2017).mkv").is_none());
        assert_eq!(
            f("/m/x [Remux-2160p][10bit][HDR].mkv").unwrap().height,
            Some(2160)
        );
    }

    #[test]
    fn dynamic_range_tokens() {
        let dr = |n: &str| f(n).and_then(|x| x.dynamic_range);
        assert_eq!(dr("a.2160p.DV.HDR10.mkv"), Some(DynamicRange::DolbyVision));
        assert_eq!(dr("a 2160p HDR10+.mkv"), Some(DynamicRange::Hdr10plus));
        assert_eq!(dr("a 1080p SDR.mkv"), Some(DynamicRange::Sdr));
        assert_eq!(dr("The DV Diaries SDR.mkv"), None);
        assert_eq!(
            dr("a Dolby Vision 2160p.mkv"),
            Some(DynamicRange::DolbyVision)
        );
        assert_eq!(dr("Tonemap Documentary 1080p.mkv"), None);
    }

    #[test]
    fn only_the_file_name_counts() {
        assert!(f("/media/4K Movies/Film (2020).mkv").is_none());
    }

    #[test]
    fn dv_profile_5_is_untonemappable() {
        let mut s = SourceFacts::empty(Origin::Probe);
        s.dynamic_range = Some(DynamicRange::DolbyVision);
        s.dv_profile = Some(8);
        assert!(!s.is_untonemappable_dv());
        s.dv_profile = Some(5);
        assert!(s.is_untonemappable_dv());
    }
}
