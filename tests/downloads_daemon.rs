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
