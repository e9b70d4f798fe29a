//! The shim's configuration: the `shim` section of the one JSON config file, every key also
//! settable through the environment variable of the original Tautulli-script design.
//!
//! A config error must never take transcoding down (the peer's config errors raised at import
//! and failed *every* transcode, peer-downshiftarr.md W14). [`load`] therefore always returns a
//! usable [`ShimConfig`]: on error, the built-in defaults, plus the errors (each naming the
//! key) for the decision log. The daemon validates the whole file strictly (`check-config`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::open;

/// Default location of the config file (env `DOWNSHIFTARR_CONFIG` overrides).
pub const DEFAULT_CONFIG_PATH: &str = "/etc/downshiftarr/config.json";
/// Default daemon socket (env `DOWNSHIFTARR_SOCKET` overrides).
pub const DEFAULT_SOCKET: &str = "/run/downshiftarr/shim.sock";
/// The largest config file we read; anything larger is an error, not a slow start.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Job kinds the owner can choose to guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardedJob {
    /// Real-time streaming transcodes (DASH, HLS, segmented matroska, progressive).
    Streaming,
    /// Optimize / Convert jobs writing into `Plex Versions`.
    Optimize,
    /// Live TV and other network inputs.
    LiveTv,
}

/// Tone-map operator used when a tone-map stage has to be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToneMap {
    Hable,
    Mobius,
    Reinhard,
    Clip,
    Linear,
    Gamma,
}

impl ToneMap {
    pub fn as_str(self) -> &'static str {
        match self {
            ToneMap::Hable => "hable",
            ToneMap::Mobius => "mobius",
            ToneMap::Reinhard => "reinhard",
            ToneMap::Clip => "clip",
            ToneMap::Linear => "linear",
            ToneMap::Gamma => "gamma",
        }
    }
}

