//! The downloads job end to end (issue 13): the real daemon binary, Jellyfin webhooks posted to
//! its HTTP listener (the plugin's "Send All Properties" key set,
//! payloads/jellyfin-webhook-playbackstop.FIELDS.md, sent `text/plain` as the plugin does by
//! default), a Jellyfin-only owner's daemon without any Plex, and the HTTP doors (token,
//! shared secret, the original's paths).
//!
//! No test asserts a speed: every wait is a generous deadline; the ≤ 50 ms dispatch is the
//! benchmark's to measure (`benches/downloads_dispatch.rs`).

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::daemon::stop;
use crate::fake_jellystat::{self, FakeJellystat};
use crate::fake_plex::FakePlex;
use crate::fake_radarr::{self, FakeRadarr};
use crate::fake_service::Answer;
use crate::util;

/// How long any expected change may take on a loaded 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub const TOKEN: &str = "wh-downloads-0123456789abcdef0123";
pub const SECRET_HEADER: &str = "X-Downloads-Secret";
pub const SECRET: &str = "shared-secret-9f8e7d6c5b4a";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A daemon of a Jellyfin-only owner: no Plex token, no Plex install, the defaults for
/// everything Plex (the healer on, the socket's `plex` group), a `downloads` section.
pub struct Solo {
    pub dir: tempfile::TempDir,
    pub cfg: PathBuf,
    pub http: String,
    pids: std::cell::RefCell<Vec<u32>>,
}

impl Drop for Solo {
    fn drop(&mut self) {
        for pid in self.pids.borrow().iter() {
            let alive = std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.windows(6).any(|w| w == b"daemon"));
            if alive {
                // SAFETY: kill(2) on a child we started and have not reaped.
                unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
            }
        }
        util::show_log_if_failing(&self.log_path());
    }
}

