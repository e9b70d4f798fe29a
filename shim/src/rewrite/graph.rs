//! The filter-graph side of a rewrite: where the picture is scaled, its bit depth along the
//! way, and the graph edited in place (new filters joined into the chain that carries the
//! picture, so no label changes), in the shape Plex emits for each pipeline.

use crate::facts::SourceFacts;
use crate::filtergraph::{self, render_args, split_args, Arg, At, Graph, Splice};

use super::{Pipeline, Unsupported, MAX_H, MAX_W};

pub(super) const SW_8BIT: &str = "format=pix_fmts=yuv420p|nv12";

pub(super) fn is_scale(n: &[u8]) -> bool {
    matches!(
        n,
        b"scale" | b"scale_vaapi" | b"scale_cuda" | b"scale_npp" | b"zscale"
    )
}

pub(super) fn has_dims(g: &Graph<'_>, at: At) -> bool {
    dims_of(g, at).is_some()
}

pub(super) fn last_scale_with_dims(
    g: Option<&Graph<'_>>,
    path: &[At],
    names: &[&[u8]],
) -> Option<usize> {
    let g = g?;
    (0..path.len())
        .rev()
        .find(|&i| is_scale(names[i]) && has_dims(g, path[i]))
}

pub(super) fn pipeline(names: &[&[u8]]) -> Result<Pipeline, Unsupported> {
    let has = |f: &dyn Fn(&[u8]) -> bool| names.iter().any(|n| f(n));
    if has(&|n| matches!(n, b"scale_cuda" | b"tonemap_cuda" | b"scale_npp")) {
        return Ok(Pipeline::Cuda);
    }
    if has(&|n| n == b"scale_vaapi" || n.ends_with(b"_vaapi")) {
        return Ok(Pipeline::Vaapi);
    }
    if has(&|n| {
        n.ends_with(b"_qsv")
            || n.ends_with(b"_vulkan")
            || n.ends_with(b"_videotoolbox")
            || n.ends_with(b"_opencl")
            || n == b"libplacebo"
    }) {
        return Err("unsupported hardware filter pipeline");
    }
    Ok(Pipeline::Software)
}

/// Width, height and divisor of a scale filter with numeric dimensions.
pub(super) fn dims_of(g: &Graph<'_>, at: At) -> Option<(u32, u32, u32)> {
    let args = split_args(g.text(g.filter(at).args.as_ref()?));
    let (mut w, mut h, mut div) = (None, None, 2u32);
    let mut pos = 0;
    for a in &args {
        match a.key.as_deref() {
            Some(b"w" | b"width") => w = num(&a.value),
            Some(b"h" | b"height") => h = num(&a.value),
            Some(b"s" | b"size") => (w, h) = size(&a.value),
            Some(b"force_divisible_by") => {
                div = num(&a.value).filter(|d| (1..=64).contains(d)).unwrap_or(2)
            }
            Some(_) => {}
            None => {
                match pos {
                    0 if a.value.contains(&b'x') => (w, h) = size(&a.value),
                    0 => w = num(&a.value),
                    1 => h = num(&a.value),
                    _ => {}
                }
                pos += 1;
            }
        }
    }
    Some((w?, h?, div.max(2)))
}

pub(super) fn num(v: &[u8]) -> Option<u32> {
    std::str::from_utf8(v)
        .ok()?
        .parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
}

pub(super) fn size(v: &[u8]) -> (Option<u32>, Option<u32>) {
    let mut it = v.splitn(2, |&b| b == b'x');
    (it.next().and_then(num), it.next().and_then(num))
}

pub(super) fn source_dims(f: &SourceFacts) -> (Option<u32>, Option<u32>) {
    let w = f.width.or_else(|| f.height.map(|h| (h * 16).div_ceil(9)));
    (w, f.height)
}

/// Fits `w×h` inside 1920×1080 keeping its aspect ratio, with both sides multiples of `div`.
pub fn fit_box(w: u32, h: u32, div: u32) -> (u32, u32) {
    fit_into(w, h, MAX_W, MAX_H, div)
}

/// Fits `w×h` inside `bw×bh` keeping its aspect ratio, never enlarging, with both sides
/// multiples of `div`.
pub fn fit_into(w: u32, h: u32, bw: u32, bh: u32, div: u32) -> (u32, u32) {
    let div = div.max(2);
    let s = f64::min(bw as f64 / w as f64, bh as f64 / h as f64).min(1.0);
    let round = |x: f64| {
        let v = (x.floor() as u32) / div * div;
        v.max(div)
    };
    (round(w as f64 * s), round(h as f64 * s))
}

