//! The shim binary itself: what it execs, byte for byte, and how it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure is a panic

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "../../tests/support/plex_job.rs"]
mod plex_job;
use plex_job::PlexJob;

const SHIM: &str = env!("CARGO_BIN_EXE_downshiftarr-shim");

fn fake() -> PathBuf {
    let p = Path::new(SHIM)
        .parent()
        .unwrap()
        .join("examples/fake_transcoder");
    assert!(
        p.exists(),
        "{} missing: build it with `cargo build --examples` (plain `cargo test` does)",
        p.display()
    );
    p
}

struct Recorded {
    args: Vec<OsString>,
    cwd: OsString,
    env: Vec<(OsString, OsString)>,
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn read_record(p: &Path) -> Recorded {
    let text = std::fs::read_to_string(p).expect("the fake transcoder ran");
    let mut r = Recorded {
        args: vec![],
        cwd: OsString::new(),
        env: vec![],
    };
    for line in text.lines() {
        let mut it = line.split(' ');
        match it.next() {
            Some("arg") => r
                .args
                .push(OsString::from_vec(unhex(it.next().unwrap_or("")))),
            Some("cwd") => r.cwd = OsString::from_vec(unhex(it.next().unwrap_or(""))),
            Some("env") => {
                let k = OsString::from_vec(unhex(it.next().unwrap_or("")));
                let v = OsString::from_vec(unhex(it.next().unwrap_or("")));
                r.env.push((k, v));
            }
            _ => {}
        }
    }
    r
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dsa-bin-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs the shim as Plex would, with the fake as the real transcoder.
fn run(dir: &Path, args: &[OsString], extra_env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(SHIM);
    c.arg0("/usr/lib/plexmediaserver/Plex Transcoder")
        .args(args)
        .current_dir(dir)
        .env("DOWNSHIFTARR_REAL_TRANSCODER", fake())
        .env("DOWNSHIFTARR_CONFIG", dir.join("none.json"))
        .env("DOWNSHIFTARR_SOCKET", dir.join("no.sock"))
        .env("DOWNSHIFTARR_DECISION_LOG", dir.join("decisions.jsonl"))
        .env("FAKE_TRANSCODER_RECORD", dir.join("record"));
    for (k, v) in extra_env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn pass_through_execs_the_original_bytes_with_argv0_env_and_cwd() {
    let dir = tmp("pass");
    let args: Vec<OsString> = vec![
        "-codec:v".into(),
        "libdav1d".into(),
        "-i".into(),
        OsString::from_vec(b"/m/\xff\xfe odd name.mkv".to_vec()),
        "-vf".into(),
        "[in]fps=0.5,scale=w=320:h=320[out]".into(),
        "-f".into(),
        "image2".into(),
        OsString::from_vec(b"thumb-%05d\x80.jpeg".to_vec()),
    ];
    let out = run(
        &dir,
        &args,
        &[
            ("X_PLEX_TOKEN", "local-0123456789abcdef"),
            ("DOWNSHIFTARR_LOG_NON_VIDEO", "1"),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty(), "the shim never writes to stdout");
    let r = read_record(&dir.join("record"));
    assert_eq!(
        r.args[0],
        OsString::from("/usr/lib/plexmediaserver/Plex Transcoder"),
        "argv[0] preserved"
    );
    assert_eq!(&r.args[1..], &args[..], "arguments byte-identical");
    assert_eq!(Path::new(&r.cwd), dir.canonicalize().unwrap());
    assert!(
        r.env
            .iter()
            .any(|(k, v)| k == "X_PLEX_TOKEN" && v == "local-0123456789abcdef"),
        "environment untouched"
    );
    let log = std::fs::read_to_string(dir.join("decisions.jsonl")).unwrap();
    assert!(
        log.contains("\"job\":\"thumbnail\"") && log.contains("\"decision\":\"pass\""),
        "{log}"
    );
}

#[test]
fn informational_and_unparseable_calls_pass_untouched() {
    let dir = tmp("info");
    for args in [
        vec!["-hide_banner", "-version"],
        vec!["-i"],
        vec![],
        vec!["--", "-odd-output"],
    ] {
        let a: Vec<OsString> = args.iter().map(OsString::from).collect();
        let out = run(&dir, &a, &[]);
        assert!(out.status.success(), "{args:?}: {out:?}");
        assert_eq!(&read_record(&dir.join("record")).args[1..], &a[..]);
    }
}

#[test]
fn real_transcoder_missing_exits_127_not_executable_126() {
    let dir = tmp("missing");
    let out = Command::new(SHIM)
        .arg("-version")
        .env("DOWNSHIFTARR_REAL_TRANSCODER", dir.join("nope"))
        .env("DOWNSHIFTARR_CONFIG", dir.join("none.json"))
        .env("DOWNSHIFTARR_DECISION_LOG", "")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("downshiftarr: ") && err.lines().count() == 1,
        "{err}"
    );
    let plain = dir.join("plain.txt");
    std::fs::write(&plain, "not a program").unwrap();
    let out = Command::new(SHIM)
        .arg("-version")
        .env("DOWNSHIFTARR_REAL_TRANSCODER", &plain)
        .env("DOWNSHIFTARR_CONFIG", dir.join("none.json"))
        .env("DOWNSHIFTARR_DECISION_LOG", "")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(126));
}

#[test]
fn never_execs_itself() {
    let dir = tmp("self");
    let out = Command::new(SHIM)
        .arg("-version")
        .env("DOWNSHIFTARR_REAL_TRANSCODER", SHIM)
        .env("DOWNSHIFTARR_CONFIG", dir.join("none.json"))
        .env("DOWNSHIFTARR_DECISION_LOG", "")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(126));
    assert!(String::from_utf8_lossy(&out.stderr).contains("it is this shim"));
}

#[test]
fn default_real_path_is_beside_the_shim() {
    let dir = tmp("beside");
    let shim = dir.join("Plex Transcoder");
    std::fs::copy(SHIM, &shim).unwrap();
    std::fs::copy(fake(), dir.join("Plex Transcoder.downshiftarr-real")).unwrap();
    let out = Command::new(&shim)
        .args(["-hide_banner", "-filters"])
        .env_remove("DOWNSHIFTARR_REAL_TRANSCODER")
        .env("DOWNSHIFTARR_CONFIG", dir.join("none.json"))
        .env("DOWNSHIFTARR_DECISION_LOG", "")
        .env("FAKE_TRANSCODER_RECORD", dir.join("record"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let r = read_record(&dir.join("record"));
    assert_eq!(
        r.args[1..],
        [OsString::from("-hide_banner"), OsString::from("-filters")]
    );
}

#[test]
fn refusal_is_one_prefixed_line_and_no_exec() {
    let dir = tmp("refuse");
    let args = PlexJob::sw_dash("/nonexistent/Movie.mkv")
        .hints(&[])
        .progress(None)
        .size(1280, 720)
        .args();
    let out = run(&dir, &args, &[]);
    assert_eq!(out.status.code(), Some(69));
    assert!(
        !dir.join("record").exists(),
        "the real transcoder must not run"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("downshiftarr: refused (source facts unknown)"),
        "{err}"
    );
    let log = std::fs::read_to_string(dir.join("decisions.jsonl")).unwrap();
    assert!(log.contains("\"scenario\":\"unknown_source\""), "{log}");
}

#[test]
fn tokens_are_redacted_in_the_decision_log() {
    let dir = tmp("redact");
    let url =
        "http://127.0.0.1:32400/livetv/sessions/x/y/index.m3u8?offset=0&X-Plex-Token=SECRETSECRET";
    let args: Vec<OsString> = [
        "-i", url, "-map", "0:0", "-codec:0", "libx264", "-f", "ssegment", "m.ts",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    let out = run(&dir, &args, &[("X_PLEX_TOKEN", "SECRETSECRET")]);
    assert!(out.status.success(), "{out:?}");
    let log = std::fs::read(dir.join("decisions.jsonl")).unwrap();
    assert!(
        !log.windows(12).any(|w| w == b"SECRETSECRET"),
        "{}",
        String::from_utf8_lossy(&log)
    );
    assert!(log.as_slice().windows(10).any(|w| w == b"<redacted>"));
    let _ = OsString::from("x").as_bytes();
}

/// Spawns `c`, killing it after 5 s: a hang or a loop must fail the test, not stall it.
fn wait_bounded(c: &mut Command) -> std::process::Output {
    use std::io::Read;
    use std::time::{Duration, Instant};
    let mut child = c
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after 5 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    std::process::Output {
        status,
        stdout: vec![],
        stderr: reader.join().unwrap(),
    }
}

/// A job the default policy refuses (a guarded transcode of a file that cannot be read).
fn refused_job() -> Vec<OsString> {
    PlexJob::sw_dash("/nonexistent/Movie.mkv")
        .hints(&[])
        .progress(None)
        .args()
}

/// Issue 9 §2: a refusal whose stderr is a closed pipe aborted (`eprintln!` panics on
/// EPIPE when SIGPIPE is ignored) or was killed by SIGPIPE, instead of exiting 69.
#[test]
fn refusal_into_a_closed_stderr_pipe_still_exits_69() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let dir = tmp("closed-stderr");
    for ignore_sigpipe in [true, false] {
        let mut fds = [0; 2];
        // SAFETY: pipe(2) fills two descriptors, owned below.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: fresh descriptors owned by nobody else.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        drop(r); // nobody will ever read what the shim writes
        let mut c = Command::new(SHIM);
        c.args(refused_job())
            .env("DOWNSHIFTARR_REAL_TRANSCODER", fake())
            .env("DOWNSHIFTARR_CONFIG", dir.join("none.json"))
            .env("DOWNSHIFTARR_SOCKET", dir.join("no.sock"))
            .env("DOWNSHIFTARR_DECISION_LOG", dir.join("decisions.jsonl"))
            .env("FAKE_TRANSCODER_RECORD", dir.join("record"))
            .stderr(w);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            c.pre_exec(move || {
                let disposition = if ignore_sigpipe {
                    libc::SIG_IGN
                } else {
                    libc::SIG_DFL
                };
                libc::signal(libc::SIGPIPE, disposition);
                Ok(())
            });
        }
        let status = c.status().unwrap();
        assert_eq!(
            status.code(),
            Some(69),
            "SIGPIPE ignored: {ignore_sigpipe}: {status:?}"
        );
        assert!(!dir.join("record").exists());
    }
}

/// Issue 9 §2: a `real_transcoder` that is a script exec'ing the shim again looped for
/// ever (~1,000 decision records a second); the same-file check only sees a direct
/// self-exec.
#[test]
fn a_wrapper_script_that_execs_the_shim_again_is_stopped() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tmp("recursion");
    let script = dir.join("wrapper.sh");
    std::fs::write(&script, "#!/bin/sh\nexec \"$SHIM_AGAIN\" \"$@\"\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = wait_bounded(
        Command::new(SHIM)
            .args(["-hide_banner", "-version"])
            .env("SHIM_AGAIN", SHIM)
            .env("DOWNSHIFTARR_REAL_TRANSCODER", &script)
            .env("DOWNSHIFTARR_CONFIG", dir.join("none.json"))
            .env("DOWNSHIFTARR_SOCKET", dir.join("no.sock"))
            .env("DOWNSHIFTARR_DECISION_LOG", dir.join("decisions.jsonl"))
            .env("DOWNSHIFTARR_LOG_NON_VIDEO", "1")
            .env_remove("DOWNSHIFTARR_RECURSION_COUNT"),
    );
    assert_eq!(out.status.code(), Some(126), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("downshiftarr: refusing to run: the shim was started by itself 3 times")
            && err.contains("point it at the real Plex Transcoder")
            && err.lines().count() == 1,
        "{err}"
    );
    let log = std::fs::read_to_string(dir.join("decisions.jsonl")).unwrap_or_default();
    assert_eq!(
        log.lines().count(),
        3,
        "one record per shim in the chain: {log}"
    );
}

/// Issue 9 §2: std's exec reset SIGPIPE to default although Plex started the shim with it
/// ignored. The real transcoder must see exactly the dispositions and mask Plex gave.
#[test]
fn the_transcoder_gets_the_signal_state_plex_gave_the_shim() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tmp("signals");
    let standin = dir.join("report-signals.sh");
    std::fs::write(
        &standin,
        "#!/bin/sh\nexec grep -E '^Sig(Ign|Blk):' /proc/self/status > \"$SIG_REPORT\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&standin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mask_of = |line: &str| {
        let text = std::fs::read_to_string(dir.join("report")).unwrap();
        let hex = text
            .lines()
            .find_map(|l| l.strip_prefix(line))
            .unwrap_or_else(|| panic!("{line} missing in {text}"));
        u64::from_str_radix(hex.trim(), 16).unwrap()
    };
    let bit = |sig: libc::c_int| 1u64 << (sig - 1);
    for ignore_sigpipe in [true, false] {
        let mut c = Command::new(SHIM);
        c.args(["-hide_banner", "-version"])
            .env("DOWNSHIFTARR_REAL_TRANSCODER", &standin)
            .env("DOWNSHIFTARR_CONFIG", dir.join("none.json"))
            .env("DOWNSHIFTARR_SOCKET", dir.join("no.sock"))
            .env("DOWNSHIFTARR_DECISION_LOG", "")
            .env("SIG_REPORT", dir.join("report"));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            c.pre_exec(move || {
                if ignore_sigpipe {
                    libc::signal(libc::SIGPIPE, libc::SIG_IGN);
                }
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGUSR2);
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                Ok(())
            });
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            mask_of("SigIgn:") & bit(libc::SIGPIPE) != 0,
            ignore_sigpipe,
            "SIGPIPE ignored as Plex had it: {ignore_sigpipe}"
        );
        assert_ne!(
            mask_of("SigBlk:") & bit(libc::SIGUSR2),
            0,
            "the blocked mask is kept"
        );
    }
}
