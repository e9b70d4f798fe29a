//! The qBittorrent client against the scripted loopback server of `http_tests` (4.x logins,
//! cookies, retries, scrubbing) and its pure parts (versions, limits, back-off).

use super::*;
use crate::clients::http::tests::{answer, serve, Answer, Server};

#[test]
fn webapi_versions_parse_and_order() {
    assert_eq!(
        WebApiVersion::parse("2.8.19\n"),
        Some(WebApiVersion(2, 8, 19))
    );
    assert_eq!(WebApiVersion::parse("2.14"), Some(WebApiVersion(2, 14, 0)));
    assert_eq!(WebApiVersion::parse("v2.8"), None);
    assert_eq!(WebApiVersion::parse("2.8.1.1"), None);
    assert_eq!(WebApiVersion::parse(""), None);
    assert!(WebApiVersion(2, 14, 1) > WebApiVersion(2, 8, 19));
    assert!(WebApiVersion(2, 8, 18) >= SET_SPEED_LIMITS_MODE_SINCE);
    assert!(WebApiVersion(2, 8, 17) < SET_SPEED_LIMITS_MODE_SINCE);
}

#[test]
fn rate_limits_print_their_unit_and_compare() {
    assert_eq!(RateLimit::from_kib(500).to_string(), "500 KiB/s");
    assert_eq!(RateLimit(1000).to_string(), "1000 B/s");
    assert_eq!(RateLimit::UNLIMITED.to_string(), "unlimited");
    assert!(RateLimit::from_kib(1).tighter_than(RateLimit::UNLIMITED));
    assert!(!RateLimit::UNLIMITED.tighter_than(RateLimit::from_kib(1)));
    assert!(RateLimit::from_kib(1).tighter_than(RateLimit::from_kib(2)));
    assert!(!RateLimit::from_kib(2).tighter_than(RateLimit::from_kib(2)));
    assert_eq!(RateLimit::from_kib(u64::MAX), RateLimit(u64::MAX));
}

#[test]
fn secrets_stay_out_of_debug_and_errors() {
    let mut o = QbitOptions::new("http://127.0.0.1:1");
    o.username = "admin".into();
    o.password = Some("hunter2-secret".into());
    o.api_key = Some("qbt_topsecret".into());
    let dbg = format!("{o:?}");
    assert!(
        !dbg.contains("hunter2") && !dbg.contains("topsecret"),
        "{dbg}"
    );
    let mut q = Qbittorrent::new(o).unwrap();
    assert!(!format!("{q:?}").contains("hunter2"));
    let e = q.upload_limit().unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, QbitError::Unreachable { .. }), "{text}");
    assert!(
        text.contains("http://127.0.0.1:1/api/v2/transfer/uploadLimit"),
        "{text}"
    );
    assert!(
        !text.contains("hunter2") && !text.contains("topsecret"),
        "{text}"
    );
}

#[test]
fn bad_urls_are_refused_with_the_url() {
    for url in ["", "127.0.0.1:8080", "ftp://host/", "http://"] {
        let e = Qbittorrent::new(QbitOptions::new(url)).unwrap_err();
        assert!(matches!(e, QbitError::BadUrl { .. }), "{url}: {e}");
        assert!(e.to_string().contains("invalid url"), "{e}");
    }
    let q = Qbittorrent::new(QbitOptions::new("https://nas.lan/qbittorrent/")).unwrap();
    assert_eq!(q.api, "https://nas.lan/qbittorrent/api/v2/");
}

/// A client of the scripted server, as the throttle job configures one.
fn scripted(script: Vec<Answer>, prefix: &str) -> (Server, Qbittorrent) {
    let s = serve(script);
    let mut o = QbitOptions::new(&format!("{}{prefix}", s.url));
    o.username = "admin".into();
    o.password = Some("hunter2-secret".into());
    o.timeout = Duration::from_secs(2);
    let q = Qbittorrent::new(o).unwrap();
    (s, q)
}

fn with_cookie(mut a: Answer, set_cookie: &'static str) -> Answer {
    a.headers = set_cookie;
    a
}

#[test]
fn a_path_prefix_is_kept_and_referer_and_origin_are_the_origin() {
    let (s, mut q) = scripted(vec![answer(200, "2.8.19")], "/qbittorrent/");
    assert_eq!(q.webapi_version().unwrap(), WebApiVersion(2, 8, 19));
    let seen = s.seen.lock().unwrap();
    assert_eq!(
        seen[0].line,
        "GET /qbittorrent/api/v2/app/webapiVersion HTTP/1.1"
    );
    assert_eq!(seen[0].header("referer"), Some(s.url.clone()));
    assert_eq!(seen[0].header("origin"), Some(s.url.clone()));
}

