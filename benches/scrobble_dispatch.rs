//! The scrobble job's speed and cost (issue 12 "Speed"): the real daemon binary, the fake Plex
//! of the tests (its `/status/sessions` and notification websocket in Plex's recorded shapes)
//! and the fake Trakt (loopback, replaying `fixtures/trakt-payloads`).
//!
//! - **Dispatch**: `RUNS` times (default 20), a listed session's first `playing` frame is
//!   pushed; the clock runs from the push until the fake Trakt has read the `POST
//!   /scrobble/start` it causes (its own `Instant`, same clock). Runs are 1.2 s apart: Trakt
//!   allows one POST per second per token, and the pacing is not what is measured. The fake
//!   Plex sends queued frames from a loop that looks every 20 ms, which is in the number.
//! - **Replay**: `PLAYS` plays (default 100) of 10 notifications each (1,000 events: starts,
//!   repeats, a pause and its repeat, buffering, a resume, progress, a stop and its repeat)
//!   across 20 users with their own tokens, while Trakt answers every 7th scrobble request with
//!   503, 429 (`Retry-After: 10`), a Cloudflare 520 or a 16 s stall (past the client's read
//!   timeout, so the client gives up and sends again; Trakt took it, and answers the re-send
//!   409 as it does, apis.md §3.4). Counted at the fake Trakt: plays taken (201 `scrobble`),
//!   lost (a play with none), duplicated (a play with two 201s), re-sends answered 409; and
//!   the wall time until every play is on Trakt.
//! - **Memory**: `VmRSS` of the daemon after warm-up and after the replay, the same config with
//!   and without the `scrobble` section.
//!
//! Run: `cargo build --release --workspace && cargo bench --bench scrobble_dispatch`
//! (`SCROBBLE_DISPATCH_RUNS=40`, `SCROBBLE_REPLAY_PLAYS=50` to change the counts).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a failure is a panic

mod support;

#[path = "../tests/fake_plex.rs"]
#[allow(dead_code)]
mod fake_plex;
#[path = "../tests/fake_service.rs"]
#[allow(dead_code)]
mod fake_service;
#[path = "../tests/fake_trakt.rs"]
#[allow(dead_code, unused_imports)]
mod fake_trakt;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use downshiftarr::clients::trakt::Tokens;
use downshiftarr::jobs::scrobble::tokens;
use downshiftarr::store::Store;
use fake_plex::FakePlex;
use fake_trakt::{Answer, FakeTrakt, CLIENT_ID, CLIENT_SECRET, GOOD_TOKEN};
use serde_json::{json, Value};
use support::{cli, env_num, free_port, spread, vm_rss_kb};

const MOVIE_MS: i64 = 6_000_000;
const USERS: u64 = 20;

/// A session of `/status/sessions` (apis.md §1.1).
fn session(key: &str, user: &str, rk: u64) -> Value {
    json!({"sessionKey": key, "ratingKey": rk.to_string(), "key": format!("/library/metadata/{rk}"),
        "type": "movie", "title": format!("Item {rk}"), "duration": MOVIE_MS, "viewOffset": 0,
        "Media": [{"id": rk * 10, "selected": true, "duration": MOVIE_MS}],
        "User": {"id": "7", "title": user},
        "Player": {"address": "192.168.1.20", "machineIdentifier": format!("client-{key}"),
            "product": "Plex for Android (TV)", "state": "playing", "title": "Shield", "local": true},
        "Session": {"id": format!("session-{key}"), "bandwidth": 12000, "location": "lan"}})
}

/// A `playing` frame (payloads/plex-ws-playing-error.json's shape).
fn frame(key: &str, rk: u64, state: &str, pct: f64) -> Value {
    json!({"NotificationContainer": {"type": "playing", "size": 1, "PlaySessionStateNotification": [
        {"sessionKey": key, "clientIdentifier": format!("client-{key}"), "guid": "", "ratingKey": rk.to_string(),
         "url": "", "key": format!("/library/metadata/{rk}"), "viewOffset": (MOVIE_MS as f64 * pct / 100.0) as i64,
         "playQueueItemID": 411763, "playQueueID": 21343, "state": state}]}})
}

