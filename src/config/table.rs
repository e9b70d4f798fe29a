//! The daemon's settings table: every key of the sections the daemon and the CLI own, with
//! its environment name, kind, default and restart flag. The `shim` section's rows live in
//! the shim crate ([`downshiftarr_shim::config::table::SHIM`]); [`all`] walks both, so the
//! loader, `Config::needs_restart`, the docs test and `check-config` read one list.

use downshiftarr_shim::config::table::{flag, number, Kind, Setting, SHIM};

use super::secret;
use super::Config;

/// `section.field = parser(value)?`, as a setter.
macro_rules! set {
    ($section:ident . $field:ident, $parse:expr) => {
        |c: &mut Config, v: &str| {
            c.$section.$field = $parse(v)?;
            Ok(())
        }
    };
}

/// An empty value means "not set" for URLs, subjects and secrets, as the original script's
/// `.env` reading did (`PLEX_TOKEN=` in a settings file does not erase the token file).
macro_rules! set_unless_empty {
    ($section:ident . $field:ident, $make:expr) => {
        |c: &mut Config, v: &str| {
            if !v.is_empty() {
                c.$section.$field = $make(v);
            }
            Ok(())
        }
    };
}

/// `TAUTULLI_LOG_NOTIFIER_ID`: a blank value is "not set", as the original script read it.
fn notifier_id(c: &mut Config, v: &str) -> Result<(), String> {
    if !v.trim().is_empty() {
        c.tautulli.log_notifier_id = Some(number(v)?);
    }
    Ok(())
}

