//! The dashboard's JSON endpoints and auth (issue 14) against the real daemon binary, the
//! fake Plex, the real shim and (for the throttle restore) a real qBittorrent: each
//! endpoint's shape, the decision shown for each playing session, filters and paging, the
//! login and its cookie, the CSRF header rule, the actions, and no secret in any answer.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use downshiftarr::clients::qbittorrent::RateLimit;
use serde_json::{json, Value};

use crate::daemon::{stop, wait_for_daemon, Env, MOVIE0_4K, MOVIE3_4K};
use crate::fake_plex::{FakePlex, Play};
use crate::http_api::{addr_of, get, request};
use crate::plex_job::PlexJob;
use crate::qbittorrent::{kib, RealQbit, PASSWORD, USER};
use crate::util;

const API_KEY: &str = "dash-api-key-5c1e7f0b2a";
const HOOK: &str = "dash-hook-token-9a8b7c6d";
const TAUTULLI_KEY: &str = "dash-tautulli-key-3d2e1f";
const QBIT_PASSWORD: &str = "dash-qbit-password-6f5e4d";
const MESSAGE: &str = "Pick the 1080p version, please.";
/// Sent by a proxy: the request is not from this host, whatever its address.
const ELSEWHERE: (&str, &str) = ("X-Forwarded-For", "203.0.113.50");
const DEADLINE: Duration = Duration::from_secs(20);

fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t.elapsed() < DEADLINE, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs the real shim on a Plex-shaped job for `input` in transcode session `tx`.
fn shim(env: &Env, input: &str, tx: &str) -> Output {
    let progress =
        format!("http://127.0.0.1:32400/video/:/transcode/session/{tx}/0a1b2c3d/progress");
    let args: Vec<OsString> = PlexJob::sw_dash(input).progress(Some(&progress)).args();
    Command::new(util::shim())
        .args(args)
        .env(
            "DOWNSHIFTARR_REAL_TRANSCODER",
            util::recording_transcoder(env.dir.path()),
        )
        .env("DOWNSHIFTARR_CONFIG", &env.cfg)
        .env("DOWNSHIFTARR_DECISION_LOG", "")
        .env("REC", env.dir.path().join("exec-args"))
        .output()
        .unwrap()
}

/// Every secret the configuration holds.
fn secrets(env: &Env) -> Vec<String> {
    vec![
        env.plex.token.clone(),
        API_KEY.into(),
        HOOK.into(),
        TAUTULLI_KEY.into(),
        QBIT_PASSWORD.into(),
    ]
}

fn assert_no_secret(what: &str, body: &str, secrets: &[String]) {
    for s in secrets {
        assert!(
            !body.contains(s.as_str()),
            "{what} shows a secret ({s}):\n{body}"
        );
    }
}

/// A daemon with every kind of secret configured, a refused 4K transcode (bob), a switched
/// one (alice) and an exempt viewer's direct play (carol) playing.
fn playing_env() -> (Env, std::process::Child) {
    let env = Env::new(FakePlex::start(4, 0, 0), json!({}));
    env.configure("daemon", json!({"api_key": API_KEY, "webhook_token": HOOK}));
    env.configure(
        "shim",
        json!({"kill_messages": {"unknown_source": MESSAGE}, "exempt_users": ["carol"]}),
    );
    env.configure(
        "enforce",
        json!({"session_lookup_retries": 30, "session_lookup_delay_s": 0.1, "guard_interval_s": 1}),
    );
    env.configure(
        "tautulli",
        json!({"url": "http://127.0.0.1:9", "api_key": TAUTULLI_KEY}),
    );
    env.configure(
        "throttle",
        json!({"qbittorrent_url": "http://127.0.0.1:9", "username": "admin", "password": QBIT_PASSWORD, "streaming_upload_kib_s": 500,
               "request_timeout_ms": 500}),
    );
    std::fs::set_permissions(&env.cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
    let d = env.daemon();
    wait_for_daemon(&env.socket(), MOVIE0_4K);
    // Alice's 4K transcode: the index knows its 1080p version, so the shim switches.
    let out = shim(&env, MOVIE3_4K, "tx-switch-1");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let mut carol = Play::session(
        "23",
        "sess-23",
        "tx-none",
        1001,
        10010,
        "carol",
        "tv-c",
        "transcode",
    );
    carol.as_object_mut().unwrap().remove("TranscodeSession");
    carol["Session"]["location"] = json!("lan");
    env.plex.play.set_sessions(vec![
        Play::session(
            "21",
            "sess-21",
            "tx-refused-1",
            1002,
            10020,
            "bob",
            "tv-b",
            "transcode",
        ),
        Play::session(
            "22",
            "sess-22",
            "tx-switch-1",
            1004,
            10041,
            "alice",
            "tv-a",
            "transcode",
        ),
        carol,
    ]);
    // Bob's: a file nobody knows, that cannot be probed: refused (fail closed).
    let out = shim(
        &env,
        "/data/Movies/Unknown (2001)/Unknown.mkv",
        "tx-refused-1",
    );
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    wait_until("bob's session is terminated", || {
        (!env.plex.play.terminations().is_empty()).then_some(())
    });
    (env, d)
}

fn by_key<'a>(playing: &'a [Value], key: &str) -> &'a Value {
    playing
        .iter()
        .find(|p| p["session_key"] == key)
        .unwrap_or_else(|| panic!("session {key} not in {playing:#?}"))
}

