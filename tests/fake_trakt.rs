//! A fake Trakt API v2 (std `TcpListener`) reproducing `fixtures/trakt-payloads` (copied from
//! `reference/payloads/trakt-*`) byte for byte: the 201 scrobble bodies, the 409 body, the 429
//! headers, plus 5xx, a Cloudflare 520 page, 401 for an expired token, search results and the
//! device-flow states. It checks the required headers as Trakt does (no or wrong
//! `trakt-api-key` → 403, no `trakt-api-version: 2` → 400, a POST not in JSON → 412), records
//! every request, and can be scripted per path (the next N answers). The tests after it drive
//! the real client (`downshiftarr::clients::trakt`) against it.

use std::collections::{HashMap, VecDeque};
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use downshiftarr::clients::trakt::{
    AnsweredAction, DevicePoll, IdType, Ids, Media, ScrobbleAction, ScrobbleItem, SearchType,
    Trakt, TraktError, TraktOptions,
};
use serde_json::{json, Value};

const START_MOVIE_REQ: &str =
    include_str!("../fixtures/trakt-payloads/trakt-scrobble-start-movie.request.json");
const START_BY_SHOW_REQ: &str =
    include_str!("../fixtures/trakt-payloads/trakt-scrobble-start-episode-by-show.request.json");
const START_MOVIE_201: &str =
    include_str!("../fixtures/trakt-payloads/trakt-scrobble-start-movie.response-201.json");
const START_EPISODE_201: &str =
    include_str!("../fixtures/trakt-payloads/trakt-scrobble-start-episode.response-201.json");
const STOP_EPISODE_201: &str =
    include_str!("../fixtures/trakt-payloads/trakt-scrobble-stop-episode.response-201.json");
const STOP_PAUSE_201: &str = include_str!(
    "../fixtures/trakt-payloads/trakt-scrobble-stop-below-80-treated-as-pause.response-201.json"
);
const CONFLICT_409: &str = include_str!("../fixtures/trakt-payloads/trakt-scrobble-409.json");
const RATELIMIT_HEADERS: &str =
    include_str!("../fixtures/trakt-payloads/trakt-ratelimit-429-headers.txt");

/// The page Cloudflare serves when Trakt's origin breaks (520), shortened.
const CLOUDFLARE_520: &str = "<!DOCTYPE html>\n<html lang=\"en-US\">\n<head><title>api.trakt.tv | 520: Web server is returning an unknown error</title></head>\n<body><div id=\"cf-error-details\"><h1>Web server is returning an unknown error</h1><span>Error code 520</span><p>Cloudflare Ray ID: 8f1e2d3c4b5a6978</p></div></body>\n</html>\n";

pub const CLIENT_ID: &str = "fake-client-id-0123456789abcdef";
pub const CLIENT_SECRET: &str = "fake-client-secret-fedcba9876543210";
pub const GOOD_TOKEN: &str = "access-token-good-5f5f5f5f";
pub const EXPIRED_TOKEN: &str = "access-token-expired-6e6e6e6e";

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Wait this long before answering (a slow Trakt).
    pub delay: Duration,
}

impl Answer {
    pub fn new(status: u16, body: &str) -> Answer {
        Answer {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.into(),
            delay: Duration::ZERO,
        }
    }
    pub fn conflict() -> Answer {
        Answer::new(409, CONFLICT_409)
    }
    /// 429 with the recorded `X-Ratelimit` and `Retry-After` headers.
    pub fn rate_limited() -> Answer {
        let mut a = Answer::new(429, "");
        for line in RATELIMIT_HEADERS.lines().filter(|l| !l.starts_with('#')) {
            if let Some((n, v)) = line.split_once(": ") {
                a.headers.push((n.into(), v.into()));
            }
        }
        a
    }
    pub fn cloudflare_520() -> Answer {
        let mut a = Answer::new(520, CLOUDFLARE_520);
        a.headers = vec![("Content-Type".into(), "text/html; charset=UTF-8".into())];
        a
    }
    pub fn slow(mut self, d: Duration) -> Answer {
        self.delay = d;
        self
    }
}

