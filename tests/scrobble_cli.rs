//! The scrobble job's admin surface as a user runs it (issue 12): the `scrobble` section in
//! `check-config` (one Trakt call, secrets redacted), `trakt login` through the device flow,
//! `trakt status` / `logout`, and `scrobble import` of a CrossWatch `config.json` — the real
//! binary against the fake Trakt, the tokens read back from the real SQLite store.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use downshiftarr::clients::trakt::Tokens;
use downshiftarr::jobs::scrobble::tokens;
use downshiftarr::store::Store;
use serde_json::{json, Value};

use crate::fake_trakt::{FakeTrakt, CLIENT_ID, CLIENT_SECRET, GOOD_TOKEN};
use crate::util;

/// A temporary state directory, a config pointing at the fake Trakt, and the fake.
struct Rig {
    dir: tempfile::TempDir,
    config: PathBuf,
    trakt: FakeTrakt,
}

/// What one command printed.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn all(&self) -> String {
        format!(
            "exit {:?}\nstdout:\n{}stderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Rig {
    /// `scrobble` is the section to write (with `trakt_url` set to the fake's).
    fn new(scrobble: Value) -> Rig {
        let dir = util::tempdir();
        let trakt = FakeTrakt::start();
        let config = dir.path().join("config.json");
        let rig = Rig { dir, config, trakt };
        let mut s = scrobble;
        if let Some(o) = s.as_object_mut() {
            o.entry("trakt_url").or_insert(json!(rig.trakt.url()));
        }
        rig.write_config(&json!({
            "daemon": {"state_dir": rig.dir.path()},
            "shim": {"socket": rig.dir.path().join("none.sock")},
            "scrobble": s,
        }));
        rig
    }

    fn write_config(&self, v: &Value) {
        std::fs::write(&self.config, serde_json::to_string_pretty(v).unwrap()).unwrap();
        std::fs::set_permissions(&self.config, std::fs::Permissions::from_mode(0o640)).unwrap();
    }

    fn config_json(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(&self.config).unwrap()).unwrap()
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut c = Command::new(util::cli());
        c.args(args)
            .env("DOWNSHIFTARR_CONFIG", &self.config)
            .env_remove("PLEX_TOKEN")
            .env_remove("PLEX_URL")
            .env_remove("TRAKT_CLIENT_ID")
            .env_remove("TRAKT_CLIENT_SECRET")
            .stdin(std::process::Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        let out: Output = c.output().unwrap();
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn store(&self) -> Store {
        Store::open(&self.dir.path().join("index.sqlite")).unwrap()
    }

    fn tokens(&self, user: &str) -> Option<Tokens> {
        tokens::load(&self.store(), user).unwrap()
    }
}

fn private_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

#[test]
fn check_config_tries_trakt_once_and_never_shows_the_secret() {
    let rig = Rig::new(json!({"client_id": CLIENT_ID}));
    let secret = private_file(rig.dir.path(), "secret", &format!("{CLIENT_SECRET}\n"));
    let mut cfg = rig.config_json();
    cfg["scrobble"]["client_secret_file"] = json!(secret);
    rig.write_config(&cfg);
    let r = rig.run(&["check-config"], &[]);
    assert_eq!(r.code, Some(0), "{}", r.all());
    assert!(
        r.stdout.contains(&format!(
            "trakt {}: ok (the app's client id is accepted)",
            rig.trakt.url()
        )),
        "{}",
        r.all()
    );
    let log = rig.trakt.log();
    assert_eq!(log.len(), 1, "one call");
    assert_eq!(
        (log[0].method.as_str(), log[0].path.as_str()),
        ("GET", "/search/imdb/tt0000001")
    );
    assert_eq!(log[0].header("authorization"), None, "no user token sent");
    // --print: the section, its secret redacted.
    let r = rig.run(&["check-config", "--print"], &[]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["scrobble"]["client_secret"], "<redacted>", "{v}");
    assert_eq!(v["scrobble"]["watched_threshold"], 80.0, "{v}");
    assert!(!r.all().contains(CLIENT_SECRET), "{}", r.all());
    // The environment's secret wins and is not printed either.
    let r = rig.run(
        &["check-config", "--print"],
        &[("TRAKT_CLIENT_SECRET", "env-secret-77")],
    );
    assert!(!r.all().contains("env-secret-77"), "{}", r.all());
    assert!(r
        .stderr
        .contains("environment: TRAKT_CLIENT_SECRET sets scrobble.client_secret"));

    // A client id Trakt does not know: 403, named.
    let r = rig.run(&["check-config"], &[("TRAKT_CLIENT_ID", "not-our-app")]);
    assert_eq!(r.code, Some(1), "{}", r.all());
    assert!(
        r.stdout.contains("refused (403): check scrobble.client_id"),
        "{}",
        r.all()
    );
    // Nobody listening there: the key to fix is named.
    cfg["scrobble"]["trakt_url"] = json!("http://127.0.0.1:1");
    rig.write_config(&cfg);
    let r = rig.run(&["check-config"], &[]);
    assert_eq!(r.code, Some(1), "{}", r.all());
    assert!(r.stdout.contains("scrobble.trakt_url"), "{}", r.all());
    // A secret file others can read: refused, with its key.
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).unwrap();
    let r = rig.run(&["check-config"], &[]);
    assert_eq!(r.code, Some(1), "{}", r.all());
    assert!(
        r.stdout.contains("scrobble.client_secret_file") && r.stdout.contains("chmod 0600"),
        "{}",
        r.all()
    );
    // A bad value: the key is named, exit 1.
    cfg["scrobble"]["forced_stop_after_s"] = json!(3);
    rig.write_config(&cfg);
    let r = rig.run(&["check-config"], &[]);
    assert_eq!(r.code, Some(1), "{}", r.all());
    assert!(
        r.stdout
            .contains("scrobble.forced_stop_after_s: 3 is outside 10..=86400"),
        "{}",
        r.all()
    );
}

