//! The throttle end to end (issue 11): `downshiftarr throttle` (`--once`, `--dry-run`,
//! `--restore`, the original tool's JSON file and its environment overrides), `check-config`'s
//! qBittorrent login, the counting rules, and the daemon's hysteresis under a pause/resume
//! burst and a next-episode gap — against the fake Plex and a REAL `qbittorrent-nox`
//! (`qbittorrent::RealQbit`; skipped with a printed reason when it is not installed, outside
//! CI).
//!
//! What qBittorrent has in force is always read back through its API by a client of the
//! test's own, never taken from our output.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use downshiftarr::clients::qbittorrent::RateLimit;
use serde_json::{json, Value};

use crate::daemon::{http_get, stop, Env};
use crate::fake_plex::{FakePlex, Play};
use crate::qbittorrent::{kib, RealQbit, PASSWORD, USER};
use crate::util;

/// A fake Plex, a real qBittorrent that wants a login (no localhost bypass), and a
/// downshiftarr config whose `throttle` section points at it (password in a 0600 file).
struct Rig {
    env: Env,
    qbit: RealQbit,
}

/// What one command printed.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn said(&self) -> String {
        format!(
            "exit {:?}\nstdout:\n{}stderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    /// Exit 0 and `line` on stdout.
    fn ok_with(&self, line: &str) {
        assert!(
            self.code == Some(0) && self.stdout.contains(line),
            "expected success and {line:?}:\n{}",
            self.said()
        );
    }
}

fn rig(throttle: Value) -> Option<Rig> {
    let qbit = RealQbit::start(true)?;
    let env = Env::new(FakePlex::start(1, 0, 0), json!({}));
    let pass = env.dir.path().join("qbittorrent.pass");
    std::fs::write(&pass, format!("{PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut section = json!({
        "qbittorrent_url": qbit.url(),
        "username": USER,
        "password_file": pass,
        "streaming_upload_kib_s": 100,
        "poll_interval_s": 1,
    });
    if let (Some(a), Some(b)) = (section.as_object_mut(), throttle.as_object()) {
        a.extend(b.clone());
    }
    env.configure("throttle", section);
    Some(Rig { env, qbit })
}

/// The downshiftarr binary with a clean environment for the variables it reads.
fn command() -> Command {
    let mut c = Command::new(util::cli());
    for k in [
        "PLEX_TOKEN",
        "PLEX_URL",
        "QBITTORRENT_PASSWORD",
        "STATE_DIRECTORY",
        "DOWNSHIFTARR_CONFIG",
    ] {
        c.env_remove(k);
    }
    c
}

impl Rig {
    /// `downshiftarr ARGS --config <ours>` with `envs` set.
    fn run(&self, args: &[&str], envs: &[(&str, &str)]) -> Run {
        let mut c = command();
        c.args(args).arg("--config").arg(&self.env.cfg);
        for (k, v) in envs {
            c.env(k, v);
        }
        Run::from(c.output().unwrap())
    }

    fn once(&self, extra: &[&str]) -> Run {
        self.run(&[&["throttle", "--once"], extra].concat(), &[])
    }

    /// The upload limit in force, read back from qBittorrent.
    fn upload(&self) -> RateLimit {
        self.qbit.client(Some(PASSWORD)).upload_limit().unwrap()
    }

    fn set_upload(&self, limit: RateLimit) {
        self.qbit
            .client(Some(PASSWORD))
            .set_upload_limit(limit)
            .unwrap();
    }

    fn db(&self) -> PathBuf {
        self.env.dir.path().join("state/index.sqlite")
    }

    fn play(&self, sessions: Vec<Value>) {
        self.env.plex.play.set_sessions(sessions);
    }
}

/// Throttle records in the store at `db` (none when the store does not exist: the check must
/// not create it).
fn records(db: &Path) -> i64 {
    if !db.exists() {
        return 0;
    }
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.query_row(
        "SELECT COUNT(*) FROM job_state WHERE job = 'throttle'",
        [],
        |r| r.get(0),
    )
    .unwrap_or(0)
}

