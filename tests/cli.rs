//! `downshiftarr explain` and `check-config` as a user runs them.

use std::path::Path;
use std::process::Command;

use crate::plex_job::PlexJob;
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
    let plex = PlexJob::sw_dash("/m/Film - 2160p.mkv")
        .hints(&[])
        .progress(None)
        .strings();
    let mut job = vec!["--json", "--user", "Alice", "--"];
    job.extend(plex.iter().map(String::as_str));
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

/// The CLI with a clean environment: no Plex settings, this config and socket.
fn cli(args: &[&str], config: &Path, socket: &Path) -> std::process::Output {
    Command::new(util::cli())
        .args(args)
        .env("DOWNSHIFTARR_CONFIG", config)
        .env("DOWNSHIFTARR_SOCKET", socket)
        .env_remove("PLEX_TOKEN")
        .env_remove("PLEX_URL")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_config_file_named_with_dash_dash_config_must_exist() {
    let dir = util::tempdir();
    let missing = dir.path().join("mistyped.json");
    let default = dir.path().join("default.json");
    let sock = dir.path().join("none.sock");
    let m = missing.to_str().unwrap();
    let out = cli(&["check-config", "--config", m], &default, &sock);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("config file {m} does not exist")),
        "{err}"
    );
    assert!(!text(&out.stdout).contains(": ok"), "{out:?}");
    let job = [
        "--", "-i", "/m/a.mkv", "-map", "0:0", "-codec:0", "libx264", "-f", "mp4", "o.mp4",
    ];
    let out = cli(
        &[&["explain", "--config", m][..], &job].concat(),
        &default,
        &sock,
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(text(&out.stderr).contains(m), "{out:?}");
    // The default may be absent, and says so.
    let out = cli(&["check-config"], &default, &sock);
    let said = text(&out.stdout);
    assert!(
        said.contains(&format!(
            "no config file at {}: using defaults",
            default.display()
        )),
        "{said}"
    );
    assert!(!said.contains(": ok"), "{said}");
}

#[test]
fn check_config_print_puts_only_json_on_stdout() {
    let dir = util::tempdir();
    let cfg = dir.path().join("config.json");
    std::fs::write(&cfg, r#"{"shim": {"shadow_mode": true}}"#).unwrap();
    let sock = dir.path().join("none.sock");
    let out = cli(&["check-config", "--print"], &cfg, &sock);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON alone ({e}): {out:?}"));
    assert_eq!(v["shim"]["shadow_mode"], true);
    assert!(
        text(&out.stderr).contains(&format!("config {}: ok", cfg.display())),
        "{out:?}"
    );
}

/// A config whose Plex is `url`, with state and socket in `dir`.
fn plex_config(dir: &Path, url: &str) -> std::path::PathBuf {
    let cfg = dir.join("config.json");
    std::fs::write(
        &cfg,
        serde_json::json!({
            "plex": {"url": url, "token": "SECRET-TOKEN-42", "connect_timeout_ms": 500, "read_timeout_ms": 1000},
            "shim": {"socket": dir.join("run/shim.sock")},
            "index": {"sync_interval_s": 0},
            "daemon": {"state_dir": dir.join("state"), "runtime_dir": dir.join("run"),
                       "heal_transcoder": false, "socket_group": "", "http_listen": ""}
        })
        .to_string(),
    )
    .unwrap();
    cfg
}

#[test]
fn plex_errors_name_the_server_and_the_cause() {
    let dir = util::tempdir();
    let cfg = plex_config(dir.path(), "http://127.0.0.1:1");
    let sock = dir.path().join("none.sock");
    let refused = "cannot connect to Plex at 127.0.0.1:1: connection refused";
    let out = cli(&["check-config"], &cfg, &sock);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let said = text(&out.stdout);
    assert!(said.contains(&format!("plex: {refused}")), "{said}");
    let out = cli(&["sync"], &cfg, &sock);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains(refused), "{err}");
    for o in [&said, &err] {
        assert!(!o.contains("SECRET-TOKEN-42"), "{o}");
    }
    let bad = plex_config(dir.path(), "ht tp://plex:32400");
    let out = cli(&["check-config"], &bad, &sock);
    let said = text(&out.stdout);
    assert!(
        said.contains("plex: plex.url (or PLEX_URL) \"ht tp://plex:32400\" is not a usable URL"),
        "{said}"
    );
}