/// A rig with the app configured (the secret in a 0600 file).
fn app_rig(extra: Value) -> Rig {
    let rig = Rig::new(json!({"client_id": CLIENT_ID}));
    let secret = private_file(rig.dir.path(), "secret", CLIENT_SECRET);
    let mut cfg = rig.config_json();
    cfg["scrobble"]["client_secret_file"] = json!(secret);
    if let (Some(s), Some(e)) = (cfg["scrobble"].as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    rig.write_config(&cfg);
    rig
}

#[test]
fn device_login_waits_through_pending_and_slow_down_then_stores_the_pair() {
    let rig = app_rig(json!({"users": ["alice", "bob"]}));
    rig.trakt.device_flow(
        1,
        &[400, 429, 400, 200],
        "new-access-9z9z",
        "new-refresh-8y8y",
    );
    let r = rig.run(&["trakt", "login", "--user", "Alice"], &[]);
    assert_eq!(r.code, Some(0), "{}", r.all());
    for line in [
        "To link the Plex user \"Alice\" to a Trakt account:",
        "open https://trakt.tv/activate",
        "enter the code 5055CC52",
        "linked the Plex user \"Alice\" to Trakt",
    ] {
        assert!(r.stdout.contains(line), "{line}: {}", r.all());
    }
    for secret in ["new-access-9z9z", "new-refresh-8y8y", CLIENT_SECRET] {
        assert!(!r.all().contains(secret), "{secret}: {}", r.all());
    }
    let t = rig.tokens("alice").expect("tokens stored");
    assert_eq!(
        (t.access_token.as_str(), t.refresh_token.as_str()),
        ("new-access-9z9z", "new-refresh-8y8y")
    );
    let log = rig.trakt.log();
    let polls: Vec<_> = log
        .iter()
        .filter(|q| q.path == "/oauth/device/token")
        .collect();
    assert_eq!(polls.len(), 4, "stopped polling at the approval");
    // The interval was honoured, one second more after the 429.
    let gap = |i: usize| polls[i + 1].at.duration_since(polls[i].at);
    assert!(
        gap(0) >= std::time::Duration::from_millis(900),
        "{:?}",
        gap(0)
    );
    assert!(
        gap(1) >= std::time::Duration::from_millis(1900),
        "{:?}",
        gap(1)
    );
    assert_eq!(polls[0].json()["client_secret"], CLIENT_SECRET);

    // status lists the linked user and the whitelisted one that is not.
    let r = rig.run(&["trakt", "status"], &[]);
    assert_eq!(r.code, Some(0), "{}", r.all());
    assert!(
        r.stdout.contains("alice: linked, access token"),
        "{}",
        r.all()
    );
    assert!(
        r.stdout.contains(
            "bob: in scrobble.users, not linked: run `downshiftarr trakt login --user bob`"
        ),
        "{}",
        r.all()
    );
    assert!(!r.all().contains("new-access-9z9z"));
    // logout removes them; a second logout says nobody is linked, non-zero.
    let r = rig.run(&["trakt", "logout", "--user", "ALICE"], &[]);
    assert_eq!(r.code, Some(0), "{}", r.all());
    assert_eq!(rig.tokens("alice"), None);
    let r = rig.run(&["trakt", "logout", "--user", "alice"], &[]);
    assert_eq!(r.code, Some(1), "{}", r.all());
    assert!(
        r.stderr.contains("not linked to Trakt (linked: nobody)"),
        "{}",
        r.all()
    );
}

#[test]
fn a_denied_or_spent_login_stores_nothing_and_says_why() {
    for (state, said) in [
        (418, "was denied on Trakt (418): nothing stored"),
        (410, "expired before it was approved (410)"),
        (409, "was already used (409)"),
        (404, "does not know this device code (404)"),
    ] {
        let rig = app_rig(json!({"users": ["alice"]}));
        rig.trakt.device_flow(1, &[400, state], "a-x", "r-x");
        // Without --user: the one entry of scrobble.users.
        let r = rig.run(&["trakt", "login"], &[]);
        assert_ne!(r.code, Some(0), "{}", r.all());
        assert!(r.stderr.contains(said), "{state}: {}", r.all());
        assert_eq!(rig.tokens("alice"), None, "{state}");
    }
    // Nobody to link to: said before anything is asked of Trakt.
    let rig = app_rig(json!({}));
    let r = rig.run(&["trakt", "login"], &[]);
    assert_ne!(r.code, Some(0));
    assert!(r.stderr.contains("--user NAME"), "{}", r.all());
    assert!(rig.trakt.log().is_empty());
    // Scrobbling not configured: the key is named.
    let rig = Rig::new(json!({}));
    let r = rig.run(&["trakt", "login", "--user", "alice"], &[]);
    assert_ne!(r.code, Some(0));
    assert!(
        r.stderr.contains("scrobble.client_id is not set"),
        "{}",
        r.all()
    );
}

#[test]
fn ctrl_c_during_a_login_stores_nothing() {
    let rig = app_rig(json!({}));
    rig.trakt.device_flow(1, &[], "a", "r");
    let child = Command::new(util::cli())
        .args(["trakt", "login", "--user", "alice"])
        .env("DOWNSHIFTARR_CONFIG", &rig.config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !rig
        .trakt
        .log()
        .iter()
        .any(|q| q.path == "/oauth/device/token")
    {
        assert!(std::time::Instant::now() < deadline, "never polled");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("interrupted: nothing was stored"), "{err}");
    assert_eq!(rig.tokens("alice"), None);
}

fn crosswatch() -> PathBuf {
    util::repo().join("fixtures/crosswatch/config.json")
}

#[test]
fn a_crosswatch_config_moves_over_without_a_new_login() {
    let rig = Rig::new(json!({"users": ["carol"], "watched_threshold": 90}));
    let mut cfg = rig.config_json();
    cfg["plex"] = json!({"url": "http://plex.lan:32400"});
    rig.write_config(&cfg);
    let before = std::fs::read_to_string(&rig.config).unwrap();
    let cw = crosswatch();
    let cw = cw.to_str().unwrap();

    // --dry-run: says everything, writes nothing.
    let r = rig.run(&["scrobble", "import", cw, "--dry-run"], &[]);
    assert_eq!(r.code, Some(0), "{}", r.all());
    for line in [
        "would set scrobble.users: [\"carol\", \"Alice\", \"bob\"]",
        "would set scrobble.server_uuid: \"5f3c1a9e0b7d4e2f8a6c1b3d5e7f9a0b1c2d3e4f\"",
        "Trakt tokens (<redacted>) linked to the Plex user \"Alice\"",
        "\"id:8842331\" ignored",
        "dry run: nothing written",
    ] {
        assert!(r.stdout.contains(line), "{line}: {}", r.all());
    }
    assert_eq!(std::fs::read_to_string(&rig.config).unwrap(), before);
    assert!(!rig.dir.path().join("index.sqlite").exists());
    assert!(!rig.dir.path().join("trakt-client-secret").exists());

    let r = rig.run(&["scrobble", "import", cw], &[]);
    assert_eq!(r.code, Some(0), "{}", r.all());
    for secret in [CLIENT_SECRET, GOOD_TOKEN, "refresh-token-1"] {
        assert!(!r.all().contains(secret), "{secret}: {}", r.all());
    }
    let v = rig.config_json();
    assert_eq!(v["plex"]["url"], "http://plex.lan:32400", "other keys kept");
    assert_eq!(v["scrobble"]["watched_threshold"], 90);
    assert_eq!(v["scrobble"]["trakt_url"], rig.trakt.url());
    assert_eq!(v["scrobble"]["client_id"], CLIENT_ID);
    assert_eq!(v["scrobble"]["users"], json!(["carol", "Alice", "bob"]));
    assert_eq!(
        v["scrobble"]["server_uuid"],
        "5f3c1a9e0b7d4e2f8a6c1b3d5e7f9a0b1c2d3e4f"
    );
    assert!(!std::fs::read_to_string(&rig.config)
        .unwrap()
        .contains(CLIENT_SECRET));
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&rig.config).unwrap().mode() & 0o777,
        0o640
    );
    let secret_file = rig.dir.path().join("trakt-client-secret");
    assert_eq!(
        std::fs::read_to_string(&secret_file).unwrap().trim(),
        CLIENT_SECRET
    );
    assert_eq!(
        std::fs::metadata(&secret_file).unwrap().mode() & 0o777,
        0o600
    );
    let t = rig
        .tokens("alice")
        .expect("tokens stored under the Plex user");
    assert_eq!(t.access_token, GOOD_TOKEN);
    assert_eq!(t.refresh_token, "refresh-token-1");
    assert_eq!(t.expires_at(), 4_102_444_800);
    // The result loads as the daemon loads it, and Trakt takes the app.
    let r = rig.run(&["check-config"], &[]);
    assert_eq!(r.code, Some(0), "{}", r.all());
    assert!(
        r.stdout.contains("the app's client id is accepted"),
        "{}",
        r.all()
    );
    let r = rig.run(&["trakt", "status"], &[]);
    assert!(r.stdout.contains("alice: linked"), "{}", r.all());
    // Importing again changes nothing more.
    let once = std::fs::read_to_string(&rig.config).unwrap();
    let r = rig.run(&["scrobble", "import", cw], &[]);
    assert_eq!(r.code, Some(0), "{}", r.all());
    assert_eq!(std::fs::read_to_string(&rig.config).unwrap(), once);
}

