//! The `scrobble` section of the configuration (issue 12): the Trakt app, whose plays
//! scrobble, and the state machine's rules. Every key with its default, unknown keys
//! rejected, a validation whose messages name the key.
//!
//! The job is on when `client_id` is set (`TRAKT_CLIENT_ID`). The client secret is a
//! [`Secret`]: `TRAKT_CLIENT_SECRET`, else `client_secret_file` (0600: it lets anyone holding
//! a refresh token mint new tokens), else the inline key; printed `<redacted>` everywhere.
//! Units are in the key names (`_s` seconds, `_ms` milliseconds, `_pct` percentage points).
//!
//! What the job reads of it (`rules()`, `filters()`) is mapped in
//! `jobs/scrobble/settings.rs`: the config layer does not import the jobs' types.

use std::time::Duration;

use anyhow::{bail, Result};
use serde::{Deserialize, Deserializer, Serialize};

use super::secret::Secret;
use crate::clients::trakt::{TraktOptions, DEFAULT_BASE_URL};

/// The `scrobble` section.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScrobbleSettings {
    /// The Trakt API; `https://api-staging.trakt.tv` for Trakt's staging.
    pub trakt_url: String,
    /// The Trakt app's client id (`TRAKT_CLIENT_ID`); empty: the job is off.
    pub client_id: String,
    /// `TRAKT_CLIENT_SECRET`, else `client_secret_file`, else this key.
    pub client_secret: Secret,
    /// A file holding the client secret (first line); must be 0600 or stricter.
    pub client_secret_file: String,
    /// Plex usernames that scrobble (case-insensitive); empty: every user linked to Trakt.
    pub users: Vec<String>,
    /// The Plex server's `machineIdentifier`: webhooks from another server are ignored.
    pub server_uuid: String,
    /// Library sections that scrobble, by id (`1` or `"1"`) or title; empty: all.
    #[serde(deserialize_with = "ids_or_titles")]
    pub sections: Vec<String>,
    /// Trailers and other extras scrobble too (a trailer is not the movie).
    pub include_extras: bool,
    /// Items shorter than this never scrobble; 0: no minimum.
    pub min_duration_s: u64,
    /// A stop at or above this percentage is a play (Trakt's own rule: 80).
    pub watched_threshold: f64,
    /// A pause within this long of the previous one, at about the same progress, is dropped.
    pub pause_debounce_s: u64,
    /// "About the same progress", in percentage points.
    pub pause_tolerance_pct: f64,
    /// A stop within this long of the previous stop of the same play is dropped.
    pub stop_debounce_s: u64,
    /// A session gone from Plex's list and silent this long gets a forced stop.
    pub forced_stop_after_s: u64,
    /// Connecting to Trakt (a separate, shorter bound than the answer: an unreachable Trakt
    /// is known quickly and the call goes back to the outbox).
    pub connect_timeout_ms: u64,
    /// Per Trakt request.
    pub request_timeout_ms: u64,
}

impl Default for ScrobbleSettings {
    fn default() -> Self {
        // The machine's defaults (`jobs::scrobble::Rules::default()`, tested to agree).
        ScrobbleSettings {
            trakt_url: DEFAULT_BASE_URL.into(),
            client_id: String::new(),
            client_secret: Secret::default(),
            client_secret_file: String::new(),
            users: Vec::new(),
            server_uuid: String::new(),
            sections: Vec::new(),
            include_extras: false,
            min_duration_s: 0,
            watched_threshold: 80.0,
            pause_debounce_s: 5,
            pause_tolerance_pct: 1.0,
            stop_debounce_s: 5,
            forced_stop_after_s: 120,
            connect_timeout_ms: 5000,
            request_timeout_ms: 10_000,
        }
    }
}

/// Section ids are numbers in Plex's answers and people write them either way.
fn ids_or_titles<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum IdOrTitle {
        Id(u64),
        Title(String),
    }
    let v: Vec<IdOrTitle> = Vec::deserialize(d)?;
    Ok(v.into_iter()
        .map(|s| match s {
            IdOrTitle::Id(n) => n.to_string(),
            IdOrTitle::Title(t) => t,
        })
        .collect())
}

