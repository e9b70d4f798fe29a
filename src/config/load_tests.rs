//! The loader: reserved sections, secrets read once, the lenient variant.

use super::*;
use std::os::unix::fs::PermissionsExt;

fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

fn none(_: &str) -> Option<String> {
    None
}

#[test]
fn reserved_sections_are_accepted_and_unknown_ones_still_refused() {
    // The downloads section is a real one now (issue 13): its keys are checked.
    let e = parse(r#"{"downloads": {"anything": [1]}}"#).unwrap_err();
    assert!(e.starts_with("downloads.anything: unknown field"), "{e}");
    // The scrobble section is a real one now (issue 12): its keys are checked.
    let e = parse(r#"{"scrobble": {"anything": [1]}}"#).unwrap_err();
    assert!(e.starts_with("scrobble.anything: unknown field"), "{e}");
    let c = parse(r#"{"scrobble": {"client_id": "cid", "watched_threshold": 101}}"#).unwrap();
    assert!(c.scrobble.enabled());
    let e = format!("{:#}", c.validate().unwrap_err());
    assert!(
        e.contains("scrobble.watched_threshold: 101 is outside"),
        "{e}"
    );
    // The throttle section is a real one now: its keys are checked.
    let e = parse(r#"{"throttle": {"anything": [1]}}"#).unwrap_err();
    assert!(e.starts_with("throttle.anything: unknown field"), "{e}");
    let c = parse(r#"{"throttle": {"qbittorrent_url": "http://127.0.0.1:8080", "streaming_upload_kib_s": 500}}"#).unwrap();
    assert!(c.throttle.enabled());
    assert!(c.validate().is_ok());
    let c = parse(r#"{"throttle": {"qbittorrent_url": "http://127.0.0.1:8080"}}"#).unwrap();
    let e = format!("{:#}", c.validate().unwrap_err());
    assert!(
        e.contains("throttle.streaming_upload_kib_s: required"),
        "{e}"
    );
    let e = parse(r#"{"downloads": 5}"#).unwrap_err();
    assert!(e.starts_with("downloads: invalid type"), "{e}");
    let e = parse(r#"{"throtle": {}}"#).unwrap_err();
    assert_eq!(
        e,
        "throtle: unknown section, expected one of shim, plex, index, enforce, tautulli, \
         daemon, throttle, scrobble, downloads"
    );
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "c.json", r#"{"plex": {"tokn": "x"}}"#, 0o600);
    let e = format!("{:#}", load_env(&p, &none).unwrap_err());
    assert!(
        e.starts_with(&format!("config {}: plex.tokn: unknown field", p.display())),
        "{e}"
    );
}

/// Issue 10: `resolved()` read the process environment and the token file at each call
/// (inside the shim's answer path); now the loader reads both once.
#[test]
fn secrets_are_read_once_at_load_from_the_given_environment() {
    let dir = tempfile::tempdir().unwrap();
    let token = write(dir.path(), "token", "file-token\n", 0o600);
    let cfg = write(
        dir.path(),
        "c.json",
        &serde_json::json!({"plex": {"token_file": token, "token": "inline"}}).to_string(),
        0o600,
    );
    let c = load_env(&cfg, &none).unwrap();
    std::fs::remove_file(&token).unwrap();
    assert_eq!(c.plex.resolved().unwrap().1, "file-token", "no re-read");
    let env = |k: &str| match k {
        "PLEX_TOKEN" => Some("env-token".to_string()),
        "PLEX_URL" => Some("http://plex.lan:32400".to_string()),
        _ => None,
    };
    let c = load_env(&cfg, &env).unwrap();
    assert_eq!(
        c.plex.resolved().unwrap(),
        ("http://plex.lan:32400".into(), "env-token".into())
    );
    // The file is gone and nothing in the environment: the error names the key.
    let c = load_env(&cfg, &none).unwrap();
    let e = format!("{:#}", c.plex.resolved().unwrap_err());
    assert!(e.starts_with("plex.token_file "), "{e}");
    for shown in [format!("{c:?}"), serde_json::to_string(&c).unwrap()] {
        assert!(
            !shown.contains("inline") && !shown.contains("env-token"),
            "{shown}"
        );
    }
}

/// Issue 10: the Plex token file's permissions were checked, the Tautulli key file's not.
#[test]
fn the_tautulli_key_file_is_refused_when_others_can_read_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = write(dir.path(), "key", "tautulli-key\n", 0o644);
    let cfg = write(
        dir.path(),
        "c.json",
        &serde_json::json!({"tautulli": {"url": "http://t:8181", "api_key_file": key}}).to_string(),
        0o600,
    );
    let c = load_env(&cfg, &none).unwrap();
    let e = format!("{:#}", c.tautulli.resolved().unwrap_err());
    assert!(
        e.contains("readable or writable by others (chmod 0640"),
        "{e}"
    );
    assert!(e.contains("tautulli.api_key_file"), "{e}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let c = load_env(&cfg, &none).unwrap();
    assert_eq!(
        c.tautulli.resolved().unwrap(),
        Some(("http://t:8181".into(), "tautulli-key".into()))
    );
    // The environment wins over the file, as for the Plex token.
    let env = |k: &str| (k == "TAUTULLI_APIKEY").then(|| "env-key".to_string());
    let c = load_env(&cfg, &env).unwrap();
    assert_eq!(c.tautulli.resolved().unwrap().unwrap().1, "env-key");
}

#[test]
fn the_strict_loader_refuses_a_bad_variable_the_lenient_one_keeps_the_rest() {
    let env = |k: &str| match k {
        "SEEK_RETRIES" => Some("many".to_string()),
        "MAX_ALLOWED_HEIGHT" => Some("3".to_string()),
        "SESSION_LOOKUP_DELAY_S" => Some("0.1".to_string()),
        "PLEX_TOKEN" => Some("t".to_string()),
        _ => None,
    };
    let missing = Path::new("/nonexistent/config.json");
    let e = format!("{:#}", load_env(missing, &env).unwrap_err());
    assert_eq!(e, "environment: SEEK_RETRIES=\"many\": expected a number");
    let (c, problems) = load_lenient(missing, &env);
    assert_eq!(c.enforce.session_lookup_delay_s, 0.1);
    assert_eq!(
        c.enforce.seek_retries,
        EnforceConfig::default().seek_retries
    );
    assert_eq!(
        c.shim,
        ShimConfig::default(),
        "an invalid height drops the env"
    );
    assert_eq!(c.plex.resolved().unwrap().1, "t");
    assert_eq!(problems.len(), 2, "{problems:?}");
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "c.json", "{", 0o600);
    let (c, problems) = load_lenient(&bad, &env);
    assert!(problems[0].contains("invalid JSON") && problems[0].ends_with("using defaults"));
    assert_eq!(c.plex.resolved().unwrap().1, "t");
}

#[test]
fn a_runtime_dir_that_is_not_the_sockets_is_noted() {
    let mut c = Config::default();
    assert!(c.notes().is_empty(), "{:?}", c.notes());
    c.daemon.runtime_dir = "/run/elsewhere".into();
    assert!(c.notes()[0].contains("daemon.runtime_dir /run/elsewhere is deprecated"));
}
