//! The daemon's HTTP surface (issue 12): Plex webhooks (path token, multipart or JSON, size
//! cap, malformed bodies refused without harm), the ops API (loopback or bearer key), the log
//! tail and its live stream, and the configuration round trip. Real daemon, real sockets.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::daemon::{stop, wait_for_daemon, Env, MOVIE0_4K};
use crate::fake_plex::FakePlex;

const WEBHOOK_TOKEN: &str = "wh-0123456789abcdef0123";
const API_KEY: &str = "ak-fedcba9876543210fedc";

/// One request on its own connection: (status, headers, body).
fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // A server that answers before reading the whole body (413) may reset the rest.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (h, b) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = h
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, h.to_string(), b.to_string())
}

fn addr(env: &Env) -> String {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&env.cfg).unwrap()).unwrap();
    v["daemon"]["http_listen"].as_str().unwrap().to_string()
}

fn started(env: &Env) -> std::process::Child {
    let d = env.daemon();
    wait_for_daemon(&env.socket(), MOVIE0_4K);
    d
}

fn env() -> Env {
    let env = Env::new(FakePlex::start(2, 0, 0), json!({}));
    env.configure(
        "daemon",
        json!({"webhook_token": WEBHOOK_TOKEN, "api_key": API_KEY}),
    );
    env
}

fn multipart(payload: &str) -> (String, Vec<u8>) {
    let b = "------------------------9f2c1e";
    let mut body = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"payload\"\r\nContent-Type: application/json\r\n\r\n{payload}\r\n--{b}\r\nContent-Disposition: form-data; name=\"thumb\"; filename=\"image.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(b"\xff\xd8\xff\xe0\x00\x10JFIF\r\n--");
    body.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={b}"), body)
}

