//! `downshiftarr daemon`: everything that is not a transcode decision.
//!
//! One process, a thread per job, one shutdown signal fanned out to all of them
//! (`lifecycle`), jobs restarted with back-off when they fail (`supervisor`). The first job is
//! the transcoder healer (`heal`); the shim's socket service and the library index follow.

pub mod heal;
pub mod lifecycle;
pub mod logging;
pub mod supervisor;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use crate::cli::DaemonArgs;
use crate::config::{self, Config, PLEX_DIRS};
use lifecycle::{InstanceLock, Shutdown};

/// How long jobs get to finish after SIGTERM before the daemon exits anyway.
const STOP_GRACE: Duration = Duration::from_secs(4);

pub fn run(args: DaemonArgs) -> Result<ExitCode> {
    let path = config::path(args.config.as_deref());
    let cfg = config::load_strict(&path)?;
    let signals = lifecycle::block_signals()?;
    let levels = logging::init(args.verbose || cfg.daemon.debug)?;
    let _lock = InstanceLock::acquire(Path::new(&cfg.daemon.state_dir))?;
    tracing::info!(version = downshiftarr_shim::VERSION, config = %path.display(), "downshiftarr daemon starting");

    let shutdown = Shutdown::default();
    lifecycle::spawn_signal_thread(signals, shutdown.clone())?;
    let mut jobs = Vec::new();
    if cfg.daemon.heal_transcoder {
        match plex_dir(&cfg) {
            Some(dir) => {
                let paths = heal::Paths::new(
                    &dir,
                    Path::new(&cfg.daemon.shim_binary),
                    Path::new(&cfg.daemon.state_dir),
                );
                let interval = Duration::from_secs(cfg.daemon.heal_interval_s as u64);
                jobs.push(supervisor::spawn(
                    "heal",
                    shutdown.clone(),
                    Box::new(move |sd| heal::run(&paths, interval, sd)),
                ));
            }
            None => tracing::warn!(
                "no Plex install found ({}): the transcoder healer is off",
                PLEX_DIRS.join(", ")
            ),
        }
    }
    lifecycle::notify("READY=1");
    tracing::info!("ready");

    let mut reloads = shutdown.reload_generation();
    while !shutdown.wait(Duration::from_secs(1)) {
        if shutdown.reload_generation() != reloads {
            reloads = shutdown.reload_generation();
            lifecycle::notify("RELOADING=1");
            match config::load_strict(&path) {
                Ok(new) => levels.set_debug(args.verbose || new.daemon.debug),
                Err(e) => {
                    tracing::error!("reload failed, keeping the running configuration: {e:#}")
                }
            }
            lifecycle::notify("READY=1");
        }
    }
    lifecycle::notify("STOPPING=1");
    let deadline = std::time::Instant::now() + STOP_GRACE;
    for j in jobs {
        while !j.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if j.is_finished() {
            let _ = j.join();
        }
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// The Plex directory: configured, else the first usual place that exists.
fn plex_dir(cfg: &Config) -> Option<PathBuf> {
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
