//! The one JSON configuration file, as the daemon and admin CLI see it: every section, every
//! key with its default, unknown keys rejected with their path.
//!
//! The `shim` section's type lives in the shim library (`downshiftarr_shim::config`), which
//! reads only that section on its hot path; this module owns the file as a whole.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use downshiftarr_shim::config::ShimConfig;
use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub shim: ShimConfig,
    pub daemon: DaemonConfig,
}

/// The `daemon` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// SQLite files, the instance lock, the original transcoder's checksum.
    pub state_dir: String,
    /// The shim socket lives here.
    pub runtime_dir: String,
    /// Debug logs (also `--verbose`); re-read on SIGHUP.
    pub debug: bool,
    /// Watch `Plex Transcoder` and put the shim back when a Plex update replaces it.
    pub heal_transcoder: bool,
    /// The Plex install directory; empty: the first of the usual places that exists.
    pub plex_dir: String,
    /// The shim binary the healer installs (the installer's master copy).
    pub shim_binary: String,
    /// Backstop check interval for the healer, seconds (inotify reacts at once).
    pub heal_interval_s: u32,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            state_dir: "/var/lib/downshiftarr".into(),
            runtime_dir: "/run/downshiftarr".into(),
            debug: false,
            heal_transcoder: true,
            plex_dir: String::new(),
            shim_binary: "/usr/lib/downshiftarr/downshiftarr-shim".into(),
            heal_interval_s: 5,
        }
    }
}

impl DaemonConfig {
    pub fn validate(&self) -> Result<()> {
        for (key, v) in [
            ("state_dir", &self.state_dir),
            ("runtime_dir", &self.runtime_dir),
            ("shim_binary", &self.shim_binary),
        ] {
            if !v.starts_with('/') {
                bail!("daemon.{key}: must be an absolute path, got {v:?}");
            }
        }
        if !self.plex_dir.is_empty() && !self.plex_dir.starts_with('/') {
            bail!(
                "daemon.plex_dir: must be an absolute path, got {:?}",
                self.plex_dir
            );
        }
        if !(1..=300).contains(&self.heal_interval_s) {
            bail!(
                "daemon.heal_interval_s: {} is outside 1..=300",
                self.heal_interval_s
            );
        }
        Ok(())
    }
}

/// Where Plex is installed, in the order the installer looks.
pub const PLEX_DIRS: &[&str] = &[
    "/usr/lib/plexmediaserver",
    "/usr/lib64/plexmediaserver",
    "/volume1/@appstore/PlexMediaServer",
    "/volume1/@appstore/Plex Media Server",
];

/// The config path from a flag, the environment, or the default.
pub fn path(flag: Option<&Path>) -> PathBuf {
    match flag {
        Some(p) => p.to_path_buf(),
        None => downshiftarr_shim::config::config_path(&|k| std::env::var(k).ok()),
    }
}

/// Loads and validates the file strictly. A missing file is the defaults.
pub fn load_strict(path: &Path) -> Result<Config> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
        Err(e) => {
            return Err(e).with_context(|| format!("unable to read config {}", path.display()))
        }
    };
    let c: Config = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))?;
    if let Err(e) = c.shim.validate() {
        bail!("config {}: {e}", path.display());
    }
    c.daemon
        .validate()
        .with_context(|| format!("config {}", path.display()))?;
    Ok(c)
}
