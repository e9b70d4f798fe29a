//! The downloads job (issue 13): keep what is loved on disk, stream the rest.
//!
//! Plays come from Jellyfin's webhook plugin (`POST /webhook/jellyfin/<token>`, and the
//! original's `POST /jellyfin/playback`) and from Plex (the websocket's playback
//! notifications with the session tracker's viewer, and Plex webhooks). A play that reached
//! `downloads.min_watched_percent` by a tracked user who is not a guest is recorded in our
//! own watch history; then the facts about the movie are gathered (Radarr's ratings, genres,
//! language; Jellyfin's; Plex's; Prowlarr's seeders; the watch count in the window from our
//! history and Jellystat), each fact with its source, and the rule engine gives a tier with
//! every reason. A download is a Radarr `keep` tag plus one `MoviesSearch`.
//!
//! The shared model is `crate::model::downloads`, re-exported here; the parts:
//! - intake: webhook bodies and Plex events → [`Play`];
//! - rules: ([`Play`], [`Facts`], thresholds) → [`Verdict`], pure;
//! - the store's `downloads` tables: plays, decisions, the durable action queue;
//! - the run loop: intake queue → facts → verdict → Radarr, retried, never reading a failed
//!   request as "absent" or "not watched".

pub mod engine;
pub mod intake;
pub mod notify;
pub mod plex;
pub mod prune;
pub mod rules;
pub mod run;
pub mod settings;
pub mod status;

pub use crate::model::downloads::*;
