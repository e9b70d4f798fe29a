//! The daemon's settings table: every key of the sections the daemon and the CLI own, with
//! its environment name, kind, default and restart flag. The `shim` section's rows live in
//! the shim crate ([`downshiftarr_shim::config::table::SHIM`]); [`all`] walks both, so the
//! loader, `Config::needs_restart`, the docs test and `check-config` read one list.

use downshiftarr_shim::config::table::{flag, list, number, Kind, Setting, SHIM};

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

/// `TRACKED_USER_NAME`: the original's one tracked user (a blank value is "not set").
fn tracked_user(c: &mut Config, v: &str) -> Result<(), String> {
    if !v.trim().is_empty() {
        c.downloads.tracked_users = vec![v.trim().to_string()];
    }
    Ok(())
}

/// `LOCAL_NETWORK` / `TAILSCALE_NETWORK`: the original's address prefixes (`192.168.`) or
/// CIDRs, comma separated; each is added to `home_networks` and turns `guests_by_network` on,
/// as the original told "you" from guests by them.
fn home_network(c: &mut Config, v: &str) -> Result<(), String> {
    let nets = list(v)
        .iter()
        .map(|p| super::downloads::network_from_prefix(p))
        .collect::<Result<Vec<_>, _>>()?;
    if nets.is_empty() {
        return Ok(());
    }
    for n in nets {
        if !c.downloads.home_networks.contains(&n) {
            c.downloads.home_networks.push(n);
        }
    }
    c.downloads.guests_by_network = true;
    Ok(())
}

/// `DOWNLOADS_NOTIFY_URL` (a secret: the webhook's key is in it).
fn notify_url(c: &mut Config, v: &str) -> Result<(), String> {
    if !v.is_empty() {
        c.downloads.notify.url = secret::Secret::from_env(v);
    }
    Ok(())
}

