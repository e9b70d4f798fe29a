//! The scrobble job end to end (issue 12): the real daemon binary, the fake Plex (its
//! `/status/sessions` listing and websocket `playing` frames shaped like
//! payloads/plex-ws-playing-error.json), webhooks posted to the daemon's HTTP listener
//! (payloads/plex-webhook-media-play.json's shape), and the fake Trakt (what it received and
//! answered is what a user's Trakt history would show). Users are linked by writing their
//! tokens to the store before the daemon starts, as `downshiftarr trakt login` does.
//!
//! No test asserts a speed: every wait is a generous deadline; the ≤ 50 ms dispatch is the
//! benchmark's to measure (`benches/scrobble_dispatch.rs`).

use std::io::{Read, Write};
use std::process::Child;
use std::time::{Duration, Instant};

use downshiftarr::clients::trakt::Tokens;
use downshiftarr::jobs::scrobble::tokens;
use downshiftarr::store::Store;
use serde_json::{json, Value};

use crate::daemon::{stop, Env};
use crate::fake_plex::FakePlex;
use crate::fake_trakt::{Answer, FakeTrakt, CLIENT_ID, CLIENT_SECRET, GOOD_TOKEN};

/// How long any expected change may take on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(15);
/// How long to keep watching for a call that must NOT come.
const QUIET: Duration = Duration::from_secs(3);

pub const SERVER_UUID: &str = "54664a3d8acc39983675640ec9ce00b70af9cc36";
pub const WEBHOOK_TOKEN: &str = "wh-0123456789abcdef0123456789abcdef";

/// A movie of the fake library ("Movie 0": imdb tt0000000, tmdb 100) and its length.
pub const MOVIE: u64 = 1001;
pub const OTHER_MOVIE: u64 = 1002;
pub const MOVIE_MS: i64 = 6_000_000;

/// One fake Plex (4 movies, a show of 3 episodes), one fake Trakt, one daemon configuration
/// with a `scrobble` section.
pub struct Rig {
    pub env: Env,
    pub trakt: FakeTrakt,
}

impl Rig {
    /// `scrobble` keys over the defaults used here (a forced stop after 10 s of silence, the least allowed); the
    /// sessions job polls every second, so a vanished session is seen soon.
    pub fn new(scrobble: Value) -> Rig {
        let env = Env::new(FakePlex::start(4, 1, 3), json!({}));
        let trakt = FakeTrakt::start();
        let mut section = json!({
            "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "trakt_url": trakt.url(),
            "forced_stop_after_s": 10, "server_uuid": SERVER_UUID,
        });
        for (k, v) in scrobble.as_object().unwrap() {
            section[k] = v.clone();
        }
        env.configure("scrobble", section);
        env.configure("enforce", json!({"guard_interval_s": 1}));
        env.configure("daemon", json!({"webhook_token": WEBHOOK_TOKEN}));
        Rig { env, trakt }
    }

    /// Links `user` to a Trakt account (the fake's good token).
    pub fn link(&self, user: &str) {
        let store = Store::open(&self.env.dir.path().join("state/index.sqlite")).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let t = Tokens {
            access_token: GOOD_TOKEN.into(),
            refresh_token: "refresh-token-1".into(),
            expires_in: 86_400,
            created_at: now,
            scope: Some("public".into()),
            token_type: Some("bearer".into()),
        };
        tokens::save(&store, user, &t).unwrap();
    }

    /// Starts the daemon and waits until it listens to Plex's notifications, has listed the
    /// sessions once and publishes the scrobble section.
    pub fn daemon(&self) -> Child {
        let ws = self.env.plex.websocket_connections();
        let polls = self.polls();
        let d = self.env.daemon();
        self.wait("the daemon never opened the notification websocket", || {
            self.env.plex.websocket_connections() > ws
        });
        self.wait("the daemon never listed the sessions", || {
            self.polls() > polls
        });
        self.wait_status("the scrobble section never appeared in status", |s| {
            s["users_linked"].is_array()
        });
        d
    }