#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    /// Without the query.
    pub path: String,
    pub query: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub at: Instant,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

#[derive(Default)]
struct State {
    log: Vec<Req>,
    script: HashMap<String, VecDeque<Answer>>,
    /// The refresh token that works now (single-use, rotated by each refresh).
    refresh_token: String,
    refreshes: u32,
    /// `remember_plays`: the items (per token) a stop ≥ 80 % made a play of; a repeat is a 409.
    plays: Option<std::collections::HashSet<String>>,
    /// `inject`: every n-th scrobble request takes the next of these answers (cycling).
    faults: Option<(u64, Vec<Answer>)>,
    scrobbles: u64,
    /// The status answered to each request of `log` (same index).
    statuses: Vec<u16>,
    /// More access tokens that work (one per user in the outbox tests).
    tokens: Vec<String>,
    /// Refreshed pairs are created now (as Trakt does), not at the recorded time.
    fresh: bool,
    chaos: Option<Chaos>,
}

/// Seeded random failures of the scrobble POSTs (the outbox's replay test).
#[derive(Clone, Debug)]
pub struct Chaos {
    pub seed: u64,
    /// Per-mille of 5xx / Cloudflare 52x answers.
    pub server_errors: u64,
    /// Per-mille of 429s, with `Retry-After: retry_after_s`.
    pub rate_limits: u64,
    pub retry_after_s: u64,
    /// Per-mille of answers slower than the client waits (a 503 nobody reads).
    pub timeouts: u64,
    pub slow: Duration,
}

impl Chaos {
    fn roll(&mut self) -> u64 {
        // xorshift64: the same seed, the same failures.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed % 1000
    }
}

