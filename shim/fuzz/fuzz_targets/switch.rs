//! Any byte string, split on NUL into argv tokens, decided as if the index knew the input as a
//! 4K HDR10 version with a 1080p SDR sibling: version choice, stream remap, output plan.
//! The body and its assertions are in `../harness.rs`, shared with the regression replay
//! (`shim/tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = harness::switch(data);
});
