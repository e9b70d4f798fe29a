//! The one JSON configuration file, as the daemon and admin CLI see it: every section, every
//! key with its default, unknown keys rejected with their path.
//!
//! The `shim` section's type lives in the shim library (`downshiftarr_shim::config`), which
//! reads only that section on its hot path; this module owns the file as a whole.
//!
//! One loader, [`load`], for the daemon and every CLI command: the file strictly, then the
//! environment names of one table ([`table`]: the shim's rows and the daemon's), the same
//! names the shim applies, then the secrets ([`secret`]) read once. What changes need a
//! restart is declared by the table too ([`Config::needs_restart`]).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use downshiftarr_shim::config::ShimConfig;
use serde::{Deserialize, Serialize};

pub mod cidr;
pub mod downloads;
pub mod scrobble;
pub mod secret;
pub mod table;
pub mod throttle;

pub use secret::Secret;

/// One section of the file: its name, what it is for, and whether it is reserved (accepted
/// and kept as it is, for a job that has not landed yet).
pub struct Section {
    pub name: &'static str,
    pub about: &'static str,
    pub reserved: bool,
}

/// Every section, in the README's order: the one list the loader's unknown-section error,
/// `check-config` and the docs test read.
#[rustfmt::skip]
pub const SECTIONS: &[Section] = &[
    Section { name: "shim", about: "the transcoder shim's decisions", reserved: false },
    Section { name: "plex", about: "the Plex server and its token", reserved: false },
    Section { name: "index", about: "the library index", reserved: false },
    Section { name: "enforce", about: "the guard and refused sessions", reserved: false },
    Section { name: "tautulli", about: "the terminate fallback and notifier", reserved: false },
    Section { name: "daemon", about: "the daemon process", reserved: false },
    Section { name: "throttle", about: "qBittorrent throttling while people watch", reserved: false },
    Section { name: "scrobble", about: "Trakt scrobbling", reserved: false },
    Section { name: "downloads", about: "smart downloads through Radarr", reserved: false },
];

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Config {
    pub plex: PlexConfig,
    pub shim: ShimConfig,
    pub index: IndexConfig,
    pub daemon: DaemonConfig,
    pub enforce: EnforceConfig,
    pub tautulli: TautulliConfig,
    /// The throttle job; off without `throttle.qbittorrent_url`.
    pub throttle: throttle::ThrottleSettings,
    /// The scrobble job; off without `scrobble.client_id`.
    pub scrobble: scrobble::ScrobbleSettings,
    /// The downloads job; off without `downloads.radarr_url`.
    pub downloads: downloads::DownloadsSettings,
}

/// The `plex` section. The token is a secret: `PLEX_TOKEN` or a token file, never logged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlexConfig {
    /// Base URL (`PLEX_URL`).
    pub url: String,
    /// The server owner's token: `PLEX_TOKEN`, else `token_file`, else this key (prefer
    /// `token_file`). After [`load`], the token in effect.
    pub token: Secret,
    /// A file holding the token; must not be readable or writable by others.
    pub token_file: String,
    pub connect_timeout_ms: u64,
    pub read_timeout_ms: u64,
}

impl Default for PlexConfig {
    fn default() -> Self {
        PlexConfig {
            url: "http://127.0.0.1:32400".into(),
            token: Secret::default(),
            token_file: String::new(),
            connect_timeout_ms: 2000,
            read_timeout_ms: 15000,
        }
    }
}

