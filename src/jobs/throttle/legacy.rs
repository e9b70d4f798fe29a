//! The original tool's JSON configuration (`plex-helper.json`), so an existing user swaps the
//! binary and nothing else: its keys, its defaults, its environment overrides (`PLEX_TOKEN`,
//! `QBITTORRENT_PASSWORD`), mapped onto [`ThrottleSettings`].
//!
//! The original's `*_kbps` are KiB/s (it multiplies by 1024 for qBittorrent), and its idle
//! state sets `idle_upload_kbps` (`0` = unlimited) rather than restoring what was found; no
//! restore delay; only `playing` remote streams count. Later versions of the original added
//! notification, health and cooldown keys we do not implement: they are accepted and listed
//! in [`LegacyConfig::ignored_keys`] so the caller can say so; any other key is an error.

use serde::Deserialize;

use crate::config::throttle::{Mode, ThrottleSettings};
use crate::config::Secret;

/// Keys of later versions of the original that are read and ignored.
const IGNORED_KEYS: [&str; 6] = [
    "telegram_bot_token",
    "telegram_chat_id",
    "health_port",
    "cooldown_max_transitions",
    "cooldown_window_minutes",
    "cooldown_state_path",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Original {
    #[serde(default)]
    plex_url: String,
    #[serde(default)]
    plex_token: String,
    #[serde(default)]
    qbittorrent_url: String,
    #[serde(default)]
    qbittorrent_username: String,
    #[serde(default)]
    qbittorrent_password: String,
    #[serde(default)]
    idle_upload_kbps: i64,
    #[serde(default)]
    streaming_upload_kbps: i64,
    #[serde(default)]
    poll_interval_sec: i64,
    #[serde(default)]
    streaming_threshold: i64,
    #[serde(default)]
    idle_threshold: i64,
    // Accepted and ignored (see IGNORED_KEYS).
    #[serde(default)]
    telegram_bot_token: Option<serde_json::Value>,
    #[serde(default)]
    telegram_chat_id: Option<serde_json::Value>,
    #[serde(default)]
    health_port: Option<serde_json::Value>,
    #[serde(default)]
    cooldown_max_transitions: Option<serde_json::Value>,
    #[serde(default)]
    cooldown_window_minutes: Option<serde_json::Value>,
    #[serde(default)]
    cooldown_state_path: Option<serde_json::Value>,
}

/// The original file, understood.
#[derive(Clone)]
pub struct LegacyConfig {
    pub plex_url: String,
    pub plex_token: String,
    pub throttle: ThrottleSettings,
    /// Keys present in the file that we read and ignore.
    pub ignored_keys: Vec<&'static str>,
}

impl std::fmt::Debug for LegacyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegacyConfig")
            .field("plex_url", &self.plex_url)
            .field("plex_token", &"<redacted>")
            .field("throttle", &self.throttle)
            .field("ignored_keys", &self.ignored_keys)
            .finish()
    }
}

