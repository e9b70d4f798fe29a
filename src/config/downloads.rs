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

    /// Every problem, each naming its key (`downloads.<key>: …`); empty when valid.
    /// (Completed by the config work of issue 13: ranges, URLs, CIDRs, users.)
    pub fn validate(&self) -> Vec<String> {
        Vec::new()
    }
}
