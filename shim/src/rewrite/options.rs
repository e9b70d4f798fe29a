//! The option side of a rewrite: the encoder's options for the video stream (8-bit profile
//! and pixel format, the bitrate cap, BT.709 colour tags), inserted where ffmpeg reads them
//! for that output.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use crate::argv::{Group, Invocation, Opt};
use crate::codecs::{self, Class};
use crate::config::ShimConfig;
use crate::edit::Edit;
use crate::facts::SourceFacts;
use crate::job::spec_matches;

use super::graph::{fit_box, pix_depth, size, to_8bit};
use super::{MAX_H, MAX_W};

pub(super) fn input_has_hw_frames(inv: &Invocation<'_>, input: usize) -> bool {
    inv.inputs.get(input).is_some_and(|g| {
        inv.find_in(g, &["hwaccel_output_format"]).any(|o| {
            inv.value(o)
                .is_some_and(|v| v != b"nv12" && v != b"yuv420p")
        })
    })
}

/// Options of `out` that apply to its video stream `si`.
pub(super) fn video_opts<'g>(
    inv: &'g Invocation<'_>,
    out: &'g Group,
    si: usize,
    names: &'g [&'g str],
) -> impl Iterator<Item = &'g Opt> + 'g {
    inv.find_in(out, names)
        .filter(move |o| spec_matches(inv.spec(o), si, Class::Video))
}

pub(super) fn encoder_opts_10bit(inv: &Invocation<'_>, out: &Group, si: usize) -> bool {
    video_opts(inv, out, si, &["pix_fmt"]).any(|o| inv.value(o).is_some_and(|v| pix_depth(v) > 8))
        || video_opts(inv, out, si, &["profile"])
            .any(|o| inv.value(o).is_some_and(|v| profile_8bit(v).is_some()))
}

pub(super) fn profile_8bit(p: &[u8]) -> Option<&'static str> {
    match p {
        b"main10" | b"main12" | b"main10-intra" => Some("main"),
        b"high10" | b"high422" | b"high444" => Some("high"),
        _ => None,
    }
}

/// The stream specifier to use for options we add (`0` for `-codec:0`, `v` otherwise).
pub(super) fn stream_spec(inv: &Invocation<'_>, codec_opt: Option<Opt>) -> String {
    match codec_opt.map(|o| (inv.name(&o), inv.spec(&o))) {
        Some((b"codec" | b"c", Some(s))) => String::from_utf8_lossy(s).into_owned(),
        _ => "v".into(),
    }
}

/// Where to insert per-stream options: after the video encoder's value, else after the
/// output's last option, else right before its URL.
pub(super) fn insert_point(inv: &Invocation<'_>, out: &Group, codec_opt: Option<Opt>) -> usize {
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
pub(super) fn encoder_edits(
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
pub(super) fn kbps(v: &[u8]) -> Option<f64> {
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