pub struct FakeTrakt {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl FakeTrakt {
    pub fn start() -> FakeTrakt {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            refresh_token: "refresh-token-1".into(),
            ..State::default()
        }));
        let shared = state.clone();
        // The listener thread ends with the test process.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || serve(stream, &shared));
            }
        });
        FakeTrakt { port, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> Vec<Req> {
        self.state.lock().unwrap().log.clone()
    }

    /// Every request with the status it was answered.
    pub fn answered(&self) -> Vec<(Req, u16)> {
        let s = self.state.lock().unwrap();
        s.log
            .iter()
            .cloned()
            .zip(s.statuses.iter().copied())
            .collect()
    }

    /// `token` works as an access token too.
    pub fn accept_token(&self, token: &str) {
        self.state.lock().unwrap().tokens.push(token.into());
    }

    /// Refreshed pairs say they were created now (Trakt's `created_at`), so they are not
    /// due for a refresh at once.
    pub fn fresh_tokens(&self) {
        self.state.lock().unwrap().fresh = true;
    }

    /// Random failures of the scrobble POSTs from now on (unscripted answers only).
    pub fn chaos(&self, chaos: Chaos) {
        self.state.lock().unwrap().chaos = Some(chaos);
    }

    /// Refreshes answered so far.
    pub fn refreshes(&self) -> u32 {
        self.state.lock().unwrap().refreshes
    }

    /// The next answers for `path` (before the default behaviour resumes).
    pub fn script(&self, path: &str, answers: Vec<Answer>) {
        self.state
            .lock()
            .unwrap()
            .script
            .entry(path.into())
            .or_default()
            .extend(answers);
    }

    /// Answers a stop ≥ 80 % of an item this token already made a play of with 409, as
    /// Trakt does within its window (apis.md §3.4): a re-sent stop is then visible as a 409.
    pub fn remember_plays(&self) {
        self.state.lock().unwrap().plays = Some(Default::default());
    }

    /// Every `every`-th scrobble request (from now on) gets the next of `answers`, cycling.
    pub fn inject(&self, every: u64, answers: Vec<Answer>) {
        let mut s = self.state.lock().unwrap();
        s.scrobbles = 0;
        s.faults = Some((every.max(1), answers));
    }

    /// Forgets the scripted answers still queued for `path` (Trakt is back).
    pub fn unscript(&self, path: &str) {
        self.state.lock().unwrap().script.remove(path);
    }

    /// Scripts one device login: `/oauth/device/code` answers with this poll interval
    /// (Trakt says 5 s; a test waits less), and the polls get `states` in order — 400
    /// pending, 404/409/410/418/429 as Trakt sends them, 200 the approval with the pair
    /// `(access, refresh)` (apis.md §3.3).
    pub fn device_flow(&self, interval_s: u64, states: &[u16], access: &str, refresh: &str) {
        let code = json!({
            "device_code": "d9c126a7706328d808914cfd1e40274b6e009f684b1aca271b8b0f31e3f5",
            "user_code": "5055CC52",
            "verification_url": "https://trakt.tv/activate",
            "expires_in": 600,
            "interval": interval_s,
        });
        self.script(
            "/oauth/device/code",
            vec![Answer::new(200, &code.to_string())],
        );
        let answers = states
            .iter()
            .map(|&s| match s {
                200 => Answer::new(200, &tokens_json(access, refresh).to_string()),
                other => Answer::new(other, ""),
            })
            .collect();
        self.script("/oauth/device/token", answers);
    }

    pub fn client(&self) -> Trakt {
        let mut o = TraktOptions::new(CLIENT_ID, CLIENT_SECRET);
        o.base_url = self.url();
        o.read_timeout = Duration::from_secs(2);
        Trakt::new(o).unwrap()
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    // Keep-alive: answer requests on this connection until it closes.
    while let Some(r) = crate::fake_service::read_request(&mut reader) {
        let req = Req {
            method: r.method,
            path: r.path,
            query: r.query,
            headers: r.headers,
            body: r.body,
            at: Instant::now(),
        };
        let a = {
            let mut s = state.lock().unwrap();
            s.log.push(req.clone());
            let a = answer(&req, &mut s);
            s.statuses.push(a.status);
            a
        };
        std::thread::sleep(a.delay);
        let mut out = format!(
            "HTTP/1.1 {} X\r\nContent-Length: {}\r\n",
            a.status,
            a.body.len()
        );
        for (n, v) in &a.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        out.push_str("\r\n");
        out.push_str(&a.body);
        let mut w = &stream;
        if w.write_all(out.as_bytes()).is_err() {
            return;
        }
    }
}

fn answer(req: &Req, s: &mut State) -> Answer {
    // Required headers first, as Trakt checks them before anything else.
    if req.header("trakt-api-key") != Some(CLIENT_ID) {
        return Answer::new(403, "");
    }
    if req.header("trakt-api-version") != Some("2") {
        return Answer::new(400, "");
    }
    if req.method == "POST" && req.header("content-type") != Some("application/json") {
        return Answer::new(412, "");
    }
    if let Some(a) = s.script.get_mut(&req.path).and_then(VecDeque::pop_front) {
        return a;
    }
    if req.path.starts_with("/scrobble/") {
        s.scrobbles += 1;
        let fault = s.faults.as_ref().and_then(|(every, answers)| {
            (s.scrobbles.is_multiple_of(*every) && !answers.is_empty())
                .then(|| answers[((s.scrobbles / every) as usize - 1) % answers.len()].clone())
        });
        match fault {
            // A slow success: Trakt did the work, the answer is late (the client may have
            // given up by then and send it again).
            Some(f) if f.status == 201 => {
                let mut a = work(req, s);
                a.delay = f.delay;
                return a;
            }
            Some(f) => return f,
            None => {}
        }
    }
    work(req, s)
}

/// What Trakt does with a request that passed the header checks and the scripts.
fn work(req: &Req, s: &mut State) -> Answer {
    let body = req.json();
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", p) if p.starts_with("/scrobble/") => {
            if let Some(c) = s.chaos.as_mut() {
                let r = c.roll();
                if r < c.server_errors {
                    return if r % 2 == 0 {
                        Answer::new(503, "")
                    } else {
                        Answer::cloudflare_520()
                    };
                }
                if r < c.server_errors + c.rate_limits {
                    let mut a = Answer::new(429, "");
                    a.headers
                        .push(("Retry-After".into(), c.retry_after_s.to_string()));
                    return a;
                }
                if r < c.server_errors + c.rate_limits + c.timeouts {
                    return Answer::new(503, "").slow(c.slow);
                }
            }
            match req.header("authorization") {
                // Each user's own token: the good one, or the good one with a suffix.
                Some(a) if a.starts_with(&format!("Bearer {GOOD_TOKEN}")) => {}
                Some(a)
                    if a.strip_prefix("Bearer ")
                        .is_some_and(|t| s.tokens.iter().any(|k| k == t)) => {}
                _ => {
                    return Answer::new(
                        401,
                        r#"{"error":"invalid_token","error_description":"The access token provided is expired, revoked, malformed, or invalid for other reasons."}"#,
                    )
                }
            }
            let action = &p["/scrobble/".len()..];
            let progress = body["progress"].as_f64().unwrap_or(0.0);
            if action == "stop" && progress >= 80.0 {
                let mut item = body.clone();
                if let Some(o) = item.as_object_mut() {
                    o.remove("progress");
                }
                let key = format!("{}|{item}", req.header("authorization").unwrap_or_default());
                if let Some(plays) = s.plays.as_mut() {
                    if !plays.insert(key) {
                        return Answer::conflict();
                    }
                }
            }
            let movie = body.get("movie").is_some();
            let bytes = match (action, movie, progress >= 80.0) {
                ("start", true, _) => START_MOVIE_201,
                ("start", false, _) => START_EPISODE_201,
                ("stop", true, false) => STOP_PAUSE_201,
                ("stop", false, true) => STOP_EPISODE_201,
                ("pause", _, _) | ("stop", _, _) => {
                    let mut v: Value = serde_json::from_str(if movie {
                        START_MOVIE_201
                    } else {
                        START_EPISODE_201
                    })
                    .unwrap();
                    v["action"] = json!(match (action, progress >= 80.0) {
                        ("stop", true) => "scrobble",
                        _ => "pause",
                    });
                    v["progress"] = body["progress"].clone();
                    return Answer::new(201, &v.to_string());
                }
                _ => return Answer::new(404, ""),
            };
            Answer::new(201, bytes)
        }
        ("GET", p) if p.starts_with("/search/") => {
            let movie: Value = serde_json::from_str(START_MOVIE_201).unwrap();
            let hit = json!([{ "type": "movie", "score": 1000.0, "movie": movie["movie"] }]);
            let known = p == "/search/imdb/tt2015381"
                || p == "/search/tmdb/118340"
                || (p == "/search/movie" && req.query.contains("query=Guardians"));
            Answer::new(200, &if known { hit } else { json!([]) }.to_string())
        }
        ("POST", "/oauth/device/code") => Answer::new(
            200,
            r#"{"device_code":"d9c126a7706328d808914cfd1e40274b6e009f684b1aca271b8b0f31e3f5","user_code":"5055CC52","verification_url":"https://trakt.tv/activate","expires_in":600,"interval":5}"#,
        ),
        // Unscripted: the user has not approved yet.
        ("POST", "/oauth/device/token") => Answer::new(400, ""),
        ("POST", "/oauth/token") => {
            if body["refresh_token"].as_str() != Some(s.refresh_token.as_str())
                || body["client_secret"].as_str() != Some(CLIENT_SECRET)
                || body["grant_type"].as_str() != Some("refresh_token")
            {
                return Answer::new(
                    401,
                    r#"{"error":"invalid_grant","error_description":"The provided authorization grant is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client."}"#,
                );
            }
            s.refreshes += 1;
            s.refresh_token = format!("refresh-token-{}", s.refreshes + 1);
            let mut pair = tokens_json(GOOD_TOKEN, &s.refresh_token);
            if s.fresh {
                pair["created_at"] = json!(std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs());
            }
            Answer::new(200, &pair.to_string())
        }
        _ => Answer::new(404, ""),
    }
}

