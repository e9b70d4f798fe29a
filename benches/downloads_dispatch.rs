//! The downloads job's speed (issue 13 "Speed"): the real daemon binary of a Jellyfin-only
//! owner (no Plex), Jellyfin `PlaybackStop` webhooks posted to its HTTP listener as the plugin
//! posts them (`text/plain`, "Send All Properties"), and the tests' fake Radarr (loopback,
//! `fixtures/radarr-payloads`, answering at once).
//!
//! - **Dispatch**: `RUNS` times (default 30), a tracked user's full play of an 8.7 film (the
//!   instant tier: one play downloads) is posted; the clock runs from just before the POST
//!   until the fake Radarr holds the `MoviesSearch` command it causes (polled every 0.2 ms).
//!   In between: the webhook read and queued, the play parsed and recorded, Radarr asked for
//!   the movie, the decision stored, the keep tag made sure of (tags listed, the movie PUT), the
//!   search POSTed. Everything Radarr does is the fake's (at once), so the number is our time
//!   plus a few loopback round trips.
//! - **Burst**: `BURST` plays (default 1,000) of different films, posted by 8 clients at once
//!   as fast as the listener takes them; counted: answers other than 200, plays in the watch
//!   history and decisions stored (SQLite, read after the job is done), and the wall time.
//! - **Memory**: `VmRSS` of the daemon after the burst.
//!
//! Run: `cargo build --release --workspace && cargo bench --bench downloads_dispatch`
//! (`DOWNLOADS_DISPATCH_RUNS=50`, `DOWNLOADS_BURST=2000` to change the counts).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a failure is a panic

mod support;

#[path = "../tests/fake_radarr.rs"]
#[allow(dead_code)]
mod fake_radarr;
#[path = "../tests/fake_service.rs"]
#[allow(dead_code)]
mod fake_service;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_radarr::FakeRadarr;
use serde_json::{json, Value};
use support::{cli, env_num, free_port, spread, vm_rss_kb};

const TOKEN: &str = "wh-bench-0123456789abcdef0123456789";

/// A `PlaybackStop` of the Jellyfin webhook plugin with "Send All Properties".
fn playback_stop(user: &str, i: u64) -> String {
    let run: u64 = 81_000_000_000;
    json!({"ServerId": "d5a3b2c1e4f6478a9b0c1d2e3f4a5b6c", "ServerName": "jellyfin", "ServerVersion": "10.9.11",
        "NotificationType": "PlaybackStop", "UtcTimestamp": "2026-12-04T09:00:00.0000000Z",
        "Name": format!("Film {i}"), "ItemId": format!("jf-{i}"), "ItemType": "Movie",
        "RunTimeTicks": run, "RunTime": "02:15:00", "Year": 2001, "Genres": "Drama, Thriller",
        "Provider_imdb": format!("tt{:07}", 20_000 + i), "Provider_tmdb": (20_000 + i).to_string(),
        "PlaybackPositionTicks": run / 100 * 97, "PlayedToCompletion": false,
        "DeviceName": "Firefox", "ClientName": "Jellyfin Web", "PlayMethod": "DirectPlay",
        "NotificationUsername": user, "UserId": "4f5e6d7c8b9a0f1e2d3c4b5a69788796"})
    .to_string()
}

/// One POST; the status code (0: no answer).
fn post(addr: &str, path: &str, body: &str) -> u16 {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return 0;
    };
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // One write (a second small one would wait for the daemon's delayed ACK: Nagle).
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.set_nodelay(true);
    if s.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The Radarr movie of film `i` (streamed: no local file).
fn movie(i: u64, rating: f64) -> Value {
    let mut m = fake_radarr::movie(
        (100 + i) as i64,
        20_000 + i,
        &format!("Film {i}"),
        2001,
        rating,
        900_000,
    );
    m["hasFile"] = json!(false);
    m
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn searched(radarr: &FakeRadarr, id: i64) -> bool {
    radarr
        .commands()
        .iter()
        .any(|c| c.name == "MoviesSearch" && c.body["movieIds"] == json!([id]))
}

fn main() {
    let runs = env_num("DOWNLOADS_DISPATCH_RUNS", 30);
    let burst = env_num("DOWNLOADS_BURST", 1000);
    let radarr = FakeRadarr::start();
    for i in 0..runs {
        radarr.add(movie(i, 8.7));
    }
    // The burst's films: rated 6.5 (never downloads), so each is a Radarr lookup, a play
    // recorded and a decision stored, with no search behind it.
    for i in runs..runs + burst {
        radarr.add(movie(i, 6.5));
    }
    let dir = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let cfg = dir.path().join("config.json");
    std::fs::write(
        &cfg,
        json!({
            "shim": {"socket": dir.path().join("run/shim.sock")},
            "daemon": {"state_dir": dir.path().join("state"), "runtime_dir": dir.path().join("run"),
                       "http_listen": http, "webhook_token": TOKEN, "heal_transcoder": false, "socket_group": ""},
            "downloads": {"radarr_url": radarr.url(), "radarr_api_key": fake_radarr::API_KEY,
                          "tracked_users": ["alice"]},
        })
        .to_string(),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let d = Daemon(
        Command::new(cli())
            .args(["daemon", "--config"])
            .arg(&cfg)
            .env_remove("PLEX_TOKEN")
            .env_remove("RADARR_URL")
            .env_remove("RADARR_API_KEY")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let path = format!("/webhook/jellyfin/{TOKEN}");
    let t = Instant::now();
    while post(&http, "/health", "") != 200 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the daemon did not answer /health:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));

    // Dispatch.
    let mut ms = Vec::new();
    for i in 0..runs {
        let id = (100 + i) as i64;
        let body = playback_stop("alice", i);
        let t0 = Instant::now();
        assert_eq!(post(&http, &path, &body), 200);
        while !searched(&radarr, id) {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "run {i}: no search in 30 s:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(100));
    }
    let (med, p99, max) = spread(&ms, 0.99);
    println!("dispatch (webhook POSTed → MoviesSearch held by Radarr), {runs} runs: median {med:.1} ms, p99 {p99:.1} ms, max {max:.1} ms");

    // Burst.
    let next = Arc::new(AtomicU64::new(runs));
    let refused = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (next, refused, http, path) =
                (next.clone(), refused.clone(), http.clone(), path.clone());
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= runs + burst {
                    return;
                }
                if post(&http, &path, &playback_stop("alice", i)) != 200 {
                    refused.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let posted = t0.elapsed().as_secs_f64();
    let db = rusqlite::Connection::open(dir.path().join("state/index.sqlite")).unwrap();
    let count = |sql: &str| -> u64 {
        db.query_row(sql, [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    let (plays, decisions) = loop {
        let p = count("SELECT COUNT(*) FROM download_plays");
        let n = count("SELECT COUNT(*) FROM download_decisions");
        if n >= runs + burst || Instant::now() > deadline {
            break (p, n);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let done = t0.elapsed().as_secs_f64();
    let rss = vm_rss_kb(d.0.id());
    println!(
        "burst: {burst} webhook posts by 8 clients in {posted:.2} s, {} refused; {} plays recorded and {} decisions stored (of {}), all decided {done:.2} s after the first post",
        refused.load(Ordering::SeqCst),
        plays.saturating_sub(runs),
        decisions.saturating_sub(runs),
        burst
    );
    println!("memory: daemon VmRSS after the burst {rss} KiB");
    drop(d);
    assert_eq!(refused.load(Ordering::SeqCst), 0, "posts refused");
    assert_eq!(decisions, runs + burst, "decisions lost");
    assert_eq!(plays, runs + burst, "plays lost");
}
