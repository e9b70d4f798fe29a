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

use crate::fake_trakt::{Answer, FakeTrakt, CLIENT_ID, CLIENT_SECRET};
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

    #[allow(dead_code)]
    fn store(&self) -> Store {
        Store::open(&self.dir.path().join("index.sqlite")).unwrap()
    }

    #[allow(dead_code)]
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
    let _ = Answer::conflict;
}
