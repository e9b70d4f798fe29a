//! The library index at scale, against the fake Plex of the tests (loopback HTTP, generated
//! library in Plex's recorded JSON shapes). Two libraries:
//! - default: 3,000 movies (a third with two versions) and 600 shows with 34 episodes each
//!   (20,400 episodes): 24,400 files;
//! - `DAEMON_INDEX_LIBRARY=200k`: 20,000 movies (a third with a 4K version besides the 1080p
//!   one, a sixth with a third, 720p, version too) and 3,000 shows with 60 episodes each
//!   (180,000 episodes): 210,000 files — issue 9's "memory at scale".
//!
//! Run: `cargo build --release --workspace && cargo bench --bench daemon_index`
//! (`DAEMON_INDEX_LIBRARY=200k cargo bench --bench daemon_index` for the large library). With
//! `DAEMON_INDEX_ALSO=/path/to/another/downshiftarr` the same library is also loaded by that
//! build's daemon: before/after figures from one sync.
//! Measures full sync (wall time and the sync process's own CPU, from `getrusage` of the
//! waited-for `downshiftarr sync` child), no-change incremental sync (and its request count),
//! 50 changed episodes, `lookup_source` latency as the shim sees it (connect + request +
//! answer), 1,000 concurrent lookups, the RSS of the real daemon process (`VmRSS` of
//! `/proc/<pid>/status`) with the library loaded, its CPU to load the index at start-up, and
//! its idle CPU.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a failure is a panic

#[path = "../tests/fake_plex.rs"]
#[allow(dead_code)]
mod fake_plex;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use downshiftarr_shim::protocol::{Client, Request, Response};
use fake_plex::FakePlex;

fn cli() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/downshiftarr");
    assert!(
        p.exists(),
        "build it first: cargo build --release --workspace"
    );
    p
}

/// CPU seconds (user + system) of the waited-for children of this process.
fn children_cpu() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    s(u.ru_utime) + s(u.ru_stime)
}

/// Runs `downshiftarr sync`: wall time, its own CPU seconds, and its first output line.
fn sync(cfg: &Path) -> (Duration, f64, String) {
    let cpu = children_cpu();
    let t = Instant::now();
    let out = Command::new(cli())
        .arg("sync")
        .arg("--config")
        .arg(cfg)
        .env_remove("PLEX_TOKEN")
        .output()
        .unwrap();
    let d = t.elapsed();
    let cpu = children_cpu() - cpu;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (d, cpu, text.lines().next().unwrap_or_default().to_string())
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn proc_field(pid: u32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_default()
        .to_string()
}

fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = s
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    f.get(11).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
}

/// The first movie's rating key in the fake Plex (`FakePlex::generate`).
const FIRST_MOVIE_RK: u64 = 1001;

fn main() {
    let large = std::env::var("DAEMON_INDEX_LIBRARY").is_ok_and(|v| v == "200k");
    let (movies, shows, episodes) = if large {
        (20_000, 3_000, 60)
    } else {
        (3_000, 600, 34)
    };
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let plex = FakePlex::start(movies, shows, episodes);
    let mut files = movies + movies.div_ceil(3) + shows * episodes;
    if large {
        // Movies with three versions: every sixth gets a 720p one besides its 4K and 1080p.
        for i in (0..movies).step_by(6) {
            let year = 1980 + i % 45;
            let file = format!("/data/Movies/Movie {i} ({year})/Movie {i} ({year}) - 720p.mkv");
            plex.add_version(FIRST_MOVIE_RK + i, 720, &file);
            files += 1;
        }
    }
    println!(
        "fake Plex: {movies} movies ({} with a 4K version{}), {shows} shows, {} episodes: {files} files (generated in {:.1} s)\n",
        movies.div_ceil(3),
        if large { format!(", {} with a third, 720p, one", movies.div_ceil(6)) } else { String::new() },
        shows * episodes,
        t.elapsed().as_secs_f64()
    );
    let token = dir.path().join("token");
    std::fs::write(&token, &plex.token).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = dir.path().join("config.json");
    std::fs::write(
        &cfg,
        serde_json::json!({
            "plex": {"url": plex.url, "token_file": token},
            "shim": {"socket": dir.path().join("shim.sock")},
            "index": {"sync_interval_s": 0},
            "daemon": {"state_dir": dir.path().join("state"), "heal_transcoder": false, "socket_group": "", "http_listen": ""}
        })
        .to_string(),
    )
    .unwrap();

    println!("| measurement | target | result |");
    println!("|---|---|---|");
    let (full, full_cpu, line) = sync(&cfg);
    println!(
        "| full sync | ≤ 20 s at 24,400 files | **{:.2} s**, {full_cpu:.2} s CPU of the sync process ({line}) |",
        full.as_secs_f64()
    );
    let before = plex.requests.load(Ordering::SeqCst);
    let (nochange, _, _) = sync(&cfg); // first incremental pass: includes the one-time filter probes
    let probe_reqs = plex.requests.load(Ordering::SeqCst) - before;
    let before = plex.requests.load(Ordering::SeqCst);
    let (nochange2, _, line) = sync(&cfg);
    let reqs = plex.requests.load(Ordering::SeqCst) - before;
    println!(
        "| no-change incremental sync | ≤ 0.5 s, ≤ 2 requests per section + deletion check | **{:.3} s**, {reqs} requests ({}; first incremental pass {:.3} s, {probe_reqs} requests with the filter probes) |",
        nochange2.as_secs_f64(),
        line,
        nochange.as_secs_f64()
    );
    for k in plex.keys("episode").into_iter().step_by(400).take(50) {
        plex.edit(k, false);
    }
    let (changed, _, line) = sync(&cfg);
    println!(
        "| 50 changed episodes | ≤ 2 s | **{:.3} s** ({line}) |",
        changed.as_secs_f64()
    );

    let sock = dir.path().join("shim.sock");
    daemon(&cli(), &cfg, &sock, files, "");
    // The same library, loaded by another build of the daemon (the figures before a change).
    if let Some(other) = std::env::var_os("DAEMON_INDEX_ALSO") {
        let other = PathBuf::from(other);
        daemon(
            &other,
            &cfg,
            &sock,
            files,
            &format!(" — {}", other.display()),
        );
    }
}

