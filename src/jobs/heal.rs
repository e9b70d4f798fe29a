//! Healing after a Plex update that bypasses dpkg.
//!
//! Containers that run `dpkg -i` at start, Synology updates and manual copies overwrite the
//! shim with a fresh `Plex Transcoder`, and protection silently stops — the top complaint about
//! every wrapper (transcoder-wrappers.md §1.4). This job watches the transcoder's directory with
//! inotify (with a periodic backstop) and, when a genuine Plex binary appears at the transcoder
//! path, moves it aside as the new original (replacing the stale one) and puts the shim back.
//!
//! A file is ours when it contains the shim's marker string — never judged by hash: a Windows
//! wrapper once parked its own old build as "the original" because its hash check no longer
//! recognised it (W8). A file that is not a complete ELF executable yet (a copy in progress)
//! is left alone until it is.

use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use sha2::{Digest, Sha256};

use crate::config::{Config, PLEX_DIRS};
use crate::daemon::ctx::Ctx;
use crate::daemon::lifecycle::Shutdown;
use downshiftarr_shim::exec::REAL_SUFFIX;

/// The transcoder's file name.
pub const TRANSCODER: &str = "Plex Transcoder";

/// The job: off unless `daemon.heal_transcoder`, and when no Plex install is found.
pub fn job(ctx: &Ctx) -> Result<Option<super::Job>> {
    let cfg = ctx.config();
    if !cfg.daemon.heal_transcoder {
        return Ok(None);
    }
    let Some(dir) = plex_dir(&cfg) else {
        tracing::warn!(
            "no Plex install found ({}): the transcoder healer is off",
            PLEX_DIRS.join(", ")
        );
        return Ok(None);
    };
    let paths = Paths::new(
        &dir,
        Path::new(&cfg.daemon.shim_binary),
        Path::new(&cfg.daemon.state_dir),
    );
    let interval = Duration::from_secs(cfg.daemon.heal_interval_s as u64);
    Ok(Some(Box::new(move |sd: &Shutdown| {
        run(&paths, interval, sd)
    })))
}

/// The Plex directory: configured, else the first usual place that exists.
pub fn plex_dir(cfg: &Config) -> Option<PathBuf> {
    if !cfg.daemon.plex_dir.is_empty() {
        return Some(PathBuf::from(&cfg.daemon.plex_dir));
    }
    PLEX_DIRS.iter().map(PathBuf::from).find(|p| p.is_dir())
}

/// Used by `check-config` to show where the daemon would look.
pub fn describe_plex_dir(cfg: &Config) -> String {
    plex_dir(cfg)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "not found".into())
}

/// Paths the healer works on.
#[derive(Clone, Debug)]
pub struct Paths {
    pub transcoder: PathBuf,
    pub real: PathBuf,
    pub shim: PathBuf,
    /// `original.sha256`: the checksum of the parked original, for the uninstaller.
    pub checksum: PathBuf,
}

impl Paths {
    pub fn new(plex_dir: &Path, shim: &Path, state_dir: &Path) -> Paths {
        let transcoder = plex_dir.join(TRANSCODER);
        let mut real = OsString::from(transcoder.as_os_str());
        real.push(REAL_SUFFIX);
        Paths {
            transcoder,
            real: PathBuf::from(real),
            shim: shim.to_path_buf(),
            checksum: state_dir.join("original.sha256"),
        }
    }
}

/// What is at a path.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    Missing,
    /// Our shim (the marker is in it).
    Shim,
    /// A complete executable that is not ours: a Plex transcoder.
    Genuine,
    /// Something else (a partial copy, not executable, not ELF): wait.
    Unsettled,
}

/// Whether `bytes` contain the shim's marker.
pub fn has_marker(bytes: &[u8]) -> bool {
    memchr::memmem::find(bytes, downshiftarr_shim::MARKER.as_bytes()).is_some()
}

/// Classifies the file at `p`.
pub fn classify(p: &Path) -> Result<Kind> {
    let meta = match fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Kind::Missing),
        Err(e) => return Err(e).with_context(|| format!("unable to stat {}", p.display())),
    };
    if !meta.is_file() {
        return Ok(Kind::Unsettled);
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    fs::File::open(p)
        .and_then(|f| f.take(512 << 20).read_to_end(&mut bytes))
        .with_context(|| format!("unable to read {}", p.display()))?;
    if has_marker(&bytes) {
        return Ok(Kind::Shim);
    }
    let elf = bytes.starts_with(b"\x7fELF") && bytes.len() > 64;
    let script = bytes.starts_with(b"#!");
    if (elf || script) && meta.permissions().mode() & 0o111 != 0 {
        Ok(Kind::Genuine)
    } else {
        Ok(Kind::Unsettled)
    }
}