#[test]
fn a_4x_login_is_200_ok_with_sid_and_fails_is_a_refusal() {
    let (s, mut q) = scripted(
        vec![
            answer(403, "Forbidden"),
            with_cookie(
                answer(200, "Ok."),
                "Set-Cookie: SID=abc123; HttpOnly; path=/\r\n",
            ),
            answer(200, "512000"),
            answer(200, "0"),
        ],
        "",
    );
    assert_eq!(q.upload_limit().unwrap(), RateLimit(512_000));
    assert!(format!("{q:?}").contains("logged_in: true"));
    assert_eq!(q.download_limit().unwrap(), RateLimit::UNLIMITED);
    assert_eq!(q.login_attempts(), 1);
    let seen = s.seen.lock().unwrap();
    assert_eq!(seen[1].line, "POST /api/v2/auth/login HTTP/1.1");
    assert_eq!(seen[1].body, "username=admin&password=hunter2-secret");
    assert_eq!(seen[1].header("cookie"), None);
    assert_eq!(seen[2].header("cookie").as_deref(), Some("SID=abc123"));
    assert_eq!(seen[3].header("cookie").as_deref(), Some("SID=abc123"));
    drop(seen);

    let (s, mut q) = scripted(vec![answer(403, "Forbidden"), answer(200, "Fails.")], "");
    let e = q.upload_limit().unwrap_err();
    assert!(matches!(e, QbitError::LoginRefused { .. }), "{e}");
    assert!(q.auth_problem().unwrap().contains("next attempt in 60s"));
    assert_eq!(
        s.seen.lock().unwrap().len(),
        2,
        "a refused login is not retried"
    );
}

#[test]
fn a_session_refused_later_is_renewed_with_one_login_and_no_stale_cookie() {
    let (s, mut q) = scripted(
        vec![
            answer(403, "Forbidden"),
            with_cookie(answer(200, "Ok."), "Set-Cookie: SID=old\r\n"),
            answer(200, "1"),
            answer(403, "Forbidden"),
            with_cookie(answer(200, "Ok."), "Set-Cookie: SID=new\r\n"),
            answer(200, "2"),
        ],
        "",
    );
    assert_eq!(q.upload_limit().unwrap(), RateLimit(1));
    assert_eq!(q.upload_limit().unwrap(), RateLimit(2));
    assert_eq!(q.login_attempts(), 2);
    let seen = s.seen.lock().unwrap();
    assert_eq!(seen[3].header("cookie").as_deref(), Some("SID=old"));
    assert_eq!(seen[4].header("cookie"), None, "the login starts afresh");
    assert_eq!(seen[5].header("cookie").as_deref(), Some("SID=new"));
}

#[test]
fn logout_ends_the_session_and_forgets_the_cookie() {
    let (s, mut q) = scripted(
        vec![
            answer(403, "Forbidden"),
            with_cookie(answer(204, ""), "Set-Cookie: QBT_SID_1=abc; HttpOnly\r\n"),
            answer(200, "7"),
            answer(200, ""),
            answer(200, "7"),
        ],
        "",
    );
    q.upload_limit().unwrap();
    q.logout().unwrap();
    assert!(format!("{q:?}").contains("logged_in: false"));
    q.logout().unwrap();
    q.upload_limit().unwrap();
    let seen = s.seen.lock().unwrap();
    let lines: Vec<&str> = seen.iter().map(|r| r.line.as_str()).collect();
    assert_eq!(
        lines,
        [
            "GET /api/v2/transfer/uploadLimit HTTP/1.1",
            "POST /api/v2/auth/login HTTP/1.1",
            "GET /api/v2/transfer/uploadLimit HTTP/1.1",
            "POST /api/v2/auth/logout HTTP/1.1",
            "GET /api/v2/transfer/uploadLimit HTTP/1.1",
        ],
        "a second logout without a session sends nothing"
    );
    assert_eq!(seen[3].header("cookie").as_deref(), Some("QBT_SID_1=abc"));
    assert_eq!(seen[4].header("cookie"), None);
}

#[test]
fn a_read_is_retried_through_a_restart_and_a_setter_is_sent_once() {
    let (s, mut q) = scripted(
        vec![
            answer(503, "starting"),
            answer(502, "bad gateway"),
            answer(200, "1024"),
            answer(503, "starting"),
            answer(200, ""),
        ],
        "",
    );
    assert_eq!(q.upload_limit().unwrap(), RateLimit(1024));
    assert_eq!(s.seen.lock().unwrap().len(), 3);
    let e = q.set_upload_limit(RateLimit(2048)).unwrap_err();
    assert!(matches!(e, QbitError::Status { status: 503, .. }), "{e}");
    assert!(
        e.to_string().ends_with(&format!(
            "{}/api/v2/transfer/setUploadLimit answered HTTP 503: starting",
            s.url
        )),
        "{e}"
    );
    assert_eq!(
        s.seen.lock().unwrap().len(),
        4,
        "the setter was not retried"
    );
}