    fn polls(&self) -> u64 {
        self.env
            .plex
            .play
            .polls
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Lists `sessions` and waits until the daemon has read a listing taken after the change.
    pub fn set_sessions(&self, sessions: Vec<Value>) {
        self.env.plex.play.set_sessions(sessions);
        let polls = self.polls();
        self.wait("the daemon never listed the sessions again", || {
            self.polls() > polls + 1
        });
    }

    /// The `scrobble` section of `downshiftarr status --json` (`null` while unreachable).
    pub fn status(&self) -> Value {
        let out = self.env.cli(&["status", "--json"]);
        serde_json::from_slice::<Value>(&out.stdout).map_or(Value::Null, |v| v["scrobble"].clone())
    }

    pub fn wait(&self, what: &str, f: impl Fn() -> bool) {
        let t = Instant::now();
        while !f() {
            assert!(t.elapsed() < DEADLINE, "{what} (waited {DEADLINE:?})");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_status(&self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let t = Instant::now();
        loop {
            let s = self.status();
            if f(&s) {
                return s;
            }
            assert!(t.elapsed() < DEADLINE, "{what}; last status: {s:#}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What Trakt took (201), in order: (action, progress, request body).
    pub fn taken(&self) -> Vec<(String, f64, Value)> {
        answers(&self.trakt)
            .into_iter()
            .filter(|(p, st, _)| p.starts_with("/scrobble/") && *st == 201)
            .map(|(p, _, b)| {
                (
                    p["/scrobble/".len()..].to_string(),
                    b["progress"].as_f64().unwrap_or(-1.0),
                    b,
                )
            })
            .collect()
    }

    /// Waits until Trakt took `n` calls and stays there for [`QUIET`] (no duplicate behind).
    pub fn settle(&self, n: usize) -> Vec<(String, f64, Value)> {
        self.wait(&format!("Trakt never took {n} calls"), || {
            self.taken().len() >= n
        });
        std::thread::sleep(QUIET);
        let t = self.taken();
        assert_eq!(t.len(), n, "more calls than expected: {:#?}", actions(&t));
        t
    }

    /// A websocket `playing` notification.
    pub fn frame(&self, session: &str, client: &str, rk: u64, state: &str, offset_ms: i64) {
        self.env
            .plex
            .notify(playing_frame(session, client, rk, state, offset_ms));
    }
}

pub fn actions(t: &[(String, f64, Value)]) -> Vec<(String, i64)> {
    t.iter()
        .map(|(a, p, _)| (a.clone(), p.round() as i64))
        .collect()
}

/// The `playing` notification Plex sends (payloads/plex-ws-playing-error.json's shape).
pub fn playing_frame(session: &str, client: &str, rk: u64, state: &str, offset_ms: i64) -> Value {
    json!({"NotificationContainer": {"type": "playing", "size": 1, "PlaySessionStateNotification": [
        {"sessionKey": session, "clientIdentifier": client, "guid": "", "ratingKey": rk.to_string(),
         "url": "", "key": format!("/library/metadata/{rk}"), "viewOffset": offset_ms,
         "playQueueItemID": 411763, "playQueueID": 21343, "state": state}]}})
}

/// A `/status/sessions` entry (apis.md §1.1) of `user` playing `rk` on `client`.
pub fn session(
    key: &str,
    user: &str,
    client: &str,
    rk: u64,
    kind: &str,
    duration_ms: i64,
) -> Value {
    json!({"sessionKey": key, "ratingKey": rk.to_string(), "key": format!("/library/metadata/{rk}"),
        "type": kind, "title": format!("Item {rk}"), "duration": duration_ms, "viewOffset": 0,
        "librarySectionID": "1",
        "Media": [{"id": rk * 10, "selected": true, "duration": duration_ms, "videoResolution": "1080"}],
        "User": {"id": "7", "title": user, "thumb": "https://plex.tv/users/x/avatar"},
        "Player": {"address": "192.168.1.20", "machineIdentifier": client, "platform": "Android",
            "product": "Plex for Android (TV)", "state": "playing", "title": "Living Room Shield", "local": true},
        "Session": {"id": format!("session-{key}"), "bandwidth": 12000, "location": "lan"}})
}

/// (path, status, request body) of every request the fake Trakt answered, in order.
pub fn answers(trakt: &FakeTrakt) -> Vec<(String, u16, Value)> {
    trakt
        .answered()
        .into_iter()
        .map(|(r, st)| (r.path.clone(), st, r.json()))
        .collect()
}

fn ms(pct: f64, total: i64) -> i64 {
    (total as f64 * pct / 100.0) as i64
}

/// The body of the `media.*` webhook Plex posts (payloads/plex-webhook-media-play.json's shape)
/// for a movie of the fake library.
pub fn webhook(
    event: &str,
    user: &str,
    player: &str,
    rk: u64,
    offset_ms: i64,
    server: &str,
) -> Value {
    let i = rk - 1001;
    json!({"event": event, "user": true, "owner": user == "alice",
        "Account": {"id": 1, "thumb": "https://plex.tv/users/1022b120ffbaa/avatar?c=1465525047", "title": user},
        "Server": {"title": "Office", "uuid": server},
        "Player": {"local": true, "publicAddress": "200.200.200.200", "title": "Plex Web (Safari)", "uuid": player},
        "Metadata": {"librarySectionType": "movie", "ratingKey": rk.to_string(), "key": format!("/library/metadata/{rk}"),
            "guid": format!("plex://movie/5d77{rk:020x}"), "Guid": [{"id": format!("imdb://tt{i:07}")}, {"id": format!("tmdb://{}", 100 + i)}],
            "librarySectionID": 1, "type": "movie", "title": format!("Movie {i}"), "year": 1980 + i,
            "duration": MOVIE_MS, "viewOffset": offset_ms, "addedAt": 1000396126, "updatedAt": 1432897518}})
}

/// POSTs to the daemon's HTTP listener; the status code.
pub fn post(addr: &str, path: &str, content_type: &str, body: &[u8]) -> u16 {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A webhook as Plex posts it: `multipart/form-data` with the JSON in the `payload` part.
pub fn post_multipart(addr: &str, payload: &Value) -> u16 {
    let boundary = "------------------------d74496d66958873e";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"payload\"\r\nContent-Type: application/json\r\n\r\n{payload}\r\n--{boundary}--\r\n"
    );
    post(
        addr,
        &format!("/webhook/plex/{WEBHOOK_TOKEN}"),
        &format!("multipart/form-data; boundary={boundary}"),
        body.as_bytes(),
    )
}

pub fn http_addr(env: &Env) -> String {
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(&env.cfg).unwrap()).unwrap();
    cfg["daemon"]["http_listen"].as_str().unwrap().to_string()
}

#[test]
fn a_movie_watched_to_the_end_is_one_start_and_one_play_however_noisy_the_player() {
    let rig = Rig::new(json!({}));
    rig.link("alice");
    rig.env.plex.play.set_sessions(vec![session(
        "1", "alice", "tv-1", MOVIE, "movie", MOVIE_MS,
    )]);
    let d = rig.daemon();
    rig.frame("1", "tv-1", MOVIE, "playing", 0);
    rig.wait("no start reached Trakt", || !rig.taken().is_empty());
    // Plex repeats `playing` every few seconds; a pause, its repeats, a resume, a seek.
    for (state, pct) in [
        ("playing", 1.0),
        ("playing", 2.0),
        ("paused", 40.0),
        ("paused", 40.0),
        ("paused", 40.2),
        ("playing", 40.2),
        ("playing", 41.0),
        ("playing", 70.0), // a seek forward
        ("playing", 71.0),
    ] {
        rig.frame("1", "tv-1", MOVIE, state, ms(pct, MOVIE_MS));
        std::thread::sleep(Duration::from_millis(30));
    }
    rig.frame("1", "tv-1", MOVIE, "stopped", ms(97.0, MOVIE_MS));
    rig.frame("1", "tv-1", MOVIE, "stopped", ms(97.0, MOVIE_MS));
    rig.wait("the stop never reached Trakt", || {
        rig.taken().iter().any(|(a, _, _)| a == "stop")
    });
    std::thread::sleep(QUIET);
    let t = rig.taken();
    let a = actions(&t);
    assert_eq!(a.first().map(|x| x.0.as_str()), Some("start"), "{a:?}");
    assert_eq!(
        a.iter().filter(|x| x.0 == "stop").count(),
        1,
        "one play: {a:?}"
    );
    assert_eq!(a.last().map(|x| x.0.as_str()), Some("stop"), "{a:?}");
    let (_, progress, body) = t.last().unwrap();
    assert!(
        *progress >= 96.0 && *progress <= 98.0,
        "stop at 97 %: {progress}"
    );
    assert_eq!(body["movie"]["ids"]["imdb"], "tt0000000", "{body}");
    // The repeats are dropped: at most one pause for the three paused frames (none when the
    // stop superseded it before its turn), a start for the first frame, the resume and the
    // seek at most.
    assert!(a.iter().filter(|x| x.0 == "pause").count() <= 1, "{a:?}");
    assert!(a.iter().filter(|x| x.0 == "start").count() <= 3, "{a:?}");
    let s = rig.wait_status("the outbox never emptied", |s| s["outbox_depth"] == 0);
    assert!(s["last_delivery"].is_string(), "{s:#}");
    assert!(s["duplicates_suppressed"].as_u64().unwrap() >= 1, "{s:#}");
    let text = String::from_utf8_lossy(&rig.env.cli(&["status"]).stdout).into_owned();
    assert!(text.contains("users linked: alice"), "{text}");
    let m = crate::daemon::http_get(&http_addr(&rig.env), "/metrics");
    for want in [
        "downshiftarr_scrobble_events_total{source=\"websocket\",result=\"in\"}",
        "downshiftarr_scrobble_events_total{source=\"websocket\",result=\"suppressed\"}",
        "downshiftarr_scrobble_calls_total{action=\"stop\"",
        "downshiftarr_scrobble_outbox_depth 0",
        "downshiftarr_scrobble_dispatch_seconds_count",
    ] {
        assert!(m.contains(want), "{want} not in /metrics:\n{m}");
    }
    stop(d);
}

#[test]
fn autoplay_of_the_next_episode_stops_the_first_and_starts_the_second() {
    let rig = Rig::new(json!({}));
    rig.link("alice");
    // The show's episodes follow the 4 movies and the show itself: 1006, 1007, 1008.
    let (e1, e2) = (1006, 1007);
    let len = 2_400_000;
    rig.env
        .plex
        .play
        .set_sessions(vec![session("4", "alice", "tv-1", e1, "episode", len)]);
    let d = rig.daemon();
    rig.frame("4", "tv-1", e1, "playing", 0);
    rig.wait("no start", || !rig.taken().is_empty());
    rig.frame("4", "tv-1", e1, "playing", ms(98.0, len));
    // Plex moves the play queue on: the same session now plays the next episode.
    rig.env
        .plex
        .play
        .set_sessions(vec![session("4", "alice", "tv-1", e2, "episode", len)]);
    rig.frame("4", "tv-1", e2, "playing", 0);
    let t = rig.settle(3);
    let a = actions(&t);
    assert_eq!(a[0].0, "start");
    assert_eq!(a[1].0, "stop", "{a:?}");
    assert!(a[1].1 >= 97, "the first episode is a play: {a:?}");
    assert_eq!(a[2].0, "start", "{a:?}");
    assert_ne!(
        t[1].2["episode"], t[2].2["episode"],
        "two different episodes"
    );
    stop(d);
}

#[test]
fn a_shared_user_outside_the_whitelist_and_a_trailer_send_nothing() {
    let rig = Rig::new(json!({"users": ["alice"]}));
    rig.link("alice");
    rig.link("bob"); // linked, but not in scrobble.users
    rig.env.plex.play.set_sessions(vec![
        session("2", "bob", "tv-2", OTHER_MOVIE, "movie", MOVIE_MS),
        session("3", "alice", "tv-1", 99_999, "clip", 150_000),
    ]);
    let d = rig.daemon();
    rig.frame("2", "tv-2", OTHER_MOVIE, "playing", 0);
    rig.frame("3", "tv-1", 99_999, "playing", 0);
    rig.frame("2", "tv-2", OTHER_MOVIE, "stopped", ms(95.0, MOVIE_MS));
    rig.frame("3", "tv-1", 99_999, "stopped", 149_000);
    // Then alice's real movie: its calls prove the events above were seen and refused.
    rig.set_sessions(vec![session(
        "5", "alice", "tv-1", MOVIE, "movie", MOVIE_MS,
    )]);
    rig.frame("5", "tv-1", MOVIE, "playing", 0);
    let t = rig.settle(1);
    assert_eq!(
        t[0].2["movie"]["ids"]["imdb"], "tt0000000",
        "only alice's movie: {:?}",
        t[0].2
    );
    let log = std::fs::read_to_string(rig.env.log()).unwrap_or_default();
    assert!(
        log.contains("not scrobbled: bob"),
        "the refusal names the user:\n{log}"
    );
    stop(d);
}

#[test]
fn a_session_that_vanishes_gets_a_forced_stop_at_its_last_progress() {
    let rig = Rig::new(json!({}));
    rig.link("alice");
    rig.env.plex.play.set_sessions(vec![session(
        "6", "alice", "tv-1", MOVIE, "movie", MOVIE_MS,
    )]);
    let d = rig.daemon();
    rig.frame("6", "tv-1", MOVIE, "playing", 0);
    rig.frame("6", "tv-1", MOVIE, "playing", ms(93.0, MOVIE_MS));
    rig.wait("no start", || !rig.taken().is_empty());
    // The client dies: no `stopped`, and Plex stops listing the session. The stop comes
    // `forced_stop_after_s` (10, the least allowed) after the last event.
    rig.env.plex.play.set_sessions(Vec::new());
    let t0 = Instant::now();
    while !rig.taken().iter().any(|(a, _, _)| a == "stop") {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no forced stop: {:?}",
            actions(&rig.taken())
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(QUIET);
    let a = actions(&rig.taken());
    assert_eq!(a.iter().filter(|x| x.0 == "stop").count(), 1, "{a:?}");
    let last = a.last().unwrap();
    assert_eq!(last.0, "stop", "{a:?}");
    assert!(
        (92..=94).contains(&last.1),
        "stopped at its last progress: {a:?}"
    );
    stop(d);
}

#[test]
fn a_failed_session_listing_is_not_a_vanished_session() {
    let rig = Rig::new(json!({}));
    rig.link("alice");
    rig.env.plex.play.set_sessions(vec![session(
        "6", "alice", "tv-1", MOVIE, "movie", MOVIE_MS,
    )]);
    let d = rig.daemon();
    rig.frame("6", "tv-1", MOVIE, "playing", ms(50.0, MOVIE_MS));
    rig.wait("no start", || !rig.taken().is_empty());
    // Plex answers 500 to everything from now on: the listing fails, nothing is concluded.
    let seen = rig
        .env
        .plex
        .requests
        .load(std::sync::atomic::Ordering::SeqCst);
    rig.env
        .plex
        .faults
        .fail_after
        .store(seen.max(1), std::sync::atomic::Ordering::SeqCst);
    // Longer than `forced_stop_after_s` plus a tick.
    std::thread::sleep(Duration::from_secs(13));
    let a = actions(&rig.taken());
    assert!(
        a.iter().all(|x| x.0 == "start"),
        "no stop while Plex is unreachable: {a:?}"
    );
    stop(d);
}

#[test]
fn webhooks_scrobble_and_another_servers_are_ignored() {
    let rig = Rig::new(json!({}));
    rig.link("alice");
    let d = rig.daemon();
    let addr = http_addr(&rig.env);
    let path = format!("/webhook/plex/{WEBHOOK_TOKEN}");
    // Another server's webhook: taken by the listener, ignored by the job.
    let other = webhook(
        "media.play",
        "alice",
        "web-9",
        OTHER_MOVIE,
        0,
        "ffffffffffffffffffffffffffffffffffffffff",
    );
    assert_eq!(post_multipart(&addr, &other), 200);
    // Ours, multipart (as Plex posts) then raw JSON.
    assert_eq!(
        post_multipart(
            &addr,
            &webhook("media.play", "alice", "web-1", MOVIE, 0, SERVER_UUID)
        ),
        200
    );
    rig.wait("the webhook's start never reached Trakt", || {
        !rig.taken().is_empty()
    });
    let stop_hook = webhook(
        "media.scrobble",
        "alice",
        "web-1",
        MOVIE,
        ms(91.0, MOVIE_MS),
        SERVER_UUID,
    );
    assert_eq!(
        post(
            &addr,
            &path,
            "application/json",
            stop_hook.to_string().as_bytes()
        ),
        200
    );
    let stop_hook = webhook(
        "media.stop",
        "alice",
        "web-1",
        MOVIE,
        ms(91.0, MOVIE_MS),
        SERVER_UUID,
    );
    assert_eq!(
        post(
            &addr,
            &path,
            "application/json",
            stop_hook.to_string().as_bytes()
        ),
        200
    );
    rig.wait("the webhook's stop never reached Trakt", || {
        rig.taken().iter().any(|(a, _, _)| a == "stop")
    });
    std::thread::sleep(QUIET);
    let t = rig.taken();
    assert!(
        t.iter()
            .all(|(_, _, b)| b["movie"]["ids"]["imdb"] == "tt0000000"),
        "the other server's movie was scrobbled: {t:#?}"
    );
    assert_eq!(
        t.iter().filter(|(a, _, _)| a == "stop").count(),
        1,
        "{:?}",
        actions(&t)
    );
    stop(d);
}

#[test]
fn the_same_play_by_websocket_and_webhook_is_one_play_on_trakt() {
    let rig = Rig::new(json!({}));
    rig.link("alice");
    rig.env.plex.play.set_sessions(vec![session(
        "7", "alice", "web-1", MOVIE, "movie", MOVIE_MS,
    )]);
    let d = rig.daemon();
    let addr = http_addr(&rig.env);
    let path = format!("/webhook/plex/{WEBHOOK_TOKEN}");
    rig.frame("7", "web-1", MOVIE, "playing", 0);
    post(
        &addr,
        &path,
        "application/json",
        webhook("media.play", "alice", "web-1", MOVIE, 0, SERVER_UUID)
            .to_string()
            .as_bytes(),
    );
    rig.frame("7", "web-1", MOVIE, "playing", ms(50.0, MOVIE_MS));
    rig.frame("7", "web-1", MOVIE, "stopped", ms(96.0, MOVIE_MS));
    post(
        &addr,
        &path,
        "application/json",
        webhook(
            "media.scrobble",
            "alice",
            "web-1",
            MOVIE,
            ms(96.0, MOVIE_MS),
            SERVER_UUID,
        )
        .to_string()
        .as_bytes(),
    );
    post(
        &addr,
        &path,
        "application/json",
        webhook(
            "media.stop",
            "alice",
            "web-1",
            MOVIE,
            ms(96.0, MOVIE_MS),
            SERVER_UUID,
        )
        .to_string()
        .as_bytes(),
    );
    rig.wait("no stop", || {
        rig.taken().iter().any(|(a, _, _)| a == "stop")
    });
    std::thread::sleep(QUIET);
    let a = actions(&rig.taken());
    let plays = a.iter().filter(|x| x.0 == "stop" && x.1 >= 80).count();
    assert_eq!(plays, 1, "one play on Trakt: {a:?}");
    assert_eq!(
        a.iter().filter(|x| x.0 == "start").count(),
        1,
        "one start: {a:?}"
    );
    stop(d);
}

#[test]
fn trakt_down_during_plays_gets_them_later_once_and_in_order() {
    let rig = Rig::new(json!({}));
    rig.link("alice");
    rig.env.plex.play.set_sessions(vec![
        session("8", "alice", "tv-1", MOVIE, "movie", MOVIE_MS),
        session("18", "alice", "tv-1", OTHER_MOVIE, "movie", MOVIE_MS),
    ]);
    // Down: 503, a Cloudflare 520, a 503 for the starts.
    rig.trakt.script(
        "/scrobble/start",
        vec![
            Answer::new(503, ""),
            Answer::cloudflare_520(),
            Answer::new(503, ""),
        ],
    );
    let d = rig.daemon();
    rig.frame("8", "tv-1", MOVIE, "playing", 0);
    rig.wait("Trakt was never tried", || !answers(&rig.trakt).is_empty());
    // The first movie ends (its stop supersedes the start Trakt never took), the next begins.
    rig.frame("8", "tv-1", MOVIE, "stopped", ms(90.0, MOVIE_MS));
    rig.frame("18", "tv-1", OTHER_MOVIE, "playing", 0);
    let t = Instant::now();
    let mut beat = Instant::now();
    while rig.taken().len() < 2 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "never delivered: {:?}",
            answers(&rig.trakt)
        );
        // The second movie plays on: Plex repeats its notification every few seconds.
        if beat.elapsed() > Duration::from_secs(2) {
            rig.frame("18", "tv-1", OTHER_MOVIE, "playing", 0);
            beat = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(QUIET);
    let taken = rig.taken();
    assert_eq!(
        actions(&taken),
        vec![("stop".to_string(), 90), ("start".to_string(), 0)],
        "once each, in the order they happened"
    );
    assert_eq!(taken[0].2["movie"]["ids"]["imdb"], "tt0000000");
    let refused = answers(&rig.trakt)
        .iter()
        .filter(|(_, s, _)| *s != 201)
        .count();
    assert_eq!(
        refused,
        3,
        "the scripted failures were met: {:?}",
        answers(&rig.trakt)
    );
    stop(d);
}

#[test]
fn kill_9_after_the_write_delivers_after_restart_exactly_once() {
    let rig = Rig::new(json!({}));
    rig.link("alice");
    rig.env.plex.play.set_sessions(vec![session(
        "9", "alice", "tv-1", MOVIE, "movie", MOVIE_MS,
    )]);
    // Trakt refuses everything for now: the calls are written and stay in the outbox.
    let down: Vec<Answer> = (0..1000).map(|_| Answer::new(503, "")).collect();
    rig.trakt.script("/scrobble/start", down.clone());
    rig.trakt.script("/scrobble/stop", down);
    let mut d = rig.daemon();
    rig.frame("9", "tv-1", MOVIE, "playing", 0);
    rig.frame("9", "tv-1", MOVIE, "stopped", ms(95.0, MOVIE_MS));
    // The stop supersedes the start Trakt never took: one call waits, tried at least once.
    rig.wait("the stop was never tried", || {
        answers(&rig.trakt)
            .iter()
            .any(|(p, _, _)| p == "/scrobble/stop")
    });
    rig.wait_status("the stop is not in the outbox", |s| s["outbox_depth"] == 1);
    d.kill().unwrap(); // SIGKILL
    d.wait().unwrap();
    assert!(rig.taken().is_empty(), "nothing was taken before the kill");
    rig.trakt.unscript("/scrobble/start");
    rig.trakt.unscript("/scrobble/stop");
    let d = rig.daemon();
    let t = rig.settle(1);
    assert_eq!(actions(&t), vec![("stop".to_string(), 95)]);
    rig.wait_status("the outbox never emptied", |s| s["outbox_depth"] == 0);
    stop(d);
}

#[test]
fn paused_scrobbling_follows_plays_but_queues_nothing_new() {
    let rig = Rig::new(json!({}));
    rig.link("alice");
    rig.env.plex.play.set_sessions(vec![session(
        "10", "alice", "tv-1", MOVIE, "movie", MOVIE_MS,
    )]);
    let d = rig.daemon();
    let addr = http_addr(&rig.env);
    assert_eq!(
        post(&addr, "/api/scrobble/stop", "application/json", b""),
        200
    );
    rig.wait_status("status never said paused", |s| s["paused"] == true);
    rig.frame("10", "tv-1", MOVIE, "playing", 0);
    std::thread::sleep(QUIET);
    assert!(
        rig.taken().is_empty(),
        "paused: {:?}",
        actions(&rig.taken())
    );
    assert_eq!(
        post(&addr, "/api/scrobble/start", "application/json", b""),
        200
    );
    rig.wait_status("status never said resumed", |s| s["paused"] == false);
    rig.frame("10", "tv-1", MOVIE, "stopped", ms(85.0, MOVIE_MS));
    let t = rig.settle(1);
    // The play was followed while paused: its stop is known as the stop of a started play.
    assert_eq!(actions(&t), vec![("stop".to_string(), 85)]);
    stop(d);
}

#[test]
fn with_nobody_linked_the_job_runs_and_says_what_to_do() {
    let rig = Rig::new(json!({}));
    let d = rig.daemon();
    let s = rig.wait_status("no problem shown", |s| s["problem"].is_string());
    assert!(
        s["problem"]
            .as_str()
            .unwrap()
            .contains("downshiftarr trakt login --user NAME"),
        "{s:#}"
    );
    let text = String::from_utf8_lossy(&rig.env.cli(&["status"]).stdout).into_owned();
    assert!(
        text.contains("scrobble PROBLEM: no Plex user has a Trakt account linked"),
        "{text}"
    );
    stop(d);
}