/// The `shim` section. Every field has a default; see the README table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShimConfig {
    /// Absolute path of the real transcoder; empty: `<shim path>.downshiftarr-real`.
    pub real_transcoder: String,
    /// A source this tall or taller is protected (`MAX_ALLOWED_HEIGHT`).
    pub max_allowed_height: u32,
    /// Preferred fallback heights, best first (`PREFER_HEIGHTS`).
    pub prefer_heights: Vec<u32>,
    /// Users never touched (`EXEMPT_USERS`, comma separated).
    pub exempt_users: Vec<String>,
    /// Clients (product or device names) never touched (`EXEMPT_CLIENTS`).
    pub exempt_clients: Vec<String>,
    /// Only SDR versions are acceptable fallbacks (`FALLBACK_SDR_ONLY`).
    pub fallback_sdr_only: bool,
    /// HDR fallbacks are acceptable, then rewritten to SDR (`ALLOW_HDR_FALLBACK`); only
    /// when `fallback_sdr_only` is off.
    pub allow_hdr_fallback: bool,
    /// Also switch a non-protected transcode to a smaller SDR version that still fills the
    /// output Plex asked for (`AUTO_WATERFALL_ON_CONTINUED_TRANSCODE`). Off by default.
    pub waterfall: bool,
    /// The waterfall never goes below this height (`WATERFALL_MIN_HEIGHT`).
    pub waterfall_min_height: u32,
    /// A 1080p-class source at or above this overall bitrate (kbit/s, from the library
    /// index) is protected too: heavy remuxes (`REMUX_1080_MIN_BITRATE_KBPS`). 0: off.
    pub remux_1080_min_bitrate_kbps: u32,
    /// When the daemon cannot say in time who is watching, treat the viewer as exempt
    /// (`EXEMPT_WHEN_VIEWER_UNKNOWN`). Default off: an unknown viewer is not exempt.
    pub exempt_when_viewer_unknown: bool,
    /// Message shown to a refused viewer (`KILL_MESSAGE_DEFAULT`).
    pub kill_message_default: String,
    /// Per-scenario messages (`KILL_MESSAGE_<SCENARIO>`), keyed by lower-case scenario.
    pub kill_messages: BTreeMap<String, String>,
    /// Original toggle: when set, refuse rather than rewrite when no compliant version
    /// exists (`KILL_ON_NO_FALLBACK_MEDIA`). Unset: rewrite.
    pub kill_on_no_fallback_media: Option<bool>,
    /// Refuse a guarded transcode of a local file whose facts cannot be learned
    /// (`KILL_ON_UNKNOWN_SOURCE`): fail closed.
    pub kill_on_unknown_source: bool,
    /// Refuse a protected transcode we cannot rewrite safely (`KILL_ON_REWRITE_UNSUPPORTED`).
    pub kill_on_rewrite_unsupported: bool,
    /// Refuse a guarded video transcode when the shim itself fails unexpectedly
    /// (`KILL_ON_UNEXPECTED_ERROR`).
    pub kill_on_unexpected_error: bool,
    /// Decide and log, but always pass the job through unchanged (`SHADOW_MODE`).
    pub shadow_mode: bool,
    /// Which job kinds are guarded (`GUARDED_JOBS`, comma separated).
    pub guarded_jobs: Vec<GuardedJob>,
    /// Video bitrate ceiling for rewritten 1080p output, kbit/s (`BITRATE_CEILING_KBPS`).
    pub bitrate_ceiling_kbps: u32,
    /// Tone-map operator for an added tone-map stage (`TONEMAP_ALGORITHM`).
    pub tonemap_algorithm: ToneMap,
    /// Daemon socket (`DOWNSHIFTARR_SOCKET`).
    pub socket: String,
    /// Time the shim may spend on the daemon, milliseconds (`DOWNSHIFTARR_BUDGET_MS`).
    pub daemon_budget_ms: u32,
    /// Decision log (JSON lines) used when the daemon is not reachable; empty: none
    /// (`DOWNSHIFTARR_DECISION_LOG`).
    pub decision_log: String,
    /// Bytes the header probe may read from one file (`PROBE_MAX_BYTES`).
    pub probe_max_bytes: u32,
    /// Also record pass-throughs of jobs that carry no video (thumbnails, audio, analysis);
    /// PMS starts thousands during a library scan (`DOWNSHIFTARR_LOG_NON_VIDEO`).
    pub log_non_video: bool,
}

impl Default for ShimConfig {
    fn default() -> Self {
        ShimConfig {
            real_transcoder: String::new(),
            max_allowed_height: 2000,
            prefer_heights: vec![1080, 720, 576, 480],
            exempt_users: Vec::new(),
            exempt_clients: Vec::new(),
            fallback_sdr_only: true,
            allow_hdr_fallback: false,
            waterfall: false,
            waterfall_min_height: 360,
            remux_1080_min_bitrate_kbps: 0,
            exempt_when_viewer_unknown: false,
            kill_message_default: "This 4K/HDR version cannot be converted for this device. \
                                   Please pick a 1080p version or play it on a 4K-capable player."
                .to_string(),
            kill_messages: BTreeMap::new(),
            kill_on_no_fallback_media: None,
            kill_on_unknown_source: true,
            kill_on_rewrite_unsupported: true,
            kill_on_unexpected_error: true,
            shadow_mode: false,
            guarded_jobs: vec![GuardedJob::Streaming],
            bitrate_ceiling_kbps: 12_000,
            tonemap_algorithm: ToneMap::Hable,
            socket: DEFAULT_SOCKET.to_string(),
            daemon_budget_ms: 50,
            decision_log: "/var/log/downshiftarr/decisions.jsonl".to_string(),
            probe_max_bytes: 8 << 20,
            log_non_video: false,
        }
    }
}

impl ShimConfig {
    /// The message for a refusal scenario, falling back to the default message.
    pub fn kill_message(&self, scenario: &str) -> &str {
        self.kill_messages
            .get(scenario)
            .map(String::as_str)
            .unwrap_or(&self.kill_message_default)
    }

