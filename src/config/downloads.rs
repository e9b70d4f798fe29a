//! The `downloads` section of the configuration (issue 13): smart downloads through Radarr.
//! Which plays count, who is "you" and who is a guest, the tiers' thresholds, the services
//! (Radarr, Jellyfin, Jellystat, Prowlarr), notifications and the prune report. Every key with
//! its default, unknown keys rejected, a validation whose messages name the key.
//!
//! The job is on when `radarr_url` is set (`RADARR_URL`). The original's environment names
//! (`RADARR_URL`, `RADARR_API_KEY`, `JELLYFIN_URL`, `JELLYFIN_API_KEY`, `JELLYSTAT_URL`,
//! `TRACKED_USER_NAME`, `WATCH_COUNT_THRESHOLD`, `MIN_SEEDERS_RARE`, `LOCAL_NETWORK`,
//! `TAILSCALE_NETWORK`) are rows of the daemon's table (`config::table`). API keys are
//! [`Secret`]s: environment, else a private `*_file`, else the inline key; never printed.
//! Units are in the key names (`_s`, `_ms`, `_days`, `_pct`).
//!
//! What the job reads of it is mapped in `jobs/downloads/settings.rs`: the config layer does
//! not import the jobs' types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::cidr::Cidr;
use super::secret::Secret;

/// The `downloads` section.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DownloadsSettings {
    // -- Radarr (required: the job is off without `radarr_url`) --
    /// Radarr's base URL, with its URL base if any (`RADARR_URL`).
    pub radarr_url: String,
    /// `RADARR_API_KEY`, else `radarr_api_key_file`, else this key.
    pub radarr_api_key: Secret,
    pub radarr_api_key_file: String,
    /// Label of the tag added to every movie the job downloads (created if missing); a movie
    /// with it is never pruned.
    pub keep_tag: String,
    /// Label of the tag an owner puts on a movie by hand to mark it a favourite (instant tier).
    pub favourite_tag: String,
    /// A movie whose file lies under one of these root folders is a debrid/cloud symlink, not
    /// local: `hasFile` there does not mean "already downloaded".
    pub remote_root_folders: Vec<String>,
    /// A movie carrying one of these tags is streamed from the cloud, not local.
    pub remote_tags: Vec<String>,
    /// Add a movie missing from Radarr (needs `quality_profile_id` and `root_folder`).
    pub add_missing: bool,
    pub quality_profile_id: Option<u64>,
    pub root_folder: String,
    /// One search per movie per this many days.
    pub search_dedupe_days: u32,
    /// How long a `MoviesSearch` command is polled for a final state.
    pub command_timeout_s: u64,

    // -- Where plays come from --
    /// Jellyfin, for `CommunityRating`/`Genres`/`UserData.PlayCount` (`JELLYFIN_URL`).
    pub jellyfin_url: String,
    /// `JELLYFIN_API_KEY`, else `jellyfin_api_key_file`, else this key.
    pub jellyfin_api_key: Secret,
    pub jellyfin_api_key_file: String,
    /// Jellystat, an extra source of watch counts (`JELLYSTAT_URL`).
    pub jellystat_url: String,
    /// `JELLYSTAT_API_KEY`, else `jellystat_api_key_file`, else this key.
    pub jellystat_api_key: Secret,
    pub jellystat_api_key_file: String,
    /// The header the Jellyfin webhook plugin sends the shared secret in (empty: none is
    /// required beyond the path's `daemon.webhook_token`).
    pub webhook_secret_header: String,
    /// `DOWNLOADS_WEBHOOK_SECRET`, else this key.
    pub webhook_secret: Secret,
    /// Count Plex plays too (websocket, session tracker and Plex webhooks), when Plex is set.
    pub plex_plays: bool,

    // -- Who counts --
    /// The users whose plays can download (`TRACKED_USER_NAME`, one name); empty: every user
    /// not excluded as a guest. Case-insensitive.
    pub tracked_users: Vec<String>,
    /// Addresses that are "you" (CIDRs; `LOCAL_NETWORK`/`TAILSCALE_NETWORK` prefixes such as
    /// `192.168.` are read as CIDRs). Empty: the address is not used. A play from elsewhere
    /// is a guest's when `guests_by_network`.
    pub home_networks: Vec<String>,
    /// A play whose address is known and outside `home_networks` is a guest's.
    pub guests_by_network: bool,
    /// A play counts at or above this percentage.
    pub min_watched_percent: f64,

    // -- The tiers --
    /// Rewatches within this many days count.
    pub window_days: u32,
    /// after-rewatch: this many plays in the window (`WATCH_COUNT_THRESHOLD`).
    pub watch_count_threshold: u32,
    /// instant: IMDb rating at or above.
    pub instant_rating: f64,
    /// after-rewatch: IMDb rating at or above (below: never).
    pub rewatch_min_rating: f64,
    /// Hidden gem (instant): rating at or above `gem_rating` with fewer than `gem_max_votes`.
    pub gem_rating: f64,
    pub gem_max_votes: u64,
    /// Old foreign film (instant): year before this and original language not English.
    pub old_foreign_before_year: u32,
    /// Rare editions (instant), matched case-insensitively in the title or edition.
    pub keywords: Vec<String>,
    /// Rare genres (instant).
    pub rare_genres: Vec<String>,
    /// Genres that download at once (instant): Family, Animation.
    pub instant_genres: Vec<String>,
    /// Prowlarr: fewer seeders than this (best across indexers) is rare (`MIN_SEEDERS_RARE`);
    /// 0: the seeder rule is off.
    pub min_seeders_rare: u32,
    /// Prowlarr's base URL (optional; `PROWLARR_URL`).
    pub prowlarr_url: String,
    /// `PROWLARR_API_KEY`, else `prowlarr_api_key_file`, else this key.
    pub prowlarr_api_key: Secret,
    pub prowlarr_api_key_file: String,
    /// Per-user thresholds, by user name (case-insensitive).
    pub users: BTreeMap<String, UserThresholds>,

    // -- Behaviour --
    /// Decide and record, but change nothing in Radarr.
    pub dry_run: bool,
    /// Connecting to a service.
    pub connect_timeout_ms: u64,
    /// Per request.
    pub request_timeout_ms: u64,
    /// A decision that could not be acted on is retried after this, doubling up to an hour.
    pub retry_initial_s: u64,

    pub notify: NotifySettings,
    pub prune: PruneSettings,
}

