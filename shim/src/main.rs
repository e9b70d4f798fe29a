//! `Plex Transcoder`, as installed by downshiftarr: decide, then exec the real one.

fn main() {
    // Keep the marker in the binary (see `downshiftarr_shim::MARKER`).
    std::hint::black_box(downshiftarr_shim::MARKER);
    std::process::exit(downshiftarr_shim::shim::run());
}
