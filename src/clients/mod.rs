//! Clients of the outside services other than Plex (`crate::plex`).

pub mod tautulli;