#[test]
fn an_import_without_tokens_names_the_key_and_changes_nothing() {
    let rig = Rig::new(json!({}));
    let before = std::fs::read_to_string(&rig.config).unwrap();
    let mut cw: Value =
        serde_json::from_str(&std::fs::read_to_string(crosswatch()).unwrap()).unwrap();
    cw["auth"] = json!({"trakt": {}});
    let path = rig.dir.path().join("cw.json");
    std::fs::write(&path, cw.to_string()).unwrap();
    let r = rig.run(&["scrobble", "import", path.to_str().unwrap()], &[]);
    assert_ne!(r.code, Some(0), "{}", r.all());
    assert!(
        r.stderr.contains(&format!(
            "{}: auth.trakt.access_token is missing",
            path.display()
        )),
        "{}",
        r.all()
    );
    assert!(!r.all().contains(CLIENT_SECRET));
    assert_eq!(std::fs::read_to_string(&rig.config).unwrap(), before);
    assert!(!rig.dir.path().join("index.sqlite").exists());
    // Not JSON at all: said with the path.
    std::fs::write(&path, "{oops").unwrap();
    let r = rig.run(&["scrobble", "import", path.to_str().unwrap()], &[]);
    assert_ne!(r.code, Some(0));
    assert!(r.stderr.contains("invalid JSON"), "{}", r.all());
    // Our config has a bad value: refused, naming it, nothing written.
    let mut cfg = rig.config_json();
    cfg["scrobble"]["watched_threshold"] = json!(0);
    rig.write_config(&cfg);
    let before = std::fs::read_to_string(&rig.config).unwrap();
    let r = rig.run(&["scrobble", "import", crosswatch().to_str().unwrap()], &[]);
    assert_ne!(r.code, Some(0));
    assert!(
        r.stderr.contains("scrobble.watched_threshold"),
        "{}",
        r.all()
    );
    assert_eq!(std::fs::read_to_string(&rig.config).unwrap(), before);
}

#[test]
fn an_import_rewrites_the_target_of_a_symlinked_config() {
    let rig = Rig::new(json!({}));
    let real = rig.dir.path().join("real.json");
    std::fs::rename(&rig.config, &real).unwrap();
    std::os::unix::fs::symlink(&real, &rig.config).unwrap();
    let r = rig.run(&["scrobble", "import", crosswatch().to_str().unwrap()], &[]);
    assert_eq!(r.code, Some(0), "{}", r.all());
    assert!(std::fs::symlink_metadata(&rig.config)
        .unwrap()
        .file_type()
        .is_symlink());
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&real).unwrap()).unwrap();
    assert_eq!(v["scrobble"]["client_id"], CLIENT_ID);
}