/// One direct-play session as `/status/sessions` lists it (payloads/
/// plex-status-sessions-openapi-example.yaml: `Player.address`, `Player.local`,
/// `Player.state`, `Session.location`, `Session.bandwidth` in kbit/s). Direct play: the
/// enforcement guard has nothing to look at.
fn stream(key: &str, user: &str, address: &str, location: &str, state: &str) -> Value {
    let n: u64 = key.parse().unwrap();
    let mut s = Play::session(
        key,
        &format!("plexsession{key}abcdefgh"),
        &format!("tx{key}"),
        9000 + n,
        900 + n,
        user,
        &format!("client-{key}"),
        "copy",
    );
    s.as_object_mut().unwrap().remove("TranscodeSession");
    s["Media"][0]["Part"][0]["decision"] = json!("directplay");
    s["Player"]["address"] = json!(address);
    s["Player"]["local"] = json!(location == "lan");
    s["Player"]["state"] = json!(state);
    s["Session"]["location"] = json!(location);
    s["Session"]["bandwidth"] = json!(8000);
    s
}

fn remote(key: &str, user: &str) -> Value {
    stream(key, user, "203.0.113.9", "wan", "playing")
}

/// A `playing` notification as Plex sends it (payloads/plex-ws-playing-error.json shape).
fn playing_frame(key: &str, state: &str) -> Value {
    let n: u64 = key.parse().unwrap();
    json!({"NotificationContainer": {"type": "playing", "size": 1, "PlaySessionStateNotification": [{
        "sessionKey": key, "clientIdentifier": format!("client-{key}"), "guid": "",
        "ratingKey": (9000 + n).to_string(), "url": "", "key": format!("/library/metadata/{}", 9000 + n),
        "viewOffset": 754000, "playQueueItemID": 411763, "playQueueID": 21343, "state": state}]}})
}

#[test]
fn throttle_check_config_tests_the_qbittorrent_login_once() {
    let Some(r) = rig(json!({})) else {
        return;
    };
    let url = r.qbit.url();
    let out = r.run(&["check-config"], &[]);
    assert!(
        out.code == Some(0)
            && out
                .stdout
                .contains(&format!("qbittorrent {url}: logged in, WebAPI 2.")),
        "{}",
        out.said()
    );
    assert!(!out.said().contains(PASSWORD), "{}", out.said());
    // A wrong password (QBITTORRENT_PASSWORD wins over the file): refused, said with the URL
    // and what to do, never the password. qBittorrent bans an address at its fifth refused
    // login, so four runs leaving the owner able to log in prove one attempt per run.
    let wrong = "wrong-secret-9";
    for _ in 0..4 {
        let out = r.run(&["check-config"], &[("QBITTORRENT_PASSWORD", wrong)]);
        assert_eq!(out.code, Some(1), "{}", out.said());
        assert!(
            out.stdout.contains(&format!(
                "qbittorrent: login refused at {url}/api/v2/auth/login as \"admin\"; check the qbittorrent username and password"
            )),
            "{}",
            out.said()
        );
        assert!(!out.said().contains(wrong), "{}", out.said());
    }
    let mut owner = r.qbit.client(Some(PASSWORD));
    owner
        .login()
        .unwrap_or_else(|e| panic!("four check-config runs must cost four refusals, no ban: {e}"));
    // Nobody answering is a failure too, naming the address.
    r.env
        .configure("throttle", json!({"qbittorrent_url": "http://127.0.0.1:1"}));
    let out = r.run(&["check-config"], &[]);
    assert!(
        out.code == Some(1)
            && out
                .stdout
                .contains("qbittorrent: no answer from http://127.0.0.1:1/api/v2/"),
        "{}",
        out.said()
    );
}

#[test]
fn throttle_check_config_without_a_usable_password_says_what_to_set() {
    let Some(r) = rig(json!({})) else {
        return;
    };
    let url = r.qbit.url();
    let pass = r.env.dir.path().join("qbittorrent.pass");
    // A password file others can read is refused before anything is sent.
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = r.run(&["check-config"], &[]);
    assert!(
        out.code == Some(1)
            && out
                .stdout
                .contains(&format!("qbittorrent {url}: throttle.password_file"))
            && out.stdout.contains("chmod 0600"),
        "{}",
        out.said()
    );
    assert!(!out.said().contains(PASSWORD), "{}", out.said());
    // No password at all: this qBittorrent wants a login, and we say how to give one.
    r.env.configure("throttle", json!({"password_file": ""}));
    let out = r.run(&["check-config"], &[]);
    assert!(
        out.code == Some(1)
            && out.stdout.contains("requires a login: no password is configured: set throttle.password_file or QBITTORRENT_PASSWORD"),
        "{}",
        out.said()
    );
    // One that lets localhost in without a login: fine, and said so.
    let Some(open) = RealQbit::start(false) else {
        return;
    };
    r.env
        .configure("throttle", json!({"qbittorrent_url": open.url()}));
    let out = r.run(&["check-config"], &[]);
    assert!(
        out.code == Some(0)
            && out.stdout.contains(&format!(
                "qbittorrent {}: no login needed (localhost bypass), WebAPI 2.",
                open.url()
            )),
        "{}",
        out.said()
    );
}

