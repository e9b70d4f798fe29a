//! The client against a scripted loopback server (std `TcpListener`): each connection gets the
//! next scripted answer, and every request is recorded as the server received it.

use super::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;

/// One scripted answer: status, extra header lines, body, and a delay before answering.
#[derive(Clone)]
pub(crate) struct Answer {
    pub status: u16,
    pub headers: &'static str,
    pub body: String,
    pub delay: Duration,
}

pub(crate) fn answer(status: u16, body: &str) -> Answer {
    Answer {
        status,
        headers: "",
        body: body.into(),
        delay: Duration::ZERO,
    }
}

/// What the server received: the request line, the header lines and the body.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub line: String,
    pub headers: Vec<String>,
    pub body: String,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

pub(crate) struct Server {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

/// Serves `script` one answer per connection (the last one repeats).
pub(crate) fn serve(script: Vec<Answer>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for (i, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { return };
            let a = script[i.min(script.len() - 1)].clone();
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if r.read_line(&mut line).is_err() {
                continue;
            }
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                headers.push(h.trim().to_string());
            }
            let mut s = Seen {
                line: line.trim().into(),
                headers,
                body: String::new(),
            };
            let len: usize = s
                .header("content-length")
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            s.body = String::from_utf8_lossy(&body).into();
            log.lock().unwrap().push(s);
            std::thread::sleep(a.delay);
            let _ = write!(
                conn,
                "HTTP/1.1 {} X\r\nContent-Type: application/json\r\n{}Content-Length: {}\r\nConnection: close\r\n\r\n{}",
                a.status,
                a.headers,
                a.body.len(),
                a.body
            );
        }
    });
    Server { url, seen }
}

fn client(url: &str) -> HttpClient {
    HttpClient::builder("Plex", url)
        .timeouts(Duration::from_millis(500), Duration::from_millis(500))
        .timeout_keys("plex.connect_timeout_ms", "plex.read_timeout_ms")
        .secret_header("X-Plex-Token", "SECRET-TOKEN")
        .unauthorized_hint("check the token (plex.token_file, plex.token or PLEX_TOKEN)")
        .retries(2, Duration::from_millis(10), Duration::from_secs(5))
        .build()
        .unwrap()
}

#[test]
fn a_get_is_retried_after_503_then_succeeds() {
    let s = serve(vec![
        answer(503, "busy"),
        answer(503, "busy"),
        answer(200, r#"{"ok":1}"#),
    ]);
    let c = client(&s.url);
    let v = c.get("/identity").json().unwrap();
    assert_eq!(v["ok"], 1);
    assert_eq!(s.seen.lock().unwrap().len(), 3);
    assert_eq!(c.calls(), 3);
}

#[test]
fn retries_are_bounded_and_the_last_status_is_the_error() {
    let s = serve(vec![answer(502, "<html>bad gateway</html>")]);
    let c = client(&s.url);
    let e = c.get("/library/sections").send().unwrap_err();
    assert_eq!(s.seen.lock().unwrap().len(), 3, "1 try + 2 retries");
    assert_eq!(e.status(), Some(502));
    let text = e.to_string();
    assert!(
        text.starts_with("Plex at 127.0.0.1:")
            && text.contains(
                "answered 502 Bad Gateway for /library/sections: <html>bad gateway</html>"
            ),
        "{text}"
    );
}

#[test]
fn the_deadline_stops_retries() {
    let s = serve(vec![answer(503, "")]);
    let c = HttpClient::builder("Plex", &s.url)
        .retries(5, Duration::from_millis(300), Duration::from_millis(200))
        .build()
        .unwrap();
    let t = Instant::now();
    assert_eq!(c.get("/x").send().unwrap_err().status(), Some(503));
    assert_eq!(s.seen.lock().unwrap().len(), 1);
    assert!(t.elapsed() < Duration::from_millis(300));
}

#[test]
fn post_delete_and_acting_gets_are_sent_once() {
    let s = serve(vec![answer(503, "")]);
    let c = client(&s.url);
    let form = [("username", "admin".to_string())];
    assert_eq!(
        c.post_form("/api/v2/auth/login", &form)
            .send()
            .unwrap_err()
            .status(),
        Some(503)
    );
    assert_eq!(c.delete("/item/1").send().unwrap_err().status(), Some(503));
    assert_eq!(
        c.get("/status/sessions/terminate")
            .once()
            .send()
            .unwrap_err()
            .status(),
        Some(503)
    );
    let seen = s.seen.lock().unwrap();
    let lines: Vec<&str> = seen.iter().map(|s| s.line.as_str()).collect();
    assert_eq!(
        lines,
        [
            "POST /api/v2/auth/login HTTP/1.1",
            "DELETE /item/1 HTTP/1.1",
            "GET /status/sessions/terminate HTTP/1.1"
        ]
    );
    assert_eq!(seen[0].body, "username=admin");
    assert_eq!(
        seen[0].header("content-type").as_deref(),
        Some("application/x-www-form-urlencoded")
    );
}

#[test]
fn a_timeout_names_the_service_the_server_the_path_and_the_keys() {
    let mut slow = answer(200, "{}");
    slow.delay = Duration::from_secs(2);
    let s = serve(vec![slow]);
    let c = client(&s.url);
    let t = Instant::now();
    let e = c
        .get("/status/sessions")
        .timeout(Duration::from_millis(200))
        .once()
        .send()
        .unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(1));
    assert!(e.is_timeout(), "{e:?}");
    let addr = s.url.trim_start_matches("http://");
    assert_eq!(
        e.to_string(),
        format!("Plex at {addr} did not answer /status/sessions in time (plex.connect_timeout_ms 500, plex.read_timeout_ms 200)")
    );
    assert_eq!(e.url(), format!("{addr}/status/sessions"));
}