/// One user's thresholds; an absent key falls back to the section's.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserThresholds {
    pub watch_count_threshold: Option<u32>,
    pub instant_rating: Option<f64>,
    pub rewatch_min_rating: Option<f64>,
    pub min_watched_percent: Option<f64>,
    /// This user's plays never download (a guest with an account).
    pub never: bool,
}

/// `downloads.notify`: one generic JSON webhook.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifySettings {
    /// Discord webhook, ntfy topic URL, Apprise API URL, or any URL taking JSON; empty: off.
    /// A secret (it carries the webhook's key): `DOWNLOADS_NOTIFY_URL`, else this key.
    pub url: Secret,
    /// `discord`, `ntfy`, `apprise` or `json`; empty: guessed from the URL.
    pub kind: String,
    /// Post a summary once a week (downloads, estimated space saved).
    pub weekly_summary: bool,
}

/// `downloads.prune`: the smart deletion report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PruneSettings {
    /// `prune --apply` may delete (through Radarr only); off: report only.
    pub enabled: bool,
    /// Not watched by anyone in this many days.
    pub after_days: u32,
    /// Kept whatever the age: IMDb rating at or above.
    pub keep_rating: f64,
}

impl Default for DownloadsSettings {
    fn default() -> Self {
        DownloadsSettings {
            radarr_url: String::new(),
            radarr_api_key: Secret::default(),
            radarr_api_key_file: String::new(),
            keep_tag: "keep".into(),
            favourite_tag: "favorite".into(),
            remote_root_folders: Vec::new(),
            remote_tags: Vec::new(),
            add_missing: false,
            quality_profile_id: None,
            root_folder: String::new(),
            search_dedupe_days: 90,
            command_timeout_s: 300,
            jellyfin_url: String::new(),
            jellyfin_api_key: Secret::default(),
            jellyfin_api_key_file: String::new(),
            jellystat_url: String::new(),
            jellystat_api_key: Secret::default(),
            jellystat_api_key_file: String::new(),
            webhook_secret_header: String::new(),
            webhook_secret: Secret::default(),
            plex_plays: true,
            tracked_users: Vec::new(),
            home_networks: Vec::new(),
            guests_by_network: false,
            min_watched_percent: 90.0,
            window_days: 90,
            watch_count_threshold: 2,
            instant_rating: 8.5,
            rewatch_min_rating: 7.0,
            gem_rating: 8.0,
            gem_max_votes: 50_000,
            old_foreign_before_year: 1990,
            keywords: [
                "criterion",
                "director's cut",
                "restored",
                "remastered",
                "limited edition",
                "uncut",
                "extended",
                "collector's edition",
                "special edition",
            ]
            .map(String::from)
            .to_vec(),
            rare_genres: ["Foreign", "World Cinema", "Silent"]
                .map(String::from)
                .to_vec(),
            instant_genres: ["Family", "Animation"].map(String::from).to_vec(),
            min_seeders_rare: 0,
            prowlarr_url: String::new(),
            prowlarr_api_key: Secret::default(),
            prowlarr_api_key_file: String::new(),
            users: BTreeMap::new(),
            dry_run: false,
            connect_timeout_ms: 3000,
            request_timeout_ms: 10_000,
            retry_initial_s: 30,
            notify: NotifySettings::default(),
            prune: PruneSettings::default(),
        }
    }
}