/// Every key of the daemon's own sections, section by section as [`super::SECTIONS`] lists
/// them. Keys without an environment name are set by the file only.
#[rustfmt::skip]
pub const DAEMON: &[Setting<Config>] = {
    use Kind::*;
    type S = Setting<Config>;
    &[
        S::env("plex.url", "PLEX_URL", set_unless_empty!(plex.url, String::from), Text, "http://127.0.0.1:32400"),
        S::env("plex.token", "PLEX_TOKEN", set_unless_empty!(plex.token, secret::Secret::from_env), Secret, "\"\""),
        S::file("plex.token_file", Path, "\"\""),
        S::file("plex.connect_timeout_ms", Number, "2000"),
        S::file("plex.read_timeout_ms", Number, "15000"),
        S::file("index.database", Path, "\"\"").restart(),
        S::file("index.page_size", Number, "500"),
        S::file("index.metadata_batch", Number, "50"),
        S::file("index.sync_interval_s", Number, "900"),
        S::file("index.deletion_check_interval_s", Number, "21600"),
        S::file("index.path_mappings", Structured, "[]"),
        S::file("daemon.state_dir", Path, "/var/lib/downshiftarr").restart(),
        S::file("daemon.runtime_dir", Path, "/run/downshiftarr"),
        S::file("daemon.debug", Flag, "false"),
        S::file("daemon.heal_transcoder", Flag, "true").restart(),
        S::file("daemon.plex_dir", Path, "\"\"").restart(),
        S::file("daemon.shim_binary", Path, "/usr/lib/downshiftarr/downshiftarr-shim").restart(),
        S::file("daemon.heal_interval_s", Number, "5").restart(),
        S::file("daemon.socket_group", Text, "plex").restart(),
        S::file("daemon.allowed_uids", List, "[]").restart(),
        S::file("daemon.allowed_gids", List, "[]").restart(),
        S::file("daemon.http_listen", Text, "127.0.0.1:9877").restart(),
        S::env("daemon.webhook_token", "DOWNSHIFTARR_WEBHOOK_TOKEN", set_unless_empty!(daemon.webhook_token, secret::Secret::from_env), Secret, "\"\""),
        S::env("daemon.api_key", "DOWNSHIFTARR_API_KEY", set_unless_empty!(daemon.api_key, secret::Secret::from_env), Secret, "\"\""),
        S::file("enforce.terminate_refused", Flag, "true"),
        S::env("enforce.session_lookup_retries", "SESSION_LOOKUP_RETRIES", set!(enforce.session_lookup_retries, number), Number, "8"),
        S::env("enforce.session_lookup_delay_s", "SESSION_LOOKUP_DELAY_S", set!(enforce.session_lookup_delay_s, number), Seconds, "0.5"),
        S::file("enforce.guard", Flag, "true"),
        S::file("enforce.guard_observations", Number, "2"),
        S::file("enforce.guard_interval_s", Number, "10"),
        S::file("enforce.switch_client", Flag, "false"),
        S::env("enforce.seek_delay_s", "SEEK_DELAY_S", set!(enforce.seek_delay_s, number), Seconds, "0.75"),
        S::env("enforce.seek_retries", "SEEK_RETRIES", set!(enforce.seek_retries, number), Number, "3"),
        S::env("enforce.seek_retry_delay_s", "SEEK_RETRY_DELAY_S", set!(enforce.seek_retry_delay_s, number), Seconds, "0.5"),
        S::env("enforce.kill_on_plex_connect_fail", "KILL_ON_PLEX_CONNECT_FAIL", set!(enforce.kill_on_plex_connect_fail, flag), Flag, "true"),
        S::env("enforce.kill_on_session_not_found", "KILL_ON_SESSION_NOT_FOUND", set!(enforce.kill_on_session_not_found, flag), Flag, "true"),
        S::env("enforce.kill_on_client_not_found", "KILL_ON_CLIENT_NOT_FOUND", set!(enforce.kill_on_client_not_found, flag), Flag, "true"),
        // Shared with the shim's row (`SHARED_ENV`): one switch, two defaults.
        S::env("enforce.kill_on_no_fallback_media", "KILL_ON_NO_FALLBACK_MEDIA", set!(enforce.kill_on_no_fallback_media, flag), Flag, "true"),
        S::env("enforce.kill_on_switch_fail", "KILL_ON_SWITCH_FAIL", set!(enforce.kill_on_switch_fail, flag), Flag, "true"),
        S::env("enforce.kill_on_unexpected_error", "KILL_ON_UNEXPECTED_ERROR", set!(enforce.kill_on_unexpected_error, flag), Flag, "true"),
        S::file("enforce.shadow_mode", Flag, "unset"),
        S::env("tautulli.url", "TAUTULLI_URL", set_unless_empty!(tautulli.url, String::from), Text, "\"\""),
        S::env("tautulli.api_key", "TAUTULLI_APIKEY", set_unless_empty!(tautulli.api_key, secret::Secret::from_env), Secret, "\"\""),
        S::file("tautulli.api_key_file", Path, "\"\""),
        S::env("tautulli.log_notifier_id", "TAUTULLI_LOG_NOTIFIER_ID", notifier_id, Number, "unset"),
        S::env("tautulli.log_subject", "TAUTULLI_LOG_SUBJECT", set_unless_empty!(tautulli.log_subject, String::from), Text, "Downshiftarr"),
        S::file("tautulli.timeout_ms", Number, "8000"),
        // The jobs' sections (`downloads` is reserved: accepted as it is until its job lands).
        S::file("throttle.qbittorrent_url", Text, "\"\""),
        S::file("throttle.username", Text, "\"\""),
        S::env("throttle.password", "QBITTORRENT_PASSWORD", set_unless_empty!(throttle.password, secret::Secret::from_env), Secret, "\"\""),
        S::file("throttle.password_file", Path, "\"\""),
        S::file("throttle.api_key", Secret, "\"\""),
        S::file("throttle.mode", Text, "limit"),
        S::file("throttle.poll_interval_s", Number, "10"),
        S::file("throttle.streaming_threshold", Number, "2"),
        S::file("throttle.idle_threshold", Number, "3"),
        S::file("throttle.restore_delay_s", Number, "30"),
        S::file("throttle.lan_cidrs", List, "[]"),
        S::file("throttle.remote_cidrs", List, "[]"),
        S::file("throttle.count_paused", Flag, "false"),
        S::file("throttle.count_buffering", Flag, "false"),
        S::file("throttle.count_local", Flag, "false"),
        S::file("throttle.exclude_users", List, "[]"),
        S::file("throttle.exclude_clients", List, "[]"),
        S::file("throttle.streaming_upload_kib_s", Number, "unset"),
        S::file("throttle.streaming_download_kib_s", Number, "unset"),
        S::file("throttle.upload_capacity_mbit_s", Number, "unset"),
        S::file("throttle.safety_margin_mbit_s", Number, "0"),
        S::file("throttle.floor_kib_s", Number, "64"),
        S::file("throttle.idle_upload_kib_s", Number, "unset"),
        S::file("throttle.request_timeout_ms", Number, "5000"),
        S::file("scrobble.trakt_url", Text, "https://api.trakt.tv"),
        S::env("scrobble.client_id", "TRAKT_CLIENT_ID", set_unless_empty!(scrobble.client_id, String::from), Text, "\"\""),
        S::env("scrobble.client_secret", "TRAKT_CLIENT_SECRET", set_unless_empty!(scrobble.client_secret, secret::Secret::from_env), Secret, "\"\""),
        S::file("scrobble.client_secret_file", Path, "\"\""),
        S::file("scrobble.users", List, "[]"),
        S::file("scrobble.server_uuid", Text, "\"\""),
        S::file("scrobble.sections", List, "[]"),
        S::file("scrobble.include_extras", Flag, "false"),
        S::file("scrobble.min_duration_s", Number, "0"),
        S::file("scrobble.watched_threshold", Number, "80"),
        S::file("scrobble.pause_debounce_s", Number, "5"),
        S::file("scrobble.pause_tolerance_pct", Number, "1.0"),
        S::file("scrobble.stop_debounce_s", Number, "5"),
        S::file("scrobble.forced_stop_after_s", Number, "120"),
        S::file("scrobble.connect_timeout_ms", Number, "5000"),
        S::file("scrobble.request_timeout_ms", Number, "10000"),
        S::file("downloads", Structured, "reserved"),
    ]
};

