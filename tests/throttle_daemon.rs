//! The throttle job end to end (issue 11): the real daemon binary, the fake Plex (sessions and
//! websocket notification frames), and a REAL `qbittorrent-nox` whose limits are read back
//! through its API. Each test starts its own qBittorrent (`RealQbit`) and daemon (`Env`).
//!
//! No test asserts a speed: every wait is a generous deadline ([`DEADLINE`]); the ≤ 1 s
//! reaction is the benchmark's to measure.

use std::cell::RefCell;
use std::process::{Child, Command};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use downshiftarr::clients::qbittorrent::{Qbittorrent, RateLimit};
use serde_json::{json, Value};

use crate::daemon::{http_get, stop, Env};
use crate::fake_plex::{FakePlex, Play};
use crate::qbittorrent::{kib, RealQbit, PASSWORD, USER};
use crate::util;

/// How long any expected change may take on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(15);

/// A remote stream as `/status/sessions` lists it: `Session.location` "wan", `Player.local`
/// false, playing; `Session.bandwidth` in kbit/s.
fn remote(key: &str, user: &str, bandwidth_kbps: u64) -> Value {
    let n: u64 = key.parse().unwrap();
    let mut s = Play::session(
        key,
        &format!("session-{key}"),
        &format!("tx-{key}"),
        100 + n,
        200 + n,
        user,
        &format!("client-{key}"),
        "transcode",
    );
    s["Session"]["bandwidth"] = json!(bandwidth_kbps);
    s
}

/// The `playing` notification Plex sends for a session (payloads/plex-ws-playing-error.json's
/// shape; `state` playing/stopped).
fn playing_frame(key: &str, state: &str) -> Value {
    let n: u64 = key.parse().unwrap();
    json!({"NotificationContainer": {"type": "playing", "size": 1, "PlaySessionStateNotification": [
        {"sessionKey": key, "clientIdentifier": format!("client-{key}"), "guid": "",
         "ratingKey": (100 + n).to_string(), "url": "", "key": format!("/library/metadata/{}", 100 + n),
         "viewOffset": 0, "playQueueItemID": 411763, "playQueueID": 21343, "state": state,
         "transcodeSession": format!("tx-{key}")}]}})
}

/// One fake Plex, one real qBittorrent, one daemon configuration with a `throttle` section.
struct Rig {
    env: Env,
    qbit: RealQbit,
    /// The owner's view of qBittorrent (its own session).
    owner: RefCell<Qbittorrent>,
}

impl Rig {
    /// `throttle` keys over the defaults used here (`limit` mode at 500 KiB/s, polls every
    /// second, released after 2 idle observations, no restore delay); a `null` removes a key.
    /// `None` when qbittorrent-nox is not installed (outside CI).
    fn new(throttle: Value) -> Option<Rig> {
        let qbit = RealQbit::start(true)?;
        let env = Env::new(FakePlex::start(1, 0, 0), json!({}));
        let mut section = json!({
            "qbittorrent_url": qbit.url(), "username": USER, "password": PASSWORD,
            "streaming_upload_kib_s": 500, "poll_interval_s": 1, "idle_threshold": 2,
            "restore_delay_s": 0, "request_timeout_ms": 3000,
        });
        for (k, v) in throttle.as_object().unwrap() {
            if v.is_null() {
                section.as_object_mut().unwrap().remove(k);
            } else {
                section[k] = v.clone();
            }
        }
        env.configure("throttle", section);
        let owner = RefCell::new(qbit.client(Some(PASSWORD)));
        Some(Rig { env, qbit, owner })
    }

    /// Starts the daemon and waits until it listens to Plex's notifications and publishes the
    /// throttle's status.
    fn daemon(&self) -> Child {
        let ws = self.env.plex.websocket_connections();
        let d = self.env.daemon();
        self.wait("the daemon never opened the notification websocket", || {
            self.env.plex.websocket_connections() > ws
        });
        self.wait_status("the throttle section never appeared in status", |t| {
            t["state"].is_string()
        });
        d
    }

