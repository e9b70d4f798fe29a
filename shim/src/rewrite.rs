//! Rewrites a protected video transcode so its output is ≤1080p, 8-bit, tone-mapped SDR,
//! tagged BT.709, with the video bitrate capped.
//!
//! The rewrite uses the filter shapes Plex itself emits for each pipeline
//! (`fixtures/plex-filtergraphs.json`, transcoder-args.md §4.2 and §5):
//! - software: `scale=…` then `format=p010,tonemap=<algo>` then an 8-bit `format=…`;
//! - VAAPI: `scale_vaapi=…:format=p010` then
//!   `hwmap=derive_device=opencl,tonemap_opencl=tonemap=<algo>:format=nv12:m=bt709:p=bt709:r=tv,hwmap=derive_device=vaapi:reverse=1`;
//! - CUDA: `scale_cuda=…:format=p010` then `tonemap_cuda=<algo>:nv12` (Plex's positional form).
//!
//! New filters are inserted *inside* the chain that already carries the picture, joined with
//! `,`, so no label is created, renamed or removed and every `-map "[N]"` stays valid. Every
//! rewritten graph is re-parsed and its labels checked before it is used.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use crate::argv::{Group, Invocation, Opt};
use crate::codecs::{self, Class};
use crate::config::ShimConfig;
use crate::edit::Edit;
use crate::facts::SourceFacts;
use crate::filtergraph::{self, render_args, split_args, Arg, At, Graph, Splice};
use crate::job::{spec_matches, Job, VideoFeed};

/// The largest output a rewrite allows.
pub const MAX_W: u32 = 1920;
pub const MAX_H: u32 = 1080;

/// Why a rewrite is not possible (static, for logs and counters).
pub type Unsupported = &'static str;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pipeline {
    Software,
    Vaapi,
    Cuda,
}

/// How the output is fitted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mode {
    /// The input was switched to another version of the title (`facts` are the new
    /// version's): the output is fitted to that version's own size — never scaled back up to
    /// the old 4K target — and tone-map stages are removed when it is SDR.
    pub switched: bool,
}

/// Plans the edits, or `Ok(None)` when the output is already ≤1080p SDR.
pub fn plan(
    inv: &Invocation<'_>,
    job: &Job,
    facts: &SourceFacts,
    cfg: &ShimConfig,
) -> Result<Option<Vec<Edit>>, Unsupported> {
    plan_with(inv, job, facts, cfg, Mode::default())
}

/// The output size the job asks for today: the last sized scaler on the video's path.
pub fn output_target(inv: &Invocation<'_>, job: &Job) -> Option<(u32, u32)> {
    let video = job.video.as_ref()?;
    let (tok, label) = match &video.feed {
        VideoFeed::Graph { opt, label } => (opt.value?, Some(label.as_slice())),
        VideoFeed::Stream { vf: Some(o), .. } => (o.value?, None),
        VideoFeed::Stream { vf: None, .. } => return None,
    };
    let g = Graph::parse(inv.token(tok)).ok()?;
    let path: Vec<At> = match label {
        Some(l) => g.path_to(l)?.0,
        None => g.positions().collect(),
    };
    let names: Vec<&[u8]> = path.iter().map(|&a| g.name(a)).collect();
    let i = last_scale_with_dims(Some(&g), &path, &names)?;
    dims_of(&g, path[i]).map(|(w, h, _)| (w, h))
}

