//! The throttle's speed and cost (issue 11 "Speed and cost"): the real daemon binary, the fake
//! Plex of the tests (its `/status/sessions` and notification websocket in Plex's recorded
//! shapes) and a real `qbittorrent-nox` (the `RealQbit` harness of `tests/qbittorrent.rs`).
//!
//! - **Reaction**: `RUNS` times (default 10), a remote transcode appears in `/status/sessions`
//!   and a `playing` notification frame is pushed; the clock runs from the push until
//!   qBittorrent's upload limit, read back through its API every 10 ms, has changed. Default
//!   thresholds (`streaming_threshold` 2: the job confirms a first sighting with a quick poll)
//!   and the default backstop poll (10 s), so the backstop does not do the work. Then the stream
//!   ends (`stopped` frame, empty listing) and the limit must come back; the release is timed too
//!   (with `idle_threshold` 1 and `restore_delay_s` 0 so the loop stays short — a release waits
//!   for its hysteresis on purpose). The daemon's own `downshiftarr_throttle_reaction_seconds`
//!   histogram (from the frame's arrival) is read from `/metrics` as a cross-check.
//! - **Memory**: `VmRSS` of the daemon after warm-up and again after the same streams, the
//!   same config with and without the `throttle` section.
//! - **Idle CPU**: the daemon's utime+stime (`/proc/<pid>/stat`) and its threads' context
//!   switches (wake-ups) over `IDLE_S` seconds (default 60) while nothing plays, throttle on
//!   vs off.
//!
//! Run: `cargo build --release --workspace && cargo bench --bench throttle_reaction`
//! (`THROTTLE_REACTION_RUNS=20`, `THROTTLE_REACTION_IDLE_S=30` to change the counts). Without
//! `qbittorrent-nox` it says so and stops.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a failure is a panic

mod support;

#[path = "../tests/fake_plex.rs"]
#[allow(dead_code)]
mod fake_plex;
#[path = "../tests/qbittorrent.rs"]
#[allow(dead_code, unused_imports)]
mod qbittorrent;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use downshiftarr::clients::qbittorrent::{Qbittorrent, RateLimit};
use fake_plex::{FakePlex, Play};
use qbittorrent::{RealQbit, PASSWORD, USER};
use serde_json::{json, Value};
use support::{cli, env_num, free_port, spread, vm_rss_kb};

/// utime + stime of the process (all its threads), in clock ticks.
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