impl Solo {
    pub fn new(downloads: Value) -> Solo {
        let dir = util::tempdir();
        let cfg = dir.path().join("config.json");
        let http = format!("127.0.0.1:{}", free_port());
        let mut section =
            json!({"radarr_url": "http://127.0.0.1:9", "radarr_api_key": "radarr-key-0123"});
        for (k, v) in downloads.as_object().unwrap() {
            section[k] = v.clone();
        }
        std::fs::write(
            &cfg,
            json!({
                "shim": {"socket": dir.path().join("run/shim.sock"), "decision_log": dir.path().join("decisions.log")},
                "daemon": {"state_dir": dir.path().join("state"), "runtime_dir": dir.path().join("run"),
                           "http_listen": http, "webhook_token": TOKEN},
                "downloads": section,
            })
            .to_string(),
        )
        .unwrap();
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
        Solo {
            dir,
            cfg,
            http,
            pids: Default::default(),
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("background.log")
    }

    /// `downshiftarr status --json`.
    pub fn status(&self) -> Value {
        let out = Command::new(util::cli())
            .args(["status", "--json", "--config"])
            .arg(&self.cfg)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn daemon(&self) -> Child {
        let c = Command::new(util::cli())
            .args(["daemon", "--config"])
            .arg(&self.cfg)
            .env_remove("PLEX_TOKEN")
            .env_remove("PLEX_URL")
            .env_remove("RADARR_URL")
            .env_remove("RADARR_API_KEY")
            .stdout(util::log_stdio(&self.log_path()))
            .stderr(util::log_stdio(&self.log_path()))
            .spawn()
            .unwrap();
        self.pids.borrow_mut().push(c.id());
        let t = Instant::now();
        while request(&self.http, "GET", "/health", &[], b"").0 == 0 {
            assert!(t.elapsed() < DEADLINE, "the daemon never answered /health");
            std::thread::sleep(Duration::from_millis(50));
        }
        c
    }
}

/// One HTTP request to the daemon: (status, body). 0 when nothing answered.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    if s.write_all(head.as_bytes()).is_err() || s.write_all(body).is_err() {
        return (0, String::new());
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (code, body)
}

/// A Jellyfin `PlaybackStop` with "Send All Properties" (the plugin's key set). `old_names`:
/// the older plugin's `Username` instead of `NotificationUsername`.
#[allow(clippy::too_many_arguments)]
pub fn playback_stop(
    user: &str,
    item_id: &str,
    name: &str,
    year: u32,
    tmdb: u64,
    imdb: &str,
    percent: f64,
    old_names: bool,
) -> Value {
    let run_time: u64 = 81_000_000_000; // 2 h 15 min
    let position = (run_time as f64 * percent / 100.0) as u64;
    let mut v = json!({
        "ServerId": "d5a3b2c1e4f6478a9b0c1d2e3f4a5b6c", "ServerName": "jellyfin", "ServerVersion": "10.9.11",
        "ServerUrl": "http://jellyfin:8096", "NotificationType": "PlaybackStop",
        "Timestamp": "2026-12-04T10:00:00.0000000+01:00", "UtcTimestamp": "2026-12-04T09:00:00.0000000Z",
        "Name": name, "Overview": "", "Tagline": "", "ItemId": item_id, "ItemType": "Movie",
        "RunTimeTicks": run_time, "RunTime": "02:15:00", "Year": year, "PremiereDate": format!("{year}-10-22"),
        "Genres": "Science Fiction, Adventure", "Path": format!("/media/movies/{name} ({year})/{name}.mkv"),
        "AspectRatio": "2.39:1",
        "Provider_imdb": imdb, "Provider_tmdb": tmdb.to_string(),
        "Video_0_Title": "4K HEVC", "Video_0_Codec": "hevc", "Video_0_Height": 2160, "Video_0_Width": 3840,
        "PlaybackPositionTicks": position, "PlaybackPosition": "02:10:00", "MediaSourceId": item_id,
        "IsPaused": false, "IsAutomated": false, "DeviceId": "TW96aWxsYS81LjA", "DeviceName": "Firefox",
        "ClientName": "Jellyfin Web", "PlayMethod": "DirectPlay", "PlayedToCompletion": percent >= 99.0,
        "UserId": "4f5e6d7c8b9a0f1e2d3c4b5a69788796",
    });
    v[if old_names {
        "Username"
    } else {
        "NotificationUsername"
    }] = json!(user);
    v
}

#[test]
fn a_jellyfin_only_owner_runs_the_downloads_job_with_one_line_about_plex() {
    let solo = Solo::new(json!({}));
    let d = solo.daemon();
    let t = Instant::now();
    let status = loop {
        let s = solo.status();
        if s["downloads"]["running"] == true {
            break s;
        }
        assert!(
            t.elapsed() < DEADLINE,
            "no downloads section in status: {s:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status["healthy"], true, "{status:#}");
    let body = playback_stop(
        "alice",
        "a1b2",
        "Dune",
        2021,
        438631,
        "tt1160419",
        97.0,
        false,
    );
    let (code, answer) = request(
        &solo.http,
        "POST",
        &format!("/webhook/jellyfin/{TOKEN}"),
        &[("Content-Type", "text/plain; charset=utf-8")],
        body.to_string().as_bytes(),
    );
    assert_eq!(code, 200, "{answer}");
    // Settle: every job started and said what it had to say.
    std::thread::sleep(Duration::from_secs(2));
    stop(d);
    let log = solo.log();
    let about_plex: Vec<&str> = log.lines().filter(|l| l.contains("Plex")).collect();
    assert_eq!(about_plex.len(), 1, "one line about Plex:\n{log}");
    assert!(
        about_plex[0].contains("the Plex jobs are off"),
        "{}",
        about_plex[0]
    );
    let complaints: Vec<&str> = log
        .lines()
        .filter(|l| {
            (l.contains(" WARN ") || l.contains(" ERROR "))
                // The play itself: Radarr is not reachable in this test.
                && !l.contains("downloads:")
        })
        .collect();
    assert!(
        complaints.is_empty(),
        "complaints:\n{}",
        complaints.join("\n")
    );
}

#[test]
fn the_webhook_doors_token_secret_and_the_originals_paths() {
    let body = playback_stop(
        "alice",
        "a1b2",
        "Dune",
        2021,
        438631,
        "tt1160419",
        97.0,
        true,
    );
    let body = body.to_string();
    let hook = format!("/webhook/jellyfin/{TOKEN}");
    let plain = [("Content-Type", "text/plain")];
    let proxied = [("X-Forwarded-For", "203.0.113.9")];

    // No shared secret configured.
    let solo = Solo::new(json!({}));
    let d = solo.daemon();
    let post = |path: &str, headers: &[(&str, &str)], b: &[u8]| {
        request(&solo.http, "POST", path, headers, b)
    };
    assert_eq!(
        post("/webhook/jellyfin/wrong-token", &plain, body.as_bytes()).0,
        404
    );
    assert_eq!(post(&hook, &plain, body.as_bytes()).0, 200);
    assert_eq!(
        post(&hook, &[], body.as_bytes()).0,
        200,
        "no Content-Type at all"
    );
    let (code, answer) = post(&hook, &plain, b"NotificationType=PlaybackStop");
    assert_eq!(code, 400);
    assert!(answer.contains("not JSON"), "{answer}");
    assert_eq!(post(&hook, &plain, b"[1, 2]").0, 400);
    assert_eq!(request(&solo.http, "GET", &hook, &[], b"").0, 405);
    // The original's path: from this host, as before; from elsewhere, refused.
    assert_eq!(post("/jellyfin/playback", &plain, body.as_bytes()).0, 200);
    let (code, answer) = post("/jellyfin/playback", &proxied, body.as_bytes());
    assert_eq!(code, 403, "{answer}");
    assert!(answer.contains("/webhook/jellyfin/"), "{answer}");
    // `/health` answers GET and POST (the original's), nothing else; `/metrics` only GET.
    let (code, health) = post("/health", &[], b"");
    assert_eq!(code, 200, "{health}");
    assert!(serde_json::from_str::<Value>(&health).unwrap()["healthy"].is_boolean());
    assert_eq!(request(&solo.http, "GET", "/health", &[], b"").0, 200);
    assert_eq!(request(&solo.http, "PUT", "/health", &[], b"").0, 405);
    assert_eq!(post("/metrics", &[], b"").0, 405);
    let m = request(&solo.http, "GET", "/metrics", &[], b"").1;
    for want in [
        "downshiftarr_downloads_webhooks_total{path=\"token\",result=\"queued\"} 2",
        "downshiftarr_downloads_webhooks_total{path=\"token\",result=\"not_found\"} 1",
        "downshiftarr_downloads_webhooks_total{path=\"token\",result=\"bad_request\"} 2",
        "downshiftarr_downloads_webhooks_total{path=\"original\",result=\"forbidden\"} 1",
    ] {
        assert!(m.contains(want), "{want} not in /metrics:\n{m}");
    }
    stop(d);

    // A shared secret configured: required on both doors, from anywhere.
    let solo = Solo::new(json!({"webhook_secret_header": SECRET_HEADER, "webhook_secret": SECRET}));
    let d = solo.daemon();
    let post = |path: &str, headers: &[(&str, &str)], b: &[u8]| {
        request(&solo.http, "POST", path, headers, b)
    };
    let (code, answer) = post(&hook, &plain, body.as_bytes());
    assert_eq!(code, 401, "{answer}");
    assert!(
        answer.contains(SECRET_HEADER) && !answer.contains(SECRET),
        "{answer}"
    );
    let wrong = [(SECRET_HEADER, "shared-secret-9f8e7d6c5b4b")];
    assert_eq!(post(&hook, &wrong, body.as_bytes()).0, 401);
    let right = [(SECRET_HEADER, SECRET)];
    assert_eq!(post(&hook, &right, body.as_bytes()).0, 200);
    assert_eq!(post("/jellyfin/playback", &plain, body.as_bytes()).0, 401);
    let right_proxied = [(SECRET_HEADER, SECRET), ("X-Forwarded-For", "203.0.113.9")];
    assert_eq!(
        post("/jellyfin/playback", &right_proxied, body.as_bytes()).0,
        200,
        "the secret opens the original's path from elsewhere"
    );
    stop(d);
    assert!(!solo.log().contains(SECRET), "the secret was logged");
}

// ---- End to end with the fake Radarr -----------------------------------------------------

/// How long to keep watching for a call that must NOT come.
const QUIET: Duration = Duration::from_secs(3);

pub fn wait(what: &str, f: impl Fn() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < DEADLINE, "{what} (waited {DEADLINE:?})");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `MoviesSearch` commands Radarr took: the movie ids of each.
pub fn searches(radarr: &FakeRadarr) -> Vec<Vec<i64>> {
    radarr
        .commands()
        .into_iter()
        .filter(|c| c.name == "MoviesSearch")
        .map(|c| {
            c.body["movieIds"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default()
        })
        .collect()
}

/// A Radarr movie streamed from the cloud (no local file).
fn streamed(id: i64, tmdb: u64, title: &str, year: u32, imdb: f64) -> Value {
    let mut m = fake_radarr::movie(id, tmdb, title, year, imdb, 900_000);
    m["hasFile"] = json!(false);
    m["genres"] = json!(["Drama", "Thriller"]);
    m
}

/// A daemon of a Jellyfin-only owner deciding through `radarr`, alice tracked.
fn solo_with(radarr: &FakeRadarr, extra: Value) -> Solo {
    let mut d = json!({"radarr_url": radarr.url(), "radarr_api_key": fake_radarr::API_KEY,
        "tracked_users": ["alice"], "retry_initial_s": 1, "request_timeout_ms": 1500,
        "connect_timeout_ms": 500});
    for (k, v) in extra.as_object().unwrap() {
        d[k] = v.clone();
    }
    Solo::new(d)
}

impl Solo {
    /// Writes an earlier play to the daemon's watch history (a play seen `days_ago`, as an
    /// import would): plays within 6 hours of each other are one viewing, so a rewatch in the
    /// window is an earlier day's play.
    pub fn seed_play(
        &self,
        user: &str,
        item: &str,
        title: &str,
        year: u32,
        tmdb: u64,
        days_ago: u64,
    ) {
        use downshiftarr::jobs::downloads::{Ids, ItemKind, Play, PlaySource};
        let store =
            downshiftarr::store::Store::open(&self.dir.path().join("state/index.sqlite")).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let play = Play {
            source: PlaySource::Jellyfin,
            at_ms: now - days_ago * 86_400_000,
            user: user.into(),
            address: None,
            kind: ItemKind::Movie,
            title: title.into(),
            year: Some(year),
            ids: Ids {
                imdb: None,
                tmdb: Some(tmdb),
                tvdb: None,
            },
            item_id: item.into(),
            percent: 98.0,
            genres: vec![],
            client: None,
        };
        assert!(store.record_play(&play).unwrap());
    }

    /// `GET /api/downloads/decisions?since=1d&limit=100`, newest first.
    pub fn decisions(&self) -> Vec<Value> {
        let (code, body) = request(
            &self.http,
            "GET",
            "/api/downloads/decisions?since=1d&limit=100",
            &[],
            b"",
        );
        assert_eq!(code, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["decisions"]
            .as_array()
            .cloned()
            .unwrap()
    }

    /// Posts a Jellyfin webhook as the plugin does (`text/plain`); waits for its decision.
    pub fn play(&self, body: &Value) {
        let before = self.decisions().len();
        let (code, answer) = request(
            &self.http,
            "POST",
            &format!("/webhook/jellyfin/{TOKEN}"),
            &[("Content-Type", "text/plain")],
            body.to_string().as_bytes(),
        );
        assert_eq!(code, 200, "{answer}");
        wait("the play was never decided", || {
            self.decisions().len() > before
        });
    }
}

#[test]
fn two_plays_of_a_7_5_film_by_the_tracked_user_make_one_search_and_a_keep_tag() {
    let radarr = FakeRadarr::start();
    radarr.add(streamed(7, 550, "Fight Club", 1999, 7.5));
    radarr.add(streamed(8, 680, "Pulp Fiction", 1994, 8.9));
    let solo = solo_with(&radarr, json!({}));
    let d = solo.daemon();
    let pb = |pct: f64, old: bool| {
        playback_stop(
            "alice",
            "jf-550",
            "Fight Club",
            1999,
            550,
            "tt0137523",
            pct,
            old,
        )
    };
    // A play 120 days ago: outside the 90-day window.
    solo.seed_play("alice", "jf-550", "Fight Club", 1999, 550, 120);
    // A look at 40 %: recorded as a decision, not as a play.
    solo.play(&pb(40.0, false));
    solo.play(&pb(97.0, false));
    let first = &solo.decisions()[0];
    assert_eq!(first["verdict"]["tier"], "after_rewatch", "{first:#}");
    assert_eq!(first["verdict"]["download"], false, "{first:#}");
    assert_eq!(first["facts"]["watch_count"]["value"], 1, "{first:#}");
    assert_eq!(
        first["facts"]["imdb_rating"]["source"], "radarr",
        "{first:#}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(searches(&radarr).is_empty(), "no search after one play");
    // The same evening again: the same viewing, still one.
    solo.play(&pb(99.0, false));
    assert_eq!(solo.decisions()[0]["facts"]["watch_count"]["value"], 1);
    std::thread::sleep(Duration::from_millis(500));
    assert!(searches(&radarr).is_empty(), "no search after one viewing");
    // Alice's play of 20 days ago reaches the history (an import): with the next play, two
    // viewings in the window — sent by the older plugin (`Username`), text/plain.
    solo.seed_play("alice", "jf-550", "Fight Club", 1999, 550, 20);
    solo.play(&pb(100.0, true));
    wait("no MoviesSearch after the second play", || {
        !searches(&radarr).is_empty()
    });
    std::thread::sleep(QUIET);
    assert_eq!(
        searches(&radarr),
        vec![vec![7]],
        "exactly one search, for Radarr movie 7"
    );
    let keep = radarr
        .tags()
        .into_iter()
        .find(|(_, l)| l == "keep")
        .expect("the keep tag was created")
        .0;
    assert_eq!(
        radarr.movie(7).unwrap()["tags"],
        json!([keep]),
        "the keep tag on the movie"
    );
    assert!(radarr.movie(8).unwrap()["tags"]
        .as_array()
        .unwrap()
        .is_empty());
    let second = &solo.decisions()[0];
    assert_eq!(second["verdict"]["download"], true, "{second:#}");
    assert_eq!(second["facts"]["watch_count"]["value"], 2, "{second:#}");
    assert_eq!(second["radarr_id"], 7, "{second:#}");
    wait("the search never ended", || {
        matches!(solo.decisions()[0]["status"].as_str(), Some("searched"))
    });
    // A third play in the window: no second search.
    solo.play(&pb(98.0, false));
    std::thread::sleep(QUIET);
    assert_eq!(
        searches(&radarr).len(),
        1,
        "one search per movie per window"
    );
    let third = &solo.decisions()[0];
    assert!(
        third["detail"]
            .as_str()
            .unwrap_or("")
            .contains("already searched"),
        "{third:#}"
    );
    stop(d);
    let log = solo.log();
    assert!(log.contains("DOWNLOAD TRIGGERED: \"Fight Club\" (1999) for alice — tier after_rewatch. Reason: IMDb 7.5"), "{log}");
    assert!(
        log.contains("No download needed: \"Fight Club\" (1999) for alice"),
        "{log}"
    );
}

#[test]
fn a_guests_plays_download_nothing_and_an_8_7_film_downloads_after_the_first_play() {
    let radarr = FakeRadarr::start();
    radarr.add(streamed(3, 27205, "Inception", 2010, 8.7));
    // `downloads.notify`: a Discord webhook told of the download, once, and of nothing else.
    let hook = crate::fake_notify::FakeNotify::start();
    let solo = solo_with(
        &radarr,
        json!({"notify": {"url": hook.url("/api/webhooks/1/tok")}}),
    );
    let d = solo.daemon();
    let pb = |user: &str| {
        playback_stop(
            user,
            "jf-27205",
            "Inception",
            2010,
            27205,
            "tt1375666",
            99.5,
            false,
        )
    };
    solo.play(&pb("bob"));
    solo.play(&pb("bob"));
    solo.play(&pb("Bob"));
    std::thread::sleep(QUIET);
    assert!(searches(&radarr).is_empty(), "a guest's plays: nothing");
    assert!(radarr.tags().is_empty(), "nor a tag");
    let guest = &solo.decisions()[0];
    assert_eq!(guest["verdict"]["tier"], "never", "{guest:#}");
    assert!(
        guest["verdict"]["reasons"][0]
            .as_str()
            .unwrap()
            .contains("guest"),
        "{guest:#}"
    );
    assert!(
        radarr.requests("GET", "/api/v3/movie").is_empty(),
        "a guest's play asks Radarr nothing"
    );
    solo.play(&pb("alice"));
    wait("no MoviesSearch after the first play", || {
        !searches(&radarr).is_empty()
    });
    std::thread::sleep(QUIET);
    assert_eq!(searches(&radarr), vec![vec![3]]);
    let v = &solo.decisions()[0];
    assert_eq!(v["verdict"]["tier"], "instant", "{v:#}");
    assert!(
        v["verdict"]["reasons"][0]
            .as_str()
            .unwrap()
            .contains("IMDb 8.7"),
        "{v:#}"
    );
    wait("no download notification", || {
        !hook
            .server
            .requests("POST", "/api/webhooks/1/tok")
            .is_empty()
    });
    std::thread::sleep(QUIET);
    let sent = hook.server.requests("POST", "/api/webhooks/1/tok");
    assert_eq!(sent.len(), 1, "one notification for one download");
    let content = sent[0].json()["content"].as_str().unwrap_or("").to_string();
    assert!(content.contains("Inception"), "{content}");
    stop(d);
}

#[test]
fn radarr_failing_while_deciding_and_acting_loses_nothing_and_is_never_read_as_absent() {
    let radarr = FakeRadarr::start();
    radarr.add(streamed(5, 238, "The Godfather", 1972, 9.2));
    // Deciding: a refused key, then 500s (more than the client's own retries), then a
    // stall past the request timeout; acting: the search command refused once.
    radarr.server.script(
        "/api/v3/movie",
        [
            vec![Answer::empty(401)],
            vec![Answer::status(500); 5],
            vec![Answer::json(200, &json!([])).slow(Duration::from_secs(3))],
        ]
        .concat(),
    );
    radarr
        .server
        .fail_times("/api/v3/command", 1, Answer::status(500));
    let solo = solo_with(&radarr, json!({}));
    let d = solo.daemon();
    solo.play(&playback_stop(
        "alice",
        "jf-238",
        "The Godfather",
        1972,
        238,
        "tt0068646",
        96.0,
        false,
    ));
    let first = &solo.decisions()[0];
    assert_eq!(first["status"], "retrying", "{first:#}");
    assert!(
        first["detail"]
            .as_str()
            .unwrap()
            .contains("refused the API key"),
        "{first:#}"
    );
    // `status` shows what waits, and why.
    let t = Instant::now();
    loop {
        let s = solo.status();
        let w = &s["downloads"]["waiting"];
        if s["downloads"]["queue_depth"].as_u64() >= Some(1)
            && w[0]["what"]
                .as_str()
                .is_some_and(|x| x.contains("The Godfather"))
        {
            break;
        }
        assert!(
            t.elapsed() < DEADLINE,
            "status never showed the waiting decision: {s:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait("the search never went out after the failures", || {
        !searches(&radarr).is_empty()
    });
    std::thread::sleep(QUIET);
    assert_eq!(
        searches(&radarr),
        vec![vec![5]],
        "one search, for the right movie"
    );
    let all = solo.decisions();
    for dcs in &all {
        let text = dcs.to_string();
        assert!(
            !text.contains("is not in Radarr"),
            "a failure read as absent: {dcs:#}"
        );
    }
    let decided: Vec<&Value> = all
        .iter()
        .filter(|x| x["verdict"]["download"] == true)
        .collect();
    assert_eq!(decided.len(), 1, "{all:#?}");
    assert!(
        decided[0]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("MoviesSearch")
            || decided[0]["status"] == "searched",
        "{:#}",
        decided[0]
    );
    let waited = all.last().unwrap();
    assert_eq!(
        waited["status"], "decided",
        "the waiting decision points at the new one: {waited:#}"
    );
    wait("the queue never emptied", || {
        solo.status()["downloads"]["queue_depth"] == 0
    });
    stop(d);
}

#[test]
fn a_jellystat_outage_uses_our_own_history_and_says_so() {
    let radarr = FakeRadarr::start();
    radarr.add(streamed(9, 807, "Se7en", 1995, 7.9));
    let jellystat = FakeJellystat::start();
    jellystat
        .server
        .fail_times("/api/getItemHistory", 100, Answer::status(503));
    let solo = solo_with(
        &radarr,
        json!({"jellystat_url": jellystat.server.url(), "jellystat_api_key": fake_jellystat::API_KEY}),
    );
    let d = solo.daemon();
    solo.seed_play("alice", "jf-807", "Se7en", 1995, 807, 30);
    let body = playback_stop(
        "alice",
        "jf-807",
        "Se7en",
        1995,
        807,
        "tt0114369",
        95.0,
        false,
    );
    solo.play(&body);
    wait("our own history did not make the rewatch", || {
        !searches(&radarr).is_empty()
    });
    assert!(
        !jellystat
            .server
            .requests("POST", "/api/getItemHistory")
            .is_empty(),
        "Jellystat was asked"
    );
    let v = &solo.decisions()[0];
    assert_eq!(v["facts"]["watch_count"]["value"], 2, "{v:#}");
    assert_eq!(v["facts"]["watch_count"]["source"], "history", "{v:#}");
    let notes = v["facts"]["notes"].to_string();
    assert!(
        notes.contains("Jellystat unreachable") && notes.contains("our own history used"),
        "{v:#}"
    );
    stop(d);
}

#[test]
fn a_plex_websocket_play_to_95_percent_counts() {
    use crate::scrobble_daemon::{playing_frame, session, MOVIE_MS};
    let radarr = FakeRadarr::start();
    // The fake library's "Movie N" (rating key 1001 + N) is TMDB 100 + N.
    radarr.add(streamed(11, 100, "Movie 0", 1980, 8.8));
    radarr.add(streamed(12, 101, "Movie 1", 1981, 8.8));
    radarr.add(streamed(13, 102, "Movie 2", 1982, 8.8));
    let env = crate::daemon::Env::new(FakePlex::start(4, 1, 3), json!({}));
    env.configure("enforce", json!({"guard_interval_s": 1}));
    env.configure(
        "daemon",
        json!({"webhook_token": crate::scrobble_daemon::WEBHOOK_TOKEN}),
    );
    env.configure(
        "downloads",
        json!({"radarr_url": radarr.url(), "radarr_api_key": fake_radarr::API_KEY, "tracked_users": ["alice"]}),
    );
    env.plex.play.set_sessions(vec![
        session("1", "alice", "tv-1", 1001, "movie", MOVIE_MS),
        session("2", "alice", "tv-2", 1002, "movie", MOVIE_MS),
    ]);
    let ws = env.plex.websocket_connections();
    let d = env.daemon();
    wait("the daemon never opened the notification websocket", || {
        env.plex.websocket_connections() > ws
    });
    let polls = env
        .plex
        .play
        .polls
        .load(std::sync::atomic::Ordering::SeqCst);
    wait("the daemon never listed the sessions", || {
        env.plex
            .play
            .polls
            .load(std::sync::atomic::Ordering::SeqCst)
            > polls
    });
    let pct = |p: f64| (MOVIE_MS as f64 * p / 100.0) as i64;
    // Movie 1 stopped at 40 %: not a play.
    env.plex
        .notify(playing_frame("2", "tv-2", 1002, "playing", 0));
    env.plex
        .notify(playing_frame("2", "tv-2", 1002, "stopped", pct(40.0)));
    // Movie 0 watched to 95 %.
    env.plex
        .notify(playing_frame("1", "tv-1", 1001, "playing", 0));
    env.plex
        .notify(playing_frame("1", "tv-1", 1001, "playing", pct(60.0)));
    env.plex
        .notify(playing_frame("1", "tv-1", 1001, "stopped", pct(95.0)));
    wait("the websocket play never reached Radarr", || {
        !searches(&radarr).is_empty()
    });
    std::thread::sleep(QUIET);
    assert_eq!(searches(&radarr), vec![vec![11]], "Movie 0 only");
    let m = crate::daemon::http_get(&crate::scrobble_daemon::http_addr(&env), "/metrics");
    assert!(
        m.contains(
            "downshiftarr_downloads_plays_total{source=\"plex_websocket\",result=\"counted\"} 1"
        ),
        "{m}"
    );
    assert!(
        m.contains("downshiftarr_downloads_plays_total{source=\"plex_websocket\",result=\"not_counted\"} 1"),
        "{m}"
    );
    // Plex's webhooks for the same play (`media.scrobble` at 90 %, `media.stop`): the same
    // viewing, no second play. Then a webhook-only play of Movie 2: its own search.
    let addr = crate::scrobble_daemon::http_addr(&env);
    let hook = |event: &str, rk: u64, pct_of: f64| {
        let payload = crate::scrobble_daemon::webhook(
            event,
            "alice",
            "player-1",
            rk,
            pct(pct_of),
            crate::scrobble_daemon::SERVER_UUID,
        );
        assert_eq!(crate::scrobble_daemon::post_multipart(&addr, &payload), 200);
    };
    hook("media.scrobble", 1001, 91.0);
    hook("media.stop", 1001, 96.0);
    hook("media.scrobble", 1003, 92.0);
    wait("the Plex webhook play never reached Radarr", || {
        searches(&radarr).len() >= 2
    });
    std::thread::sleep(QUIET);
    assert_eq!(
        searches(&radarr),
        vec![vec![11], vec![13]],
        "Movie 2 once, Movie 0 not again"
    );
    let m = crate::daemon::http_get(&addr, "/metrics");
    assert!(
        m.contains(
            "downshiftarr_downloads_plays_total{source=\"plex_webhook\",result=\"repeat\"} 2"
        ),
        "{m}"
    );
    stop(d);
}

#[test]
fn dry_run_changes_nothing_in_radarr_and_a_decision_can_be_evaluated_again() {
    let radarr = FakeRadarr::start();
    radarr.add(streamed(4, 155, "The Dark Knight", 2008, 9.0));
    let solo = solo_with(&radarr, json!({"dry_run": true}));
    let d = solo.daemon();
    solo.play(&playback_stop(
        "alice",
        "jf-155",
        "The Dark Knight",
        2008,
        155,
        "tt0468569",
        98.0,
        false,
    ));
    let v = &solo.decisions()[0];
    wait("the dry run never said what it would do", || {
        solo.decisions()[0]["status"] == "dry_run"
    });
    let v2 = &solo.decisions()[0];
    assert_eq!(v["verdict"]["download"], true, "{v:#}");
    assert!(
        v2["detail"].as_str().unwrap().contains("would tag"),
        "{v2:#}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(searches(&radarr).is_empty(), "dry run: no search");
    assert!(radarr.tags().is_empty(), "dry run: no tag created");
    assert!(
        radarr.requests("PUT", "/api/v3/movie/4").is_empty(),
        "dry run: the movie untouched"
    );
    let id = v2["id"].as_i64().unwrap();
    let (code, body) = request(
        &solo.http,
        "POST",
        &format!("/api/downloads/reevaluate/{id}"),
        &[],
        b"",
    );
    assert_eq!(code, 202, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"queued": id})
    );
    wait("the re-evaluation was never stored", || {
        solo.decisions().len() == 2
    });
    let again = &solo.decisions()[0];
    assert_ne!(again["id"], v2["id"]);
    assert_eq!(again["play"], v2["play"], "the same play, evaluated again");
    assert_eq!(
        request(
            &solo.http,
            "POST",
            "/api/downloads/reevaluate/99999",
            &[],
            b""
        )
        .0,
        404
    );
    assert_eq!(
        request(
            &solo.http,
            "GET",
            &format!("/api/downloads/reevaluate/{id}"),
            &[],
            b""
        )
        .0,
        405
    );
    // The dashboard's actions are commands too: re-evaluate, pause and resume scrobbling.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(crate::util::cli())
            .args(args)
            .arg("--config")
            .arg(&solo.cfg)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = cli(&["downloads", "reevaluate", &id.to_string()]);
    assert!(ok, "{out}{err}");
    assert!(out.contains(&format!("decision {id} queued")), "{out}");
    wait("the CLI's re-evaluation was never stored", || {
        solo.decisions().len() == 3
    });
    let (ok, out, err) = cli(&["downloads", "reevaluate", "99999"]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("/api/downloads/reevaluate/99999") && err.contains("404"),
        "{err}"
    );
    let (ok, out, err) = cli(&["scrobble", "pause"]);
    assert!(ok && out.contains("scrobbling paused"), "{out}{err}");
    let (ok, out, err) = cli(&["scrobble", "resume"]);
    assert!(ok && out.contains("scrobbling resumed"), "{out}{err}");
    let (code, body) = request(&solo.http, "GET", "/api/downloads/status", &[], b"");
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["dry_run"],
        true,
        "{body}"
    );
    assert_eq!(
        request(
            &solo.http,
            "GET",
            "/api/downloads/decisions?since=7w",
            &[],
            b""
        )
        .0,
        400
    );
    stop(d);
}

/// Prowlarr's seeders make a film rare (instant); a film Radarr does not have is added with
/// the keep tag and searched when `add_missing` is on — and only then.
#[test]
fn a_rare_film_missing_from_radarr_is_added_with_the_keep_tag_only_with_add_missing() {
    use crate::fake_prowlarr::{self, FakeProwlarr};
    let radarr = FakeRadarr::start();
    let mut l = fake_radarr::lookup(31011, "Mirror", 2005, 7.4, 300_000);
    l["genres"] = json!(["Drama"]);
    l["originalLanguage"] = json!({"id": 1, "name": "English"});
    radarr.set_lookup(31011, l);
    let prowlarr = FakeProwlarr::start();
    prowlarr.set_releases(
        "Mirror 2005",
        vec![
            fake_prowlarr::torrent("Tracker A", 1, "Mirror.2005.1080p", 2),
            fake_prowlarr::torrent("Tracker B", 2, "Mirror.2005.720p", 3),
            fake_prowlarr::usenet("Usenet", 3, "Mirror.2005.1080p"),
        ],
    );
    let pb = playback_stop(
        "alice",
        "jf-31011",
        "Mirror",
        2005,
        31011,
        "tt0031011",
        98.0,
        false,
    );
    let services = json!({"prowlarr_url": prowlarr.server.url(),
        "prowlarr_api_key": fake_prowlarr::API_KEY, "min_seeders_rare": 5});

    // add_missing off: decided instant, nothing added, the decision says why.
    let solo = solo_with(&radarr, services.clone());
    let d = solo.daemon();
    solo.play(&pb);
    std::thread::sleep(QUIET);
    assert!(
        radarr.movies().is_empty(),
        "add_missing is off: nothing added"
    );
    let first = &solo.decisions()[0];
    assert_eq!(first["verdict"]["tier"], "instant", "{first:#}");
    assert_eq!(first["facts"]["seeders"]["value"], 3, "{first:#}");
    assert_eq!(first["facts"]["seeders"]["source"], "prowlarr", "{first:#}");
    assert!(first.to_string().contains("add_missing"), "{first:#}");
    stop(d);

    // add_missing on: added once, monitored, with the keep tag, searched on add.
    let mut on = services;
    on["add_missing"] = json!(true);
    on["quality_profile_id"] = json!(4);
    on["root_folder"] = json!("/movies");
    let solo = solo_with(&radarr, on);
    let d = solo.daemon();
    solo.play(&playback_stop(
        "alice",
        "jf-31011",
        "Mirror",
        2005,
        31011,
        "tt0031011",
        99.5,
        false,
    ));
    wait("the missing film was not added", || {
        !radarr.movies().is_empty()
    });
    std::thread::sleep(QUIET);
    let added = radarr.requests("POST", "/api/v3/movie");
    assert_eq!(added.len(), 1, "added once");
    let body = added[0].json();
    assert_eq!(body["tmdbId"], 31011);
    assert_eq!(body["qualityProfileId"], 4);
    assert_eq!(body["rootFolderPath"], "/movies");
    assert_eq!(body["addOptions"]["searchForMovie"], true);
    let keep = radarr
        .tags()
        .into_iter()
        .find(|(_, l)| l == "keep")
        .map(|(id, _)| id)
        .expect("the keep tag was created");
    assert!(
        body["tags"].as_array().unwrap().contains(&json!(keep)),
        "{body:#}"
    );
    stop(d);
}
