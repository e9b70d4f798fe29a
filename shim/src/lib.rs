//! downshiftarr-shim: the binary installed in place of `Plex Transcoder`.
//!
//! Before a single frame is decoded it parses the ffmpeg-style arguments Plex passes
//! ([`argv`]), works out what kind of job it is ([`job`]), learns what the source video is
//! ([`facts`], [`probe`], the daemon over [`protocol`]), decides ([`policy`], [`rewrite`]),
//! records the decision ([`record`]) and execs the real transcoder ([`exec`]).
//!
//! This library is also the contract with the daemon: the daemon depends on it for the argv
//! model, the policy and the protocol, never the other way round. It depends only on std,
//! serde, serde_json and libc — no async runtime, no HTTP client, no logging framework.

pub mod arena;
pub mod argv;
pub mod codecs;
pub mod config;
pub mod edit;
pub mod exec;
pub mod facts;
pub mod filtergraph;
pub mod job;
pub mod open;
pub mod policy;
pub mod probe;
pub mod protocol;
pub mod record;
pub mod rewrite;
pub mod scenario;
pub mod shim;
pub mod switch;
pub mod viewer;

/// The Plex job the tests share (one fixture, one helper for every test and bench).
#[cfg(test)]
#[path = "../../tests/support/plex_job.rs"]
mod plex_job;

/// Embedded in the binary so the installer can recognise a shim by content, never by hash.
pub const MARKER: &str = "downshiftarr-shim-marker:v1";

/// The shim's version, as the daemon's `version` answer reports its own.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