/// [`plan`], with the fitting mode spelled out.
pub fn plan_with(
    inv: &Invocation<'_>,
    job: &Job,
    facts: &SourceFacts,
    cfg: &ShimConfig,
    mode: Mode,
) -> Result<Option<Vec<Edit>>, Unsupported> {
    let video = job.video.as_ref().ok_or("no encoded video stream")?;
    if job.encoded_video_streams > 1 {
        return Err("more than one video stream is encoded");
    }
    let out = &inv.outputs[video.output];
    if out.opts.is_empty() && out.url == Some(1) && inv.token(0) == b"--" {
        // `-- URL` as the very first tokens: nothing can be inserted before the `--`, and
        // anything after it would become the URL (found by the argv fuzzer).
        return Err("no place for options before the output");
    }
    let encoder = video.codec_opt.and_then(|o| inv.value(&o));
    let hdr = facts.dynamic_range.is_some_and(|d| !d.is_sdr());

    let (graph_tok, label) = match &video.feed {
        VideoFeed::Graph { opt, label } => (opt.value, Some(label.as_slice())),
        VideoFeed::Stream { vf: Some(o), .. } => (o.value, None),
        VideoFeed::Stream { vf: None, input } => {
            if input_has_hw_frames(inv, *input) {
                return Err("hardware-decoded frames with no filter graph");
            }
            (None, None)
        }
    };
    let graph = match graph_tok {
        Some(t) => {
            Some(Graph::parse(inv.token(t)).map_err(|_| "video filter graph does not parse")?)
        }
        None => None,
    };
    let path: Vec<At> = match (&graph, label) {
        (Some(g), Some(l)) => g.path_to(l).ok_or("mapped label has no producer")?.0,
        (Some(g), None) if g.chains.len() == 1 => g.positions().collect(),
        (Some(_), None) => return Err("multi-chain -vf graph"),
        (None, _) => Vec::new(),
    };
    let names: Vec<&[u8]> = match &graph {
        Some(g) => path.iter().map(|&a| g.name(a)).collect(),
        None => Vec::new(),
    };
    let pipeline = pipeline(&names)?;

    // What the graph produces today.
    let scale_idx = last_scale_with_dims(graph.as_ref(), &path, &names);
    let target = match (scale_idx, &graph) {
        (Some(i), Some(g)) => dims_of(g, path[i]),
        _ => None,
    };
    let (src_w, src_h) = source_dims(facts);
    let (tw, th) = match target {
        Some((w, h, _)) => (Some(w), Some(h)),
        None => (src_w, src_h),
    };
    let div = target.map(|t| t.2).unwrap_or(2);
    // A switched input is fitted, aspect kept, inside both the old target and 1080p, and
    // never enlarged: a 1920×800 version played where Plex asked 3840×2160 becomes 1920×800.
    let switched_fit = match (mode.switched, src_w, src_h, tw, th) {
        (true, Some(sw), Some(sh), Some(w), Some(h)) => {
            Some(fit_into(sw, sh, w.min(MAX_W), h.min(MAX_H), div))
        }
        _ => None,
    };
    let needs_downscale = match (switched_fit, tw, th) {
        (Some((fw, fh)), Some(w), Some(h)) => w.abs_diff(fw) >= div || h.abs_diff(fh) >= div,
        (_, Some(w), Some(h)) => w > MAX_W || h > MAX_H,
        _ => facts.height.is_none_or(|h| h > MAX_H),
    };
    let walk = walk_depth(graph.as_ref(), &path, &names, facts, hdr);
    let enc_10bit = encoder_opts_10bit(inv, out, video.stream);
    // An SDR version switched in for an HDR one: Plex's tone-map stages go.
    let strip = mode.switched && !hdr && walk.tonemapped;
    let needs_tonemap = hdr && !walk.tonemapped;
    let needs_8bit = if strip {
        walk.seen_10bit || enc_10bit
    } else {
        walk.depth > 8 || enc_10bit
    };
    if !needs_downscale && !needs_tonemap && !needs_8bit && !strip {
        return Ok(None);
    }
    if facts.is_untonemappable_dv() {
        return Err("dolby vision profile 5 cannot be tone mapped");
    }

    let algo = cfg.tonemap_algorithm.as_str();
    let fit = match (switched_fit, tw, th) {
        (Some(f), _, _) => Some(f),
        (None, Some(w), Some(h)) => Some(fit_box(w, h, div)),
        _ => None,
    };
    let mut edits = Vec::new();
    let new_graph: Option<Vec<u8>> = match &graph {
        Some(g) => Some(rewrite_graph(
            g,
            &path,
            &names,
            pipeline,
            scale_idx,
            fit,
            target.map(|t| (t.0, t.1)),
            needs_downscale,
            needs_tonemap,
            needs_8bit,
            if strip { None } else { walk.tonemap_idx },
            strip,
            algo,
        )?),
        None => None,
    };
    match (graph_tok, new_graph) {
        (Some(t), Some(bytes)) => {
            let check = Graph::parse(&bytes).map_err(|_| "rewritten graph does not parse")?;
            if !filtergraph::labels_consistent(&check)
                || label.is_some_and(|l| check.path_to(l).is_none())
            {
                return Err("rewritten graph has inconsistent labels");
            }
            edits.push(Edit::Replace {
                at: t,
                with: OsString::from_vec(bytes),
            });
        }
        _ => {
            // No graph: add a per-stream software filter chain to this output.
            let mut chain: Vec<String> = Vec::new();
            if needs_downscale {
                chain.push(match fit {
                    Some((w, h)) => format!("scale=w={w}:h={h}"),
                    None => "scale=w=1920:h=1080:force_original_aspect_ratio=decrease:force_divisible_by=2".into(),
                });
            }
            if needs_tonemap {
                chain.push(format!("format=p010,tonemap={algo}"));
            }
            chain.push(SW_8BIT.into());
            let after = insert_point(inv, out, video.codec_opt);
            let spec = stream_spec(inv, video.codec_opt);
            edits.push(Edit::Insert {
                after,
                tokens: vec![format!("-filter:{spec}").into(), chain.join(",").into()],
            });
        }
    }
    encoder_edits(
        inv,
        out,
        video.stream,
        video.codec_opt,
        encoder,
        facts,
        cfg,
        needs_tonemap,
        &mut edits,
    );
    Ok(Some(edits))
}

