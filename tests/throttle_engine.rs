//! The throttle's engine (`jobs::throttle::run::Engine`) driven directly: sessions in,
//! qBittorrent (the faithful ≥ 5.2 fake) out, the record in a real SQLite store. The daemon and
//! CLI tests run the same engine end to end against a real qbittorrent-nox; these pin the
//! engine's own promises: the record is written before the change, a dry run writes nothing,
//! a failure is retried and paced, a record left by a crash is resumed and given back, a
//! changed URL is released on the old server first, the budget follows the streams.

use std::cell::Cell;
use std::time::{Duration, Instant};

use downshiftarr::config::throttle::{Mode, ThrottleSettings};
use downshiftarr::config::Secret;
use downshiftarr::jobs::throttle::apply::ThrottleState;
use downshiftarr::jobs::throttle::machine::Phase;
use downshiftarr::jobs::throttle::run::{Engine, Outcome, Record};
use downshiftarr::plex::sessions::Session;
use downshiftarr::store::Store;

use crate::fake_qbittorrent::{FakeOptions, FakeQbit};

fn settings(url: &str) -> ThrottleSettings {
    ThrottleSettings {
        qbittorrent_url: url.into(),
        username: "admin".into(),
        password: Secret::new("right"),
        streaming_upload_kib_s: Some(500),
        restore_delay_s: 0,
        request_timeout_ms: 2000,
        ..ThrottleSettings::default()
    }
}

fn remote(key: &str, user: &str, kbps: i64) -> Session {
    let mut s = Session {
        session_key: key.into(),
        state: "playing".into(),
        location: Some("wan".into()),
        address: Some("203.0.113.9".into()),
        bandwidth_kbps: Some(kbps),
        ..Session::default()
    };
    s.viewer.user = Some(user.into());
    s.viewer.device = Some("Roku".into());
    s.viewer.local = Some(false);
    s
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("index.sqlite")).unwrap();
    (dir, s)
}

/// Observations one second apart from `t0`, each followed by a reconcile; the last outcome.
fn feed(e: &mut Engine, rec: &dyn Record, t0: &Cell<Instant>, sessions: &[Session]) -> Outcome {
    let now = t0.get() + Duration::from_secs(1);
    t0.set(now);
    e.observe(now, sessions, None);
    e.reconcile(rec, now)
}

#[test]
fn throttle_engine_records_before_it_changes_and_gives_back_exactly_what_it_found() {
    let q = FakeQbit::start(FakeOptions::default());
    q.set_upload(3000 * 1024);
    let (_d, db) = store();
    let mut e = Engine::new(settings(&q.url()), false).unwrap();
    let t = Cell::new(Instant::now());
    let one = [remote("1", "alice", 8000)];
    assert_eq!(feed(&mut e, &db, &t, &one), Outcome::Nothing, "threshold 2");
    let Outcome::Engaged(state) = feed(&mut e, &db, &t, &one) else {
        panic!("not engaged")
    };
    assert_eq!(q.upload(), 500 * 1024);
    assert_eq!(state.found.upload.bytes_per_s(), 3000 * 1024);
    assert_eq!(db.all().unwrap(), vec![state.clone()], "stored");
    let st = e.status();
    assert_eq!(st.state, Phase::Streaming);
    assert_eq!(st.remote_streams, ["alice on Roku (wan)"]);
    assert!(st.in_force.unwrap().contains("upload 500 KiB/s"));
    // Three idle observations (idle_threshold), then the original limit is back.
    assert_eq!(feed(&mut e, &db, &t, &[]), Outcome::Nothing);
    assert_eq!(feed(&mut e, &db, &t, &[]), Outcome::Nothing);
    assert!(matches!(
        feed(&mut e, &db, &t, &[]),
        Outcome::Released { .. }
    ));
    assert_eq!(q.upload(), 3000 * 1024);
    assert!(db.all().unwrap().is_empty(), "the record is cleared");
}

/// A record the engine cannot write: nothing may change in qBittorrent.
struct Unwritable;

impl Record for Unwritable {
    fn all(&self) -> Result<Vec<ThrottleState>, String> {
        Ok(Vec::new())
    }
    fn save(&self, _: &ThrottleState) -> Result<(), String> {
        Err("disk full".into())
    }
    fn clear(&self, _: &str) -> Result<(), String> {
        Ok(())
    }
}

