//! Clients of the outside services other than Plex (`crate::plex`), and the one HTTP client
//! builder every outside API is reached through (`http`).

pub mod http;
pub mod qbittorrent;
pub mod tautulli;
pub mod trakt;
