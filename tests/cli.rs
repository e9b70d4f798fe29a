//! `downshiftarr explain` and `check-config` as a user runs them.

use std::process::Command;

use crate::util::{self, facts, Behaviour, TestDaemon};

fn explain(args: &[&str], env: &[(&str, &std::path::Path)]) -> (bool, String, String) {
    let dir = util::tempdir();
    let mut c = Command::new(util::cli());
    c.arg("explain").args(args).current_dir(util::repo());
    c.env("DOWNSHIFTARR_CONFIG", dir.path().join("none.json"))
        .env("DOWNSHIFTARR_SOCKET", dir.path().join("none.sock"));
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn explain_json_on_a_fixture_with_given_facts() {
    let dir = util::tempdir();
    let src = dir.path().join("src.json");
    std::fs::write(
        &src,
        r#"{"width":3840,"height":2160,"bit_depth":10,"dynamic_range":"hdr10"}"#,
    )
    .unwrap();
    let (ok, out, err) = explain(
        &[
            "--json",
            "--source-json",
            src.to_str().unwrap(),
            "--argv-json",
            "fixtures/plex-argv/nvenc-hevc-2160p-hdr10-to-720p-dash.json",
        ],
        &[],
    );
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["job"], "video_transcode");
    assert_eq!(v["decision"], "rewrite");
    assert_eq!(v["source"]["from"], "given");
    let argv: Vec<String> = serde_json::from_value(v["argv"].clone()).unwrap();
    assert!(
        argv.iter().any(|a| a.contains("tonemap_cuda=hable:nv12")),
        "{argv:?}"
    );
    assert!(
        !argv.iter().any(|a| a.contains("Plex Transcoder")),
        "argv excludes argv[0]"
    );
}

#[test]
fn explain_after_dashdash_and_readable_summary() {
    let m = crate::util::media();
    let input = m.hdr10_2160.to_str().unwrap();
    let (ok, out, err) = explain(
        &[
            "--", "-i", input, "-map", "0:0", "-codec:0", "libx264", "-f", "mp4", "out.mp4",
        ],
        &[],
    );
    assert!(ok, "{err}");
    assert!(out.contains("job:       video_transcode"), "{out}");
    assert!(
        out.contains("source:    3840x2160 10-bit hdr10 (from probe)"),
        "{out}"
    );
    assert!(out.contains("decision:  rewrite"), "{out}");
    assert!(
        out.contains("+ -filter:0 scale=w=1920:h=1080,format=p010,tonemap=hable"),
        "{out}"
    );
}

#[test]
fn explain_shows_facts_from_the_daemon() {
    let dir = util::tempdir();
    let daemon = TestDaemon::spawn(
        dir.path(),
        Behaviour::Answer(facts(3840, 2160, 10, "dolby_vision")),
    );
    let (ok, out, err) = explain(
        &[
            "--json",
            "--argv-json",
            "fixtures/plex-argv/x264-h264-1080p-sdr-to-404p-dash.json",
        ],
        &[("DOWNSHIFTARR_SOCKET", &daemon.socket)],
    );
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["source"]["from"], "daemon");
    assert_eq!(v["decision"], "rewrite");
}

#[test]
fn explain_rejects_bad_input_clearly() {
    let dir = util::tempdir();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"args\": [1, 2]}").unwrap();
    let (ok, _, err) = explain(&["--argv-json", bad.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(
        err.contains("expected an object with an \"args\" array of strings"),
        "{err}"
    );
    let (ok, _, err) = explain(&[], &[]);
    assert!(!ok && err.contains("--argv-json"), "{err}");
}

#[test]
fn check_config_names_the_bad_key() {
    let dir = util::tempdir();
    let cfg = dir.path().join("config.json");
    std::fs::write(
        &cfg,
        r#"{"shim": {"shadow_mode": true, "tonemap_algoritm": "hable"}}"#,
    )
    .unwrap();
    let out = Command::new(util::cli())
        .args(["check-config", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("tonemap_algoritm"));
    std::fs::write(&cfg, r#"{"shim": {"shadow_mode": true}}"#).unwrap();
    let out = Command::new(util::cli())
        .args(["check-config", "--config", cfg.to_str().unwrap(), "--print"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"shadow_mode\": true"));
}

#[test]
fn explain_with_a_viewer_shows_exemptions() {
    let job = [
        "--json",
        "--user",
        "Alice",
        "--",
        "-i",
        "/m/Film - 2160p.mkv",
        "-map",
        "0:0",
        "-codec:0",
        "libx264",
        "-f",
        "dash",
        "dash",
    ];
    let exempt = std::path::Path::new("alice, bob");
    let (ok, out, _) = explain(&job, &[("EXEMPT_USERS", exempt)]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["decision"], "pass", "{v}");
    assert_eq!(v["reason"], "viewer is exempt", "{v}");
    assert_eq!(v["viewer"]["user"], "Alice", "{v}");
    let (_, out, _) = explain(&job, &[]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["decision"], "rewrite", "nobody is exempt: {v}");
}