#[test]
fn the_token_is_a_header_and_never_in_the_url_or_an_error() {
    let s = serve(vec![
        answer(401, "bad token SECRET-TOKEN"),
        answer(500, r#"{"error":"token SECRET-TOKEN rejected"}"#),
    ]);
    let c = client(&s.url);
    let e = c
        .get("/library/sections")
        .query(&[("type", "1".into())])
        .send()
        .unwrap_err();
    assert!(e.is_unauthorized());
    let text = e.to_string();
    assert!(text.ends_with("answered 401 Unauthorized for /library/sections: check the token (plex.token_file, plex.token or PLEX_TOKEN)"), "{text}");
    let e = c.get("/identity").once().send().unwrap_err().to_string();
    assert!(
        !e.contains("SECRET-TOKEN") && e.contains("<redacted>"),
        "{e}"
    );
    let seen = s.seen.lock().unwrap();
    assert_eq!(seen[0].line, "GET /library/sections?type=1 HTTP/1.1");
    assert_eq!(
        seen[0].header("x-plex-token").as_deref(),
        Some("SECRET-TOKEN")
    );
    assert_eq!(
        seen[0].header("user-agent"),
        Some(format!("downshiftarr/{}", env!("CARGO_PKG_VERSION")))
    );
}

#[test]
fn an_invalid_url_fails_every_request_without_the_secret() {
    let c = HttpClient::builder("Plex", "ftp://plex:32400/?X-Plex-Token=SECRET-TOKEN")
        .url_key("plex.url (or PLEX_URL)", "http://127.0.0.1:32400")
        .secret_header("X-Plex-Token", "SECRET-TOKEN")
        .build()
        .unwrap();
    let e = c.get("/identity").send().unwrap_err().to_string();
    assert!(
        e.starts_with("plex.url (or PLEX_URL) \"ftp://plex:32400/?X-Plex-Token=<redacted>\" is not a usable URL: the scheme is \"ftp\""),
        "{e}"
    );
    assert!(e.ends_with("expected e.g. http://127.0.0.1:32400"), "{e}");
    assert_eq!(c.calls(), 0);
}

#[test]
fn a_body_that_is_not_json_is_a_decode_error() {
    let s = serve(vec![answer(200, "<MediaContainer/>")]);
    let e = client(&s.url).get("/identity").json().unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Decode(_)), "{e:?}");
    assert!(
        e.to_string()
            .contains("sent something unexpected for /identity: not JSON"),
        "{e}"
    );
}

#[test]
fn cookies_are_kept_and_sent_back_when_asked() {
    let mut login = answer(200, "Ok.");
    login.headers = "Set-Cookie: SID=abc123; HttpOnly; path=/\r\n";
    let s = serve(vec![login, answer(200, "{}")]);
    let c = HttpClient::builder("qBittorrent", &s.url)
        .cookies(true)
        .build()
        .unwrap();
    c.post_form("/api/v2/auth/login", &[("username", "a".into())])
        .send()
        .unwrap();
    c.get("/api/v2/transfer/info").send().unwrap();
    let seen = s.seen.lock().unwrap();
    assert_eq!(seen[0].header("cookie"), None);
    assert_eq!(seen[1].header("cookie").as_deref(), Some("SID=abc123"));

    // Without the jar, nothing is sent back.
    let mut login = answer(200, "Ok.");
    login.headers = "Set-Cookie: SID=abc123\r\n";
    let s = serve(vec![login, answer(200, "{}")]);
    let c = HttpClient::builder("qBittorrent", &s.url).build().unwrap();
    c.get("/a").send().unwrap();
    c.get("/b").send().unwrap();
    assert_eq!(s.seen.lock().unwrap()[1].header("cookie"), None);
}

