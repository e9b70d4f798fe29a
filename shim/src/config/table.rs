//! The settings table: for every key of the `shim` section, its environment name (the
//! original Tautulli-script design's), what it holds, its default, and whether the daemon
//! must restart to take a change.
//!
//! One sorted-by-meaning static table in the sccache habit: how a setting is *named*
//! (config key, environment variable) lives here once; what it *means* lives on the
//! [`ShimConfig`] field. The shim's hot-path loader applies the environment through this
//! table, and the daemon's loader (`downshiftarr::config`) applies the same table to its
//! copy of the section, so `check-config`, the daemon and the shim read the same names.
//! The daemon's own sections have a table of the same [`Setting`] type in the daemon crate.

use super::{GuardedJob, ShimConfig, ToneMap};

/// What a setting holds, for the documentation and `check-config`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `true`/`false`; in the environment `1`/`0` (also yes/no, on/off).
    Flag,
    /// A whole number.
    Number,
    /// Seconds, fractions allowed.
    Seconds,
    /// Free text.
    Text,
    /// An absolute path (or empty where the key says so).
    Path,
    /// A list; in the environment, comma separated.
    List,
    /// One of a fixed set of words.
    Choice,
    /// Text by scenario (`KILL_MESSAGE_<SCENARIO>`).
    PerScenario,
    /// A secret: never logged, never printed (`<redacted>`).
    Secret,
    /// A structured value only the file can give.
    Structured,
}

/// Applies one environment value to a configuration; `Err` says what was expected.
pub type Setter<C> = fn(&mut C, &str) -> Result<(), String>;
/// Applies a `KILL_MESSAGE_<SCENARIO>` value: (config, scenario, value).
pub type ScenarioSetter<C> = fn(&mut C, &str, &str);

/// How the environment sets a key.
pub enum Env<C: 'static> {
    /// The file only.
    None,
    /// One variable.
    Name(&'static str, Setter<C>),
    /// One variable per scenario of [`crate::scenario::SCENARIOS`]: the prefix, then the
    /// scenario upper-cased (`KILL_MESSAGE_UNKNOWN_SOURCE`).
    PerScenario(&'static str, ScenarioSetter<C>),
}

/// One row of a settings table.
pub struct Setting<C: 'static> {
    /// The dotted config key, `section.key`.
    pub key: &'static str,
    pub env: Env<C>,
    pub kind: Kind,
    /// The default as the README writes it.
    pub default: &'static str,
    /// The daemon takes a change of this key only at a restart (SIGHUP warns).
    pub restart: bool,
}

impl<C> Setting<C> {
    /// A key only the file sets, applied on reload.
    pub const fn file(key: &'static str, kind: Kind, default: &'static str) -> Self {
        Setting {
            key,
            env: Env::None,
            kind,
            default,
            restart: false,
        }
    }

    /// A key the environment variable `name` also sets.
    pub const fn env(
        key: &'static str,
        name: &'static str,
        set: Setter<C>,
        kind: Kind,
        default: &'static str,
    ) -> Self {
        Setting {
            key,
            env: Env::Name(name, set),
            kind,
            default,
            restart: false,
        }
    }

    /// The same row, taken by the daemon only at a restart.
    pub const fn restart(mut self) -> Self {
        self.restart = true;
        self
    }

    /// The single environment name, if the key has one.
    pub fn env_name(&self) -> Option<&'static str> {
        match self.env {
            Env::Name(n, _) => Some(n),
            Env::PerScenario(..) | Env::None => None,
        }
    }
}

/// Environment names that set a key in the `shim` section *and* one in the daemon's
/// `enforce` section: the original script had one switch for "refuse" and "terminate".
/// The only names allowed in two tables.
pub const SHARED_ENV: &[&str] = &["KILL_ON_NO_FALLBACK_MEDIA", "KILL_ON_UNEXPECTED_ERROR"];

/// Applies every environment name of `table` to `c`; a value that does not parse leaves
/// the key as it was and is reported as `NAME="value": expected …`.
pub fn apply_env<C>(
    table: &[Setting<C>],
    c: &mut C,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<String>,
) {
    for s in table {
        match &s.env {
            Env::None => {}
            Env::Name(name, set) => {
                if let Some(v) = env(name) {
                    if let Err(e) = set(c, &v) {
                        errors.push(format!("{name}={v:?}: {e}"));
                    }
                }
            }
            Env::PerScenario(prefix, set) => {
                for scenario in crate::scenario::SCENARIOS {
                    if let Some(v) = env(&format!("{prefix}{}", scenario.to_ascii_uppercase())) {
                        set(c, scenario, &v);
                    }
                }
            }
        }
    }
}