fn metric(addr: &str, series: &str) -> f64 {
    let (_, _, text) = request(addr, "GET", "/metrics", &[], b"");
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

#[test]
fn http_webhooks_are_checked_capped_and_queued() {
    let env = env();
    let d = started(&env);
    let a = addr(&env);
    let payload = std::fs::read_to_string(
        crate::util::repo().join("fixtures/plex-payloads/plex-webhook-media-play.json"),
    )
    .unwrap();
    let path = format!("/webhook/plex/{WEBHOOK_TOKEN}");

    let (ct, body) = multipart(&payload);
    let (code, _, text) = request(&a, "POST", &path, &[("Content-Type", &ct)], &body);
    assert_eq!((code, text.as_str()), (200, "queued\n"));
    let (code, _, _) = request(
        &a,
        "POST",
        &path,
        &[("Content-Type", "application/json")],
        payload.as_bytes(),
    );
    assert_eq!(code, 200, "a JSON body");
    let form = format!(
        "payload={}",
        payload
            .replace('%', "%25")
            .replace('&', "%26")
            .replace('+', "%2B")
            .replace(' ', "+")
    );
    let (code, _, _) = request(
        &a,
        "POST",
        &path,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    );
    assert_eq!(code, 200, "a form body");

    // The path is the secret: a wrong one is not found, whatever else is right.
    let (code, _, _) = request(
        &a,
        "POST",
        "/webhook/plex/wh-0123456789abcdef0124",
        &[("Content-Type", &ct)],
        &body,
    );
    assert_eq!(code, 404);
    let (code, _, _) = request(
        &a,
        "POST",
        "/webhook/plex/",
        &[("Content-Type", &ct)],
        &body,
    );
    assert_eq!(code, 404);
    let (code, _, _) = request(&a, "GET", &path, &[], b"");
    assert_eq!(code, 405);

    // Oversized, malformed: refused with the reason, the daemon unaffected.
    let big = vec![b'x'; (1 << 20) + 1];
    let (code, _, _) = request(
        &a,
        "POST",
        &path,
        &[("Content-Type", "application/json")],
        &big,
    );
    assert_eq!(code, 413);
    let (code, _, text) = request(
        &a,
        "POST",
        &path,
        &[("Content-Type", "multipart/form-data")],
        &body,
    );
    assert_eq!(code, 400);
    assert!(text.contains("boundary"), "{text}");
    let (code, _, text) = request(
        &a,
        "POST",
        &path,
        &[("Content-Type", &ct)],
        &body[..body.len() / 2],
    );
    assert_eq!(code, 400, "{text}");
    let (code, _, text) = request(
        &a,
        "POST",
        &path,
        &[("Content-Type", "application/json")],
        b"{\"event\": ",
    );
    assert_eq!(code, 400);
    assert!(text.contains("not JSON"), "{text}");

    // The original's path: this host only.
    let (code, _, _) = request(
        &a,
        "POST",
        "/webhook/trakt",
        &[("Content-Type", "application/json")],
        payload.as_bytes(),
    );
    assert_eq!(code, 200);
    let (code, _, _) = request(
        &a,
        "POST",
        "/webhook/trakt",
        &[
            ("Content-Type", "application/json"),
            ("X-Forwarded-For", "203.0.113.9"),
        ],
        payload.as_bytes(),
    );
    assert_eq!(code, 404, "through a proxy is not this host");

    assert_eq!(
        metric(&a, "downshiftarr_webhooks_total{result=\"queued\"}"),
        4.0
    );
    assert_eq!(
        metric(&a, "downshiftarr_webhooks_total{result=\"bad_token\"}"),
        2.0
    );
    assert_eq!(
        metric(&a, "downshiftarr_webhooks_total{result=\"malformed\"}"),
        3.0
    );
    assert_eq!(
        metric(&a, "downshiftarr_webhooks_total{result=\"too_large\"}"),
        1.0
    );
    assert_eq!(
        metric(&a, "downshiftarr_webhooks_total{result=\"not_local\"}"),
        1.0
    );
    let (code, _, _) = request(&a, "GET", "/health", &[], b"");
    assert_eq!(code, 200, "the daemon is healthy after all that");
    let log = std::fs::read_to_string(env.log()).unwrap_or_default();
    assert!(
        !log.contains(WEBHOOK_TOKEN),
        "the webhook token reached the log"
    );
    stop(d);
}

#[test]
fn http_the_ops_api_needs_the_key_from_elsewhere() {
    let env = env();
    let d = started(&env);
    let a = addr(&env);
    let remote = [("X-Forwarded-For", "203.0.113.9")];
    let bearer = format!("Bearer {API_KEY}");

    let (code, _, text) = request(&a, "GET", "/api/scrobble/status", &[], b"");
    assert_eq!(code, 200, "this host needs no key");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["paused"], false);

    let (code, head, _) = request(&a, "GET", "/api/scrobble/status", &remote, b"");
    assert_eq!(code, 401);
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{head}"
    );
    let (code, _, _) = request(
        &a,
        "GET",
        "/api/scrobble/status",
        &[
            remote[0],
            ("Authorization", "Bearer ak-fedcba9876543210fedX"),
        ],
        b"",
    );
    assert_eq!(code, 401, "a wrong key");
    let (code, _, _) = request(
        &a,
        "GET",
        "/api/scrobble/status",
        &[remote[0], ("Authorization", &bearer)],
        b"",
    );
    assert_eq!(code, 200, "the right key");

    let (code, _, text) = request(
        &a,
        "POST",
        "/api/scrobble/stop",
        &[remote[0], ("Authorization", &bearer)],
        b"",
    );
    assert_eq!((code, text.as_str()), (200, "{\"paused\":true}"));
    let (_, _, text) = request(&a, "GET", "/api/scrobble/status", &[], b"");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["paused"],
        true
    );
    let (code, _, text) = request(&a, "POST", "/api/scrobble/start", &[], b"");
    assert_eq!((code, text.as_str()), (200, "{\"paused\":false}"));
    let (code, _, _) = request(&a, "GET", "/api/scrobble/start", &[], b"");
    assert_eq!(code, 405);
    let (code, _, text) = request(&a, "GET", "/api/nothing", &[], b"");
    assert_eq!(code, 404);
    assert!(
        text.contains("/api/config"),
        "a 404 lists what there is: {text}"
    );
    stop(d);

    // Bound beyond loopback, a caller on another address needs the key (when this machine
    // has such an address; the decision itself is unit-tested in daemon::http).
    let other = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.split_whitespace()
                .find(|a| {
                    a.parse::<std::net::Ipv4Addr>()
                        .is_ok_and(|ip| !ip.is_loopback())
                })
                .map(str::to_string)
        });
    if let Some(ip) = other {
        let port = a.rsplit(':').next().unwrap().to_string();
        env.configure("daemon", json!({"http_listen": format!("0.0.0.0:{port}")}));
        let d = started(&env);
        let there = format!("{ip}:{port}");
        let (code, _, _) = request(&there, "GET", "/api/scrobble/status", &[], b"");
        assert_eq!(code, 401, "{there} is not loopback");
        let (code, _, _) = request(
            &there,
            "GET",
            "/api/scrobble/status",
            &[("Authorization", &bearer)],
            b"",
        );
        assert_eq!(code, 200);
        let (code, _, _) = request(&there, "POST", "/webhook/trakt", &[], b"{}");
        assert_eq!(code, 404, "the token-less path is for this host only");
        stop(d);
    }
}

