//! The daemon against the fake Plex: sync correctness, the socket service, and the shim end to
//! end with its facts coming from the index.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use downshiftarr_shim::protocol::{Client, Request, Response};

use crate::fake_plex::FakePlex;
use crate::plex_job::PlexJob;
use crate::util;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub cfg: PathBuf,
    pub plex: FakePlex,
    /// Daemons started by this test: killed when the test ends, even by a panic, so a
    /// failing test never leaves a daemon running.
    pids: std::cell::RefCell<Vec<u32>>,
}

impl Drop for Env {
    fn drop(&mut self) {
        for pid in self.pids.borrow().iter() {
            let alive = std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.windows(6).any(|w| w == b"daemon"));
            if alive {
                // SAFETY: kill(2) on a child we started and have not reaped.
                unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
            }
        }
        util::show_log_if_failing(&self.log());
    }
}

impl Env {
    pub fn new(plex: FakePlex, extra_index: serde_json::Value) -> Env {
        let dir = util::tempdir();
        let token = dir.path().join("plex-token");
        std::fs::write(&token, format!("{}\n", plex.token)).unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut index = serde_json::json!({"page_size": 7, "metadata_batch": 10, "sync_interval_s": 0, "deletion_check_interval_s": 0});
        if let (Some(a), Some(b)) = (index.as_object_mut(), extra_index.as_object()) {
            a.extend(b.clone());
        }
        let cfg = dir.path().join("config.json");
        std::fs::write(
            &cfg,
            serde_json::json!({
                "plex": {"url": plex.url, "token_file": token, "read_timeout_ms": 3000},
                "shim": {"socket": dir.path().join("run/shim.sock")},
                "index": index,
                "daemon": {"state_dir": dir.path().join("state"), "runtime_dir": dir.path().join("run"),
                           "heal_transcoder": false, "socket_group": "", "http_listen": format!("127.0.0.1:{}", free_port())}
            })
            .to_string(),
        )
        .unwrap();
        Env {
            dir,
            cfg,
            plex,
            pids: Default::default(),
        }
    }

    /// Adds keys to a config section and rewrites the file.
    pub fn configure(&self, section: &str, extra: serde_json::Value) {
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&self.cfg).unwrap()).unwrap();
        let sec = v
            .as_object_mut()
            .unwrap()
            .entry(section)
            .or_insert_with(|| serde_json::json!({}));
        if let (Some(a), Some(b)) = (sec.as_object_mut(), extra.as_object()) {
            a.extend(b.clone());
        }
        std::fs::write(&self.cfg, v.to_string()).unwrap();
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(util::cli())
            .args(args)
            .arg("--config")
            .arg(&self.cfg)
            .env_remove("PLEX_TOKEN")
            .env_remove("PLEX_URL")
            .output()
            .unwrap()
    }

    pub fn sync(&self, args: &[&str]) -> String {
        let out = self.cli(&[&["sync"], args].concat());
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "sync failed:\n{text}");
        text
    }

    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.dir.path().join("state/index.sqlite")).unwrap()
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.db().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("run/shim.sock")
    }

    /// Where the daemons and other background processes of this test log (shown on failure).
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("background.log")
    }

    pub fn daemon(&self) -> Child {
        let c = Command::new(util::cli())
            .args(["daemon", "--config"])
            .arg(&self.cfg)
            .env_remove("PLEX_TOKEN")
            .stdout(util::log_stdio(&self.log()))
            .stderr(util::log_stdio(&self.log()))
            .spawn()
            .unwrap();
        self.pids.borrow_mut().push(c.id());
        c
    }
}