impl Default for PruneSettings {
    fn default() -> Self {
        PruneSettings {
            enabled: false,
            after_days: 180,
            keep_rating: 8.5,
        }
    }
}

impl std::fmt::Debug for DownloadsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownloadsSettings")
            .field("radarr_url", &self.radarr_url)
            .field("radarr_api_key", &self.radarr_api_key)
            .field("jellyfin_url", &self.jellyfin_url)
            .field("jellyfin_api_key", &self.jellyfin_api_key)
            .field("jellystat_url", &self.jellystat_url)
            .field("jellystat_api_key", &self.jellystat_api_key)
            .field("prowlarr_url", &self.prowlarr_url)
            .field("prowlarr_api_key", &self.prowlarr_api_key)
            .field("webhook_secret", &self.webhook_secret)
            .field("tracked_users", &self.tracked_users)
            .field("dry_run", &self.dry_run)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for NotifySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifySettings")
            .field("url", &self.url)
            .field("kind", &self.kind)
            .field("weekly_summary", &self.weekly_summary)
            .finish()
    }
}

impl DownloadsSettings {
    /// The job runs only with a Radarr to act through.
    pub fn enabled(&self) -> bool {
        !self.radarr_url.trim().is_empty()
    }

    /// Reads the API keys' files (once per load): refused when others can read or write them.
    pub fn load_secrets(&mut self) {
        self.radarr_api_key
            .load_private_file("downloads.radarr_api_key_file", &self.radarr_api_key_file);
        self.jellyfin_api_key.load_private_file(
            "downloads.jellyfin_api_key_file",
            &self.jellyfin_api_key_file,
        );
        self.jellystat_api_key.load_private_file(
            "downloads.jellystat_api_key_file",
            &self.jellystat_api_key_file,
        );
        self.prowlarr_api_key.load_private_file(
            "downloads.prowlarr_api_key_file",
            &self.prowlarr_api_key_file,
        );
    }

    /// Every secret value of the section, for the log's redaction.
    pub fn secrets(&self) -> [&Secret; 6] {
        [
            &self.radarr_api_key,
            &self.jellyfin_api_key,
            &self.jellystat_api_key,
            &self.prowlarr_api_key,
            &self.webhook_secret,
            &self.notify.url,
        ]
    }

