//! The only place the shim touches the process: resolve the real transcoder and exec it.
//!
//! Exec, don't spawn: PMS stops transcoders with SIGKILL, so a wrapper that stays alive as a
//! parent cannot clean up its child (transcoder-args.md §0.3). argv[0] is preserved, the
//! working directory and stdio are inherited untouched, and nothing is ever written to
//! stdout.
//!
//! The shim must be invisible, signals included (issue 9 §2): the real transcoder gets
//! exactly the signal mask and SIGPIPE disposition Plex gave the shim. std's
//! `CommandExt::exec` resets SIGPIPE to default (and may touch the mask), so this module
//! calls `execv(2)` itself, after putting back what [`Signals::record`] saw at start.
//! The environment is inherited with one addition: [`RECURSION_VAR`], the recursion guard.

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Counts how many shims this exec chain has passed (rustup's `RUST_RECURSION_COUNT`). A
/// `real_transcoder` that is a script exec'ing the shim again is not caught by the same-file
/// check and looped for ever, ~1,000 decision records a second (issue 9 §2).
pub const RECURSION_VAR: &str = "DOWNSHIFTARR_RECURSION_COUNT";
/// The shim refuses to run when this many shims already exec'd each other in one chain.
/// Plex starts the shim once and the shim the real transcoder once: 1 is all a working
/// install ever sees.
pub const MAX_RECURSION: u32 = 3;

/// How many shims came before this one in the exec chain (0 when Plex started it).
pub fn recursion_depth(value: Option<&OsStr>) -> u32 {
    value
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The message when the recursion guard trips.
pub fn recursion_message(depth: u32) -> String {
    format!(
        "refusing to run: the shim was started by itself {depth} times in a row \
         ({RECURSION_VAR}={depth}); the real transcoder it is configured with \
         (DOWNSHIFTARR_REAL_TRANSCODER or shim.real_transcoder) leads back to the shim: \
         point it at the real Plex Transcoder"
    )
}

/// The signal state Plex handed the shim: the blocked mask and SIGPIPE's disposition.
pub struct Signals {
    mask: libc::sigset_t,
    sigpipe: libc::sigaction,
}

impl Signals {
    /// Reads the current mask and SIGPIPE disposition. Call first thing, before anything
    /// (a write to stderr, say) may change them.
    pub fn record() -> Option<Signals> {
        // SAFETY: both are plain C structs; zeroed is a valid initial value, and the calls
        // only write into them (a null new set / new action means "query").
        unsafe {
            let mut mask: libc::sigset_t = std::mem::zeroed();
            let mut sigpipe: libc::sigaction = std::mem::zeroed();
            if libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask) != 0
                || libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut sigpipe) != 0
            {
                return None;
            }
            Some(Signals { mask, sigpipe })
        }
    }

    /// Puts the recorded state back (right before exec).
    fn restore(&self) {
        // SAFETY: restoring values read by `record` from this very process.
        unsafe {
            libc::sigaction(libc::SIGPIPE, &self.sigpipe, std::ptr::null_mut());
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.mask, std::ptr::null_mut());
        }
    }
}

/// Writes `downshiftarr: <msg>` and a newline to stderr, ignoring every error.
///
/// `eprintln!` panics when stderr is a closed pipe and SIGPIPE is ignored (an abort in a
/// `no_main` binary), and the write kills the process when SIGPIPE is default: either way
/// Plex saw a crash instead of the documented exit status (issue 9 §2). This is only
/// called on the way out, so SIGPIPE is ignored for good first.
pub fn say(msg: &str) {
    let mut line = Vec::with_capacity(msg.len() + 15);
    line.extend_from_slice(b"downshiftarr: ");
    line.extend_from_slice(msg.as_bytes());
    line.push(b'\n');
    // SAFETY: setting a disposition to SIG_IGN; `write` gets a valid buffer and length.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        let mut done = 0;
        while done < line.len() {
            let n = libc::write(2, line[done..].as_ptr().cast(), line.len() - done);
            if n > 0 {
                done += n as usize;
            } else if n < 0
                && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
            {
                continue;
            } else {
                break;
            }
        }
    }
}

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

/// Execs `real` with `argv0` and `args`, the signal state `signals` and the recursion
/// counter raised to `depth + 1`. Returns only on failure, with the exit status to use and
/// a one-line message.
pub fn exec(
    real: &Path,
    argv0: &OsStr,
    args: &[OsString],
    signals: Option<&Signals>,
    depth: u32,
) -> (i32, String) {
    if is_self(real) {
        return (
            EXIT_NOT_EXECUTABLE,
            format!("refusing to exec {}: it is this shim", real.display()),
        );
    }
    let cstr = |s: &OsStr| CString::new(s.as_bytes());
    let (Ok(path), Ok(argv)) = (
        cstr(real.as_os_str()),
        std::iter::once(argv0)
            .chain(args.iter().map(OsString::as_os_str))
            .map(cstr)
            .collect::<Result<Vec<CString>, _>>(),
    ) else {
        return (
            EXIT_NOT_EXECUTABLE,
            format!(
                "unable to exec real transcoder {}: an argument contains a NUL byte",
                real.display()
            ),
        );
    };
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // The process is single-threaded here: changing the environment cannot race.
    std::env::set_var(RECURSION_VAR, (depth + 1).to_string());
    if let Some(s) = signals {
        s.restore();
    }
    // SAFETY: `path` and every `ptrs` entry are valid NUL-terminated strings that outlive
    // the call; `ptrs` ends with a null pointer. `execv` returns only on failure.
    unsafe { libc::execv(path.as_ptr(), ptrs.as_ptr()) };
    let err = std::io::Error::last_os_error();
    let code = match err.kind() {
        std::io::ErrorKind::NotFound => EXIT_NOT_FOUND,
        _ => EXIT_NOT_EXECUTABLE,
    };
    (
        code,
        format!("unable to exec real transcoder {}: {err}", real.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recursion_depth_reads_the_counter() {
        assert_eq!(recursion_depth(None), 0);
        assert_eq!(recursion_depth(Some(OsStr::new("2"))), 2);
        assert_eq!(recursion_depth(Some(OsStr::new("junk"))), 0);
        assert!(recursion_message(3).contains("DOWNSHIFTARR_RECURSION_COUNT=3"));
    }
}