fn tokens_json(access: &str, refresh: &str) -> Value {
    json!({
        "access_token": access,
        "token_type": "bearer",
        "expires_in": 86400,
        "refresh_token": refresh,
        "scope": "public",
        "created_at": 1_764_000_000u64,
    })
}

fn guardians() -> ScrobbleItem {
    ScrobbleItem::Movie(Media {
        title: Some("Guardians of the Galaxy".into()),
        year: Some(2014),
        ids: Ids {
            trakt: Some(28),
            slug: Some("guardians-of-the-galaxy-2014".into()),
            imdb: Some("tt2015381".into()),
            tmdb: Some(118340),
            tvdb: None,
        },
    })
}

fn pilot_by_show() -> ScrobbleItem {
    ScrobbleItem::ShowEpisode {
        show: Media {
            title: Some("Breaking Bad".into()),
            year: Some(2008),
            ids: Ids {
                trakt: Some(1),
                tvdb: Some(81189),
                ..Ids::default()
            },
        },
        season: 1,
        number: 1,
    }
}

fn json_of(s: &str) -> Value {
    serde_json::from_str(s).unwrap()
}

#[test]
fn scrobble_bodies_equal_the_recorded_requests_and_201s_parse() {
    let fake = FakeTrakt::start();
    let t = fake.client();
    let a = t
        .scrobble(GOOD_TOKEN, ScrobbleAction::Start, &guardians(), 1.25)
        .unwrap();
    assert_eq!(
        (a.id, a.action.clone(), a.progress),
        (0, AnsweredAction::Start, 1.25)
    );
    assert_eq!(a.movie.unwrap().ids.imdb.as_deref(), Some("tt2015381"));
    let e = t
        .scrobble(GOOD_TOKEN, ScrobbleAction::Start, &pilot_by_show(), 10.0)
        .unwrap();
    assert_eq!(e.episode.unwrap().ids.trakt, Some(16));
    assert_eq!(e.show.unwrap().ids.slug.as_deref(), Some("breaking-bad"));
    let log = fake.log();
    assert_eq!(log[0].path, "/scrobble/start");
    assert_eq!(log[0].json(), json_of(START_MOVIE_REQ));
    assert_eq!(log[1].json(), json_of(START_BY_SHOW_REQ));
    for r in &log {
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("trakt-api-key"), Some(CLIENT_ID));
        assert_eq!(r.header("trakt-api-version"), Some("2"));
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {GOOD_TOKEN}").as_str())
        );
    }
    // Episode by its own ids.
    t.scrobble(
        GOOD_TOKEN,
        ScrobbleAction::Pause,
        &ScrobbleItem::Episode(Ids {
            trakt: Some(16),
            ..Ids::default()
        }),
        50.0,
    )
    .unwrap();
    assert_eq!(
        fake.log()[2].json(),
        json!({"episode": {"ids": {"trakt": 16}}, "progress": 50})
    );
}

