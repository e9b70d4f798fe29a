//! The daemon's HTTP surface (issue 12): the Plex webhook, the ops API, logs, the
//! configuration over HTTP. A real daemon (the `Env` harness), raw HTTP/1.0 requests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::daemon::{stop, wait_for_daemon, Env, MOVIE3_4K};
use crate::fake_plex::FakePlex;
use crate::util;

const HOOK: &str = "hook-secret-4b1d9f";
const API_KEY: &str = "api-key-77e0c2aa";

/// One raw HTTP answer (the dashboard's tests use these helpers too).
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.head, self.text()))
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: test\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // A refused body may be answered before it is all sent: ignore a reset here.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {}", String::from_utf8_lossy(&out)));
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Answer {
        status,
        head,
        body: out[split + 4..].to_vec(),
    }
}

pub fn get(addr: &str, path: &str) -> Answer {
    request(addr, "GET", path, &[], b"")
}

pub fn addr_of(env: &Env) -> String {
    let cfg: Value = serde_json::from_str(&util::read(&env.cfg)).unwrap();
    cfg["daemon"]["http_listen"].as_str().unwrap().to_string()
}

fn start(env: &Env) -> std::process::Child {
    let d = env.daemon();
    wait_for_daemon(&env.socket(), MOVIE3_4K);
    d
}

fn metric(addr: &str, series: &str) -> f64 {
    let m = get(addr, "/metrics").text();
    m.lines()
        .find_map(|l| l.strip_prefix(series).map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0.0)
}

fn multipart(payload: &str) -> (String, Vec<u8>) {
    let b = "------------------------PlexHook0123";
    let mut body = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"payload\"\r\nContent-Type: application/json\r\n\r\n{payload}\r\n--{b}\r\nContent-Disposition: form-data; name=\"thumb\"; filename=\"image.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\r\n--not-it\r\n\xff\xd9");
    body.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={b}"), body)
}

fn play_payload() -> String {
    json!({"event": "media.play", "user": true, "owner": true,
           "Account": {"id": 1, "title": "alice"},
           "Player": {"local": true, "title": "TV", "uuid": "p1"},
           "Metadata": {"ratingKey": "1003", "type": "movie", "title": "Movie 3",
                        "Guid": [{"id": "imdb://tt0000003"}]}})
    .to_string()
}