#[test]
fn throttle_once_throttles_a_remote_stream_and_gives_back_what_it_found() {
    let Some(r) = rig(json!({})) else {
        return;
    };
    r.set_upload(kib(300));
    r.play(vec![remote("1", "alice")]);
    let out = r.once(&[]);
    out.ok_with("1 remote stream(s): alice on Living Room Shield (wan)");
    out.ok_with("throttled: upload 100 KiB/s");
    assert_eq!(r.upload(), kib(100));
    assert_eq!(records(&r.db()), 1, "the throttle is recorded");
    // Still streaming: nothing changes.
    r.once(&[]).ok_with("streaming: already throttled");
    assert_eq!(r.upload(), kib(100));
    // The stream ended: what was found is back (our config restores it by default).
    r.play(vec![]);
    let out = r.once(&[]);
    out.ok_with("no remote stream");
    out.ok_with("idle: restored upload limit 300 KiB/s");
    assert_eq!(r.upload(), kib(300));
    assert_eq!(records(&r.db()), 0, "the record is cleared");
    r.once(&[]).ok_with("idle: nothing to change");
}

#[test]
fn throttle_once_dry_run_changes_and_stores_nothing() {
    let Some(r) = rig(json!({})) else {
        return;
    };
    r.play(vec![remote("1", "alice")]);
    let out = r.once(&["--dry-run"]);
    out.ok_with("dry run: would throttle: upload 100 KiB/s");
    assert_eq!(r.upload(), RateLimit::UNLIMITED, "{}", out.said());
    assert_eq!(records(&r.db()), 0);
    // With a throttle recorded, a dry run's release changes nothing either.
    r.once(&[]).ok_with("throttled");
    r.play(vec![]);
    r.once(&["--dry-run"])
        .ok_with("dry run: would give back what was changed");
    assert_eq!(r.upload(), kib(100));
    assert_eq!(records(&r.db()), 1);
}

#[test]
fn throttle_restore_gives_back_a_recorded_throttle() {
    let Some(r) = rig(json!({})) else {
        return;
    };
    r.play(vec![remote("1", "alice")]);
    r.once(&[]).ok_with("throttled");
    assert_eq!(r.upload(), kib(100));
    // The owner uninstalls while the stream still plays.
    let out = r.run(&["throttle", "--restore"], &[]);
    out.ok_with("restored: upload limit unlimited");
    assert_eq!(r.upload(), RateLimit::UNLIMITED);
    assert_eq!(records(&r.db()), 0);
    r.run(&["throttle", "--restore"], &[])
        .ok_with("nothing to restore");
}

#[test]
fn throttle_once_with_plex_down_fails_and_changes_nothing() {
    let Some(r) = rig(json!({})) else {
        return;
    };
    r.play(vec![remote("1", "alice")]);
    r.once(&[]).ok_with("throttled");
    // Plex answers 500 from now on while nobody plays: a failed look is not "no stream".
    r.play(vec![]);
    r.env
        .plex
        .faults
        .fail_after
        .store(r.env.plex.requests.load(Ordering::SeqCst), Ordering::SeqCst);
    let out = r.once(&[]);
    assert_eq!(out.code, Some(1), "{}", out.said());
    assert!(
        out.stderr.contains("nothing was decided or changed") && out.stderr.contains("500"),
        "{}",
        out.said()
    );
    assert_eq!(r.upload(), kib(100), "still throttled");
    assert_eq!(records(&r.db()), 1, "still recorded");
    // Plex back: the release happens.
    r.env.plex.faults.fail_after.store(0, Ordering::SeqCst);
    r.once(&[]).ok_with("idle: restored upload limit unlimited");
    assert_eq!(r.upload(), RateLimit::UNLIMITED);
}

