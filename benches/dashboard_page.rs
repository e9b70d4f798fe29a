//! The dashboard page's first load (issue 14 "Speed": ≤ 100 KB over the wire, ≤ 200 ms to
//! first render on loopback): the real daemon binary against the fake Plex of the tests
//! (a library, three sessions playing), and headless Chromium driven over the DevTools
//! protocol (`tests/support/chromium.rs`).
//!
//! - **Bytes over the wire**: what Chromium's network layer received for the whole first load
//!   (HTML, CSS, JS and the JSON the page fetches at once: summary, decisions, charts,
//!   downloads), headers included (`Network.loadingFinished`'s `encodedDataLength`), with the
//!   browser cache off, so every run is a first visit. The static part alone is measured with a
//!   plain HTTP client too (gzip accepted, as every browser does).
//! - **Time to first render**, from the navigation's start, per run: the first contentful
//!   paint (the page's frame), and `dashboard-rendered`, the Performance mark the page sets
//!   once the summary is on screen (the time a person waits to see who is playing).
//! - The daemon's resident memory after the runs.
//!
//! Run: `cargo build --release --workspace && cargo bench --bench dashboard_page`
//! (`DASHBOARD_PAGE_RUNS=30` to change the count). Without Chromium it measures the bytes
//! only and says so.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a failure is a panic

mod support;

#[path = "../tests/support/chromium.rs"]
#[allow(dead_code)]
mod chromium;
#[path = "../tests/fake_plex.rs"]
#[allow(dead_code)]
mod fake_plex;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fake_plex::{FakePlex, Play};
use serde_json::{json, Value};
use support::{cli, env_num, free_port, spread, vm_rss_kb};

const WIRE_BUDGET: u64 = 100 * 1000;
const RENDER_BUDGET_MS: f64 = 200.0;

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// One GET with `Accept-Encoding: gzip`; (status line, bytes received with headers).
fn get(addr: &str, path: &str) -> (String, usize) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept-Encoding: gzip, deflate, br\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let status = String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    (status, out.len())
}

fn main() {
    let runs = env_num("DASHBOARD_PAGE_RUNS", 15) as usize;
    let plex = FakePlex::start(60, 2, 10);
    plex.play.set_sessions(
        (0..3)
            .map(|i| {
                Play::session(
                    &format!("{i}"),
                    &format!("sess-{i}"),
                    &format!("tx-{i}"),
                    1001 + i,
                    (1001 + i) * 10,
                    &format!("user{i}"),
                    &format!("client-{i}"),
                    "transcode",
                )
            })
            .collect(),
    );
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("plex-token");
    std::fs::write(&token, &plex.token).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let cfg = dir.path().join("config.json");
    std::fs::write(
        &cfg,
        json!({
            "plex": {"url": plex.url, "token_file": token},
            "shim": {"socket": dir.path().join("run/shim.sock")},
            "index": {"sync_interval_s": 0, "deletion_check_interval_s": 0},
            "daemon": {"state_dir": dir.path().join("state"), "runtime_dir": dir.path().join("run"),
                       "heal_transcoder": false, "socket_group": "", "http_listen": addr}
        })
        .to_string(),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let daemon = Daemon(
        Command::new(cli())
            .args(["daemon", "--config"])
            .arg(&cfg)
            .env_remove("PLEX_TOKEN")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    // Not listening yet is "not yet".
    while std::net::TcpStream::connect(&addr).is_err() || !get(&addr, "/health").0.contains(" 200")
    {
        assert!(
            Instant::now() < deadline,
            "the daemon did not become healthy within 60 s:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2)); // the start-up sync and session polls

    // The static part, as any HTTP client accepting gzip receives it.
    let mut static_bytes = 0;
    for path in ["/", "/assets/app.css", "/assets/app.js"] {
        let (status, n) = get(&addr, path);
        assert!(status.contains(" 200"), "{path}: {status}");
        println!("{path:<18} {n:>7} bytes on the wire (gzip, headers included)");
        static_bytes += n;
    }
    println!("{:<18} {static_bytes:>7} bytes", "static total");

    let Some(bin) = chromium::find() else {
        println!(
            "no chromium on PATH: the browser measurements are skipped (apt-get install chromium)"
        );
        return;
    };
    let mut b = chromium::Browser::launch(&bin, 1280, 900, &dir.path().join("chromium.log"));
    b.call("Network.setCacheDisabled", json!({"cacheDisabled": true}));
    let url = format!("http://{addr}/");
    let (mut fcp, mut rendered, mut wire) = (Vec::new(), Vec::new(), Vec::new());
    let mut requests = 0;
    for _ in 0..runs {
        b.navigate(&url);
        b.wait_js(
            "the dashboard never rendered the summary",
            "document.documentElement.dataset.rendered === '1' && document.querySelector('#chart-list figure') && document.querySelector('#decision-rows tr')",
        );
        // Chromium reports a finished load shortly after the page used it.
        std::thread::sleep(Duration::from_millis(300));
        let p = b.eval(
            "JSON.stringify({fcp: (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime,
                            rendered: performance.getEntriesByName('dashboard-rendered')[0].startTime})",
        );
        let p: Value = serde_json::from_str(p.as_str().unwrap()).unwrap();
        fcp.push(p["fcp"].as_f64().unwrap_or(f64::NAN));
        rendered.push(p["rendered"].as_f64().unwrap());
        // Bytes of this load: every request finished since the navigation began.
        let mut sizes: HashMap<String, f64> = HashMap::new();
        for (m, params) in &b.events {
            if m == "Network.loadingFinished" {
                sizes.insert(
                    params["requestId"].as_str().unwrap_or("").to_string(),
                    params["encodedDataLength"].as_f64().unwrap_or(0.0),
                );
            }
        }
        requests = sizes.len();
        wire.push(sizes.values().sum::<f64>());
    }
    let (fm, fq, fx) = spread(&fcp, 0.95);
    let (rm, rq, rx) = spread(&rendered, 0.95);
    let (wm, _, wx) = spread(&wire, 0.95);
    println!("first load in Chromium, {runs} runs, cache off, {requests} requests:");
    println!("  bytes over the wire: median {wm:.0}, max {wx:.0} (budget {WIRE_BUDGET})");
    println!("  first contentful paint: median {fm:.1} ms, p95 {fq:.1} ms, max {fx:.1} ms");
    println!("  summary on screen (dashboard-rendered): median {rm:.1} ms, p95 {rq:.1} ms, max {rx:.1} ms (budget {RENDER_BUDGET_MS} ms)");
    println!(
        "  daemon resident memory after the runs: {} KiB",
        vm_rss_kb(daemon.0.id())
    );
    let ok = wx <= WIRE_BUDGET as f64 && rq <= RENDER_BUDGET_MS;
    println!("{}", if ok { "within budget" } else { "OVER BUDGET" });
    if !ok {
        std::process::exit(1);
    }
}