/// The fake library's movie `rk` has `imdb://tt{rk - 1001}` (both GUID forms).
fn answers(trakt: &FakeTrakt) -> Vec<(String, u16, Value)> {
    trakt
        .answered()
        .into_iter()
        .map(|(r, st)| (r.path.clone(), st, r.json()))
        .collect()
}

fn imdb_of(rk: u64) -> String {
    format!("tt{:07}", rk - 1001)
}

struct Setup {
    dir: tempfile::TempDir,
    cfg: PathBuf,
}

fn setup(plex: &FakePlex, trakt: Option<&FakeTrakt>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("plex-token");
    std::fs::write(&token, &plex.token).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut cfg = json!({
        "plex": {"url": plex.url, "token_file": token},
        "shim": {"socket": dir.path().join("run/shim.sock")},
        "index": {"sync_interval_s": 0, "deletion_check_interval_s": 0},
        "enforce": {"guard_interval_s": 2},
        "daemon": {"state_dir": dir.path().join("state"), "runtime_dir": dir.path().join("run"),
                   "heal_transcoder": false, "socket_group": "",
                   "http_listen": format!("127.0.0.1:{}", free_port())}
    });
    if let Some(t) = trakt {
        cfg["scrobble"] =
            json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "trakt_url": t.url()});
        let store = Store::open(&dir.path().join("state/index.sqlite")).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        for u in 0..USERS {
            let t = Tokens {
                access_token: format!("{GOOD_TOKEN}-u{u}"),
                refresh_token: format!("refresh-u{u}"),
                expires_in: 86_400,
                created_at: now,
                scope: None,
                token_type: None,
            };
            tokens::save(&store, &format!("user{u}"), &t).unwrap();
        }
    }
    let path = dir.path().join("config.json");
    std::fs::write(&path, cfg.to_string()).unwrap();
    Setup { dir, cfg: path }
}

struct Daemon(Child);

