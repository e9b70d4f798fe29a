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
}

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
    Ok(c)
}