    pub fn guards(&self, j: GuardedJob) -> bool {
        self.guarded_jobs.contains(&j)
    }

    /// Checks ranges serde cannot express. Errors name the key.
    pub fn validate(&self) -> Result<(), String> {
        if !(144..=8640).contains(&self.max_allowed_height) {
            return Err(format!(
                "shim.max_allowed_height: {} is outside 144..=8640",
                self.max_allowed_height
            ));
        }
        if self
            .prefer_heights
            .iter()
            .any(|h| !(144..=4320).contains(h))
        {
            return Err("shim.prefer_heights: every height must be within 144..=4320".into());
        }
        if !(144..=1080).contains(&self.waterfall_min_height) {
            return Err(format!(
                "shim.waterfall_min_height: {} is outside 144..=1080",
                self.waterfall_min_height
            ));
        }
        if self.remux_1080_min_bitrate_kbps > 500_000 {
            return Err(format!(
                "shim.remux_1080_min_bitrate_kbps: {} is above 500000 (0 turns it off)",
                self.remux_1080_min_bitrate_kbps
            ));
        }
        if !(500..=200_000).contains(&self.bitrate_ceiling_kbps) {
            return Err(format!(
                "shim.bitrate_ceiling_kbps: {} is outside 500..=200000",
                self.bitrate_ceiling_kbps
            ));
        }
        if self.daemon_budget_ms > 5000 {
            return Err(format!(
                "shim.daemon_budget_ms: {} is above 5000",
                self.daemon_budget_ms
            ));
        }
        if !(65_536..=256 << 20).contains(&self.probe_max_bytes) {
            return Err("shim.probe_max_bytes: must be within 65536..=268435456".into());
        }
        if !self.real_transcoder.is_empty() && !self.real_transcoder.starts_with('/') {
            return Err("shim.real_transcoder: must be an absolute path".into());
        }
        Ok(())
    }
}

/// The config file's top level as far as the shim cares: the other sections belong to the
/// daemon, which validates them.
#[derive(Deserialize)]
struct FileView {
    #[serde(default)]
    shim: Option<serde_json::Value>,
}

/// A loaded configuration and what went wrong while loading it.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub config: ShimConfig,
    pub errors: Vec<String>,
}

/// The config path: `DOWNSHIFTARR_CONFIG` or the default.
pub fn config_path<F: Fn(&str) -> Option<String>>(env: &F) -> PathBuf {
    PathBuf::from(env("DOWNSHIFTARR_CONFIG").unwrap_or_else(|| DEFAULT_CONFIG_PATH.to_string()))
}

/// Loads the file (a missing file means defaults), then applies environment overrides.
pub fn load<F: Fn(&str) -> Option<String>>(path: &Path, env: &F) -> Loaded {
    let mut errors = Vec::new();
    let mut config = match read_file(path, &mut errors) {
        Ok(Some(c)) => c,
        Ok(None) => ShimConfig::default(),
        Err(e) => {
            errors.push(e);
            ShimConfig::default()
        }
    };
    let before = config.clone();
    apply_env(&mut config, env, &mut errors);
    if let Err(e) = config.validate() {
        errors.push(e);
        config = if before.validate().is_ok() {
            before
        } else {
            ShimConfig::default()
        };
    }
    Loaded { config, errors }
}

/// Parses the `shim` section of a config file's text strictly: the first bad key is an
/// error. Used by the daemon as well.
pub fn parse_section(text: &str) -> Result<ShimConfig, String> {
    let (c, errors) = parse_section_lenient(text)?;
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(c),
    }
}