impl PlexConfig {
    /// The URL and token in effect, as [`load`] resolved them (environment first, then the
    /// token file, then the file's key): no file is read here.
    pub fn resolved(&self) -> Result<(String, String)> {
        match self.token.get() {
            Ok(Some(t)) => Ok((self.url.clone(), t.expose().to_string())),
            Ok(None) => bail!("no Plex token: set PLEX_TOKEN, plex.token_file or plex.token"),
            Err(e) => bail!("{e}"),
        }
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
    /// Deprecated, unused: the socket's place is `shim.socket` (the shim reads only its own
    /// section, so the daemon cannot move it). Still accepted and checked to be absolute;
    /// [`Config::notes`] warns when it is not the socket's directory.
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
    /// Address of the HTTP endpoint (`/health`, `/metrics`, the webhooks, the ops API);
    /// empty: off. May bind beyond loopback: the ops API then asks for `api_key`.
    pub http_listen: String,
    /// The secret part of the Plex webhook URL `/webhook/plex/<token>`
    /// (`DOWNSHIFTARR_WEBHOOK_TOKEN`); empty: the endpoint is off.
    pub webhook_token: Secret,
    /// The bearer token of the ops API (`DOWNSHIFTARR_API_KEY`); empty: loopback callers only.
    pub api_key: Secret,
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
            webhook_token: Secret::default(),
            api_key: Secret::default(),
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
        for (key, s) in [
            ("webhook_token", &self.webhook_token),
            ("api_key", &self.api_key),
        ] {
            let v = s.expose();
            if v.is_empty() {
                continue;
            }
            // The token is a URL path segment and both are guessed at over the network.
            if v.len() < 16
                || !v
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                bail!(
                    "daemon.{key}: must be at least 16 characters of A-Z, a-z, 0-9, - and _ \
                     (make one with: openssl rand -hex 16)"
                );
            }
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

impl EnforceConfig {
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TautulliConfig {
    /// Base URL (`TAUTULLI_URL`); empty: no Tautulli.
    pub url: String,
    /// API key: `TAUTULLI_APIKEY`, else `api_key_file`, else this key (prefer
    /// `api_key_file`, refused if others may read it). After [`load`], the key in effect.
    pub api_key: Secret,
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
            api_key: Secret::default(),
            api_key_file: String::new(),
            log_notifier_id: None,
            log_subject: "Downshiftarr".into(),
            timeout_ms: 8000,
        }
    }
}

impl TautulliConfig {
    /// The URL and key, when Tautulli is configured, as [`load`] resolved them.
    pub fn resolved(&self) -> Result<Option<(String, String)>> {
        if self.url.is_empty() {
            return Ok(None);
        }
        match self.api_key.get() {
            Ok(Some(k)) => Ok(Some((self.url.clone(), k.expose().to_string()))),
            Ok(None) => bail!("tautulli.url is set but no API key: set TAUTULLI_APIKEY, tautulli.api_key_file or tautulli.api_key"),
            Err(e) => bail!("{e}"),
        }
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
/// (`index.page_sise: unknown field …`). No environment, no secrets read.
pub fn parse(text: &str) -> std::result::Result<Config, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let obj = v.as_object().ok_or("the top level must be an object")?;
    if let Some(k) = obj
        .keys()
        .find(|k| !SECTIONS.iter().any(|s| s.name == k.as_str()))
    {
        let names: Vec<&str> = SECTIONS.iter().map(|s| s.name).collect();
        return Err(format!(
            "{k}: unknown section, expected one of {}",
            names.join(", ")
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
        throttle: section(obj, "throttle")?,
        scrobble: section(obj, "scrobble")?,
        downloads: section(obj, "downloads")?,
    })
}

/// Reads a variable of the environment the loader applies.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Config {
    /// Applies every environment name of the tables (the shim's section's names included,
    /// as the shim applies them); returns what could not be read, each naming the variable.
    pub fn apply_env(&mut self, env: Env<'_>) -> Vec<String> {
        use downshiftarr_shim::config::table;
        let mut errors = Vec::new();
        table::apply_env(table::SHIM, &mut self.shim, env, &mut errors);
        table::apply_env(self::table::DAEMON, self, env, &mut errors);
        errors
    }

    /// Checks what serde cannot express; errors name the key.
    pub fn validate(&self) -> Result<()> {
        if let Err(e) = self.shim.validate() {
            bail!("{e}");
        }
        self.daemon.validate()?;
        self.enforce.validate()?;
        let mut errors = self.throttle.validate();
        errors.extend(self.scrobble.validate());
        errors.extend(self.downloads.validate());
        if !errors.is_empty() {
            bail!("{}", errors.join("; "));
        }
        Ok(())
    }

    /// Reads the secrets' files, once (again on each reload); a file that cannot be used is
    /// said where the secret is needed ([`PlexConfig::resolved`]).
    pub fn load_secrets(&mut self) {
        self.plex
            .token
            .load_file("plex.token_file", &self.plex.token_file);
        self.tautulli
            .api_key
            .load_file("tautulli.api_key_file", &self.tautulli.api_key_file);
        self.throttle.load_secrets();
        self.scrobble.load_secrets();
        self.downloads.load_secrets();
    }

    /// Every secret value in effect, for the log's redaction (no secret reaches a log line,
    /// the ops API's log tail included).
    pub fn secret_values(&self) -> Vec<String> {
        [
            &self.plex.token,
            &self.tautulli.api_key,
            &self.throttle.password,
            &self.throttle.api_key,
            &self.daemon.webhook_token,
            &self.daemon.api_key,
            &self.scrobble.client_secret,
        ]
        .into_iter()
        .chain(self.downloads.secrets())
        .map(|s| s.expose().to_string())
        .filter(|v| !v.is_empty())
        .collect()
    }

    /// The keys whose change between `old` and `new` takes effect only at a restart, as the
    /// tables declare them.
    pub fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
        let (Ok(a), Ok(b)) = (serde_json::to_value(old), serde_json::to_value(new)) else {
            return Vec::new();
        };
        table::all()
            .filter(|r| r.restart)
            .filter(|r| {
                let p = table::pointer(r.key);
                a.pointer(&p) != b.pointer(&p)
            })
            .map(|r| r.key)
            .collect()
    }