/// `1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`.
pub fn flag(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected 1 or 0".into()),
    }
}

/// A whole number.
pub fn whole<T: std::str::FromStr>(v: &str) -> Result<T, String> {
    v.trim()
        .parse()
        .map_err(|_| "expected a whole number".to_string())
}

/// A number, fractions allowed where the type allows them.
pub fn number<T: std::str::FromStr>(v: &str) -> Result<T, String> {
    v.trim()
        .parse()
        .map_err(|_| "expected a number".to_string())
}

/// A comma-separated list, blanks dropped.
pub fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// A word of a serde enum (`live_tv`, `hable`).
fn word<T: serde::de::DeserializeOwned>(v: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(v.trim().to_ascii_lowercase())).ok()
}

/// `field = parser(value)?`, as a [`Setter`].
macro_rules! set {
    ($field:ident, $parse:expr) => {
        |c: &mut ShimConfig, v: &str| {
            c.$field = $parse(v)?;
            Ok(())
        }
    };
}

fn heights(v: &str) -> Result<Vec<u32>, String> {
    list(v)
        .iter()
        .map(|s| s.parse())
        .collect::<Result<_, _>>()
        .map_err(|_| "expected numbers separated by commas".to_string())
}

fn guarded_jobs(v: &str) -> Result<Vec<GuardedJob>, String> {
    list(v)
        .iter()
        .map(|s| word(s))
        .collect::<Option<_>>()
        .ok_or_else(|| "expected streaming, optimize, live_tv".to_string())
}

fn tonemap(v: &str) -> Result<ToneMap, String> {
    word(v).ok_or_else(|| "expected hable, mobius, reinhard, clip, linear or gamma".to_string())
}

fn text(v: &str) -> Result<String, String> {
    Ok(v.to_string())
}

/// Judged alone, so a relative path costs only this key (the exec path refuses it too).
fn absolute(v: &str) -> Result<String, String> {
    if v.is_empty() || v.starts_with('/') {
        Ok(v.to_string())
    } else {
        Err("must be an absolute path".into())
    }
}

fn items(v: &str) -> Result<Vec<String>, String> {
    Ok(list(v))
}