#[test]
fn a_timeout_is_unreachable_and_not_tried_again() {
    let mut slow = answer(200, "1");
    slow.delay = Duration::from_millis(1500);
    let s = serve(vec![slow]);
    let mut o = QbitOptions::new(&s.url);
    o.timeout = Duration::from_millis(300);
    let mut q = Qbittorrent::new(o).unwrap();
    let t = Instant::now();
    let e = q.upload_limit().unwrap_err();
    assert!(matches!(e, QbitError::Unreachable { .. }), "{e}");
    assert!(
        e.to_string().contains("timed out") && e.to_string().contains("request_timeout_ms"),
        "{e}"
    );
    // 300 ms, and no second try: it would start past the one-timeout deadline (the
    // one-at-a-time server is still asleep on the first, so time is what tells).
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(800),
        "{took:?}"
    );
}

#[test]
fn secrets_are_scrubbed_from_answers_and_long_answers_are_errors() {
    let (s, mut q) = scripted(
        vec![
            answer(403, "Forbidden"),
            answer(500, "login of admin with hunter2-secret crashed"),
            answer(403, "Forbidden"),
            answer(200, "echo: hunter2-secret"),
            answer(200, &"7".repeat(MAX_BODY as usize + 1)),
        ],
        "",
    );
    let e = q.upload_limit().unwrap_err().to_string();
    assert!(e.contains("HTTP 500") && e.contains("<redacted>"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
    let e = q.upload_limit().unwrap_err().to_string();
    assert!(e.contains("expected \"Ok.\" or \"Fails.\""), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
    q.backoff = None;
    let e = q.download_limit().unwrap_err();
    assert!(matches!(e, QbitError::BadAnswer { .. }), "{e}");
    assert!(e.to_string().contains("larger than 64 KiB"), "{e}");
    assert_eq!(s.seen.lock().unwrap().len(), 5);
}

#[test]
fn the_api_key_is_a_bearer_header_only_from_webapi_2_14_1() {
    let s = serve(vec![answer(200, "2.11.2"), answer(200, "5")]);
    let mut o = QbitOptions::new(&s.url);
    o.api_key = Some("qbt_topsecret".into());
    let mut q = Qbittorrent::new(o).unwrap();
    q.webapi_version().unwrap();
    q.upload_limit().unwrap();
    let seen = s.seen.lock().unwrap();
    assert_eq!(
        seen[0].header("authorization").as_deref(),
        Some("Bearer qbt_topsecret")
    );
    assert_eq!(seen[1].header("authorization"), None);
    drop(seen);

    let mut o = QbitOptions::new(&s.url);
    o.api_key = Some("qbt_\nbad".into());
    let e = Qbittorrent::new(o).unwrap().upload_limit().unwrap_err();
    assert!(matches!(e, QbitError::NoCredentials { .. }), "{e}");
    assert!(!e.to_string().contains("bad"), "{e}");
}

#[test]
fn back_off_doubles_caps_and_bans_wait_longest() {
    let mut o = QbitOptions::new("http://127.0.0.1:1");
    o.backoff_initial = Duration::from_secs(60);
    o.backoff_max = Duration::from_secs(3600);
    let mut q = Qbittorrent::new(o).unwrap();
    let now = Instant::now();
    let mut delays = Vec::new();
    for _ in 0..8 {
        q.start_backoff(now, false);
        delays.push(q.backoff.as_ref().unwrap().delay.as_secs());
    }
    assert_eq!(delays, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
    q.backoff = None;
    q.start_backoff(now, true);
    assert_eq!(q.backoff.as_ref().unwrap().delay.as_secs(), 3600);
    let msg = q.auth_problem().unwrap();
    assert!(
        msg.contains("banned") && msg.contains("next login attempt in"),
        "{msg}"
    );
    // While backing off, no request leaves: port 1 would answer "connection refused".
    q.opts.password = Some("x".into());
    let e = q.login().unwrap_err();
    assert!(matches!(e, QbitError::BackingOff { .. }), "{e}");
    assert_eq!(q.login_attempts(), 0);
    q.set_credentials("admin", Some("y".into()));
    assert!(q.auth_problem().is_none());
}
