//! `Plex Transcoder`, as installed by downshiftarr: decide, then exec the real one.
//!
//! `#![no_main]`: Plex starts this binary for every transcode, thumbnail and analysis job, so
//! start-up cost matters (README, "Speed"). std's runtime set-up (stack-guard discovery,
//! alternate signal stack, SIGPIPE and stdio fix-ups) is measurable on every start and buys
//! the shim nothing: it writes nothing to stdout and ends in `exec`, which resets signal
//! dispositions itself. On musl, std captures argv only in that set-up, so argv is taken
//! from the C entry point here.

#![no_main]

use std::ffi::{c_char, c_int, CStr, OsString};
use std::os::unix::ffi::OsStringExt;

#[global_allocator]
static ARENA: downshiftarr_shim::arena::Arena = downshiftarr_shim::arena::Arena;

#[unsafe(no_mangle)]
/// # Safety
/// Called once by the C runtime, with `argc` valid NUL-terminated strings in `argv`.
pub unsafe extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    // Keep the marker in the binary (see `downshiftarr_shim::MARKER`).
    std::hint::black_box(downshiftarr_shim::MARKER);
    let args: Vec<OsString> = (0..usize::try_from(argc).unwrap_or(0))
        .map(|i| {
            // SAFETY: the C runtime passes `argc` valid, NUL-terminated strings in `argv`.
            let s = unsafe { CStr::from_ptr(*argv.add(i)) };
            OsString::from_vec(s.to_bytes().to_vec())
        })
        .collect();
    downshiftarr_shim::shim::run(args)
}
