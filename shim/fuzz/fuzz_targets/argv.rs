//! Any byte string, split on NUL into argv tokens, decided by the shim under three source facts.
//! The body and its assertions are in `../harness.rs`, shared with the regression replay
//! (`shim/tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = harness::argv(data);
});