/// What one healing pass did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The shim is in place.
    Fine,
    /// A new genuine binary was parked as the original and the shim put back.
    Adopted,
    /// The transcoder path was empty; the shim was put back in front of the original.
    Restored,
    /// Nothing to protect (no Plex here) or a file still being written.
    Waiting(&'static str),
}

/// Heals once.
pub fn heal_once(p: &Paths) -> Result<Outcome> {
    match classify(&p.transcoder)? {
        Kind::Shim => Ok(Outcome::Fine),
        Kind::Unsettled => Ok(Outcome::Waiting("transcoder path holds an incomplete file")),
        Kind::Missing => {
            if classify(&p.real)? == Kind::Genuine {
                install_shim(p)?;
                tracing::warn!(path = %p.transcoder.display(), "the transcoder path was empty: put the shim back");
                Ok(Outcome::Restored)
            } else {
                Ok(Outcome::Waiting("no Plex transcoder here"))
            }
        }
        Kind::Genuine => {
            // Settle: a copy still in progress keeps changing size.
            let before = fs::metadata(&p.transcoder).map(|m| (m.len(), m.mtime_nsec()))?;
            std::thread::sleep(Duration::from_millis(200));
            let after = fs::metadata(&p.transcoder).map(|m| (m.len(), m.mtime_nsec()))?;
            if before != after {
                return Ok(Outcome::Waiting("transcoder is still being written"));
            }
            let shim = fs::read(&p.shim)
                .with_context(|| format!("unable to read the shim {}", p.shim.display()))?;
            if !has_marker(&shim) {
                bail!(
                    "{} is not a downshiftarr shim (no marker): refusing to install it",
                    p.shim.display()
                );
            }
            // Park the new genuine binary as the original (replacing the stale one), then
            // put the shim back. Both are renames within one directory: atomic.
            fs::rename(&p.transcoder, &p.real)
                .with_context(|| format!("unable to move {} aside", p.transcoder.display()))?;
            install_shim_bytes(p, &shim)?;
            record_checksum(p);
            tracing::warn!(
                original = %p.real.display(),
                "Plex replaced the transcoder: parked the new binary as the original and put the shim back"
            );
            Ok(Outcome::Adopted)
        }
    }
}

fn install_shim(p: &Paths) -> Result<()> {
    let shim = fs::read(&p.shim)
        .with_context(|| format!("unable to read the shim {}", p.shim.display()))?;
    if !has_marker(&shim) {
        bail!(
            "{} is not a downshiftarr shim (no marker)",
            p.shim.display()
        );
    }
    install_shim_bytes(p, &shim)
}

