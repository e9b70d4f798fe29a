//! The library index at scale, against the fake Plex of the tests (loopback HTTP, generated
//! library in Plex's recorded JSON shapes): 3,000 movies (a third with two versions) and 600
//! shows with 34 episodes each (20,400 episodes).
//!
//! Run: `cargo build --release --workspace && cargo bench --bench daemon_index`
//! Measures full sync, no-change incremental sync (and its request count), 50 changed
//! episodes, `lookup_source` latency as the shim sees it (connect + request + answer), 1,000
//! concurrent lookups, the daemon's RSS with the library loaded, and its idle CPU.

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

fn sync(cfg: &Path) -> (Duration, String) {
    let t = Instant::now();
    let out = Command::new(cli())
        .arg("sync")
        .arg("--config")
        .arg(cfg)
        .env_remove("PLEX_TOKEN")
        .output()
        .unwrap();
    let d = t.elapsed();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (d, text.lines().next().unwrap_or_default().to_string())
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

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let plex = FakePlex::start(3000, 600, 34);
    println!("fake Plex: 3,000 movies (1,000 with a 4K version), 600 shows, 20,400 episodes (generated in {:.1} s)\n", t.elapsed().as_secs_f64());
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
    let (full, line) = sync(&cfg);
    println!(
        "| full sync | ≤ 20 s | **{:.2} s** ({line}) |",
        full.as_secs_f64()
    );
    let before = plex.requests.load(Ordering::SeqCst);
    let (nochange, _) = sync(&cfg); // first incremental pass: includes the one-time filter probes
    let probe_reqs = plex.requests.load(Ordering::SeqCst) - before;
    let before = plex.requests.load(Ordering::SeqCst);
    let (nochange2, line) = sync(&cfg);
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
    let (changed, line) = sync(&cfg);
    println!(
        "| 50 changed episodes | ≤ 2 s | **{:.3} s** ({line}) |",
        changed.as_secs_f64()
    );

    let mut daemon: Child = Command::new(cli())
        .args(["daemon", "--config"])
        .arg(&cfg)
        .env_remove("PLEX_TOKEN")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let sock = dir.path().join("shim.sock");
    let path = "/data/Movies/Movie 3 (1983)/Movie 3 (1983) - 2160p.mkv";
    fake_plex::wait_for_lookup(&sock, path, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(4)); // let the start-up sync and its index rebuild finish
    let loaded_rss = proc_field(daemon.id(), "VmRSS:");
    let mut lat = Vec::new();
    for i in 0..10_000 {
        let p = if i % 2 == 0 {
            path
        } else {
            "/data/TV/Show 7/Season 02/Show 7 - S02E03.mkv"
        };
        let t = Instant::now();
        let mut c = Client::connect(&sock, Instant::now() + Duration::from_millis(50)).unwrap();
        let r = c.call(&Request::LookupSource { path: p.into() }).unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(matches!(r, Response::Source { found: true, .. }));
    }
    let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
    println!("| `lookup_source` from the shim's side (connect + request + answer), 10,000 sequential | ≤ 1 ms p99 | **p50 {p50:.3} ms, p99 {p99:.3} ms** |");
    let threads: Vec<_> = (0..1000)
        .map(|_| {
            let sock = sock.clone();
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
    println!("| 1,000 concurrent shim lookups | all answered | **{answered} answered** |");
    let rss = proc_field(daemon.id(), "VmRSS:");
    let hwm = proc_field(daemon.id(), "VmHWM:");
    println!(
        "| daemon RSS with the library loaded (24,400 files) | ≤ 60 MB | **{}** after start-up and sync; {} after the 1,000-connection burst (peak {}) |",
        loaded_rss.trim_start_matches("VmRSS:").trim(),
        rss.trim_start_matches("VmRSS:").trim(),
        hwm.trim_start_matches("VmHWM:").trim()
    );
    let c0 = cpu_ticks(daemon.id());
    std::thread::sleep(Duration::from_secs(5));
    let c1 = cpu_ticks(daemon.id());
    println!(
        "| idle CPU over 5 s | ~0 | **{} ticks** (1 tick = 10 ms) |",
        c1 - c0
    );
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(daemon.id().to_string())
        .status();
    let _ = daemon.wait();
}
