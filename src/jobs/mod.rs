//! The daemon's jobs, one module each: the transcoder healer, the shim's socket service, the
//! decision audit, the library index and the transcode guard.

pub mod audit;
pub mod guard;
pub mod heal;
pub mod index;
pub mod socket;
