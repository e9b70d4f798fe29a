//! The `throttle` section of the configuration: every key with its default, unknown keys
//! rejected, and a validation whose messages name the key.
//!
//! Units are in the key names: `*_kib_s` are KiB/s (qBittorrent's UI unit), `*_mbit_s` are
//! Mbit/s (how an internet line is sold).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::cidr::Cidr;
use super::secret::Secret;
use crate::clients::qbittorrent::{QbitOptions, RateLimit};

/// How the job throttles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A fixed global upload (and optionally download) limit.
    #[default]
    Limit,
    /// The line's upload capacity minus the remote streams' bitrates minus a margin.
    Budget,
    /// qBittorrent's alternative speed mode on; the user's own limits untouched.
    AltSpeed,
}

/// The `throttle` section.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThrottleSettings {
    /// The WebUI URL; empty: the job is off.
    pub qbittorrent_url: String,
    pub username: String,
    /// Prefer `password_file` or `QBITTORRENT_PASSWORD` (which wins).
    pub password: Secret,
    /// A file holding the password (first line); must be 0600 or stricter.
    pub password_file: String,
    /// `qbt_…` (qBittorrent ≥ 5.2).
    pub api_key: Secret,
    pub mode: Mode,
    /// Seconds between session polls when no event arrives.
    pub poll_interval_s: u64,
    /// Consecutive observations with remote streams before throttling.
    pub streaming_threshold: u32,
    /// Consecutive observations without remote streams before giving the bandwidth back.
    pub idle_threshold: u32,
    /// And at least this long since the last remote stream was seen.
    pub restore_delay_s: u64,
    /// Addresses that are local whatever Plex says (a LAN client behind a reverse proxy).
    pub lan_cidrs: Vec<String>,
    /// Addresses that are remote whatever Plex says (VPN clients).
    pub remote_cidrs: Vec<String>,
    /// Paused streams count (`playing` always does).
    pub count_paused: bool,
    pub count_buffering: bool,
    /// Local streams count too.
    pub count_local: bool,
    pub exclude_users: Vec<String>,
    /// Player titles or products (`Plex Web`).
    pub exclude_clients: Vec<String>,
    /// `limit` mode: the upload limit while streaming.
    pub streaming_upload_kib_s: Option<u64>,
    /// `limit` and `budget` modes: a download limit while streaming (none: untouched).
    pub streaming_download_kib_s: Option<u64>,
    /// `budget` mode: the line's upload capacity.
    pub upload_capacity_mbit_s: Option<f64>,
    /// `budget` mode: kept free on top of the streams.
    pub safety_margin_mbit_s: f64,
    /// `budget` mode: the computed limit never goes below this.
    pub floor_kib_s: u64,
    /// The upload limit when idle; none: put back what was found (`0` = unlimited).
    pub idle_upload_kib_s: Option<u64>,
    /// Per qBittorrent request.
    pub request_timeout_ms: u64,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        ThrottleSettings {
            qbittorrent_url: String::new(),
            username: String::new(),
            password: Secret::default(),
            password_file: String::new(),
            api_key: Secret::default(),
            mode: Mode::Limit,
            poll_interval_s: 10,
            streaming_threshold: 2,
            idle_threshold: 3,
            restore_delay_s: 30,
            lan_cidrs: Vec::new(),
            remote_cidrs: Vec::new(),
            count_paused: false,
            count_buffering: false,
            count_local: false,
            exclude_users: Vec::new(),
            exclude_clients: Vec::new(),
            streaming_upload_kib_s: None,
            streaming_download_kib_s: None,
            upload_capacity_mbit_s: None,
            safety_margin_mbit_s: 0.0,
            floor_kib_s: 64,
            idle_upload_kib_s: None,
            request_timeout_ms: 5000,
        }
    }
}

impl std::fmt::Debug for ThrottleSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThrottleSettings")
            .field("qbittorrent_url", &self.qbittorrent_url)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("password_file", &self.password_file)
            .field("api_key", &self.api_key)
            .field("mode", &self.mode)
            .field("poll_interval_s", &self.poll_interval_s)
            .field("streaming_threshold", &self.streaming_threshold)
            .field("idle_threshold", &self.idle_threshold)
            .field("restore_delay_s", &self.restore_delay_s)
            .field("streaming_upload_kib_s", &self.streaming_upload_kib_s)
            .field("upload_capacity_mbit_s", &self.upload_capacity_mbit_s)
            .finish_non_exhaustive()
    }
}

impl ThrottleSettings {
    /// The job runs only with a qBittorrent URL.
    pub fn enabled(&self) -> bool {
        !self.qbittorrent_url.trim().is_empty()
    }