impl std::fmt::Debug for ScrobbleSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScrobbleSettings")
            .field("trakt_url", &self.trakt_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("client_secret_file", &self.client_secret_file)
            .field("users", &self.users)
            .field("server_uuid", &self.server_uuid)
            .field("sections", &self.sections)
            .finish_non_exhaustive()
    }
}

impl ScrobbleSettings {
    /// The job runs only with a Trakt app (its client id).
    pub fn enabled(&self) -> bool {
        !self.client_id.trim().is_empty()
    }

    /// Every problem, each naming its key (`scrobble.<key>: …`); empty when valid. Ranges
    /// are checked even while the job is off, so turning it on cannot reveal old mistakes.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let mut err = |key: &str, msg: String| errors.push(format!("scrobble.{key}: {msg}"));
        let url = self.trakt_url.trim();
        match reqwest::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            _ => err(
                "trakt_url",
                format!("{url:?} is not an http(s) URL (default {DEFAULT_BASE_URL})"),
            ),
        }
        if self.client_id.trim() != self.client_id || self.client_id.contains(char::is_whitespace) {
            err(
                "client_id",
                "contains spaces: paste the Client ID of your app at https://trakt.tv/oauth/applications".into(),
            );
        }
        if !self.client_secret.expose().is_empty()
            && !self.client_secret_file.is_empty()
            && !self.client_secret.is_from_env()
        {
            err(
                "client_secret_file",
                "set either client_secret or client_secret_file, not both".into(),
            );
        }
        for (i, u) in self.users.iter().enumerate() {
            if u.trim().is_empty() {
                err(&format!("users[{i}]"), "an empty username".into());
            }
        }
        for (i, s) in self.sections.iter().enumerate() {
            if s.trim().is_empty() {
                err(
                    &format!("sections[{i}]"),
                    "an empty section id or title".into(),
                );
            }
        }
        if !(self.watched_threshold.is_finite() && (1.0..=100.0).contains(&self.watched_threshold))
        {
            err(
                "watched_threshold",
                format!("{} is outside 1..=100 (percent)", self.watched_threshold),
            );
        }
        if !(self.pause_tolerance_pct.is_finite()
            && (0.0..=100.0).contains(&self.pause_tolerance_pct))
        {
            err(
                "pause_tolerance_pct",
                format!("{} is outside 0..=100", self.pause_tolerance_pct),
            );
        }
        for (key, v) in [
            ("pause_debounce_s", self.pause_debounce_s),
            ("stop_debounce_s", self.stop_debounce_s),
        ] {
            if v > 3600 {
                err(key, format!("{v} is above 3600 seconds"));
            }
        }
        if !(10..=86_400).contains(&self.forced_stop_after_s) {
            err(
                "forced_stop_after_s",
                format!(
                    "{} is outside 10..=86400 seconds (a shorter wait would stop plays Plex is only slow to list)",
                    self.forced_stop_after_s
                ),
            );
        }
        if self.min_duration_s > 86_400 {
            err(
                "min_duration_s",
                format!("{} is above 86400 seconds", self.min_duration_s),
            );
        }
        for (key, v) in [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("request_timeout_ms", self.request_timeout_ms),
        ] {
            if !(100..=300_000).contains(&v) {
                err(key, format!("{v} is outside 100..=300000 ms"));
            }
        }
        errors
    }

    /// Reads `client_secret_file` (once per load): refused when others can read or write it.
    pub fn load_secrets(&mut self) {
        self.client_secret
            .load_private_file("scrobble.client_secret_file", &self.client_secret_file);
    }

    /// How the Trakt client reaches Trakt; `Err` says which key is missing or which secret
    /// file cannot be used.
    pub fn trakt_options(&self) -> Result<TraktOptions> {
        if !self.enabled() {
            bail!(
                "scrobble.client_id is not set: create an app at https://trakt.tv/oauth/applications \
                 and set scrobble.client_id (or TRAKT_CLIENT_ID)"
            );
        }
        let secret = match self.client_secret.get() {
            Ok(Some(s)) => s.expose().to_string(),
            Ok(None) => bail!(
                "no Trakt client secret: set TRAKT_CLIENT_SECRET, scrobble.client_secret_file \
                 or scrobble.client_secret"
            ),
            Err(e) => bail!("{e}"),
        };
        let mut o = TraktOptions::new(self.client_id.trim(), &secret);
        o.base_url = self.trakt_url.trim().trim_end_matches('/').to_string();
        o.connect_timeout = Duration::from_millis(self.connect_timeout_ms.max(1));
        o.read_timeout = Duration::from_millis(self.request_timeout_ms.max(1));
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn parse(json: &str) -> Result<ScrobbleSettings, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_the_documented_ones_and_off() {
        let s = parse("{}").unwrap();
        assert!(!s.enabled());
        assert!(s.validate().is_empty(), "{:?}", s.validate());
        assert_eq!(s.trakt_url, "https://api.trakt.tv");
        let e = format!("{:#}", s.trakt_options().err().unwrap());
        assert!(e.contains("scrobble.client_id is not set"), "{e}");
    }

    #[test]
    fn keys_map_onto_the_client_options() {
        let mut s = parse(
            r#"{"client_id":"cid","client_secret":"sec","trakt_url":"https://api-staging.trakt.tv/",
                "connect_timeout_ms":1500,"request_timeout_ms":4000}"#,
        )
        .unwrap();
        assert!(s.enabled());
        assert!(s.validate().is_empty(), "{:?}", s.validate());
        let o = s.trakt_options().unwrap();
        assert_eq!(o.base_url, "https://api-staging.trakt.tv");
        assert_eq!(
            (o.client_id.as_str(), o.client_secret.as_str()),
            ("cid", "sec")
        );
        assert_eq!(o.connect_timeout, Duration::from_millis(1500));
        assert_eq!(o.read_timeout, Duration::from_millis(4000));
        s.client_secret = Secret::default();
        let e = format!("{:#}", s.trakt_options().err().unwrap());
        assert!(e.contains("TRAKT_CLIENT_SECRET"), "{e}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = parse(r#"{"client_id":"x","username_whitelist":["a"]}"#).unwrap_err();
        assert!(e.contains("username_whitelist"), "{e}");
        let e = parse(r#"{"sections":[true]}"#).unwrap_err();
        assert!(!e.is_empty());
        let s = parse(
            r#"{"trakt_url":"api.trakt.tv","client_id":"a b","client_secret":"x",
                "client_secret_file":"/x","users":[""],"sections":[" "],
                "watched_threshold":0,"pause_tolerance_pct":-1,"pause_debounce_s":4000,
                "forced_stop_after_s":5,"request_timeout_ms":0,"connect_timeout_ms":1000000,
                "min_duration_s":100000}"#,
        )
        .unwrap();
        let errors = s.validate().join("\n");
        for key in [
            "scrobble.trakt_url:",
            "scrobble.client_id: contains spaces",
            "scrobble.client_secret_file: set either",
            "scrobble.users[0]:",
            "scrobble.sections[0]:",
            "scrobble.watched_threshold: 0 is outside 1..=100",
            "scrobble.pause_tolerance_pct:",
            "scrobble.pause_debounce_s:",
            "scrobble.forced_stop_after_s: 5 is outside 10..=86400",
            "scrobble.request_timeout_ms:",
            "scrobble.connect_timeout_ms:",
            "scrobble.min_duration_s:",
        ] {
            assert!(errors.contains(key), "{key} missing in:\n{errors}");
        }
        let s = parse(r#"{"watched_threshold":100,"forced_stop_after_s":10}"#).unwrap();
        assert!(s.validate().is_empty());
    }

    #[test]
    fn the_secret_comes_from_a_private_file_and_is_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret");
        std::fs::write(&p, "file-secret-123\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let mut s = ScrobbleSettings {
            client_id: "cid".into(),
            client_secret_file: p.display().to_string(),
            ..ScrobbleSettings::default()
        };
        s.load_secrets();
        let e = format!("{:#}", s.trakt_options().err().unwrap());
        assert!(
            e.contains("scrobble.client_secret_file") && e.contains("chmod 0600"),
            "{e}"
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        s.client_secret = Secret::default();
        s.load_secrets();
        assert_eq!(s.trakt_options().unwrap().client_secret, "file-secret-123");
        let shown = format!("{s:?} {}", serde_json::to_string(&s).unwrap());
        assert!(!shown.contains("file-secret-123"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
