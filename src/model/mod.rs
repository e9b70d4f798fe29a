//! Plain data shared across layers: types with no behaviour beyond their own, which the store,
//! the clients and the daemon's listener carry and the jobs give meaning to. Imports nothing of
//! the crate's.

pub mod downloads;
