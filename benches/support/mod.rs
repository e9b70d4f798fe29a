//! What the daemon benchmarks share: the release binary, knobs from the environment, a free
//! port, a spread of samples and a process's resident memory.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

/// The release `downshiftarr` binary the benchmark drives.
pub fn cli() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/downshiftarr");
    assert!(
        p.exists(),
        "build it first: cargo build --release --workspace"
    );
    p
}

/// A number from the environment (`RUNS=50`), else `default`.
pub fn env_num(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// (median, the `q` quantile, max) of `v`.
pub fn spread(v: &[f64], q: f64) -> (f64, f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    (at(0.5), at(q), at(1.0))
}

/// Resident memory of `pid`, KiB (0 when it cannot be read).
pub fn vm_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
