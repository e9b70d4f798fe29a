//! Faults: the daemon absent, silent, answering garbage, a huge frame or one byte at a time;
//! a corrupt config; a missing real transcoder; an unreadable input. Each must end in the
//! documented behaviour, within the daemon budget, without breaking the job.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::util::{self, facts, media, Behaviour, TestDaemon};

struct Run {
    out: Output,
    elapsed: Duration,
    log: String,
    exec: Option<String>,
}

fn run_shim(dir: &Path, args: &[OsString], socket: &Path, config: Option<&str>) -> Run {
    let cfg = dir.join("config.json");
    match config {
        Some(text) => std::fs::write(&cfg, text).unwrap(),
        None => {
            let _ = std::fs::remove_file(&cfg);
        }
    }
    let rec = dir.join("exec-args");
    let _ = std::fs::remove_file(&rec);
    let log = dir.join("decisions.jsonl");
    let _ = std::fs::remove_file(&log);
    let started = Instant::now();
    let out = Command::new(util::shim())
        .args(args)
        .env(
            "DOWNSHIFTARR_REAL_TRANSCODER",
            util::recording_transcoder(dir),
        )
        .env("DOWNSHIFTARR_CONFIG", &cfg)
        .env("DOWNSHIFTARR_SOCKET", socket)
        .env("DOWNSHIFTARR_DECISION_LOG", &log)
        .env("REC", &rec)
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    Run {
        out,
        elapsed,
        log: std::fs::read_to_string(&log).unwrap_or_default(),
        exec: std::fs::read_to_string(&rec).ok(),
    }
}

/// A Plex software transcode of `input` to 720p.
fn job(input: &Path) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["-i".into(), input.as_os_str().to_owned()];
    a.extend(
        [
            "-filter_complex",
            "[0:0]scale=w=1280:h=720[0];[0]format=pix_fmts=yuv420p|nv12[1]",
            "-map",
            "[1]",
            "-codec:0",
            "libx264",
            "-f",
            "dash",
            "dash",
        ]
        .iter()
        .map(OsString::from),
    );
    a
}

/// Generous wall-clock bound: the budget is 50 ms; a hang would be seconds.
const BOUND: Duration = Duration::from_secs(1);

#[test]
fn daemon_absent_falls_back_to_the_probe() {
    let dir = util::tempdir();
    let r = run_shim(
        dir.path(),
        &job(&media().sdr_1080),
        &dir.path().join("none.sock"),
        None,
    );
    assert!(r.out.status.success(), "{:?}", r.out);
    assert!(
        r.log.contains("daemon: daemon not running") && r.log.contains("\"from\":\"probe\""),
        "{}",
        r.log
    );
    assert!(r.exec.is_some());
}

#[test]
fn daemon_silent_garbage_huge_or_dripping_is_abandoned_within_budget() {
    for (name, behaviour, note) in [
        ("silent", Behaviour::Silent, "daemon timeout"),
        ("garbage", Behaviour::Garbage, "daemon malformed frame"),
        ("huge", Behaviour::HugeFrame, "daemon frame size"),
        (
            "drip",
            Behaviour::Drip(facts(3840, 2160, 10, "hdr10")),
            "daemon timeout",
        ),
    ] {
        let dir = util::tempdir();
        let daemon = TestDaemon::spawn(dir.path(), behaviour);
        let r = run_shim(dir.path(), &job(&media().sdr_1080), &daemon.socket, None);
        assert!(r.out.status.success(), "{name}: {:?} {}", r.out, r.log);
        assert!(r.elapsed < BOUND, "{name}: took {:?}", r.elapsed);
        assert!(
            r.log.contains(note) && r.log.contains("\"from\":\"probe\""),
            "{name}: {} {:?} {:?}",
            r.log,
            r.out,
            r.exec
        );
        assert!(
            r.log.contains("\"reason\":\"source not protected\""),
            "{name}: the probe still decides"
        );
    }
}