/// Reads the original JSON `text` (from `path`, for messages); `plex_token_env` and
/// `password_env` are `PLEX_TOKEN` and `QBITTORRENT_PASSWORD`, which win when non-empty.
/// Errors name the file and the key.
pub fn parse_legacy(
    path: &str,
    text: &str,
    plex_token_env: Option<String>,
    password_env: Option<String>,
) -> Result<LegacyConfig, String> {
    let o: Original = serde_json::from_str(text).map_err(|e| format!("{path}: {e}"))?;
    let present = [
        o.telegram_bot_token.is_some(),
        o.telegram_chat_id.is_some(),
        o.health_port.is_some(),
        o.cooldown_max_transitions.is_some(),
        o.cooldown_window_minutes.is_some(),
        o.cooldown_state_path.is_some(),
    ];
    let ignored_keys = IGNORED_KEYS
        .iter()
        .zip(present)
        .filter_map(|(k, p)| p.then_some(*k))
        .collect();
    let plex_token = plex_token_env
        .filter(|t| !t.is_empty())
        .unwrap_or(o.plex_token);
    let password = password_env
        .filter(|p| !p.is_empty())
        .unwrap_or(o.qbittorrent_password);
    // The original's own checks, with its wording.
    if o.plex_url.is_empty() {
        return Err(format!("{path}: plex_url is required"));
    }
    if plex_token.is_empty() {
        return Err(format!(
            "{path}: plex_token is required (set in config or PLEX_TOKEN env var)"
        ));
    }
    if o.qbittorrent_url.is_empty() {
        return Err(format!("{path}: qbittorrent_url is required"));
    }
    let non_negative = |key: &str, v: i64| {
        u64::try_from(v).map_err(|_| format!("{path}: {key} must not be negative (got {v})"))
    };
    // The original: a value <= 0 means "use the default".
    let or_default = |v: i64, d: u64| u64::try_from(v).ok().filter(|&v| v > 0).unwrap_or(d);
    let streaming = non_negative("streaming_upload_kbps", o.streaming_upload_kbps)?;
    if streaming == 0 {
        return Err(format!(
            "{path}: streaming_upload_kbps is missing or 0, which qbittorrent reads as unlimited; set the upload limit while streaming in KiB/s"
        ));
    }
    let idle = non_negative("idle_upload_kbps", o.idle_upload_kbps)?;
    let threshold = |v: i64, d: u32| u32::try_from(or_default(v, u64::from(d))).unwrap_or(u32::MAX);
    let throttle = ThrottleSettings {
        qbittorrent_url: o.qbittorrent_url,
        username: o.qbittorrent_username,
        password: Secret::new(password),
        mode: Mode::Limit,
        poll_interval_s: or_default(o.poll_interval_sec, 10),
        streaming_threshold: threshold(o.streaming_threshold, 2),
        idle_threshold: threshold(o.idle_threshold, 3),
        restore_delay_s: 0,
        streaming_upload_kib_s: Some(streaming),
        idle_upload_kib_s: Some(idle),
        ..ThrottleSettings::default()
    };
    let errors = throttle.validate();
    if !errors.is_empty() {
        return Err(format!("{path}: {}", errors.join("; ")));
    }
    Ok(LegacyConfig {
        plex_url: o.plex_url,
        plex_token,
        throttle,
        ignored_keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{
        "plex_url": "http://192.168.1.10:32400",
        "plex_token": "file-token",
        "qbittorrent_url": "http://192.168.1.10:8080",
        "qbittorrent_username": "admin",
        "qbittorrent_password": "file-pass",
        "idle_upload_kbps": 0,
        "streaming_upload_kbps": 500,
        "poll_interval_sec": 15,
        "streaming_threshold": 2,
        "idle_threshold": 3
    }"#;

    #[test]
    fn the_original_file_maps_onto_the_settings() {
        let c = parse_legacy("plex-helper.json", EXAMPLE, None, None).unwrap();
        assert_eq!(c.plex_url, "http://192.168.1.10:32400");
        assert_eq!(c.plex_token, "file-token");
        let t = &c.throttle;
        assert_eq!(t.qbittorrent_url, "http://192.168.1.10:8080");
        assert_eq!(
            (t.username.as_str(), t.password.expose()),
            ("admin", "file-pass")
        );
        assert_eq!(t.mode, Mode::Limit);
        assert_eq!(t.streaming_upload_kib_s, Some(500));
        // "idle" is the original's idle_upload_kbps (0 = unlimited), not "what was found".
        assert_eq!(t.idle_upload_kib_s, Some(0));
        assert_eq!(
            (t.poll_interval_s, t.streaming_threshold, t.idle_threshold),
            (15, 2, 3)
        );
        assert_eq!(t.restore_delay_s, 0);
        assert!(!t.count_paused && !t.count_local);
        assert!(c.ignored_keys.is_empty());
        assert!(
            !format!("{c:?}").contains("file-token") && !format!("{c:?}").contains("file-pass")
        );
    }

    #[test]
    fn environment_overrides_and_original_defaults() {
        let text = r#"{"plex_url":"http://p:32400","qbittorrent_url":"http://q:8080",
            "streaming_upload_kbps":300,"poll_interval_sec":0,"idle_threshold":-1,
            "health_port":8081,"telegram_chat_id":"x"}"#;
        let e = parse_legacy("f.json", text, None, None).unwrap_err();
        assert!(e.contains("plex_token is required"), "{e}");
        let c = parse_legacy(
            "f.json",
            text,
            Some("env-token".into()),
            Some("env-pass".into()),
        )
        .unwrap();
        assert_eq!(c.plex_token, "env-token");
        assert_eq!(c.throttle.password.expose(), "env-pass");
        assert_eq!(
            (c.throttle.poll_interval_s, c.throttle.idle_threshold),
            (10, 3)
        );
        assert_eq!(c.ignored_keys, ["telegram_chat_id", "health_port"]);
        let c = parse_legacy(
            "plex-helper.json",
            EXAMPLE,
            Some(String::new()),
            Some("env-pass".into()),
        )
        .unwrap();
        assert_eq!(
            c.plex_token, "file-token",
            "an empty PLEX_TOKEN does not override"
        );
        assert_eq!(c.throttle.password.expose(), "env-pass");
    }

    #[test]
    fn bad_files_name_the_file_and_key() {
        let e = parse_legacy("f.json", r#"{"plex_url":"x","bogus":1}"#, None, None).unwrap_err();
        assert!(e.starts_with("f.json: ") && e.contains("bogus"), "{e}");
        let base = r#""plex_url":"http://p","plex_token":"t","qbittorrent_url":"http://q:8080""#;
        let e = parse_legacy("f.json", &format!("{{{base}}}"), None, None).unwrap_err();
        assert!(e.contains("streaming_upload_kbps"), "{e}");
        let e = parse_legacy(
            "f.json",
            &format!("{{{base},\"streaming_upload_kbps\":5,\"idle_upload_kbps\":-5}}"),
            None,
            None,
        )
        .unwrap_err();
        assert!(e.contains("idle_upload_kbps must not be negative"), "{e}");
        let e = parse_legacy("f.json", r#"{"plex_url":"http://p","plex_token":"t","qbittorrent_url":"q:8080","streaming_upload_kbps":5}"#, None, None).unwrap_err();
        assert!(e.contains("throttle.qbittorrent_url"), "{e}");
        assert!(parse_legacy("f.json", "not json", None, None)
            .unwrap_err()
            .starts_with("f.json: "));
    }
}
