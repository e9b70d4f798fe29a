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
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Config {
    pub plex: PlexConfig,
    pub shim: ShimConfig,
    pub index: IndexConfig,
    pub daemon: DaemonConfig,
    pub enforce: EnforceConfig,
    pub tautulli: TautulliConfig,
}

/// The `plex` section. The token is a secret: `PLEX_TOKEN` or a token file, never logged.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlexConfig {
    /// Base URL (`PLEX_URL`).
    pub url: String,
    /// The server owner's token (`PLEX_TOKEN` wins); prefer `token_file`.
    pub token: String,
    /// A file holding the token; must not be readable or writable by others.
    pub token_file: String,
    pub connect_timeout_ms: u64,
    pub read_timeout_ms: u64,
}

impl Default for PlexConfig {
    fn default() -> Self {
        PlexConfig {
            url: "http://127.0.0.1:32400".into(),
            token: String::new(),
            token_file: String::new(),
            connect_timeout_ms: 2000,
            read_timeout_ms: 15000,
        }
    }
}

impl std::fmt::Debug for PlexConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlexConfig")
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .field("token_file", &self.token_file)
            .finish()
    }
}

impl PlexConfig {
    /// The URL and token in effect: environment first, then the token file, then the file.
    pub fn resolved(&self) -> Result<(String, String)> {
        let url = std::env::var("PLEX_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| self.url.clone());
        if let Ok(t) = std::env::var("PLEX_TOKEN") {
            if !t.is_empty() {
                return Ok((url, t));
            }
        }
        if !self.token_file.is_empty() {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(&self.token_file)
                .with_context(|| format!("plex.token_file {}", self.token_file))?;
            if meta.permissions().mode() & 0o027 != 0 {
                bail!(
                    "plex.token_file {}: readable or writable by others (chmod 0640 or stricter)",
                    self.token_file
                );
            }
            let t = std::fs::read_to_string(&self.token_file)
                .with_context(|| format!("plex.token_file {}", self.token_file))?;
            let t = t.lines().next().unwrap_or_default().trim().to_string();
            if t.is_empty() {
                bail!("plex.token_file {} is empty", self.token_file);
            }
            return Ok((url, t));
        }
        if self.token.is_empty() {
            bail!("no Plex token: set PLEX_TOKEN, plex.token_file or plex.token");
        }
        Ok((url, self.token.clone()))
    }
}

/// One path mapping: Plex sees `plex`, this machine sees `local` (longest prefix wins).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathMapping {
    pub plex: String,
    pub local: String,
}

/// The `index` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndexConfig {
    /// The SQLite file; empty: `<daemon.state_dir>/index.sqlite`.
    pub database: String,
    /// Items per listing page (`X-Plex-Container-Size`).
    pub page_size: u64,
    /// Items per `/library/metadata/k1,k2,…` request.
    pub metadata_batch: usize,
    /// Seconds between incremental syncs; 0: only at start and on demand.
    pub sync_interval_s: u64,
    /// Seconds between ratingKey-set diffs that find deleted items (a full listing of each
    /// section); `sync --full` always runs one. 0: on every pass.
    pub deletion_check_interval_s: u64,
    /// Plex path prefixes as seen from this machine.
    pub path_mappings: Vec<PathMapping>,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            database: String::new(),
            page_size: 500,
            metadata_batch: 50,
            sync_interval_s: 900,
            deletion_check_interval_s: 21_600,
            path_mappings: Vec::new(),
        }
    }
}

impl IndexConfig {
    pub fn database_path(&self, daemon: &DaemonConfig) -> std::path::PathBuf {
        if self.database.is_empty() {
            Path::new(&daemon.state_dir).join("index.sqlite")
        } else {
            PathBuf::from(&self.database)
        }
    }