/// One row of either table, as far as docs and the restart diff care.
pub struct Row {
    pub key: &'static str,
    pub env: Option<&'static str>,
    pub kind: Kind,
    pub default: &'static str,
    pub restart: bool,
}

/// Every row: the shim's section, then the daemon's.
pub fn all() -> impl Iterator<Item = Row> {
    fn row<C>(s: &Setting<C>) -> Row {
        Row {
            key: s.key,
            env: s.env_name(),
            kind: s.kind,
            default: s.default,
            restart: s.restart,
        }
    }
    SHIM.iter().map(row).chain(DAEMON.iter().map(row))
}

/// The JSON pointer of a dotted key (`daemon.state_dir` → `/daemon/state_dir`).
pub fn pointer(key: &str) -> String {
    format!("/{}", key.replace('.', "/"))
}

/// Table invariants, beside the table: every row is honoured by both loaders, names are
/// unique, the table covers every key, and restart flags drive `needs_restart`.
#[cfg(test)]
mod tests {
    use super::*;
    use downshiftarr_shim::config::table::{Env, SHARED_ENV};
    use serde_json::Value;
    use std::collections::{BTreeSet, HashMap};

    /// A valid value different from the default for each environment name. A new row
    /// without one fails [`every_environment_name_is_honoured_by_both_loaders`].
    fn sample(name: &str, kind: Kind, default: &str) -> String {
        if kind == Kind::Flag {
            return if default == "true" { "0" } else { "1" }.into();
        }
        let v = match name {
            "MAX_ALLOWED_HEIGHT" => "1500",
            "PREFER_HEIGHTS" => "720, 480",
            "EXEMPT_USERS" => "alice, bob",
            "EXEMPT_CLIENTS" => "Roku",
            "WATERFALL_MIN_HEIGHT" => "480",
            "REMUX_1080_MIN_BITRATE_KBPS" => "25000",
            "KILL_MESSAGE_DEFAULT" => "no 4K here",
            "GUARDED_JOBS" => "streaming,optimize",
            "BITRATE_CEILING_KBPS" => "8000",
            "TONEMAP_ALGORITHM" => "Mobius",
            "DOWNSHIFTARR_REAL_TRANSCODER" => "/opt/plex/real",
            "DOWNSHIFTARR_SOCKET" => "/tmp/other.sock",
            "DOWNSHIFTARR_BUDGET_MS" => "120",
            "DOWNSHIFTARR_DECISION_LOG" => "/tmp/d.jsonl",
            "PROBE_MAX_BYTES" => "1048576",
            "PLEX_URL" => "http://plex.lan:32400",
            "PLEX_TOKEN" => "env-token",
            "SESSION_LOOKUP_RETRIES" => "3",
            "SESSION_LOOKUP_DELAY_S" => "1.5",
            "SEEK_DELAY_S" => "2",
            "SEEK_RETRIES" => "5",
            "SEEK_RETRY_DELAY_S" => "1.25",
            "TAUTULLI_URL" => "http://tautulli.lan:8181",
            "TAUTULLI_APIKEY" => "env-key",
            "TAUTULLI_LOG_NOTIFIER_ID" => "4",
            "TAUTULLI_LOG_SUBJECT" => "Guard",
            "QBITTORRENT_PASSWORD" => "env-qbit-pass",
            "TRAKT_CLIENT_ID" => "env-client-id",
            "TRAKT_CLIENT_SECRET" => "env-client-secret",
            "DOWNSHIFTARR_WEBHOOK_TOKEN" => "env-webhook-token",
            "DOWNSHIFTARR_API_KEY" => "env-api-key",
            other => panic!("no sample value for {other}: add one to this test"),
        };
        v.to_string()
    }

