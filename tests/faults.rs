//! Faults: the daemon absent, silent, answering garbage, a huge frame or one byte at a time;
//! a corrupt config; a missing real transcoder; an unreadable input. Each must end in the
//! documented behaviour, within the daemon budget, without breaking the job.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use downshiftarr_shim::protocol::Request;

use crate::plex_job::PlexJob;
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
    let input = input.to_str().expect("a UTF-8 test path");
    PlexJob::sw_dash(input)
        .hints(&[])
        .progress(None)
        .size(1280, 720)
        .args()
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

/// Makes a FIFO (named pipe) at `p`.
fn mkfifo(p: &Path) {
    let st = Command::new("mkfifo").arg(p).status().unwrap();
    assert!(st.success(), "mkfifo {}", p.display());
}

/// Runs the shim with `env`, killing it after 5 s: a hang must fail the test, not stall it.
fn run_bounded(dir: &Path, args: &[OsString], env: &[(&str, &Path)]) -> Run {
    use std::process::Stdio;
    let rec = dir.join("exec-args");
    let _ = std::fs::remove_file(&rec);
    let mut c = Command::new(util::shim());
    c.args(args)
        .env(
            "DOWNSHIFTARR_REAL_TRANSCODER",
            util::recording_transcoder(dir),
        )
        .env("DOWNSHIFTARR_CONFIG", dir.join("none.json"))
        .env("DOWNSHIFTARR_SOCKET", dir.join("none.sock"))
        .env("DOWNSHIFTARR_DECISION_LOG", dir.join("decisions.jsonl"))
        .env("REC", &rec)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let started = Instant::now();
    let mut child = c.spawn().unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the shim hung: killed after 5 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    Run {
        out: Output {
            status,
            stdout: vec![],
            stderr: vec![],
        },
        elapsed,
        log: std::fs::read_to_string(dir.join("decisions.jsonl")).unwrap_or_default(),
        exec: std::fs::read_to_string(&rec).ok(),
    }
}

/// Issue 9 §2: the probe opened the input before checking its type, so a FIFO named like a
/// 4K film hung a libx264 job for ever (nothing ever writes to it).
#[test]
fn a_fifo_as_the_input_never_hangs_a_video_job() {
    let dir = util::tempdir();
    let input = dir.path().join("F 2160p HDR.mkv");
    mkfifo(&input);
    let r = run_bounded(dir.path(), &job(&input), &[]);
    assert!(r.elapsed < BOUND, "took {:?}", r.elapsed);
    assert!(r.out.status.success(), "{:?}", r.out.status);
    assert!(r.exec.is_some(), "the real transcoder was exec'd");
    assert!(r.log.contains("probe: not a regular file"), "{}", r.log);
    // The name still says 2160p HDR: the weak fact decides, the job is rewritten.
    assert!(r.log.contains("\"decision\":\"rewrite\""), "{}", r.log);
}

/// Issue 9 §2: a FIFO as the decision log hung every guarded job (a blocking write-open
/// with no reader), and a FIFO as the config file hung even thumbnails.
#[test]
fn a_fifo_as_decision_log_or_config_never_hangs_a_job() {
    let dir = util::tempdir();
    let fifo_log = dir.path().join("decisions.fifo");
    mkfifo(&fifo_log);
    let r = run_bounded(
        dir.path(),
        &job(&media().sdr_1080),
        &[("DOWNSHIFTARR_DECISION_LOG", &fifo_log)],
    );
    assert!(r.elapsed < BOUND, "took {:?}", r.elapsed);
    assert!(r.out.status.success() && r.exec.is_some(), "{:?}", r.out);

    let fifo_cfg = dir.path().join("config.fifo");
    mkfifo(&fifo_cfg);
    let thumb: Vec<OsString> = [
        "-i",
        "/nonexistent.mkv",
        "-vf",
        "fps=1",
        "-f",
        "image2",
        "t.jpeg",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    for args in [thumb, job(&media().sdr_1080)] {
        let r = run_bounded(dir.path(), &args, &[("DOWNSHIFTARR_CONFIG", &fifo_cfg)]);
        assert!(r.elapsed < BOUND, "took {:?}", r.elapsed);
        assert!(r.out.status.success() && r.exec.is_some(), "{:?}", r.out);
        // The config error is recorded, naming the file and what it is.
        assert!(
            r.log.contains("config.fifo: not a regular file (a fifo)"),
            "{}",
            r.log
        );
    }
}

/// Issue 9 §2: with live TV guarded, `lookup_source` sent the input URL with its
/// `X-Plex-Token=…` over the socket. The token never leaves the shim.
#[test]
fn lookup_source_never_carries_the_plex_token() {
    let dir = util::tempdir();
    let daemon = TestDaemon::spawn(dir.path(), Behaviour::Answer(facts(1920, 1080, 8, "sdr")));
    let url =
        "http://127.0.0.1:32400/livetv/sessions/x/y/index.m3u8?offset=0&X-Plex-Token=SECRETSECRET";
    let args: Vec<OsString> = [
        "-i", url, "-map", "0:0", "-codec:0", "libx264", "-f", "ssegment", "m.ts",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    let r = run_bounded(
        dir.path(),
        &args,
        &[
            ("DOWNSHIFTARR_SOCKET", &daemon.socket),
            ("GUARDED_JOBS", Path::new("streaming,live_tv")),
        ],
    );
    assert!(r.out.status.success(), "{:?}", r.out);
    daemon.wait_for_report();
    let requests = daemon.requests.lock().unwrap().clone();
    let lookup = requests
        .iter()
        .find_map(|q| match q {
            Request::LookupSource { path } => Some(path.clone()),
            _ => None,
        })
        .expect("the live TV input was looked up");
    assert!(!lookup.contains("SECRETSECRET"), "{lookup}");
    assert!(lookup.contains("X-Plex-Token=<redacted>"), "{lookup}");
}

/// Issue 9 §3: a group- or world-writable config must not choose what the shim executes;
/// the shim ignores its `real_transcoder` and `check-config` says why.
#[test]
fn a_writable_config_cannot_choose_what_the_shim_executes() {
    use std::os::unix::fs::PermissionsExt;
    let dir = util::tempdir();
    let cfg = dir.path().join("config.json");
    let evil = dir.path().join("evil.sh");
    std::fs::write(&evil, "#!/bin/sh\ntouch \"$0.ran\"\n").unwrap();
    std::fs::set_permissions(&evil, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        &cfg,
        format!(r#"{{"shim": {{"real_transcoder": "{}"}}}}"#, evil.display()),
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o666)).unwrap();
    let mut c = Command::new(util::shim());
    let out = c
        .args(["-hide_banner", "-version"])
        .env_remove("DOWNSHIFTARR_REAL_TRANSCODER")
        .env("DOWNSHIFTARR_CONFIG", &cfg)
        .env("DOWNSHIFTARR_SOCKET", dir.path().join("none.sock"))
        .env(
            "DOWNSHIFTARR_DECISION_LOG",
            dir.path().join("decisions.jsonl"),
        )
        .output()
        .unwrap();
    assert!(!dir.path().join("evil.sh.ran").exists(), "{out:?}");
    let log = std::fs::read_to_string(dir.path().join("decisions.jsonl")).unwrap_or_default();
    assert!(
        log.contains(
            "shim.real_transcoder ignored: the file is group- or world-writable (mode 0666)"
        ),
        "{log}"
    );
    let out = Command::new(util::cli())
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "the shim refuses real_transcoder from this file: the file is group- or world-writable"
        ),
        "{err}"
    );
}
