//! The companion daemon and the admin CLI of downshiftarr, as a library: the binary
//! (`main.rs`) dispatches to `cli`, and the integration tests reach the clients and jobs they
//! drive against real services (qBittorrent) without a process in between.
//!
//! Layers, each importing only those below it: `cli` (one module per command; `cli::daemon`
//! puts the daemon together) → `jobs` (one module per daemon job, and the job table) →
//! `daemon` (the context every job is handed, lifecycle, supervisor, health, metrics, status,
//! logging) → `plex`, `clients`, `store`, `config` → the shim's library crate.

pub mod cli;
pub mod clients;
pub mod config;
pub mod daemon;
pub mod jobs;
pub mod model;
pub mod plex;
pub mod store;
