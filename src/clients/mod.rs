//! Clients of the outside services other than Plex (`crate::plex`), and the one HTTP client
//! builder every outside API is reached through (`http`). The downloads job's services
//! (`radarr`, `prowlarr`, `jellyfin`, `jellystat`, `notify`) share one error shape
//! (`service::ServiceError`) that never lets a failure pass for "absent".

pub mod http;
pub mod jellyfin;
pub mod jellystat;
pub mod notify;
pub mod prowlarr;
pub mod qbittorrent;
pub mod radarr;
pub mod service;
pub mod tautulli;
pub mod trakt;