#[test]
fn plex_webhooks_are_queued_and_bad_ones_refused_without_harm() {
    let env = Env::new(FakePlex::start(9, 1, 4), json!({}));
    env.configure("daemon", json!({"webhook_token": HOOK}));
    let daemon = start(&env);
    let addr = addr_of(&env);
    let hook = format!("/webhook/plex/{HOOK}");
    let queued = "downshiftarr_webhooks_total{result=\"queued\"}";

    let (ct, body) = multipart(&play_payload());
    let r = request(&addr, "POST", &hook, &[("Content-Type", &ct)], &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(metric(&addr, queued), 1.0);

    let r = request(
        &addr,
        "POST",
        &hook,
        &[("Content-Type", "application/json")],
        play_payload().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let form = format!(
        "payload={}",
        play_payload()
            .replace('%', "%25")
            .replace('&', "%26")
            .replace('+', "%2B")
    );
    let r = request(
        &addr,
        "POST",
        &hook,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // The original's path, from Plex on this host.
    let r = request(
        &addr,
        "POST",
        "/webhook/trakt",
        &[("Content-Type", "application/json")],
        play_payload().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(metric(&addr, queued), 4.0);

    // A wrong token is a plain 404, as an unknown path.
    let r = request(
        &addr,
        "POST",
        "/webhook/plex/hook-secret-4b1d9e",
        &[("Content-Type", "application/json")],
        b"{}",
    );
    assert_eq!(r.status, 404);
    assert!(!r.head.contains("WWW-Authenticate"), "{}", r.head);
    assert_eq!(get(&addr, &hook).status, 405);

    // Too big: 413, announced or not.
    let big = vec![b'x'; (1 << 20) + 1];
    let r = request(&addr, "POST", &hook, &[("Content-Type", &ct)], &big);
    assert_eq!(r.status, 413, "{}", r.text());

    // Malformed: 400 naming the problem.
    let unterminated = format!(
        "{}\r\nContent-Disposition: form-data; name=\"payload\"\r\n\r\n{{\"event\":",
        ct.split("boundary=")
            .nth(1)
            .map(|b| format!("--{b}"))
            .unwrap()
    )
    .into_bytes();
    for (ct, body, want) in [
        (ct.as_str(), &b"--nope\r\n"[..], "boundary"),
        (ct.as_str(), unterminated.as_slice(), "unterminated"),
        ("multipart/form-data", &b"x"[..], "boundary"),
        ("application/json", &b"{\"event\": "[..], "invalid JSON"),
        ("application/json", &b"[]"[..], "JSON object"),
        ("text/plain", &b"hi"[..], "Content-Type"),
    ] {
        let r = request(&addr, "POST", &hook, &[("Content-Type", ct)], body);
        assert_eq!(r.status, 400, "{ct}: {}", r.text());
        assert!(r.text().contains(want), "{ct}: {}", r.text());
    }
    assert_eq!(
        metric(&addr, "downshiftarr_webhooks_total{result=\"bad_request\"}"),
        6.0
    );
    assert_eq!(metric(&addr, queued), 4.0);
    let h = get(&addr, "/health");
    assert_eq!(h.status, 200, "{}", h.text());
    stop(daemon);
}

#[test]
fn without_a_webhook_token_the_endpoint_is_off() {
    let env = Env::new(FakePlex::start(9, 1, 4), json!({}));
    let daemon = start(&env);
    let addr = addr_of(&env);
    let r = request(
        &addr,
        "POST",
        "/webhook/plex/",
        &[("Content-Type", "application/json")],
        b"{}",
    );
    assert_eq!(r.status, 404);
    let r = request(
        &addr,
        "POST",
        "/webhook/plex/anything",
        &[("Content-Type", "application/json")],
        b"{}",
    );
    assert_eq!(r.status, 404);
    stop(daemon);
}

/// This machine's first non-loopback IPv4 address, if any.
fn lan_ip() -> Option<String> {
    let out = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|a| {
            a.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| !ip.is_loopback())
        })
        .map(str::to_string)
}

#[test]
fn the_ops_api_asks_for_the_key_beyond_loopback() {
    let Some(ip) = lan_ip() else {
        eprintln!("no non-loopback address: the decision is unit-tested (daemon::http::tests)");
        return;
    };
    let env = Env::new(FakePlex::start(9, 1, 4), json!({}));
    let port = addr_of(&env).rsplit(':').next().unwrap().to_string();
    env.configure(
        "daemon",
        json!({"http_listen": format!("0.0.0.0:{port}"), "api_key": API_KEY, "webhook_token": HOOK}),
    );
    let daemon = start(&env);
    let lan = format!("{ip}:{port}");
    let lo = format!("127.0.0.1:{port}");

    let r = get(&lan, "/api/scrobble/status");
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.head.contains("WWW-Authenticate: Bearer"), "{}", r.head);
    let wrong = request(
        &lan,
        "GET",
        "/api/scrobble/status",
        &[("Authorization", "Bearer api-key-77e0c2ab")],
        b"",
    );
    assert_eq!(wrong.status, 401);
    let ok = request(
        &lan,
        "GET",
        "/api/scrobble/status",
        &[("Authorization", &format!("Bearer {API_KEY}"))],
        b"",
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["running"], false);
    // Loopback needs no key.
    assert_eq!(get(&lo, "/api/scrobble/status").status, 200);
    // /health and /metrics stay open; the token webhook works from anywhere; the original's
    // path only from loopback.
    assert_eq!(get(&lan, "/health").status, 200);
    let r = request(
        &lan,
        "POST",
        &format!("/webhook/plex/{HOOK}"),
        &[("Content-Type", "application/json")],
        play_payload().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request(
        &lan,
        "POST",
        "/webhook/trakt",
        &[("Content-Type", "application/json")],
        play_payload().as_bytes(),
    );
    assert_eq!(r.status, 404);
    stop(daemon);
}

#[test]
fn ops_pause_logs_and_the_log_stream() {
    let env = Env::new(FakePlex::start(9, 1, 4), json!({}));
    let daemon = start(&env);
    let addr = addr_of(&env);

    assert_eq!(get(&addr, "/api/nope").status, 404);
    assert_eq!(get(&addr, "/api/scrobble/stop").status, 405);

    // Subscribe first, then make a scrobble line.
    let mut sse = TcpStream::connect(&addr).unwrap();
    sse.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    sse.write_all(b"GET /api/logs/stream?job=scrobble HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("log stream") {
        let n = sse.read(&mut buf).unwrap();
        assert!(n > 0, "stream closed: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(
        String::from_utf8_lossy(&seen).contains("text/event-stream"),
        "{}",
        String::from_utf8_lossy(&seen)
    );

    let r = request(&addr, "POST", "/api/scrobble/stop", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["paused"], true);

    let t = Instant::now();
    while !String::from_utf8_lossy(&seen).contains("data: ") {
        assert!(t.elapsed() < Duration::from_secs(15), "no event");
        let n = sse.read(&mut buf).unwrap();
        assert!(n > 0, "stream closed");
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(
        text.contains("data: ") && text.contains("scrobble paused through the ops API"),
        "{text}"
    );
    assert!(
        !text.contains("library index loaded"),
        "another job's line: {text}"
    );

    let r = request(&addr, "POST", "/api/scrobble/start", &[], b"");
    assert_eq!(r.json()["paused"], false);

    let tail = get(&addr, "/api/logs?job=scrobble&n=80").text();
    // The job's own lines (`scrobble: off …` here) are in the tail too; the ops API's two last.
    let lines: Vec<&str> = tail
        .lines()
        .filter(|l| l.contains("through the ops API"))
        .collect();
    assert_eq!(lines.len(), 2, "{tail}");
    assert!(
        tail.lines().all(|l| l.contains("scrobble")),
        "only the scrobble job's lines: {tail}"
    );
    assert!(
        lines[0].contains("paused") && lines[1].contains("resumed"),
        "{tail}"
    );
    let all = get(&addr, "/api/logs?n=1000").text();
    assert!(all.contains("library index loaded"), "{all}");
    let one = request(
        &addr,
        "GET",
        "/api/logs?n=1",
        &[("Accept", "application/json")],
        b"",
    )
    .json();
    assert_eq!(one.as_array().unwrap().len(), 1, "{one}");
    assert!(
        one[0]["message"].is_string() && one[0]["level"].is_string(),
        "{one}"
    );
    assert_eq!(get(&addr, "/api/logs?n=x").status, 400);
    drop(sse);
    stop(daemon);
}

#[test]
fn the_configuration_over_http_redacts_validates_and_applies() {
    let env = Env::new(FakePlex::start(9, 1, 4), json!({}));
    env.configure("daemon", json!({"api_key": API_KEY}));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&env.cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
    let daemon = start(&env);
    let addr = addr_of(&env);
    let token = env.plex.token.clone();

    let r = get(&addr, "/api/config");
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(!text.contains(API_KEY) && !text.contains(&token), "{text}");
    let mut cfg = r.json();
    assert_eq!(cfg["daemon"]["api_key"], "<redacted>");
    assert_eq!(cfg["plex"]["token"], "<redacted>");
    assert_eq!(cfg["daemon"]["debug"], false);

    // Invalid: refused, naming the key; the file unchanged.
    let before = std::fs::read(&env.cfg).unwrap();
    let mut bad = cfg.clone();
    bad["index"]["page_sise"] = json!(5);
    let r = request(
        &addr,
        "POST",
        "/api/config",
        &[],
        bad.to_string().as_bytes(),
    );
    assert_eq!(r.status, 400);
    assert!(r.text().contains("index.page_sise"), "{}", r.text());
    let mut bad = cfg.clone();
    bad["daemon"]["heal_interval_s"] = json!(0);
    let r = request(
        &addr,
        "POST",
        "/api/config",
        &[],
        bad.to_string().as_bytes(),
    );
    assert_eq!(r.status, 400);
    assert!(r.text().contains("daemon.heal_interval_s"), "{}", r.text());
    let r = request(&addr, "POST", "/api/config", &[], b"{not json");
    assert_eq!(r.status, 400);
    assert_eq!(std::fs::read(&env.cfg).unwrap(), before);

    // The GET output posted back with a change: written, secrets kept, applied.
    cfg["daemon"]["debug"] = json!(true);
    let r = request(
        &addr,
        "POST",
        "/api/config",
        &[],
        cfg.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let file: Value = serde_json::from_str(&util::read(&env.cfg)).unwrap();
    assert_eq!(file["daemon"]["debug"], true);
    assert_eq!(file["daemon"]["api_key"], API_KEY);
    assert!(file["plex"].get("token").is_none(), "{file}");
    assert_eq!(
        std::fs::metadata(&env.cfg).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let t = Instant::now();
    loop {
        let c = get(&addr, "/api/config").json();
        let logs = get(&addr, "/api/logs?n=1000").text();
        if c["daemon"]["debug"] == true && logs.contains("log level debug") {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(15), "not applied: {logs}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Still healthy, and the key still works from loopback as before.
    assert_eq!(get(&addr, "/health").status, 200);
    stop(daemon);
}

/// A reverse proxy on this host forwards the world's requests from loopback: a request that
/// came through one (`X-Forwarded-For`, `Forwarded`, `X-Real-IP`) needs the key like any
/// other remote caller, and never reaches the token-less `/webhook/trakt`.
#[test]
fn a_request_through_a_proxy_is_not_a_loopback_caller() {
    let env = Env::new(FakePlex::start(9, 1, 4), json!({}));
    env.configure("daemon", json!({"api_key": API_KEY, "webhook_token": HOOK}));
    let daemon = start(&env);
    let lo = addr_of(&env);
    assert_eq!(
        get(&lo, "/api/scrobble/status").status,
        200,
        "loopback itself"
    );
    for h in ["X-Forwarded-For", "Forwarded", "X-Real-IP"] {
        let r = request(
            &lo,
            "GET",
            "/api/scrobble/status",
            &[(h, "203.0.113.9")],
            b"",
        );
        assert_eq!(r.status, 401, "{h}: {}", r.text());
        let bearer = format!("Bearer {API_KEY}");
        let r = request(
            &lo,
            "GET",
            "/api/scrobble/status",
            &[(h, "203.0.113.9"), ("Authorization", &bearer)],
            b"",
        );
        assert_eq!(r.status, 200, "{h} with the key: {}", r.text());
        let r = request(
            &lo,
            "POST",
            "/webhook/trakt",
            &[(h, "203.0.113.9"), ("Content-Type", "application/json")],
            play_payload().as_bytes(),
        );
        assert_eq!(
            r.status, 404,
            "{h}: the token-less path is for this host only"
        );
    }
    stop(daemon);
}