    /// Things worth saying about a valid configuration (`check-config` prints them, the
    /// daemon logs them).
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.shim.allow_hdr_fallback && self.shim.fallback_sdr_only {
            notes.push(
                "shim.allow_hdr_fallback has no effect while shim.fallback_sdr_only is on".into(),
            );
        }
        let socket_dir = Path::new(&self.shim.socket).parent();
        if !self.shim.socket.is_empty() && socket_dir != Some(Path::new(&self.daemon.runtime_dir)) {
            notes.push(format!(
                "daemon.runtime_dir {} is deprecated and unused: the socket is shim.socket ({})",
                self.daemon.runtime_dir, self.shim.socket
            ));
        }
        notes
    }
}

/// Reads and checks the file alone: unknown keys, types and ranges are errors naming the
/// file and the key. A missing file is the defaults.
pub fn read(path: &Path) -> Result<Config> {
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
    c.validate()
        .with_context(|| format!("config {}", path.display()))?;
    Ok(c)
}

/// Loads the configuration every command and the daemon use: the file strictly, the
/// process environment's overrides (a value that does not parse is an error), the secrets.
pub fn load(path: &Path) -> Result<Config> {
    load_env(path, &|k| std::env::var(k).ok())
}

/// [`load`] with the environment given.
pub fn load_env(path: &Path, env: Env<'_>) -> Result<Config> {
    let mut c = read(path)?;
    let errors = c.apply_env(env);
    if !errors.is_empty() {
        bail!("environment: {}", errors.join("; "));
    }
    c.validate().context("environment")?;
    c.load_secrets();
    Ok(c)
}

/// [`load`] for the Tautulli drop-in, which must act whatever is wrong: a bad file is the
/// defaults, a bad variable keeps the key as it was; each problem is returned to be logged.
pub fn load_lenient(path: &Path, env: Env<'_>) -> (Config, Vec<String>) {
    let mut problems = Vec::new();
    let mut c = read(path).unwrap_or_else(|e| {
        problems.push(format!("{e:#}; using defaults"));
        Config::default()
    });
    let file_shim = c.shim.clone();
    problems.extend(c.apply_env(env));
    if let Err(e) = c.shim.validate() {
        // As the shim does: the section without the environment.
        problems.push(format!("environment: {e}"));
        c.shim = file_shim;
    }
    c.load_secrets();
    (c, problems)
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

#[cfg(test)]
mod load_tests;
