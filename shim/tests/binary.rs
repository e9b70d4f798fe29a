//! The shim binary itself: what it execs, byte for byte, and how it fails.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

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
    let args: Vec<OsString> = [
        "-i",
        "/nonexistent/Movie.mkv",
        "-filter_complex",
        "[0:0]scale=w=1280:h=720[0]",
        "-map",
        "[0]",
        "-codec:0",
        "libx264",
        "-f",
        "dash",
        "dash",
    ]
    .iter()
    .map(OsString::from)
    .collect();
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