/// Keys set by more than one environment name (one row per name): the only keys allowed
/// twice in [`DAEMON`].
pub const MULTI_NAME_KEYS: &[&str] = &["downloads.home_networks"];

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
        // The jobs' sections.
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
        S::env("downloads.radarr_url", "RADARR_URL", set_unless_empty!(downloads.radarr_url, String::from), Text, "\"\""),
        S::env("downloads.radarr_api_key", "RADARR_API_KEY", set_unless_empty!(downloads.radarr_api_key, secret::Secret::from_env), Secret, "\"\""),
        S::file("downloads.radarr_api_key_file", Path, "\"\""),
        S::file("downloads.keep_tag", Text, "keep"),
        S::file("downloads.favourite_tag", Text, "favorite"),
        S::file("downloads.remote_root_folders", List, "[]"),
        S::file("downloads.remote_tags", List, "[]"),
        S::file("downloads.add_missing", Flag, "false"),
        S::file("downloads.quality_profile_id", Number, "unset"),
        S::file("downloads.root_folder", Text, "\"\""),
        S::file("downloads.search_dedupe_days", Number, "90"),
        S::file("downloads.command_timeout_s", Number, "300"),
        S::env("downloads.jellyfin_url", "JELLYFIN_URL", set_unless_empty!(downloads.jellyfin_url, String::from), Text, "\"\""),
        S::env("downloads.jellyfin_api_key", "JELLYFIN_API_KEY", set_unless_empty!(downloads.jellyfin_api_key, secret::Secret::from_env), Secret, "\"\""),
        S::file("downloads.jellyfin_api_key_file", Path, "\"\""),
        S::env("downloads.jellystat_url", "JELLYSTAT_URL", set_unless_empty!(downloads.jellystat_url, String::from), Text, "\"\""),
        S::env("downloads.jellystat_api_key", "JELLYSTAT_API_KEY", set_unless_empty!(downloads.jellystat_api_key, secret::Secret::from_env), Secret, "\"\""),
        S::file("downloads.jellystat_api_key_file", Path, "\"\""),
        S::file("downloads.webhook_secret_header", Text, "\"\""),
        S::env("downloads.webhook_secret", "DOWNLOADS_WEBHOOK_SECRET", set_unless_empty!(downloads.webhook_secret, secret::Secret::from_env), Secret, "\"\""),
        S::file("downloads.plex_plays", Flag, "true"),
        S::env("downloads.tracked_users", "TRACKED_USER_NAME", tracked_user, List, "[]"),
        // Two names, one key: the original's two address prefixes (`MULTI_NAME_KEYS`).
        S::env("downloads.home_networks", "LOCAL_NETWORK", home_network, List, "[]"),
        S::env("downloads.home_networks", "TAILSCALE_NETWORK", home_network, List, "[]"),
        S::file("downloads.guests_by_network", Flag, "false"),
        S::file("downloads.min_watched_percent", Number, "90"),
        S::file("downloads.window_days", Number, "90"),
        S::env("downloads.watch_count_threshold", "WATCH_COUNT_THRESHOLD", set!(downloads.watch_count_threshold, number), Number, "2"),
        S::file("downloads.instant_rating", Number, "8.5"),
        S::file("downloads.rewatch_min_rating", Number, "7.0"),
        S::file("downloads.gem_rating", Number, "8.0"),
        S::file("downloads.gem_max_votes", Number, "50000"),
        S::file("downloads.old_foreign_before_year", Number, "1990"),
        S::file("downloads.keywords", List, "[\"criterion\", \"director's cut\", …]"),
        S::file("downloads.rare_genres", List, "[\"Foreign\",\"World Cinema\",\"Silent\"]"),
        S::file("downloads.instant_genres", List, "[\"Family\",\"Animation\"]"),
        S::env("downloads.min_seeders_rare", "MIN_SEEDERS_RARE", set!(downloads.min_seeders_rare, number), Number, "0"),
        S::env("downloads.prowlarr_url", "PROWLARR_URL", set_unless_empty!(downloads.prowlarr_url, String::from), Text, "\"\""),
        S::env("downloads.prowlarr_api_key", "PROWLARR_API_KEY", set_unless_empty!(downloads.prowlarr_api_key, secret::Secret::from_env), Secret, "\"\""),
        S::file("downloads.prowlarr_api_key_file", Path, "\"\""),
        S::file("downloads.users", Structured, "{}"),
        S::env("downloads.dry_run", "DOWNLOADS_DRY_RUN", set!(downloads.dry_run, flag), Flag, "false"),
        S::file("downloads.connect_timeout_ms", Number, "3000"),
        S::file("downloads.request_timeout_ms", Number, "10000"),
        S::file("downloads.retry_initial_s", Number, "30"),
        S::env("downloads.notify.url", "DOWNLOADS_NOTIFY_URL", notify_url, Secret, "\"\""),
        S::file("downloads.notify.kind", Choice, "\"\""),
        S::file("downloads.notify.weekly_summary", Flag, "false"),
        S::file("downloads.prune.enabled", Flag, "false"),
        S::file("downloads.prune.after_days", Number, "180"),
        S::file("downloads.prune.keep_rating", Number, "8.5"),
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
            "DOWNSHIFTARR_WEBHOOK_TOKEN" => "env-webhook-token-0123456789",
            "DOWNSHIFTARR_API_KEY" => "env-api-key-0123456789abcdef",
            "TRAKT_CLIENT_ID" => "env-client-id",
            "TRAKT_CLIENT_SECRET" => "env-client-secret",
            "RADARR_URL" => "http://radarr.lan:7878",
            "RADARR_API_KEY" => "env-radarr-key",
            "JELLYFIN_URL" => "http://jellyfin.lan:8096",
            "JELLYFIN_API_KEY" => "env-jellyfin-key",
            "JELLYSTAT_URL" => "http://jellystat.lan:3000",
            "JELLYSTAT_API_KEY" => "env-jellystat-key",
            "PROWLARR_URL" => "http://prowlarr.lan:9696",
            "PROWLARR_API_KEY" => "env-prowlarr-key",
            "TRACKED_USER_NAME" => "alice",
            "WATCH_COUNT_THRESHOLD" => "3",
            "MIN_SEEDERS_RARE" => "5",
            "LOCAL_NETWORK" => "192.168.",
            "TAILSCALE_NETWORK" => "100.64.",
            "DOWNLOADS_WEBHOOK_SECRET" => "env-webhook-secret",
            "DOWNLOADS_NOTIFY_URL" => "https://ntfy.sh/env-topic",
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
                || name == "LOCAL_NETWORK"
                || name == "TAILSCALE_NETWORK"
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

    /// The original design's `.env` as it was: its names land where the job reads them.
    #[test]
    fn the_original_downloads_environment_is_read() {
        let vars = [
            ("RADARR_URL", "http://radarr:7878"),
            ("RADARR_API_KEY", "radarr-key-1"),
            ("TRACKED_USER_NAME", " Ann "),
            ("WATCH_COUNT_THRESHOLD", "3"),
            ("LOCAL_NETWORK", "192.168."),
            ("TAILSCALE_NETWORK", "100.64., fd7a:115c:a1e0:"),
            ("DOWNLOADS_DRY_RUN", "true"),
        ];
        let env = |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            file.path(),
            r#"{"downloads": {"home_networks": ["10.8.0.0/24", "192.168.0.0/16"]}}"#,
        )
        .unwrap();
        let c = crate::config::load_env(file.path(), &env).unwrap();
        let d = &c.downloads;
        assert!(d.enabled() && d.dry_run);
        assert_eq!(d.radarr_api_key.expose(), "radarr-key-1");
        assert_eq!(d.tracked_users, ["Ann"]);
        assert_eq!(d.watch_count_threshold, 3);
        assert_eq!(
            d.home_networks,
            [
                "10.8.0.0/24",
                "192.168.0.0/16",
                "100.64.0.0/16",
                "fd7a:115c:a1e0::/48"
            ]
        );
        assert!(d.guests_by_network);
        // Blank values are "not set", as the original read them.
        let env = |k: &str| {
            ["TRACKED_USER_NAME", "LOCAL_NETWORK"]
                .contains(&k)
                .then(String::new)
        };
        let c = crate::config::load_env(&no_file(), &env).unwrap();
        assert!(c.downloads.tracked_users.is_empty() && !c.downloads.guests_by_network);
        // A prefix that is not one is said with its variable.
        let env = |k: &str| (k == "TAILSCALE_NETWORK").then(|| "100.64.x".to_string());
        let e = format!(
            "{:#}",
            crate::config::load_env(&no_file(), &env).unwrap_err()
        );
        assert!(
            e.contains("TAILSCALE_NETWORK=\"100.64.x\": \"100.64.x\" is neither"),
            "{e}"
        );
    }

    #[test]
    fn no_key_or_environment_name_twice() {
        let mut keys = BTreeSet::new();
        let mut names: HashMap<&str, Vec<&str>> = HashMap::new();
        for row in all() {
            assert!(
                keys.insert(row.key) || MULTI_NAME_KEYS.contains(&row.key),
                "{} twice",
                row.key
            );
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
    /// list `SECTIONS` gives. A key holding a fixed group of keys (`downloads.notify`) is
    /// listed by its own keys (`downloads.notify.url`); an empty map (`downloads.users`,
    /// `shim.kill_messages`) is one structured key.
    #[test]
    fn the_table_covers_every_key_of_every_section() {
        fn keys(prefix: String, v: &Value, out: &mut BTreeSet<String>) {
            match v.as_object() {
                Some(o) if !o.is_empty() => {
                    for (k, v) in o {
                        keys(format!("{prefix}.{k}"), v, out);
                    }
                }
                _ => {
                    out.insert(prefix);
                }
            }
        }
        let v = serde_json::to_value(Config::default()).unwrap();
        let mut in_config = BTreeSet::new();
        for (section, v) in v.as_object().unwrap() {
            assert!(v.is_object(), "{section}");
            for (key, v) in v.as_object().unwrap() {
                keys(format!("{section}.{key}"), v, &mut in_config);
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
        assert!(reserved.is_empty(), "{reserved:?}");
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
            let was = base.pointer(&pointer(key)).cloned().unwrap();
            let candidates = match &was {
                Value::Bool(b) => vec![Value::Bool(!b)],
                Value::Number(_) => vec![Value::from(7), Value::from(3)],
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
                    crate::config::parse(&v.to_string())
                        .ok()
                        .filter(|c| *c != old)
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