/// Starts `bin`'s daemon on the synced library and measures it.
fn daemon(bin: &Path, cfg: &Path, sock: &Path, files: u64, label: &str) {
    let mut daemon: Child = Command::new(bin)
        .args(["daemon", "--config"])
        .arg(cfg)
        .env_remove("PLEX_TOKEN")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let path = "/data/Movies/Movie 3 (1983)/Movie 3 (1983) - 2160p.mkv";
    fake_plex::wait_for_lookup(sock, path, Duration::from_secs(60));
    // Let the start-up sync and its index rebuild finish: until the daemon's CPU stands still.
    let settle = Instant::now();
    let mut last = cpu_ticks(daemon.id());
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = cpu_ticks(daemon.id());
        if now == last || settle.elapsed() > Duration::from_secs(120) {
            break;
        }
        last = now;
    }
    let loaded_rss = proc_field(daemon.id(), "VmRSS:");
    let loaded_hwm = proc_field(daemon.id(), "VmHWM:");
    let startup_ticks = cpu_ticks(daemon.id());
    let mut lat = Vec::new();
    for i in 0..10_000 {
        let p = if i % 2 == 0 {
            path
        } else {
            "/data/TV/Show 7/Season 02/Show 7 - S02E03.mkv"
        };
        let t = Instant::now();
        let mut c = Client::connect(sock, Instant::now() + Duration::from_secs(2)).unwrap();
        let r = c.call(&Request::LookupSource { path: p.into() }).unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(matches!(r, Response::Source { found: true, .. }));
    }
    let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
    println!("| `lookup_source` from the shim's side (connect + request + answer), 10,000 sequential{label} | ≤ 1 ms p99 | **p50 {p50:.3} ms, p99 {p99:.3} ms** |");
    let threads: Vec<_> = (0..1000)
        .map(|_| {
            let sock = sock.to_path_buf();
            std::thread::spawn(move || {
                let mut c =
                    Client::connect(&sock, Instant::now() + Duration::from_secs(10)).ok()?;
                matches!(
                    c.call(&Request::LookupSource { path: path.into() }),
                    Ok(Response::Source { found: true, .. })
                )
                .then_some(())
            })
        })
        .collect();
    let answered = threads
        .into_iter()
        .filter_map(|t| t.join().ok().flatten())
        .count();
    println!("| 1,000 concurrent shim lookups{label} | all answered | **{answered} answered** |");
    let rss = proc_field(daemon.id(), "VmRSS:");
    let hwm = proc_field(daemon.id(), "VmHWM:");
    let kb = |line: &str| line.split_whitespace().nth(1).unwrap_or("0").to_string();
    println!(
        "| daemon RSS with the library loaded ({files} files){label} | ≤ 60 MB at 24,400, ≤ 100 MB at 200,000 | **{} kB** after start-up and sync (peak {} kB); {} kB after the 1,000-connection burst (peak {} kB) |",
        kb(&loaded_rss),
        kb(&loaded_hwm),
        kb(&rss),
        kb(&hwm)
    );
    println!(
        "| daemon CPU to start: load the index, an incremental sync, rebuild{label} | — | **{:.2} s** |",
        startup_ticks as f64 / 100.0
    );
    let c0 = cpu_ticks(daemon.id());
    std::thread::sleep(Duration::from_secs(5));
    let c1 = cpu_ticks(daemon.id());
    println!(
        "| idle CPU over 5 s{label} | ~0 | **{} ticks** (1 tick = 10 ms) |",
        c1 - c0
    );
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(daemon.id().to_string())
        .status();
    let _ = daemon.wait();
}
