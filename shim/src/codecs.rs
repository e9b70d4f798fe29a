//! Names of codecs, encoders, decoders and filters, and what kind of stream each implies.
//!
//! The encoder's name is the most reliable type signal in a Plex command line: `-codec:0
//! libx264` is a video encode whatever stream 0 was. Plex also uses private names
//! (`eac3_eae`, `aac_lc`) and hardware families (`*_vaapi`, `*_nvenc`); transcoder-args.md
//! §3.1, §4.1 and §6 list the ones seen.

/// The kind of stream a codec name implies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Video,
    Audio,
    Subtitle,
    /// `copy`: keeps the stream's own type.
    Copy,
    Unknown,
}

const VIDEO: &[&str] = &[
    "av1",
    "bmp",
    "cinepak",
    "dnxhd",
    "dvvideo",
    "ffv1",
    "flv",
    "flv1",
    "gif",
    "h261",
    "h263",
    "h263p",
    "h264",
    "hevc",
    "huffyuv",
    "libaom-av1",
    "libdav1d",
    "libkvazaar",
    "libopenh264",
    "librav1e",
    "libsvtav1",
    "libtheora",
    "libvpx",
    "libvpx-vp9",
    "libwebp",
    "libx264",
    "libx264rgb",
    "libx265",
    "libxvid",
    "ljpeg",
    "mjpeg",
    "mpeg1video",
    "mpeg2video",
    "mpeg4",
    "msmpeg4",
    "msmpeg4v2",
    "msmpeg4v3",
    "png",
    "prores",
    "prores_aw",
    "prores_ks",
    "qtrle",
    "rawvideo",
    "theora",
    "tiff",
    "utvideo",
    "vc1",
    "vp8",
    "vp9",
    "wmv1",
    "wmv2",
    "wmv3",
];

const AUDIO: &[&str] = &[
    "aac",
    "aac_lc",
    "ac3",
    "alac",
    "dca",
    "dts",
    "eac3",
    "flac",
    "libfdk_aac",
    "libmp3lame",
    "libopus",
    "libvorbis",
    "mlp",
    "mp2",
    "mp3",
    "opus",
    "truehd",
    "vorbis",
    "wavpack",
];

const SUBTITLE: &[&str] = &[
    "ass",
    "dvb_subtitle",
    "dvbsub",
    "dvd_subtitle",
    "dvdsub",
    "hdmv_pgs_subtitle",
    "mov_text",
    "pgssub",
    "srt",
    "ssa",
    "subrip",
    "text",
    "ttml",
    "webvtt",
];

/// Hardware encoder/decoder families: all video.
const HW_SUFFIXES: &[&str] = &[
    "_vaapi",
    "_nvenc",
    "_cuvid",
    "_qsv",
    "_videotoolbox",
    "_amf",
    "_v4l2m2m",
    "_mf",
    "_omx",
    "_rkmpp",
    "_vulkan",
    "_mediacodec",
];

/// Classifies a codec, encoder or decoder name.
pub fn classify(name: &[u8]) -> Class {
    let Ok(name) = std::str::from_utf8(name) else {
        return Class::Unknown;
    };
    if name == "copy" {
        return Class::Copy;
    }
    if VIDEO.contains(&name) || HW_SUFFIXES.iter().any(|s| name.ends_with(s)) {
        return Class::Video;
    }
    if AUDIO.contains(&name) || name.starts_with("pcm_") || name.ends_with("_eae") {
        return Class::Audio;
    }
    if SUBTITLE.contains(&name) {
        return Class::Subtitle;
    }
    Class::Unknown
}

/// Audio filters that can appear in a Plex audio graph (`[0:1] aresample=…[2]`).
pub fn is_audio_filter(name: &[u8]) -> bool {
    matches!(
        name,
        b"aresample"
            | b"aformat"
            | b"amix"
            | b"amerge"
            | b"anull"
            | b"apad"
            | b"atrim"
            | b"asetpts"
            | b"asplit"
            | b"atempo"
            | b"adelay"
            | b"acompressor"
            | b"alimiter"
            | b"loudnorm"
            | b"dynaudnorm"
            | b"volume"
            | b"pan"
            | b"join"
            | b"channelmap"
            | b"channelsplit"
            | b"highpass"
            | b"lowpass"
            | b"equalizer"
            | b"ebur128"
            | b"silencedetect"
            | b"silenceremove"
    )
}

/// Encoders that write HEVC or AV1, the two codecs that can carry a Dolby Vision RPU.
pub fn carries_dv_rpu(encoder: &[u8]) -> bool {
    let Ok(e) = std::str::from_utf8(encoder) else {
        return false;
    };
    e == "libx265"
        || e == "hevc"
        || e.starts_with("hevc_")
        || e.starts_with("av1")
        || e == "libsvtav1"
        || e == "libaom-av1"
        || e == "librav1e"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted() {
        for t in [VIDEO, AUDIO, SUBTITLE] {
            for w in t.windows(2) {
                assert!(w[0] < w[1], "{} before {}", w[0], w[1]);
            }
        }
    }

    #[test]
    fn classes() {
        assert_eq!(classify(b"libx264"), Class::Video);
        assert_eq!(classify(b"hevc_vaapi"), Class::Video);
        assert_eq!(classify(b"h264_nvenc"), Class::Video);
        assert_eq!(classify(b"eac3_eae"), Class::Audio);
        assert_eq!(classify(b"pcm_s16le"), Class::Audio);
        assert_eq!(classify(b"ass"), Class::Subtitle);
        assert_eq!(classify(b"copy"), Class::Copy);
        assert_eq!(classify(b"\xff"), Class::Unknown);
    }
}