#[test]
fn http_log_tail_and_live_stream() {
    let env = env();
    let d = started(&env);
    let a = addr(&env);
    // Open the stream first: it must get a line logged after it started.
    let mut s = TcpStream::connect(&a).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    write!(
        s,
        "GET /api/logs/stream?job=scrobble HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    let mut got = String::new();
    let t = Instant::now();
    while !got.contains("\r\n\r\n") && t.elapsed() < Duration::from_secs(10) {
        let mut buf = [0u8; 4096];
        if let Ok(n) = s.read(&mut buf) {
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.contains("text/event-stream"), "{got}");

    let (code, _, _) = request(&a, "POST", "/api/scrobble/stop", &[], b"");
    assert_eq!(code, 200);
    let t = Instant::now();
    while !got.contains("data: ") && t.elapsed() < Duration::from_secs(10) {
        let mut buf = [0u8; 4096];
        if let Ok(n) = s.read(&mut buf) {
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    let event = got
        .lines()
        .find(|l| l.starts_with("data: "))
        .unwrap_or_else(|| panic!("no event:\n{got}"));
    assert!(
        event.contains("scrobbling paused through the ops API"),
        "{event}"
    );

    let (code, _, text) = request(&a, "GET", "/api/logs?job=scrobble&n=5", &[], b"");
    assert_eq!(code, 200);
    assert!(
        text.contains("scrobbling paused through the ops API"),
        "{text}"
    );
    assert!(text.lines().count() <= 5);
    let (_, _, text) = request(&a, "GET", "/api/logs?job=throttle&n=50", &[], b"");
    assert!(
        !text.contains("scrobbling paused"),
        "another job's lines: {text}"
    );
    let (_, _, text) = request(
        &a,
        "GET",
        "/api/logs?n=1000",
        &[("Accept", "application/json")],
        b"",
    );
    let lines: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l["text"].as_str().unwrap_or("").contains("ready")),
        "{text}"
    );
    assert!(
        lines
            .windows(2)
            .all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64()),
        "oldest first"
    );
    drop(s);
    stop(d);
}

#[test]
fn http_config_round_trip_and_refusals() {
    let env = env();
    std::fs::set_permissions(&env.cfg, std::fs::Permissions::from_mode(0o640)).unwrap();
    let d = started(&env);
    let a = addr(&env);

    let (code, _, text) = request(&a, "GET", "/api/config", &[], b"");
    assert_eq!(code, 200);
    assert!(
        !text.contains(API_KEY) && !text.contains(WEBHOOK_TOKEN),
        "a secret in GET /api/config: {text}"
    );
    let mut cfg: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(cfg["daemon"]["api_key"], "<redacted>");
    assert_eq!(cfg["enforce"]["guard_interval_s"], 10);

    // Refused: the file is left as it was, the answer names the key.
    let before = std::fs::read(&env.cfg).unwrap();
    for (body, names) in [
        (
            json!({"enforce": {"guard_interval_s": "often"}}).to_string(),
            "enforce.guard_interval_s",
        ),
        (
            json!({"enforce": {"guard_intreval_s": 3}}).to_string(),
            "guard_intreval_s",
        ),
        (
            json!({"daemon": {"api_key": "short"}}).to_string(),
            "daemon.api_key",
        ),
        ("not json".to_string(), "invalid JSON"),
        ("[1]".to_string(), "object"),
    ] {
        let (code, _, text) = request(
            &a,
            "POST",
            "/api/config",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!(code, 400, "{body}: {text}");
        assert!(text.contains(names), "{body}: {text}");
        assert!(text.contains("unchanged"), "{text}");
        assert_eq!(
            std::fs::read(&env.cfg).unwrap(),
            before,
            "{body} changed the file"
        );
    }
    let (code, _, _) = request(
        &a,
        "POST",
        "/api/config",
        &[("X-Forwarded-For", "203.0.113.9")],
        b"{}",
    );
    assert_eq!(code, 401, "nobody elsewhere without the key");

    // Accepted: written atomically with its mode, the redacted secret kept, applied as SIGHUP.
    cfg["enforce"]["guard_interval_s"] = json!(7);
    let (code, _, text) = request(
        &a,
        "POST",
        "/api/config",
        &[("Content-Type", "application/json")],
        cfg.to_string().as_bytes(),
    );
    assert_eq!(code, 200, "{text}");
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&env.cfg).unwrap()).unwrap();
    assert_eq!(file["enforce"]["guard_interval_s"], 7);
    assert_eq!(
        file["daemon"]["api_key"], API_KEY,
        "the redacted key kept its value"
    );
    assert_eq!(file["daemon"]["webhook_token"], WEBHOOK_TOKEN);
    assert_eq!(
        std::fs::metadata(&env.cfg).unwrap().permissions().mode() & 0o777,
        0o640
    );
    let t = Instant::now();
    loop {
        let (_, _, text) = request(&a, "GET", "/api/config", &[], b"");
        if serde_json::from_str::<Value>(&text).unwrap()["enforce"]["guard_interval_s"] == 7 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the new configuration never took effect"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The key still works from elsewhere: the secret survived the round trip in effect too.
    let (code, _, _) = request(
        &a,
        "GET",
        "/api/config",
        &[
            ("X-Forwarded-For", "203.0.113.9"),
            ("Authorization", &format!("Bearer {API_KEY}")),
        ],
        b"",
    );
    assert_eq!(code, 200);
    let leftovers: Vec<_> = std::fs::read_dir(env.cfg.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    stop(d);
}