#[test]
fn plex_identity_headers_are_sent() {
    let s = serve(vec![answer(200, "{}")]);
    let c = HttpClient::builder("Plex", &s.url)
        .plex_identity()
        .build()
        .unwrap();
    c.get("/identity").send().unwrap();
    let seen = s.seen.lock().unwrap();
    assert_eq!(
        seen[0].header("x-plex-product").as_deref(),
        Some("downshiftarr")
    );
    assert_eq!(
        seen[0].header("x-plex-client-identifier").as_deref(),
        Some("downshiftarr-daemon")
    );
}

#[test]
fn a_long_error_body_is_cut_and_a_secret_at_the_cut_is_still_scrubbed() {
    let body = format!("{}SECRET-TOKEN{}", "x ".repeat(97), "y".repeat(5000));
    let s = serve(vec![answer(500, &body)]);
    let e = client(&s.url).get("/a").once().send().unwrap_err();
    let ErrorKind::Status(500, excerpt) = &e.kind else {
        panic!("{e:?}")
    };
    assert!(excerpt.chars().count() <= EXCERPT + 1, "{excerpt}");
    assert!(excerpt.ends_with('…'), "{excerpt}");
    assert!(
        !excerpt.contains("SECRET") && excerpt.contains("<redac"),
        "{excerpt}"
    );
}

#[test]
fn cleared_or_expired_cookies_are_not_sent_again() {
    let mut login = answer(204, "");
    login.headers = "Set-Cookie: QBT_SID_8080=abc; HttpOnly; path=/\r\nSet-Cookie: lang=en\r\n";
    let mut expire = answer(200, "{}");
    expire.headers = "Set-Cookie: lang=en; Max-Age=0\r\n";
    let s = serve(vec![
        login.clone(),
        expire,
        answer(200, "{}"),
        answer(200, "{}"),
    ]);
    let c = HttpClient::builder("qBittorrent", &s.url)
        .cookies(true)
        .build()
        .unwrap();
    assert!(!c.has_cookies());
    c.post_form("/api/v2/auth/login", &[]).send().unwrap();
    assert!(c.has_cookies());
    c.get("/a").send().unwrap();
    c.get("/b").send().unwrap();
    c.clear_cookies();
    assert!(!c.has_cookies());
    c.get("/c").send().unwrap();
    let seen = s.seen.lock().unwrap();
    assert_eq!(
        seen[1].header("cookie").as_deref(),
        Some("QBT_SID_8080=abc; lang=en")
    );
    assert_eq!(
        seen[2].header("cookie").as_deref(),
        Some("QBT_SID_8080=abc"),
        "Max-Age=0 deleted lang"
    );
    assert_eq!(seen[3].header("cookie"), None, "cleared");

    // A client without a jar has nothing to clear and never holds a cookie.
    let c = HttpClient::builder("Plex", &s.url).build().unwrap();
    c.clear_cookies();
    assert!(!c.has_cookies());
}

#[test]
fn a_2xx_body_over_the_limit_is_an_error_not_a_cut_value() {
    let s = serve(vec![
        answer(200, &"9".repeat(65)),
        answer(200, &"9".repeat(64)),
    ]);
    let c = HttpClient::builder("qBittorrent", &s.url)
        .max_body(64)
        .build()
        .unwrap();
    let e = c.get("/api/v2/transfer/uploadLimit").send().unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Decode(_)), "{e:?}");
    assert!(
        e.to_string().ends_with(
            "sent something unexpected for /api/v2/transfer/uploadLimit: an answer larger than 64 bytes"
        ),
        "{e}"
    );
    assert_eq!(s.seen.lock().unwrap().len(), 1, "not retried");
    let r = c.get("/api/v2/transfer/uploadLimit").send().unwrap();
    assert_eq!(r.body.len(), 64);
    assert_eq!(size(64 << 10), "64 KiB");
    assert_eq!(size(512 << 20), "512 MiB");
    assert_eq!(size(1500), "1500 bytes");
}
