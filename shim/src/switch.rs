//! Switch: transcode a ≤1080p SDR version of the same title instead of the 4K HDR one.
//!
//! Rewriting a 4K HDR job still pays for a 4K HEVC 10-bit decode; when the library holds a
//! 1080p SDR version of the same item, transcoding *that file* is cheaper and looks better.
//! The daemon's answer to `lookup_source` carries every version of the item with its streams,
//! so the switch costs no extra round trip.
//!
//! The closest peer compared stream *counts*, kept Plex's 4K output size after swapping to a
//! 1080p file and turned hardware tone-map filters into invalid names (transcoder-wrappers.md
//! §2.14). Here:
//! - every reference to a stream of the swapped input (`-map 0:N`, `[0:N]` pads in every
//!   filter graph, `-map_inlineass`, the per-stream decoder hints before `-i`) is remapped
//!   **by meaning** — type, language, forced flag, subtitle kind, then codec, channels and
//!   default flag — and a used stream without a sound match means no switch;
//! - the output then follows the new source through [`rewrite::plan_with`] in switched
//!   mode: fitted to the version's own size (never scaled back up), tone-map stages removed
//!   for an SDR version, 10-bit formats made 8-bit, Dolby Vision RPU handling dropped.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::sync::Arc;

use serde::Serialize;

use crate::argv::{self, Invocation, Parsed};
use crate::config::ShimConfig;
use crate::edit::{self, Edit};
use crate::facts::{DynamicRange, Origin, SourceFacts};
use crate::filtergraph::{self, Graph, Splice};
use crate::job::{self, Job};
use crate::protocol::{MediaVersion, StreamInfo, StreamKind};
use crate::rewrite;

/// Why a switch was not made (static, for logs and counters).
pub type NoSwitch = &'static str;

/// Why the switch is considered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// A protected (4K / HDR) source: any compliant version will do.
    Protect,
    /// The optional waterfall: a non-protected transcode moved to a smaller version that
    /// still fills the output Plex asked for.
    Waterfall,
}

/// One remapped input stream.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StreamMap {
    pub kind: StreamKind,
    pub from: u32,
    pub to: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_codec: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_codec: Option<Arc<str>>,
}

/// A planned switch.
#[derive(Clone, Debug, PartialEq)]
pub struct Switch {
    /// The version switched to (its streams left out).
    pub version: MediaVersion,
    pub streams: Vec<StreamMap>,
    pub edits: Vec<Edit>,
    /// The output side had to change too (size, tone mapping, bit depth).
    pub output_rewritten: bool,
}

/// A stream selection after the file index: `N`, `a:N`, `v`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sel {
    Abs(u32),
    Typed(StreamKind, u32),
    AllOf(StreamKind),
}

/// Where a stream reference sits in the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Site {
    /// A whole token (`-map`, `-map_inlineass` value): prefix and suffix kept around the
    /// new selection.
    Token {
        at: usize,
        prefix: Vec<u8>,
        suffix: Vec<u8>,
    },
    /// A pad label inside a filter graph token.
    Pad {
        at: usize,
        range: std::ops::Range<usize>,
        prefix: Vec<u8>,
    },
}

struct Ref {
    site: Site,
    sel: Sel,
}

/// Plans a switch for the job's primary input, or says why there is none.
pub fn plan(
    inv: &Invocation<'_>,
    job: &Job,
    versions: &[MediaVersion],
    cfg: &ShimConfig,
    purpose: Purpose,
) -> Result<Switch, NoSwitch> {
    let p = job.primary_input.ok_or("no primary input")?;
    let url_at = inv.inputs[p].url.ok_or("no primary input")?;
    let path = job::file_path(inv.token(url_at));
    let current = versions
        .iter()
        .find(|v| v.file.as_bytes() == path)
        .ok_or("the input is not a version the index knows")?;
    if current.streams.is_empty() {
        return Err("stream details of the playing version are unknown");
    }
    let refs = references(inv, p)?;
    let used = used_streams(&refs, &current.streams)?;
    let target = rewrite::output_target(inv, job);
    let mut best: Option<(Rank, Switch)> = None;
    let mut first_failure: Option<NoSwitch> = None;
    let mut any_candidate = false;
    for v in versions {
        if !eligible(v, current, cfg, purpose, target) {
            continue;
        }
        any_candidate = true;
        let attempt = map_streams(&used, &current.streams, &v.streams)
            .and_then(|map| build(inv, job, p, url_at, &refs, &map, current, v, cfg));
        match attempt {
            Ok(sw) => {
                let r = rank(v, &sw.streams, &v.streams, cfg, purpose, target);
                if best.as_ref().is_none_or(|(b, _)| r < *b) {
                    best = Some((r, sw));
                }
            }
            Err(e) => {
                first_failure.get_or_insert(e);
            }
        }
    }
    match best {
        Some((_, sw)) => Ok(sw),
        None if any_candidate => Err(first_failure.unwrap_or("no compliant version")),
        None => Err("no compliant version of this title"),
    }
}

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

