//! The dashboard's endpoints at the size issue 14 names: a 20,000-item index (3,000 movies, a
//! third with a 4K version besides the 1080p one, and 300 shows of 57 episodes: 20,100
//! items) and 1,000 stored decisions, with 12 sessions playing. The real daemon binary, the
//! fake Plex of the tests, loopback HTTP.
//!
//! The decisions arrive the way the shim sends them (`report_decision` over the socket,
//! stored by the audit job): four kinds, ten viewers, the playing sessions' transcode keys
//! among them. Each endpoint is asked `DASHBOARD_RUNS` times (default 300), one request per
//! connection as a browser's poll is; the time is from `connect` to the last byte read.
//! The charts are timed twice: as the page polls them (cached for a minute) and computed
//! afresh (a different `days` on every request, so the cache never answers).
//!
//! Run: `cargo build --release --workspace && cargo bench --bench dashboard_endpoints`
//! (`DASHBOARD_RUNS=1000` to change the count).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a failure is a panic

#[allow(dead_code)]
mod support;

#[path = "../tests/fake_plex.rs"]
#[allow(dead_code)]
mod fake_plex;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use downshiftarr_shim::protocol::{Client, Request};
use fake_plex::{FakePlex, Play};
use serde_json::{json, Value};
use support::{cli, env_num, free_port, spread};

const DECISIONS: u64 = 1000;
const SESSIONS: u64 = 12;
const USERS: u64 = 10;

/// The path of the `i`th request to an endpoint.
type PathOf = Box<dyn Fn(usize) -> String>;

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// One GET; (status, body, milliseconds from connect to the last byte).
fn get(addr: &str, path: &str) -> (u16, Vec<u8>, f64) {
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n").unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = String::from_utf8_lossy(&out[..split])
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, out[split + 4..].to_vec(), ms)
}