    /// Every problem, each naming its key (`downloads.<key>: …`) and saying what to do;
    /// empty when valid. Checked whether or not the job is on: a key set wrong is said at
    /// once, not the day `radarr_url` is added.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let mut err = |key: &str, msg: String| errors.push(format!("downloads.{key}: {msg}"));
        for (key, url) in [
            ("radarr_url", self.radarr_url.as_str()),
            ("jellyfin_url", self.jellyfin_url.as_str()),
            ("jellystat_url", self.jellystat_url.as_str()),
            ("prowlarr_url", self.prowlarr_url.as_str()),
        ] {
            if let Err(e) = http_url(url) {
                err(key, format!("{url:?} {e}"));
            }
        }
        // The notify URL carries the webhook's key: never repeated in the message.
        if let Err(e) = http_url(self.notify.url.expose()) {
            err(
                "notify.url",
                format!("the URL {e} (the value is not shown: it is a secret)"),
            );
        }
        if !matches!(
            self.notify.kind.as_str(),
            "" | "discord" | "ntfy" | "apprise" | "json"
        ) {
            err(
                "notify.kind",
                format!(
                    "{:?} is not one of discord, ntfy, apprise, json (or empty: guessed from the URL)",
                    self.notify.kind
                ),
            );
        }
        for (key, file, secret) in [
            (
                "radarr_api_key_file",
                &self.radarr_api_key_file,
                &self.radarr_api_key,
            ),
            (
                "jellyfin_api_key_file",
                &self.jellyfin_api_key_file,
                &self.jellyfin_api_key,
            ),
            (
                "jellystat_api_key_file",
                &self.jellystat_api_key_file,
                &self.jellystat_api_key,
            ),
            (
                "prowlarr_api_key_file",
                &self.prowlarr_api_key_file,
                &self.prowlarr_api_key,
            ),
        ] {
            if !file.is_empty() && !file.starts_with('/') {
                err(key, format!("{file:?} must be an absolute path"));
            } else if !file.is_empty() && !secret.expose().is_empty() && !secret.is_from_env() {
                err(
                    key,
                    format!(
                        "set either {} or {key}, not both",
                        key.trim_end_matches("_file")
                    ),
                );
            }
        }
        for (key, label) in [
            ("keep_tag", &self.keep_tag),
            ("favourite_tag", &self.favourite_tag),
        ] {
            if label.trim().is_empty() {
                err(key, "a tag label is needed (the default is fine)".into());
            } else if label.len() > 128 {
                err(key, "is longer than 128 characters".into());
            }
        }
        for (key, list) in [
            ("remote_root_folders", &self.remote_root_folders),
            ("remote_tags", &self.remote_tags),
            ("keywords", &self.keywords),
            ("rare_genres", &self.rare_genres),
            ("instant_genres", &self.instant_genres),
        ] {
            for (i, v) in list.iter().enumerate() {
                if v.trim().is_empty() {
                    err(&format!("{key}[{i}]"), "an empty entry: remove it".into());
                }
            }
        }
        if self.add_missing {
            if self.quality_profile_id.is_none() {
                err(
                    "quality_profile_id",
                    "required with add_missing: the id of a Radarr quality profile \
                     (Settings → Profiles, or GET /api/v3/qualityprofile)"
                        .into(),
                );
            }
            if self.root_folder.trim().is_empty() {
                err(
                    "root_folder",
                    "required with add_missing: a Radarr root folder path \
                     (Settings → Media Management, or GET /api/v3/rootfolder)"
                        .into(),
                );
            }
        }
        if self.search_dedupe_days > 3650 {
            err(
                "search_dedupe_days",
                format!("{} is above 3650 days", self.search_dedupe_days),
            );
        }
        if !(10..=86_400).contains(&self.command_timeout_s) {
            err(
                "command_timeout_s",
                format!("{} is outside 10..=86400 seconds", self.command_timeout_s),
            );
        }
        if self
            .webhook_secret_header
            .contains(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            err(
                "webhook_secret_header",
                format!(
                    "{:?} is not a header name (letters, digits, - and _)",
                    self.webhook_secret_header
                ),
            );
        }
        for (i, u) in self.tracked_users.iter().enumerate() {
            if u.trim().is_empty() {
                err(&format!("tracked_users[{i}]"), "an empty user name".into());
            }
        }
        for (i, c) in self.home_networks.iter().enumerate() {
            if let Err(e) = Cidr::parse(c) {
                err(
                    &format!("home_networks[{i}]"),
                    format!("{e} (write a CIDR such as 192.168.0.0/16 or 100.64.0.0/10)"),
                );
            }
        }
        if self.guests_by_network && self.home_networks.is_empty() {
            err(
                "guests_by_network",
                "needs home_networks: with none, every play with an address would be a guest's"
                    .into(),
            );
        }
        percent(&mut err, "min_watched_percent", self.min_watched_percent);
        if !(1..=3650).contains(&self.window_days) {
            err(
                "window_days",
                format!("{} is outside 1..=3650 days", self.window_days),
            );
        }
        count(
            &mut err,
            "watch_count_threshold",
            self.watch_count_threshold,
        );
        for (key, v) in [
            ("instant_rating", self.instant_rating),
            ("rewatch_min_rating", self.rewatch_min_rating),
            ("gem_rating", self.gem_rating),
            ("prune.keep_rating", self.prune.keep_rating),
        ] {
            rating(&mut err, key, v);
        }
        ordered(
            &mut err,
            "rewatch_min_rating",
            self.rewatch_min_rating,
            self.instant_rating,
        );
        if self.gem_max_votes > 1_000_000_000 {
            err(
                "gem_max_votes",
                format!("{} is above 1000000000", self.gem_max_votes),
            );
        }
        if self.old_foreign_before_year != 0
            && !(1870..=2200).contains(&self.old_foreign_before_year)
        {
            err(
                "old_foreign_before_year",
                format!(
                    "{} is not a year in 1870..=2200 (0 turns the rule off)",
                    self.old_foreign_before_year
                ),
            );
        }
        if self.min_seeders_rare > 100_000 {
            err(
                "min_seeders_rare",
                format!(
                    "{} is above 100000 (0 turns the rule off)",
                    self.min_seeders_rare
                ),
            );
        }
        for (name, u) in &self.users {
            if name.trim().is_empty() {
                err("users", "a user with an empty name".into());
                continue;
            }
            let key = |k: &str| format!("users.{name}.{k}");
            if let Some(v) = u.watch_count_threshold {
                count(&mut err, &key("watch_count_threshold"), v);
            }
            if let Some(v) = u.min_watched_percent {
                percent(&mut err, &key("min_watched_percent"), v);
            }
            for (k, v) in [
                ("instant_rating", u.instant_rating),
                ("rewatch_min_rating", u.rewatch_min_rating),
            ] {
                if let Some(v) = v {
                    rating(&mut err, &key(k), v);
                }
            }
            if u.instant_rating.is_some() || u.rewatch_min_rating.is_some() {
                ordered(
                    &mut err,
                    &key("rewatch_min_rating"),
                    u.rewatch_min_rating.unwrap_or(self.rewatch_min_rating),
                    u.instant_rating.unwrap_or(self.instant_rating),
                );
            }
        }
        for (key, v) in [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("request_timeout_ms", self.request_timeout_ms),
        ] {
            if !(100..=300_000).contains(&v) {
                err(key, format!("{v} is outside 100..=300000 ms"));
            }
        }
        if !(1..=3600).contains(&self.retry_initial_s) {
            err(
                "retry_initial_s",
                format!("{} is outside 1..=3600 seconds", self.retry_initial_s),
            );
        }
        if !(1..=3650).contains(&self.prune.after_days) {
            err(
                "prune.after_days",
                format!("{} is outside 1..=3650 days", self.prune.after_days),
            );
        }
        errors
    }
}