#[test]
fn throttle_engine_changes_nothing_it_could_not_record_and_retries_paced() {
    let q = FakeQbit::start(FakeOptions::default());
    let mut e = Engine::new(settings(&q.url()), false).unwrap();
    let t = Cell::new(Instant::now());
    let one = [remote("1", "alice", 8000)];
    feed(&mut e, &Unwritable, &t, &one);
    assert_eq!(feed(&mut e, &Unwritable, &t, &one), Outcome::Nothing);
    assert_eq!(q.writes(), 0, "no limit without a record");
    let problem = e.status().problem.unwrap();
    assert!(
        problem.contains("disk full") && problem.contains("not changed"),
        "{problem}"
    );
    // The next try waits for the pacing, then comes back.
    let requests = q.log().len();
    assert_eq!(e.reconcile(&Unwritable, t.get()), Outcome::Nothing);
    assert_eq!(
        q.log().len(),
        requests,
        "no request before the retry is due"
    );
    let (_d, db) = store();
    assert!(matches!(
        e.reconcile(&db, t.get() + Duration::from_secs(6)),
        Outcome::Engaged(_)
    ));
    assert_eq!(q.upload(), 500 * 1024);
    assert!(e.status().problem.is_none());
}

#[test]
fn throttle_engine_dry_run_decides_and_writes_nothing() {
    let q = FakeQbit::start(FakeOptions::default());
    let (_d, db) = store();
    let mut e = Engine::new(settings(&q.url()), true).unwrap();
    let t = Cell::new(Instant::now());
    let one = [remote("1", "alice", 8000)];
    feed(&mut e, &db, &t, &one);
    assert!(matches!(
        feed(&mut e, &db, &t, &one),
        Outcome::WouldEngage(_)
    ));
    for _ in 0..2 {
        feed(&mut e, &db, &t, &[]);
    }
    assert!(matches!(
        feed(&mut e, &db, &t, &[]),
        Outcome::WouldRelease(_)
    ));
    assert_eq!(q.writes(), 0);
    assert!(db.all().unwrap().is_empty());
    assert_eq!(e.restore(&db, "stop").unwrap(), None);
}

#[test]
fn throttle_engine_resumes_a_record_left_by_a_crash_and_releases_it_through_the_hysteresis() {
    let q = FakeQbit::start(FakeOptions::default());
    q.set_upload(2000 * 1024);
    let (_d, db) = store();
    {
        let mut crashed = Engine::new(settings(&q.url()), false).unwrap();
        let t = Cell::new(Instant::now());
        let one = [remote("1", "alice", 8000)];
        feed(&mut crashed, &db, &t, &one);
        feed(&mut crashed, &db, &t, &one);
        // Dropped without a restore: kill -9.
    }
    assert_eq!(q.upload(), 500 * 1024);
    let mut e = Engine::new(settings(&q.url()), false).unwrap();
    e.resume(&db, Instant::now()).unwrap();
    assert_eq!(e.phase(), Phase::Streaming);
    assert!(e.current().is_some());
    let t = Cell::new(Instant::now());
    // A stream still playing keeps it; its absence releases it.
    assert_eq!(
        feed(&mut e, &db, &t, &[remote("1", "alice", 8000)]),
        Outcome::Nothing
    );
    assert_eq!(q.upload(), 500 * 1024);
    for _ in 0..2 {
        feed(&mut e, &db, &t, &[]);
    }
    assert!(matches!(
        feed(&mut e, &db, &t, &[]),
        Outcome::Released { .. }
    ));
    assert_eq!(q.upload(), 2000 * 1024);
    assert!(db.all().unwrap().is_empty());
}

#[test]
fn throttle_engine_leaves_a_hand_change_alone_and_does_not_restore_over_it() {
    let q = FakeQbit::start(FakeOptions::default());
    let (_d, db) = store();
    let mut s = settings(&q.url());
    s.poll_interval_s = 1;
    let mut e = Engine::new(s, false).unwrap();
    let t = Cell::new(Instant::now());
    let one = [remote("1", "alice", 8000)];
    feed(&mut e, &db, &t, &one);
    assert!(matches!(feed(&mut e, &db, &t, &one), Outcome::Engaged(_)));
    q.set_upload(123 * 1024); // the owner, in the WebUI
    t.set(t.get() + Duration::from_secs(5)); // the verify is due
    let Outcome::LeftToUser(what) = feed(&mut e, &db, &t, &one) else {
        panic!("the hand change was not noticed")
    };
    assert!(what.join(" ").contains("123 KiB/s"), "{what:?}");
    assert!(db.all().unwrap().is_empty(), "our record is forgotten");
    assert!(e.status().left_to_user.is_some());
    let writes = q.writes();
    for _ in 0..4 {
        feed(&mut e, &db, &t, &[]);
    }
    assert_eq!(q.writes(), writes, "nothing written over the user's choice");
    assert_eq!(q.upload(), 123 * 1024);
    assert!(e.status().left_to_user.is_none(), "forgotten once idle");
}

