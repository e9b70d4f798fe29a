//! The daemon's jobs, one module each.

pub mod throttle;
