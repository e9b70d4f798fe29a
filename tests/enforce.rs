//! Enforcement with the daemon, against the fake Plex and the fake Tautulli: refused viewers
//! are told why (terminate with `Session.id` and the message, 401 without Plex Pass,
//! Tautulli as the fallback), exemptions honoured when the viewer is known in time, the
//! reactive guard (two observations, no flicker, each `KILL_ON_*` toggle), and the
//! `tautulli` drop-in with and without the daemon.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::daemon::{http_get, stop, wait_for_daemon, Env, MOVIE0_4K, MOVIE3_4K};
use crate::fake_plex::{FakePlex, Play};
use crate::fake_tautulli::FakeTautulli;
use crate::plex_job::PlexJob;
use crate::util;

/// Movie 3 (rating key 1004): media 10041 is its 4K HDR10 version (first in Plex's order),
/// 10040 its 1080p SDR version.
const RK3: u64 = 1004;
const UHD3: u64 = 10041;

fn progress(tx: &str) -> String {
    format!("http://127.0.0.1:32400/video/:/transcode/session/{tx}/0a1b2c3d/progress")
}

/// A Plex-shaped software-pipeline DASH job for `input` in transcode session `tx`.
fn job(input: &str, tx: &str) -> Vec<OsString> {
    PlexJob::sw_dash(input).progress(Some(&progress(tx))).args()
}

