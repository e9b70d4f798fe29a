//! The downloads job's admin commands as a user runs them (issue 13): the real binary
//! against the fake Radarr, Jellyfin, Jellystat and Plex, with the real SQLite store read
//! back. `prune` deletes only with both switches, never a keep-tagged movie, and a Radarr
//! outage is an error that deletes nothing; `import-history` is idempotent; `explain` and
//! `test` print the tier and its reasons and change nothing; `decisions` and `status` read
//! the store.

use std::path::PathBuf;
use std::process::Command;

use downshiftarr::jobs::downloads::{Ids, ItemKind, Play, PlaySource, Tier, Verdict};
use downshiftarr::store::downloads::DownloadDecision;
use downshiftarr::store::Store;
use serde_json::{json, Value};

use crate::fake_jellyfin::{self, FakeJellyfin};
use crate::fake_jellystat::{self, FakeJellystat};
use crate::fake_plex::{FakePlex, Play as PlexPlay};
use crate::fake_radarr::{self, FakeRadarr};
use crate::fake_service::Answer;
use crate::util;

const DAY_MS: u64 = 86_400_000;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A state directory, a config whose `downloads` section points at the fake Radarr.
struct Rig {
    dir: tempfile::TempDir,
    config: PathBuf,
    radarr: FakeRadarr,
}

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
    fn new(downloads: Value) -> Rig {
        let dir = util::tempdir();
        let radarr = FakeRadarr::start();
        let config = dir.path().join("config.json");
        let rig = Rig {
            dir,
            config,
            radarr,
        };
        rig.write(downloads, json!({}));
        rig
    }

    /// Writes the config: `downloads` over the Radarr defaults, `extra` top-level sections.
    fn write(&self, downloads: Value, extra: Value) {
        let mut d = json!({"radarr_url": self.radarr.url(), "radarr_api_key": fake_radarr::API_KEY,
            "tracked_users": ["alice"], "connect_timeout_ms": 1000, "request_timeout_ms": 2000});
        for (k, v) in downloads.as_object().unwrap() {
            d[k] = v.clone();
        }
        let mut cfg = json!({
            "daemon": {"state_dir": self.dir.path()},
            "shim": {"socket": self.dir.path().join("none.sock")},
            "downloads": d,
        });
        for (k, v) in extra.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        std::fs::write(&self.config, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut c = Command::new(util::cli());
        c.arg("downloads")
            .args(args)
            .env("DOWNSHIFTARR_CONFIG", &self.config)
            .stdin(std::process::Stdio::null());
        for k in [
            "PLEX_TOKEN",
            "PLEX_URL",
            "RADARR_URL",
            "RADARR_API_KEY",
            "JELLYFIN_URL",
            "JELLYFIN_API_KEY",
            "JELLYSTAT_URL",
            "JELLYSTAT_API_KEY",
            "TRACKED_USER_NAME",
            "DOWNSHIFTARR_SOCKET",
        ] {
            c.env_remove(k);
        }
        let out = c.output().unwrap();
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn store(&self) -> Store {
        Store::open(&self.dir.path().join("index.sqlite")).unwrap()
    }

    fn deletes(&self) -> usize {
        self.radarr
            .server
            .log()
            .iter()
            .filter(|r| r.method == "DELETE")
            .count()
    }
}

fn play(user: &str, tmdb: u64, title: &str, at_ms: u64) -> Play {
    Play {
        source: PlaySource::Jellyfin,
        at_ms,
        user: user.into(),
        address: None,
        kind: ItemKind::Movie,
        title: title.into(),
        year: Some(2000),
        ids: Ids {
            tmdb: Some(tmdb),
            ..Ids::default()
        },
        item_id: format!("jf-{tmdb}"),
        percent: 100.0,
        genres: Vec::new(),
        client: None,
    }
}

/// A Radarr movie with a local file of `gb` GB, rated `imdb`, added long ago.
fn radarr_movie(id: i64, tmdb: u64, title: &str, imdb: f64, gb: u64) -> Value {
    let mut m = fake_radarr::movie(id, tmdb, title, 2000, imdb, 1000);
    m["sizeOnDisk"] = json!(gb * 1_000_000_000);
    m["hasFile"] = json!(true);
    m["added"] = json!("2019-01-01T00:00:00Z");
    m
}

/// Old (unwatched, 6.5), Kept (keep tag), Loved (8.7), Cloud (debrid root), Recent (watched
/// 10 days ago), Stale (watched 200 days ago). Returns the keep tag's id.
fn seed_library(rig: &Rig) -> u64 {
    let keep = rig.radarr.add_tag("keep");
    rig.radarr.add(radarr_movie(1, 101, "Old", 6.5, 4));
    let mut kept = radarr_movie(2, 102, "Kept", 6.0, 9);
    kept["tags"] = json!([keep]);
    rig.radarr.add(kept);
    rig.radarr.add(radarr_movie(3, 103, "Loved", 8.7, 7));
    let mut cloud = radarr_movie(4, 104, "Cloud", 6.0, 30);
    cloud["rootFolderPath"] = json!("/mnt/debrid");
    cloud["path"] = json!("/mnt/debrid/Cloud (2000)");
    rig.radarr.add(cloud);
    rig.radarr.add(radarr_movie(5, 105, "Recent", 6.0, 5));
    rig.radarr.add(radarr_movie(6, 106, "Stale", 6.0, 2));
    let st = rig.store();
    let now = now_ms();
    assert!(st
        .record_play(&play("bob", 105, "Recent", now - 10 * DAY_MS))
        .unwrap());
    assert!(st
        .record_play(&play("alice", 106, "Stale", now - 200 * DAY_MS))
        .unwrap());
    keep
}

fn prune_rig(enabled: bool) -> Rig {
    let rig = Rig::new(json!({"remote_root_folders": ["/mnt/debrid"],
        "prune": {"enabled": enabled, "after_days": 180, "keep_rating": 8.5}}));
    seed_library(&rig);
    rig
}

#[test]
fn prune_report_lists_unwatched_local_movies_with_sizes_and_deletes_nothing() {
    let rig = prune_rig(true);
    let r = rig.run(&["prune", "--report"]);
    assert_eq!(r.code, Some(0), "{}", r.all());
    assert!(
        r.stdout
            .contains("2 local movie(s) not watched by anyone in 180 days"),
        "{}",
        r.all()
    );
    let old = r.stdout.find("4.0 GB  Old (2000)").expect("Old listed");
    let stale = r.stdout.find("2.0 GB  Stale (2000)").expect("Stale listed");
    assert!(old < stale, "largest first: {}", r.stdout);
    assert!(r.stdout.contains("total: 6.0 GB"), "{}", r.stdout);
    for kept in [
        "kept  Kept (2000)  — keep tag",
        "kept  Loved (2000)  — IMDb 8.7 ≥ 8.5",
        "kept  Recent (2000)  — watched",
    ] {
        assert!(r.stdout.contains(kept), "{kept}: {}", r.stdout);
    }
    assert!(!r.stdout.contains("Cloud (2000) ["), "{}", r.stdout);
    assert!(r.stdout.contains("report only: nothing deleted"));
    assert_eq!(rig.deletes(), 0);
    // --json: the same plan.
    let r = rig.run(&["prune", "--report", "--json"]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["plan"]["total_bytes"], 6_000_000_000u64);
    assert_eq!(v["plan"]["prune"][0]["radarr_id"], 1);
    // Neither switch: clap refuses.
    let r = rig.run(&["prune"]);
    assert_eq!(r.code, Some(2), "{}", r.all());
    assert_eq!(rig.deletes(), 0);
}

#[test]
fn prune_apply_refuses_without_prune_enabled() {
    let rig = prune_rig(false);
    let r = rig.run(&["prune", "--apply"]);
    assert_eq!(r.code, Some(1), "{}", r.all());
    assert!(
        r.stdout
            .contains("refused: --apply deletes only when downloads.prune.enabled is true"),
        "{}",
        r.all()
    );
    assert_eq!(rig.deletes(), 0);
    assert_eq!(rig.radarr.movies().len(), 6);
}

#[test]
fn prune_apply_deletes_through_radarr_and_never_a_keep_tagged_movie() {
    let rig = prune_rig(true);
    // Between the listing and the delete, someone tags "Stale" to keep it: Radarr's listing
    // (as it was a moment ago) does not show the tag; the movie read again before its
    // delete does. The deletes go largest first: Old (4 GB), then Stale (2 GB).
    let listing: Vec<Value> = rig.radarr.movies();
    let keep = rig.radarr.tags()[0].0;
    let old = listing
        .iter()
        .find(|m| m["id"] == json!(1))
        .unwrap()
        .clone();
    let mut stale = listing
        .iter()
        .find(|m| m["id"] == json!(6))
        .unwrap()
        .clone();
    stale["tags"] = json!([keep]);
    rig.radarr.server.script(
        "/api/v3/movie",
        vec![
            Answer::json(200, &json!(listing)),
            Answer::json(200, &json!([old])),
            Answer::json(200, &json!([stale])),
        ],
    );
    let r = rig.run(&["prune", "--apply"]);
    assert_eq!(r.code, Some(0), "{}", r.all());
    assert_eq!(rig.radarr.deleted(), vec![(1, true)], "{}", r.all());
    assert!(
        r.stdout
            .contains("deleted Old (2000) (4.0 GB) through Radarr"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("skipped Stale (2000): changed in Radarr since the report"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("deleted 1 movie(s), 4.0 GB freed"),
        "{}",
        r.stdout
    );
    let del = rig.radarr.requests("DELETE", "/api/v3/movie/1");
    assert_eq!(del[0].param("deleteFiles").as_deref(), Some("true"));
    assert!(rig.radarr.movie(2).is_some(), "the keep-tagged movie stays");
}

#[test]
fn a_radarr_outage_during_prune_is_an_error_and_deletes_nothing() {
    let rig = prune_rig(true);
    rig.radarr
        .server
        .fail_times("/api/v3/movie", 20, Answer::status(500));
    let r = rig.run(&["prune", "--apply"]);
    assert_eq!(r.code, Some(2), "{}", r.all());
    assert!(r.stderr.contains("Radarr"), "{}", r.all());
    assert!(r.stderr.contains("nothing deleted"), "{}", r.all());
    assert!(
        !r.stdout.contains("local movie(s) not watched"),
        "{}",
        r.all()
    );
    assert_eq!(rig.deletes(), 0);
    rig.radarr.server.unscript();

    // Radarr answers the listing, then fails when each movie is read again before its
    // delete: stopped, nothing deleted.
    let listing = rig.radarr.movies();
    let mut answers = vec![Answer::json(200, &json!(listing))];
    answers.extend(vec![Answer::status(503); 20]);
    rig.radarr.server.script("/api/v3/movie", answers);
    let r = rig.run(&["prune", "--apply"]);
    assert_eq!(r.code, Some(2), "{}", r.all());
    assert!(r.stderr.contains("deleted so far: none"), "{}", r.all());
    assert_eq!(rig.deletes(), 0);

    // A refused key: said, nothing deleted.
    rig.radarr.server.unscript();
    rig.write(
        json!({"radarr_api_key": "wrong-key", "remote_root_folders": ["/mnt/debrid"], "prune": {"enabled": true}}),
        json!({}),
    );
    let r = rig.run(&["prune", "--report"]);
    assert_eq!(r.code, Some(2), "{}", r.all());
    assert!(!r.stderr.contains("wrong-key"), "{}", r.all());
    assert_eq!(rig.deletes(), 0);
}

#[test]
fn prune_without_a_watch_history_lists_nothing() {
    let rig = Rig::new(json!({"prune": {"enabled": true}}));
    rig.radarr.add(radarr_movie(1, 101, "Old", 6.5, 4));
    let r = rig.run(&["prune", "--apply"]);
    assert_eq!(r.code, Some(2), "{}", r.all());
    assert!(r.stderr.contains("no watch history"), "{}", r.all());
    assert_eq!(rig.deletes(), 0);
}

fn plex_rig(plex: &FakePlex) -> Rig {
    let rig = Rig::new(json!({}));
    let token = rig.dir.path().join("plex-token");
    std::fs::write(&token, &plex.token).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    rig.write(
        json!({}),
        json!({"plex": {"url": plex.url, "token_file": token, "read_timeout_ms": 3000}}),
    );
    rig
}

#[test]
fn import_history_from_plex_backfills_movies_once() {
    // Movies 1001 (new agent: tmdb 100) and 1002 (legacy agent: imdb tt0000001).
    let plex = FakePlex::start(3, 1, 2);
    let now_s = (now_ms() / 1000) as i64;
    *plex.play.accounts.lock().unwrap() = vec![(1, "alice".into()), (2, "bob".into())];
    *plex.play.history.lock().unwrap() = vec![
        PlexPlay::history_row(1, 1001, "Movie 0", 1, now_s - 86_400),
        PlexPlay::history_row(2, 1001, "Movie 0", 1, now_s - 5 * 86_400),
        PlexPlay::history_row(3, 1002, "Movie 1", 2, now_s - 3 * 86_400),
        // Gone from Plex: kept with its title.
        PlexPlay::history_row(4, 99_999, "Deleted Film", 1, now_s - 2 * 86_400),
        // Outside the window.
        PlexPlay::history_row(5, 1001, "Movie 0", 1, now_s - 200 * 86_400),
        {
            let mut ep = PlexPlay::history_row(6, 1005, "Episode 1", 1, now_s - 86_400);
            ep["type"] = json!("episode");
            ep
        },
    ];
    let rig = plex_rig(&plex);
    let r = rig.run(&["import-history", "--from", "plex", "--days", "90"]);
    assert_eq!(r.code, Some(0), "{}", r.all());
    assert!(
        r.stdout.contains("4 movie play(s) to record"),
        "{}",
        r.all()
    );
    assert!(r.stdout.contains("imported 4 play(s)"), "{}", r.all());
    let q = plex.play.history_queries.lock().unwrap().clone();
    let since: i64 = q[0]["viewedAt>"].parse().unwrap();
    assert!((since - (now_s - 90 * 86_400)).abs() < 60, "{q:?}");
    let st = rig.store();
    let since_ms = now_ms() - 90 * DAY_MS;
    let ids = Ids {
        tmdb: Some(100),
        imdb: Some("tt0000000".into()),
        tvdb: None,
    };
    assert_eq!(
        st.watch_count("alice", &ids, "Movie 0", None, since_ms)
            .unwrap(),
        2
    );
    assert_eq!(
        st.watch_count("ALICE", &ids, "Movie 0", None, 0).unwrap(),
        2
    );
    let legacy = Ids {
        imdb: Some("tt0000001".into()),
        ..Ids::default()
    };
    assert_eq!(
        st.watch_count("bob", &legacy, "Movie 1", None, since_ms)
            .unwrap(),
        1
    );
    assert_eq!(
        st.watch_count(
            "alice",
            &Ids::default(),
            "Deleted Film",
            Some(1999),
            since_ms
        )
        .unwrap(),
        1
    );
    // Twice: nothing more.
    let r = rig.run(&["import-history", "--from", "plex", "--days", "90"]);
    assert_eq!(r.code, Some(0), "{}", r.all());
    assert!(r.stdout.contains("imported 0 play(s)"), "{}", r.all());
    assert!(r.stdout.contains("(4 already there)"), "{}", r.all());
    assert_eq!(
        st.watch_count("alice", &ids, "Movie 0", None, since_ms)
            .unwrap(),
        2
    );

    // Plex failing: an error, nothing imported.
    plex.play
        .history_status
        .store(500, std::sync::atomic::Ordering::SeqCst);
    let r = rig.run(&["import-history"]);
    assert_eq!(r.code, Some(2), "{}", r.all());
    assert!(r.stderr.contains("nothing imported"), "{}", r.all());
    assert!(!r.stderr.contains(&plex.token), "{}", r.all());
}

#[test]
fn import_history_from_jellystat_counts_only_full_movie_plays() {
    let stat = FakeJellystat::start();
    let jf = FakeJellyfin::start();
    jf.add_user("alice");
    jf.add_item(fake_jellyfin::movie(
        "m1",
        "Paprika",
        2006,
        7.7,
        &["Animation"],
        "tt0851578",
        4977,
    ));
    // 8,160 s runtime: 8,000 s is 98 %, 300 s is 4 %.
    let at = |days: u64| {
        downshiftarr_shim::record::rfc3339(
            std::time::SystemTime::now() - std::time::Duration::from_secs(days * 86_400),
        )
    };
    stat.add(vec![
        fake_jellystat::play("alice", "m1", "Paprika", &at(2), 8_000),
        fake_jellystat::play("alice", "m1", "Paprika", &at(1), 300),
        fake_jellystat::play("alice", "m1", "Paprika", &at(120), 8_000),
        fake_jellystat::play("alice", "gone", "Gone", &at(3), 8_000),
    ]);
    let rig = Rig::new(
        json!({"jellystat_url": stat.server.url(), "jellystat_api_key": fake_jellystat::API_KEY,
        "jellyfin_url": jf.server.url(), "jellyfin_api_key": fake_jellyfin::API_KEY}),
    );
    let r = rig.run(&["import-history", "--from", "jellystat"]);
    assert_eq!(r.code, Some(0), "{}", r.all());
    assert!(r.stdout.contains("imported 1 play(s)"), "{}", r.all());
    assert!(
        r.stdout.contains("shorter than 90% of the runtime"),
        "{}",
        r.all()
    );
    let ids = Ids {
        tmdb: Some(4977),
        ..Ids::default()
    };
    let st = rig.store();
    assert_eq!(
        st.watch_count("alice", &ids, "Paprika", Some(2006), 0)
            .unwrap(),
        1
    );
    let r = rig.run(&["import-history", "--from", "jellystat"]);
    assert!(r.stdout.contains("imported 0 play(s)"), "{}", r.all());

    // Without Jellyfin: refused, with why.
    rig.write(
        json!({"jellystat_url": stat.server.url(), "jellystat_api_key": fake_jellystat::API_KEY}),
        json!({}),
    );
    let r = rig.run(&["import-history", "--from", "jellystat"]);
    assert_eq!(r.code, Some(2), "{}", r.all());
    assert!(r.stderr.contains("also needs Jellyfin"), "{}", r.all());
}

#[test]
fn explain_prints_the_tier_every_reason_and_each_facts_source() {
    let rig = Rig::new(json!({}));
    rig.radarr
        .add(radarr_movie(1, 129, "Spirited Away", 8.6, 3));
    rig.radarr.add(radarr_movie(2, 438631, "Dune", 8.0, 3));
    let mut dune84 = radarr_movie(3, 841, "Dune", 6.3, 3);
    dune84["year"] = json!(1984);
    rig.radarr.add(dune84);
    let r = rig.run(&["explain", "spirited away"]);
    assert_eq!(r.code, Some(0), "{}", r.all());
    assert!(
        r.stdout
            .starts_with("DOWNLOAD TRIGGERED: Spirited Away (2000) — tier instant."),
        "{}",
        r.all()
    );
    assert!(
        r.stdout.contains("tier: instant — downloads"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("user: alice — tracked"), "{}", r.stdout);
    assert!(
        r.stdout.contains("imdb rating        8.6  (radarr)"),
        "{}",
        r.stdout
    );
    // Ambiguous without a year; the year picks.
    let r = rig.run(&["explain", "Dune"]);
    assert_eq!(r.code, Some(2), "{}", r.all());
    assert!(
        r.stderr.contains("Dune (1984), Dune (2000)")
            || r.stderr.contains("Dune (2000), Dune (1984)"),
        "{}",
        r.all()
    );
    let r = rig.run(&["explain", "Dune", "--year", "1984", "--json"]);
    assert_eq!(r.code, Some(0), "{}", r.all());
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["tier"], "never", "{v}");
    assert_eq!(v["download"], false);
    assert_eq!(v["movie"]["radarr_id"], 3);
    assert_eq!(v["facts"]["imdb_rating"]["source"], "radarr");
    // A guest.
    let r = rig.run(&["explain", "spirited away", "--user", "mallory"]);
    assert!(r.stdout.contains("user: mallory — guest"), "{}", r.all());
    assert!(!r.stdout.starts_with("DOWNLOAD TRIGGERED"), "{}", r.all());
    // Nothing was changed in Radarr.
    for m in ["POST", "PUT", "DELETE"] {
        assert!(
            rig.radarr.server.log().iter().all(|r| r.method != m),
            "{m} sent"
        );
    }
    // Radarr down: an error, never "not found".
    rig.radarr
        .server
        .fail_times("/api/v3/movie", 20, Answer::status(500));
    let r = rig.run(&["explain", "spirited away"]);
    assert_eq!(r.code, Some(2), "{}", r.all());
    assert!(r.stderr.contains("nothing evaluated"), "{}", r.all());
    assert!(!r.all().contains("no movie titled"), "{}", r.all());
}

#[test]
fn test_replays_a_playback_stop_and_changes_nothing() {
    let rig = Rig::new(json!({}));
    rig.radarr.add(radarr_movie(7, 603, "The Matrix", 8.7, 25));
    let r = rig.run(&["test"]);
    assert_eq!(r.code, Some(0), "{}", r.all());
    assert!(
        r.stdout
            .starts_with("DOWNLOAD TRIGGERED: The Matrix (1999) — tier instant."),
        "{}",
        r.all()
    );
    assert!(r
        .stdout
        .contains("test: nothing recorded, nothing sent to Radarr"));
    // An older plugin's body (Username), half watched, posted as text: does not count.
    let body = rig.dir.path().join("stop.json");
    std::fs::write(
        &body,
        json!({"NotificationType": "PlaybackStop", "Username": "alice", "ItemType": "Movie",
            "ItemId": "x1", "Name": "The Matrix", "Year": "1999", "RunTimeTicks": "81840000000",
            "PlaybackPositionTicks": "40920000000", "Provider_tmdb": "603"})
        .to_string(),
    )
    .unwrap();
    let r = rig.run(&["test", "--file", body.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{}", r.all());
    assert!(
        r.stdout
            .starts_with("No download needed: The Matrix (1999) — the play does not count"),
        "{}",
        r.all()
    );
    // Not a PlaybackStop: ignored. Not JSON: said.
    std::fs::write(
        &body,
        json!({"NotificationType": "PlaybackStart", "ItemType": "Movie"}).to_string(),
    )
    .unwrap();
    let r = rig.run(&["test", "--file", body.to_str().unwrap()]);
    assert!(r.stdout.starts_with("ignored:"), "{}", r.all());
    std::fs::write(&body, "NotificationType=PlaybackStop").unwrap();
    let r = rig.run(&["test", "--file", body.to_str().unwrap()]);
    assert_eq!(r.code, Some(2), "{}", r.all());
    assert!(r.stderr.contains("not JSON"), "{}", r.all());
    // Nothing recorded, nothing sent.
    let st = rig.store();
    let ids = Ids {
        tmdb: Some(603),
        ..Ids::default()
    };
    assert_eq!(
        st.watch_count("alice", &ids, "The Matrix", Some(1999), 0)
            .unwrap(),
        0
    );
    assert!(st.download_decisions(0, 10).unwrap().is_empty());
    assert!(rig.radarr.server.log().iter().all(|r| r.method == "GET"));
}

fn decision(st: &Store, title: &str, at_ms: u64, download: bool, status: &str) -> i64 {
    let d = DownloadDecision {
        id: 0,
        at_ms,
        play: play("alice", 500, title, at_ms),
        verdict: Verdict {
            tier: if download { Tier::Instant } else { Tier::Never },
            download,
            reasons: vec![format!("because {title}")],
        },
        facts: Default::default(),
        status: status.into(),
        detail: None,
        radarr_id: Some(12),
    };
    st.insert_download_decision(&d).unwrap()
}

#[test]
fn decisions_and_status_read_the_store() {
    let rig = Rig::new(json!({}));
    let r = rig.run(&["decisions"]);
    assert_eq!(r.code, Some(0), "{}", r.all());
    assert_eq!(r.stdout, "no download decisions yet\n");
    let st = rig.store();
    let now = now_ms();
    decision(&st, "Ancient", now - 30 * DAY_MS, false, "no_download");
    let id = decision(&st, "Fresh", now - 60_000, true, "retrying");
    st.enqueue_download(id, now + 60_000).unwrap();
    st.reschedule_download(id, now + 120_000, "Radarr: 500 Internal Server Error")
        .unwrap();
    let r = rig.run(&["decisions"]);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", r.all());
    assert!(
        lines[0].contains("Ancient (2000) — because Ancient"),
        "{}",
        r.stdout
    );
    assert!(
        lines[1].contains("instant") && lines[1].contains("retrying"),
        "{}",
        r.stdout
    );
    let r = rig.run(&["decisions", "--since", "7d", "--json"]);
    let lines: Vec<Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{}", r.all());
    assert_eq!(lines[0]["play"]["title"], "Fresh");
    assert_eq!(lines[0]["verdict"]["reasons"][0], "because Fresh");

    // No daemon: the store's queue, exit 2.
    let r = rig.run(&["status"]);
    assert_eq!(r.code, Some(2), "{}", r.all());
    assert!(r.stdout.contains("not running"), "{}", r.all());
    assert!(
        r.stdout.contains("1 decision(s) waiting for Radarr"),
        "{}",
        r.all()
    );
    assert!(
        r.stdout.contains("Fresh (2000): ") && r.stdout.contains("last error: Radarr: 500"),
        "{}",
        r.all()
    );
}

#[test]
fn notifications_say_what_was_triggered_and_send_the_weekly_summary_once_a_week() {
    use downshiftarr::config::downloads::DownloadsSettings;
    use downshiftarr::config::secret::Secret;
    use downshiftarr::jobs::downloads::notify::{self, WEEKLY_RETRY_MS, WEEK_MS};

    let rig = Rig::new(json!({}));
    let hook = crate::fake_notify::FakeNotify::start();
    let path = "/api/webhooks/123/tok-secret";
    let mut cloud = radarr_movie(1, 101, "Cloudy", 6.0, 5);
    cloud["rootFolderPath"] = json!("/mnt/debrid");
    rig.radarr.add(cloud);
    rig.radarr.add(radarr_movie(2, 102, "Loved", 8.8, 9));
    let mut s = DownloadsSettings {
        radarr_url: rig.radarr.url(),
        remote_root_folders: vec!["/mnt/debrid".into()],
        ..DownloadsSettings::default()
    };
    s.notify.url = Secret::new(hook.url(path));
    s.notify.weekly_summary = true;
    let st = rig.store();
    let now = now_ms();
    decision_for(&st, 101, "Cloudy", now - DAY_MS, false, "no_download");
    decision_for(&st, 102, "Loved", now - 2 * DAY_MS, true, "searched");
    decision_for(&st, 103, "Long Ago", now - 30 * DAY_MS, true, "searched");
    let radarr = rig.radarr.client();

    // The triggered message.
    let d = st.download_decisions(0, 10).unwrap();
    let loved = d.iter().find(|d| d.play.title == "Loved").unwrap();
    assert!(notify::on_download(&s, &loved.play, &loved.verdict).unwrap());
    let posts = hook.server.requests("POST", path);
    let content = posts[0].json()["content"].as_str().unwrap().to_string();
    assert!(
        content.contains("Download triggered: Loved (2000)"),
        "{content}"
    );
    assert!(content.contains("because Loved"), "{content}");

    // The summary: due (never sent), then not before a week.
    assert!(notify::weekly_tick(&st, &radarr, &s, now).unwrap());
    let posts = hook.server.requests("POST", path);
    assert_eq!(posts.len(), 2);
    let content = posts[1].json()["content"].as_str().unwrap().to_string();
    assert!(
        content.contains("Downloads this week: 1 downloaded, ~5.0 GB saved by streaming"),
        "{content}"
    );
    assert!(
        content.contains("- Loved (2000) — because Loved"),
        "{content}"
    );
    assert!(content.contains("- Cloudy (2000) — 5.0 GB"), "{content}");
    assert!(!content.contains("Long Ago"), "{content}");
    assert!(!notify::weekly_tick(&st, &radarr, &s, now + 3_600_000).unwrap());
    assert_eq!(hook.server.requests("POST", path).len(), 2);

    // A week later the webhook fails: an error, not recorded as sent, tried again an hour on.
    hook.server.fail_times(path, 1, Answer::status(500));
    let later = now + WEEK_MS;
    let e = notify::weekly_tick(&st, &radarr, &s, later).unwrap_err();
    assert!(
        format!("{e:#}").contains("weekly summary not sent"),
        "{e:#}"
    );
    assert!(!format!("{e:#}").contains("tok-secret"), "{e:#}");
    assert!(!notify::weekly_tick(&st, &radarr, &s, later + 60_000).unwrap());
    assert!(notify::weekly_tick(&st, &radarr, &s, later + WEEKLY_RETRY_MS).unwrap());
    assert_eq!(hook.server.requests("POST", path).len(), 4);

    // Off: nothing.
    s.notify.weekly_summary = false;
    assert!(!notify::weekly_tick(&st, &radarr, &s, later + 3 * WEEK_MS).unwrap());
}

fn decision_for(
    st: &Store,
    tmdb: u64,
    title: &str,
    at_ms: u64,
    download: bool,
    status: &str,
) -> i64 {
    let mut d = DownloadDecision {
        id: 0,
        at_ms,
        play: play("alice", tmdb, title, at_ms),
        verdict: Verdict {
            tier: if download { Tier::Instant } else { Tier::Never },
            download,
            reasons: vec![format!("because {title}")],
        },
        facts: Default::default(),
        status: status.into(),
        detail: None,
        radarr_id: None,
    };
    d.play.ids.tmdb = Some(tmdb);
    st.insert_download_decision(&d).unwrap()
}
