//! The throttle job's core (issue 11): slow qBittorrent the moment someone streams remotely,
//! and always give the bandwidth back.
//!
//! Pure parts, each tested with plain data:
//! - [`settings`]: the `throttle` section; [`legacy`]: the original tool's JSON file;
//! - [`streams`] (with [`cidr`]): which sessions count as remote streams, and why;
//! - [`machine`]: the hysteresis and the target (fixed limit, budget, alternative mode);
//! - [`restore`]: restore / re-apply / leave the user's choice, from three readings.
//!
//! [`apply`] is the thin edge: it reads and writes qBittorrent through
//! [`crate::clients::qbittorrent`] and returns the [`apply::ThrottleState`] the store keeps.
//! The job loop (sessions, events, clock, store, metrics) lives in the daemon.

pub mod apply;
pub mod cidr;
pub mod legacy;
pub mod machine;
pub mod restore;
pub mod settings;
pub mod streams;