pub(super) struct DepthWalk {
    pub(super) depth: u8,
    /// A 10-bit format is named somewhere on the path outside a tone-map filter.
    pub(super) seen_10bit: bool,
    pub(super) tonemapped: bool,
    /// Index in the path of the last tone-map filter.
    pub(super) tonemap_idx: Option<usize>,
}

/// Follows the picture through the path, tracking its bit depth and whether it is tone mapped.
pub(super) fn walk_depth(
    g: Option<&Graph<'_>>,
    path: &[At],
    names: &[&[u8]],
    facts: &SourceFacts,
    hdr: bool,
) -> DepthWalk {
    let mut w = DepthWalk {
        depth: facts.bit_depth.unwrap_or(if hdr { 10 } else { 8 }),
        seen_10bit: false,
        tonemapped: false,
        tonemap_idx: None,
    };
    let Some(g) = g else { return w };
    for (i, &at) in path.iter().enumerate() {
        let args = g
            .filter(at)
            .args
            .as_ref()
            .map(|r| split_args(g.text(r)))
            .unwrap_or_default();
        let fmt = |keys: &[&[u8]], positional: Option<usize>| -> Option<u8> {
            let mut pos = 0;
            for a in &args {
                match &a.key {
                    Some(k) if keys.contains(&k.as_slice()) => return Some(fmt_depth(&a.value)),
                    Some(_) => {}
                    None => {
                        if Some(pos) == positional {
                            return Some(fmt_depth(&a.value));
                        }
                        pos += 1;
                    }
                }
            }
            None
        };
        let d = match names[i] {
            b"format" => fmt(&[b"pix_fmts"], Some(0)),
            b"scale_vaapi" | b"scale_cuda" | b"scale_npp" => fmt(&[b"format"], Some(2)),
            b"tonemap_opencl" | b"tonemap_vaapi" => fmt(&[b"format"], None),
            b"tonemap_cuda" => fmt(&[b"format"], Some(1)),
            _ => None,
        };
        if names[i].starts_with(b"tonemap") {
            w.tonemapped = true;
            w.tonemap_idx = Some(i);
        }
        if let Some(d) = d {
            w.depth = d;
            w.seen_10bit |= d > 8 && !names[i].starts_with(b"tonemap");
        }
    }
    w
}

/// The bit depth of a pixel format list (`yuv420p|nv12` → 8, `p010` → 10).
pub(super) fn fmt_depth(list: &[u8]) -> u8 {
    list.split(|&b| b == b'|').map(pix_depth).max().unwrap_or(8)
}

pub(super) fn pix_depth(f: &[u8]) -> u8 {
    if f.starts_with(b"p01")
        || f.starts_with(b"p21")
        || f.starts_with(b"p41")
        || f.ends_with(b"10le")
        || f.ends_with(b"10be")
        || f.ends_with(b"10")
        || f.ends_with(b"12le")
        || f.ends_with(b"16le")
        || f == b"x2rgb10"
    {
        10
    } else {
        8
    }
}

/// The 8-bit twin of a pixel format.
pub(super) fn to_8bit(f: &[u8]) -> &'static [u8] {
    match f {
        b"p010" | b"p010le" | b"p016" | b"p016le" | b"nv12" => b"nv12",
        _ if f.starts_with(b"yuv444") => b"yuv444p",
        _ if f.starts_with(b"yuv422") => b"yuv422p",
        _ => b"yuv420p",
    }
}

pub(super) fn map_fmt_list(list: &[u8]) -> Vec<u8> {
    let mut out: Vec<&[u8]> = Vec::new();
    for f in list.split(|&b| b == b'|') {
        let m: &[u8] = if pix_depth(f) > 8 { to_8bit(f) } else { f };
        if !out.contains(&m) {
            out.push(m);
        }
    }
    out.join(&b'|')
}

/// One argument to set: its key names, the positional slot it may occupy, its new value.
pub(super) type ArgSet = (&'static [&'static [u8]], Option<usize>, Vec<u8>);

pub(super) const W_KEYS: &[&[u8]] = &[b"w", b"width"];
pub(super) const H_KEYS: &[&[u8]] = &[b"h", b"height"];
pub(super) const FORMAT_KEYS: &[&[u8]] = &[b"format"];

