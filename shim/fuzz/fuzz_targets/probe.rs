//! Any bytes as a media file: the header probe and the SPS readers.
//! The body and its assertions are in `../harness.rs`, shared with the regression replay
//! (`shim/tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = harness::probe(data);
});
