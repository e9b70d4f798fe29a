//! The scrobble job (issue 12): Plex playback to Trakt, live, exactly once, never lost.
//!
//! Two sources, one event model: the websocket's `PlaySessionStateNotification`s (on the
//! daemon's event bus, no user) and Plex webhooks (`POST /webhook/plex/<token>`, with the
//! user) both become [`PlaybackEvent`]s. The viewer of a websocket event is resolved from the
//! session tracker at the first sight of its `sessionKey` and cached.
//!
//! Pure parts, each tested with plain data:
//! - [`event`]: websocket events and webhook payloads → [`PlaybackEvent`];
//! - [`filter`]: users, server, sections, extras, minimum duration — applied before anything
//!   reaches a sink, each refusal a reason a log line can name;
//! - [`machine`]: one state machine per (user, item, play): start / pause / stop with the
//!   original's de-duplication rules, forced stops, → [`Call`]s.
//!
//! The edges: [`outbox`] (every call in SQLite before it is sent, removed on a final answer),
//! [`ids`] (a rating key → Trakt ids, from the index or one `/library/metadata` call),
//! [`deliver`] (the outbox to Trakt: in order per user, paced, retried, 409 = done),
//! [`tokens`] (each Plex user's Trakt tokens, rotated atomically), [`run`] (the loop).

pub mod deliver;
pub mod event;
pub mod filter;
pub mod ids;
pub mod machine;
pub mod outbox;
pub mod run;
pub mod settings;
pub mod status;
pub mod tokens;
pub mod viewers;

use serde::{Deserialize, Serialize};

use crate::clients::trakt::ScrobbleAction;

/// Where an event came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Websocket,
    Webhook,
    /// The job itself (a forced stop).
    Daemon,
}

/// Playback state, as Plex names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlayState {
    Playing,
    Paused,
    Buffering,
    Stopped,
}

/// What the event says about the item, when it says it (a webhook's `Metadata`, or the
/// index / a `/library/metadata` answer): what the filters and the id resolution read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ItemFacts {
    /// `movie`, `episode`, `clip`, `track`, …
    pub kind: String,
    pub title: Option<String>,
    pub year: Option<u32>,
    /// `librarySectionID`, as a string.
    pub section: Option<String>,
    /// `librarySectionTitle` (the section filter matches an id or a title).
    #[serde(default)]
    pub section_title: Option<String>,
    /// A trailer or another extra (`subtype`, `extraType`, a `clip` in a movie section).
    pub extra: bool,
    pub duration_ms: Option<i64>,
    /// Every GUID the item carries (`plex://…`, `imdb://…`, `tmdb://…`, legacy agent forms).
    pub guids: Vec<String>,
    /// Episodes: the show's title, rating key and GUIDs, season and episode numbers.
    pub show_title: Option<String>,
    pub show_rating_key: Option<String>,
    pub show_guids: Vec<String>,
    pub season: Option<u32>,
    pub episode: Option<u32>,
}

/// One playback event from either source, before the filters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlaybackEvent {
    pub source: Source,
    /// When it arrived (unix milliseconds).
    pub at_ms: u64,
    pub state: PlayState,
    /// Websocket events carry it; webhooks do not.
    pub session_key: Option<String>,
    /// The player: websocket `clientIdentifier`, webhook `Player.uuid`.
    pub client_id: Option<String>,
    pub rating_key: String,
    pub view_offset_ms: Option<i64>,
    /// The Plex username: webhooks carry it (`Account.title`); websocket events get it from
    /// the session tracker before the filters.
    pub user: Option<String>,
    /// Webhooks: `Server.uuid`.
    pub server_uuid: Option<String>,
    /// Webhook `media.scrobble`: Plex says the play passed 90 %.
    pub watched_hint: bool,
    pub item: Option<ItemFacts>,
}

/// One call the machine wants made, as the outbox stores it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// The Plex user whose Trakt account receives it.
    pub user: String,
    pub rating_key: String,
    /// One viewing of the item: a later state of the same play supersedes an undelivered
    /// `start`/`pause` of it.
    pub play: String,
    #[serde(with = "action_str")]
    pub action: ScrobbleAction,
    /// Percent, 0–100.
    pub progress: f64,
    /// When it happened (unix milliseconds).
    pub at_ms: u64,
    /// A stop the job made up for a session that vanished.
    pub forced: bool,
    /// What the event knew of the item, for the id resolution.
    pub item: Option<ItemFacts>,
}

/// The machine's rules (the `scrobble` section maps onto them).
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    /// A stop at or above this percentage is a play (Trakt's own rule: 80).
    pub watched_threshold: f64,
    /// A pause within this long of the previous one, at about the same progress, is dropped.
    pub pause_debounce_ms: u64,
    /// "About the same progress", in percentage points.
    pub pause_tolerance: f64,
    /// A stop within this long of the previous stop of the same play is dropped.
    pub stop_debounce_ms: u64,
    /// A session silent this long (no event, gone from Plex's list) gets a forced stop.
    pub forced_stop_after_ms: u64,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            watched_threshold: 80.0,
            pause_debounce_ms: 5_000,
            pause_tolerance: 1.0,
            stop_debounce_ms: 5_000,
            forced_stop_after_ms: 120_000,
        }
    }
}

/// The filters applied before anything reaches a sink.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filters {
    /// Plex usernames that scrobble (case-insensitive); empty: every user with a linked
    /// Trakt account.
    pub users: Vec<String>,
    /// The server's `machineIdentifier`; webhooks from another server are ignored.
    pub server_uuid: Option<String>,
    /// Library section ids or titles that scrobble; empty: all.
    pub sections: Vec<String>,
    /// Trailers and other extras scrobble too (off by default: a trailer is not the movie).
    pub include_extras: bool,
    /// Items shorter than this never scrobble (0: no minimum).
    pub min_duration_ms: i64,
}

mod action_str {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::clients::trakt::ScrobbleAction;

    pub fn serialize<S: Serializer>(a: &ScrobbleAction, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(a.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ScrobbleAction, D::Error> {
        match String::deserialize(d)?.as_str() {
            "start" => Ok(ScrobbleAction::Start),
            "pause" => Ok(ScrobbleAction::Pause),
            "stop" => Ok(ScrobbleAction::Stop),
            other => Err(serde::de::Error::custom(format!(
                "unknown scrobble action {other:?} (start, pause or stop)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_round_trips_through_json_with_its_action_as_a_word() {
        let c = Call {
            user: "alice".into(),
            rating_key: "42".into(),
            play: "s7:42:1".into(),
            action: ScrobbleAction::Stop,
            progress: 93.5,
            at_ms: 1,
            forced: true,
            item: None,
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["action"], "stop");
        assert_eq!(serde_json::from_value::<Call>(v).unwrap(), c);
        let mut bad = serde_json::to_value(&c).unwrap();
        bad["action"] = "rewind".into();
        let e = serde_json::from_value::<Call>(bad).unwrap_err().to_string();
        assert!(e.contains("rewind"), "{e}");
    }
}