#[test]
fn throttle_engine_reapplies_when_qbittorrent_dropped_our_limit() {
    let q = FakeQbit::start(FakeOptions::default());
    let (_d, db) = store();
    let mut e = Engine::new(settings(&q.url()), false).unwrap();
    let t = Cell::new(Instant::now());
    let one = [remote("1", "alice", 8000)];
    feed(&mut e, &db, &t, &one);
    feed(&mut e, &db, &t, &one);
    q.set_upload(0); // restarted with its configuration: unlimited, as found
    t.set(t.get() + Duration::from_secs(15));
    let Outcome::Reapplied(w) = feed(&mut e, &db, &t, &one) else {
        panic!("not re-applied")
    };
    assert_eq!(w, ["upload limit 500 KiB/s"]);
    assert_eq!(q.upload(), 500 * 1024);
}

#[test]
fn throttle_engine_budget_follows_the_streams() {
    let q = FakeQbit::start(FakeOptions::default());
    let (_d, db) = store();
    let mut s = settings(&q.url());
    s.mode = Mode::Budget;
    s.streaming_upload_kib_s = None;
    s.upload_capacity_mbit_s = Some(40.0);
    s.safety_margin_mbit_s = 4.0;
    s.floor_kib_s = 100;
    assert!(s.validate().is_empty(), "{:?}", s.validate());
    let mut e = Engine::new(s, false).unwrap();
    let t = Cell::new(Instant::now());
    let two = [remote("1", "alice", 8000), remote("2", "bob", 12000)];
    feed(&mut e, &db, &t, &two);
    assert!(matches!(feed(&mut e, &db, &t, &two), Outcome::Engaged(_)));
    // 40 − 8 − 12 − 4 = 16 Mbit/s = 1953 KiB/s.
    assert_eq!(q.upload(), 1953 * 1024);
    let Outcome::Moved(moved) = feed(&mut e, &db, &t, &two[..1]) else {
        panic!("the budget did not move")
    };
    // 40 − 8 − 4 = 28 Mbit/s = 3417 KiB/s.
    assert_eq!(q.upload(), 3417 * 1024);
    assert_eq!(db.all().unwrap(), vec![moved]);
}

#[test]
fn throttle_engine_releases_on_the_old_server_when_the_url_changes() {
    let old = FakeQbit::start(FakeOptions::default());
    let new = FakeQbit::start(FakeOptions::default());
    let (_d, db) = store();
    let mut e = Engine::new(settings(&old.url()), false).unwrap();
    let t = Cell::new(Instant::now());
    let one = [remote("1", "alice", 8000)];
    feed(&mut e, &db, &t, &one);
    feed(&mut e, &db, &t, &one);
    assert_eq!(old.upload(), 500 * 1024);
    e.reconfigure(settings(&new.url()), &db, t.get()).unwrap();
    assert_eq!(old.upload(), 0, "given back on the old server");
    assert!(db.all().unwrap().is_empty());
    feed(&mut e, &db, &t, &one);
    assert!(matches!(feed(&mut e, &db, &t, &one), Outcome::Engaged(_)));
    assert_eq!(new.upload(), 500 * 1024);
}

#[test]
fn throttle_engine_gives_back_a_record_of_another_url_found_at_start() {
    let old = FakeQbit::start(FakeOptions::default());
    let new = FakeQbit::start(FakeOptions::default());
    let (_d, db) = store();
    {
        let mut crashed = Engine::new(settings(&old.url()), false).unwrap();
        let t = Cell::new(Instant::now());
        let one = [remote("1", "alice", 8000)];
        feed(&mut crashed, &db, &t, &one);
        feed(&mut crashed, &db, &t, &one);
    }
    // A record for a server that does not answer is kept.
    let gone = ThrottleState {
        qbittorrent_url: "http://127.0.0.1:9".into(),
        ..db.all().unwrap()[0].clone()
    };
    db.save(&gone).unwrap();
    let mut e = Engine::new(settings(&new.url()), false).unwrap();
    e.resume(&db, Instant::now()).unwrap();
    assert_eq!(old.upload(), 0, "the old server got its limit back");
    assert_eq!(e.phase(), Phase::Idle);
    let left: Vec<String> = db
        .all()
        .unwrap()
        .into_iter()
        .map(|s| s.qbittorrent_url)
        .collect();
    assert_eq!(left, ["http://127.0.0.1:9"]);
}