    fn at(c: &impl serde::Serialize, key: &str) -> Value {
        let v = serde_json::to_value(c).unwrap();
        v.pointer(&pointer(key)).cloned().unwrap_or(Value::Null)
    }

    fn no_file() -> std::path::PathBuf {
        std::path::PathBuf::from("/nonexistent/downshiftarr/config.json")
    }

    /// Issue 10: `load_strict` never applied the shim's names, so `check-config` and the
    /// daemon saw another configuration than the shim. Each variable alone, through the
    /// shim's loader and the daemon's: both must move the key off its default.
    #[test]
    fn every_environment_name_is_honoured_by_both_loaders() {
        let default = Config::default();
        let mut seen = 0;
        for row in all() {
            let Some(name) = row.env else { continue };
            let value = sample(name, row.kind, row.default);
            let env = |k: &str| (k == name).then(|| value.clone());
            let daemon = crate::config::load_env(&no_file(), &env)
                .unwrap_or_else(|e| panic!("{name}={value:?}: {e:#}"));
            assert_ne!(
                at(&daemon, row.key),
                at(&default, row.key),
                "the daemon's loader ignores {name} for {}",
                row.key
            );
            let shim = downshiftarr_shim::config::load(&no_file(), &env);
            assert!(shim.errors.is_empty(), "{name}: {:?}", shim.errors);
            if let Some(field) = row.key.strip_prefix("shim.") {
                assert_eq!(
                    at(&shim.config, field),
                    at(&daemon.shim, field),
                    "the shim and the daemon read {name} differently"
                );
                assert_ne!(
                    at(&shim.config, field),
                    at(&default.shim, field),
                    "the shim's loader ignores {name}"
                );
            } else if !SHARED_ENV.contains(&name) {
                assert_eq!(shim.config, default.shim, "{name} is not a shim name");
            }
            // A value that does not parse is an error naming the variable, in both.
            if !matches!(
                row.kind,
                Kind::Text | Kind::Secret | Kind::Path | Kind::List
            ) || name == "PREFER_HEIGHTS"
                || name == "GUARDED_JOBS"
            {
                let env = |k: &str| (k == name).then(|| "x-not-valid".to_string());
                let e = crate::config::load_env(&no_file(), &env).unwrap_err();
                assert!(format!("{e:#}").contains(name), "{e:#}");
                if row.key.starts_with("shim.") {
                    let shim = downshiftarr_shim::config::load(&no_file(), &env);
                    assert!(shim.errors[0].starts_with(&format!("{name}=")), "{shim:?}");
                }
            }
            seen += 1;
        }
        assert!(seen > 40, "only {seen} environment names");
        // The per-scenario family.
        let env = |k: &str| (k == "KILL_MESSAGE_SWITCH_FAIL").then(|| "bye".to_string());
        let daemon = crate::config::load_env(&no_file(), &env).unwrap();
        let shim = downshiftarr_shim::config::load(&no_file(), &env).config;
        assert_eq!(daemon.shim.kill_message("switch_fail"), "bye");
        assert_eq!(shim.kill_message("switch_fail"), "bye");
    }

    /// One switch of the original script, two keys: both move, each from its own default.
    #[test]
    fn a_shared_name_sets_the_shim_and_the_guard() {
        for name in SHARED_ENV {
            for (value, want) in [("1", true), ("0", false)] {
                let env = |k: &str| (k == *name).then(|| value.to_string());
                let c = crate::config::load_env(&no_file(), &env).unwrap();
                let field = name.to_ascii_lowercase();
                assert_eq!(
                    at(&c, &format!("shim.{field}")),
                    Value::Bool(want),
                    "{name}"
                );
                assert_eq!(
                    at(&c, &format!("enforce.{field}")),
                    Value::Bool(want),
                    "{name}"
                );
            }
        }
        let d = Config::default();
        assert!(!d.shim.kill_on_no_fallback_media && d.enforce.kill_on_no_fallback_media);
    }

    #[test]
    fn no_key_or_environment_name_twice() {
        let mut keys = BTreeSet::new();
        let mut names: HashMap<&str, Vec<&str>> = HashMap::new();
        for row in all() {
            assert!(keys.insert(row.key), "{} twice", row.key);
            if let Some(n) = row.env {
                names.entry(n).or_default().push(row.key);
            }
        }
        for (name, keys) in names {
            if SHARED_ENV.contains(&name) {
                assert_eq!(keys.len(), 2, "{name}: {keys:?}");
                assert!(keys[0].starts_with("shim.") && keys[1].starts_with("enforce."));
            } else {
                assert_eq!(keys.len(), 1, "{name} sets {keys:?}");
            }
        }
        let families: Vec<_> = SHIM
            .iter()
            .filter_map(|s| match s.env {
                Env::PerScenario(p, _) => Some(p),
                _ => None,
            })
            .collect();
        assert_eq!(families, ["KILL_MESSAGE_"]);
    }