/// Every key of the `shim` section, in the README's order.
#[rustfmt::skip]
pub const SHIM: &[Setting<ShimConfig>] = {
    use Kind::*;
    type S = Setting<ShimConfig>;
    &[
        S::env("shim.max_allowed_height", "MAX_ALLOWED_HEIGHT", set!(max_allowed_height, whole), Number, "2000"),
        S::env("shim.prefer_heights", "PREFER_HEIGHTS", set!(prefer_heights, heights), List, "[1080,720,576,480]"),
        S::env("shim.exempt_users", "EXEMPT_USERS", set!(exempt_users, items), List, "[]"),
        S::env("shim.exempt_clients", "EXEMPT_CLIENTS", set!(exempt_clients, items), List, "[]"),
        S::env("shim.exempt_when_viewer_unknown", "EXEMPT_WHEN_VIEWER_UNKNOWN", set!(exempt_when_viewer_unknown, flag), Flag, "false"),
        S::env("shim.fallback_sdr_only", "FALLBACK_SDR_ONLY", set!(fallback_sdr_only, flag), Flag, "true"),
        S::env("shim.allow_hdr_fallback", "ALLOW_HDR_FALLBACK", set!(allow_hdr_fallback, flag), Flag, "false"),
        S::env("shim.waterfall", "AUTO_WATERFALL_ON_CONTINUED_TRANSCODE", set!(waterfall, flag), Flag, "false"),
        S::env("shim.waterfall_min_height", "WATERFALL_MIN_HEIGHT", set!(waterfall_min_height, whole), Number, "360"),
        S::env("shim.remux_1080_min_bitrate_kbps", "REMUX_1080_MIN_BITRATE_KBPS", set!(remux_1080_min_bitrate_kbps, whole), Number, "0"),
        S::env("shim.kill_message_default", "KILL_MESSAGE_DEFAULT", set!(kill_message_default, text), Text, "This 4K/HDR version cannot be converted…"),
        Setting {
            key: "shim.kill_messages",
            env: Env::PerScenario("KILL_MESSAGE_", |c, scenario, v| {
                c.kill_messages.insert(scenario.to_string(), v.to_string());
            }),
            kind: PerScenario,
            default: "{}",
            restart: false,
        },
        S::env("shim.kill_on_no_fallback_media", "KILL_ON_NO_FALLBACK_MEDIA", set!(kill_on_no_fallback_media, flag), Flag, "false"),
        S::env("shim.kill_on_unknown_source", "KILL_ON_UNKNOWN_SOURCE", set!(kill_on_unknown_source, flag), Flag, "true"),
        S::env("shim.kill_on_rewrite_unsupported", "KILL_ON_REWRITE_UNSUPPORTED", set!(kill_on_rewrite_unsupported, flag), Flag, "true"),
        S::env("shim.kill_on_unexpected_error", "KILL_ON_UNEXPECTED_ERROR", set!(kill_on_unexpected_error, flag), Flag, "true"),
        S::env("shim.shadow_mode", "SHADOW_MODE", set!(shadow_mode, flag), Flag, "false"),
        S::env("shim.guarded_jobs", "GUARDED_JOBS", set!(guarded_jobs, guarded_jobs), List, "[\"streaming\"]"),
        S::env("shim.bitrate_ceiling_kbps", "BITRATE_CEILING_KBPS", set!(bitrate_ceiling_kbps, whole), Number, "12000"),
        S::env("shim.tonemap_algorithm", "TONEMAP_ALGORITHM", set!(tonemap_algorithm, tonemap), Choice, "hable"),
        // The exec path reads the variable itself too, as bytes (`exec::resolve_real`).
        S::env("shim.real_transcoder", "DOWNSHIFTARR_REAL_TRANSCODER", set!(real_transcoder, absolute), Path, "\"\""),
        S::env("shim.socket", "DOWNSHIFTARR_SOCKET", set!(socket, text), Path, "/run/downshiftarr/shim.sock").restart(),
        S::env("shim.daemon_budget_ms", "DOWNSHIFTARR_BUDGET_MS", set!(daemon_budget_ms, whole), Number, "50"),
        S::env("shim.decision_log", "DOWNSHIFTARR_DECISION_LOG", set!(decision_log, text), Path, "/var/log/downshiftarr/decisions.jsonl"),
        S::env("shim.probe_max_bytes", "PROBE_MAX_BYTES", set!(probe_max_bytes, whole), Number, "8388608"),
        S::env("shim.log_non_video", "DOWNSHIFTARR_LOG_NON_VIDEO", set!(log_non_video, flag), Flag, "false"),
    ]
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The table names every field of the section once, and nothing else (the daemon crate
    /// checks that both loaders honour each name).
    #[test]
    fn the_shim_table_covers_the_section_once() {
        let v = serde_json::to_value(ShimConfig::default()).unwrap();
        let fields: BTreeSet<String> = v
            .as_object()
            .unwrap()
            .keys()
            .map(|k| format!("shim.{k}"))
            .collect();
        let keys: Vec<String> = SHIM.iter().map(|s| s.key.to_string()).collect();
        let unique: BTreeSet<String> = keys.iter().cloned().collect();
        assert_eq!(unique.len(), keys.len(), "a key twice: {keys:?}");
        assert_eq!(unique, fields);
        let names: Vec<&str> = SHIM.iter().filter_map(|s| s.env_name()).collect();
        let unique: BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "a name twice: {names:?}");
        assert_eq!(
            names.len(),
            SHIM.len() - 1,
            "all but KILL_MESSAGE_<SCENARIO>"
        );
        assert!(SHARED_ENV.iter().all(|n| names.contains(n)));
    }

    #[test]
    fn parsers_say_what_they_expected() {
        assert_eq!(flag(" On "), Ok(true));
        assert_eq!(flag("0"), Ok(false));
        assert_eq!(flag("maybe"), Err("expected 1 or 0".into()));
        assert_eq!(whole::<u32>(" 12 "), Ok(12));
        assert_eq!(whole::<u32>("1.5"), Err("expected a whole number".into()));
        assert_eq!(number::<f64>("1.5"), Ok(1.5));
        assert_eq!(list(" a, ,b ,"), ["a", "b"]);
        assert_eq!(absolute("rel/x"), Err("must be an absolute path".into()));
        assert_eq!(absolute(""), Ok(String::new()));
    }

    /// A relative DOWNSHIFTARR_REAL_TRANSCODER costs only that key, not the other variables.
    #[test]
    fn a_bad_variable_costs_only_its_key() {
        let env = |k: &str| match k {
            "DOWNSHIFTARR_REAL_TRANSCODER" => Some("relative/path".to_string()),
            "SHADOW_MODE" => Some("1".to_string()),
            _ => None,
        };
        let mut c = ShimConfig::default();
        let mut errors = Vec::new();
        apply_env(SHIM, &mut c, &env, &mut errors);
        assert!(c.shadow_mode);
        assert_eq!(c.real_transcoder, "");
        assert_eq!(
            errors,
            ["DOWNSHIFTARR_REAL_TRANSCODER=\"relative/path\": must be an absolute path"]
        );
    }
}
