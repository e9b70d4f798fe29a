//! A fake qBittorrent ≥ 5.2 WebUI (std `TcpListener`), reproducing
//! `reference/payloads/qbittorrent-login-responses.md`: a good login answers `204` with
//! `Set-Cookie: QBT_SID_<port>=…; HttpOnly; SameSite=Strict; expires=…; path=/`, a wrong one
//! `401`, a banned address `403`; calls without a session are `403`; setters answer `204`
//! (no data); an API key is accepted as `Authorization: Bearer` from WebAPI 2.14.1. Every
//! request is logged for the tests' assertions.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use downshiftarr::clients::qbittorrent::{QbitError, QbitOptions, Qbittorrent, RateLimit};

#[derive(Clone)]
pub struct FakeOptions {
    pub password: String,
    pub api_key: Option<String>,
    pub webapi: &'static str,
    /// Every call but login is `403`, even with a session.
    pub forbid_everything: bool,
    /// Logins answer `403` (banned).
    pub banned: bool,
    /// `transfer/uploadLimit` answers an HTML page.
    pub garbage: bool,
    /// API paths (`transfer/downloadLimit`) answered `404`, as a server without them.
    pub not_found: &'static [&'static str],
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            password: "right".into(),
            api_key: None,
            webapi: "2.14.1",
            forbid_everything: false,
            banned: false,
            garbage: false,
            not_found: &[],
        }
    }
}

#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

struct State {
    opts: FakeOptions,
    sessions: Vec<String>,
    log: Vec<Req>,
    up: u64,
    down: u64,
    alt: bool,
}

pub struct FakeQbit {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl FakeQbit {
    pub fn start(opts: FakeOptions) -> FakeQbit {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            opts,
            sessions: Vec::new(),
            log: Vec::new(),
            up: 0,
            down: 0,
            alt: false,
        }));
        let shared = state.clone();
        // The listener thread ends with the test process.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || serve(stream, port, &shared));
            }
        });
        FakeQbit { port, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> Vec<Req> {
        self.state.lock().unwrap().log.clone()
    }

    /// The global upload limit (bytes/s), as the user would set it in the UI.
    pub fn set_upload(&self, bytes_per_s: u64) {
        self.state.lock().unwrap().up = bytes_per_s;
    }

    pub fn upload(&self) -> u64 {
        self.state.lock().unwrap().up
    }

    /// Setter calls received (`POST transfer/set…`).
    pub fn writes(&self) -> usize {
        self.log()
            .iter()
            .filter(|r| r.method == "POST" && r.path.starts_with("/api/v2/transfer/set"))
            .count()
    }

    pub fn logins(&self) -> usize {
        self.log()
            .iter()
            .filter(|r| r.path == "/api/v2/auth/login")
            .count()
    }

    pub fn client(&self, password: Option<&str>, api_key: Option<&str>) -> Qbittorrent {
        let mut o = QbitOptions::new(&self.url());
        o.username = "admin".into();
        o.password = password.map(str::to_string);
        o.api_key = api_key.map(str::to_string);
        o.timeout = Duration::from_secs(5);
        Qbittorrent::new(o).unwrap()
    }
}

fn serve(stream: TcpStream, port: u16, state: &Mutex<State>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or_default().to_string(),
        parts.next().unwrap_or_default().to_string(),
    );
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let req = Req {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let (status, extra, text) = answer(&req, port, &mut state.lock().unwrap());
    let reason = match status {
        200 => "OK",
        204 => "No Content",
        401 => "Unauthorized",
        403 => "Forbidden",
        405 => "Method Not Allowed",
        _ => "Not Found",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nContent-Type: text/plain; charset=UTF-8\r\nConnection: close\r\n{extra}\r\n{text}",
        text.len()
    );
    let mut stream = stream;
    let _ = stream.write_all(response.as_bytes());
}

fn form_value(body: &str, key: &str) -> Option<String> {
    body.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| url_decode(v))
    })
}

fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Status, extra header lines (each ending in `\r\n`), body.
fn answer(req: &Req, port: u16, st: &mut State) -> (u16, String, String) {
    st.log.push(req.clone());
    let own = format!("http://127.0.0.1:{port}");
    // CSRF protection: a foreign Origin/Referer is refused, as qBittorrent does.
    for h in ["origin", "referer"] {
        if let Some(v) = req.header(h) {
            if !v.starts_with(&own) {
                return (401, String::new(), "Unauthorized".into());
            }
        }
    }
    let path = req.path.trim_start_matches("/api/v2/");
    if path == "auth/login" {
        if req.method != "POST" {
            return (405, String::new(), String::new());
        }
        if st.opts.banned {
            return (403, String::new(), "Forbidden".into());
        }
        if form_value(&req.body, "username").as_deref() == Some("admin")
            && form_value(&req.body, "password").as_deref() == Some(st.opts.password.as_str())
        {
            let sid = format!("HRF+GKKfquY29MVcz9dd5IEdRbHp{:04}", st.sessions.len());
            st.sessions.push(sid.clone());
            return (
                204,
                format!("Set-Cookie: QBT_SID_{port}={sid}; HttpOnly; SameSite=Strict; expires=Thu, 02-Apr-2026 16:15:22 GMT; path=/\r\n"),
                String::new(),
            );
        }
        return (401, String::new(), String::new());
    }
    let cookie_ok = req.header("cookie").is_some_and(|c| {
        c.split(';').map(str::trim).any(|kv| {
            kv.strip_prefix(&format!("QBT_SID_{port}="))
                .is_some_and(|sid| st.sessions.iter().any(|s| s == sid))
        })
    });
    let key_ok = matches!(
        (&st.opts.api_key, req.header("authorization")),
        (Some(k), Some(h)) if h == format!("Bearer {k}")
    );
    if st.opts.forbid_everything || !(cookie_ok || key_ok) {
        return (403, String::new(), "Forbidden".into());
    }
    if st.opts.not_found.contains(&path) {
        return (404, String::new(), "Not Found".into());
    }
    let want = |m: &str| req.method == m;
    match path {
        "app/webapiVersion" if want("GET") => (200, String::new(), st.opts.webapi.into()),
        "transfer/uploadLimit" if want("GET") => {
            let body = if st.opts.garbage {
                "<html>proxy error</html>".into()
            } else {
                st.up.to_string()
            };
            (200, String::new(), body)
        }
        "transfer/downloadLimit" if want("GET") => (200, String::new(), st.down.to_string()),
        "transfer/setDownloadLimit" if want("POST") => {
            st.down = form_value(&req.body, "limit")
                .and_then(|v| v.parse().ok())
                .unwrap_or(st.down);
            (204, String::new(), String::new())
        }
        "transfer/speedLimitsMode" if want("GET") => {
            (200, String::new(), if st.alt { "1" } else { "0" }.into())
        }
        "transfer/setUploadLimit" if want("POST") => {
            st.up = form_value(&req.body, "limit")
                .and_then(|v| v.parse().ok())
                .unwrap_or(st.up);
            (204, String::new(), String::new())
        }
        "transfer/setSpeedLimitsMode" if want("POST") => {
            st.alt = form_value(&req.body, "mode").as_deref() == Some("1");
            (204, String::new(), String::new())
        }
        "auth/logout" if want("POST") => (204, String::new(), String::new()),
        _ if ["GET", "POST"].contains(&req.method.as_str()) => {
            (404, String::new(), "Not Found".into())
        }
        _ => (405, String::new(), String::new()),
    }
}

#[test]
fn qbittorrent_5_2_login_is_204_with_a_port_named_cookie() {
    let fake = FakeQbit::start(FakeOptions::default());
    let mut c = fake.client(Some("right"), None);
    assert_eq!(c.upload_limit().unwrap(), RateLimit::UNLIMITED);
    c.set_upload_limit(RateLimit::from_kib(10)).unwrap();
    assert_eq!(c.upload_limit().unwrap(), RateLimit::from_kib(10));
    c.set_alt_speed_mode(true).unwrap();
    assert!(c.alt_speed_mode().unwrap());
    let log = fake.log();
    let paths: Vec<&str> = log.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/api/v2/transfer/uploadLimit",
            "/api/v2/auth/login",
            "/api/v2/transfer/uploadLimit",
            "/api/v2/transfer/setUploadLimit",
            "/api/v2/transfer/uploadLimit",
            "/api/v2/app/webapiVersion",
            "/api/v2/transfer/setSpeedLimitsMode",
            "/api/v2/transfer/speedLimitsMode",
        ]
    );
    for r in &log {
        assert_eq!(r.header("referer"), Some(fake.url().as_str()), "{r:?}");
        assert_eq!(r.header("origin"), Some(fake.url().as_str()), "{r:?}");
    }
    let after_login = &log[2];
    let cookie = after_login.header("cookie").unwrap();
    assert!(
        cookie.starts_with(&format!("QBT_SID_{}=", fake.port)),
        "{cookie}"
    );
    assert!(
        !cookie.contains("HttpOnly") && !cookie.contains("path"),
        "{cookie}"
    );
    assert_eq!(log[1].body, "username=admin&password=right");
    assert_eq!(fake.logins(), 1);
}

