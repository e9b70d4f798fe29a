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
//!
//! Two parts: `graph` edits the filter graph (scale, tone map, 8-bit format, the hardware
//! pipelines' own filters) and `options` the encoder options (profile, pixel format,
//! bitrate cap, colour tags); this module plans which of them a job needs.

mod graph;
mod options;
#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use crate::argv::{self, Invocation, Parsed};
use crate::config::ShimConfig;
use crate::edit::Edit;
use crate::facts::SourceFacts;
use crate::filtergraph::{self, At, Graph};
use crate::job::{Job, VideoFeed};

use graph::*;
use options::*;

pub use graph::{fit_box, fit_into};

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
///
/// A rewrite is only offered once it is known to settle: the rewritten command line, planned
/// again with the same facts, needs nothing more. A graph whose arguments we misread (a
/// positional value after a keyed one, a misspelt `pix_fmts`, both of which ffmpeg rejects)
/// otherwise got a rewrite that changed nothing or scaled 1280×720 *up* to 1920×1080, and was
/// called compliant (found by the filtergraph fuzzer; `shim/fuzz/regressions/filtergraph`).
pub fn plan_with(
    inv: &Invocation<'_>,
    job: &Job,
    facts: &SourceFacts,
    cfg: &ShimConfig,
    mode: Mode,
) -> Result<Option<Vec<Edit>>, Unsupported> {
    let Some(edits) = plan_once(inv, job, facts, cfg, mode)? else {
        return Ok(None);
    };
    let rewritten = crate::edit::apply(inv.tokens, &edits);
    let Parsed::Job(again) = argv::parse(&rewritten) else {
        return Err("rewritten command line does not parse");
    };
    let again_job = crate::job::classify(&again);
    match plan_once(&again, &again_job, facts, cfg, mode) {
        Ok(None) => Ok(Some(edits)),
        Ok(Some(_)) | Err(_) => Err("rewrite does not settle: planning it again changes it"),
    }
}

/// One planning pass (see [`plan_with`]).
fn plan_once(
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