/// Context switches of every thread of the process: how often it woke up.
fn wakeups(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .map(|t| {
            std::fs::read_to_string(t.path().join("status"))
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// A running daemon, stopped with SIGTERM (so it gives back what it throttled) on drop.
struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(cfg: &Path, log: &Path, plex: &FakePlex) -> Daemon {
        let before = plex.websocket_connections();
        let child = Command::new(cli())
            .args(["daemon", "--config"])
            .arg(cfg)
            .env_remove("PLEX_TOKEN")
            .env_remove("QBITTORRENT_PASSWORD")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let d = Daemon { child };
        let deadline = Instant::now() + Duration::from_secs(60);
        while plex.websocket_connections() <= before {
            assert!(
                Instant::now() < deadline,
                "the daemon did not connect to the notification websocket within 60 s; its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Warm-up: the start-up sync and first session poll, until the CPU stands still.
        std::thread::sleep(Duration::from_secs(3));
        let mut last = cpu_ticks(d.pid());
        for _ in 0..30 {
            std::thread::sleep(Duration::from_secs(1));
            let now = cpu_ticks(d.pid());
            if now == last {
                break;
            }
            last = now;
        }
        d
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// (CPU seconds, wake-ups) over `secs` seconds of nothing.
    fn idle(&self, secs: u64) -> (f64, u64) {
        let (c0, w0) = (cpu_ticks(self.pid()), wakeups(self.pid()));
        std::thread::sleep(Duration::from_secs(secs));
        let (c1, w1) = (cpu_ticks(self.pid()), wakeups(self.pid()));
        ((c1 - c0) as f64 / clock_ticks_per_s(), w1 - w0)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `playing` notification frame as Plex sends it (payloads/plex-ws-*.json).
fn frame(key: &str, state: &str, transcode: Option<&str>) -> Value {
    let mut n = json!({"sessionKey": key, "clientIdentifier": "bench-client", "guid": "",
        "ratingKey": "1001", "url": "", "key": "/library/metadata/1001", "viewOffset": 0,
        "playQueueItemID": 411763, "playQueueID": 21343, "state": state});
    if let Some(t) = transcode {
        n["transcodeSession"] = json!(t);
    }
    json!({"NotificationContainer": {"type": "playing", "size": 1, "PlaySessionStateNotification": [n]}})
}

/// Stream `i` starts: a remote transcode in `/status/sessions`, and its `playing` frame.
fn play(plex: &FakePlex, i: usize) {
    let key = (100 + i).to_string();
    let tx = format!("bench-tx-{i}");
    plex.play.set_sessions(vec![Play::session(
        &key,
        &format!("bench-session-{i}"),
        &tx,
        1001,
        1,
        "alice",
        "bench-client",
        "transcode",
    )]);
    plex.notify(frame(&key, "playing", Some(&tx)));
}

/// Stream `i` ends: gone from `/status/sessions`, and its `stopped` frame.
fn stop(plex: &FakePlex, i: usize) {
    plex.play.set_sessions(Vec::new());
    plex.notify(frame(&(100 + i).to_string(), "stopped", None));
}

/// Polls qBittorrent's upload limit every 10 ms until `done` holds; the time it took.
fn until_limit(q: &mut Qbittorrent, done: impl Fn(RateLimit) -> bool, what: &str) -> f64 {
    let t = Instant::now();
    loop {
        if q.upload_limit().is_ok_and(&done) {
            return t.elapsed().as_secs_f64();
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{what}: qbittorrent's upload limit did not change within 60 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `name`'s value in a Prometheus text exposition.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn main() {
    let runs = env_num("THROTTLE_REACTION_RUNS", 10).max(1) as usize;
    let idle_s = env_num("THROTTLE_REACTION_IDLE_S", 60).max(1);
    let Some(q) = RealQbit::start(true) else {
        println!("throttle_reaction: qbittorrent-nox is not installed; nothing measured");
        return;
    };
    let plex = FakePlex::start(3, 1, 2);
    let dir = tempfile::tempdir().unwrap();
    let secret = |name: &str, value: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, value).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    };
    let token = secret("plex-token", &plex.token);
    let password = secret("qbittorrent-password", PASSWORD);
    let http = format!("127.0.0.1:{}", free_port());
    let base = json!({
        "plex": {"url": plex.url, "token_file": token},
        "shim": {"socket": dir.path().join("run/shim.sock")},
        "index": {"sync_interval_s": 0},
        "daemon": {"state_dir": dir.path().join("state"), "runtime_dir": dir.path().join("run"),
                   "heal_transcoder": false, "socket_group": "", "http_listen": http}
    });
    let mut with = base.clone();
    with["throttle"] = json!({
        "qbittorrent_url": q.url(), "username": USER, "password_file": password,
        "streaming_upload_kib_s": 500, "idle_threshold": 1, "restore_delay_s": 0
    });
    let (cfg_off, cfg_on) = (dir.path().join("off.json"), dir.path().join("on.json"));
    std::fs::write(&cfg_off, base.to_string()).unwrap();
    std::fs::write(&cfg_on, with.to_string()).unwrap();
    let log = dir.path().join("daemon.log");

    // Without the throttle.
    let off = Daemon::start(&cfg_off, &log, &plex);
    let rss_off = vm_rss_kb(off.pid());
    let (cpu_off, wake_off) = off.idle(idle_s);
    // The same streams (nothing to throttle): the sessions job's own share of the memory.
    for i in 0..runs {
        play(&plex, i);
        std::thread::sleep(Duration::from_millis(1500));
        stop(&plex, i);
        std::thread::sleep(Duration::from_millis(1000));
    }
    let rss_off_after = vm_rss_kb(off.pid());
    drop(off);

    // With it: idle first (nothing plays), then the streams.
    let on = Daemon::start(&cfg_on, &log, &plex);
    let rss_on = vm_rss_kb(on.pid());
    let (cpu_on, wake_on) = on.idle(idle_s);
    let mut qc = q.client(Some(PASSWORD));
    let original = qc.upload_limit().unwrap();
    let (mut engage, mut release) = (Vec::new(), Vec::new());
    for i in 0..runs {
        // Frames land at varied points of the daemon's own timers.
        std::thread::sleep(Duration::from_millis(1500 + (i as u64 * 377) % 1500));
        play(&plex, i);
        engage.push(until_limit(&mut qc, |l| l != original, "engage"));
        std::thread::sleep(Duration::from_millis(500));
        stop(&plex, i);
        release.push(until_limit(&mut qc, |l| l == original, "release"));
    }
    let rss_after = vm_rss_kb(on.pid());
    let metrics = reqwest::blocking::get(format!("http://{http}/metrics"))
        .and_then(|r| r.text())
        .unwrap_or_default();
    drop(on);

    let ms = |v: &[f64]| {
        let (m, p, x) = spread(v, 0.9);
        format!(
            "median {:.0} ms, p90 {:.0} ms, max {:.0} ms",
            m * 1e3,
            p * 1e3,
            x * 1e3
        )
    };
    let inner = match (
        metric(&metrics, "downshiftarr_throttle_reaction_seconds_sum"),
        metric(&metrics, "downshiftarr_throttle_reaction_seconds_count"),
    ) {
        (Some(s), Some(c)) if c > 0.0 => {
            format!(
                "; the daemon's own histogram: {c} engages, mean {:.0} ms from the frame's arrival",
                s / c * 1e3
            )
        }
        _ => String::new(),
    };
    println!("| measurement | target | result |");
    println!("|---|---|---|");
    println!(
        "| reaction: `playing` frame pushed → qBittorrent's upload limit reads back changed ({runs} streams, streaming_threshold 2) | ≤ 1 s | **{}**{inner} |",
        ms(&engage)
    );
    println!(
        "| release: `stopped` frame → limit back (idle_threshold 1, restore_delay_s 0) | — | {} |",
        ms(&release)
    );
    println!(
        "| daemon RSS (`VmRSS`), throttle off → on | ≤ +2 MB | after warm-up {rss_off} kB → {rss_on} kB (**{:+} kB**); after the {runs} streams {rss_off_after} kB → {rss_after} kB (**{:+} kB**) |",
        rss_on as i64 - rss_off as i64,
        rss_after as i64 - rss_off_after as i64
    );
    println!(
        "| daemon CPU over {idle_s} s with nothing playing, throttle off → on | no CPU | {cpu_off:.2} s → **{cpu_on:.2} s**; wake-ups (context switches) {wake_off} → {wake_on} ({:.1}/s → {:.1}/s) |",
        wake_off as f64 / idle_s as f64,
        wake_on as f64 / idle_s as f64
    );
}