/// "synced: 88 seen, 88 changed (88 added), 0 removed, …" → (changed, removed).
pub fn summary(text: &str) -> (u64, u64) {
    let line = text
        .lines()
        .find(|l| l.starts_with("synced:"))
        .unwrap_or_else(|| panic!("no summary in:\n{text}"));
    let num = |after: &str| -> u64 {
        let i = line.find(after).unwrap();
        line[..i]
            .trim_end()
            .rsplit([' ', '('])
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (num(" changed"), num(" removed"))
}

#[test]
fn full_then_incremental_sync_with_edits_and_deletions() {
    let env = Env::new(FakePlex::start(30, 4, 12), serde_json::json!({}));
    let out = env.sync(&[]);
    assert_eq!(summary(&out), (30 + 4 + 48, 0), "{out}");
    assert_eq!(
        env.count("SELECT COUNT(*) FROM items WHERE type = 'movie'"),
        30
    );
    assert_eq!(
        env.count("SELECT COUNT(*) FROM items WHERE type = 'episode'"),
        48
    );
    assert_eq!(
        env.count("SELECT COUNT(*) FROM parts"),
        30 + 10 + 48,
        "a third of the movies have two versions"
    );
    assert_eq!(
        env.count(
            "SELECT COUNT(*) FROM media WHERE dynamic_range = 'dolby_vision' AND dv_profile = 8"
        ),
        4
    );
    assert_eq!(
        env.count("SELECT COUNT(*) FROM items WHERE type = 'movie' AND imdb IS NOT NULL"),
        30,
        "new and legacy guids"
    );
    assert_eq!(
        env.count("SELECT COUNT(*) FROM items WHERE type = 'show' AND tvdb IS NOT NULL"),
        4
    );

    // No change: nothing changed, and few requests.
    let before = env.plex.requests.load(Ordering::SeqCst);
    let out = env.sync(&[]);
    assert_eq!(summary(&out), (0, 0), "{out}");
    assert!(
        !out.contains("changed:") && !out.contains("added:"),
        "change lines only when something changed:\n{out}"
    );
    let used = env.plex.requests.load(Ordering::SeqCst) - before;
    // sections + per section: filter probe (first time only), changed listing(s), deletion check.
    assert!(
        used <= 1 + (2 + 2) + (3 + 2 * 7),
        "a no-change pass used {used} requests"
    );

    // Edits and deletions.
    let movies = env.plex.keys("movie");
    let episodes = env.plex.keys("episode");
    env.plex.edit(movies[1], true); // a 1080p SDR movie becomes HDR
    env.plex.edit(episodes[5], false);
    env.plex.delete(movies[2]);
    env.plex.delete(episodes[7]);
    let out = env.sync(&[]);
    assert_eq!(summary(&out), (2, 2), "{out}");
    assert!(out.contains("changed: Movie 1"), "{out}");
    let rk = movies[1].to_string();
    let dr: String = env
        .db()
        .query_row(
            "SELECT dynamic_range FROM media WHERE rating_key = ?1",
            [&rk],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(dr, "hdr10");
    assert_eq!(
        env.count("SELECT COUNT(*) FROM items WHERE type = 'movie'"),
        29
    );
    assert_eq!(
        env.count("SELECT COUNT(*) FROM items WHERE type = 'episode'"),
        47
    );

    // discover
    let out = env.cli(&["discover", "--title", "movie 0"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Movie 0 (1980)")
            && text.contains("3840x2160 dolby_vision profile 8")
            && text.contains("1920x1080 sdr"),
        "{text}"
    );
}

#[test]
fn server_ignoring_the_updated_filter_falls_back_to_full_listings() {
    let env = Env::new(FakePlex::start(12, 1, 5), serde_json::json!({}));
    env.plex
        .faults
        .ignore_updated_filter
        .store(true, Ordering::SeqCst);
    env.sync(&[]);
    let filter: String = env
        .db()
        .query_row(
            "SELECT value FROM meta WHERE key = 'section:1:filter'",
            [],
            |r| r.get(0),
        )
        .unwrap_or_default();
    assert_eq!(filter, "", "the probe only runs for incremental passes");
    assert_eq!(
        summary(&env.sync(&[])),
        (0, 0),
        "client-side comparison finds nothing changed"
    );
    let filter: String = env
        .db()
        .query_row(
            "SELECT value FROM meta WHERE key = 'section:1:filter'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(filter, "0", "the probe noticed the ignored filter");
    env.plex.edit(env.plex.keys("movie")[3], true);
    assert_eq!(summary(&env.sync(&[])), (1, 0));
}

#[test]
fn plex_failing_mid_sync_deletes_nothing() {
    let env = Env::new(FakePlex::start(20, 2, 6), serde_json::json!({}));
    env.sync(&[]);
    for k in env.plex.keys("movie").into_iter().take(5) {
        env.plex.delete(k);
    }
    let n = env.plex.requests.load(Ordering::SeqCst);
    env.plex.faults.fail_after.store(n + 3, Ordering::SeqCst);
    let out = env.cli(&["sync"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nothing was deleted") && err.contains("500"),
        "{err}"
    );
    assert_eq!(
        env.count("SELECT COUNT(*) FROM items WHERE type = 'movie'"),
        20,
        "a failed pass deletes nothing"
    );
    env.plex.faults.fail_after.store(0, Ordering::SeqCst);
    assert_eq!(summary(&env.sync(&[])).1, 5);
}

#[test]
fn a_sync_killed_mid_pass_leaves_a_consistent_index_and_the_next_pass_finishes() {
    let env = Env::new(
        FakePlex::start(40, 3, 20),
        serde_json::json!({"metadata_batch": 4}),
    );
    env.plex.faults.delay_ms.store(25, Ordering::SeqCst);
    let mut child = Command::new(util::cli())
        .arg("sync")
        .arg("--config")
        .arg(&env.cfg)
        .env_remove("PLEX_TOKEN")
        .stdout(util::log_stdio(&env.log()))
        .stderr(util::log_stdio(&env.log()))
        .spawn()
        .unwrap();
    let t = Instant::now();
    // Kill it once some batches are committed.
    while t.elapsed() < Duration::from_secs(20) {
        if env.dir.path().join("state/index.sqlite").exists()
            && env
                .db()
                .query_row("SELECT COUNT(*) FROM items", [], |r| r.get::<_, i64>(0))
                .unwrap_or(0)
                > 8
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let partial = env.count("SELECT COUNT(*) FROM items");
    assert!(
        partial > 0 && partial < 40 + 3 + 60,
        "killed mid-pass ({partial} items)"
    );
    let ok: String = env
        .db()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    assert_eq!(env.count("SELECT COUNT(*) FROM media m LEFT JOIN items i ON i.rating_key = m.rating_key WHERE i.rating_key IS NULL"), 0);
    env.plex.faults.delay_ms.store(0, Ordering::SeqCst);
    env.sync(&[]);
    assert_eq!(
        env.count("SELECT COUNT(*) FROM items"),
        40 + 3 + 60,
        "the next pass finished the job"
    );
    assert_eq!(env.count("SELECT COUNT(*) FROM parts"), 40 + 14 + 60);
}

pub fn wait_for_daemon(socket: &Path, path: &str) -> Response {
    crate::fake_plex::wait_for_lookup(socket, path, Duration::from_secs(20))
}

pub fn stop(mut d: Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(d.id().to_string())
        .status();
    let t = Instant::now();
    while d.try_wait().unwrap().is_none() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the daemon did not stop within 5 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub const MOVIE0_4K: &str = "/data/Movies/Movie 0 (1980)/Movie 0 (1980) - 2160p.mkv";
const MOVIE9_4K: &str = "/data/Movies/Movie 9 (1989)/Movie 9 (1989) - 2160p.mkv";
pub const MOVIE3_4K: &str = "/data/Movies/Movie 3 (1983)/Movie 3 (1983) - 2160p.mkv";
const MOVIE1_1080: &str = "/data/Movies/Movie 1 (1981)/Movie 1 (1981) - 1080p.mkv";

#[test]
fn the_socket_service_answers_from_the_index() {
    let env = Env::new(FakePlex::start(10, 1, 3), serde_json::json!({}));
    let daemon = env.daemon();
    let r = wait_for_daemon(&env.socket(), MOVIE3_4K);
    let Response::Source {
        facts: Some(f),
        versions,
        ..
    } = r
    else {
        panic!("{r:?}")
    };
    assert_eq!(
        (f.width, f.height, f.bit_depth),
        (Some(3840), Some(2160), Some(10))
    );
    assert_eq!(
        f.dynamic_range,
        Some(downshiftarr_shim::facts::DynamicRange::Hdr10)
    );
    assert_eq!(versions.len(), 2, "both versions of the title");
    let sdr = versions.iter().find(|v| v.height == Some(1080)).unwrap();
    assert_eq!(
        sdr.file,
        "/data/Movies/Movie 3 (1983)/Movie 3 (1983) - 1080p.mkv"
    );
    assert!(sdr
        .streams
        .iter()
        .any(|s| s.kind == downshiftarr_shim::protocol::StreamKind::Audio
            && s.language.as_deref() == Some("ger")));
    let mode = std::fs::metadata(env.socket())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660, "socket mode");

    let mut c = Client::connect(&env.socket(), Instant::now() + Duration::from_secs(2)).unwrap();
    assert!(matches!(
        c.call(&Request::LookupSource {
            path: "/not/in/library.mkv".into()
        }),
        Ok(Response::Source { found: false, .. })
    ));
    assert!(matches!(c.call(&Request::Ping), Ok(Response::Pong)));
    assert!(matches!(
        c.call(&Request::Version),
        Ok(Response::Version { protocol: 1, .. })
    ));

    // Garbage, a huge frame and a silent client are dropped; others are unaffected.
    let mut g = UnixStream::connect(env.socket()).unwrap();
    g.write_all(&[0, 0, 0, 5, 0xff, 0, 1, 2, 3]).unwrap();
    let mut h = UnixStream::connect(env.socket()).unwrap();
    h.write_all(&(200u32 << 20).to_be_bytes()).unwrap();
    let _silent = UnixStream::connect(env.socket()).unwrap();
    assert!(matches!(c.call(&Request::Ping), Ok(Response::Pong)));

    // 1,000 concurrent shim lookups, all answered.
    let threads: Vec<_> = (0..1000)
        .map(|i| {
            let sock = env.socket();
            std::thread::spawn(move || {
                let path = if i % 2 == 0 { MOVIE3_4K } else { MOVIE0_4K };
                let mut c =
                    Client::connect(&sock, Instant::now() + Duration::from_secs(10)).ok()?;
                match c.call(&Request::LookupSource { path: path.into() }) {
                    Ok(Response::Source { found: true, .. }) => Some(()),
                    _ => None,
                }
            })
        })
        .collect();
    let answered = threads
        .into_iter()
        .filter_map(|t| t.join().ok().flatten())
        .count();
    assert_eq!(answered, 1000);
    stop(daemon);
    assert!(!env.socket().exists(), "the socket is removed on exit");
}

#[test]
fn peers_outside_the_allowlist_are_refused() {
    let env = Env::new(FakePlex::start(4, 0, 0), serde_json::json!({}));
    let daemon = env.daemon();
    wait_for_daemon(&env.socket(), MOVIE0_4K);
    // The socket dir must be reachable for the test; the daemon's check is what refuses.
    for p in [env.dir.path().to_path_buf(), env.dir.path().join("run")] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(env.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    // nobody may not reach the build tree (a clone in a 0700 directory): run a copy.
    let cli = env.dir.path().join("downshiftarr");
    std::fs::copy(util::cli(), &cli).unwrap();
    std::fs::set_permissions(&cli, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(&cli)
        .args([
            "explain", "--json", "--", "-i", MOVIE0_4K, "-map", "0:0", "-codec:0", "libx264", "-f",
            "mp4", "o.mp4",
        ])
        .env("DOWNSHIFTARR_SOCKET", env.socket())
        .env("DOWNSHIFTARR_CONFIG", env.dir.path().join("none.json"))
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    assert_ne!(
        v["source"]["from"], "daemon",
        "nobody (65534) must not get answers: {v}"
    );
    assert!(v["notes"].to_string().contains("daemon"), "{v}");
    stop(daemon);
}

#[test]
fn the_shim_end_to_end_takes_its_facts_from_the_daemon() {
    let env = Env::new(FakePlex::start(10, 0, 0), serde_json::json!({}));
    // Movie 9 (Dolby Vision profile 8) keeps only its 4K version: nothing to switch to.
    env.plex.remove_version(1010, 1080);
    let daemon = env.daemon();
    wait_for_daemon(&env.socket(), MOVIE0_4K);
    let run = |input: &str| {
        let rec = env.dir.path().join("exec-args");
        let _ = std::fs::remove_file(&rec);
        let real = util::recording_transcoder(env.dir.path());
        let args = PlexJob::sw_dash(input).hints(&[]).progress(None).args();
        let out = Command::new(util::shim())
            .args(&args)
            .env("DOWNSHIFTARR_REAL_TRANSCODER", &real)
            .env("DOWNSHIFTARR_SOCKET", env.socket())
            .env("DOWNSHIFTARR_CONFIG", env.dir.path().join("none.json"))
            .env("DOWNSHIFTARR_DECISION_LOG", "")
            .env("REC", &rec)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        util::read(&rec)
    };
    // The files do not exist here: only the daemon can know what they are. Movie 0 has a
    // 1080p SDR version: the shim switches to it.
    let exec = run(MOVIE0_4K);
    assert!(exec.contains("Movie 0 (1980) - 1080p.mkv"), "{exec}");
    assert!(!exec.contains("2160p.mkv"), "{exec}");
    assert!(exec.contains("scale=w=1920:h=1080"), "{exec}");
    assert!(
        !exec.contains("tonemap"),
        "an SDR version needs no tone map: {exec}"
    );
    let exec = run(MOVIE9_4K);
    assert!(exec.contains("scale=w=1920:h=1080"), "{exec}");
    assert!(
        exec.contains("tonemap=hable"),
        "a Dolby Vision profile 8 source without a 1080p version is tone-mapped: {exec}"
    );
    let exec = run(MOVIE1_1080);
    assert!(
        exec.contains("scale=w=3840:h=2160"),
        "1080p SDR passes untouched: {exec}"
    );
    let out = Command::new(util::cli())
        .args([
            "explain", "--json", "--", "-i", MOVIE3_4K, "-map", "0:0", "-codec:0", "libx264", "-f",
            "mp4", "o.mp4",
        ])
        .env("DOWNSHIFTARR_SOCKET", env.socket())
        .env("DOWNSHIFTARR_CONFIG", env.dir.path().join("none.json"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["source"]["from"].as_str(), v["decision"].as_str()),
        (Some("daemon"), Some("switch")),
        "{v}"
    );
    assert_eq!(
        v["switch"]["file"], "/data/Movies/Movie 3 (1983)/Movie 3 (1983) - 1080p.mkv",
        "{v}"
    );
    assert_eq!(v["switch"]["streams"][0]["kind"], "video", "{v}");
    // The decisions were reported to the daemon and stored in the audit table.
    let t = Instant::now();
    while env.count("SELECT COUNT(*) FROM decisions") < 3 {
        assert!(t.elapsed() < Duration::from_secs(5), "decisions not stored");
        std::thread::sleep(Duration::from_millis(50));
    }
    let reason: String = env
        .db()
        .query_row(
            "SELECT reason FROM decisions WHERE decision = 'rewrite' LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(reason, "protected source rewritten to 1080p sdr");
    stop(daemon);
}

pub fn http_get(addr: &str, path: &str) -> String {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn status_health_and_metrics() {
    let env = Env::new(FakePlex::start(9, 1, 4), serde_json::json!({}));
    let daemon = env.daemon();
    wait_for_daemon(&env.socket(), MOVIE3_4K);
    let t = Instant::now();
    let status = loop {
        let out = env.cli(&["status"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && text.contains("last sync: 20") {
            break text;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "status never showed a sync:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.contains("healthy")
            && status.contains("index: 9 movies, 1 shows, 4 episodes, 16 files"),
        "{status}"
    );
    assert!(
        status.contains("job sync: ok") && status.contains("job socket: ok"),
        "{status}"
    );
    let cfg: serde_json::Value = serde_json::from_str(&util::read(&env.cfg)).unwrap();
    let addr = cfg["daemon"]["http_listen"].as_str().unwrap().to_string();
    let health = http_get(&addr, "/health");
    assert!(
        health.starts_with("HTTP/1.1 200") || health.starts_with("HTTP/1.0 200"),
        "{health}"
    );
    assert!(health.contains("\"healthy\":true"), "{health}");
    let metrics = http_get(&addr, "/metrics");
    assert!(
        metrics.contains("downshiftarr_index_items{type=\"movie\"} 9"),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE downshiftarr_lookups_total counter"),
        "{metrics}"
    );
    assert!(
        metrics.contains("downshiftarr_sync_passes_total 1"),
        "{metrics}"
    );
    assert!(http_get(&addr, "/nope").contains(" 404 "));
    stop(daemon);
}

#[test]
fn notifications_trigger_syncs_and_deletions_and_reconnect() {
    let env = Env::new(FakePlex::start(9, 0, 0), serde_json::json!({}));
    let daemon = env.daemon();
    wait_for_daemon(&env.socket(), MOVIE3_4K);
    let t = Instant::now();
    while env.plex.websocket_connections() == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the daemon never opened the notification websocket"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let lookup = |p: &str| -> Option<downshiftarr_shim::protocol::MediaVersion> {
        let mut c = Client::connect(&env.socket(), Instant::now() + Duration::from_secs(2)).ok()?;
        match c.call(&Request::LookupSource { path: p.into() }).ok()? {
            Response::Source {
                found: true,
                versions,
                ..
            } => versions.into_iter().find(|v| v.file == p),
            _ => None,
        }
    };
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        let t = Instant::now();
        while !f() {
            assert!(t.elapsed() < Duration::from_secs(15), "{what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let scan_finished = serde_json::json!({"NotificationContainer": {"type": "activity", "size": 1, "ActivityNotification": [
        {"event": "ended", "uuid": "u1", "Activity": {"type": "library.update.section", "title": "Scanning Movies"}}]}});
    // A refresh makes Movie 1 HDR; the scan-finished notification makes the daemon sync
    // (sync_interval_s is 0: nothing else would).
    let movies = env.plex.keys("movie");
    env.plex.edit(movies[1], true);
    env.plex.notify(scan_finished.clone());
    wait("Movie 1 never became HDR in the index", &|| {
        lookup(MOVIE1_1080)
            .is_some_and(|v| v.dynamic_range == Some(downshiftarr_shim::facts::DynamicRange::Hdr10))
    });
    // A timeline deletion (state 9) removes the item at once.
    env.plex.delete(movies[0]);
    env.plex.notify(serde_json::json!({"NotificationContainer": {"type": "timeline", "size": 1, "TimelineEntry": [
        {"itemID": movies[0].to_string(), "sectionID": "1", "type": 1, "state": 9, "metadataState": "deleted"}]}}));
    wait("Movie 0 was not removed", &|| lookup(MOVIE0_4K).is_none());
    // The websocket drops: the daemon reconnects and keeps reacting.
    let before = env.plex.websocket_connections();
    env.plex.drop_websockets();
    wait("no reconnection", &|| {
        env.plex.websocket_connections() > before
    });
    env.plex.edit(movies[1], false);
    std::thread::sleep(Duration::from_millis(300));
    env.plex.notify(scan_finished);
    wait("Movie 1 did not go back to SDR", &|| {
        lookup(MOVIE1_1080)
            .is_some_and(|v| v.dynamic_range == Some(downshiftarr_shim::facts::DynamicRange::Sdr))
    });
    stop(daemon);
}

#[test]
fn sighup_reloads_the_configuration() {
    let env = Env::new(FakePlex::start(6, 0, 0), serde_json::json!({}));
    let daemon = env.daemon();
    wait_for_daemon(&env.socket(), MOVIE3_4K);
    // sync_interval_s is 0: nothing syncs until the configuration says otherwise.
    env.plex.edit(env.plex.keys("movie")[1], true);
    let mut cfg: serde_json::Value = serde_json::from_str(&util::read(&env.cfg)).unwrap();
    cfg["index"]["sync_interval_s"] = serde_json::json!(1);
    std::fs::write(&env.cfg, cfg.to_string()).unwrap();
    let _ = Command::new("kill")
        .arg("-HUP")
        .arg(daemon.id().to_string())
        .status();
    let t = Instant::now();
    loop {
        let mut c =
            Client::connect(&env.socket(), Instant::now() + Duration::from_secs(2)).unwrap();
        if let Ok(Response::Source { facts: Some(f), .. }) = c.call(&Request::LookupSource {
            path: MOVIE1_1080.into(),
        }) {
            if f.dynamic_range == Some(downshiftarr_shim::facts::DynamicRange::Hdr10) {
                break;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the reloaded sync interval never applied"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stop(daemon);
}
