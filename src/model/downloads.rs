//! The downloads job's shared model (issue 13): plays, facts with their source, tiers,
//! verdicts and the work queued for the job. It lives below every layer that carries it (the
//! store keeps plays and decisions, the Jellyfin client answers ids, the HTTP listener queues
//! [`Intake`]); `jobs::downloads` re-exports it and owns what it means.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Where a play was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlaySource {
    /// Jellyfin's webhook plugin (`PlaybackStop`).
    Jellyfin,
    /// Plex's websocket notifications and session tracker.
    PlexWebsocket,
    /// A Plex webhook (`media.stop`, `media.scrobble`).
    PlexWebhook,
    /// Back-filled from Plex's history (`downloads import-history`).
    PlexHistory,
    /// Back-filled from Jellystat.
    Jellystat,
    /// `downloads test` / the test mode's sample play.
    Test,
}

impl PlaySource {
    pub fn as_str(self) -> &'static str {
        match self {
            PlaySource::Jellyfin => "jellyfin",
            PlaySource::PlexWebsocket => "plex_websocket",
            PlaySource::PlexWebhook => "plex_webhook",
            PlaySource::PlexHistory => "plex_history",
            PlaySource::Jellystat => "jellystat",
            PlaySource::Test => "test",
        }
    }
}

/// What was played.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    Movie,
    Episode,
    /// Music, trailers, anything else: never downloads.
    Other,
}

/// The outside ids of an item (any may be missing).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ids {
    /// `tt0133093`.
    pub imdb: Option<String>,
    pub tmdb: Option<u64>,
    pub tvdb: Option<u64>,
}

/// One play, from any source, as recorded in our watch history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Play {
    pub source: PlaySource,
    /// When the play ended (unix milliseconds).
    pub at_ms: u64,
    /// The user's name on the server that saw the play (Jellyfin `NotificationUsername`,
    /// Plex account title).
    pub user: String,
    /// The player's address when the source says it (Plex sessions; Jellyfin sessions).
    pub address: Option<IpAddr>,
    pub kind: ItemKind,
    pub title: String,
    pub year: Option<u32>,
    pub ids: Ids,
    /// The server's own id of the item (Jellyfin `ItemId`, Plex `ratingKey`).
    pub item_id: String,
    /// How much was played, 0–100.
    pub percent: f64,
    /// Genres the source named (Jellyfin's comma-joined `Genres`, Plex's metadata).
    pub genres: Vec<String>,
    /// The player (client name / device), for the decision log.
    pub client: Option<String>,
}

/// A fact the rules read, and where it came from (`radarr`, `jellyfin`, `plex`, `prowlarr`,
/// `history`, `jellystat`, `webhook`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fact<T> {
    pub value: T,
    pub source: String,
}

impl<T> Fact<T> {
    pub fn new(value: T, source: &str) -> Fact<T> {
        Fact {
            value,
            source: source.to_string(),
        }
    }
}

/// Everything the rules read about a movie and its plays, each with its source. `None`: not
/// known (a service was not configured, or did not answer: then `notes` says so).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    pub imdb_rating: Option<Fact<f64>>,
    pub imdb_votes: Option<Fact<u64>>,
    pub genres: Option<Fact<Vec<String>>>,
    /// The original language's English name (`English`, `French`).
    pub original_language: Option<Fact<String>>,
    pub year: Option<Fact<u32>>,
    /// The title and edition, for the keyword rule.
    pub title: Option<Fact<String>>,
    pub edition: Option<Fact<String>>,
    /// The movie carries the owner's favourite tag in Radarr.
    pub favourite: Option<Fact<bool>>,
    /// Best seeder count across Prowlarr's indexers.
    pub seeders: Option<Fact<u32>>,
    /// Plays by this user in the window (this one included).
    pub watch_count: Option<Fact<u32>>,
    /// What could not be learned and what was used instead ("Jellystat unreachable
    /// (connection refused): our own history used").
    pub notes: Vec<String>,
}

/// The tiers of the original design.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Download after the first play.
    Instant,
    /// Download once watched `watch_count_threshold` times in the window.
    AfterRewatch,
    /// Never download.
    Never,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Instant => "instant",
            Tier::AfterRewatch => "after_rewatch",
            Tier::Never => "never",
        }
    }
}

/// The rule engine's answer: the tier, whether it downloads now, and every reason.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub tier: Tier,
    /// `Instant`, or `AfterRewatch` with the count reached.
    pub download: bool,
    /// Every rule that matched or decided, in plain words ("IMDb 8.7 ≥ 8.5 (radarr)",
    /// "watched 2 times in 90 days ≥ 2 (history)", "guest: 203.0.113.9 is outside
    /// home_networks").
    pub reasons: Vec<String>,
}

/// Work for the downloads job, queued by the HTTP listener and the dashboard.
#[derive(Clone, Debug)]
pub enum Intake {
    /// A Jellyfin webhook body, as posted (parsed by the job, not the HTTP thread).
    Jellyfin(serde_json::Value),
    /// A Plex webhook payload (the same the scrobble job receives).
    PlexWebhook(serde_json::Value),
    /// A play already made (tests, `downloads test`).
    Play(Play),
    /// Evaluate a stored decision again (the dashboard's and the CLI's re-evaluate).
    Reevaluate(i64),
}