const SW_8BIT: &str = "format=pix_fmts=yuv420p|nv12";

fn is_scale(n: &[u8]) -> bool {
    matches!(
        n,
        b"scale" | b"scale_vaapi" | b"scale_cuda" | b"scale_npp" | b"zscale"
    )
}

fn has_dims(g: &Graph<'_>, at: At) -> bool {
    dims_of(g, at).is_some()
}

fn last_scale_with_dims(g: Option<&Graph<'_>>, path: &[At], names: &[&[u8]]) -> Option<usize> {
    let g = g?;
    (0..path.len())
        .rev()
        .find(|&i| is_scale(names[i]) && has_dims(g, path[i]))
}

fn pipeline(names: &[&[u8]]) -> Result<Pipeline, Unsupported> {
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
fn dims_of(g: &Graph<'_>, at: At) -> Option<(u32, u32, u32)> {
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

fn num(v: &[u8]) -> Option<u32> {
    std::str::from_utf8(v)
        .ok()?
        .parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
}

fn size(v: &[u8]) -> (Option<u32>, Option<u32>) {
    let mut it = v.splitn(2, |&b| b == b'x');
    (it.next().and_then(num), it.next().and_then(num))
}

fn source_dims(f: &SourceFacts) -> (Option<u32>, Option<u32>) {
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

struct DepthWalk {
    depth: u8,
    /// A 10-bit format is named somewhere on the path outside a tone-map filter.
    seen_10bit: bool,
    tonemapped: bool,
    /// Index in the path of the last tone-map filter.
    tonemap_idx: Option<usize>,
}

/// Follows the picture through the path, tracking its bit depth and whether it is tone mapped.
fn walk_depth(
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
fn fmt_depth(list: &[u8]) -> u8 {
    list.split(|&b| b == b'|').map(pix_depth).max().unwrap_or(8)
}

fn pix_depth(f: &[u8]) -> u8 {
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
fn to_8bit(f: &[u8]) -> &'static [u8] {
    match f {
        b"p010" | b"p010le" | b"p016" | b"p016le" | b"nv12" => b"nv12",
        _ if f.starts_with(b"yuv444") => b"yuv444p",
        _ if f.starts_with(b"yuv422") => b"yuv422p",
        _ => b"yuv420p",
    }
}

fn map_fmt_list(list: &[u8]) -> Vec<u8> {
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
type ArgSet = (&'static [&'static [u8]], Option<usize>, Vec<u8>);

const W_KEYS: &[&[u8]] = &[b"w", b"width"];
const H_KEYS: &[&[u8]] = &[b"h", b"height"];
const FORMAT_KEYS: &[&[u8]] = &[b"format"];

/// Sets keyed arguments (or the positional slot they occupy) in an argument list.
fn set_args(args: &[u8], sets: &[ArgSet]) -> Vec<u8> {
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
fn rewrite_graph(
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

fn input_has_hw_frames(inv: &Invocation<'_>, input: usize) -> bool {
    inv.inputs.get(input).is_some_and(|g| {
        inv.find_in(g, &["hwaccel_output_format"]).any(|o| {
            inv.value(o)
                .is_some_and(|v| v != b"nv12" && v != b"yuv420p")
        })
    })
}

/// Options of `out` that apply to its video stream `si`.
fn video_opts<'g>(
    inv: &'g Invocation<'_>,
    out: &'g Group,
    si: usize,
    names: &'g [&'g str],
) -> impl Iterator<Item = &'g Opt> + 'g {
    inv.find_in(out, names)
        .filter(move |o| spec_matches(inv.spec(o), si, Class::Video))
}

fn encoder_opts_10bit(inv: &Invocation<'_>, out: &Group, si: usize) -> bool {
    video_opts(inv, out, si, &["pix_fmt"]).any(|o| inv.value(o).is_some_and(|v| pix_depth(v) > 8))
        || video_opts(inv, out, si, &["profile"])
            .any(|o| inv.value(o).is_some_and(|v| profile_8bit(v).is_some()))
}

fn profile_8bit(p: &[u8]) -> Option<&'static str> {
    match p {
        b"main10" | b"main12" | b"main10-intra" => Some("main"),
        b"high10" | b"high422" | b"high444" => Some("high"),
        _ => None,
    }
}

/// The stream specifier to use for options we add (`0` for `-codec:0`, `v` otherwise).
fn stream_spec(inv: &Invocation<'_>, codec_opt: Option<Opt>) -> String {
    match codec_opt.map(|o| (inv.name(&o), inv.spec(&o))) {
        Some((b"codec" | b"c", Some(s))) => String::from_utf8_lossy(s).into_owned(),
        _ => "v".into(),
    }
}

/// Where to insert per-stream options: after the video encoder's value, else after the
/// output's last option, else right before its URL.
fn insert_point(inv: &Invocation<'_>, out: &Group, codec_opt: Option<Opt>) -> usize {
    if let Some(o) = codec_opt {
        return o.value.unwrap_or(o.at);
    }
    if let Some(o) = out.opts.last() {
        return o.value.unwrap_or(o.at);
    }
    // `-- URL`: the URL must stay right after `--`, so insert before the `--` (found by the
    // argv fuzzer: `-i in -- -name` rewritten to `-i in -- -filter:v … -name`).
    match out.url {
        Some(u) if u > 0 && inv.token(u - 1) == b"--" => u.saturating_sub(2),
        Some(u) => u.saturating_sub(1),
        None => 0,
    }
}

#[allow(clippy::too_many_arguments)]
fn encoder_edits(
    inv: &Invocation<'_>,
    out: &Group,
    si: usize,
    codec_opt: Option<Opt>,
    encoder: Option<&[u8]>,
    facts: &SourceFacts,
    cfg: &ShimConfig,
    tags: bool,
    edits: &mut Vec<Edit>,
) {
    for o in video_opts(inv, out, si, &["pix_fmt"]) {
        if let (Some(v), Some(at)) = (inv.value(o), o.value) {
            if pix_depth(v) > 8 {
                edits.push(Edit::Replace {
                    at,
                    with: OsString::from_vec(to_8bit(v).to_vec()),
                });
            }
        }
    }
    for o in video_opts(inv, out, si, &["profile"]) {
        if let (Some(p), Some(at)) = (inv.value(o).and_then(profile_8bit), o.value) {
            edits.push(Edit::Replace { at, with: p.into() });
        }
    }
    let ceiling = cfg.bitrate_ceiling_kbps as f64;
    for (names, limit) in [
        (&["maxrate", "b"][..], ceiling),
        (&["bufsize"][..], ceiling * 2.0),
    ] {
        for o in video_opts(inv, out, si, names) {
            if let (Some(v), Some(at)) = (inv.value(o), o.value) {
                if kbps(v).is_some_and(|k| k > limit) {
                    edits.push(Edit::Replace {
                        at,
                        with: format!("{}k", limit as u64).into(),
                    });
                }
            }
        }
    }
    for o in video_opts(inv, out, si, &["s"]) {
        if let (Some(v), Some(at)) = (inv.value(o), o.value) {
            if let (Some(w), Some(h)) = size(v) {
                if w > MAX_W || h > MAX_H {
                    let (w, h) = fit_box(w, h, 2);
                    edits.push(Edit::Replace {
                        at,
                        with: format!("{w}x{h}").into(),
                    });
                }
            }
        }
    }
    let spec = stream_spec(inv, codec_opt);
    let mut add: Vec<OsString> = Vec::new();
    if tags {
        for (k, v) in [
            ("color_primaries", "bt709"),
            ("color_trc", "bt709"),
            ("colorspace", "bt709"),
        ] {
            add.push(format!("-{k}:{spec}").into());
            add.push(v.into());
        }
    }
    let dv = facts.dynamic_range == Some(crate::facts::DynamicRange::DolbyVision);
    if dv && encoder.is_some_and(codecs::carries_dv_rpu) {
        let existing: Vec<&Opt> = video_opts(inv, out, si, &["bsf"]).collect();
        match existing.last() {
            Some(o)
                if inv
                    .value(o)
                    .is_some_and(|v| v.windows(8).any(|w| w == b"dovi_rpu")) => {}
            Some(o) => {
                if let (Some(v), Some(at)) = (inv.value(o), o.value) {
                    let mut nv = v.to_vec();
                    nv.extend_from_slice(b",dovi_rpu=strip=1");
                    edits.push(Edit::Replace {
                        at,
                        with: OsString::from_vec(nv),
                    });
                }
            }
            None => {
                add.push(format!("-bsf:{spec}").into());
                add.push("dovi_rpu=strip=1".into());
            }
        }
    }
    if !add.is_empty() {
        edits.push(Edit::Insert {
            after: insert_point(inv, out, codec_opt),
            tokens: add,
        });
    }
}

/// `3419k` → 3419, `20M` → 20000, `8000000` → 8000 (kbit/s).
fn kbps(v: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(v).ok()?;
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let n: f64 = s[..split].parse().ok()?;
    let mult = match s[split..].trim_end_matches(['i', 'B']) {
        "" => 0.001,
        "k" | "K" => 1.0,
        "M" => 1000.0,
        "G" => 1_000_000.0,
        _ => return None,
    };
    Some(n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_the_box() {
        assert_eq!(fit_box(3840, 2160, 4), (1920, 1080));
        assert_eq!(fit_box(3840, 1600, 4), (1920, 800));
        assert_eq!(fit_box(4096, 2160, 2), (1920, 1012));
        assert_eq!(fit_box(1280, 720, 2), (1280, 720));
        assert_eq!(fit_box(1440, 1080, 2), (1440, 1080));
    }

    #[test]
    fn bitrates() {
        assert_eq!(kbps(b"3419k"), Some(3419.0));
        assert_eq!(kbps(b"20M"), Some(20000.0));
        assert_eq!(kbps(b"8000000"), Some(8000.0));
        assert_eq!(kbps(b"x"), None);
    }

    #[test]
    fn pixel_formats() {
        assert_eq!(fmt_depth(b"yuv420p|nv12"), 8);
        assert_eq!(fmt_depth(b"p010"), 10);
        assert_eq!(map_fmt_list(b"p010"), b"nv12");
        assert_eq!(map_fmt_list(b"yuv420p10le|p010"), b"yuv420p|nv12");
    }

    #[test]
    fn set_args_keyed_and_positional() {
        assert_eq!(
            set_args(
                b"w=3840:h=2160:format=p010",
                &[(&[b"w"], Some(0), b"1920".to_vec())]
            ),
            b"w=1920:h=2160:format=p010"
        );
        assert_eq!(
            set_args(b"3840:2160", &[(H_KEYS, Some(1), b"1080".to_vec())]),
            b"3840:1080"
        );
        assert_eq!(
            set_args(
                b"w=1280:h=720",
                &[(&[b"format"], Some(2), b"p010".to_vec())]
            ),
            b"w=1280:h=720:format=p010"
        );
    }

    #[test]
    fn options_are_inserted_before_a_dashdash_output() {
        use crate::argv::{parse, Parsed};
        use crate::facts::{DynamicRange, Origin};
        let t: Vec<OsString> = ["-i", "/m/a.mkv", "--", "-out.mkv"]
            .iter()
            .map(OsString::from)
            .collect();
        let Parsed::Job(inv) = parse(&t) else {
            panic!()
        };
        let job = crate::job::classify(&inv);
        let mut f = SourceFacts::empty(Origin::Given);
        f.height = Some(2160);
        f.width = Some(3840);
        f.dynamic_range = Some(DynamicRange::Hdr10);
        let edits = plan(&inv, &job, &f, &ShimConfig::default())
            .unwrap()
            .unwrap();
        let new = crate::edit::apply(&t, &edits);
        assert_eq!(new[new.len() - 2], "--");
        assert!(matches!(parse(&new), Parsed::Job(_)));
    }
}