/// The nominal resolution class of a version, as people name them: a 1920×800 scope film is
/// "1080p", like Plex's own `videoResolution`.
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

fn edition_key(e: Option<&str>) -> String {
    e.unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn eligible(
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
type Rank = (u8, usize, u32, i64, String);

fn rank(
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

fn is_bitmap_sub(codec: &str) -> bool {
    matches!(
        codec,
        "pgs" | "hdmv_pgs_subtitle" | "vobsub" | "dvd_subtitle" | "dvdsub" | "dvb_subtitle"
    )
}

/// ISO 639 synonyms that Plex and muxers both use.
fn language_key(l: Option<&str>) -> Option<String> {
    let l = l?.trim().to_ascii_lowercase();
    let l = match l.as_str() {
        "" | "und" | "unk" | "xx" | "zxx" | "mis" => return None,
        "deu" | "de" => "ger",
        "fra" | "fr" => "fre",
        "en" => "eng",
        "es" => "spa",
        "it" => "ita",
        "nld" | "nl" => "dut",
        "zho" | "zh" => "chi",
        "ces" | "cs" => "cze",
        "ja" => "jpn",
        other => other,
    };
    Some(l.to_string())
}

/// Every reference to a stream of input `p`.
fn references(inv: &Invocation<'_>, p: usize) -> Result<Vec<Ref>, NoSwitch> {
    let mut refs = Vec::new();
    for o in inv.all_opts() {
        let name = inv.name(&o);
        let (Some(v), Some(at)) = (inv.value(&o), o.value) else {
            continue;
        };
        match name {
            b"map" | b"map_inlineass" => {
                let (neg, rest) = match v.strip_prefix(b"-") {
                    Some(r) => (true, r),
                    None => (false, v),
                };
                let (body, optional) = match rest.strip_suffix(b"?") {
                    Some(b) => (b, true),
                    None => (rest, false),
                };
                let Some((file, sel)) = split_file(body) else {
                    continue; // `[label]` and other non-stream values
                };
                if file != p {
                    continue;
                }
                let sel = parse_sel(sel)?;
                let mut prefix = Vec::new();
                if neg {
                    prefix.push(b'-');
                }
                prefix.extend_from_slice(p.to_string().as_bytes());
                prefix.push(b':');
                refs.push(Ref {
                    site: Site::Token {
                        at,
                        prefix,
                        suffix: if optional { b"?".to_vec() } else { Vec::new() },
                    },
                    sel,
                });
            }
            b"filter_complex" | b"lavfi" => {
                let g = Graph::parse(v).map_err(|_| "a filter graph does not parse")?;
                for c in &g.chains {
                    for f in &c.filters {
                        for r in &f.inputs {
                            let label = g.text(r);
                            if !filtergraph::is_input_pad(label) {
                                continue;
                            }
                            let Some((file, sel)) = split_file(label) else {
                                continue;
                            };
                            if file != p {
                                continue;
                            }
                            let sel = parse_sel(sel)?;
                            let mut prefix = p.to_string().into_bytes();
                            prefix.push(b':');
                            refs.push(Ref {
                                site: Site::Pad {
                                    at,
                                    range: r.clone(),
                                    prefix,
                                },
                                sel,
                            });
                        }
                    }
                }
            }
            b"filter_complex_script" | b"filter_script" => {
                return Err("a filter script cannot be remapped");
            }
            _ => {}
        }
    }
    Ok(refs)
}

fn split_file(v: &[u8]) -> Option<(usize, &[u8])> {
    let digits = v.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || v.get(digits) != Some(&b':') {
        return None;
    }
    let file = std::str::from_utf8(&v[..digits]).ok()?.parse().ok()?;
    Some((file, &v[digits + 1..]))
}

fn parse_sel(s: &[u8]) -> Result<Sel, NoSwitch> {
    let num = |b: &[u8]| -> Option<u32> {
        if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(b).ok()?.parse().ok()
    };
    if let Some(n) = num(s) {
        return Ok(Sel::Abs(n));
    }
    let kind = |k: &[u8]| match k {
        b"v" | b"V" => Some(StreamKind::Video),
        b"a" => Some(StreamKind::Audio),
        b"s" => Some(StreamKind::Subtitle),
        _ => None,
    };
    let mut parts = s.splitn(2, |&b| b == b':');
    let k = parts.next().and_then(kind);
    match (k, parts.next()) {
        (Some(k), None) => Ok(Sel::AllOf(k)),
        (Some(k), Some(n)) => num(n)
            .map(|n| Sel::Typed(k, n))
            .ok_or("a stream specifier cannot be remapped"),
        _ => Err("a stream specifier cannot be remapped"),
    }
}

fn of_kind(streams: &[StreamInfo], k: StreamKind) -> Vec<&StreamInfo> {
    let mut v: Vec<&StreamInfo> = streams.iter().filter(|s| s.kind == k).collect();
    v.sort_by_key(|s| s.index);
    v
}

/// The absolute indices of the current version's streams the job uses.
fn used_streams(refs: &[Ref], streams: &[StreamInfo]) -> Result<Vec<u32>, NoSwitch> {
    let mut used = Vec::new();
    for r in refs {
        let idx: Vec<u32> = match r.sel {
            Sel::Abs(n) => vec![n],
            Sel::Typed(k, n) => vec![
                of_kind(streams, k)
                    .get(n as usize)
                    .ok_or("the job uses a stream the index does not list")?
                    .index,
            ],
            Sel::AllOf(StreamKind::Video) => of_kind(streams, StreamKind::Video)
                .iter()
                .map(|s| s.index)
                .collect(),
            Sel::AllOf(_) => return Err("the job maps every audio or subtitle stream"),
        };
        for i in idx {
            if !streams.iter().any(|s| s.index == i) {
                return Err("the job uses a stream the index does not list");
            }
            if !used.contains(&i) {
                used.push(i);
            }
        }
    }
    Ok(used)
}

/// Matches every used stream in the sibling by meaning.
fn map_streams(
    used: &[u32],
    current: &[StreamInfo],
    sibling: &[StreamInfo],
) -> Result<Vec<StreamMap>, NoSwitch> {
    let mut out = Vec::new();
    for &i in used {
        let cur = current
            .iter()
            .find(|s| s.index == i)
            .ok_or("the job uses a stream the index does not list")?;
        let to = match_stream(cur, sibling)?;
        out.push(StreamMap {
            kind: cur.kind,
            from: cur.index,
            to: to.index,
            language: cur.language.clone(),
            from_codec: cur.codec.clone(),
            to_codec: to.codec.clone(),
        });
    }
    Ok(out)
}

fn match_stream<'s>(
    cur: &StreamInfo,
    sibling: &'s [StreamInfo],
) -> Result<&'s StreamInfo, NoSwitch> {
    let same_lang = |s: &StreamInfo| {
        language_key(s.language.as_deref()) == language_key(cur.language.as_deref())
    };
    let candidates: Vec<&StreamInfo> = match cur.kind {
        StreamKind::Video => {
            let v = of_kind(sibling, StreamKind::Video);
            return v
                .iter()
                .find(|s| s.default)
                .or(v.first())
                .copied()
                .ok_or("the other version has no video stream");
        }
        StreamKind::Audio => {
            let c: Vec<&StreamInfo> = of_kind(sibling, StreamKind::Audio)
                .into_iter()
                .filter(|s| same_lang(s))
                .collect();
            if c.is_empty() {
                return Err("the other version has no audio track in the language played");
            }
            c
        }
        StreamKind::Subtitle => {
            let bitmap = is_bitmap_sub(cur.codec.as_deref().unwrap_or_default());
            let c: Vec<&StreamInfo> = of_kind(sibling, StreamKind::Subtitle)
                .into_iter()
                .filter(|s| same_lang(s) && s.forced == cur.forced)
                .filter(|s| is_bitmap_sub(s.codec.as_deref().unwrap_or_default()) == bitmap)
                .collect();
            if c.is_empty() {
                return Err("the other version lacks the subtitle shown");
            }
            c
        }
    };
    candidates
        .into_iter()
        .min_by_key(|s| {
            (
                s.channels != cur.channels,
                s.codec != cur.codec,
                s.default != cur.default,
                s.forced != cur.forced,
                s.index,
            )
        })
        .ok_or("no matching stream")
}

/// The decoder hint for a stream of the new version (`None`: let ffmpeg choose).
fn decoder_for(s: &StreamInfo, eae: bool) -> Option<String> {
    let c = s.codec.as_deref()?;
    match (s.kind, c) {
        (StreamKind::Audio, "ac3" | "eac3" | "truehd") if eae => Some(format!("{c}_eae")),
        (
            StreamKind::Video,
            "h264" | "hevc" | "av1" | "vp9" | "vp8" | "mpeg2video" | "mpeg4" | "vc1",
        ) => Some(c.to_string()),
        (
            StreamKind::Audio,
            "aac" | "ac3" | "eac3" | "truehd" | "flac" | "mp3" | "opus" | "dca",
        ) => Some(c.to_string()),
        _ => None,
    }
}

#[allow(clippy::too_many_arguments)]
fn build(
    inv: &Invocation<'_>,
    job: &Job,
    p: usize,
    url_at: usize,
    refs: &[Ref],
    map: &[StreamMap],
    current: &MediaVersion,
    to: &MediaVersion,
    cfg: &ShimConfig,
) -> Result<Switch, NoSwitch> {
    let mut edits: Vec<Edit> = Vec::new();
    // 1. The input itself.
    let url = inv.token(url_at);
    let mut new_url = if url.starts_with(b"file:") {
        b"file:".to_vec()
    } else {
        Vec::new()
    };
    new_url.extend_from_slice(to.file.as_bytes());
    edits.push(Edit::Replace {
        at: url_at,
        with: OsString::from_vec(new_url),
    });

    // 2. Every stream reference.
    let new_sel = |sel: Sel| -> Result<Vec<u8>, NoSwitch> {
        let target = |i: u32| {
            map.iter()
                .find(|m| m.from == i)
                .map(|m| m.to)
                .ok_or("the job uses a stream the index does not list")
        };
        Ok(match sel {
            Sel::Abs(n) => target(n)?.to_string().into_bytes(),
            Sel::Typed(k, n) => {
                let cur = of_kind(&current.streams, k)
                    .get(n as usize)
                    .map(|s| s.index)
                    .ok_or("the job uses a stream the index does not list")?;
                let t = target(cur)?;
                let ord = of_kind(&to.streams, k)
                    .iter()
                    .position(|s| s.index == t)
                    .ok_or("no matching stream")?;
                let k = match k {
                    StreamKind::Video => "v",
                    StreamKind::Audio => "a",
                    StreamKind::Subtitle => "s",
                };
                format!("{k}:{ord}").into_bytes()
            }
            Sel::AllOf(k) => match k {
                StreamKind::Video => b"v".to_vec(),
                _ => return Err("the job maps every audio or subtitle stream"),
            },
        })
    };
    let mut pads: BTreeMap<usize, Vec<Splice>> = BTreeMap::new();
    for r in refs {
        let sel = new_sel(r.sel)?;
        match &r.site {
            Site::Token { at, prefix, suffix } => {
                let mut t = prefix.clone();
                t.extend_from_slice(&sel);
                t.extend_from_slice(suffix);
                edits.push(Edit::Replace {
                    at: *at,
                    with: OsString::from_vec(t),
                });
            }
            Site::Pad { at, range, prefix } => {
                let mut t = prefix.clone();
                t.extend_from_slice(&sel);
                pads.entry(*at).or_default().push(Splice {
                    range: range.clone(),
                    text: t,
                });
            }
        }
    }
    for (at, splices) in pads {
        let text = filtergraph::apply(inv.token(at), &splices);
        edits.push(Edit::Replace {
            at,
            with: OsString::from_vec(text),
        });
    }

    // 3. The decoder hints before `-i`: re-pointed at the new stream, fitted to its codec,
    // or dropped.
    let input = &inv.inputs[p];
    // Plex decodes Dolby audio with its EAE decoders (`eac3_eae` + `-eae_prefix:N`) in every
    // captured job; a Plex job (one with a transcode session) gets them for a Dolby track of
    // the new version even when the old one needed none.
    let eae = job.session.is_some()
        || input.opts.iter().any(|o| {
            inv.name(o) == b"eae_prefix" || inv.value(o).is_some_and(|v| v.ends_with(b"_eae"))
        });
    let prefix_value: Option<Vec<u8>> = input
        .opts
        .iter()
        .find(|o| inv.name(o) == b"eae_prefix")
        .and_then(|o| inv.value(o))
        .map(<[u8]>::to_vec)
        .or_else(|| job.session.as_ref().map(|s| format!("{s}_").into_bytes()));
    let mut hinted: Vec<u32> = Vec::new();
    let mut prefixed: Vec<u32> = Vec::new();
    for o in &input.opts {
        let name = inv.name(o);
        let Some(n) = inv
            .spec(o)
            .filter(|s| !s.is_empty() && s.iter().all(u8::is_ascii_digit))
            .and_then(|s| std::str::from_utf8(s).ok()?.parse::<u32>().ok())
        else {
            continue;
        };
        let drop = |edits: &mut Vec<Edit>| {
            edits.push(Edit::Remove { at: o.at });
            if let Some(v) = o.value {
                edits.push(Edit::Remove { at: v });
            }
        };
        let Some(m) = map.iter().find(|m| m.from == n) else {
            drop(&mut edits);
            continue;
        };
        let stream = to.streams.iter().find(|s| s.index == m.to);
        let respec = |edits: &mut Vec<Edit>| {
            if m.to == n {
                return;
            }
            let mut t = b"-".to_vec();
            t.extend_from_slice(name);
            t.push(b':');
            t.extend_from_slice(m.to.to_string().as_bytes());
            edits.push(Edit::Replace {
                at: o.at,
                with: OsString::from_vec(t),
            });
        };
        match name {
            b"codec" | b"c" => match stream.and_then(|s| decoder_for(s, eae)) {
                Some(d) => {
                    respec(&mut edits);
                    if let Some(v) = o.value.filter(|&v| inv.token(v) != d.as_bytes()) {
                        edits.push(Edit::Replace {
                            at: v,
                            with: d.into(),
                        });
                    }
                    hinted.push(m.to);
                }
                None => drop(&mut edits),
            },
            b"eae_prefix" => {
                if stream
                    .and_then(|s| decoder_for(s, eae))
                    .is_some_and(|d| d.ends_with("_eae"))
                {
                    respec(&mut edits);
                    prefixed.push(m.to);
                } else {
                    drop(&mut edits);
                }
            }
            _ => respec(&mut edits),
        }
    }
    // A used stream of the new version that needs the EAE decoder: its hint and its prefix,
    // whichever is missing.
    if eae && url_at >= 2 {
        let mut add: Vec<OsString> = Vec::new();
        for m in map {
            let Some(s) = to.streams.iter().find(|s| s.index == m.to) else {
                continue;
            };
            let (Some(d), Some(pv)) = (decoder_for(s, true), &prefix_value) else {
                continue;
            };
            if !d.ends_with("_eae") {
                continue;
            }
            if !hinted.contains(&m.to) {
                add.push(format!("-codec:{}", m.to).into());
                add.push(d.into());
            }
            if !prefixed.contains(&m.to) {
                add.push(format!("-eae_prefix:{}", m.to).into());
                add.push(OsString::from_vec(pv.clone()));
            }
        }
        if !add.is_empty() {
            edits.push(Edit::Insert {
                after: url_at - 2,
                tokens: add,
            });
        }
    }

    // 4. Dolby Vision RPU handling has nothing to act on in a version without it.
    if to.dynamic_range != Some(DynamicRange::DolbyVision) {
        for out in &inv.outputs {
            for o in inv.find_in(out, &["bsf"]) {
                let (Some(v), Some(at)) = (inv.value(o), o.value) else {
                    continue;
                };
                let kept: Vec<&[u8]> = v
                    .split(|&b| b == b',')
                    .filter(|f| !f.starts_with(b"dovi_rpu"))
                    .collect();
                if kept.len() == v.split(|&b| b == b',').count() {
                    continue;
                }
                if kept.is_empty() {
                    edits.push(Edit::Remove { at: o.at });
                    edits.push(Edit::Remove { at });
                } else {
                    edits.push(Edit::Replace {
                        at,
                        with: OsString::from_vec(kept.join(&b',')),
                    });
                }
            }
        }
    }

    // 5. The output follows the new source.
    let output = follow_output(inv.tokens, &edits, to, cfg)?;
    let output_rewritten = !output.is_empty();
    for e in output {
        if let Edit::Replace { at, .. } = &e {
            edits.retain(|x| !matches!(x, Edit::Replace { at: a, .. } if a == at));
        }
        edits.push(e);
    }
    let mut version = to.clone();
    version.streams = Vec::new();
    Ok(Switch {
        version,
        streams: map.to_vec(),
        edits,
        output_rewritten,
    })
}

/// The facts of a version, as the index gives them.
pub fn version_facts(v: &MediaVersion) -> SourceFacts {
    let mut f = SourceFacts::empty(Origin::Daemon);
    f.width = v.width;
    f.height = v.height;
    f.dynamic_range = v.dynamic_range;
    f.dv_profile = v.dv_profile;
    f.codec = v
        .streams
        .iter()
        .find(|s| s.kind == StreamKind::Video)
        .and_then(|s| s.codec.as_deref())
        .map(String::from);
    f
}

/// Plans the output edits on the switched command line and expresses them against the
/// original tokens.
fn follow_output(
    tokens: &[OsString],
    edits: &[Edit],
    to: &MediaVersion,
    cfg: &ShimConfig,
) -> Result<Vec<Edit>, NoSwitch> {
    // Which original token every switched token came from. Stage-one edits only replace,
    // remove and insert decoder hints, so inserted tokens anchor to the token before them.
    let mut origin: Vec<(usize, bool)> = Vec::with_capacity(tokens.len() + 4);
    for i in 0..tokens.len() {
        if !edits
            .iter()
            .any(|e| matches!(e, Edit::Remove { at } if *at == i))
        {
            origin.push((i, false));
        }
        for e in edits {
            if let Edit::Insert { after, tokens: t } = e {
                if *after == i {
                    origin.extend(std::iter::repeat_n((i, true), t.len()));
                }
            }
        }
    }
    let switched = edit::apply(tokens, edits);
    let Parsed::Job(inv) = argv::parse(&switched) else {
        return Err("the switched command line does not parse");
    };
    let job = job::classify(&inv);
    let facts = version_facts(to);
    let planned = rewrite::plan_with(&inv, &job, &facts, cfg, rewrite::Mode { switched: true })?
        .unwrap_or_default();
    planned
        .into_iter()
        .map(|e| match e {
            Edit::Replace { at, with } => match origin.get(at) {
                Some(&(o, false)) => Ok(Edit::Replace { at: o, with }),
                _ => Err("the output rewrite touched an added token"),
            },
            Edit::Insert { after, tokens } => match origin.get(after) {
                Some(&(o, _)) => Ok(Edit::Insert { after: o, tokens }),
                None => Err("the output rewrite touched an added token"),
            },
            Edit::Remove { at } => match origin.get(at) {
                Some(&(o, false)) => Ok(Edit::Remove { at: o }),
                _ => Err("the output rewrite touched an added token"),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{decide, Action, Context, Viewer};

    fn st(index: u32, kind: StreamKind, codec: &str, lang: Option<&str>) -> StreamInfo {
        StreamInfo {
            index,
            kind,
            codec: Some(codec.into()),
            language: lang.map(Into::into),
            channels: match kind {
                StreamKind::Audio if codec == "aac" => Some(2),
                StreamKind::Audio => Some(6),
                _ => None,
            },
            default: index <= 1,
            forced: false,
        }
    }

    fn uhd() -> MediaVersion {
        MediaVersion {
            media_id: "41".into(),
            width: Some(3840),
            height: Some(2160),
            dynamic_range: Some(DynamicRange::Hdr10),
            file: "/m/Film (2020)/Film - 2160p.mkv".into(),
            streams: vec![
                st(0, StreamKind::Video, "hevc", None),
                st(1, StreamKind::Audio, "eac3", Some("eng")),
                st(2, StreamKind::Audio, "aac", Some("ger")),
                st(3, StreamKind::Subtitle, "srt", Some("eng")),
            ],
            ..MediaVersion::default()
        }
    }

    /// The 1080p version: German first, English second, a different first track codec.
    fn hd(w: u32, h: u32) -> MediaVersion {
        MediaVersion {
            media_id: "40".into(),
            width: Some(w),
            height: Some(h),
            dynamic_range: Some(DynamicRange::Sdr),
            file: "/m/Film (2020)/Film - 1080p.mkv".into(),
            streams: vec![
                st(0, StreamKind::Video, "h264", None),
                st(1, StreamKind::Audio, "aac", Some("deu")),
                st(2, StreamKind::Audio, "ac3", Some("eng")),
                st(3, StreamKind::Subtitle, "subrip", Some("eng")),
            ],
            ..MediaVersion::default()
        }
    }

    const SW_TONEMAP: &[&str] = &[
        "-codec:0",
        "hevc",
        "-codec:1",
        "eac3_eae",
        "-eae_prefix:1",
        "sess-1_",
        "-analyzeduration",
        "20000000",
        "-i",
        "/m/Film (2020)/Film - 2160p.mkv",
        "-progressurl",
        "http://127.0.0.1:32400/video/:/transcode/session/sess-1/u/progress",
        "-filter_complex",
        "[0:0]scale=w=3840:h=2160:force_divisible_by=4[0];[0]format=p010,tonemap=mobius[1];[1]format=pix_fmts=nv12[2]",
        "-map",
        "[2]",
        "-codec:0",
        "libx264",
        "-maxrate:0",
        "8000k",
        "-filter_complex",
        "[0:1] aresample=async=1:ochl='stereo'[3]",
        "-map",
        "[3]",
        "-codec:1",
        "aac",
        "-f",
        "dash",
        "dash",
    ];

    fn toks(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    fn run(args: &[&str], versions: &[MediaVersion], cfg: &ShimConfig) -> crate::policy::Decision {
        let t = toks(args);
        let Parsed::Job(inv) = argv::parse(&t) else {
            panic!("parse")
        };
        let job = job::classify(&inv);
        let facts = version_facts(&versions[0]);
        decide(&Context {
            inv: &inv,
            job: &job,
            facts: Some(&facts),
            versions,
            viewer: &Viewer::default(),
            config: cfg,
        })
    }

    fn switched(args: &[&str], d: &crate::policy::Decision) -> Vec<String> {
        let Action::Switch(sw) = &d.action else {
            panic!("expected a switch, got {d:?}")
        };
        edit::apply(&toks(args), &sw.edits)
            .iter()
            .map(|t| t.to_string_lossy().into_owned())
            .collect()
    }

    fn after<'a>(argv: &'a [String], opt: &str) -> Vec<&'a str> {
        argv.windows(2)
            .filter(|w| w[0] == opt)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn switches_to_the_sdr_version_and_remaps_by_meaning() {
        let cfg = ShimConfig::default();
        let d = run(SW_TONEMAP, &[uhd(), hd(1920, 1080)], &cfg);
        assert_eq!(d.reason, "protected source switched to a compliant version");
        let a = switched(SW_TONEMAP, &d);
        assert_eq!(after(&a, "-i"), ["/m/Film (2020)/Film - 1080p.mkv"]);
        // Video decoder hint fits the new codec; the English track moved from 1 to 2 and
        // keeps the EAE decoder with Plex's prefix.
        assert_eq!(after(&a, "-codec:0")[0], "h264");
        assert_eq!(after(&a, "-codec:2"), ["ac3_eae"]);
        assert_eq!(after(&a, "-eae_prefix:2"), ["sess-1_"]);
        assert!(after(&a, "-codec:1").iter().all(|v| *v == "aac"));
        let graphs = after(&a, "-filter_complex");
        assert_eq!(
            graphs[0],
            "[0:0]scale=w=1920:h=1080:force_divisible_by=4[0];[0]format=nv12,null[1];[1]format=pix_fmts=nv12[2]"
        );
        assert!(graphs[1].starts_with("[0:2] aresample"), "{}", graphs[1]);
        let Action::Switch(sw) = &d.action else {
            unreachable!()
        };
        assert!(sw.output_rewritten);
        assert_eq!(
            sw.streams
                .iter()
                .map(|m| (m.from, m.to))
                .collect::<Vec<_>>(),
            [(0, 0), (1, 2)]
        );
    }

    #[test]
    fn a_scope_version_is_not_stretched_or_enlarged() {
        let d = run(SW_TONEMAP, &[uhd(), hd(1920, 800)], &ShimConfig::default());
        let a = switched(SW_TONEMAP, &d);
        assert!(after(&a, "-filter_complex")[0].starts_with("[0:0]scale=w=1920:h=800:"));
        let mut small = hd(1280, 720);
        small.file = "/m/Film (2020)/Film - 720p.mkv".into();
        let d = run(SW_TONEMAP, &[uhd(), small], &ShimConfig::default());
        let a = switched(SW_TONEMAP, &d);
        assert!(after(&a, "-filter_complex")[0].starts_with("[0:0]scale=w=1280:h=720:"));
    }

    #[test]
    fn missing_language_or_subtitle_means_no_switch() {
        let cfg = ShimConfig::default();
        let mut no_eng = hd(1920, 1080);
        no_eng.streams.retain(|s| s.index != 2);
        let d = run(SW_TONEMAP, &[uhd(), no_eng], &cfg);
        assert_eq!(d.action.name(), "rewrite");
        assert_eq!(
            d.no_switch,
            Some("the other version has no audio track in the language played")
        );

        let mut with_sub = toks(SW_TONEMAP);
        with_sub.splice(
            with_sub.len() - 1..with_sub.len() - 1,
            toks(&["-map", "0:3", "-codec:2", "ass"]),
        );
        let args: Vec<String> = with_sub
            .iter()
            .map(|t| t.to_string_lossy().into_owned())
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut no_sub = hd(1920, 1080);
        no_sub.streams.retain(|s| s.kind != StreamKind::Subtitle);
        let d = run(&args, &[uhd(), no_sub], &cfg);
        assert_eq!(
            d.no_switch,
            Some("the other version lacks the subtitle shown")
        );
        // With the subtitle present it maps 3 -> 3.
        let d = run(&args, &[uhd(), hd(1920, 1080)], &cfg);
        let a = switched(&args, &d);
        assert!(after(&a, "-map").contains(&"0:3"));

        let strict = ShimConfig {
            kill_on_no_fallback_media: true,
            ..ShimConfig::default()
        };
        let mut no_eng = hd(1920, 1080);
        no_eng.streams.retain(|s| s.index != 2);
        assert_eq!(
            run(SW_TONEMAP, &[uhd(), no_eng], &strict).action,
            Action::Refuse {
                scenario: "no_fallback_media"
            }
        );
    }

    #[test]
    fn editions_heights_and_hdr_rules() {
        let cfg = ShimConfig::default();
        let mut cut = hd(1920, 1080);
        cut.edition = Some("Director's Cut".into());
        let d = run(SW_TONEMAP, &[uhd(), cut], &cfg);
        assert_eq!(d.no_switch, Some("no compliant version of this title"));

        let mut hdr = hd(1920, 1080);
        hdr.dynamic_range = Some(DynamicRange::Hdr10);
        assert_eq!(
            run(SW_TONEMAP, &[uhd(), hdr.clone()], &cfg).action.name(),
            "rewrite"
        );
        let lenient = ShimConfig {
            fallback_sdr_only: false,
            allow_hdr_fallback: true,
            ..ShimConfig::default()
        };
        let d = run(SW_TONEMAP, &[uhd(), hdr], &lenient);
        let a = switched(SW_TONEMAP, &d);
        // An HDR version keeps (here: Plex's own) tone mapping.
        assert!(after(&a, "-filter_complex")[0].contains("tonemap=mobius"));

        // PREFER_HEIGHTS decides between two SDR versions.
        let mut small = hd(1280, 720);
        small.file = "/m/Film (2020)/Film - 720p.mkv".into();
        small.media_id = "39".into();
        let d = run(SW_TONEMAP, &[uhd(), hd(1920, 1080), small.clone()], &cfg);
        let Action::Switch(sw) = &d.action else {
            panic!()
        };
        assert_eq!(sw.version.media_id, "40");
        let prefer_720 = ShimConfig {
            prefer_heights: vec![720, 1080],
            ..ShimConfig::default()
        };
        let d = run(SW_TONEMAP, &[uhd(), hd(1920, 1080), small], &prefer_720);
        let Action::Switch(sw) = &d.action else {
            panic!()
        };
        assert_eq!(sw.version.media_id, "39");
    }

    #[test]
    fn dolby_vision_rpu_handling_goes_with_a_non_dv_version() {
        let mut args = SW_TONEMAP.to_vec();
        let at = args.iter().position(|a| *a == "-maxrate:0").unwrap();
        args.splice(at..at, ["-bsf:0", "dovi_rpu=strip=1"]);
        let mut dv = uhd();
        dv.dynamic_range = Some(DynamicRange::DolbyVision);
        dv.dv_profile = Some(8);
        let d = run(&args, &[dv, hd(1920, 1080)], &ShimConfig::default());
        let a = switched(&args, &d);
        assert!(!a.iter().any(|t| t.contains("dovi_rpu")), "{a:?}");
        assert!(!a.iter().any(|t| t == "-bsf:0"));
    }

    #[test]
    fn waterfall_only_when_asked_and_only_if_the_output_is_filled() {
        let mut full = hd(1920, 1080);
        full.file = "/m/Film (2020)/Film - 2160p.mkv".into(); // the playing file
        let mut small = hd(1280, 720);
        small.file = "/m/Film (2020)/Film - 720p.mkv".into();
        small.media_id = "39".into();
        let args: Vec<&str> = SW_TONEMAP
            .iter()
            .map(|a| {
                if a.starts_with("[0:0]scale") {
                    "[0:0]scale=w=1280:h=720:force_divisible_by=4[0];[0]format=pix_fmts=yuv420p|nv12[2]"
                } else {
                    a
                }
            })
            .collect();
        let off = ShimConfig::default();
        assert_eq!(
            run(&args, &[full.clone(), small.clone()], &off).reason,
            "source not protected"
        );
        let on = ShimConfig {
            waterfall: true,
            ..ShimConfig::default()
        };
        let d = run(&args, &[full.clone(), small.clone()], &on);
        assert_eq!(d.reason, "waterfall: a smaller version fills the output");
        // A 1080p output is not filled by a 720p version.
        let d = run(SW_TONEMAP, &[full, small], &on);
        assert_eq!(d.reason, "source not protected");
    }

    #[test]
    fn unsupported_references_mean_no_switch() {
        let mut args = SW_TONEMAP.to_vec();
        let n = args.len();
        args.splice(n - 1..n - 1, ["-map", "0:m:language:eng"]);
        let d = run(&args, &[uhd(), hd(1920, 1080)], &ShimConfig::default());
        assert_eq!(d.no_switch, Some("a stream specifier cannot be remapped"));
    }

    /// SW_TONEMAP with no size anywhere: `-map 0:0 -codec:0 libx264`, no graph.
    fn no_size_args() -> Vec<&'static str> {
        vec![
            "-codec:0",
            "hevc",
            "-i",
            "/m/Film (2020)/Film - 2160p.mkv",
            "-map",
            "0:0",
            "-codec:0",
            "libx264",
            "-map",
            "0:1",
            "-codec:1",
            "aac",
            "-f",
            "dash",
            "dash",
        ]
    }

    #[test]
    fn waterfall_with_no_output_size_takes_the_best_smaller_version() {
        let mut full = hd(1920, 1080);
        full.file = "/m/Film (2020)/Film - 2160p.mkv".into(); // the playing file
        let version = |w, h, id: &str| {
            let mut v = hd(w, h);
            v.file = format!("/m/Film (2020)/Film - {h}p.mkv");
            v.media_id = id.into();
            v
        };
        let on = ShimConfig {
            waterfall: true,
            ..ShimConfig::default()
        };
        let versions = [
            full,
            version(640, 360, "36"),
            version(1280, 720, "39"),
            version(854, 480, "38"),
        ];
        let d = run(&no_size_args(), &versions, &on);
        let Action::Switch(sw) = &d.action else {
            panic!("expected a switch, got {d:?}")
        };
        assert_eq!(sw.version.height, Some(720), "not the 360p one");
    }

    #[test]
    fn a_4k_scope_version_is_no_fallback_and_a_heavy_remux_takes_a_lighter_one() {
        // A 3840×1600 SDR version is 4K to decode: not a compliant stand-in for 4K HDR.
        let mut scope = hd(3840, 1600);
        scope.file = "/m/Film (2020)/Film - 2160p scope SDR.mkv".into();
        let d = run(SW_TONEMAP, &[uhd(), scope], &ShimConfig::default());
        assert_eq!(d.action.name(), "rewrite", "{d:?}");
        // REMUX_1080_MIN_BITRATE_KBPS: a heavy 1080p SDR remux is protected and switches
        // to a lighter 1080p version.
        let mut remux = hd(1920, 1080);
        remux.file = "/m/Film (2020)/Film - 2160p.mkv".into(); // the playing file
        remux.bitrate_kbps = Some(35_000);
        let mut light = hd(1920, 1080);
        light.file = "/m/Film (2020)/Film - 1080p web.mkv".into();
        light.media_id = "42".into();
        light.bitrate_kbps = Some(8_000);
        let args = no_size_args();
        let off = ShimConfig::default();
        assert_eq!(
            run(&args, &[remux.clone(), light.clone()], &off).reason,
            "source not protected"
        );
        let on = ShimConfig {
            remux_1080_min_bitrate_kbps: 25_000,
            ..ShimConfig::default()
        };
        let d = run(&args, &[remux, light], &on);
        let Action::Switch(sw) = &d.action else {
            panic!("expected a switch, got {d:?}")
        };
        assert_eq!(sw.version.media_id, "42");
    }
}