    /// Maps a Plex path to a local one (longest prefix wins).
    pub fn local_path(&self, plex_path: &str) -> String {
        self.path_mappings
            .iter()
            .filter(|m| plex_path.starts_with(&m.plex))
            .max_by_key(|m| m.plex.len())
            .map(|m| format!("{}{}", m.local, &plex_path[m.plex.len()..]))
            .unwrap_or_else(|| plex_path.to_string())
    }
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
    /// Group owning the shim socket (mode 0660): the Plex group, so the transcoder may connect.
    pub socket_group: String,
    /// Extra uids / gids allowed on the socket (root, the daemon's uid and `socket_group` are).
    pub allowed_uids: Vec<u32>,
    pub allowed_gids: Vec<u32>,
    /// Loopback address for `/health` and `/metrics`; empty: off.
    pub http_listen: String,
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
            socket_group: "plex".into(),
            allowed_uids: Vec::new(),
            allowed_gids: Vec::new(),
            http_listen: "127.0.0.1:9877".into(),
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

/// The `enforce` section: what the daemon does about refused and missed transcodes. Every
/// key also takes the original Tautulli script's environment variable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnforceConfig {
    /// Terminate the Plex session of a transcode the shim refused, showing the scenario's
    /// `KILL_MESSAGE_*`.
    pub terminate_refused: bool,
    /// Looks for the Plex session of a transcode (`SESSION_LOOKUP_RETRIES`): the session
    /// appears only after the transcoder starts.
    pub session_lookup_retries: u32,
    /// Seconds between those looks (`SESSION_LOOKUP_DELAY_S`).
    pub session_lookup_delay_s: f64,
    /// The reactive guard: enforce protected video transcodes the shim did not handle.
    pub guard: bool,
    /// Observations of the same transcode before the guard acts (Plex often says
    /// "transcode" for a moment before settling on direct play).
    pub guard_observations: u32,
    /// Seconds between `/status/sessions` polls of the guard (notifications also trigger one).
    pub guard_interval_s: u64,
    /// The guard first tries to move the client to a compliant version (`playMedia` at the
    /// current offset, then a seek, through the server). Many newer apps ignore it: off.
    pub switch_client: bool,
    /// `SEEK_DELAY_S`, `SEEK_RETRIES`, `SEEK_RETRY_DELAY_S`.
    pub seek_delay_s: f64,
    pub seek_retries: u32,
    pub seek_retry_delay_s: f64,
    /// What the guard and the Tautulli trigger do when something fails: terminate (true) or
    /// leave the stream playing (`KILL_ON_*`).
    pub kill_on_plex_connect_fail: bool,
    pub kill_on_session_not_found: bool,
    pub kill_on_client_not_found: bool,
    pub kill_on_no_fallback_media: bool,
    pub kill_on_switch_fail: bool,
    pub kill_on_unexpected_error: bool,
    /// Observe only: log what would be done. Unset: follows `shim.shadow_mode`, so one
    /// switch (`SHADOW_MODE`) covers everything; set `false` to let the guard enforce while
    /// the shim only observes.
    pub shadow_mode: Option<bool>,
}

impl Default for EnforceConfig {
    fn default() -> Self {
        EnforceConfig {
            terminate_refused: true,
            session_lookup_retries: 8,
            session_lookup_delay_s: 0.5,
            guard: true,
            guard_observations: 2,
            guard_interval_s: 10,
            switch_client: false,
            seek_delay_s: 0.75,
            seek_retries: 3,
            seek_retry_delay_s: 0.5,
            kill_on_plex_connect_fail: true,
            kill_on_session_not_found: true,
            kill_on_client_not_found: true,
            kill_on_no_fallback_media: true,
            kill_on_switch_fail: true,
            kill_on_unexpected_error: true,
            shadow_mode: None,
        }
    }
}

/// Reads `KEY=value` settings the original way: flags `1`/`0`, numbers, seconds.
type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn env_flag(env: Env<'_>, key: &str, into: &mut bool, errors: &mut Vec<String>) {
    if let Some(v) = env(key) {
        match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => *into = true,
            "0" | "false" | "no" | "off" => *into = false,
            _ => errors.push(format!("{key}={v:?}: expected 1 or 0")),
        }
    }
}

fn env_num<T: std::str::FromStr>(env: Env<'_>, key: &str, into: &mut T, errors: &mut Vec<String>) {
    if let Some(v) = env(key) {
        match v.trim().parse() {
            Ok(x) => *into = x,
            Err(_) => errors.push(format!("{key}={v:?}: expected a number")),
        }
    }
}