#[test]
fn status_of_a_daemon_that_cannot_reach_plex() {
    let dir = util::tempdir();
    let cfg = plex_config(dir.path(), "http://127.0.0.1:1");
    let socket = dir.path().join("run/shim.sock");
    let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
    let mut daemon = Command::new(util::cli())
        .args(["daemon", "--config"])
        .arg(&cfg)
        .env_remove("PLEX_TOKEN")
        .env_remove("PLEX_URL")
        .env_remove("JOURNAL_STREAM")
        .stderr(log)
        .spawn()
        .unwrap();
    // No config file at the default path: the socket comes from DOWNSHIFTARR_SOCKET.
    let none = dir.path().join("none.json");
    let refused = "cannot connect to Plex at 127.0.0.1:1: connection refused";
    let t = std::time::Instant::now();
    let (code, said) = loop {
        let out = cli(&["status"], &none, &socket);
        let said = text(&out.stdout);
        if said.contains("FAILED") {
            break (out.status.code(), said);
        }
        if t.elapsed() > std::time::Duration::from_secs(10) {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(daemon.id() as i32, libc::SIGKILL) };
            panic!("status never showed the failed sync: {out:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let json = cli(&["status", "--json"], &none, &socket);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let _ = daemon.wait();
    assert_eq!(
        code,
        Some(1),
        "a daemon whose sync fails is unhealthy: {said}"
    );
    assert!(said.contains("UNHEALTHY"), "{said}");
    assert!(
        said.contains("FAILED: ") && said.contains(refused),
        "{said}"
    );
    assert_eq!(json.status.code(), Some(1), "{json:?}");
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["running"], true, "{v}");
    assert_eq!(v["healthy"], false, "{v}");
    let logged = util::read(&dir.path().join("daemon.log"));
    assert!(logged.contains(refused), "{logged}");
    assert!(!logged.contains("SECRET-TOKEN-42") && !said.contains("SECRET-TOKEN-42"));
}

#[test]
fn status_when_the_daemon_is_not_running() {
    let dir = util::tempdir();
    let none = dir.path().join("none.json");
    let socket = dir.path().join("none.sock");
    let out = cli(&["status"], &none, &socket);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let said = text(&out.stdout);
    assert!(said.contains("not running"), "{said}");
    assert!(said.contains(&socket.display().to_string()), "{said}");
    assert!(
        said.contains("systemctl start downshiftarr") && said.contains("downshiftarr daemon"),
        "{said}"
    );
    let out = cli(&["status", "--json"], &none, &socket);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("--json must print an object ({e}): {out:?}"));
    assert_eq!(v["running"], false, "{v}");
    assert_eq!(v["socket"], socket.to_str().unwrap(), "{v}");
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
}

/// A daemon stand-in that answers `status` with this status.
fn status_daemon(
    socket: &Path,
    status: downshiftarr::daemon::status::Status,
) -> std::thread::JoinHandle<()> {
    use downshiftarr::daemon::admin::{AdminRequest, AdminResponse};
    use downshiftarr_shim::protocol;
    use std::io::Write;
    let l = std::os::unix::net::UnixListener::bind(socket).unwrap();
    l.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        // Gives up after 5 s, so a status that never connects fails instead of hanging.
        let t = std::time::Instant::now();
        let conn = loop {
            match l.accept() {
                Ok((c, _)) => break Some(c),
                Err(_) if t.elapsed() < std::time::Duration::from_secs(5) => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(_) => break None,
            }
        };
        if let Some(mut c) = conn {
            let _ = c.set_nonblocking(false);
            if let Ok(AdminRequest::Status) =
                protocol::read_frame(&mut c).and_then(|b| protocol::decode::<AdminRequest>(&b))
            {
                let _ = c.write_all(&protocol::encode(&AdminResponse::Status {
                    status: Box::new(status),
                }));
            }
        }
    })
}