/// One entry of the original's `LOCAL_NETWORK` / `TAILSCALE_NETWORK` as a CIDR: an address
/// prefix as it matched with `startswith` (`192.168.` → `192.168.0.0/16`, `10.` →
/// `10.0.0.0/8`, `fd7a:115c:a1e0:` → `fd7a:115c:a1e0::/48`), or a CIDR or address as it is.
pub fn network_from_prefix(text: &str) -> Result<String, String> {
    let text = text.trim();
    if let Ok(c) = Cidr::parse(text) {
        return Ok(c.to_string());
    }
    let bad = || {
        format!(
            "{text:?} is neither an address prefix such as 192.168. or 100.64. nor a CIDR such as 192.168.0.0/16"
        )
    };
    let v4: Vec<&str> = text.strip_suffix('.').unwrap_or(text).split('.').collect();
    if !text.contains(':')
        && (1..=3).contains(&v4.len())
        && v4
            .iter()
            .all(|o| !o.is_empty() && o.len() <= 3 && o.parse::<u8>().is_ok())
    {
        let mut octets = v4.clone();
        octets.resize(4, "0");
        let cidr = format!("{}/{}", octets.join("."), 8 * v4.len());
        return Cidr::parse(&cidr).map(|c| c.to_string()).map_err(|_| bad());
    }
    let v6: Vec<&str> = text.strip_suffix(':').unwrap_or(text).split(':').collect();
    if text.ends_with(':')
        && (1..=7).contains(&v6.len())
        && v6
            .iter()
            .all(|g| (1..=4).contains(&g.len()) && g.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        let cidr = format!("{}::/{}", v6.join(":"), 16 * v6.len());
        return Cidr::parse(&cidr).map(|c| c.to_string()).map_err(|_| bad());
    }
    Err(bad())
}

