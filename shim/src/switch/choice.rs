//! Which version to switch to: eligibility (same edition, smaller or SDR, within the
//! policy's limits) and rank (SDR first, `PREFER_HEIGHTS`, the cheapest audio/subtitle work).

use crate::config::ShimConfig;
use crate::facts::{nominal_height, DynamicRange};
use crate::protocol::{MediaVersion, StreamInfo, StreamKind};

use super::remap::is_bitmap_sub;
use super::{Purpose, StreamMap};

/// The compliant versions of an item for a client that picks its own streams (the
/// daemon's reactive guard moves a client with `playMedia`), best first.
pub fn ranked_versions<'v>(
    versions: &'v [MediaVersion],
    current: &MediaVersion,
    cfg: &ShimConfig,
) -> Vec<&'v MediaVersion> {
    let mut v: Vec<(Rank, &MediaVersion)> = versions
        .iter()
        .filter(|v| eligible(v, current, cfg, Purpose::Protect, None))
        .map(|v| (rank(v, &[], &v.streams, cfg, Purpose::Protect, None), v))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v.into_iter().map(|(_, v)| v).collect()
}

fn edition_key(e: Option<&str>) -> String {
    e.unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

pub(super) fn eligible(
    v: &MediaVersion,
    current: &MediaVersion,
    cfg: &ShimConfig,
    purpose: Purpose,
    target: Option<(u32, u32)>,
) -> bool {
    if v.file == current.file || v.streams.is_empty() {
        return false;
    }
    if edition_key(v.edition.as_deref()) != edition_key(current.edition.as_deref()) {
        return false;
    }
    let (Some(h), Some(dr)) = (v.height, v.dynamic_range) else {
        return false;
    };
    let sdr = dr.is_sdr();
    let nominal = nominal_height(v.width, v.height).unwrap_or(h);
    let cur_nominal = nominal_height(current.width, current.height).unwrap_or(u32::MAX);
    match purpose {
        Purpose::Protect => {
            let hdr_ok = cfg.allow_hdr_fallback && !cfg.fallback_sdr_only;
            let cur_sdr = current.dynamic_range.is_some_and(DynamicRange::is_sdr);
            // A lighter version of the same class stands in for a heavy 1080p remux.
            let limit = cfg.remux_1080_min_bitrate_kbps;
            let heavy = |m: &MediaVersion| m.bitrate_kbps.is_some_and(|b| limit > 0 && b >= limit);
            let lighter = nominal == 1080 && heavy(current) && !heavy(v);
            // By class, like `policy::protected`: a 3840×1600 version is no fallback.
            nominal.max(h) < cfg.max_allowed_height
                && (sdr || hdr_ok)
                && (nominal < cur_nominal
                    || (nominal == cur_nominal && sdr && (!cur_sdr || lighter)))
        }
        Purpose::Waterfall => {
            let fills = target.is_none_or(|(_, th)| h + 8 >= th);
            sdr && nominal < cur_nominal && h >= cfg.waterfall_min_height && fills
        }
    }
}

/// Lower is better.
pub(super) type Rank = (u8, usize, u32, i64, String);

pub(super) fn rank(
    v: &MediaVersion,
    map: &[StreamMap],
    streams: &[StreamInfo],
    cfg: &ShimConfig,
    purpose: Purpose,
    target: Option<(u32, u32)>,
) -> Rank {
    let sdr = v.dynamic_range.is_some_and(DynamicRange::is_sdr);
    let nominal = nominal_height(v.width, v.height).unwrap_or(0);
    let height_rank = match purpose {
        Purpose::Protect => cfg
            .prefer_heights
            .iter()
            .position(|&p| p == nominal)
            .unwrap_or(cfg.prefer_heights.len() + nominal.abs_diff(1080) as usize),
        // The waterfall takes the smallest version that still fills the output; with no
        // output size to fill, the best (largest) smaller version, never the smallest
        // (issue 9 §3: a 1080p job with no size went to 360p).
        Purpose::Waterfall if target.is_some() => nominal as usize,
        Purpose::Waterfall => usize::MAX - nominal as usize,
    };
    let work: u32 = map
        .iter()
        .filter_map(|m| streams.iter().find(|s| s.index == m.to))
        .map(work_cost)
        .sum();
    (
        u8::from(!sdr),
        height_rank,
        work,
        -(v.height.unwrap_or(0) as i64),
        v.media_id.clone(),
    )
}

/// How much audio/subtitle work a stream costs Plex (the original design's risk scores).
fn work_cost(s: &StreamInfo) -> u32 {
    let codec = s.codec.as_deref().unwrap_or_default();
    match s.kind {
        StreamKind::Audio => {
            let c = match codec {
                "truehd" | "dts" | "dca" | "dtsma" | "flac" => 4,
                "eac3" | "ac3" => 1,
                "aac" | "mp3" | "opus" => 0,
                _ => 2,
            };
            let ch = match s.channels.unwrap_or(2) {
                0..=2 => 0,
                3..=6 => 1,
                _ => 2,
            };
            c + ch
        }
        StreamKind::Subtitle if is_bitmap_sub(codec) => 3,
        _ => 0,
    }
}
