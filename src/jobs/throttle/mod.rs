//! The throttle job (issue 11): slow qBittorrent the moment someone streams remotely, and
//! always give the bandwidth back.
//!
//! Pure parts, each tested with plain data:
//! - [`legacy`]: the original tool's JSON file, mapped onto the `throttle` section
//!   ([`crate::config::throttle`]);
//! - [`streams`]: which sessions count as remote streams, and why;
//! - [`machine`]: the hysteresis and the target (fixed limit, budget, alternative mode);
//! - [`restore`]: restore / re-apply / leave the user's choice, from three readings.
//!
//! [`apply`] is the thin edge: it reads and writes qBittorrent through
//! [`crate::clients::qbittorrent`] and returns the [`apply::ThrottleState`] the store keeps.
//! [`run`] is the loop: session snapshots in, qBittorrent changes out, the record in the
//! store, status and metrics; the daemon's job and `downshiftarr throttle` both drive it.

pub mod apply;
pub mod legacy;
pub mod machine;
pub mod restore;
pub mod run;
pub mod streams;