/// An empty value (not configured) or an `http(s)://host…` URL; `Err` says what is wrong.
fn http_url(url: &str) -> Result<(), String> {
    if url.is_empty() {
        return Ok(());
    }
    match reqwest::Url::parse(url.trim()) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some_and(|h| !h.is_empty()) =>
        {
            Ok(())
        }
        Ok(_) => Err("is not an http:// or https:// URL with a host".into()),
        Err(e) => Err(format!("is not a URL ({e}): write it as http://host:port")),
    }
}

fn percent(err: &mut impl FnMut(&str, String), key: &str, v: f64) {
    if !(v.is_finite() && (1.0..=100.0).contains(&v)) {
        err(key, format!("{v} is outside 1..=100 (percent)"));
    }
}

fn rating(err: &mut impl FnMut(&str, String), key: &str, v: f64) {
    if !(v.is_finite() && (0.0..=10.0).contains(&v)) {
        err(key, format!("{v} is outside 0..=10 (an IMDb rating)"));
    }
}

fn count(err: &mut impl FnMut(&str, String), key: &str, v: u32) {
    if !(1..=100).contains(&v) {
        err(key, format!("{v} is outside 1..=100 plays"));
    }
}

/// The after-rewatch band is `rewatch_min_rating ≤ IMDb < instant_rating`: empty when upside down.
fn ordered(err: &mut impl FnMut(&str, String), key: &str, rewatch: f64, instant: f64) {
    if rewatch > instant {
        err(
            key,
            format!(
                "{rewatch} is above instant_rating {instant}: the after-rewatch band would be empty"
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> DownloadsSettings {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    #[test]
    fn defaults_are_valid_and_off() {
        let s = DownloadsSettings::default();
        assert!(!s.enabled());
        assert_eq!(s.validate(), Vec::<String>::new());
        let s = parse(r#"{"radarr_url": "http://radarr:7878/radarr"}"#);
        assert!(s.enabled());
        assert_eq!(s.validate(), Vec::<String>::new());
    }

    /// Every bad key is said, named, with what to do; nothing else is.
    #[test]
    fn every_problem_names_its_key() {
        let s = parse(
            r#"{"radarr_url": "radarr:7878", "jellyfin_url": "ftp://jf", "jellystat_url": "http://",
                "prowlarr_url": "not a url", "radarr_api_key": "k", "radarr_api_key_file": "/k",
                "jellyfin_api_key_file": "relative/key",
                "keep_tag": " ", "keywords": ["criterion", ""], "add_missing": true,
                "command_timeout_s": 1, "search_dedupe_days": 5000,
                "webhook_secret_header": "X Secret", "tracked_users": ["me", " "],
                "home_networks": ["192.168.0.0/16", "192.168.", "10.0.0.0/33"],
                "min_watched_percent": 0, "window_days": 0, "watch_count_threshold": 0,
                "instant_rating": 11, "rewatch_min_rating": -1, "gem_rating": 8,
                "gem_max_votes": 2000000000, "old_foreign_before_year": 90,
                "min_seeders_rare": 1000000,
                "users": {"bob": {"instant_rating": 6.0, "min_watched_percent": 101,
                                  "watch_count_threshold": 0}, "": {}},
                "connect_timeout_ms": 5, "request_timeout_ms": 400000, "retry_initial_s": 0,
                "notify": {"url": "discord.com/api/webhooks/1/SECRETPART", "kind": "telegram"},
                "prune": {"after_days": 0, "keep_rating": 12}}"#,
        );
        let errors = s.validate();
        let all = errors.join("\n");
        for want in [
            "downloads.radarr_url: \"radarr:7878\" is not an http:// or https:// URL with a host",
            "downloads.jellyfin_url: \"ftp://jf\" is not an http",
            "downloads.jellystat_url: \"http://\" is not a URL",
            "downloads.prowlarr_url: \"not a url\" is not a URL",
            "downloads.radarr_api_key_file: set either radarr_api_key or radarr_api_key_file",
            "downloads.jellyfin_api_key_file: \"relative/key\" must be an absolute path",
            "downloads.keep_tag: a tag label is needed",
            "downloads.keywords[1]: an empty entry",
            "downloads.quality_profile_id: required with add_missing",
            "downloads.root_folder: required with add_missing",
            "downloads.command_timeout_s: 1 is outside 10..=86400",
            "downloads.search_dedupe_days: 5000 is above 3650",
            "downloads.webhook_secret_header: \"X Secret\" is not a header name",
            "downloads.tracked_users[1]: an empty user name",
            "downloads.home_networks[1]: \"192.168.\" is not an IP address or CIDR range (write a CIDR",
            "downloads.home_networks[2]: \"10.0.0.0/33\": the prefix length must be 0 to 32",
            "downloads.min_watched_percent: 0 is outside 1..=100",
            "downloads.window_days: 0 is outside 1..=3650",
            "downloads.watch_count_threshold: 0 is outside 1..=100",
            "downloads.instant_rating: 11 is outside 0..=10",
            "downloads.rewatch_min_rating: -1 is outside 0..=10",
            "downloads.gem_max_votes: 2000000000 is above",
            "downloads.old_foreign_before_year: 90 is not a year",
            "downloads.min_seeders_rare: 1000000 is above 100000",
            "downloads.users.bob.min_watched_percent: 101 is outside 1..=100",
            "downloads.users.bob.watch_count_threshold: 0 is outside",
            "downloads.users: a user with an empty name",
            "downloads.connect_timeout_ms: 5 is outside 100..=300000 ms",
            "downloads.request_timeout_ms: 400000 is outside",
            "downloads.retry_initial_s: 0 is outside 1..=3600",
            "downloads.notify.url: the URL is not a URL",
            "downloads.notify.kind: \"telegram\" is not one of discord, ntfy, apprise, json",
            "downloads.prune.after_days: 0 is outside",
            "downloads.prune.keep_rating: 12 is outside 0..=10",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
        assert!(
            !all.contains("SECRETPART"),
            "the notify URL is a secret: {all}"
        );
        assert!(!all.contains("gem_rating"), "{all}");
        assert_eq!(errors.len(), 34, "{all}");
    }

    #[test]
    fn ranges_edges_are_accepted() {
        let s = parse(
            r#"{"radarr_url": "https://radarr.example.com", "min_watched_percent": 100,
                "window_days": 3650, "watch_count_threshold": 1, "instant_rating": 10,
                "rewatch_min_rating": 0, "gem_rating": 0, "old_foreign_before_year": 0,
                "home_networks": ["100.64.0.0/10", "fd7a:115c:a1e0::/48", "192.168.1.5"],
                "guests_by_network": true, "add_missing": true, "quality_profile_id": 1,
                "root_folder": "/movies", "connect_timeout_ms": 100, "request_timeout_ms": 300000,
                "users": {"Ann": {"instant_rating": 9, "never": true}},
                "notify": {"url": "https://ntfy.sh/films", "kind": "ntfy"}}"#,
        );
        assert_eq!(s.validate(), Vec::<String>::new());
    }

    #[test]
    fn a_per_user_band_is_checked_with_the_sections_fallback() {
        // Bob's rewatch floor alone above the section's instant rating: upside down.
        let s = parse(r#"{"users": {"bob": {"rewatch_min_rating": 9.0}}}"#);
        assert_eq!(
            s.validate(),
            [
                "downloads.users.bob.rewatch_min_rating: 9 is above instant_rating 8.5: \
              the after-rewatch band would be empty"
            ]
        );
        let s = parse(r#"{"rewatch_min_rating": 9.0}"#);
        assert!(s.validate()[0].starts_with("downloads.rewatch_min_rating: 9 is above"));
    }

    #[test]
    fn the_originals_prefixes_become_cidrs() {
        for (given, want) in [
            ("192.168.", "192.168.0.0/16"),
            ("192.168", "192.168.0.0/16"),
            ("100.64.", "100.64.0.0/16"),
            ("10.", "10.0.0.0/8"),
            (" 192.168.1. ", "192.168.1.0/24"),
            ("100.64.0.0/10", "100.64.0.0/10"),
            ("192.168.1.7", "192.168.1.7/32"),
            ("fd7a:115c:a1e0:", "fd7a:115c:a1e0::/48"),
            ("fd00::/8", "fd00::/8"),
        ] {
            assert_eq!(network_from_prefix(given).as_deref(), Ok(want), "{given}");
        }
        // What the original's `startswith("192.168.")` matched, and only that.
        let c = Cidr::parse(&network_from_prefix("192.168.").unwrap()).unwrap();
        for (addr, inside) in [
            ("192.168.44.3", true),
            ("192.169.0.1", false),
            ("10.0.0.1", false),
        ] {
            assert_eq!(c.contains(addr.parse().unwrap()), inside, "{addr}");
        }
        for bad in [
            "",
            "x-not-valid",
            "192.168.300.",
            "1.2.3.4.5",
            "192..",
            "fd7a:zz:",
            "10.0.0.0/40",
        ] {
            let e = network_from_prefix(bad).unwrap_err();
            assert!(e.contains("is neither an address prefix"), "{bad}: {e}");
        }
    }

    #[test]
    fn guests_by_network_needs_home_networks() {
        let s = parse(r#"{"guests_by_network": true}"#);
        assert!(
            s.validate()[0].starts_with("downloads.guests_by_network: needs home_networks"),
            "{:?}",
            s.validate()
        );
    }

    #[test]
    fn secrets_never_print() {
        let s = parse(
            r#"{"radarr_api_key": "RADARR-SECRET", "notify": {"url": "https://x/SECRET-HOOK"},
                "webhook_secret": "WEBHOOK-SECRET"}"#,
        );
        let shown = format!("{s:?} {}", serde_json::to_string(&s).unwrap());
        for secret in ["RADARR-SECRET", "SECRET-HOOK", "WEBHOOK-SECRET"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