/// Parses the `shim` section keeping every valid key: a bad key (unknown, mistyped, out of
/// range) costs only that key, which stays at its default and is named in the errors.
/// One typo must not throw away a configured `real_transcoder` and take every job down
/// (issue 9 §2). `Err` only when the text is not JSON at all.
pub fn parse_section_lenient(text: &str) -> Result<(ShimConfig, Vec<String>), String> {
    let view: FileView = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let Some(section) = view.shim else {
        return Ok((ShimConfig::default(), Vec::new()));
    };
    // The common case, a valid section, costs one pass.
    if let Ok(c) = serde_json::from_value::<ShimConfig>(section.clone()) {
        if c.validate().is_ok() {
            return Ok((c, Vec::new()));
        }
    }
    let serde_json::Value::Object(map) = section else {
        let e = section_strict::<ShimConfig>("shim", &section).err();
        return Ok((ShimConfig::default(), e.into_iter().collect()));
    };
    // Keys are independent of each other, so each is judged alone and the good ones kept.
    let mut errors = Vec::new();
    let mut keep = serde_json::Map::new();
    for (key, value) in map {
        let alone = serde_json::Value::Object([(key.clone(), value.clone())].into_iter().collect());
        match serde_json::from_value::<ShimConfig>(alone) {
            Ok(c) => match c.validate() {
                Ok(()) => {
                    keep.insert(key, value);
                }
                Err(e) => errors.push(e),
            },
            Err(e) => errors.push(format!("shim.{key}: {e}")),
        }
    }
    let c = serde_json::from_value(serde_json::Value::Object(keep)).unwrap_or_default();
    Ok((c, errors))
}

/// Deserializes one section of the config file, naming the key of an error
/// (`shim.max_allowed_height: invalid type: string "tall", expected u32`): serde's own
/// message names only the section. For sections whose type has `#[serde(default)]`.
pub fn section_strict<T: serde::de::DeserializeOwned>(
    name: &str,
    value: &serde_json::Value,
) -> Result<T, String> {
    let e = match serde_json::from_value::<T>(value.clone()) {
        Ok(t) => return Ok(t),
        Err(e) => e,
    };
    if let serde_json::Value::Object(map) = value {
        for (key, v) in map {
            let alone = serde_json::Value::Object([(key.clone(), v.clone())].into_iter().collect());
            if let Err(e) = serde_json::from_value::<T>(alone) {
                return Err(format!("{name}.{key}: {e}"));
            }
        }
    }
    Err(format!("{name}: {e}"))
}

/// Why a config file may not choose what the shim executes, if it may not: a file any
/// other local user can write (group- or world-writable, or a symlink to such a file), or
/// one named by a relative path (whatever the working directory holds). Such a file could
/// make the shim run any program as the Plex user (issue 9 §3).
pub fn distrust(path: &Path, mode: u32) -> Option<String> {
    if !path.is_absolute() {
        return Some("the path is relative; give DOWNSHIFTARR_CONFIG as an absolute path".into());
    }
    (mode & 0o022 != 0).then(|| {
        format!(
            "the file is group- or world-writable (mode {:04o}); run chmod go-w {}",
            mode & 0o7777,
            path.display()
        )
    })
}

/// Keys a distrusted config file may not set: they choose what the shim executes.
pub const GUARDED_KEYS: &[&str] = &["real_transcoder"];

fn read_file(path: &Path, errors: &mut Vec<String>) -> Result<Option<ShimConfig>, String> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    // Non-blocking open, regular files only: a FIFO as the config hung even thumbnails.
    let file = match open::read(path, open::Kind::Regular) {
        Ok(f) => f,
        Err(open::OpenError::NotFound) => return Ok(None),
        Err(e) => return Err(format!("config {}: {e}", path.display())),
    };
    // The mode of what was opened (a symlink's target), not of the name.
    let mode = file
        .metadata()
        .map_err(|e| format!("config {}: {e}", path.display()))?
        .mode();
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("config {}: {e}", path.display()))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(format!(
            "config {}: larger than {MAX_CONFIG_BYTES} bytes",
            path.display()
        ));
    }
    let (mut c, errs) =
        parse_section_lenient(&text).map_err(|e| format!("config {}: {e}", path.display()))?;
    errors.extend(
        errs.into_iter()
            .map(|e| format!("config {}: {e}", path.display())),
    );
    if let Some(why) = distrust(path, mode) {
        if !c.real_transcoder.is_empty() {
            c.real_transcoder.clear();
            errors.push(format!(
                "config {}: shim.real_transcoder ignored: {why}",
                path.display()
            ));
        }
    }
    Ok(Some(c))
}