#[test]
fn daemon_facts_win_and_the_decision_is_reported_to_it() {
    let dir = util::tempdir();
    // The daemon says 4K HDR10 for a file the probe would call 1080p SDR: the daemon wins.
    let daemon = TestDaemon::spawn(
        dir.path(),
        Behaviour::Answer(facts(3840, 2160, 10, "hdr10")),
    );
    let r = run_shim(dir.path(), &job(&media().sdr_1080), &daemon.socket, None);
    assert!(r.out.status.success(), "{:?}", r.out);
    assert!(
        r.exec
            .as_deref()
            .is_some_and(|e| e.contains("tonemap=hable")),
        "{:?}",
        r.exec
    );
    let report = daemon
        .wait_for_report()
        .expect("decision reported to the daemon");
    assert_eq!(report["decision"], "rewrite");
    assert_eq!(report["source"]["from"], "daemon");
    assert!(
        r.log.is_empty(),
        "reported to the daemon, not the file: {}",
        r.log
    );
}

#[test]
fn corrupt_config_uses_defaults_and_names_the_problem() {
    let dir = util::tempdir();
    for (text, needle) in [
        (
            "{\"shim\": {\"max_allowed_heigth\": 1}}",
            "max_allowed_heigth",
        ),
        ("{\"shim\": [", "invalid JSON"),
        ("\u{0}\u{1}garbage", "invalid JSON"),
    ] {
        let r = run_shim(
            dir.path(),
            &job(&media().sdr_1080),
            &dir.path().join("none.sock"),
            Some(text),
        );
        assert!(r.out.status.success(), "{:?}", r.out);
        assert!(r.log.contains(needle), "{needle}: {}", r.log);
        assert!(r.log.contains("\"reason\":\"source not protected\""));
    }
    // Non-video jobs are never touched, whatever the config says.
    let thumb: Vec<OsString> = [
        "-i",
        "/nonexistent.mkv",
        "-vf",
        "fps=1",
        "-f",
        "image2",
        "t-%05d.jpeg",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    let r = run_shim(
        dir.path(),
        &thumb,
        &dir.path().join("none.sock"),
        Some("{\"shim\": {\"kill_on_unknown_source\": true}}"),
    );
    assert!(r.out.status.success());
    assert_eq!(r.exec.unwrap().lines().count(), thumb.len());
}

#[test]
fn real_transcoder_missing_is_127_with_one_line() {
    let dir = util::tempdir();
    let out = Command::new(util::shim())
        .args(job(&media().sdr_1080))
        .env("DOWNSHIFTARR_REAL_TRANSCODER", dir.path().join("gone"))
        .env("DOWNSHIFTARR_CONFIG", dir.path().join("none.json"))
        .env("DOWNSHIFTARR_SOCKET", dir.path().join("none.sock"))
        .env("DOWNSHIFTARR_DECISION_LOG", "")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("downshiftarr: unable to exec real transcoder") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn unreadable_input_is_refused_by_default_and_passed_when_allowed() {
    let dir = util::tempdir();
    let input = dir.path().join("a directory, not a file.mkv");
    std::fs::create_dir_all(&input).unwrap();
    let r = run_shim(
        dir.path(),
        &job(&input),
        &dir.path().join("none.sock"),
        None,
    );
    assert_eq!(
        r.out.status.code(),
        Some(69),
        "KILL_ON_UNKNOWN_SOURCE=1 fails closed"
    );
    assert!(r.exec.is_none());
    assert!(r.log.contains("probe: not a regular file"), "{}", r.log);
    let r = run_shim(
        dir.path(),
        &job(&input),
        &dir.path().join("none.sock"),
        Some("{\"shim\": {\"kill_on_unknown_source\": false}}"),
    );
    assert!(r.out.status.success());
    assert!(r.exec.is_some());
    // A name that says 2160p HDR is a weak fact that still decides.
    let named = dir.path().join("Film (2020) 2160p HDR.mkv");
    std::fs::create_dir_all(&named).unwrap();
    let r = run_shim(
        dir.path(),
        &job(&named),
        &dir.path().join("none.sock"),
        None,
    );
    assert!(
        r.log.contains("\"from\":\"filename\"") && r.log.contains("\"decision\":\"rewrite\""),
        "{}",
        r.log
    );
}