#[test]
fn status_exit_code_says_healthy() {
    let dir = util::tempdir();
    let none = dir.path().join("none.json");
    let socket = dir.path().join("d.sock");
    let t = status_daemon(
        &socket,
        downshiftarr::daemon::status::Status {
            healthy: true,
            version: "x".into(),
            ..Default::default()
        },
    );
    let out = cli(&["status"], &none, &socket);
    t.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(text(&out.stdout).contains("healthy"), "{out:?}");
}

#[test]
fn explain_tells_what_the_output_and_the_refusal_really_are() {
    // A 2160p HDR10 → 720p job is tone-mapped and stays 720p.
    let dir = util::tempdir();
    let src = dir.path().join("src.json");
    std::fs::write(
        &src,
        r#"{"width":3840,"height":2160,"bit_depth":10,"dynamic_range":"hdr10"}"#,
    )
    .unwrap();
    let fixture = "fixtures/plex-argv/nvenc-hevc-2160p-hdr10-to-720p-dash.json";
    let (ok, out, err) = explain(
        &[
            "--source-json",
            src.to_str().unwrap(),
            "--argv-json",
            fixture,
        ],
        &[],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("decision:  rewrite — protected source rewritten to 1280x720 sdr"),
        "{out}"
    );
    assert!(!out.contains("1080p"), "{out}");
    let (_, out, _) = explain(
        &[
            "--json",
            "--source-json",
            src.to_str().unwrap(),
            "--argv-json",
            fixture,
        ],
        &[],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["output"]["height"], 720, "{v}");
    assert_eq!(v["config_errors"], serde_json::json!([]), "{v}");
    // A file that does not exist: said so, and the viewer is not told about 4K/HDR.
    let job = [
        "--",
        "-i",
        "/nonexistent/Film.mkv",
        "-map",
        "0:0",
        "-codec:0",
        "libx264",
        "-f",
        "mp4",
        "o.mp4",
    ];
    let (_, out, _) = explain(&job, &[]);
    assert!(out.contains("probe: file not found"), "{out}");
    assert!(out.contains("decision:  refuse"), "{out}");
    assert!(!out.contains("4K/HDR"), "{out}");
    // The config errors the shim's record lists.
    let cfg = dir.path().join("config.json");
    std::fs::write(&cfg, r#"{"shim": {"max_allowed_height": "tall"}}"#).unwrap();
    let (_, out, _) = explain(
        &[&["--json", "--config", cfg.to_str().unwrap()][..], &job].concat(),
        &[],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let errors = v["config_errors"].as_array().cloned().unwrap_or_default();
    assert!(
        errors.len() == 1 && errors[0].as_str().unwrap_or("").contains("\"tall\""),
        "{v}"
    );
}

#[test]
fn explain_help_lists_the_dynamic_ranges() {
    let out = Command::new(util::cli())
        .args(["explain", "--help"])
        .output()
        .unwrap();
    let help = text(&out.stdout);
    for dr in ["sdr", "hdr10", "hdr10plus", "hlg", "dolby_vision"] {
        assert!(help.contains(dr), "{dr} missing from:\n{help}");
    }
}

/// A FIFO as the config file is an error that names it, never a hang (issue 9 §2).
#[test]
fn check_config_on_a_fifo_says_so_and_never_hangs() {
    let dir = util::tempdir();
    let fifo = dir.path().join("config.json");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let mut child = Command::new(util::cli())
        .args(["check-config", "--config", fifo.to_str().unwrap()])
        .env("DOWNSHIFTARR_SOCKET", dir.path().join("none.sock"))
        .env_remove("PLEX_TOKEN")
        .env_remove("PLEX_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > std::time::Duration::from_secs(10) {
            let _ = child.kill();
            panic!("check-config hangs on a FIFO config");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "{out:?}");
    let said = text(&out.stdout) + &text(&out.stderr);
    assert!(said.contains(fifo.to_str().unwrap()), "{said}");
    assert!(said.contains("fifo"), "{said}");
}

/// Issue 10: `check-config` loaded the file without the shim's environment names, so it
/// showed another configuration than the shim ran with. Now one table feeds both: the
/// variables are listed, applied to every section, and secrets stay redacted.
#[test]
fn check_config_applies_the_shims_environment_names_like_the_shim() {
    let dir = util::tempdir();
    let cfg = dir.path().join("config.json");
    let key = dir.path().join("tautulli.key");
    std::fs::write(&key, "TAUTULLI-SECRET-7\n").unwrap();
    std::fs::write(
        &cfg,
        serde_json::json!({
            "plex": {"token": "SECRET-TOKEN-42"},
            "tautulli": {"url": "http://127.0.0.1:1", "api_key_file": key},
            "downloads": {"dry_run": true}
        })
        .to_string(),
    )
    .unwrap();
    let sock = dir.path().join("none.sock");
    let run = |envs: &[(&str, &str)]| {
        let mut c = Command::new(util::cli());
        c.args(["check-config", "--print"])
            .env("DOWNSHIFTARR_CONFIG", &cfg)
            .env("DOWNSHIFTARR_SOCKET", &sock)
            .env_remove("PLEX_TOKEN")
            .env_remove("PLEX_URL")
            .env_remove("TAUTULLI_APIKEY");
        for (k, v) in envs {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    // The key file is readable by others: refused, and said with its key and path.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(&[("SHADOW_MODE", "1"), ("KILL_ON_NO_FALLBACK_MEDIA", "0")]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "tautulli.api_key_file {}: readable or writable by others",
            key.display()
        )),
        "{err}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = run(&[("SHADOW_MODE", "1"), ("KILL_ON_NO_FALLBACK_MEDIA", "0")]);
    let err = text(&out.stderr);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON alone ({e}): {out:?}"));
    assert_eq!(v["shim"]["shadow_mode"], true, "{v}");
    assert_eq!(v["shim"]["socket"], sock.to_str().unwrap(), "{v}");
    assert_eq!(v["shim"]["kill_on_no_fallback_media"], false, "{v}");
    assert_eq!(v["enforce"]["kill_on_no_fallback_media"], false, "{v}");
    assert_eq!(v["downloads"]["dry_run"], true, "{v}");
    assert_eq!(v["plex"]["token"], "<redacted>", "{v}");
    assert_eq!(v["tautulli"]["api_key"], "<redacted>", "{v}");
    for said in [&err, &text(&out.stdout)] {
        assert!(!said.contains("SECRET-TOKEN-42") && !said.contains("TAUTULLI-SECRET-7"));
    }
    for line in [
        "environment: SHADOW_MODE sets shim.shadow_mode",
        "environment: KILL_ON_NO_FALLBACK_MEDIA sets shim.kill_on_no_fallback_media",
        "environment: KILL_ON_NO_FALLBACK_MEDIA sets enforce.kill_on_no_fallback_media",
        "environment: DOWNSHIFTARR_SOCKET sets shim.socket",
        "tautulli http://127.0.0.1:1: configured",
    ] {
        assert!(err.contains(line), "{line}: {err}");
    }
    // A value the shim cannot read is an error of check-config too, said once.
    let out = run(&[("GUARDED_JOBS", "streaming,everything")]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.matches("GUARDED_JOBS=\"streaming,everything\": expected streaming, optimize, live_tv")
            .count(),
        1,
        "{err}"
    );
}