#[test]
fn qbittorrent_5_2_wrong_password_is_401_and_backs_off() {
    let fake = FakeQbit::start(FakeOptions::default());
    let mut c = fake.client(Some("wrong"), None);
    let e = c.upload_limit().unwrap_err();
    assert!(matches!(e, QbitError::LoginRefused { .. }), "{e}");
    for _ in 0..20 {
        assert!(matches!(
            c.upload_limit().unwrap_err(),
            QbitError::BackingOff { .. }
        ));
    }
    assert_eq!(fake.logins(), 1);
    let msg = c.auth_problem().unwrap();
    assert!(msg.contains("next attempt in 60s"), "{msg}");
}

#[test]
fn an_api_key_is_sent_as_bearer_and_never_logs_in() {
    let fake = FakeQbit::start(FakeOptions {
        api_key: Some("qbt_abc123".into()),
        ..FakeOptions::default()
    });
    let mut c = fake.client(None, Some("qbt_abc123"));
    c.set_alt_speed_mode(true).unwrap();
    assert_eq!(c.upload_limit().unwrap(), RateLimit::UNLIMITED);
    assert_eq!(fake.logins(), 0);
    for r in fake.log() {
        assert_eq!(
            r.header("authorization"),
            Some("Bearer qbt_abc123"),
            "{r:?}"
        );
    }
    assert!(!format!("{c:?}").contains("qbt_abc123"));
    // A revoked key without a password: an error that says what to do, no login.
    let mut revoked = fake.client(None, Some("qbt_old"));
    let e = revoked.upload_limit().unwrap_err();
    assert!(
        matches!(e, QbitError::Forbidden { .. }) && e.to_string().contains("api_key was refused"),
        "{e}"
    );
    assert!(!e.to_string().contains("qbt_old"));
    assert_eq!(fake.logins(), 0);
}

#[test]
fn an_api_key_on_an_older_server_falls_back_to_the_password() {
    // WebAPI 2.11 has no API keys: the header is ignored, the password works.
    let fake = FakeQbit::start(FakeOptions {
        webapi: "2.11.2",
        ..FakeOptions::default()
    });
    let mut c = fake.client(Some("right"), Some("qbt_abc123"));
    assert_eq!(c.webapi_version().unwrap().to_string(), "2.11.2");
    c.upload_limit().unwrap();
    assert_eq!(fake.logins(), 1);
    let log = fake.log();
    let last = log.last().unwrap();
    assert_eq!(
        last.header("authorization"),
        None,
        "no key sent once the server is known to be older"
    );
}

#[test]
fn a_403_right_after_a_login_is_an_error_not_a_loop() {
    let fake = FakeQbit::start(FakeOptions {
        forbid_everything: true,
        ..FakeOptions::default()
    });
    let mut c = fake.client(Some("right"), None);
    let e = c.upload_limit().unwrap_err();
    assert!(matches!(e, QbitError::Forbidden { .. }), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("{}/api/v2/transfer/uploadLimit", fake.url())),
        "{e}"
    );
    assert_eq!(fake.logins(), 1, "one re-login per call, never more");
    assert_eq!(fake.log().len(), 3);
}

#[test]
fn a_banned_login_waits_the_longest_back_off() {
    let fake = FakeQbit::start(FakeOptions {
        banned: true,
        ..FakeOptions::default()
    });
    let mut c = fake.client(Some("right"), None);
    assert!(matches!(
        c.upload_limit().unwrap_err(),
        QbitError::Banned { .. }
    ));
    let e = c.set_upload_limit(RateLimit::from_kib(1)).unwrap_err();
    assert!(
        matches!(e, QbitError::BackingOff { banned: true, .. }),
        "{e}"
    );
    assert!(c
        .auth_problem()
        .unwrap()
        .contains("next login attempt in 3600s"));
    assert_eq!(fake.logins(), 1);
}

#[test]
fn an_unreadable_answer_is_an_error_never_a_value() {
    let fake = FakeQbit::start(FakeOptions {
        garbage: true,
        not_found: &["transfer/downloadLimit"],
        ..FakeOptions::default()
    });
    let mut c = fake.client(Some("right"), None);
    let e = c.upload_limit().unwrap_err();
    assert!(matches!(e, QbitError::BadAnswer { .. }), "{e}");
    assert!(
        e.to_string().contains("/api/v2/transfer/uploadLimit")
            && e.to_string().contains("whole number"),
        "{e}"
    );
    // Unknown endpoints and odd statuses name the URL and status.
    let mut old = fake.client(Some("right"), None);
    let e = old.download_limit().unwrap_err();
    assert!(matches!(e, QbitError::Status { status: 404, .. }), "{e}");
}