/// Sets keyed arguments (or the positional slot they occupy) in an argument list.
pub(super) fn set_args(args: &[u8], sets: &[ArgSet]) -> Vec<u8> {
    let mut parsed = if args.is_empty() {
        Vec::new()
    } else {
        split_args(args)
    };
    for (keys, positional, value) in sets {
        let mut pos = 0;
        let mut done = false;
        for a in parsed.iter_mut() {
            match &a.key {
                Some(k) if keys.contains(&k.as_slice()) => {
                    a.value = value.clone();
                    done = true;
                    break;
                }
                Some(_) => {}
                None => {
                    if Some(pos) == *positional {
                        a.value = value.clone();
                        done = true;
                        break;
                    }
                    pos += 1;
                }
            }
        }
        if !done {
            parsed.push(Arg {
                key: Some(keys[0].to_vec()),
                value: value.clone(),
            });
        }
    }
    render_args(&parsed)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn rewrite_graph(
    g: &Graph<'_>,
    path: &[At],
    names: &[&[u8]],
    pipeline: Pipeline,
    scale_idx: Option<usize>,
    fit: Option<(u32, u32)>,
    old_target: Option<(u32, u32)>,
    needs_downscale: bool,
    needs_tonemap: bool,
    needs_8bit: bool,
    existing_tonemap: Option<usize>,
    strip_tonemap: bool,
    algo: &str,
) -> Result<Vec<u8>, Unsupported> {
    if path.is_empty() {
        return Err("empty video filter path");
    }
    let mut splices = Vec::new();
    // 0. Tone-map stages of an SDR version switched in become `null`: the label structure
    // stays as it is, and `null` passes software and hardware frames alike. The OpenCL
    // round trip around `tonemap_opencl` goes with it.
    if strip_tonemap {
        for (k, &at) in path.iter().enumerate() {
            let tonemap = |j: usize| names.get(j).is_some_and(|n| n.starts_with(b"tonemap"));
            let drop = names[k].starts_with(b"tonemap")
                || (names[k] == b"hwmap" && (tonemap(k + 1) || (k > 0 && tonemap(k - 1))));
            if drop {
                splices.push(Splice {
                    range: g.filter(at).body.clone(),
                    text: b"null".to_vec(),
                });
            }
        }
    }
    let hw_scale = match pipeline {
        Pipeline::Software => None,
        Pipeline::Vaapi => Some(&b"scale_vaapi"[..]),
        Pipeline::Cuda => Some(&b"scale_cuda"[..]),
    };
    let scale_at = match (scale_idx, hw_scale) {
        (Some(i), Some(want)) if names[i] == want => Some(i),
        (Some(_), Some(_)) | (None, Some(_)) => {
            let i = names.iter().rposition(|n| Some(*n) == hw_scale);
            if i.is_none() {
                return Err("hardware pipeline without a hardware scaler");
            }
            i
        }
        (i, None) => i.filter(|&i| names[i] == b"scale"),
    };
    if needs_downscale && scale_at.is_some_and(|i| names[i] == b"zscale") {
        return Err("zscale resize is not rewritten");
    }

    // 1. Geometry and the scaler's own output format.
    let mut scale_sets: Vec<ArgSet> = Vec::new();
    if needs_downscale {
        let (w, h) = fit.ok_or("output size unknown")?;
        scale_sets.push((W_KEYS, Some(0), w.to_string().into_bytes()));
        scale_sets.push((H_KEYS, Some(1), h.to_string().into_bytes()));
    }
    if hw_scale.is_some() {
        if needs_tonemap {
            scale_sets.push((FORMAT_KEYS, Some(2), b"p010".to_vec()));
        } else if needs_8bit && existing_tonemap.is_none() {
            scale_sets.push((FORMAT_KEYS, Some(2), b"nv12".to_vec()));
        }
    }
    let tonemap_text: Option<String> = needs_tonemap.then(|| match pipeline {
        Pipeline::Software => format!("format=p010,tonemap={algo}"),
        Pipeline::Vaapi => format!(
            "hwmap=derive_device=opencl,tonemap_opencl=tonemap={algo}:format=nv12:m=bt709:p=bt709:r=tv,hwmap=derive_device=vaapi:reverse=1"
        ),
        Pipeline::Cuda => format!("tonemap_cuda={algo}:nv12"),
    });
    // Where the picture is 8-bit from: after our tone map, after Plex's own, or everywhere.
    let eight_bit_from = match (&tonemap_text, scale_at, existing_tonemap) {
        (Some(_), Some(i), _) => i + 1,
        (Some(_), None, _) => 0,
        (None, _, Some(t)) => t + 1,
        (None, _, None) => 0,
    };
    let later_8bit_format = path[eight_bit_from.min(path.len())..]
        .iter()
        .zip(&names[eight_bit_from.min(path.len())..])
        .any(|(_, n)| *n == b"format");

    match scale_at {
        Some(i) => {
            let f = g.filter(path[i]);
            if !scale_sets.is_empty() {
                let (range, old) = match &f.args {
                    Some(r) => (r.clone(), g.text(r)),
                    None => (f.body.end..f.body.end, &b""[..]),
                };
                let mut new = set_args(old, &scale_sets);
                if f.args.is_none() {
                    new.insert(0, b'=');
                }
                splices.push(Splice { range, text: new });
            }
            if let Some(t) = &tonemap_text {
                let mut text = format!(",{t}");
                if pipeline == Pipeline::Software && !later_8bit_format {
                    text.push(',');
                    text.push_str(SW_8BIT);
                }
                splices.push(Splice {
                    range: f.body.end..f.body.end,
                    text: text.into_bytes(),
                });
            }
        }
        None => {
            let mut parts: Vec<String> = Vec::new();
            if needs_downscale {
                let (w, h) = fit.ok_or("output size unknown")?;
                parts.push(format!("scale=w={w}:h={h}"));
            }
            if let Some(t) = &tonemap_text {
                parts.push(t.clone());
                if !later_8bit_format {
                    parts.push(SW_8BIT.into());
                }
            }
            if !parts.is_empty() {
                let start = g.filter(path[0]).body.start;
                splices.push(Splice {
                    range: start..start,
                    text: format!("{},", parts.join(",")).into_bytes(),
                });
            }
        }
    }

    // 1b. Other scalers sized to the old target (a bitmap subtitle scaled for an overlay,
    // scaleplex's PGS and bitmap-sub shapes) follow the picture, or the overlay would get a
    // 4K subtitle on a 1080p frame.
    if let (true, Some(old), Some((w, h))) = (needs_downscale, old_target, fit) {
        let main = scale_at.map(|i| path[i]);
        for at in g.positions() {
            if Some(at) == main || !is_scale(g.name(at)) || g.name(at) == b"zscale" {
                continue;
            }
            if dims_of(g, at).is_some_and(|(ow, oh, _)| (ow, oh) == old) {
                if let Some(r) = &g.filter(at).args {
                    let sets: [ArgSet; 2] = [
                        (W_KEYS, Some(0), w.to_string().into_bytes()),
                        (H_KEYS, Some(1), h.to_string().into_bytes()),
                    ];
                    splices.push(Splice {
                        range: r.clone(),
                        text: set_args(g.text(r), &sets),
                    });
                }
            }
        }
    }

    // 2. Every 10-bit format downstream of the 8-bit point becomes its 8-bit twin.
    let mut mapped_any = false;
    for (k, &at) in path.iter().enumerate().skip(eight_bit_from) {
        if names[k] != b"format" {
            continue;
        }
        let f = g.filter(at);
        let Some(r) = &f.args else { continue };
        let args = split_args(g.text(r));
        let mut changed = false;
        let new: Vec<Arg> = args
            .into_iter()
            .enumerate()
            .map(|(i, mut a)| {
                if a.key.as_deref() == Some(b"pix_fmts") || (a.key.is_none() && i == 0) {
                    let m = map_fmt_list(&a.value);
                    changed |= m != a.value;
                    a.value = m;
                }
                a
            })
            .collect();
        mapped_any = true;
        if changed {
            splices.push(Splice {
                range: r.clone(),
                text: render_args(&new),
            });
        }
    }
    // 3. A 10-bit software picture with no format filter at all: add one before any upload.
    if needs_8bit && tonemap_text.is_none() && !mapped_any && pipeline == Pipeline::Software {
        let last = (0..path.len())
            .rev()
            .find(|&k| !matches!(names[k], b"hwupload" | b"hwupload_cuda" | b"hwmap"))
            .unwrap_or(0);
        let end = g.filter(path[last]).body.end;
        splices.push(Splice {
            range: end..end,
            text: format!(",{SW_8BIT}").into_bytes(),
        });
    }
    Ok(filtergraph::apply(g.src, &splices))
}
