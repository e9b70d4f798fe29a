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
//!
//! Three parts: `choice` (which version), `remap` (the input side: every stream
//! reference by meaning, the decoder hints) and `output` (the output planned again for the
//! new source).

mod choice;
mod output;
mod remap;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use serde::Serialize;

use crate::argv::Invocation;
use crate::config::ShimConfig;
use crate::edit::Edit;
use crate::job::{self, Job};
use crate::protocol::{MediaVersion, StreamKind};
use crate::rewrite;

pub use choice::ranked_versions;
pub use output::version_facts;

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
    let refs = remap::references(inv, p, url_at)?;
    let used = remap::used_streams(&refs, &current.streams)?;
    let target = rewrite::output_target(inv, job);
    // Rank every candidate whose streams match first — ranking needs only the stream map —
    // and build (which re-parses the switched command line to plan its output) in rank
    // order until one succeeds: the argv is re-parsed for the winner, not per candidate.
    // Failures keep their version's position, so the reason given when none succeeds is the
    // first version's, as when every candidate was built.
    let mut ranked: Vec<(choice::Rank, usize, Vec<StreamMap>)> = Vec::new();
    let mut failures: Vec<(usize, NoSwitch)> = Vec::new();
    let mut any_candidate = false;
    for (i, v) in versions.iter().enumerate() {
        if !choice::eligible(v, current, cfg, purpose, target) {
            continue;
        }
        any_candidate = true;
        match remap::map_streams(&used, &current.streams, &v.streams) {
            Ok(map) => ranked.push((
                choice::rank(v, &map, &v.streams, cfg, purpose, target),
                i,
                map,
            )),
            Err(e) => failures.push((i, e)),
        }
    }
    // Stable: equal ranks keep the versions' order, the first one winning as before.
    ranked.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, i, map) in ranked {
        match build(inv, job, &refs, &map, current, &versions[i], cfg) {
            Ok(sw) => return Ok(sw),
            Err(e) => failures.push((i, e)),
        }
    }
    let first_failure = failures.into_iter().min_by_key(|&(i, _)| i).map(|(_, e)| e);
    match first_failure {
        Some(e) => Err(e),
        None if any_candidate => Err("no compliant version"),
        None => Err("no compliant version of this title"),
    }
}

/// The switch to `to`: the input side remapped, then the output planned for the new source.
fn build(
    inv: &Invocation<'_>,
    job: &Job,
    refs: &remap::Refs,
    map: &[StreamMap],
    current: &MediaVersion,
    to: &MediaVersion,
    cfg: &ShimConfig,
) -> Result<Switch, NoSwitch> {
    let mut edits = remap::edits(inv, job, refs, map, current, to)?;
    let output = output::follow(inv.tokens, &edits, to, cfg)?;
    let output_rewritten = !output.is_empty();
    // A token the output plan replaces keeps only the plan's last replacement (one pass
    // over the edits, not one per output edit: a switch can carry tens of thousands).
    let last: std::collections::HashMap<usize, usize> = output
        .iter()
        .enumerate()
        .filter_map(|(j, e)| match e {
            Edit::Replace { at, .. } => Some((*at, j)),
            _ => None,
        })
        .collect();
    edits.retain(|x| !matches!(x, Edit::Replace { at, .. } if last.contains_key(at)));
    edits.extend(
        output
            .into_iter()
            .enumerate()
            .filter_map(|(j, e)| match &e {
                Edit::Replace { at, .. } if last.get(at) != Some(&j) => None,
                _ => Some(e),
            }),
    );
    let mut version = to.clone();
    version.streams = Vec::new();
    Ok(Switch {
        version,
        streams: map.to_vec(),
        edits,
        output_rewritten,
    })
}