#[test]
fn a_stop_below_80_is_a_pause_and_above_is_a_play() {
    let fake = FakeTrakt::start();
    let t = fake.client();
    let a = t
        .scrobble(GOOD_TOKEN, ScrobbleAction::Stop, &guardians(), 75.0)
        .unwrap();
    assert_eq!((a.id, a.action.clone()), (1337, AnsweredAction::Pause));
    assert!(!a.is_play());
    let b = t
        .scrobble(GOOD_TOKEN, ScrobbleAction::Stop, &pilot_by_show(), 85.0)
        .unwrap();
    assert_eq!((b.id, b.progress), (3_373_536_623, 85.0));
    assert!(b.is_play());
}

#[test]
fn every_failure_is_sorted_into_what_the_outbox_does() {
    let fake = FakeTrakt::start();
    let t = fake.client();
    fake.script(
        "/scrobble/stop",
        vec![
            Answer::conflict(),
            Answer::rate_limited(),
            Answer::new(503, "<html>Service Unavailable</html>"),
            Answer::cloudflare_520(),
            Answer::new(404, ""),
            Answer::new(422, ""),
            Answer::new(423, "locked"),
            Answer::new(201, "not json"),
            Answer::new(201, "{}").slow(Duration::from_secs(4)),
        ],
    );
    let go = || t.scrobble(GOOD_TOKEN, ScrobbleAction::Stop, &guardians(), 90.0);
    assert_eq!(
        go().unwrap_err(),
        TraktError::AlreadyDone {
            watched_at: Some("2014-10-15T22:21:29.000Z".into()),
            expires_at: Some("2014-10-15T23:21:29.000Z".into()),
        }
    );
    match go().unwrap_err() {
        TraktError::RateLimited {
            retry_after, limit, ..
        } => {
            assert_eq!(retry_after, Duration::from_secs(10));
            let l = limit.unwrap();
            assert_eq!(l.name.as_deref(), Some("UNAUTHED_API_GET_LIMIT"));
            assert_eq!((l.period, l.remaining), (Some(300), Some(0)));
        }
        other => panic!("{other:?}"),
    }
    let e = go().unwrap_err();
    assert!(
        matches!(e, TraktError::Transient(_)) && e.retryable(),
        "{e:?}"
    );
    let e = go().unwrap_err();
    assert!(
        matches!(e, TraktError::Transient(ref m) if m.contains("520")),
        "{e:?}"
    );
    assert!(matches!(
        go().unwrap_err(),
        TraktError::NotFound { status: 404, .. }
    ));
    assert!(matches!(
        go().unwrap_err(),
        TraktError::NotFound { status: 422, .. }
    ));
    let e = go().unwrap_err();
    assert!(
        matches!(e, TraktError::Permanent { status: Some(423), ref message } if message.contains("locked")),
        "{e:?}"
    );
    assert!(!e.retryable());
    let e = go().unwrap_err();
    assert!(
        matches!(e, TraktError::Permanent { status: None, .. }),
        "{e:?}"
    );
    // A timeout is transient, and the POST was sent once (the outbox owns retries).
    let before = fake.log().len();
    let e = go().unwrap_err();
    assert!(matches!(e, TraktError::Transient(_)), "{e:?}");
    assert_eq!(fake.log().len(), before + 1);
    // 409 is final.
    assert!(!TraktError::AlreadyDone {
        watched_at: None,
        expires_at: None
    }
    .retryable());
}