    /// The `throttle` section of `downshiftarr status --json` (`null` while unreachable).
    fn status(&self) -> Value {
        let out = self.env.cli(&["status", "--json"]);
        serde_json::from_slice::<Value>(&out.stdout).map_or(Value::Null, |v| v["throttle"].clone())
    }

    fn wait(&self, what: &str, f: impl Fn() -> bool) {
        let t = Instant::now();
        while !f() {
            assert!(t.elapsed() < DEADLINE, "{what} (waited {DEADLINE:?})");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_status(&self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
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

    fn upload(&self) -> RateLimit {
        self.owner.borrow_mut().upload_limit().unwrap()
    }

    fn wait_upload(&self, what: &str, want: RateLimit) {
        let t = Instant::now();
        loop {
            // An error is "not yet" (a qBittorrent just resumed may time out a request).
            let got = self.owner.borrow_mut().upload_limit();
            if got == Ok(want) {
                return;
            }
            assert!(
                t.elapsed() < DEADLINE,
                "{what}: qbittorrent's upload limit is {got:?}, expected {want}; throttle status: {:#}",
                self.status()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sessions listed from now on, announced by a `playing` frame each.
    fn play(&self, sessions: Vec<Value>) {
        let keys: Vec<String> = sessions
            .iter()
            .map(|s| s["sessionKey"].as_str().unwrap().to_string())
            .collect();
        self.env.plex.play.set_sessions(sessions);
        for k in keys {
            self.env.plex.notify(playing_frame(&k, "playing"));
        }
    }

    /// Every stream ends (`stopped` frames for `keys`).
    fn end(&self, keys: &[&str]) {
        self.env.plex.play.set_sessions(Vec::new());
        for k in keys {
            self.env.plex.notify(playing_frame(k, "stopped"));
        }
    }

    fn polls(&self) -> u64 {
        self.env.plex.play.polls.load(Ordering::SeqCst)
    }

    /// Waits until Plex has been polled `n` more times (each poll is one observation).
    fn wait_polls(&self, n: u64) {
        let from = self.polls();
        self.wait(&format!("{n} more session polls never came"), || {
            self.polls() >= from + n
        });
    }

    fn metrics(&self) -> String {
        let cfg: Value = serde_json::from_str(&util::read(&self.env.cfg)).unwrap();
        http_get(cfg["daemon"]["http_listen"].as_str().unwrap(), "/metrics")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.env.log()).unwrap_or_default()
    }

    /// The throttle records in the daemon's SQLite store (JSON values).
    fn records(&self) -> Vec<Value> {
        let db = self.env.db();
        let mut q = db
            .prepare("SELECT value FROM job_state WHERE job = 'throttle'")
            .unwrap();
        let rows = q.query_map([], |r| r.get::<_, String>(0)).unwrap();
        rows.map(|r| serde_json::from_str(&r.unwrap()).unwrap())
            .collect()
    }

    /// qBittorrent's own preferences (`up_limit`, `dl_limit`), read with a login of our own:
    /// they keep the user's global limits whatever mode is in force.
    fn preferences(&self) -> Value {
        let http = reqwest::blocking::Client::new();
        let url = self.qbit.url();
        let login = http
            .post(format!("{url}/api/v2/auth/login"))
            .header("Referer", &url)
            .form(&[("username", USER), ("password", PASSWORD)])
            .send()
            .unwrap();
        let cookie = login
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_string())
            .collect::<Vec<_>>()
            .join("; ");
        assert!(!cookie.is_empty(), "qbittorrent set no session cookie");
        http.get(format!("{url}/api/v2/app/preferences"))
            .header("Referer", &url)
            .header("Cookie", cookie)
            .send()
            .unwrap()
            .json()
            .unwrap()
    }
}

fn signal(d: &Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(d.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success(), "kill -{sig} failed");
}

fn kill9(mut d: Child) {
    d.kill().unwrap();
    d.wait().unwrap();
}

/// A metric line's value: `name` then a space.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn throttle_a_remote_stream_engages_through_the_confirmation_poll() {
    // The backstop polls are a minute apart: within the deadline only the notification's
    // poll and the confirmation poll can give the two observations streaming_threshold needs.
    let Some(rig) = Rig::new(json!({"poll_interval_s": 60, "streaming_threshold": 2})) else {
        return;
    };
    rig.env
        .configure("enforce", json!({"guard_interval_s": 60}));
    let d = rig.daemon();
    rig.wait("the startup poll never came", || rig.polls() >= 1);
    assert_eq!(rig.upload(), RateLimit::UNLIMITED);
    let before = rig.polls();
    rig.play(vec![remote("1", "alice", 12000)]);
    rig.wait_upload("a remote stream did not throttle", kib(500));
    let polls = rig.polls() - before;
    assert!(
        (2..=3).contains(&polls),
        "two observations (the notification's poll and its confirmation), got {polls} polls"
    );
    let t = rig.wait_status("status never showed the throttle", |t| {
        t["state"] == "streaming" && t["in_force"].is_string()
    });
    assert_eq!(t["in_force"], "upload 500 KiB/s (found unlimited)", "{t:#}");
    let streams = t["remote_streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1, "{t:#}");
    let why = streams[0].as_str().unwrap();
    assert!(why.contains("alice") && why.contains("wan"), "{why}");
    assert_eq!(t["will_restore"], "upload unlimited", "{t:#}");
    assert_eq!(t["problem"], Value::Null, "{t:#}");
    let m = rig.metrics();
    assert_eq!(metric(&m, "downshiftarr_throttle_state"), Some(1.0), "{m}");
    assert_eq!(
        metric(&m, "downshiftarr_throttle_reaction_seconds_count"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "downshiftarr_throttle_remote_streams"),
        Some(1.0),
        "{m}"
    );
    assert!(
        rig.log().contains("throttled: upload 500 KiB/s") && rig.log().contains("alice"),
        "the engage is logged with its reason:\n{}",
        rig.log()
    );
    stop(d);
}

#[test]
fn throttle_streams_ending_give_back_the_limit_that_was_found() {
    let Some(rig) = Rig::new(json!({"idle_threshold": 3, "restore_delay_s": 1})) else {
        return;
    };
    rig.owner.borrow_mut().set_upload_limit(kib(2000)).unwrap();
    let d = rig.daemon();
    rig.play(vec![remote("1", "alice", 12000)]);
    rig.wait_upload("a remote stream did not throttle", kib(500));
    let t = rig.wait_status("status never showed the throttle", |t| {
        t["in_force"].is_string()
    });
    assert_eq!(
        t["in_force"], "upload 500 KiB/s (found 2000 KiB/s)",
        "{t:#}"
    );
    assert_eq!(t["will_restore"], "upload 2000 KiB/s", "{t:#}");
    // Still streaming over several polls: nothing moves.
    rig.wait_polls(3);
    assert_eq!(rig.upload(), kib(500));
    let from = rig.polls();
    rig.end(&["1"]);
    rig.wait_upload("the original limit never came back", kib(2000));
    // A poll answered just before the sessions were emptied may already have read the empty
    // list: one of the three idle observations can predate `from`.
    let idle_polls = rig.polls() - from;
    assert!(
        idle_polls >= 2,
        "released after {idle_polls} polls; idle_threshold is 3"
    );
    let t = rig.wait_status("status never went idle", |t| t["state"] == "idle");
    assert_eq!(t["in_force"], Value::Null, "{t:#}");
    assert!(
        t["last_transition"]
            .as_str()
            .is_some_and(|l| l.contains("released") && l.contains("2000 KiB/s")),
        "{t:#}"
    );
    assert!(rig.records().is_empty(), "the record is cleared on release");
    assert_eq!(
        metric(&rig.metrics(), "downshiftarr_throttle_state"),
        Some(0.0)
    );
    // And it stays given back.
    rig.wait_polls(2);
    assert_eq!(rig.upload(), kib(2000));
    stop(d);
    assert_eq!(
        rig.upload(),
        kib(2000),
        "a stop with nothing owed changes nothing"
    );
}

#[test]
fn throttle_alt_speed_mode_toggles_the_mode_only() {
    let Some(rig) = Rig::new(json!({"mode": "alt_speed", "streaming_upload_kib_s": null})) else {
        return;
    };
    {
        let mut o = rig.owner.borrow_mut();
        o.set_upload_limit(kib(3000)).unwrap();
        o.set_download_limit(kib(9000)).unwrap();
    }
    let prefs = rig.preferences();
    let limits = |p: &Value| (p["up_limit"].clone(), p["dl_limit"].clone());
    let owners = limits(&prefs);
    assert!(prefs["alt_up_limit"].is_number(), "{prefs}");
    let d = rig.daemon();
    rig.play(vec![remote("1", "alice", 12000)]);
    rig.wait("alternative speed mode never went on", || {
        rig.owner.borrow_mut().alt_speed_mode().unwrap()
    });
    let t = rig.wait_status("status never showed the throttle", |t| {
        t["in_force"].is_string()
    });
    assert_eq!(
        t["in_force"], "alternative speed mode on (found off)",
        "{t:#}"
    );
    assert_eq!(t["mode"], "alt_speed", "{t:#}");
    assert_eq!(
        limits(&rig.preferences()),
        owners,
        "the user's global limits untouched while throttled"
    );
    rig.wait_polls(2);
    assert!(rig.owner.borrow_mut().alt_speed_mode().unwrap(), "still on");
    rig.end(&["1"]);
    rig.wait("alternative speed mode never went off", || {
        !rig.owner.borrow_mut().alt_speed_mode().unwrap()
    });
    assert_eq!(limits(&rig.preferences()), owners);
    assert_eq!(
        rig.upload(),
        kib(3000),
        "the user's own limit in force again"
    );
    assert_eq!(rig.owner.borrow_mut().download_limit().unwrap(), kib(9000));
    stop(d);
}

#[test]
fn throttle_after_kill_9_the_next_start_keeps_it_for_a_stream_and_restores_without() {
    let Some(rig) = Rig::new(json!({"idle_threshold": 2})) else {
        return;
    };
    rig.owner.borrow_mut().set_upload_limit(kib(2000)).unwrap();
    let d = rig.daemon();
    rig.play(vec![remote("1", "alice", 12000)]);
    rig.wait_upload("a remote stream did not throttle", kib(500));
    kill9(d);
    // The record was written before the limit changed.
    let records = rig.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["qbittorrent_url"], rig.qbit.url().as_str());
    assert_eq!(
        records[0]["found"]["upload"],
        2000 * 1024,
        "{:?}",
        records[0]
    );
    assert_eq!(records[0]["set"]["upload"], 500 * 1024, "{:?}", records[0]);
    assert_eq!(rig.upload(), kib(500), "nobody gave it back");

    // The stream still plays: the next daemon keeps the throttle over many observations.
    let d = rig.daemon();
    let t = rig.wait_status("the resumed throttle is not shown", |t| {
        t["in_force"].is_string()
    });
    assert_eq!(t["state"], "streaming", "{t:#}");
    rig.wait("a resumed throttle is not on /metrics", || {
        metric(&rig.metrics(), "downshiftarr_throttle_state") == Some(1.0)
    });
    rig.wait_polls(4);
    assert_eq!(rig.upload(), kib(500), "kept while the stream plays");
    assert_eq!(rig.records().len(), 1);
    kill9(d);

    // No stream any more: the next start gives the original limit back through the
    // hysteresis, and forgets the record.
    rig.env.plex.play.set_sessions(Vec::new());
    let from = rig.polls();
    let d = rig.daemon();
    rig.wait_upload("the next start did not restore", kib(2000));
    assert!(
        rig.polls() - from >= 2,
        "released only after idle_threshold (2) observations"
    );
    rig.wait("the record was not cleared", || rig.records().is_empty());
    assert!(
        rig.log()
            .contains("throttle left in force by an earlier run"),
        "{}",
        rig.log()
    );
    stop(d);
}

#[test]
fn throttle_sigterm_gives_the_bandwidth_back_before_exiting() {
    let Some(rig) = Rig::new(json!({"restore_delay_s": 600, "idle_threshold": 50})) else {
        return;
    };
    rig.owner.borrow_mut().set_upload_limit(kib(2000)).unwrap();
    let d = rig.daemon();
    rig.play(vec![remote("1", "alice", 12000)]);
    rig.wait_upload("a remote stream did not throttle", kib(500));
    // SIGTERM, the stream still playing: `stop` waits at most 5 s for the exit.
    stop(d);
    assert_eq!(
        rig.upload(),
        kib(2000),
        "given back before the daemon exited"
    );
    assert!(rig.records().is_empty(), "nothing left owed");
    assert!(
        rig.log().contains("the daemon is stopping"),
        "the release says why:\n{}",
        rig.log()
    );
}

#[test]
fn throttle_a_limit_changed_by_hand_mid_throttle_is_left_to_the_user() {
    let Some(rig) = Rig::new(json!({})) else {
        return;
    };
    let d = rig.daemon();
    rig.play(vec![remote("1", "alice", 12000)]);
    rig.wait_upload("a remote stream did not throttle", kib(500));
    rig.owner.borrow_mut().set_upload_limit(kib(777)).unwrap();
    let t = rig.wait_status("the hand change was never noticed", |t| {
        t["left_to_user"].is_string()
    });
    assert!(
        t["left_to_user"].as_str().unwrap().contains("777 KiB/s"),
        "{t:#}"
    );
    assert_eq!(t["in_force"], Value::Null, "ours is forgotten: {t:#}");
    assert!(rig.records().is_empty(), "nothing owed any more");
    rig.wait_polls(3);
    assert_eq!(rig.upload(), kib(777), "not overwritten while streaming");
    rig.end(&["1"]);
    rig.wait_status("never idle again", |t| t["state"] == "idle");
    rig.wait_polls(3);
    assert_eq!(rig.upload(), kib(777), "not overwritten on release either");
    assert!(
        rig.log().contains("changed by hand") && rig.log().contains("777 KiB/s"),
        "the hand change is logged:\n{}",
        rig.log()
    );
    stop(d);
    assert_eq!(rig.upload(), kib(777), "nor on stop");
}

#[test]
fn throttle_a_qbittorrent_restart_mid_throttle_is_reapplied() {
    let Some(mut rig) = Rig::new(json!({})) else {
        return;
    };
    let d = rig.daemon();
    rig.play(vec![remote("1", "alice", 12000)]);
    rig.wait_upload("a remote stream did not throttle", kib(500));
    rig.qbit.restart();
    // A fresh owner session: the old one died with the process.
    *rig.owner.borrow_mut() = rig.qbit.client(Some(PASSWORD));
    rig.wait_upload(
        "the throttle was not re-applied after the restart",
        kib(500),
    );
    let t = rig.wait_status("the re-apply is not shown", |t| {
        t["last_transition"]
            .as_str()
            .is_some_and(|l| l.contains("re-applied"))
    });
    assert_eq!(t["in_force"], "upload 500 KiB/s (found unlimited)", "{t:#}");
    assert!(rig
        .metrics()
        .contains("downshiftarr_throttle_transitions_total{kind=\"reapply\"} 1"));
    rig.end(&["1"]);
    rig.wait_upload("not released after the restart", RateLimit::UNLIMITED);
    stop(d);
}

#[test]
fn throttle_a_wrong_password_is_tried_once_per_back_off_and_never_banned() {
    let Some(rig) = Rig::new(json!({"password": "not the password"})) else {
        return;
    };
    let d = rig.daemon();
    rig.play(vec![remote("1", "alice", 12000)]);
    let t = rig.wait_status("the refused login is not shown", |t| {
        t["problem"].is_string()
    });
    let problem = t["problem"].as_str().unwrap();
    assert!(problem.contains("login refused"), "{t:#}");
    assert_eq!(t["login_attempts"], 1, "{t:#}");
    // Many reconcile passes, polls and retries (every 5 s) later: still the one attempt,
    // warned once, and once more for the back-off (not on every retry).
    rig.wait_polls(12);
    let t = rig.status();
    assert_eq!(t["login_attempts"], 1, "{t:#}");
    assert!(t["problem"].is_string(), "{t:#}");
    assert_eq!(rig.upload(), RateLimit::UNLIMITED);
    let log = rig.log();
    assert!(!log.contains("not the password"), "a password was logged");
    let refused = "check the qbittorrent username and password";
    assert_eq!(log.matches(refused).count(), 1, "one refused login:\n{log}");
    assert!(
        log.matches("next attempt in").count() <= 1,
        "the back-off is warned once, not on every retry:\n{log}"
    );
    // A reload that changes something else keeps the back-off: no new login attempt.
    rig.env.configure("throttle", json!({"poll_interval_s": 2}));
    signal(&d, "HUP");
    rig.wait("the reload was not logged", || {
        rig.log().contains("throttle: settings reloaded")
    });
    rig.wait_polls(3);
    let log = rig.log();
    assert_eq!(
        log.matches(refused).count(),
        1,
        "a reload must not cost a login:\n{log}"
    );
    assert_eq!(rig.status()["login_attempts"], 1);
    // The right password (config + SIGHUP) logs in at once: we were never banned.
    rig.env.configure("throttle", json!({"password": PASSWORD}));
    signal(&d, "HUP");
    rig.wait_upload("the right password never throttled", kib(500));
    let t = rig.wait_status("the problem never cleared", |t| t["problem"].is_null());
    assert_eq!(t["state"], "streaming", "{t:#}");
    assert!(!rig.log().contains(PASSWORD), "a password was logged");
    stop(d);
}

#[test]
fn throttle_budget_follows_the_remote_streams() {
    let Some(rig) = Rig::new(json!({
        "mode": "budget", "streaming_upload_kib_s": null, "upload_capacity_mbit_s": 40,
        "safety_margin_mbit_s": 2, "floor_kib_s": 64, "streaming_threshold": 1,
    })) else {
        return;
    };
    let d = rig.daemon();
    rig.play(vec![remote("1", "alice", 12000), remote("2", "bob", 8000)]);
    // 40000 − 12000 − 8000 − 2000 = 18000 kbit/s = 2197 KiB/s (rounded down).
    rig.wait_upload("two streams: capacity − sum − margin", kib(2197));
    let t = rig.wait_status("both streams not shown", |t| {
        t["remote_streams"].as_array().is_some_and(|a| a.len() == 2)
    });
    assert_eq!(t["state"], "streaming", "{t:#}");
    // Alice leaves: 40000 − 8000 − 2000 = 30000 kbit/s = 3662 KiB/s.
    rig.play(vec![remote("2", "bob", 8000)]);
    rig.env.plex.notify(playing_frame("1", "stopped"));
    rig.wait_upload("the limit did not rise when a stream left", kib(3662));
    assert_eq!(
        metric(
            &rig.metrics(),
            "downshiftarr_throttle_transitions_total{kind=\"move\"}"
        ),
        Some(1.0)
    );
    rig.end(&["2"]);
    rig.wait_upload("not released", RateLimit::UNLIMITED);
    stop(d);
}

#[test]
fn throttle_plex_failing_is_no_observation_and_the_throttle_holds() {
    let Some(rig) = Rig::new(json!({"idle_threshold": 2})) else {
        return;
    };
    let d = rig.daemon();
    rig.play(vec![remote("1", "alice", 12000)]);
    rig.wait_upload("a remote stream did not throttle", kib(500));
    // Plex answers 500 to everything, for many session polls (more than idle_threshold).
    let plex = &rig.env.plex;
    let n = plex.requests.load(Ordering::SeqCst);
    plex.faults.fail_after.store(n, Ordering::SeqCst);
    rig.wait("the failing polls never came", || {
        plex.requests.load(Ordering::SeqCst) >= n + 6
    });
    assert_eq!(
        rig.upload(),
        kib(500),
        "a failed poll is not \"nobody streams\""
    );
    let t = rig.status();
    assert_eq!(t["state"], "streaming", "{t:#}");
    assert!(t["in_force"].is_string(), "{t:#}");
    // Plex back, the stream over: released as usual.
    plex.faults.fail_after.store(0, Ordering::SeqCst);
    rig.end(&["1"]);
    rig.wait_upload(
        "not released once Plex answered again",
        RateLimit::UNLIMITED,
    );
    stop(d);
}

#[test]
fn throttle_sigterm_while_qbittorrent_hangs_exits_in_time_and_the_next_start_restores() {
    let Some(rig) = Rig::new(json!({"request_timeout_ms": 1500, "idle_threshold": 2})) else {
        return;
    };
    rig.owner.borrow_mut().set_upload_limit(kib(2000)).unwrap();
    let d = rig.daemon();
    rig.play(vec![remote("1", "alice", 12000)]);
    rig.wait_upload("a remote stream did not throttle", kib(500));
    let sig = |s: &str| rig.qbit.signal(s);
    // qBittorrent stops answering (connections accepted, no reply), then SIGTERM: the daemon
    // still exits within its grace (`stop` allows 5 s) and keeps what it owes.
    sig("-STOP");
    stop(d);
    sig("-CONT");
    rig.wait_upload("nothing could be given back", kib(500));
    assert_eq!(
        rig.records().len(),
        1,
        "the record stays for the next start"
    );
    assert!(
        rig.log()
            .contains("could not give the bandwidth back while stopping"),
        "{}",
        rig.log()
    );
    // The next start, nobody streaming: given back through the hysteresis.
    rig.env.plex.play.set_sessions(Vec::new());
    let d = rig.daemon();
    rig.wait_upload("the next start did not restore", kib(2000));
    rig.wait("the record was not cleared", || rig.records().is_empty());
    stop(d);
}

#[test]
fn throttle_a_new_qbittorrent_url_gives_back_on_the_old_one_first() {
    let Some(rig) = Rig::new(json!({"streaming_threshold": 1})) else {
        return;
    };
    let Some(other) = RealQbit::start(true) else {
        return;
    };
    rig.owner.borrow_mut().set_upload_limit(kib(2000)).unwrap();
    let d = rig.daemon();
    rig.play(vec![remote("1", "alice", 12000)]);
    rig.wait_upload("a remote stream did not throttle", kib(500));
    // The owner moves the job to another qBittorrent while the stream plays (SIGHUP).
    rig.env
        .configure("throttle", json!({"qbittorrent_url": other.url()}));
    signal(&d, "HUP");
    rig.wait_upload("the old qbittorrent did not get its limit back", kib(2000));
    let mut o = other.client(Some(PASSWORD));
    let t = Instant::now();
    while o.upload_limit().unwrap() != kib(500) {
        assert!(
            t.elapsed() < DEADLINE,
            "the new qbittorrent was never throttled"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let records = rig.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["qbittorrent_url"], other.url().as_str());
    rig.end(&["1"]);
    let t = Instant::now();
    while o.upload_limit().unwrap() != RateLimit::UNLIMITED {
        assert!(
            t.elapsed() < DEADLINE,
            "the new qbittorrent was never released"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(rig.upload(), kib(2000));
    stop(d);
}

#[test]
fn throttle_a_new_url_while_the_old_qbittorrent_hangs_moves_on_and_gives_back_later() {
    let Some(rig) = Rig::new(json!({"streaming_threshold": 1, "request_timeout_ms": 1000})) else {
        return;
    };
    let Some(other) = RealQbit::start(true) else {
        return;
    };
    rig.owner.borrow_mut().set_upload_limit(kib(2000)).unwrap();
    let d = rig.daemon();
    rig.play(vec![remote("1", "alice", 12000)]);
    rig.wait_upload("a remote stream did not throttle", kib(500));
    let sig = |s: &str| rig.qbit.signal(s);
    // The old qBittorrent stops answering, and the owner moves the job to another one.
    sig("-STOP");
    rig.env
        .configure("throttle", json!({"qbittorrent_url": other.url()}));
    signal(&d, "HUP");
    let mut o = other.client(Some(PASSWORD));
    let t = Instant::now();
    while o.upload_limit().unwrap() != kib(500) {
        assert!(
            t.elapsed() < DEADLINE,
            "the new qbittorrent was never throttled while the old one hung"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let urls: Vec<Value> = rig
        .records()
        .iter()
        .map(|r| r["qbittorrent_url"].clone())
        .collect();
    assert_eq!(urls.len(), 2, "both are owed: {urls:?}");
    // Several retries while it hangs: one warning, not one per pass.
    std::thread::sleep(Duration::from_secs(6));
    let log = rig.log();
    assert_eq!(
        log.matches("could not give back").count() + log.matches("could not be given back").count(),
        1,
        "{log}"
    );
    // The old one answers again: given back without a restart of the daemon.
    sig("-CONT");
    rig.wait_upload("the old qbittorrent never got its limit back", kib(2000));
    rig.wait("the old record was not cleared", || {
        rig.records().len() == 1
    });
    assert!(
        rig.log().contains(&format!(
            "released on {} (qbittorrent_url changed)",
            rig.qbit.url()
        )),
        "{}",
        rig.log()
    );
    assert_eq!(
        o.upload_limit().unwrap(),
        kib(500),
        "the new one still throttled"
    );
    stop(d);
}

#[test]
fn throttle_an_old_qbittorrent_refusing_the_new_credentials_is_not_retried_into_a_ban() {
    let Some(rig) = Rig::new(json!({"streaming_threshold": 1, "request_timeout_ms": 1000})) else {
        return;
    };
    // The new server lets localhost in without a login; the new settings' password would be
    // refused by the old one.
    let Some(other) = RealQbit::start(false) else {
        return;
    };
    let d = rig.daemon();
    rig.play(vec![remote("1", "alice", 12000)]);
    rig.wait_upload("a remote stream did not throttle", kib(500));
    let sig = |s: &str| rig.qbit.signal(s);
    sig("-STOP");
    rig.env.configure(
        "throttle",
        json!({"qbittorrent_url": other.url(), "password": "not the password"}),
    );
    signal(&d, "HUP");
    let mut o = other.client(None);
    let t = Instant::now();
    while o.upload_limit().unwrap() != kib(500) {
        assert!(
            t.elapsed() < DEADLINE,
            "the new qbittorrent was never throttled"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    sig("-CONT");
    let given_up = "with that server's url and credentials";
    rig.wait("the refused give-back was not reported", || {
        rig.log().contains(given_up)
    });
    // Long enough for five retries every 5 s: five refused logins would ban the owner.
    std::thread::sleep(Duration::from_secs(27));
    assert_eq!(rig.log().matches(given_up).count(), 1, "{}", rig.log());
    let mut fresh = rig.qbit.client(Some(PASSWORD));
    assert_eq!(
        fresh.upload_limit(),
        Ok(kib(500)),
        "the owner can still log in, and our record is left for --restore"
    );
    assert_eq!(rig.records().len(), 2);
    stop(d);
}