fn get_json(addr: &str, path: &str) -> Value {
    let (status, body, _) = get(addr, path);
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// `/health`'s body (503 while a job is failing still carries it).
fn health(addr: &str) -> Value {
    serde_json::from_slice(&get(addr, "/health").1).unwrap_or(Value::Null)
}

fn wait(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `i`th decision as the shim records it.
fn record(i: u64) -> Value {
    let kinds = ["pass", "rewrite", "switch", "refuse"];
    let kind = kinds[(i % 4) as usize];
    let movie = i % 3000;
    let mut r = json!({
        "time": downshiftarr_shim::record::rfc3339(
            std::time::SystemTime::now() - Duration::from_secs((DECISIONS - i) * 600)),
        "pid": 1000 + i, "session": format!("tx-{}", i % 200), "job": "video_transcode",
        "input": format!("/data/Movies/Movie {movie} ({})/Movie {movie} ({}) - 2160p.mkv", 1980 + movie % 40, 1980 + movie % 40),
        "source": {"width": 3840, "height": 2160, "bit_depth": 10, "dynamic_range": "hdr10", "codec": "hevc", "from": "daemon"},
        "decision": kind, "reason": format!("reason of a {kind}"),
        "viewer": {"user": format!("user{}", i % USERS), "client": "Plex Web"},
        "elapsed_us": 300,
    });
    match kind {
        "refuse" => r["scenario"] = json!("no_fallback_media"),
        "switch" => {
            r["switched_to"] = json!({"media_id": format!("{}", 10000 + movie * 10), "file": "/data/x 1080p.mkv",
                "height": 1080, "dynamic_range": "sdr",
                "streams": [{"kind": "video", "from": 0, "to": 0}, {"kind": "audio", "from": 1, "to": 2, "language": "eng"}]})
        }
        "rewrite" => {
            r["changes"] = json!([{"at": 12, "from": "scale=w=3840:h=2160", "to": "scale=w=1920:h=1080,format=p010,tonemap=hable"}])
        }
        _ => {}
    }
    r
}

fn main() {
    let runs = env_num("DASHBOARD_RUNS", 300) as usize;
    let plex = FakePlex::start(3000, 300, 57);
    plex.play.set_sessions(
        (0..SESSIONS)
            .map(|i| {
                Play::session(
                    &format!("{}", 100 + i),
                    &format!("sess-{i}"),
                    &format!("tx-{i}"),
                    1001 + i * 3,
                    10000 + i,
                    &format!("user{}", i % USERS),
                    &format!("client-{i}"),
                    if i % 2 == 0 { "transcode" } else { "copy" },
                )
            })
            .collect(),
    );
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("plex-token");
    std::fs::write(&token, &plex.token).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let sock = dir.path().join("run/shim.sock");
    let cfg = json!({
        "plex": {"url": plex.url, "token_file": token},
        "shim": {"socket": sock},
        "index": {"sync_interval_s": 0, "deletion_check_interval_s": 0, "page_size": 500},
        "enforce": {"guard_interval_s": 2, "guard": false},
        "daemon": {"state_dir": dir.path().join("state"), "runtime_dir": dir.path().join("run"),
                   "heal_transcoder": false, "socket_group": "", "http_listen": addr}
    });
    let path = dir.path().join("config.json");
    std::fs::write(&path, cfg.to_string()).unwrap();
    let log = dir.path().join("daemon.log");
    let _d = Daemon(
        Command::new(cli())
            .args(["daemon", "--config"])
            .arg(&path)
            .env_remove("PLEX_TOKEN")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let t = Instant::now();
    wait("the first sync (see the daemon log)", 600, || {
        std::net::TcpStream::connect(&addr).is_ok() && health(&addr)["last_sync"]["ok"] == true
    });
    let items = health(&addr)["index"].clone();
    println!(
        "index: {} movies, {} shows, {} episodes, {} files (synced in {:.1} s)",
        items["movies"],
        items["shows"],
        items["episodes"],
        items["files"],
        t.elapsed().as_secs_f64()
    );
    for i in 0..DECISIONS {
        let mut c = Client::connect(&sock, Instant::now() + Duration::from_secs(5)).unwrap();
        c.send(&Request::ReportDecision { record: record(i) })
            .unwrap();
    }
    let db = rusqlite::Connection::open(dir.path().join("state/index.sqlite")).unwrap();
    wait("the audit stores every decision", 60, || {
        db.query_row("SELECT COUNT(*) FROM decisions", [], |r| r.get::<_, i64>(0))
            .unwrap()
            >= DECISIONS as i64
    });
    wait("the sessions are listed", 30, || {
        get_json(&addr, "/api/dashboard/summary")["now_playing"]
            .as_array()
            .is_some_and(|p| p.len() == SESSIONS as usize)
    });
    let last = get_json(&addr, "/api/dashboard/decisions?limit=1")["decisions"][0]["id"]
        .as_i64()
        .unwrap();
    let mut endpoints: Vec<(String, PathOf)> = vec![
        (
            "summary".into(),
            Box::new(|_| "/api/dashboard/summary".into()),
        ),
        (
            "decisions (50 newest)".into(),
            Box::new(|_| "/api/dashboard/decisions".into()),
        ),
        (
            "decisions ?kind=refuse&user=user3".into(),
            Box::new(|_| "/api/dashboard/decisions?kind=refuse&user=user3".into()),
        ),
        (
            "decisions, page 5 (before_id)".into(),
            Box::new(move |_| format!("/api/dashboard/decisions?before_id={}", last - 200)),
        ),
        (
            "decisions/<id>".into(),
            Box::new(move |i| format!("/api/dashboard/decisions/{}", last - (i as i64 % 1000))),
        ),
        (
            "charts (as polled: cached)".into(),
            Box::new(|_| "/api/dashboard/charts".into()),
        ),
        (
            "charts (computed afresh)".into(),
            Box::new(|i| format!("/api/dashboard/charts?days={}", 2 + i % 89)),
        ),
    ];
    println!(
        "{DECISIONS} decisions, {SESSIONS} sessions playing; {runs} requests per endpoint (connect → last byte):"
    );
    let mut worst: f64 = 0.0;
    for (name, path) in endpoints.drain(..) {
        let mut ms = Vec::with_capacity(runs);
        let mut bytes = 0;
        for i in 0..runs {
            let (status, body, t) = get(&addr, &path(i));
            assert_eq!(status, 200, "{name}: {}", String::from_utf8_lossy(&body));
            bytes = body.len();
            ms.push(t);
        }
        let (med, p95, max) = spread(&ms, 0.95);
        worst = worst.max(p95);
        println!(
            "  {name:<36} median {med:6.2} ms   p95 {p95:6.2} ms   max {max:6.2} ms   ({bytes} bytes)"
        );
    }
    println!(
        "every endpoint's p95 ≤ 10 ms: {}",
        if worst <= 10.0 { "yes" } else { "NO" }
    );
}