#[test]
fn an_expired_token_is_unauthorized_and_a_refresh_rotates_the_pair() {
    let fake = FakeTrakt::start();
    let t = fake.client();
    let e = t
        .scrobble(EXPIRED_TOKEN, ScrobbleAction::Start, &guardians(), 5.0)
        .unwrap_err();
    assert!(matches!(e, TraktError::Unauthorized(_)), "{e:?}");
    assert!(!e.to_string().contains(EXPIRED_TOKEN));
    let new = t.refresh("refresh-token-1").unwrap();
    assert_eq!(new.access_token, GOOD_TOKEN);
    assert_eq!(new.refresh_token, "refresh-token-2");
    assert_eq!(new.expires_at(), 1_764_000_000 + 86_400);
    let sent = fake.log().last().unwrap().json();
    assert_eq!(
        sent,
        json!({"refresh_token": "refresh-token-1", "client_id": CLIENT_ID,
               "client_secret": CLIENT_SECRET, "redirect_uri": "urn:ietf:wg:oauth:2.0:oob",
               "grant_type": "refresh_token"})
    );
    // The old refresh token is spent.
    let e = t.refresh("refresh-token-1").unwrap_err();
    assert!(matches!(e, TraktError::Unauthorized(_)), "{e:?}");
    assert!(!e.to_string().contains("refresh-token-1"));
    assert!(!e.to_string().contains(CLIENT_SECRET));
    t.scrobble(&new.access_token, ScrobbleAction::Start, &guardians(), 5.0)
        .unwrap();
}