impl EnforceConfig {
    /// Applies the original environment names; returns what could not be read.
    pub fn apply_env(&mut self, env: Env<'_>) -> Vec<String> {
        let mut e = Vec::new();
        env_num(
            env,
            "SESSION_LOOKUP_RETRIES",
            &mut self.session_lookup_retries,
            &mut e,
        );
        env_num(
            env,
            "SESSION_LOOKUP_DELAY_S",
            &mut self.session_lookup_delay_s,
            &mut e,
        );
        env_num(env, "SEEK_DELAY_S", &mut self.seek_delay_s, &mut e);
        env_num(env, "SEEK_RETRIES", &mut self.seek_retries, &mut e);
        env_num(
            env,
            "SEEK_RETRY_DELAY_S",
            &mut self.seek_retry_delay_s,
            &mut e,
        );
        for (key, field) in [
            (
                "KILL_ON_PLEX_CONNECT_FAIL",
                &mut self.kill_on_plex_connect_fail,
            ),
            (
                "KILL_ON_SESSION_NOT_FOUND",
                &mut self.kill_on_session_not_found,
            ),
            (
                "KILL_ON_CLIENT_NOT_FOUND",
                &mut self.kill_on_client_not_found,
            ),
            (
                "KILL_ON_NO_FALLBACK_MEDIA",
                &mut self.kill_on_no_fallback_media,
            ),
            ("KILL_ON_SWITCH_FAIL", &mut self.kill_on_switch_fail),
            (
                "KILL_ON_UNEXPECTED_ERROR",
                &mut self.kill_on_unexpected_error,
            ),
        ] {
            env_flag(env, key, field, &mut e);
        }
        e
    }

    pub fn validate(&self) -> Result<()> {
        if self.session_lookup_retries > 60 {
            bail!(
                "enforce.session_lookup_retries: {} is above 60",
                self.session_lookup_retries
            );
        }
        for (k, v) in [
            ("session_lookup_delay_s", self.session_lookup_delay_s),
            ("seek_delay_s", self.seek_delay_s),
            ("seek_retry_delay_s", self.seek_retry_delay_s),
        ] {
            if !(0.0..=30.0).contains(&v) {
                bail!("enforce.{k}: {v} is outside 0..=30 seconds");
            }
        }
        if !(1..=10).contains(&self.guard_observations) {
            bail!(
                "enforce.guard_observations: {} is outside 1..=10",
                self.guard_observations
            );
        }
        if !(1..=3600).contains(&self.guard_interval_s) {
            bail!(
                "enforce.guard_interval_s: {} is outside 1..=3600",
                self.guard_interval_s
            );
        }
        Ok(())
    }
}

/// The `tautulli` section: the optional fallback for terminating sessions, and the
/// notifier enforcement is posted to (`TAUTULLI_LOG_NOTIFIER_ID`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TautulliConfig {
    /// Base URL (`TAUTULLI_URL`); empty: no Tautulli.
    pub url: String,
    /// API key (`TAUTULLI_APIKEY`); prefer `api_key_file`.
    pub api_key: String,
    pub api_key_file: String,
    /// Post every enforcement to this notifier (`TAUTULLI_LOG_NOTIFIER_ID`).
    pub log_notifier_id: Option<u32>,
    /// Subject of those posts (`TAUTULLI_LOG_SUBJECT`).
    pub log_subject: String,
    pub timeout_ms: u64,
}

impl Default for TautulliConfig {
    fn default() -> Self {
        TautulliConfig {
            url: String::new(),
            api_key: String::new(),
            api_key_file: String::new(),
            log_notifier_id: None,
            log_subject: "Downshiftarr".into(),
            timeout_ms: 8000,
        }
    }
}

impl std::fmt::Debug for TautulliConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TautulliConfig")
            .field("url", &self.url)
            .field("api_key", &"<redacted>")
            .field("log_notifier_id", &self.log_notifier_id)
            .finish()
    }
}

impl TautulliConfig {
    pub fn apply_env(&mut self, env: Env<'_>) -> Vec<String> {
        let mut e = Vec::new();
        if let Some(v) = env("TAUTULLI_URL").filter(|v| !v.is_empty()) {
            self.url = v;
        }
        if let Some(v) = env("TAUTULLI_APIKEY").filter(|v| !v.is_empty()) {
            self.api_key = v;
        }
        if let Some(v) = env("TAUTULLI_LOG_SUBJECT").filter(|v| !v.is_empty()) {
            self.log_subject = v;
        }
        if let Some(v) = env("TAUTULLI_LOG_NOTIFIER_ID").filter(|v| !v.trim().is_empty()) {
            match v.trim().parse() {
                Ok(n) => self.log_notifier_id = Some(n),
                Err(_) => e.push(format!("TAUTULLI_LOG_NOTIFIER_ID={v:?}: expected a number")),
            }
        }
        e
    }

