//! Any bytes as a media file: the header probe must return, never panic, never read more
//! than its budget.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = downshiftarr_shim::probe::probe_bytes(data, 1 << 20);
    let _ = downshiftarr_shim::probe::sps::hevc(data);
    let _ = downshiftarr_shim::probe::sps::h264(data);
});