/// Environment overrides, with the original design's names.
fn apply_env<F: Fn(&str) -> Option<String>>(c: &mut ShimConfig, env: &F, errors: &mut Vec<String>) {
    fn num<T: std::str::FromStr>(key: &str, v: &str, errors: &mut Vec<String>) -> Option<T> {
        let r = v.trim().parse().ok();
        if r.is_none() {
            errors.push(format!("{key}={v:?}: expected a whole number"));
        }
        r
    }
    fn flag(key: &str, v: &str, errors: &mut Vec<String>) -> Option<bool> {
        match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Some(true),
            "0" | "false" | "no" | "off" => Some(false),
            _ => {
                errors.push(format!("{key}={v:?}: expected 1 or 0"));
                None
            }
        }
    }
    fn list(v: &str) -> Vec<String> {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }
    macro_rules! set {
        ($key:literal, $conv:ident, $field:expr) => {
            if let Some(v) = env($key) {
                if let Some(x) = $conv($key, &v, errors) {
                    $field = x;
                }
            }
        };
    }
    set!("MAX_ALLOWED_HEIGHT", num, c.max_allowed_height);
    set!("BITRATE_CEILING_KBPS", num, c.bitrate_ceiling_kbps);
    set!("DOWNSHIFTARR_BUDGET_MS", num, c.daemon_budget_ms);
    set!("PROBE_MAX_BYTES", num, c.probe_max_bytes);
    set!("FALLBACK_SDR_ONLY", flag, c.fallback_sdr_only);
    set!("ALLOW_HDR_FALLBACK", flag, c.allow_hdr_fallback);
    set!("AUTO_WATERFALL_ON_CONTINUED_TRANSCODE", flag, c.waterfall);
    set!("WATERFALL_MIN_HEIGHT", num, c.waterfall_min_height);
    set!(
        "REMUX_1080_MIN_BITRATE_KBPS",
        num,
        c.remux_1080_min_bitrate_kbps
    );
    set!(
        "EXEMPT_WHEN_VIEWER_UNKNOWN",
        flag,
        c.exempt_when_viewer_unknown
    );
    set!("KILL_ON_UNKNOWN_SOURCE", flag, c.kill_on_unknown_source);
    set!(
        "KILL_ON_REWRITE_UNSUPPORTED",
        flag,
        c.kill_on_rewrite_unsupported
    );
    set!("KILL_ON_UNEXPECTED_ERROR", flag, c.kill_on_unexpected_error);
    set!("SHADOW_MODE", flag, c.shadow_mode);
    set!("DOWNSHIFTARR_LOG_NON_VIDEO", flag, c.log_non_video);
    if let Some(v) = env("KILL_ON_NO_FALLBACK_MEDIA") {
        if let Some(b) = flag("KILL_ON_NO_FALLBACK_MEDIA", &v, errors) {
            c.kill_on_no_fallback_media = Some(b);
        }
    }
    if let Some(v) = env("PREFER_HEIGHTS") {
        let parsed: Result<Vec<u32>, _> = list(&v).iter().map(|s| s.parse()).collect();
        match parsed {
            Ok(h) => c.prefer_heights = h,
            Err(_) => errors.push(format!(
                "PREFER_HEIGHTS={v:?}: expected numbers separated by commas"
            )),
        }
    }
    if let Some(v) = env("EXEMPT_USERS") {
        c.exempt_users = list(&v);
    }
    if let Some(v) = env("EXEMPT_CLIENTS") {
        c.exempt_clients = list(&v);
    }
    if let Some(v) = env("GUARDED_JOBS") {
        let parsed: Result<Vec<GuardedJob>, _> = list(&v)
            .iter()
            .map(|s| serde_json::from_value(serde_json::Value::String(s.clone())))
            .collect();
        match parsed {
            Ok(g) => c.guarded_jobs = g,
            Err(_) => errors.push(format!(
                "GUARDED_JOBS={v:?}: expected streaming, optimize, live_tv"
            )),
        }
    }
    if let Some(v) = env("TONEMAP_ALGORITHM") {
        match serde_json::from_value(serde_json::Value::String(v.trim().to_ascii_lowercase())) {
            Ok(t) => c.tonemap_algorithm = t,
            Err(_) => errors.push(format!(
                "TONEMAP_ALGORITHM={v:?}: expected hable, mobius, reinhard, clip, linear or gamma"
            )),
        }
    }
    if let Some(v) = env("KILL_MESSAGE_DEFAULT") {
        c.kill_message_default = v;
    }
    for scenario in crate::scenario::SCENARIOS {
        if let Some(v) = env(&format!("KILL_MESSAGE_{}", scenario.to_ascii_uppercase())) {
            c.kill_messages.insert(scenario.to_string(), v);
        }
    }
    if let Some(v) = env("DOWNSHIFTARR_SOCKET") {
        c.socket = v;
    }
    if let Some(v) = env("DOWNSHIFTARR_DECISION_LOG") {
        c.decision_log = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn missing_file_is_defaults() {
        let l = load(Path::new("/nonexistent/downshiftarr.json"), &no_env);
        assert!(l.errors.is_empty());
        assert_eq!(l.config, ShimConfig::default());
    }

    #[test]
    fn unknown_key_is_named_and_defaults_are_used() {
        let mut f = tempfile_in();
        write!(f.1, r#"{{"shim": {{"max_allowed_heigth": 1500}}}}"#).unwrap();
        let l = load(&f.0, &no_env);
        assert_eq!(l.config, ShimConfig::default());
        assert!(l.errors[0].contains("max_allowed_heigth"), "{:?}", l.errors);
    }

    /// Issue 9 §2: one typo threw the whole section away, `real_transcoder` included, and
    /// every job then exited 127.
    #[test]
    fn a_bad_key_costs_only_that_key() {
        let mut f = tempfile_in();
        write!(
            f.1,
            r#"{{"shim": {{"real_transcoder": "/bin/true", "max_alowed_height": 2000,
                "shadow_mode": true, "waterfall_min_height": 9999,
                "prefer_heights": "1080", "max_allowed_height": "tall"}}}}"#
        )
        .unwrap();
        let l = load(&f.0, &no_env);
        assert_eq!(l.config.real_transcoder, "/bin/true");
        assert!(l.config.shadow_mode);
        let d = ShimConfig::default();
        assert_eq!(l.config.waterfall_min_height, d.waterfall_min_height);
        assert_eq!(l.config.prefer_heights, d.prefer_heights);
        assert_eq!(l.config.max_allowed_height, d.max_allowed_height);
        let all = l.errors.join("\n");
        assert_eq!(l.errors.len(), 4, "{all}");
        for needle in [
            "shim.max_alowed_height: unknown field",
            "shim.waterfall_min_height: 9999 is outside",
            "shim.prefer_heights: invalid type: string \"1080\"",
            "shim.max_allowed_height: invalid type: string \"tall\", expected u32",
        ] {
            assert!(all.contains(needle), "{needle}: {all}");
        }
        assert!(l.errors.iter().all(|e| e.starts_with("config ")), "{all}");
        // The strict parser (check-config) names the key too.
        let e = parse_section(r#"{"shim": {"max_allowed_height": "tall"}}"#).unwrap_err();
        assert_eq!(
            e,
            "shim.max_allowed_height: invalid type: string \"tall\", expected u32"
        );
    }

    /// Issue 9 §3: a config file another user can write must not choose what the shim
    /// executes.
    #[test]
    fn a_writable_or_relative_config_may_not_name_the_real_transcoder() {
        use std::os::unix::fs::PermissionsExt;
        let mut f = tempfile_in();
        write!(
            f.1,
            r#"{{"shim": {{"real_transcoder": "/tmp/evil", "shadow_mode": true}}}}"#
        )
        .unwrap();
        let set_mode = |m| std::fs::set_permissions(&f.0, std::fs::Permissions::from_mode(m));
        set_mode(0o644).unwrap();
        assert_eq!(load(&f.0, &no_env).config.real_transcoder, "/tmp/evil");
        assert!(load(&f.0, &no_env).errors.is_empty());
        let link = f.0.with_file_name("link.json");
        std::os::unix::fs::symlink(&f.0, &link).unwrap();
        for mode in [0o664, 0o646, 0o666] {
            set_mode(mode).unwrap();
            for p in [&f.0, &link] {
                let l = load(p, &no_env);
                assert_eq!(
                    l.config.real_transcoder,
                    "",
                    "mode {mode:o} via {}",
                    p.display()
                );
                assert!(l.config.shadow_mode, "the other keys are kept");
                assert!(
                    l.errors[0].contains(
                        "shim.real_transcoder ignored: the file is group- or world-writable"
                    ),
                    "{:?}",
                    l.errors
                );
            }
        }
        // A relative path means whatever the working directory holds.
        let rel = Path::new("config.json");
        assert!(distrust(rel, 0o644).unwrap().contains("relative"));
        assert!(distrust(&f.0, 0o644).is_none());
    }

    #[test]
    fn corrupt_json_never_panics() {
        let mut f = tempfile_in();
        f.1.write_all(b"{\"shim\": [1,2").unwrap();
        let l = load(&f.0, &no_env);
        assert!(l.errors[0].contains("invalid JSON"));
    }

    #[test]
    fn env_overrides_and_bad_env_is_reported() {
        let env = |k: &str| match k {
            "MAX_ALLOWED_HEIGHT" => Some("1500".to_string()),
            "SHADOW_MODE" => Some("1".to_string()),
            "PREFER_HEIGHTS" => Some("720, 480".to_string()),
            "KILL_ON_UNKNOWN_SOURCE" => Some("maybe".to_string()),
            "KILL_MESSAGE_UNKNOWN_SOURCE" => Some("nope".to_string()),
            _ => None,
        };
        let l = load(Path::new("/nonexistent"), &env);
        assert_eq!(l.config.max_allowed_height, 1500);
        assert!(l.config.shadow_mode);
        assert_eq!(l.config.prefer_heights, vec![720, 480]);
        assert!(
            l.config.kill_on_unknown_source,
            "a bad value keeps the default"
        );
        assert_eq!(l.config.kill_message("unknown_source"), "nope");
        assert!(l.errors[0].contains("KILL_ON_UNKNOWN_SOURCE"));
    }

    #[test]
    fn out_of_range_falls_back() {
        let env = |k: &str| (k == "MAX_ALLOWED_HEIGHT").then(|| "3".to_string());
        let l = load(Path::new("/nonexistent"), &env);
        assert_eq!(l.config.max_allowed_height, 2000);
        assert!(l.errors[0].contains("max_allowed_height"));
    }

    #[test]
    fn other_sections_are_ignored_by_the_shim() {
        assert!(
            parse_section(r#"{"plex": {"url": "x"}, "shim": {"shadow_mode": true}}"#)
                .unwrap()
                .shadow_mode
        );
    }

    fn tempfile_in() -> (PathBuf, std::fs::File) {
        let dir =
            std::env::temp_dir().join(format!("dsa-cfg-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("config.json");
        let f = std::fs::File::create(&p).unwrap();
        (p, f)
    }

    fn rand_suffix() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }
}
