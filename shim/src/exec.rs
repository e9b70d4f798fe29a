//! The only place the shim touches the process: resolve the real transcoder and exec it.
//!
//! Exec, don't spawn: PMS stops transcoders with SIGKILL, so a wrapper that stays alive as a
//! parent cannot clean up its child (transcoder-args.md §0.3). std's `CommandExt::exec`
//! resets SIGPIPE and the signal mask; argv[0] is preserved, the environment, working
//! directory and stdio are inherited untouched, and nothing is ever written to stdout.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The suffix of the real transcoder next to the shim.
pub const REAL_SUFFIX: &str = ".downshiftarr-real";

/// Exit status when the real transcoder does not exist.
pub const EXIT_NOT_FOUND: i32 = 127;
/// Exit status when it exists but cannot be executed (or is the shim itself).
pub const EXIT_NOT_EXECUTABLE: i32 = 126;
/// Exit status of a refused job.
pub const EXIT_REFUSED: i32 = 69;

/// Where the real transcoder is: env, then config, then `<shim>.downshiftarr-real`.
pub fn resolve_real(env_value: Option<&OsStr>, configured: &str) -> Result<PathBuf, String> {
    if let Some(p) = env_value.filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_absolute() {
            return Err(format!(
                "DOWNSHIFTARR_REAL_TRANSCODER must be absolute, got {}",
                p.display()
            ));
        }
        return Ok(p);
    }
    if !configured.is_empty() {
        return Ok(PathBuf::from(configured));
    }
    let me = std::env::current_exe()
        .map_err(|e| format!("unable to resolve the shim's own path: {e}"))?;
    let mut s: OsString = me.into_os_string();
    s.push(REAL_SUFFIX);
    Ok(PathBuf::from(s))
}

/// Whether `real` is the very file this process runs (a recursion guard: an installer bug or
/// a Plex update must never make the shim exec itself forever).
pub fn is_self(real: &Path) -> bool {
    let (Ok(me), Ok(target)) = (std::fs::metadata("/proc/self/exe"), std::fs::metadata(real))
    else {
        return false;
    };
    me.dev() == target.dev() && me.ino() == target.ino()
}

/// Execs `real` with `argv0` and `args`. Returns only on failure, with the exit status to use
/// and a one-line message.
pub fn exec(real: &Path, argv0: &OsStr, args: &[OsString]) -> (i32, String) {
    if is_self(real) {
        return (
            EXIT_NOT_EXECUTABLE,
            format!("refusing to exec {}: it is this shim", real.display()),
        );
    }
    let err = Command::new(real).arg0(argv0).args(args).exec();
    let code = match err.kind() {
        std::io::ErrorKind::NotFound => EXIT_NOT_FOUND,
        _ => EXIT_NOT_EXECUTABLE,
    };
    (
        code,
        format!("unable to exec real transcoder {}: {err}", real.display()),
    )
}