    /// The table lists every key of every section and nothing else; the sections are the
    /// list `SECTIONS` gives.
    #[test]
    fn the_table_covers_every_key_of_every_section() {
        let v = serde_json::to_value(Config::default()).unwrap();
        let mut in_config = BTreeSet::new();
        for (section, keys) in v.as_object().unwrap() {
            for key in keys.as_object().unwrap().keys() {
                in_config.insert(format!("{section}.{key}"));
            }
        }
        let reserved: Vec<&str> = crate::config::SECTIONS
            .iter()
            .filter(|s| s.reserved)
            .map(|s| s.name)
            .collect();
        let in_table: BTreeSet<String> = all()
            .map(|r| r.key.to_string())
            .filter(|k| !reserved.contains(&k.as_str()))
            .collect();
        assert_eq!(in_table, in_config);
        let sections: BTreeSet<&str> = all().map(|r| r.key.split('.').next().unwrap()).collect();
        let listed: BTreeSet<&str> = crate::config::SECTIONS.iter().map(|s| s.name).collect();
        assert_eq!(sections, listed);
        assert_eq!(reserved, ["downloads"]);
    }

    /// The README's configuration reference names every key and every environment name.
    #[test]
    fn the_readme_documents_every_key_and_environment_name() {
        let readme = include_str!("../../README.md");
        let start = readme.find("## Configuration").unwrap();
        let end = start
            + readme[start..]
                .find("\n## ")
                .unwrap_or(readme.len() - start);
        let doc = &readme[start..end];
        for row in all() {
            let leaf = row.key.rsplit('.').next().unwrap_or(row.key);
            assert!(
                doc.contains(&format!("`{leaf}`")) || doc.contains(&format!(".{leaf}`")),
                "README: {}",
                row.key
            );
            if let Some(n) = row.env {
                assert!(doc.contains(&format!("`{n}`")), "README: {n}");
            }
        }
        for s in crate::config::SECTIONS {
            assert!(
                doc.contains(&format!("`{}`", s.name)),
                "README: section {}",
                s.name
            );
        }
    }

    /// Issue 10: the SIGHUP diff was an inline list; now the rows' flag decides.
    #[test]
    fn needs_restart_follows_the_tables_flag() {
        let old = Config::default();
        let base = serde_json::to_value(&old).unwrap();
        // The key set to another value its type accepts.
        let changed = |key: &str| -> Config {
            let old = base.pointer(&pointer(key)).cloned().unwrap();
            let candidates = match old {
                Value::Bool(b) => vec![Value::Bool(!b)],
                Value::Number(_) => vec![Value::from(7)],
                Value::String(_) => vec![
                    Value::from("/elsewhere/x"),
                    Value::from("mobius"),
                    Value::from("budget"),
                ],
                Value::Array(_) => vec![serde_json::json!([7]), serde_json::json!(["optimize"])],
                Value::Null => vec![Value::Bool(true), Value::from(7)],
                other => panic!("{key}: {other}"),
            };
            candidates
                .into_iter()
                .find_map(|new| {
                    let mut v = base.clone();
                    *v.pointer_mut(&pointer(key)).unwrap() = new;
                    crate::config::parse(&v.to_string()).ok()
                })
                .unwrap_or_else(|| panic!("no other value for {key}"))
        };
        let mut restart = Vec::new();
        for row in all().filter(|r| r.kind != Kind::Structured && r.kind != Kind::PerScenario) {
            let new = changed(row.key);
            assert_ne!(new, old, "{}", row.key);
            let said = Config::needs_restart(&old, &new);
            if row.restart {
                assert_eq!(said, [row.key]);
                restart.push(row.key);
            } else {
                assert!(said.is_empty(), "{}: {said:?}", row.key);
            }
        }
        // The keys the old inline list named.
        for k in [
            "shim.socket",
            "daemon.state_dir",
            "daemon.http_listen",
            "daemon.socket_group",
            "daemon.allowed_uids",
            "daemon.allowed_gids",
            "daemon.heal_transcoder",
            "daemon.plex_dir",
            "daemon.shim_binary",
            "daemon.heal_interval_s",
            "index.database",
        ] {
            assert!(restart.contains(&k), "{k}");
        }
        assert_eq!(restart.len(), 11, "{restart:?}");
    }
}