/// Runs the shim against the env's daemon; returns its output and the exec'd arguments.
fn shim(env: &Env, args: &[OsString], extra_env: &[(&str, &str)]) -> (Output, String) {
    let rec = env.dir.path().join("exec-args");
    let _ = std::fs::remove_file(&rec);
    let real = util::recording_transcoder(env.dir.path());
    let mut c = Command::new(util::shim());
    c.args(args)
        .env("DOWNSHIFTARR_REAL_TRANSCODER", &real)
        .env("DOWNSHIFTARR_CONFIG", &env.cfg)
        .env("DOWNSHIFTARR_DECISION_LOG", "")
        .env("REC", &rec);
    for (k, v) in extra_env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let exec = std::fs::read_to_string(&rec).unwrap_or_default();
    (out, exec)
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(secs), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn decisions(env: &Env) -> Vec<Value> {
    let out = env.cli(&["decisions", "--json"]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn status(env: &Env) -> Value {
    let out = env.cli(&["status", "--json"]);
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn http_addr(env: &Env) -> String {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&env.cfg).unwrap()).unwrap();
    v["daemon"]["http_listen"].as_str().unwrap().to_string()
}

fn started(movies: u64, shim: Value, enforce: Value) -> (Env, std::process::Child) {
    let env = Env::new(FakePlex::start(movies, 0, 0), json!({}));
    env.configure("shim", shim);
    env.configure("enforce", enforce);
    let d = env.daemon();
    wait_for_daemon(&env.socket(), MOVIE0_4K);
    (env, d)
}

#[test]
fn a_refused_transcode_terminates_the_viewers_session_with_its_message() {
    let (env, daemon) = started(
        4,
        json!({"kill_messages": {"unknown_source": "Pick the 1080p version, please."}}),
        json!({"session_lookup_retries": 20, "session_lookup_delay_s": 0.1}),
    );
    // Plex lists the session only a few polls after the transcoder started.
    let play = &env.plex.play;
    play.visible_from_poll
        .store(play.polls.load(Ordering::SeqCst) + 3, Ordering::SeqCst);
    play.set_sessions(vec![Play::session(
        "21",
        "sess-id-abc",
        "tx-refused-1",
        1002,
        10020,
        "bob",
        "tv-9",
        "transcode",
    )]);
    // A file the index does not know and that cannot be probed: refused (fail closed).
    let (out, exec) = shim(
        &env,
        &job("/data/Movies/Unknown (2001)/Unknown.mkv", "tx-refused-1"),
        &[],
    );
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    assert!(exec.is_empty(), "a refused job is not exec'd");
    wait_until("terminate", 10, || !play.terminations().is_empty());
    assert_eq!(
        play.terminations(),
        vec![(
            "sess-id-abc".to_string(),
            "Pick the 1080p version, please.".to_string()
        )],
        "Session.id (not the session key) and the scenario's message"
    );
    wait_until("the outcome in the audit", 10, || {
        decisions(&env).iter().any(|d| {
            d["outcome"]
                .as_str()
                .is_some_and(|o| o.starts_with("terminated"))
        })
    });
    let d = decisions(&env);
    let refused = d.iter().find(|d| d["decision"] == "refuse").unwrap();
    assert_eq!(refused["origin"], "shim");
    assert_eq!(refused["user"], "bob", "{refused}");
    let out = env.cli(&["decisions", "--since", "1h"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("refuse") && text.contains("terminated"),
        "{text}"
    );
    stop(daemon);
}

#[test]
fn without_plex_pass_the_401_is_reported_and_tautulli_terminates() {
    let taut = FakeTautulli::start();
    let env = Env::new(FakePlex::start(4, 0, 0), json!({}));
    env.configure(
        "enforce",
        json!({"session_lookup_retries": 10, "session_lookup_delay_s": 0.1}),
    );
    env.configure(
        "tautulli",
        json!({"url": taut.url, "api_key": taut.key, "log_notifier_id": 4}),
    );
    let daemon = env.daemon();
    wait_for_daemon(&env.socket(), MOVIE0_4K);
    let play = &env.plex.play;
    play.terminate_status.store(401, Ordering::SeqCst);
    play.set_sessions(vec![Play::session(
        "22",
        "sess-id-401",
        "tx-401",
        1002,
        10020,
        "bob",
        "tv-9",
        "transcode",
    )]);
    let (out, _) = shim(
        &env,
        &job("/data/Movies/Unknown (2001)/Unknown.mkv", "tx-401"),
        &[],
    );
    assert_eq!(out.status.code(), Some(69));
    wait_until("tautulli terminate_session", 10, || {
        !taut.calls_of("terminate_session").is_empty()
    });
    let call = &taut.calls_of("terminate_session")[0];
    assert_eq!(call["session_id"], "sess-id-401");
    assert!(call["message"].contains("cannot be converted"), "{call:?}");
    assert_eq!(play.terminations().len(), 1, "Plex was asked first");
    wait_until("status shows the missing Plex Pass", 10, || {
        status(&env)["enforcement"]["plex_pass_missing"] == true
    });
    let st = status(&env);
    assert!(
        st["enforcement"]["last_error"]
            .as_str()
            .unwrap()
            .contains("Plex Pass"),
        "{st}"
    );
    let text = String::from_utf8_lossy(&env.cli(&["status"]).stdout).into_owned();
    assert!(text.contains("PLEX PASS MISSING"), "{text}");
    let metrics = http_get(&http_addr(&env), "/metrics");
    assert!(
        metrics.contains("downshiftarr_plex_pass_missing 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("downshiftarr_enforcements_total{action=\"terminated\",reason=\"refused by the shim\"} 1"),
        "{metrics}"
    );
    wait_until("the notifier post", 10, || {
        !taut.calls_of("notify").is_empty()
    });
    assert_eq!(taut.calls_of("notify")[0]["notifier_id"], "4");
    stop(daemon);
}

#[test]
fn exempt_viewers_known_in_time_pass_and_unknown_viewers_get_the_default() {
    let (env, daemon) = started(
        4,
        json!({"exempt_users": ["alice"], "daemon_budget_ms": 500}),
        json!({}),
    );
    let play = &env.plex.play;
    play.set_sessions(vec![Play::session(
        "5",
        "sess-alice",
        "tx-alice",
        RK3,
        UHD3,
        "alice",
        "tv-a",
        "transcode",
    )]);
    // Known: the tracker has it (the guard's first poll) or the daemon asks Plex in time.
    let (out, exec) = shim(&env, &job(MOVIE3_4K, "tx-alice"), &[]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        exec.contains("scale=w=3840:h=2160"),
        "alice is exempt: untouched: {exec}"
    );
    assert!(exec.contains("2160p.mkv"), "{exec}");
    // Unknown to Plex: not exempt by default — the shim switches to the 1080p version.
    let (out, exec) = shim(&env, &job(MOVIE3_4K, "tx-nobody"), &[]);
    assert!(out.status.success(), "{out:?}");
    assert!(exec.contains("1080p.mkv"), "{exec}");
    // ...unless the owner chose otherwise.
    let (_, exec) = shim(
        &env,
        &job(MOVIE3_4K, "tx-nobody"),
        &[("EXEMPT_WHEN_VIEWER_UNKNOWN", "1")],
    );
    assert!(exec.contains("2160p.mkv"), "{exec}");
    wait_until("reasons stored", 10, || {
        let d = decisions(&env);
        d.iter().any(|r| r["reason"] == "viewer is exempt")
            && d.iter().any(|r| {
                r["reason"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("viewer unknown in time"))
            })
    });
    let alice = decisions(&env)
        .into_iter()
        .find(|r| r["reason"] == "viewer is exempt")
        .unwrap();
    assert_eq!(alice["user"], "alice");
    stop(daemon);
}

/// The guard's scenarios: one daemon each, polling every second.
fn guard_env(
    enforce: Value,
    sessions: Vec<Value>,
    prepare: impl FnOnce(&Env),
) -> (Env, std::process::Child) {
    let env = Env::new(FakePlex::start(4, 0, 0), json!({}));
    let mut e = json!({"guard_interval_s": 1, "seek_delay_s": 0.05, "seek_retry_delay_s": 0.05});
    e.as_object_mut()
        .unwrap()
        .extend(enforce.as_object().unwrap().clone());
    env.configure("enforce", e);
    prepare(&env);
    env.plex.play.set_sessions(sessions);
    let d = env.daemon();
    wait_for_daemon(&env.socket(), MOVIE0_4K);
    (env, d)
}

fn missed(tx: &str) -> Value {
    Play::session(
        "9",
        &format!("sess-{tx}"),
        tx,
        RK3,
        UHD3,
        "carol",
        "tv-c",
        "transcode",
    )
}

#[test]
fn the_guard_enforces_after_two_observations_and_not_on_a_flicker() {
    // Enforced: a protected transcode nobody reported, seen twice.
    let (env, d) = guard_env(json!({}), vec![missed("tx-missed")], |_| {});
    let play = &env.plex.play;
    wait_until("the guard terminates", 15, || {
        !play.terminations().is_empty()
    });
    assert!(
        play.polls.load(Ordering::SeqCst) >= 2,
        "not before the second observation"
    );
    let (id, msg) = &play.terminations()[0];
    assert_eq!(id, "sess-tx-missed");
    assert!(msg.contains("1080p"), "{msg}");
    wait_until("the guard's decision is stored", 10, || {
        decisions(&env).iter().any(|r| r["origin"] == "guard")
    });
    let g = decisions(&env)
        .into_iter()
        .find(|r| r["origin"] == "guard")
        .unwrap();
    assert_eq!(g["user"], "carol");
    assert_eq!(g["input"], MOVIE3_4K, "the guard records the file: {g}");
    assert!(
        g["outcome"].as_str().unwrap().starts_with("terminated"),
        "{g}"
    );
    stop(d);

    // A flicker: "transcode" for one poll, then direct stream.
    let (env, d) = guard_env(json!({}), Vec::new(), |_| {});
    let play = &env.plex.play;
    let before = play.polls.load(Ordering::SeqCst);
    play.set_sessions(vec![missed("tx-flicker")]);
    wait_until("one observation", 10, || {
        play.polls.load(Ordering::SeqCst) > before
    });
    let mut s = missed("tx-flicker");
    s["TranscodeSession"]["videoDecision"] = json!("copy");
    play.set_sessions(vec![s]);
    let after = play.polls.load(Ordering::SeqCst);
    wait_until("two more polls", 10, || {
        play.polls.load(Ordering::SeqCst) >= after + 2
    });
    assert!(
        play.terminations().is_empty(),
        "a one-off flicker is left alone"
    );
    stop(d);

    // Handled by the shim: its decision for the transcode session is on record.
    let (env, d) = guard_env(json!({}), Vec::new(), |_| {});
    let (out, _) = shim(&env, &job(MOVIE3_4K, "tx-handled"), &[("SHADOW_MODE", "0")]);
    assert!(out.status.success());
    wait_until("the shim's report", 10, || {
        decisions(&env).iter().any(|r| r["session"] == "tx-handled")
    });
    let play = &env.plex.play;
    play.set_sessions(vec![missed("tx-handled")]);
    let after = play.polls.load(Ordering::SeqCst);
    wait_until("three polls", 10, || {
        play.polls.load(Ordering::SeqCst) >= after + 3
    });
    assert!(play.terminations().is_empty(), "the shim handled it");
    // Plex listed the session after the shim decided: the audit now names the viewer.
    wait_until("the shim's decision names carol", 10, || {
        decisions(&env)
            .iter()
            .any(|r| r["session"] == "tx-handled" && r["user"] == "carol")
    });
    // Even if Plex named the transcode differently, the shim's recent decision about the
    // same file keeps the guard off it.
    play.set_sessions(vec![missed("tx-renamed")]);
    let after = play.polls.load(Ordering::SeqCst);
    wait_until("three polls", 10, || {
        play.polls.load(Ordering::SeqCst) >= after + 3
    });
    assert!(play.terminations().is_empty(), "the shim handled that file");
    stop(d);
}

#[test]
fn the_guard_honours_each_kill_on_toggle() {
    let poll_n = |env: &Env, n: u64| {
        let play = &env.plex.play;
        let from = play.polls.load(Ordering::SeqCst);
        wait_until("polls", 15, || {
            play.polls.load(Ordering::SeqCst) >= from + n
        });
    };
    let outcome = |env: &Env| -> String {
        wait_until("the guard's decision", 10, || {
            decisions(env).iter().any(|r| r["origin"] == "guard")
        });
        decisions(env)
            .into_iter()
            .find(|r| r["origin"] == "guard")
            .unwrap()["outcome"]
            .as_str()
            .unwrap()
            .to_string()
    };

    // switch_client: playMedia of the 1080p version (Plex's index 1) at the offset, then seek.
    let (env, d) = guard_env(json!({"switch_client": true}), vec![missed("tx-a")], |_| {});
    let play = &env.plex.play;
    wait_until("playMedia and seekTo", 15, || {
        play.commands.lock().unwrap().len() >= 2
    });
    let cmds = play.commands.lock().unwrap().clone();
    assert_eq!(cmds[0].0, "/player/playback/playMedia");
    assert_eq!(cmds[0].1["mediaIndex"], "1");
    assert_eq!(cmds[0].1["offset"], "754000");
    assert_eq!(cmds[0].1["key"], format!("/library/metadata/{RK3}"));
    assert_eq!(cmds[0].2, "tv-c", "sent to the viewer's client");
    assert_eq!(cmds[1].0, "/player/playback/seekTo");
    assert!(outcome(&env).starts_with("switched_client"));
    assert!(play.terminations().is_empty());
    stop(d);

    // The client cannot be reached: KILL_ON_CLIENT_NOT_FOUND=1 terminates, =0 leaves it.
    for (kill, terminated) in [(true, true), (false, false)] {
        let (env, d) = guard_env(
            json!({"switch_client": true, "kill_on_client_not_found": kill}),
            vec![missed("tx-b")],
            |e| e.plex.play.client_status.store(404, Ordering::SeqCst),
        );
        let o = outcome(&env);
        assert_eq!(o.starts_with("terminated"), terminated, "{o}");
        assert!(o.contains("client not found"), "{o}");
        stop(d);
    }

    // Plex fails the switch: KILL_ON_SWITCH_FAIL.
    for (kill, terminated) in [(true, true), (false, false)] {
        let (env, d) = guard_env(
            json!({"switch_client": true, "kill_on_switch_fail": kill}),
            vec![missed("tx-c")],
            |e| e.plex.play.client_status.store(500, Ordering::SeqCst),
        );
        let o = outcome(&env);
        assert_eq!(o.starts_with("terminated"), terminated, "{o}");
        assert!(o.contains("switch failed"), "{o}");
        stop(d);
    }

    // No compliant version: KILL_ON_NO_FALLBACK_MEDIA.
    for (kill, terminated) in [(true, true), (false, false)] {
        let (env, d) = guard_env(
            json!({"kill_on_no_fallback_media": kill}),
            vec![missed("tx-d")],
            |e| e.plex.remove_version(RK3, 1080),
        );
        let o = outcome(&env);
        assert_eq!(o.starts_with("terminated"), terminated, "{o}");
        assert!(o.contains("no compliant version"), "{o}");
        if !terminated {
            poll_n(&env, 2);
            assert!(env.plex.play.terminations().is_empty());
        }
        stop(d);
    }
}

fn tautulli_cmd(
    env: &Env,
    config: &Path,
    extra: &[&str],
    user: &str,
    sid: &str,
    skey: &str,
) -> Value {
    let out = Command::new(util::cli())
        .arg("tautulli")
        .arg("--config")
        .arg(config)
        .args(extra)
        .args([
            &format!("--rating-key={RK3}"),
            "--machine-id=tv-d",
            &format!("--username={user}"),
            &format!("--session-id={sid}"),
            &format!("--session-key={skey}"),
            "--user-id=9",
            "--video-decision=transcode",
            "--video-resolution=4k",
            "--stream-video-resolution=1080",
            "--video-dynamic-range=HDR",
        ])
        .env_remove("PLEX_TOKEN")
        .env_remove("PLEX_URL")
        .env("ENV_FILE", env.dir.path().join("no-such.env"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

#[test]
fn the_tautulli_drop_in_works_with_and_without_the_daemon() {
    let (env, daemon) = started(4, json!({}), json!({"session_lookup_delay_s": 0.1}));
    let play = &env.plex.play;
    play.set_sessions(vec![Play::session(
        "31",
        "sess-t-1",
        "tx-t1",
        RK3,
        UHD3,
        "dave",
        "tv-d",
        "transcode",
    )]);
    // With the daemon: it finds the session by its key and terminates it.
    let o = tautulli_cmd(&env, &env.cfg, &[], "dave", "", "31");
    assert_eq!(o["action"], "terminated", "{o}");
    assert_eq!(play.terminations()[0].0, "sess-t-1");
    wait_until("the trigger is in the audit", 10, || {
        decisions(&env).iter().any(|r| r["origin"] == "tautulli")
    });
    // A direct play is none of its business.
    let out = Command::new(util::cli())
        .args(["tautulli", "--config"])
        .arg(&env.cfg)
        .args([
            "--rating-key=1004",
            "--username=dave",
            "--video-decision=direct play",
            "--session-key=31",
        ])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["reason"], "not a video transcode", "{v}");
    stop(daemon);

    // Without the daemon: the original Downshiftarr.env keys, and the command decides itself.
    play.set_sessions(vec![
        Play::session(
            "32",
            "sess-t-2",
            "tx-t2",
            RK3,
            UHD3,
            "dave",
            "tv-d",
            "transcode",
        ),
        Play::session(
            "33",
            "sess-t-3",
            "tx-t3",
            RK3,
            UHD3,
            "erin",
            "tv-e",
            "transcode",
        ),
    ]);
    let envfile = env.dir.path().join("Downshiftarr.env");
    std::fs::write(
        &envfile,
        format!(
            "# the original script's settings\nPLEX_URL={}\nPLEX_TOKEN={}\nEXEMPT_USERS=erin\nKILL_MESSAGE_PROTECTED_TRANSCODE=\"Please play the 1080p version.\"\nSESSION_LOOKUP_DELAY_S=0.1\nDOWNSHIFTARR_SOCKET={}\n",
            env.plex.url,
            env.plex.token,
            env.dir.path().join("gone.sock").display()
        ),
    )
    .unwrap();
    let nocfg = env.dir.path().join("no-config.json");
    let ef = format!("--env-file={}", envfile.display());
    let o = tautulli_cmd(&env, &nocfg, &[&ef], "dave", "sess-t-2", "32");
    assert_eq!(o["action"], "terminated", "{o}");
    assert_eq!(o["reason"], "protected transcode", "{o}");
    assert_eq!(
        play.terminations().last().unwrap(),
        &(
            "sess-t-2".to_string(),
            "Please play the 1080p version.".to_string()
        )
    );
    let o = tautulli_cmd(&env, &nocfg, &[&ef], "erin", "sess-t-3", "33");
    assert_eq!(o["reason"], "viewer is exempt", "{o}");
    assert_eq!(play.terminations().len(), 2, "erin is exempt");
}

#[test]
fn plex_failing_during_enforcement_is_reported_and_nothing_else_stops() {
    let (env, daemon) = started(
        4,
        json!({}),
        json!({"session_lookup_retries": 2, "session_lookup_delay_s": 0.1}),
    );
    // From now on every Plex request answers 500.
    let n = env.plex.requests.load(Ordering::SeqCst);
    env.plex.faults.fail_after.store(n.max(1), Ordering::SeqCst);
    let (out, _) = shim(
        &env,
        &job("/data/Movies/Unknown (2001)/Unknown.mkv", "tx-500"),
        &[],
    );
    assert_eq!(out.status.code(), Some(69));
    wait_until("the failure is recorded", 20, || {
        decisions(&env).iter().any(|r| {
            r["outcome"]
                .as_str()
                .is_some_and(|o| o.starts_with("failed: session lookup failed"))
        })
    });
    let st = status(&env);
    assert!(
        st["enforcement"]["last_error"]
            .as_str()
            .unwrap()
            .contains("500"),
        "{st}"
    );
    // The shim's service goes on: the index still answers.
    wait_for_daemon(&env.socket(), MOVIE0_4K);
    // A malformed trigger over the socket is an error answer, not a crash.
    let mut c = downshiftarr_shim::protocol::Client::connect(
        &env.socket(),
        Instant::now() + Duration::from_secs(5),
    )
    .unwrap();
    let r = c
        .call_as(&downshiftarr::daemon::admin::AdminRequest::TautulliEvent {
            event: json!({"rating_key": 12}),
        })
        .unwrap();
    let downshiftarr::daemon::admin::AdminResponse::Enforced { outcome } = r else {
        panic!("{r:?}")
    };
    assert_eq!(outcome["reason"], "malformed trigger", "{outcome}");
    stop(daemon);
}

/// Rows of `decisions --json` for one session.
fn rows_of(env: &Env, session: &str) -> Vec<Value> {
    decisions(env)
        .into_iter()
        .filter(|r| r["session"] == session)
        .collect()
}

#[test]
fn decisions_logged_while_the_daemon_was_down_join_the_audit_once() {
    let env = Env::new(FakePlex::start(4, 0, 0), json!({}));
    let log = env.dir.path().join("decisions.jsonl");
    env.configure("shim", json!({"decision_log": log}));
    let to_log = [("DOWNSHIFTARR_DECISION_LOG", log.to_str().unwrap())];
    let unknown = "/data/Movies/Unknown (2001)/Unknown.mkv";
    // The daemon is down: the shim and the Tautulli drop-in write to the decision log.
    let (out, _) = shim(&env, &job(unknown, "tx-offline-1"), &to_log);
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    env.plex.play.set_sessions(vec![Play::session(
        "41",
        "sess-t-41",
        "tx-t41",
        RK3,
        UHD3,
        "fay",
        "tv-f",
        "transcode",
    )]);
    let o = tautulli_cmd(&env, &env.cfg, &[], "fay", "sess-t-41", "41");
    assert_eq!(o["action"], "terminated", "{o}");
    // `decisions` shows both before the daemon ever ran.
    let shim_rows = rows_of(&env, "tx-offline-1");
    assert_eq!(shim_rows.len(), 1, "{shim_rows:?}");
    assert_eq!(shim_rows[0]["origin"], "shim");
    assert_eq!(shim_rows[0]["decision"], "refuse");
    let trig = rows_of(&env, "41");
    assert_eq!(trig.len(), 1, "{trig:?}");
    assert_eq!(trig[0]["origin"], "tautulli");
    assert_eq!(trig[0]["user"], "fay");
    assert!(
        trig[0]["outcome"]
            .as_str()
            .is_some_and(|o| o.starts_with("terminated")),
        "{trig:?}"
    );

    // The daemon imports the file when it starts, and rotates it.
    let d = env.daemon();
    wait_for_daemon(&env.socket(), MOVIE0_4K);
    assert_eq!(
        env.count("SELECT COUNT(*) FROM decisions WHERE session IN ('tx-offline-1', '41')"),
        2,
        "imported once"
    );
    assert!(!log.exists(), "the log was rotated");
    assert!(env.dir.path().join("decisions.jsonl.1").exists());
    assert_eq!(rows_of(&env, "tx-offline-1").len(), 1, "no duplicate");
    stop(d);

    // Down again: a new line; `decisions` merges the file and the database, by time.
    let (out, _) = shim(&env, &job(unknown, "tx-offline-2"), &to_log);
    assert_eq!(out.status.code(), Some(69));
    let all = decisions(&env);
    let order: Vec<&str> = all.iter().filter_map(|r| r["session"].as_str()).collect();
    assert_eq!(order, ["tx-offline-1", "41", "tx-offline-2"], "{all:?}");

    // A second start imports only the new line.
    let d = env.daemon();
    wait_for_daemon(&env.socket(), MOVIE0_4K);
    assert_eq!(
        env.count(
            "SELECT COUNT(*) FROM decisions WHERE session IN ('tx-offline-1', '41', 'tx-offline-2')"
        ),
        3,
        "a repeat import adds no duplicate"
    );
    assert_eq!(rows_of(&env, "tx-offline-2").len(), 1);
    stop(d);
}

/// `TAUTULLI_LOG_MIN_LEVEL` of the command's environment holds when the daemon decides the
/// trigger too (issue 9: it used to apply only without the daemon).
#[test]
fn the_notifier_level_of_the_drop_in_holds_when_the_daemon_decides() {
    let taut = FakeTautulli::start();
    let env = Env::new(FakePlex::start(4, 0, 0), json!({}));
    env.configure("enforce", json!({"session_lookup_delay_s": 0.1}));
    env.configure(
        "tautulli",
        json!({"url": taut.url, "api_key": taut.key, "log_notifier_id": 4}),
    );
    let daemon = env.daemon();
    wait_for_daemon(&env.socket(), MOVIE0_4K);
    let play = &env.plex.play;
    let trigger = |level: Option<&str>, skey: &str| {
        play.set_sessions(vec![Play::session(
            skey,
            &format!("sess-lvl-{skey}"),
            &format!("tx-lvl-{skey}"),
            RK3,
            UHD3,
            "dave",
            "tv-d",
            "transcode",
        )]);
        let mut cmd = Command::new(util::cli());
        cmd.arg("tautulli")
            .arg("--config")
            .arg(&env.cfg)
            .args([
                &format!("--rating-key={RK3}"),
                "--username=dave",
                &format!("--session-key={skey}"),
                "--video-decision=transcode",
            ])
            .env("ENV_FILE", env.dir.path().join("no-such.env"))
            .env_remove("TAUTULLI_LOG_MIN_LEVEL");
        if let Some(l) = level {
            cmd.env("TAUTULLI_LOG_MIN_LEVEL", l);
        }
        let out = cmd.output().unwrap();
        let v: Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
        assert_eq!(v["action"], "terminated", "{v}");
    };
    // A termination is a warning: ERROR keeps it from the notifier…
    trigger(Some("ERROR"), "41");
    wait_until("the trigger is in the audit", 10, || {
        decisions(&env).iter().any(|r| r["origin"] == "tautulli")
    });
    assert!(
        taut.calls_of("notify").is_empty(),
        "{:?}",
        taut.calls_of("notify")
    );
    // …and the default (WARNING) lets it through.
    trigger(None, "42");
    wait_until("the notifier post", 10, || {
        !taut.calls_of("notify").is_empty()
    });
    assert_eq!(taut.calls_of("notify").len(), 1);
    stop(daemon);
}

#[test]
fn a_session_the_trigger_terminated_is_not_terminated_again_by_the_guard() {
    let (env, d) = guard_env(json!({"session_lookup_delay_s": 0.1}), Vec::new(), |_| {});
    let play = &env.plex.play;
    play.set_sessions(vec![missed("tx-trig")]);
    let o = tautulli_cmd(&env, &env.cfg, &[], "carol", "sess-tx-trig", "9");
    assert_eq!(o["action"], "terminated", "{o}");
    assert_eq!(play.terminations().len(), 1);
    // Plex keeps listing a terminated session until the client reports back (seconds).
    play.set_sessions(vec![missed("tx-trig")]);
    let after = play.polls.load(Ordering::SeqCst);
    wait_until("four guard polls", 15, || {
        play.polls.load(Ordering::SeqCst) >= after + 4
    });
    assert_eq!(
        play.terminations().len(),
        1,
        "the guard remembers what the trigger enforced"
    );
    assert!(
        decisions(&env).iter().all(|r| r["origin"] != "guard"),
        "no second decision"
    );
    // And a repeated trigger for the same session does not terminate it twice either.
    let o = tautulli_cmd(&env, &env.cfg, &[], "carol", "sess-tx-trig", "9");
    assert_eq!(o["reason"], "already enforced", "{o}");
    assert_eq!(play.terminations().len(), 1);
    stop(d);
}

/// Runs the drop-in without a daemon: `Downshiftarr.env` in the test directory with these
/// lines after the connection keys. Returns its JSON answer, its stderr and how long it took.
fn drop_in(env: &Env, lines: &str, user: &str, sid: &str, skey: &str) -> (Value, String, Duration) {
    let envfile = env.dir.path().join("Downshiftarr.env");
    std::fs::write(
        &envfile,
        format!(
            "PLEX_URL={}\nPLEX_TOKEN={}\nSESSION_LOOKUP_DELAY_S=0.1\nDOWNSHIFTARR_SOCKET={}\nDOWNSHIFTARR_DECISION_LOG={}\n{lines}",
            env.plex.url,
            env.plex.token,
            env.dir.path().join("gone.sock").display(),
            env.dir.path().join("decisions.jsonl").display(),
        ),
    )
    .unwrap();
    let t = Instant::now();
    let out = Command::new(util::cli())
        .arg("tautulli")
        .arg("--config")
        .arg(env.dir.path().join("no-config.json"))
        .arg(format!("--env-file={}", envfile.display()))
        .args([
            &format!("--rating-key={RK3}"),
            "--machine-id=tv-g",
            &format!("--username={user}"),
            &format!("--session-id={sid}"),
            &format!("--session-key={skey}"),
            "--video-decision=transcode",
            "--video-resolution=4k",
            "--video-dynamic-range=HDR",
        ])
        .env_remove("PLEX_TOKEN")
        .env_remove("PLEX_URL")
        .env_remove("ENV_FILE")
        .output()
        .unwrap();
    let took = t.elapsed();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    (v, String::from_utf8_lossy(&out.stderr).into_owned(), took)
}

fn gus(n: u32) -> Value {
    Play::session(
        &format!("{n}"),
        &format!("sess-g-{n}"),
        &format!("tx-g-{n}"),
        RK3,
        UHD3,
        "gus",
        "tv-g",
        "transcode",
    )
}

#[test]
fn the_drop_in_keeps_the_original_log_settings() {
    let env = Env::new(FakePlex::start(4, 0, 0), json!({}));
    let dir = env.dir.path();
    let play = &env.plex.play;
    // VERBOSE, a small LOG_MAX_BYTES and LOG_BACKUP_COUNT, nothing on stderr; LOG_FILE
    // unset: downshiftarr.log beside the .env file, as the original script kept it.
    let verbose = "VERBOSE=1\nLOG_TO_STDERR=0\nLOG_MAX_BYTES=1500\nLOG_BACKUP_COUNT=2\n";
    for n in 0..6 {
        play.set_sessions(vec![gus(60 + n)]);
        let (o, stderr, _) = drop_in(
            &env,
            verbose,
            "gus",
            &format!("sess-g-{}", 60 + n),
            &format!("{}", 60 + n),
        );
        assert_eq!(o["action"], "terminated", "{o}");
        assert_eq!(stderr, "", "LOG_TO_STDERR=0");
    }
    let log = dir.join("downshiftarr.log");
    for p in [
        log.clone(),
        dir.join("downshiftarr.log.1"),
        dir.join("downshiftarr.log.2"),
    ] {
        let len = std::fs::metadata(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .len();
        assert!(len < 1500, "{}: {len} bytes", p.display());
    }
    assert!(
        !dir.join("downshiftarr.log.3").exists(),
        "LOG_BACKUP_COUNT=2"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("DEBUG"), "VERBOSE=1: {text}");
    assert!(text.contains("tautulli trigger: terminated"), "{text}");
    assert!(text.contains("PLEX_TOKEN=<redacted>"), "{text}");
    for p in std::fs::read_dir(dir).unwrap() {
        let p = p.unwrap().path();
        if p.to_string_lossy().contains("downshiftarr.log") {
            let t = std::fs::read_to_string(&p).unwrap();
            assert!(!t.contains(&env.plex.token), "token in {}", p.display());
        }
    }

    // LOG_TO_STDERR (the default) is what Tautulli shows; LOG_LEVEL=WARNING drops INFO;
    // LOG_FILE puts the file where the owner had it.
    play.set_sessions(vec![gus(70)]);
    let other = dir.join("elsewhere.log");
    let (o, stderr, _) = drop_in(
        &env,
        &format!("LOG_LEVEL=WARNING\nLOG_FILE={}\n", other.display()),
        "gus",
        "sess-g-70",
        "70",
    );
    assert_eq!(o["action"], "terminated", "{o}");
    assert!(stderr.contains("tautulli trigger: terminated"), "{stderr}");
    let text = std::fs::read_to_string(&other).unwrap();
    assert!(
        text.contains("WARN") && text.contains("terminated"),
        "{text}"
    );
    assert!(!text.contains("INFO") && !text.contains("DEBUG"), "{text}");
    assert!(!stderr.contains(&env.plex.token));
}

#[test]
fn the_drop_in_honours_http_timeout_s() {
    let env = Env::new(FakePlex::start(4, 0, 0), json!({}));
    // Plex takes 10 s to answer for the item.
    env.plex.faults.delay_ms.store(10_000, Ordering::SeqCst);
    env.plex.play.set_sessions(vec![gus(80)]);
    let (o, stderr, took) = drop_in(&env, "HTTP_TIMEOUT_S=0.3\n", "gus", "sess-g-80", "80");
    assert_eq!(o["action"], "terminated", "{o}: {stderr}");
    assert!(
        took < Duration::from_secs(6),
        "HTTP_TIMEOUT_S=0.3 (3 tries): took {took:?}"
    );
}

#[test]
fn check_config_names_unknown_keys_of_the_env_file() {
    let env = Env::new(FakePlex::start(1, 0, 0), json!({}));
    let f = env.dir.path().join("Downshiftarr.env");
    std::fs::write(
        &f,
        "PLEX_URL=http://x:32400\nLOG_MAX_BYTES=100\nKILL_MESSAGE_SWITCH_FAIL=hi\nTELEMETRY_FILE=/tmp/t\nSESION_LOOKUP_RETRIES=3\n",
    )
    .unwrap();
    let out = env.cli(&["check-config", "--env-file", f.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(err.contains("unknown key SESION_LOOKUP_RETRIES"), "{err}");
    assert!(
        err.contains("TELEMETRY_FILE is a key of the original script"),
        "{err}"
    );
    assert!(
        !err.contains("LOG_MAX_BYTES") && !err.contains("KILL_MESSAGE"),
        "{err}"
    );
}