#[test]
fn device_login_walks_through_every_state() {
    let fake = FakeTrakt::start();
    let t = fake.client();
    let code = t.device_code().unwrap();
    assert_eq!((code.user_code.as_str(), code.interval), ("5055CC52", 5));
    assert_eq!(fake.log()[0].json(), json!({"client_id": CLIENT_ID}));
    let tokens = tokens_json("new-access", "new-refresh").to_string();
    fake.script(
        "/oauth/device/token",
        vec![
            Answer::new(400, ""),
            Answer::new(429, ""),
            Answer::new(404, ""),
            Answer::new(409, ""),
            Answer::new(410, ""),
            Answer::new(418, ""),
            Answer::new(200, &tokens),
        ],
    );
    let polls: Vec<DevicePoll> = (0..7)
        .map(|_| t.poll_device_token(&code.device_code).unwrap())
        .collect();
    assert_eq!(
        &polls[..6],
        &[
            DevicePoll::Pending,
            DevicePoll::SlowDown,
            DevicePoll::InvalidCode,
            DevicePoll::AlreadyUsed,
            DevicePoll::Expired,
            DevicePoll::Denied,
        ]
    );
    match &polls[6] {
        DevicePoll::Authorized(tk) => {
            assert_eq!(tk.refresh_token, "new-refresh");
            assert!(!format!("{tk:?}").contains("new-access"));
        }
        other => panic!("{other:?}"),
    }
    let last = fake.log().last().unwrap().json();
    assert_eq!(
        last,
        json!({"code": code.device_code, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
    );
    // Unscripted: still pending; a 5xx while polling is an error, not "pending".
    assert_eq!(t.poll_device_token("x").unwrap(), DevicePoll::Pending);
    fake.script("/oauth/device/token", vec![Answer::new(502, "")]);
    assert!(t.poll_device_token("x").is_err());
}

#[test]
fn search_by_id_and_by_title_and_errors_are_not_empty() {
    let fake = FakeTrakt::start();
    let t = fake.client();
    let hits = t
        .search_id(IdType::Imdb, "tt2015381", SearchType::Movie)
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].kind, "movie");
    assert_eq!(hits[0].movie.as_ref().unwrap().ids.trakt, Some(28));
    let r = &fake.log()[0];
    assert_eq!((r.method.as_str(), r.query.as_str()), ("GET", "type=movie"));
    assert!(t
        .search_id(IdType::Tvdb, "999", SearchType::Show)
        .unwrap()
        .is_empty());
    let hits = t
        .search_text(SearchType::Movie, "Guardians of the Galaxy", Some(2014))
        .unwrap();
    assert_eq!(hits.len(), 1);
    let q = &fake.log()[2].query;
    assert!(
        q.contains("years=2014") && q.contains("query=Guardians"),
        "{q}"
    );
    // A hostile id stays one path segment.
    t.search_id(IdType::Imdb, "../oauth/token?x", SearchType::Movie)
        .unwrap();
    assert_eq!(fake.log()[3].path, "/search/imdb/..%2Foauth%2Ftoken%3Fx");
    // A failing search is an error (retried as a GET), never an empty list.
    fake.script(
        "/search/imdb/tt2015381",
        vec![
            Answer::new(500, ""),
            Answer::new(500, ""),
            Answer::new(500, ""),
        ],
    );
    let e = t
        .search_id(IdType::Imdb, "tt2015381", SearchType::Movie)
        .unwrap_err();
    assert!(matches!(e, TraktError::Transient(_)), "{e:?}");
}