#[test]
fn throttle_once_with_qbittorrent_down_fails_and_records_nothing() {
    let Some(r) = rig(json!({"qbittorrent_url": "http://127.0.0.1:1"})) else {
        return;
    };
    r.play(vec![remote("1", "alice")]);
    let out = r.once(&[]);
    assert!(
        out.code == Some(1)
            && out
                .stderr
                .contains("qbittorrent: no answer from http://127.0.0.1:1/api/v2/"),
        "{}",
        out.said()
    );
    assert_eq!(records(&r.db()), 0, "nothing changed, nothing recorded");
}

/// The original tool's `plex-helper.json` for this rig, with a stale token and password
/// (the environment overrides them), idle 300 KiB/s, streaming 50 KiB/s.
fn original_file(r: &Rig, dir: &Path, poll_interval_sec: u64) -> PathBuf {
    let file = dir.join("plex-helper.json");
    std::fs::write(
        &file,
        json!({
            "plex_url": r.env.plex.url,
            "plex_token": "stale-token",
            "qbittorrent_url": r.qbit.url(),
            "qbittorrent_username": USER,
            "qbittorrent_password": "stale-password",
            "idle_upload_kbps": 300,
            "streaming_upload_kbps": 50,
            "poll_interval_sec": poll_interval_sec,
            "streaming_threshold": 2,
            "idle_threshold": 3
        })
        .to_string(),
    )
    .unwrap();
    file
}

