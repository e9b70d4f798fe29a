//! The integration suite: one test binary (ripgrep's habit), one module per concern.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure is a panic

#[path = "support/chromium.rs"]
mod chromium;
mod cli;
mod daemon;
mod dashboard_api;
mod dashboard_browser;
mod downloads_cli;
mod downloads_clients;
mod downloads_daemon;
mod e2e;
mod enforce;
mod fake_jellyfin;
mod fake_jellystat;
mod fake_notify;
mod fake_plex;
mod fake_prowlarr;
mod fake_qbittorrent;
mod fake_radarr;
mod fake_service;
mod fake_tautulli;
mod fake_trakt;
mod faults;
mod golden;
mod http_api;
mod index_drift;
mod install;
mod layers;
#[path = "support/plex_job.rs"]
mod plex_job;
mod probe_media;
mod qbittorrent;
mod quiet;
mod scrobble_cli;
mod scrobble_daemon;
mod scrobble_outbox;
mod static_shim;
mod throttle_cli;
mod throttle_daemon;
mod throttle_engine;
mod util;