impl Daemon {
    fn start(s: &Setup, plex: &FakePlex) -> Daemon {
        let before = plex.websocket_connections();
        let log = s.dir.path().join("daemon.log");
        let child = Command::new(cli())
            .args(["daemon", "--config"])
            .arg(&s.cfg)
            .env_remove("PLEX_TOKEN")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let d = Daemon(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while plex.websocket_connections() <= before {
            assert!(
                Instant::now() < deadline,
                "the daemon did not connect within 60 s:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_secs(4)); // the start-up sync and session polls
        d
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn scrobbled(trakt: &FakeTrakt, path: &str, imdb: &str) -> Option<Instant> {
    trakt
        .log()
        .into_iter()
        .find(|r| r.path == path && r.json()["movie"]["ids"]["imdb"] == imdb)
        .map(|r| r.at)
}

fn dispatch(plex: &FakePlex, trakt: &FakeTrakt, runs: u64) -> Vec<f64> {
    let mut out = Vec::new();
    for i in 0..runs {
        let rk = 1001 + i;
        let key = format!("d{i}");
        let t0 = Instant::now();
        plex.notify(frame(&key, rk, "playing", 0.0));
        let at = loop {
            if let Some(at) = scrobbled(trakt, "/scrobble/start", &imdb_of(rk)) {
                break at;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "run {i}: no start in 30 s"
            );
            std::thread::sleep(Duration::from_millis(1));
        };
        out.push(at.saturating_duration_since(t0).as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(1200));
    }
    out
}

fn main() {
    let runs = env_num("SCROBBLE_DISPATCH_RUNS", 20);
    let plays = env_num("SCROBBLE_REPLAY_PLAYS", 100);
    let plex = FakePlex::start(runs.max(plays) + 1, 0, 0);
    let trakt = FakeTrakt::start();
    trakt.remember_plays();

    // Every session of both phases is listed from the start (each user on its own key).
    let mut list: Vec<Value> = (0..runs)
        .map(|i| session(&format!("d{i}"), &format!("user{}", i % USERS), 1001 + i))
        .collect();
    list.extend(
        (0..plays).map(|i| session(&format!("r{i}"), &format!("user{}", i % USERS), 1001 + i)),
    );
    plex.play.set_sessions(list);

    // Memory without the job.
    let off = setup(&plex, None);
    let rss_off = {
        let d = Daemon::start(&off, &plex);
        vm_rss_kb(d.0.id())
    };

    let on = setup(&plex, Some(&trakt));
    let d = Daemon::start(&on, &plex);
    let rss_on = vm_rss_kb(d.0.id());

    let ms = dispatch(&plex, &trakt, runs);
    let (med, p99, max) = spread(&ms, 0.99);
    println!("dispatch (frame pushed → POST /scrobble/start read by Trakt), {runs} runs: median {med:.1} ms, p99 {p99:.1} ms, max {max:.1} ms");

    // The replay with faults.
    trakt.inject(
        7,
        vec![
            Answer::new(503, "<html>Service Unavailable</html>"),
            Answer::rate_limited(),
            Answer::cloudflare_520(),
            Answer::new(503, ""),
            Answer::new(201, "{}").slow(Duration::from_secs(16)),
        ],
    );
    let t0 = Instant::now();
    let script: [(&str, f64); 10] = [
        ("playing", 0.0),
        ("playing", 5.0),
        ("paused", 30.0),
        ("paused", 30.0),
        ("buffering", 30.0),
        ("playing", 30.0),
        ("playing", 60.0),
        ("playing", 85.0),
        ("stopped", 95.0),
        ("stopped", 95.0),
    ];
    let mut events = 0;
    for (state, pct) in script {
        for i in 0..plays {
            plex.notify(frame(&format!("r{i}"), 1001 + i, state, pct));
            events += 1;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let wanted: Vec<String> = (0..plays).map(|i| imdb_of(1001 + i)).collect();
    let deadline = Instant::now() + Duration::from_secs(900);
    let count = || {
        let mut taken: HashMap<String, u64> = HashMap::new();
        let mut conflicts = 0;
        for (p, st, b) in answers(&trakt) {
            if p != "/scrobble/stop" || b["progress"].as_f64().unwrap_or(0.0) < 80.0 {
                continue;
            }
            let imdb = b["movie"]["ids"]["imdb"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            match st {
                201 => *taken.entry(imdb).or_default() += 1,
                409 => conflicts += 1,
                _ => {}
            }
        }
        (taken, conflicts)
    };
    let (taken, conflicts) = loop {
        let (taken, conflicts) = count();
        if wanted.iter().all(|w| taken.contains_key(w)) || Instant::now() > deadline {
            break (taken, conflicts);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let wall = t0.elapsed().as_secs_f64();
    let lost = wanted.iter().filter(|w| !taken.contains_key(*w)).count();
    let duplicated: u64 = taken.values().map(|n| n.saturating_sub(1)).sum();
    let faults = answers(&trakt)
        .iter()
        .filter(|(p, st, _)| p.starts_with("/scrobble/") && *st != 201 && *st != 409)
        .count();
    let requests = trakt
        .log()
        .iter()
        .filter(|r| r.path.starts_with("/scrobble/"))
        .count();
    println!(
        "replay: {events} events, {plays} plays, {USERS} users: {} plays on Trakt, lost {lost}, duplicated {duplicated}; {requests} scrobble requests, {faults} answered with an injected failure, {conflicts} re-sends answered 409; {wall:.1} s until the last play",
        taken.len()
    );
    let rss_after = vm_rss_kb(d.0.id());
    println!(
        "memory: VmRSS scrobble off {rss_off} KiB, on {rss_on} KiB (+{} KiB), after the replay {rss_after} KiB (+{} KiB)",
        rss_on.saturating_sub(rss_off),
        rss_after.saturating_sub(rss_off)
    );
    drop(d);
    assert_eq!(
        (lost, duplicated),
        (0, 0),
        "the replay lost or duplicated plays"
    );
}