    /// Every problem, each naming its key (`throttle.<key>: …`); empty when valid or off.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if !self.enabled() {
            return errors;
        }
        let mut err = |key: &str, msg: String| errors.push(format!("throttle.{key}: {msg}"));
        let url = self.qbittorrent_url.trim();
        match reqwest::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            _ => err(
                "qbittorrent_url",
                format!("{url:?} is not an http(s)://host:port URL"),
            ),
        }
        if !self.password.expose().is_empty()
            && !self.password_file.is_empty()
            && !self.password_from_env()
        {
            err(
                "password_file",
                "set either password or password_file, not both".into(),
            );
        }
        if self.poll_interval_s == 0 {
            err("poll_interval_s", "must be at least 1".into());
        }
        if self.streaming_threshold == 0 {
            err(
                "streaming_threshold",
                "must be at least 1 observation".into(),
            );
        }
        if self.idle_threshold == 0 {
            err("idle_threshold", "must be at least 1 observation".into());
        }
        if self.request_timeout_ms == 0 {
            err("request_timeout_ms", "must be at least 1".into());
        }
        for (key, list) in [
            ("lan_cidrs", &self.lan_cidrs),
            ("remote_cidrs", &self.remote_cidrs),
        ] {
            for (i, c) in list.iter().enumerate() {
                if let Err(e) = Cidr::parse(c) {
                    err(&format!("{key}[{i}]"), e);
                }
            }
        }
        let zero_is_unlimited = "0 means unlimited in qbittorrent; give a limit of at least 1";
        if self.streaming_download_kib_s == Some(0) {
            err("streaming_download_kib_s", zero_is_unlimited.into());
        }
        match self.mode {
            Mode::Limit => match self.streaming_upload_kib_s {
                None => err(
                    "streaming_upload_kib_s",
                    "required with mode \"limit\" (the upload limit while someone streams, in KiB/s)".into(),
                ),
                Some(0) => err("streaming_upload_kib_s", zero_is_unlimited.into()),
                Some(_) => {}
            },
            Mode::Budget => {
                match self.upload_capacity_mbit_s {
                    Some(c) if c.is_finite() && c > 0.0 => {
                        if !(self.safety_margin_mbit_s.is_finite()
                            && (0.0..c).contains(&self.safety_margin_mbit_s))
                        {
                            err(
                                "safety_margin_mbit_s",
                                format!("must be at least 0 and below upload_capacity_mbit_s ({c})"),
                            );
                        }
                    }
                    _ => err(
                        "upload_capacity_mbit_s",
                        "required with mode \"budget\": the line's upload speed in Mbit/s, above 0".into(),
                    ),
                }
                if self.floor_kib_s == 0 {
                    err("floor_kib_s", zero_is_unlimited.into());
                }
            }
            Mode::AltSpeed => {
                for (key, set) in [
                    ("streaming_upload_kib_s", self.streaming_upload_kib_s.is_some()),
                    ("streaming_download_kib_s", self.streaming_download_kib_s.is_some()),
                    ("idle_upload_kib_s", self.idle_upload_kib_s.is_some()),
                ] {
                    if set {
                        err(key, "not used with mode \"alt_speed\" (set the alternative limits in qbittorrent)".into());
                    }
                }
            }
        }
        errors
    }

    /// Reads `password_file` (once per load): refused when others can read or write it.
    /// `QBITTORRENT_PASSWORD` wins over the file, the file over the inline `password`.
    pub fn load_secrets(&mut self) {
        self.password
            .load_private_file("throttle.password_file", &self.password_file);
    }

    fn password_from_env(&self) -> bool {
        self.password.is_from_env()
    }

    /// The password in effect: `Ok(None)` when none is set (the localhost bypass or an API
    /// key), `Err` when its file cannot be used.
    pub fn password(&self) -> Result<Option<String>, String> {
        Ok(self.password.get()?.map(|s| s.expose().to_string()))
    }

    /// What the upload limit goes back to on release: `idle_upload_kib_s`, or `None` for
    /// "what was found".
    pub fn idle_upload(&self) -> Option<RateLimit> {
        self.idle_upload_kib_s.map(RateLimit::from_kib)
    }

    /// The client's options; `Err` names the password file that cannot be used.
    pub fn qbit_options(&self) -> Result<QbitOptions, String> {
        let mut o = QbitOptions::new(self.qbittorrent_url.trim());
        o.username = self.username.clone();
        o.password = self.password()?;
        let key = self.api_key.expose();
        o.api_key = (!key.is_empty()).then(|| key.to_string());
        o.timeout = Duration::from_millis(self.request_timeout_ms.max(1));
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ThrottleSettings, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_the_documented_ones_and_off() {
        let s = parse("{}").unwrap();
        assert!(!s.enabled());
        assert!(s.validate().is_empty());
        assert_eq!(s.mode, Mode::Limit);
        assert_eq!(
            (s.poll_interval_s, s.streaming_threshold, s.idle_threshold),
            (10, 2, 3)
        );
        assert_eq!(s.idle_upload(), None);
        let s = parse(r#"{"idle_upload_kib_s":0}"#).unwrap();
        assert_eq!(s.idle_upload(), Some(RateLimit::UNLIMITED));
    }

    #[test]
    fn unknown_keys_and_modes_are_named() {
        let e = parse(r#"{"qbittorrent_url":"http://x","streaming_upload_kbps":5}"#).unwrap_err();
        assert!(e.contains("streaming_upload_kbps"), "{e}");
        let e = parse(r#"{"mode":"fast"}"#).unwrap_err();
        assert!(e.contains("fast"), "{e}");
        assert_eq!(
            parse(r#"{"mode":"alt_speed"}"#).unwrap().mode,
            Mode::AltSpeed
        );
    }

    #[test]
    fn validation_names_every_bad_key() {
        let s = parse(
            r#"{"qbittorrent_url":"localhost:8080","password":"a","password_file":"/x",
                "poll_interval_s":0,"idle_threshold":0,"lan_cidrs":["10.0.0.0/8","lan"],
                "streaming_upload_kib_s":0,"streaming_download_kib_s":0}"#,
        )
        .unwrap();
        let errors = s.validate().join("\n");
        for key in [
            "throttle.qbittorrent_url:",
            "throttle.password_file:",
            "throttle.poll_interval_s:",
            "throttle.idle_threshold:",
            "throttle.lan_cidrs[1]:",
            "throttle.streaming_upload_kib_s: 0 means unlimited",
            "throttle.streaming_download_kib_s: 0 means unlimited",
        ] {
            assert!(errors.contains(key), "{key} missing in:\n{errors}");
        }
        assert!(!errors.contains("lan_cidrs[0]"), "{errors}");
    }

    #[test]
    fn each_mode_requires_its_keys() {
        let base = r#""qbittorrent_url":"http://127.0.0.1:8080""#;
        let s = parse(&format!("{{{base}}}")).unwrap();
        assert!(s
            .validate()
            .join("")
            .contains("throttle.streaming_upload_kib_s: required"));
        let s = parse(&format!("{{{base},\"streaming_upload_kib_s\":500}}")).unwrap();
        assert!(s.validate().is_empty(), "{:?}", s.validate());
        let s = parse(&format!("{{{base},\"mode\":\"budget\"}}")).unwrap();
        assert!(s
            .validate()
            .join("")
            .contains("throttle.upload_capacity_mbit_s: required"));
        let s = parse(&format!(
            "{{{base},\"mode\":\"budget\",\"upload_capacity_mbit_s\":40,\"safety_margin_mbit_s\":40,\"floor_kib_s\":0}}"
        ))
        .unwrap();
        let e = s.validate().join("\n");
        assert!(
            e.contains("throttle.safety_margin_mbit_s") && e.contains("throttle.floor_kib_s"),
            "{e}"
        );
        let s = parse(&format!(
            "{{{base},\"mode\":\"alt_speed\",\"streaming_upload_kib_s\":5}}"
        ))
        .unwrap();
        assert!(s
            .validate()
            .join("")
            .contains("not used with mode \"alt_speed\""));
        let s = parse(&format!(
            "{{{base},\"mode\":\"alt_speed\",\"idle_upload_kib_s\":null}}"
        ))
        .unwrap();
        assert!(s.validate().is_empty());
    }

    #[test]
    fn password_env_then_file_then_value_and_file_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("qbit.pass");
        std::fs::write(&file, "from-file\nsecond line\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        let mut s = ThrottleSettings {
            password: Secret::new("from-config"),
            ..ThrottleSettings::default()
        };
        s.load_secrets();
        assert_eq!(s.password().unwrap().as_deref(), Some("from-config"));
        s.password = Secret::from_env("env");
        s.password_file = file.display().to_string();
        s.load_secrets();
        assert_eq!(
            s.password().unwrap().as_deref(),
            Some("env"),
            "the environment wins"
        );
        assert!(s.validate().is_empty() || !s.enabled());
        s.password = Secret::default();
        assert_eq!(ThrottleSettings::default().password().unwrap(), None);
        // Group-readable is refused: a qBittorrent password is the owner's alone.
        s.load_secrets();
        let e = s.password().unwrap_err();
        assert!(
            e.contains("throttle.password_file") && e.contains("chmod 0600"),
            "{e}"
        );
        assert!(!e.contains("from-file"));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        s.password = Secret::default();
        s.load_secrets();
        assert_eq!(s.password().unwrap().as_deref(), Some("from-file"));
        s.password = Secret::default();
        s.password_file = dir.path().join("missing").display().to_string();
        s.load_secrets();
        assert!(s.password().unwrap_err().contains("missing"));
        let both = ThrottleSettings {
            qbittorrent_url: "http://127.0.0.1:8080".into(),
            streaming_upload_kib_s: Some(5),
            password: Secret::new("a"),
            password_file: "/x".into(),
            ..ThrottleSettings::default()
        };
        assert!(both.validate().join("").contains("throttle.password_file"));
        let shown = ThrottleSettings {
            password: Secret::new("hunter2"),
            api_key: Secret::new("qbt_k"),
            ..ThrottleSettings::default()
        };
        let dbg = format!("{shown:?}");
        assert!(!dbg.contains("hunter2") && !dbg.contains("qbt_k"), "{dbg}");
        let json = serde_json::to_string(&shown).unwrap();
        assert!(
            !json.contains("hunter2") && !json.contains("qbt_k"),
            "{json}"
        );
        let o = shown.qbit_options().unwrap();
        assert_eq!(
            (o.password.as_deref(), o.api_key.as_deref()),
            (Some("hunter2"), Some("qbt_k"))
        );
    }
}
