//! The input side of a switch: every reference to a stream of the swapped input (`-map`,
//! `[N:M]` pads in every filter graph, `-map_inlineass`) found once, each used stream matched
//! in the other version **by meaning** (type, language, forced flag, subtitle kind, then
//! channels, codec, default flag), and the edits that re-point them, the decoder hints before
//! `-i` and Dolby Vision bitstream filters included.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use crate::argv::Invocation;
use crate::edit::Edit;
use crate::facts::DynamicRange;
use crate::filtergraph::{self, Graph, Splice};
use crate::job::Job;
use crate::protocol::{MediaVersion, StreamInfo, StreamKind};

use super::{NoSwitch, StreamMap};

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

/// Every reference to a stream of the primary input, found once per decision.
pub(super) struct Refs {
    /// The primary input's index and the token of its URL.
    pub(super) input: usize,
    pub(super) url_at: usize,
    refs: Vec<Ref>,
}

pub(super) fn is_bitmap_sub(codec: &str) -> bool {
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

/// Every reference to a stream of input `p` (its URL at token `url_at`).
pub(super) fn references(inv: &Invocation<'_>, p: usize, url_at: usize) -> Result<Refs, NoSwitch> {
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
    Ok(Refs {
        input: p,
        url_at,
        refs,
    })
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
pub(super) fn used_streams(refs: &Refs, streams: &[StreamInfo]) -> Result<Vec<u32>, NoSwitch> {
    let mut used = Vec::new();
    for r in &refs.refs {
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
pub(super) fn map_streams(
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

/// The input side of a switch: the input's path, every stream reference, the decoder hints
/// before `-i` and Dolby Vision bitstream filters, as edits of the original tokens.
pub(super) fn edits(
    inv: &Invocation<'_>,
    job: &Job,
    refs: &Refs,
    map: &[StreamMap],
    current: &MediaVersion,
    to: &MediaVersion,
) -> Result<Vec<Edit>, NoSwitch> {
    let (p, url_at, refs) = (refs.input, refs.url_at, &refs.refs[..]);
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
    Ok(edits)
}