/// A `downshiftarr throttle` service, killed when the test ends (even by a panic).
struct Service(std::process::Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn throttle_original_json_file_runs_as_a_service_and_gives_back_on_sigterm() {
    let Some(r) = rig(json!({})) else {
        return;
    };
    let dir = util::tempdir();
    let file = original_file(&r, dir.path(), 1);
    let state = dir.path().join("state");
    let mut c = command();
    c.args(["throttle", "--config"])
        .arg(&file)
        .arg("--state-dir")
        .arg(&state)
        .env("PLEX_TOKEN", &r.env.plex.token)
        .env("QBITTORRENT_PASSWORD", PASSWORD)
        .stdout(util::log_stdio(&r.env.log()))
        .stderr(util::log_stdio(&r.env.log()));
    let mut service = Service(c.spawn().unwrap());
    wait_for("the service's notification websocket", || {
        r.env.plex.websocket_connections() > 0
    });
    // The original's hysteresis: two observations with the stream, three without.
    r.play(vec![remote("1", "alice")]);
    r.env.plex.notify(playing_frame("1", "playing"));
    wait_for("throttled", || r.upload() == kib(50));
    assert_eq!(records(&state.join("index.sqlite")), 1);
    r.play(vec![]);
    r.env.plex.notify(playing_frame("1", "stopped"));
    wait_for("idle: the original's idle_upload_kbps", || {
        r.upload() == kib(300)
    });
    assert_eq!(records(&state.join("index.sqlite")), 0);
    // Throttled again, then stopped as systemd stops it: the bandwidth is given back.
    r.play(vec![remote("2", "bob")]);
    r.env.plex.notify(playing_frame("2", "playing"));
    wait_for("throttled again", || r.upload() == kib(50));
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(service.0.id() as i32, libc::SIGTERM) };
    let t = Instant::now();
    let status = loop {
        if let Some(s) = service.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    assert_eq!(r.upload(), kib(300), "given back on SIGTERM");
    assert_eq!(records(&state.join("index.sqlite")), 0);
}

#[test]
fn throttle_original_json_file_and_its_environment_overrides() {
    let Some(r) = rig(json!({})) else {
        return;
    };
    let dir = util::tempdir();
    let file = original_file(&r, dir.path(), 10);
    let state = dir.path().join("state");
    let run = |envs: &[(&str, &str)]| {
        let mut c = command();
        c.args(["throttle", "--once", "--config"])
            .arg(&file)
            .arg("--state-dir")
            .arg(&state);
        for (k, v) in envs {
            c.env(k, v);
        }
        Run::from(c.output().unwrap())
    };
    let overrides = [
        ("PLEX_TOKEN", r.env.plex.token.as_str()),
        ("QBITTORRENT_PASSWORD", PASSWORD),
    ];
    r.play(vec![remote("1", "alice")]);
    // The file's own token is stale: Plex refuses, nothing is decided, qBittorrent untouched.
    let out = run(&[]);
    assert_eq!(out.code, Some(1), "{}", out.said());
    assert!(out.stderr.contains("401"), "{}", out.said());
    assert_eq!(r.upload(), RateLimit::UNLIMITED);
    assert_eq!(records(&state.join("index.sqlite")), 0);
    // PLEX_TOKEN and QBITTORRENT_PASSWORD override the file, as they did in the original.
    let out = run(&overrides);
    out.ok_with("throttled: upload 50 KiB/s");
    assert_eq!(r.upload(), kib(50));
    assert_eq!(
        records(&state.join("index.sqlite")),
        1,
        "kept in --state-dir"
    );
    assert!(!out.said().contains(PASSWORD) && !out.said().contains(&r.env.plex.token));
    // Idle means the original's idle_upload_kbps, not what was found (unlimited).
    r.play(vec![]);
    run(&overrides).ok_with("idle: restored upload limit 300 KiB/s");
    assert_eq!(r.upload(), kib(300));
    assert_eq!(records(&state.join("index.sqlite")), 0);
}

/// How a session is counted: `None`, not at all; else its reason and the upload limit set.
type Counted = Option<(&'static str, RateLimit)>;

#[test]
fn throttle_counting_rules_end_to_end() {
    let Some(r) = rig(json!({})) else {
        return;
    };
    let lan = "192.168.1.20";
    let wan = "203.0.113.9";
    // (case, settings, session, counted)
    let cases: Vec<(&str, Value, Value, Counted)> = vec![
        (
            "remote",
            json!({}),
            stream("1", "alice", wan, "wan", "playing"),
            Some(("alice on Living Room Shield (wan)", kib(100))),
        ),
        (
            "local",
            json!({}),
            stream("2", "bob", lan, "lan", "playing"),
            None,
        ),
        (
            "paused, by default",
            json!({}),
            stream("3", "carol", wan, "wan", "paused"),
            None,
        ),
        (
            "paused, count_paused",
            json!({"count_paused": true}),
            stream("3", "carol", wan, "wan", "paused"),
            Some(("carol on Living Room Shield (wan) [paused]", kib(100))),
        ),
        (
            "buffering, by default",
            json!({}),
            stream("4", "dave", wan, "wan", "buffering"),
            None,
        ),
        (
            "buffering, count_buffering",
            json!({"count_buffering": true}),
            stream("4", "dave", wan, "wan", "buffering"),
            Some(("dave on Living Room Shield (wan) [buffering]", kib(100))),
        ),
        (
            "a VPN address Plex calls lan, in remote_cidrs",
            json!({"remote_cidrs": ["10.8.0.0/24"]}),
            stream("5", "erin", "10.8.0.3", "lan", "playing"),
            Some((
                "erin on Living Room Shield (10.8.0.3 in remote_cidrs)",
                kib(100),
            )),
        ),
        (
            "a LAN address a proxy made wan, in lan_cidrs",
            json!({"lan_cidrs": ["192.168.1.0/24"]}),
            stream("6", "frank", "192.168.1.5", "wan", "playing"),
            None,
        ),
        (
            "budget: 20 Mbit/s - Session.bandwidth 8 Mbit/s - 2 Mbit/s margin = 1220 KiB/s",
            json!({"mode": "budget", "upload_capacity_mbit_s": 20.0, "safety_margin_mbit_s": 2.0}),
            stream("7", "gina", wan, "wan", "playing"),
            Some(("gina on Living Room Shield (wan)", kib(1220))),
        ),
    ];
    for (case, settings, session, counted) in cases {
        let mut t = json!({"mode": "limit", "count_paused": false, "count_buffering": false,
            "lan_cidrs": [], "remote_cidrs": [], "upload_capacity_mbit_s": null, "safety_margin_mbit_s": 0.0});
        if let (Some(a), Some(b)) = (t.as_object_mut(), settings.as_object()) {
            a.extend(b.clone());
        }
        r.env.configure("throttle", t);
        r.play(vec![session]);
        let out = r.once(&[]);
        match counted {
            Some((reason, limit)) => {
                assert!(
                    out.code == Some(0)
                        && out
                            .stdout
                            .contains(&format!("1 remote stream(s): {reason}\n"))
                        && out.stdout.contains("throttled:"),
                    "{case}: {}",
                    out.said()
                );
                assert_eq!(r.upload(), limit, "{case}");
                r.play(vec![]);
                let out = r.once(&[]);
                assert!(
                    out.code == Some(0) && out.stdout.contains("idle: restored"),
                    "{case}: {}",
                    out.said()
                );
            }
            None => assert!(
                out.code == Some(0)
                    && out.stdout.contains("no remote stream\n")
                    && out.stdout.contains("idle: nothing to change"),
                "{case}: {}",
                out.said()
            ),
        }
        assert_eq!(r.upload(), RateLimit::UNLIMITED, "{case}");
        assert_eq!(records(&r.db()), 0, "{case}");
    }
}

/// `downshiftarr_throttle_transitions_total{kind="…"}` on `/metrics` (0 when absent).
fn transitions(addr: &str, kind: &str) -> u64 {
    let metrics = http_get(addr, "/metrics");
    let series = format!("downshiftarr_throttle_transitions_total{{kind=\"{kind}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.trim().parse().unwrap())
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < Duration::from_secs(15), "{what}: not in 15 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn throttle_daemon_pause_resume_burst_and_next_episode_gap_never_release() {
    // Released only once no stream was seen for 4 s, after a single idle observation: the
    // restore delay alone keeps the limit through the burst and the gap.
    let Some(r) = rig(json!({"restore_delay_s": 4, "idle_threshold": 1, "streaming_threshold": 2}))
    else {
        return;
    };
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(&r.env.cfg).unwrap()).unwrap();
    let addr = cfg["daemon"]["http_listen"].as_str().unwrap().to_string();
    let daemon = r.env.daemon();
    wait_for("the daemon's notification websocket", || {
        r.env.plex.websocket_connections() > 0
    });
    r.play(vec![remote("1", "alice")]);
    r.env.plex.notify(playing_frame("1", "playing"));
    wait_for("the throttle engaged", || r.upload() == kib(100));
    // From here on qBittorrent's limit is read every 100 ms: any other value is a flap.
    let stop_watch = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let watcher = {
        let (stop_watch, seen) = (stop_watch.clone(), seen.clone());
        let mut c = r.qbit.client(Some(PASSWORD));
        std::thread::spawn(move || {
            while !stop_watch.load(Ordering::SeqCst) {
                let v = c.upload_limit().map_err(|e| e.to_string());
                seen.lock().unwrap().push(v);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    // A pause/resume burst: eight frames within a second, the listing following each.
    for i in 0..8 {
        let state = if i % 2 == 0 { "paused" } else { "playing" };
        r.play(vec![stream("1", "alice", "203.0.113.9", "wan", state)]);
        r.env.plex.notify(playing_frame("1", state));
        std::thread::sleep(Duration::from_millis(120));
    }
    std::thread::sleep(Duration::from_millis(1500));
    // The next episode: the session ends, 1.5 s later a new one starts.
    r.play(vec![]);
    r.env.plex.notify(playing_frame("1", "stopped"));
    std::thread::sleep(Duration::from_millis(1500));
    r.play(vec![remote("2", "alice")]);
    r.env.plex.notify(playing_frame("2", "playing"));
    std::thread::sleep(Duration::from_millis(2500));
    stop_watch.store(true, Ordering::SeqCst);
    watcher.join().unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() > 20, "{} reads", seen.len());
    let other: Vec<_> = seen.iter().filter(|v| **v != Ok(kib(100))).collect();
    assert!(other.is_empty(), "the limit moved: {other:?}");
    assert_eq!(
        (transitions(&addr, "engage"), transitions(&addr, "release")),
        (1, 0),
        "one engage, no release"
    );
    // The stream really ends: given back after the restore delay (so the delay, not a
    // broken release, is what held it).
    r.play(vec![]);
    r.env.plex.notify(playing_frame("2", "stopped"));
    wait_for("the throttle released", || {
        r.upload() == RateLimit::UNLIMITED
    });
    wait_for("the release counted", || transitions(&addr, "release") == 1);
    assert_eq!(transitions(&addr, "engage"), 1);
    stop(daemon);
}
