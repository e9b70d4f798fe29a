//! Clients of the outside services the daemon's jobs drive.

pub mod qbittorrent;