    /// The URL and key, when Tautulli is configured.
    pub fn resolved(&self) -> Result<Option<(String, String)>> {
        if self.url.is_empty() {
            return Ok(None);
        }
        if !self.api_key_file.is_empty() {
            let k = std::fs::read_to_string(&self.api_key_file)
                .with_context(|| format!("tautulli.api_key_file {}", self.api_key_file))?;
            let k = k.lines().next().unwrap_or_default().trim().to_string();
            if k.is_empty() {
                bail!("tautulli.api_key_file {} is empty", self.api_key_file);
            }
            return Ok(Some((self.url.clone(), k)));
        }
        if self.api_key.is_empty() {
            bail!("tautulli.url is set but no API key: set TAUTULLI_APIKEY, tautulli.api_key_file or tautulli.api_key");
        }
        Ok(Some((self.url.clone(), self.api_key.clone())))
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

/// Parses the whole file, naming the path of any unknown or mistyped key
/// (`index.page_sise: unknown field …`).
pub fn parse(text: &str) -> std::result::Result<Config, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let obj = v.as_object().ok_or("the top level must be an object")?;
    const SECTIONS: &[&str] = &["plex", "shim", "index", "daemon", "enforce", "tautulli"];
    if let Some(k) = obj.keys().find(|k| !SECTIONS.contains(&k.as_str())) {
        return Err(format!(
            "{k}: unknown section, expected one of {}",
            SECTIONS.join(", ")
        ));
    }
    fn section<T: serde::de::DeserializeOwned + Default>(
        obj: &serde_json::Map<String, serde_json::Value>,
        name: &str,
    ) -> std::result::Result<T, String> {
        match obj.get(name) {
            None => Ok(T::default()),
            // Names the key, not only the section (`shim.max_allowed_height: invalid type…`).
            Some(v) => downshiftarr_shim::config::section_strict(name, v),
        }
    }
    Ok(Config {
        plex: section(obj, "plex")?,
        shim: section(obj, "shim")?,
        index: section(obj, "index")?,
        daemon: section(obj, "daemon")?,
        enforce: section(obj, "enforce")?,
        tautulli: section(obj, "tautulli")?,
    })
}

/// Loads and validates the file strictly. A missing file is the defaults.
pub fn load_strict(path: &Path) -> Result<Config> {
    // Non-blocking open, regular files only (as the shim does): a FIFO must not hang the CLI.
    use downshiftarr_shim::open::{self, OpenError};
    use std::io::Read;
    let text = match open::read(path, open::Kind::Regular) {
        Ok(mut f) => {
            let mut t = String::new();
            f.read_to_string(&mut t)
                .with_context(|| format!("unable to read config {}", path.display()))?;
            t
        }
        Err(OpenError::NotFound) => "{}".to_string(),
        Err(e) => bail!("unable to read config {}: {e}", path.display()),
    };
    let c = parse(&text).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))?;
    if let Err(e) = c.shim.validate() {
        bail!("config {}: {e}", path.display());
    }
    c.daemon
        .validate()
        .with_context(|| format!("config {}", path.display()))?;
    let mut c = c;
    let env = |k: &str| std::env::var(k).ok();
    let mut errors = c.enforce.apply_env(&env);
    errors.extend(c.tautulli.apply_env(&env));
    if !errors.is_empty() {
        bail!("environment: {}", errors.join("; "));
    }
    c.enforce
        .validate()
        .with_context(|| format!("config {}", path.display()))?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 9 §4: a type error named only the section (`shim: invalid type: …`).
    #[test]
    fn type_errors_name_the_key() {
        let e = parse(r#"{"shim": {"shadow_mode": true, "max_allowed_height": "tall"}}"#)
            .err()
            .unwrap_or_default();
        assert_eq!(
            e,
            r#"shim.max_allowed_height: invalid type: string "tall", expected u32"#
        );
        let e = parse(r#"{"index": {"page_sise": 5}}"#)
            .err()
            .unwrap_or_default();
        assert!(
            e.starts_with("index.page_sise: unknown field `page_sise`"),
            "{e}"
        );
        assert!(parse(r#"{"shim": {"shadow_mode": true}}"#).is_ok());
    }
}