#[test]
fn the_fake_refuses_missing_headers_like_trakt() {
    let fake = FakeTrakt::start();
    let mut o = TraktOptions::new("wrong-key", CLIENT_SECRET);
    o.base_url = fake.url();
    let t = Trakt::new(o).unwrap();
    let e = t
        .scrobble(GOOD_TOKEN, ScrobbleAction::Start, &guardians(), 1.0)
        .unwrap_err();
    assert!(
        matches!(
            e,
            TraktError::Permanent {
                status: Some(403),
                ..
            }
        ),
        "{e:?}"
    );
    // Neither the app key, the secret nor the token is in the message.
    let m = e.to_string();
    assert!(!m.contains("wrong-key") && !m.contains(CLIENT_SECRET) && !m.contains(GOOD_TOKEN));
    let c = reqwest::blocking::Client::new();
    let r = c
        .post(format!("{}/scrobble/start", fake.url()))
        .header("trakt-api-key", CLIENT_ID)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = c
        .post(format!("{}/scrobble/start", fake.url()))
        .header("trakt-api-key", CLIENT_ID)
        .header("trakt-api-version", "2")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 412);
}

#[test]
fn posts_with_one_token_are_a_second_apart_and_others_are_not_held() {
    let fake = FakeTrakt::start();
    let t = Arc::new(fake.client());
    let started = Instant::now();
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let t = t.clone();
            std::thread::spawn(move || {
                t.scrobble(GOOD_TOKEN, ScrobbleAction::Start, &guardians(), 1.0)
                    .unwrap();
            })
        })
        .collect();
    for h in threads {
        h.join().unwrap();
    }
    let mut at: Vec<Instant> = fake.log().iter().map(|r| r.at).collect();
    at.sort();
    assert_eq!(at.len(), 3);
    for w in at.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(990),
            "{:?}",
            w[1] - w[0]
        );
    }
    assert!(started.elapsed() >= Duration::from_millis(1980));
    // Another token right after is not paced behind the first (it is refused: not GOOD).
    let t0 = Instant::now();
    let _ = t.scrobble("other-user-token", ScrobbleAction::Start, &guardians(), 1.0);
    assert!(t0.elapsed() < Duration::from_millis(500));
}

#[test]
fn a_hostile_or_missing_retry_after_gives_a_bounded_wait() {
    let fake = FakeTrakt::start();
    let t = fake.client();
    let mut huge = Answer::new(429, "");
    huge.headers.push(("Retry-After".into(), "99999999".into()));
    let mut junk = Answer::new(429, "");
    junk.headers.push(("Retry-After".into(), "soon".into()));
    junk.headers
        .push(("X-Ratelimit".into(), "{not json".into()));
    fake.script("/scrobble/pause", vec![huge, junk]);
    let wait = |e: TraktError| match e {
        TraktError::RateLimited {
            retry_after, limit, ..
        } => (retry_after, limit.is_some()),
        other => panic!("{other:?}"),
    };
    let go = || t.scrobble(GOOD_TOKEN, ScrobbleAction::Pause, &guardians(), 40.0);
    assert_eq!(wait(go().unwrap_err()), (Duration::from_secs(3600), false));
    assert_eq!(wait(go().unwrap_err()), (Duration::from_secs(30), false));
}

#[test]
fn the_fake_can_remember_plays_and_inject_failures_every_nth_call() {
    let fake = FakeTrakt::start();
    fake.remember_plays();
    fake.inject(3, vec![Answer::new(503, "")]);
    let t = fake.client();
    let stop = |token: &str| t.scrobble(token, ScrobbleAction::Stop, &guardians(), 90.0);
    assert!(stop(GOOD_TOKEN).is_ok(), "the first play is taken");
    assert!(
        matches!(stop(GOOD_TOKEN), Err(TraktError::AlreadyDone { .. })),
        "the same play again is a 409"
    );
    assert!(
        stop(&format!("{GOOD_TOKEN}-bob")).unwrap_err().retryable(),
        "the third call meets the injected 503"
    );
    assert!(
        stop(&format!("{GOOD_TOKEN}-bob")).is_ok(),
        "another user's own play"
    );
    let statuses: Vec<u16> = fake.answered().iter().map(|a| a.1).collect();
    assert_eq!(statuses, vec![201, 409, 503, 201]);
}