#[test]
fn dashboard_endpoints_show_each_session_decision_and_the_audit() {
    let (env, daemon) = playing_env();
    let addr = addr_of(&env);
    let secrets = secrets(&env);

    // Summary: the three sessions, each with its decision, once Plex listed them and the
    // audit named their viewers.
    let summary = wait_until("the summary shows the three sessions decided", || {
        let s = get(&addr, "/api/dashboard/summary").json();
        let p = s["now_playing"].as_array()?;
        let kinds: Vec<&str> = p
            .iter()
            .filter_map(|x| x["decision"]["kind"].as_str())
            .collect();
        (p.len() == 3 && kinds.contains(&"refuse") && kinds.contains(&"switch")).then_some(s)
    });
    for k in ["generated_at_ms", "uptime_s"] {
        assert!(summary[k].is_u64(), "{k}: {summary:#}");
    }
    assert!(summary["version"].is_string());
    let playing = summary["now_playing"].as_array().unwrap();
    let bob = by_key(playing, "21");
    assert_eq!(bob["user"], "bob");
    assert_eq!(bob["client"], "Living Room Shield (Plex for Android (TV))");
    assert_eq!(bob["play"], "transcode");
    assert_eq!(bob["location"], "wan");
    assert_eq!(bob["address"], "203.0.113.9");
    assert_eq!(bob["state"], "playing");
    let d = &bob["decision"];
    assert_eq!(d["kind"], "refuse", "{bob:#}");
    assert_eq!(d["label"], "refused");
    assert_eq!(d["message"], MESSAGE, "the message the viewer was shown");
    assert!(
        d["reason"]
            .as_str()
            .unwrap()
            .contains("source facts unknown"),
        "{d}"
    );
    let refused_id = d["decision_id"].as_i64().expect("decision_id");
    let alice = by_key(playing, "22");
    let d = &alice["decision"];
    assert_eq!(d["kind"], "switch", "{alice:#}");
    let to = d["switch_to"].as_str().unwrap();
    assert!(to.contains("1080p") && to.contains("media 10040"), "{to}");
    assert_eq!(d["message"], Value::Null);
    assert!(
        alice["version"].as_str().unwrap().starts_with("2160p"),
        "the version played: {alice:#}"
    );
    let switch_id = d["decision_id"].as_i64().unwrap();
    let carol = by_key(playing, "23");
    assert_eq!(carol["play"], "direct_play");
    assert_eq!(carol["location"], "lan");
    assert_eq!(carol["decision"]["kind"], "exempt", "{carol:#}");

    let jobs = summary["jobs"].as_array().unwrap();
    let job = |n: &str| {
        jobs.iter()
            .find(|j| j["name"] == n)
            .unwrap_or_else(|| panic!("no job {n}: {jobs:#?}"))
    };
    for n in [
        "heal",
        "index",
        "socket",
        "guard",
        "throttle",
        "scrobble",
        "downloads",
    ] {
        let j = job(n);
        assert!(
            ["ok", "off", "failing", "starting"].contains(&j["state"].as_str().unwrap()),
            "{j}"
        );
        assert!(j["summary"].is_string() && j["facts"].is_array(), "{j}");
    }
    assert_eq!(job("index")["state"], "ok");
    assert!(job("index")["facts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["label"] == "Files"));
    assert_eq!(job("heal")["state"], "off", "heal_transcoder is false here");
    assert_eq!(job("scrobble")["state"], "off");
    assert_eq!(summary["scrobble"]["state"], "off");
    // qBittorrent does not answer: the throttle job says so, in words.
    let throttle_job = wait_until("the throttle reports qBittorrent unreachable", || {
        let s = get(&addr, "/api/dashboard/summary").json();
        let j = s["jobs"]
            .as_array()?
            .iter()
            .find(|j| j["name"] == "throttle")?
            .clone();
        j["last_error"].is_string().then_some(j)
    });
    assert!(
        throttle_job["last_error"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1:9"),
        "{throttle_job}"
    );
    assert_eq!(summary["throttle"]["state"], "idle");
    assert_eq!(summary["actions"]["sync"], true);
    assert_eq!(summary["actions"]["throttle_restore"], false);

    // The audit, newest first, with what the filters offer.
    let all = get(&addr, "/api/dashboard/decisions").json();
    let rows = all["decisions"].as_array().unwrap();
    assert!(rows.len() >= 2, "{all:#}");
    let ids: Vec<i64> = rows.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    for k in ["refuse", "switch"] {
        assert!(
            all["kinds"].as_array().unwrap().contains(&json!(k)),
            "{all:#}"
        );
    }
    assert!(
        all["users"].as_array().unwrap().contains(&json!("bob")),
        "{all:#}"
    );
    let refused = rows.iter().find(|r| r["id"] == refused_id).unwrap();
    assert_eq!(refused["origin"], "shim");
    assert_eq!(refused["decision"], "refuse");
    assert_eq!(refused["file"], "/data/Movies/Unknown (2001)/Unknown.mkv");
    assert_eq!(refused["session"], "tx-refused-1");
    assert!(refused["at"].as_str().unwrap().ends_with('Z'));
    wait_until("the refusal's outcome is stored", || {
        let r = get(&addr, &format!("/api/dashboard/decisions/{refused_id}")).json();
        r["outcome"]
            .as_str()
            .is_some_and(|o| o.starts_with("terminated"))
            .then_some(())
    });
    let only = get(&addr, "/api/dashboard/decisions?kind=refuse").json();
    let only = only["decisions"].as_array().unwrap();
    assert!(
        !only.is_empty() && only.iter().all(|r| r["decision"] == "refuse"),
        "{only:#?}"
    );
    let bobs = get(&addr, "/api/dashboard/decisions?user=bob").json();
    let bobs = bobs["decisions"].as_array().unwrap();
    assert!(
        !bobs.is_empty() && bobs.iter().all(|r| r["user"] == "bob"),
        "{bobs:#?}"
    );
    let none = get(&addr, "/api/dashboard/decisions?user=nobody%20at%20all").json();
    assert_eq!(none["decisions"], json!([]));
    let first = get(&addr, "/api/dashboard/decisions?limit=1").json();
    assert_eq!(first["decisions"].as_array().unwrap().len(), 1);
    let next = first["next_before_id"].as_i64().expect("a next page");
    let second = get(
        &addr,
        &format!("/api/dashboard/decisions?limit=1&before_id={next}"),
    )
    .json();
    assert!(second["decisions"][0]["id"].as_i64().unwrap() < next);
    assert_eq!(get(&addr, "/api/dashboard/decisions?limit=x").status, 400);

    // One decision with its record: the stream mapping of the switch.
    let one = get(&addr, &format!("/api/dashboard/decisions/{switch_id}")).json();
    assert_eq!(one["id"], switch_id);
    assert_eq!(one["decision"], "switch");
    let rec = &one["record"];
    assert_eq!(rec["switched_to"]["media_id"], "10040", "{one:#}");
    assert!(
        !rec["switched_to"]["streams"].as_array().unwrap().is_empty(),
        "{one:#}"
    );
    assert!(
        rec["changes"].as_array().is_some_and(|c| !c.is_empty()),
        "the argv changes: {one:#}"
    );
    assert_eq!(get(&addr, "/api/dashboard/decisions/999999").status, 404);
    assert_eq!(get(&addr, "/api/dashboard/decisions/abc").status, 400);

    // Charts: arrays as long as `days`, today's counts in the last slot.
    let c = get(&addr, "/api/dashboard/charts?days=7").json();
    let days = c["days"].as_array().unwrap();
    assert_eq!(days.len(), 7);
    for k in ["pass", "rewrite", "switch", "refuse"] {
        assert_eq!(c["decisions"][k].as_array().unwrap().len(), 7, "{k}: {c:#}");
    }
    for k in ["transcodes_prevented", "throttled_hours", "scrobbles_sent"] {
        assert_eq!(c[k].as_array().unwrap().len(), 7, "{k}: {c:#}");
    }
    assert!(c["decisions"]["refuse"][6].as_u64().unwrap() >= 1, "{c:#}");
    assert!(c["decisions"]["switch"][6].as_u64().unwrap() >= 1, "{c:#}");
    assert!(c["transcodes_prevented"][6].as_u64().unwrap() >= 2, "{c:#}");
    let default = get(&addr, "/api/dashboard/charts").json();
    assert_eq!(default["days"].as_array().unwrap().len(), 30);
    assert_eq!(get(&addr, "/api/dashboard/unknown").status, 404);
    assert_eq!(
        request(&addr, "POST", "/api/dashboard/summary", &[], b"").status,
        405
    );

    // A record that carries secrets (an older shim's, a hand-imported log line): the
    // endpoints still show none of them.
    let leaky = json!({"time": "2026-01-01T00:00:00.000Z", "decision": "pass", "reason": "live tv",
        "input": format!("http://127.0.0.1:32400/livetv/a/index.m3u8?X-Plex-Token={}", env.plex.token),
        "notes": [format!("key {API_KEY} and {TAUTULLI_KEY}")], "api_key": QBIT_PASSWORD});
    env.db()
        .execute(
            "INSERT INTO decisions(time, decision, reason, input, record, origin) VALUES (?1, 'pass', 'live tv', ?2, ?3, 'shim')",
            rusqlite::params![leaky["time"].as_str(), leaky["input"].as_str(), leaky.to_string()],
        )
        .unwrap();
    // No secret in any answer the page uses (the login page included).
    let mut pages = vec![
        "/api/dashboard/summary".to_string(),
        "/api/dashboard/decisions?limit=500".into(),
        "/api/dashboard/charts".into(),
        "/api/scrobble/status".into(),
        "/login".into(),
        "/health".into(),
    ];
    let listed = get(&addr, "/api/dashboard/decisions?limit=500").json();
    for r in listed["decisions"].as_array().unwrap() {
        pages.push(format!("/api/dashboard/decisions/{}", r["id"]));
    }
    for p in &pages {
        let a = get(&addr, p);
        assert!(a.status < 400, "{p}: {}", a.status);
        assert_no_secret(p, &format!("{}\n{}", a.head, a.text()), &secrets);
    }
    let a = request(&addr, "GET", "/login", &[ELSEWHERE], b"");
    assert_no_secret("/login from elsewhere", &a.text(), &secrets);
    stop(daemon);
}

fn form_key(key: &str) -> Vec<u8> {
    format!(
        "api_key={}",
        key.replace('%', "%25")
            .replace('&', "%26")
            .replace('+', "%2B")
    )
    .into_bytes()
}

#[test]
fn dashboard_auth_from_elsewhere_needs_the_key_or_a_login_and_csrf_on_posts() {
    let env = Env::new(FakePlex::start(2, 0, 0), json!({}));
    env.configure("daemon", json!({"api_key": API_KEY}));
    std::fs::set_permissions(&env.cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
    let daemon = env.daemon();
    wait_for_daemon(&env.socket(), MOVIE0_4K);
    let addr = addr_of(&env);

    // On loopback, not proxied: open.
    assert_eq!(get(&addr, "/api/dashboard/summary").status, 200);
    // Elsewhere without a key: 401, no dashboard data.
    let a = request(&addr, "GET", "/api/dashboard/summary", &[ELSEWHERE], b"");
    assert_eq!(a.status, 401, "{}", a.text());
    assert!(!a.text().contains("now_playing"), "{}", a.text());
    let a = request(&addr, "GET", "/api/dashboard/decisions", &[ELSEWHERE], b"");
    assert_eq!(a.status, 401);
    // The login form.
    let a = request(&addr, "GET", "/login", &[ELSEWHERE], b"");
    assert_eq!(a.status, 200);
    assert!(a.header("Content-Type").unwrap().starts_with("text/html"));
    assert!(a.text().contains("name=\"api_key\"") && a.text().contains("action=\"/login\""));
    let form = [
        ELSEWHERE,
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    // A wrong key: the form again, 401, no cookie.
    let a = request(&addr, "POST", "/login", &form, &form_key("not-the-key"));
    assert_eq!(a.status, 401);
    assert!(a.text().contains("wrong key"));
    assert!(a.header("Set-Cookie").is_none());
    // The right key: a session cookie (never the key), HttpOnly, SameSite=Strict.
    let a = request(&addr, "POST", "/login", &form, &form_key(API_KEY));
    assert_eq!(a.status, 303, "{} {}", a.head, a.text());
    assert_eq!(a.header("Location").as_deref(), Some("/"));
    let set = a.header("Set-Cookie").expect("a cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains(API_KEY), "{set}");
    let pair = set.split(';').next().unwrap().to_string();
    let id = pair.strip_prefix("downshiftarr_session=").unwrap();
    assert_eq!(id.len(), 64, "{set}");
    let cookie = ("Cookie", pair.as_str());
    let a = request(
        &addr,
        "GET",
        "/api/dashboard/summary",
        &[ELSEWHERE, cookie],
        b"",
    );
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.json()["now_playing"].is_array());
    // A forged cookie is nobody.
    let forged = format!("downshiftarr_session={}", "0".repeat(64));
    let a = request(
        &addr,
        "GET",
        "/api/dashboard/summary",
        &[ELSEWHERE, ("Cookie", &forged)],
        b"",
    );
    assert_eq!(a.status, 401);
    // A POST on the cookie alone needs the CSRF header.
    let a = request(&addr, "POST", "/api/sync", &[ELSEWHERE, cookie], b"");
    assert_eq!(a.status, 403, "{}", a.text());
    assert!(a.text().contains("X-Downshiftarr-Action"), "{}", a.text());
    let a = request(
        &addr,
        "POST",
        "/api/scrobble/stop",
        &[ELSEWHERE, cookie],
        b"",
    );
    assert_eq!(a.status, 403, "every POST: {}", a.text());
    let a = request(
        &addr,
        "POST",
        "/api/sync",
        &[ELSEWHERE, cookie, ("X-Downshiftarr-Action", "1")],
        b"",
    );
    assert_eq!(a.status, 202, "{}", a.text());
    assert_eq!(a.json()["ok"], true);
    // The bearer key needs no CSRF header (a browser never sends it on its own).
    let bearer = ("Authorization", format!("Bearer {API_KEY}"));
    let a = request(
        &addr,
        "POST",
        "/api/sync",
        &[ELSEWHERE, (bearer.0, &bearer.1)],
        b"",
    );
    assert_eq!(a.status, 202, "{}", a.text());
    let a = request(
        &addr,
        "GET",
        "/api/dashboard/charts",
        &[ELSEWHERE, (bearer.0, &bearer.1)],
        b"",
    );
    assert_eq!(a.status, 200);
    // Logging out ends the session and clears the cookie.
    let a = request(&addr, "POST", "/logout", &[ELSEWHERE, cookie], b"");
    assert_eq!(a.status, 303);
    assert!(a.header("Set-Cookie").unwrap().contains("Max-Age=0"));
    let a = request(
        &addr,
        "GET",
        "/api/dashboard/summary",
        &[ELSEWHERE, cookie],
        b"",
    );
    assert_eq!(a.status, 401, "logged out");
    // Too many wrong keys: refused for a while, even the right one.
    for _ in 0..12 {
        request(&addr, "POST", "/login", &form, &form_key("guess"));
    }
    let a = request(&addr, "POST", "/login", &form, &form_key(API_KEY));
    assert_eq!(a.status, 429, "{}", a.text());
    stop(daemon);
}

fn metric(addr: &str, name: &str) -> f64 {
    get(addr, "/metrics")
        .text()
        .lines()
        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0.0)
}

#[test]
fn dashboard_sync_action_runs_a_sync_now() {
    let env = Env::new(FakePlex::start(3, 0, 0), json!({}));
    let daemon = env.daemon();
    wait_for_daemon(&env.socket(), MOVIE0_4K);
    let addr = addr_of(&env);
    let passes = "downshiftarr_sync_passes_total ";
    wait_until("the first sync", || {
        (metric(&addr, passes) >= 1.0).then_some(())
    });
    // No interval (sync_interval_s 0): only a request makes a second pass.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(metric(&addr, passes), 1.0);
    let before = env.plex.requests.load(Ordering::SeqCst);
    assert_eq!(get(&addr, "/api/sync").status, 405);
    let a = request(&addr, "POST", "/api/sync", &[], b"");
    assert_eq!(a.status, 202, "{}", a.text());
    let v = a.json();
    assert_eq!(v["ok"], true);
    assert!(v["message"].as_str().unwrap().contains("sync"), "{v}");
    wait_until("the requested sync", || {
        (metric(&addr, passes) >= 2.0).then_some(())
    });
    assert!(
        env.plex.requests.load(Ordering::SeqCst) > before,
        "Plex was asked again"
    );
    stop(daemon);
}

/// A remote stream as `/status/sessions` lists it.
fn remote(key: &str, user: &str) -> Value {
    let n: u64 = key.parse().unwrap();
    Play::session(
        key,
        &format!("session-{key}"),
        &format!("tx-{key}"),
        100 + n,
        200 + n,
        user,
        &format!("client-{key}"),
        "transcode",
    )
}

fn playing_frame(key: &str, state: &str) -> Value {
    let n: u64 = key.parse().unwrap();
    json!({"NotificationContainer": {"type": "playing", "size": 1, "PlaySessionStateNotification": [
        {"sessionKey": key, "clientIdentifier": format!("client-{key}"), "guid": "",
         "ratingKey": (100 + n).to_string(), "url": "", "key": format!("/library/metadata/{}", 100 + n),
         "viewOffset": 0, "playQueueItemID": 1, "playQueueID": 1, "state": state,
         "transcodeSession": format!("tx-{key}")}]}})
}

#[test]
fn dashboard_throttle_restore_gives_qbittorrent_its_limits_back_now() {
    let Some(qbit) = RealQbit::start(true) else {
        return;
    };
    let env = Env::new(FakePlex::start(1, 0, 0), json!({}));
    env.configure(
        "throttle",
        json!({"qbittorrent_url": qbit.url(), "username": USER, "password": PASSWORD,
               "streaming_upload_kib_s": 500, "poll_interval_s": 1, "idle_threshold": 2,
               "restore_delay_s": 0, "request_timeout_ms": 3000}),
    );
    let mut owner = qbit.client(Some(PASSWORD));
    let ws = env.plex.websocket_connections();
    let daemon = env.daemon();
    wait_until("the notification websocket", || {
        (env.plex.websocket_connections() > ws).then_some(())
    });
    let addr = addr_of(&env);
    let summary = || get(&addr, "/api/dashboard/summary").json();
    wait_until("the throttle job's status", || {
        (summary()["throttle"]["state"] == "idle").then_some(())
    });
    // Nothing throttled: nothing to give back, and it says so.
    let a = request(&addr, "POST", "/api/throttle/restore", &[], b"");
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(
        a.json()["message"]
            .as_str()
            .unwrap()
            .contains("nothing to restore"),
        "{}",
        a.text()
    );

    env.plex.play.set_sessions(vec![remote("1", "alice")]);
    env.plex.notify(playing_frame("1", "playing"));
    wait_until("the remote stream throttles", || {
        (owner.upload_limit() == Ok(kib(500))).then_some(())
    });
    let s = wait_until("the summary shows the throttle", || {
        let s = summary();
        (s["throttle"]["state"] == "throttled").then_some(s)
    });
    assert_eq!(s["throttle"]["remote_streams"], 1, "{s:#}");
    assert_eq!(s["throttle"]["limit"], "upload 500 KiB/s (found unlimited)");
    assert!(s["throttle"]["since_ms"].is_u64(), "{s:#}");
    assert_eq!(s["actions"]["throttle_restore"], true);

    let a = request(&addr, "POST", "/api/throttle/restore", &[], b"");
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(v["ok"], true);
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("restored") && msg.contains("unlimited"),
        "{msg}"
    );
    assert!(msg.contains("until the remote streams end"), "{msg}");
    assert_eq!(
        owner.upload_limit(),
        Ok(RateLimit::UNLIMITED),
        "given back before the answer"
    );
    // The stream still plays: several polls later, still not throttled again.
    let polls = env.plex.play.polls.load(Ordering::SeqCst);
    wait_until("three more polls", || {
        (env.plex.play.polls.load(Ordering::SeqCst) >= polls + 3).then_some(())
    });
    assert_eq!(owner.upload_limit(), Ok(RateLimit::UNLIMITED));
    let s = summary();
    assert_eq!(s["throttle"]["state"], "idle", "{s:#}");
    let days: i64 = env
        .db()
        .query_row(
            "SELECT COUNT(*) FROM job_state WHERE job = 'throttle_days'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(days, 1, "the throttled time is counted for the chart");
    // Once the streams end and a new one starts, the throttle works again.
    env.plex.play.set_sessions(Vec::new());
    env.plex.notify(playing_frame("1", "stopped"));
    let polls = env.plex.play.polls.load(Ordering::SeqCst);
    wait_until("idle observations", || {
        (env.plex.play.polls.load(Ordering::SeqCst) >= polls + 3).then_some(())
    });
    env.plex.play.set_sessions(vec![remote("2", "bob")]);
    env.plex.notify(playing_frame("2", "playing"));
    wait_until("a new stream throttles again", || {
        (owner.upload_limit() == Ok(kib(500))).then_some(())
    });
    stop(daemon);
    assert_eq!(
        owner.upload_limit(),
        Ok(RateLimit::UNLIMITED),
        "given back at stop"
    );
}

/// The engine's side of the restore, against the faithful qBittorrent fake: exactly the limit
/// found goes back, the hold lasts while the streams play and ends with them.
#[test]
fn dashboard_throttle_restore_now_in_the_engine_holds_until_the_streams_end() {
    use downshiftarr::config::throttle::ThrottleSettings;
    use downshiftarr::config::Secret;
    use downshiftarr::jobs::throttle::run::{Engine, Outcome};
    use downshiftarr::plex::sessions::Session;
    use downshiftarr::store::Store;

    use crate::fake_qbittorrent::{FakeOptions, FakeQbit};

    let q = FakeQbit::start(FakeOptions::default());
    q.set_upload(3000 * 1024);
    let dir = tempfile::tempdir().unwrap();
    let db = Store::open(&dir.path().join("index.sqlite")).unwrap();
    let settings = ThrottleSettings {
        qbittorrent_url: q.url(),
        username: "admin".into(),
        password: Secret::new("right"),
        streaming_upload_kib_s: Some(500),
        restore_delay_s: 0,
        request_timeout_ms: 2000,
        ..ThrottleSettings::default()
    };
    let mut e = Engine::new(settings, false).unwrap();
    let msg = e.restore_now(&db, "test").unwrap();
    assert!(msg.contains("nothing to restore"), "{msg}");
    let mut s = Session {
        session_key: "1".into(),
        state: "playing".into(),
        location: Some("wan".into()),
        address: Some("203.0.113.9".into()),
        bandwidth_kbps: Some(8000),
        ..Session::default()
    };
    s.viewer.user = Some("alice".into());
    s.viewer.local = Some(false);
    let streaming = [s];
    let mut now = Instant::now();
    let mut feed = |e: &mut Engine, list: &[Session]| {
        now += Duration::from_secs(1);
        e.observe(now, list, None);
        e.reconcile(&db, now)
    };
    feed(&mut e, &streaming);
    assert!(matches!(feed(&mut e, &streaming), Outcome::Engaged(_)));
    assert_eq!(q.upload(), 500 * 1024);
    // Throttled periods are counted in whole seconds (the record's `since`).
    std::thread::sleep(Duration::from_millis(1100));
    let msg = e.restore_now(&db, "test").unwrap();
    assert!(
        msg.contains("restored") && msg.contains("3000 KiB/s"),
        "{msg}"
    );
    assert!(msg.contains("until the remote streams end"), "{msg}");
    assert_eq!(q.upload(), 3000 * 1024, "exactly what was found");
    for _ in 0..4 {
        assert_eq!(feed(&mut e, &streaming), Outcome::Nothing, "held");
    }
    assert_eq!(q.upload(), 3000 * 1024);
    assert!(e.status().left_to_user.is_some());
    assert_eq!(
        db.throttled_per_day().unwrap().len(),
        1,
        "the throttled time is counted"
    );
    for _ in 0..3 {
        feed(&mut e, &[]);
    }
    assert!(
        e.status().left_to_user.is_none(),
        "the hold ends with the streams"
    );
    feed(&mut e, &streaming);
    assert!(
        matches!(feed(&mut e, &streaming), Outcome::Engaged(_)),
        "throttles again"
    );
    assert_eq!(q.upload(), 500 * 1024);
}
