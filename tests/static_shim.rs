//! The shim is statically linked: Plex puts its own musl-built libraries on LD_LIBRARY_PATH,
//! and a dynamically linked glibc program can crash there (transcoder-args.md §10).

use std::process::Command;

use crate::plex_job::PlexJob;
use crate::util;

/// Whether an ELF file has a PT_INTERP program header (i.e. needs a dynamic loader).
fn has_interpreter(elf: &[u8]) -> bool {
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "64-bit ELF expected");
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..phnum)
        .any(|i| u32::from_le_bytes(elf[phoff + i * phentsize..][..4].try_into().unwrap()) == 3)
}

#[test]
fn shim_has_no_dynamic_loader() {
    let elf = std::fs::read(util::shim()).unwrap();
    assert!(
        !has_interpreter(&elf),
        "the shim must be static (no PT_INTERP)"
    );
    // And the check itself can fail: the admin CLI is an ordinary dynamic executable.
    assert!(has_interpreter(&std::fs::read(util::cli()).unwrap()));
}

#[test]
fn shim_runs_with_broken_libraries_on_ld_library_path() {
    let dir = util::tempdir();
    let libs = dir.path().join("plex-libs");
    std::fs::create_dir_all(&libs).unwrap();
    for name in [
        "libc.so.6",
        "libgcc_s.so.1",
        "libm.so.6",
        "libpthread.so.0",
        "libdl.so.2",
    ] {
        std::fs::write(libs.join(name), b"\x7fELF broken on purpose").unwrap();
    }
    // Proof the trap is real: a dynamically linked program dies there.
    let dynamic = Command::new("/bin/true")
        .env("LD_LIBRARY_PATH", &libs)
        .output()
        .unwrap();
    assert!(
        !dynamic.status.success(),
        "/bin/true should fail with broken libs on LD_LIBRARY_PATH"
    );
    // The shim decides (a refusal: it must run its whole decision path), logs and exits.
    let log = dir.path().join("decisions.jsonl");
    let out = Command::new(util::shim())
        .args(
            PlexJob::sw_dash("/nonexistent/x.mkv")
                .hints(&[])
                .progress(None)
                .args(),
        )
        .env("LD_LIBRARY_PATH", &libs)
        .env("DOWNSHIFTARR_REAL_TRANSCODER", "/nonexistent/real")
        .env("DOWNSHIFTARR_CONFIG", dir.path().join("none.json"))
        .env("DOWNSHIFTARR_SOCKET", dir.path().join("none.sock"))
        .env("DOWNSHIFTARR_DECISION_LOG", &log)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(69),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("downshiftarr: refused"));
    assert!(util::read(&log).contains("\"decision\":\"refuse\""));
    // And a pass-through reaches exec (here: a missing target, reported by the shim itself).
    let out = Command::new(util::shim())
        .arg("-version")
        .env("LD_LIBRARY_PATH", &libs)
        .env("DOWNSHIFTARR_REAL_TRANSCODER", "/nonexistent/real")
        .env("DOWNSHIFTARR_CONFIG", dir.path().join("none.json"))
        .env("DOWNSHIFTARR_DECISION_LOG", "")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr)
        .starts_with("downshiftarr: unable to exec real transcoder /nonexistent/real"));
}
