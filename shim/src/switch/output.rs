//! The output side of a switch: the switched command line planned again by the rewrite
//! planner in "switched" mode (fitted to the new version's own size, tone-map stages gone for
//! an SDR version, 8-bit), its edits expressed against the original tokens.

use std::ffi::OsString;

use crate::argv::{self, Parsed};
use crate::config::ShimConfig;
use crate::edit::{self, Edit};
use crate::facts::{Origin, SourceFacts};
use crate::job;
use crate::protocol::{MediaVersion, StreamKind};
use crate::rewrite;

use super::NoSwitch;

/// The facts of a version, as the index gives them: every field of [`SourceFacts`], the
/// codec from the version's video stream.
pub fn version_facts(v: &MediaVersion) -> SourceFacts {
    let mut f = SourceFacts::empty(Origin::Daemon);
    f.width = v.width;
    f.height = v.height;
    f.bit_depth = v.bit_depth;
    f.dynamic_range = v.dynamic_range;
    f.dv_profile = v.dv_profile;
    f.dv_base_layer_compatible = v.dv_base_layer_compatible;
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
pub(super) fn follow(
    tokens: &[OsString],
    edits: &[Edit],
    to: &MediaVersion,
    cfg: &ShimConfig,
) -> Result<Vec<Edit>, NoSwitch> {
    // Which original token every switched token came from. Stage-one edits only replace,
    // remove and insert decoder hints, so inserted tokens anchor to the token before them.
    // Built from the same per-token slots as `edit::apply`, in one pass (linear: a switch
    // of a 100,000-token command line has tens of thousands of edits).
    let slots = edit::Slots::of(tokens.len(), edits);
    let mut origin: Vec<(usize, bool)> = Vec::with_capacity(tokens.len() + slots.inserted);
    for i in 0..tokens.len() {
        if !slots.removed[i] {
            origin.push((i, false));
        }
        for t in slots.inserts_after(i) {
            origin.extend(std::iter::repeat_n((i, true), t.len()));
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