/// Writes the shim to a temporary name in the same directory, then renames it into place.
fn install_shim_bytes(p: &Paths, shim: &[u8]) -> Result<()> {
    let dir = p
        .transcoder
        .parent()
        .context("transcoder path has no directory")?;
    let tmp = dir.join(format!(
        ".{TRANSCODER}.downshiftarr-tmp.{}",
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        fs::write(&tmp, shim)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
        if let Ok(m) = fs::metadata(&p.real) {
            // Same owner as the original, when we may set it (root, or CAP_CHOWN).
            let _ = std::os::unix::fs::chown(&tmp, Some(m.uid()), Some(m.gid()));
        }
        fs::rename(&tmp, &p.transcoder)
    };
    write()
        .inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
        .with_context(|| format!("unable to install the shim at {}", p.transcoder.display()))
}

/// Records the parked original's checksum, for the uninstaller's byte-for-byte check.
fn record_checksum(p: &Paths) {
    // `sha256sum` format with the bare file name, checked from its directory by the uninstaller.
    let name = p
        .real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sum = fs::read(&p.real).map(|b| format!("{:x}  {name}\n", Sha256::digest(&b)));
    match sum.and_then(|s| fs::write(&p.checksum, s)) {
        Ok(()) => {}
        Err(e) => tracing::warn!(
            "unable to record the original's checksum in {}: {e}",
            p.checksum.display()
        ),
    }
}

/// The healer job: inotify on the transcoder's directory, a backstop every `interval`.
pub fn run(p: &Paths, interval: Duration, shutdown: &Shutdown) -> Result<()> {
    let dir = p
        .transcoder
        .parent()
        .context("transcoder path has no directory")?
        .to_path_buf();
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
        .context("unable to start inotify")?;
    let mut watching = false;
    let mut next_check = Instant::now();
    let mut last_reported: Option<String> = None;
    tracing::info!(transcoder = %p.transcoder.display(), "watching the transcoder");
    while !shutdown.is_set() {
        if !watching {
            let flags = AddWatchFlags::IN_CREATE
                | AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_MOVED_FROM
                | AddWatchFlags::IN_CLOSE_WRITE
                | AddWatchFlags::IN_DELETE
                | AddWatchFlags::IN_ATTRIB;
            watching = inotify.add_watch(&dir, flags).is_ok();
        }
        let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(250u16));
        let mut touched = false;
        while let Ok(events) = inotify.read_events() {
            if events.is_empty() {
                break;
            }
            touched |= events
                .iter()
                .any(|e| e.name.as_deref().is_some_and(|n| n == TRANSCODER));
            if events.iter().any(|e| {
                e.mask
                    .contains(nix::sys::inotify::AddWatchFlags::IN_IGNORED)
            }) {
                watching = false; // the directory went away (package removal): re-watch later
            }
        }
        if touched || Instant::now() >= next_check {
            next_check = Instant::now() + interval;
            match heal_once(p) {
                Ok(Outcome::Waiting(why)) => {
                    if last_reported.as_deref() != Some(why) {
                        tracing::debug!("healer waiting: {why}");
                        last_reported = Some(why.to_string());
                    }
                    // Look again soon: a copy in progress finishes quickly.
                    next_check = Instant::now() + Duration::from_millis(500);
                }
                Ok(_) => last_reported = None,
                Err(e) => {
                    let msg = format!("{e:#}");
                    if last_reported.as_deref() != Some(msg.as_str()) {
                        tracing::error!("healer: {msg}");
                        last_reported = Some(msg);
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exe(p: &Path, body: &[u8]) {
        fs::write(p, body).unwrap();
        fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn setup() -> (tempfile::TempDir, Paths) {
        let d = tempfile::tempdir().unwrap();
        let plex = d.path().join("plex");
        fs::create_dir_all(&plex).unwrap();
        let shim = d.path().join("shim");
        exe(
            &shim,
            format!("\x7fELF{}{}", "x".repeat(80), downshiftarr_shim::MARKER).as_bytes(),
        );
        let p = Paths::new(&plex, &shim, d.path());
        (d, p)
    }

    #[test]
    fn adopts_a_new_genuine_binary_and_never_parks_the_shim() {
        let (_d, p) = setup();
        let v1 = format!("\x7fELF{}plex-v1", "y".repeat(80));
        exe(&p.transcoder, v1.as_bytes());
        assert_eq!(heal_once(&p).unwrap(), Outcome::Adopted);
        assert_eq!(fs::read(&p.real).unwrap(), v1.as_bytes());
        assert_eq!(classify(&p.transcoder).unwrap(), Kind::Shim);
        assert_eq!(heal_once(&p).unwrap(), Outcome::Fine);
        // An update overwrites the shim: the new binary replaces the stale original.
        let v2 = format!("\x7fELF{}plex-v2", "z".repeat(80));
        exe(&p.transcoder, v2.as_bytes());
        assert_eq!(heal_once(&p).unwrap(), Outcome::Adopted);
        assert_eq!(fs::read(&p.real).unwrap(), v2.as_bytes());
        assert!(fs::read_to_string(&p.checksum)
            .unwrap()
            .starts_with(&format!("{:x}", Sha256::digest(v2.as_bytes()))));
    }

    #[test]
    fn leaves_partial_and_foreign_files_alone() {
        let (_d, p) = setup();
        fs::write(&p.transcoder, b"\x7fEL").unwrap(); // not executable, truncated
        assert!(matches!(heal_once(&p).unwrap(), Outcome::Waiting(_)));
        assert!(!p.real.exists());
        fs::remove_file(&p.transcoder).unwrap();
        assert_eq!(
            heal_once(&p).unwrap(),
            Outcome::Waiting("no Plex transcoder here")
        );
    }

    #[test]
    fn refuses_to_install_something_that_is_not_the_shim() {
        let (_d, p) = setup();
        exe(
            &p.shim,
            b"\x7fELF not a shim at all, just bytes to fill the header........................",
        );
        exe(
            &p.transcoder,
            format!("\x7fELF{}plex", "y".repeat(80)).as_bytes(),
        );
        assert!(heal_once(&p)
            .unwrap_err()
            .to_string()
            .contains("not a downshiftarr shim"));
        assert!(!p.real.exists(), "nothing was moved");
    }
}
