//! Any bytes as a filter graph: the graph model, then the rewrite's graph edit and the switch's
//! output plan on a Plex-shaped job carrying it.
//! The body and its assertions are in `../harness.rs`, shared with the regression replay
//! (`shim/tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = harness::filtergraph(data);
});
