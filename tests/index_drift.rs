//! The index must converge to exactly what Plex holds (issue 9 §1): same-second edits, a
//! deletion between two pages of a listing, a well-formed empty listing, a mass deletion, an
//! item a listing leaves out — each raced against the CLI's sync and the daemon's, then
//! compared with the fake's full set.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::daemon::{summary, Env};
use crate::fake_plex::FakePlex;

/// (ratingKey, updatedAt) of every indexed movie, show and episode.
fn indexed(env: &Env) -> BTreeMap<String, i64> {
    let db = env.db();
    let mut q = db
        .prepare("SELECT rating_key, updated_at FROM items")
        .unwrap();
    q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn assert_converged(env: &Env) {
    assert_eq!(
        indexed(env),
        env.plex.holdings(),
        "the index differs from what Plex holds"
    );
}

fn dynamic_range(env: &Env, rk: u64) -> String {
    env.db()
        .query_row(
            "SELECT dynamic_range FROM media WHERE rating_key = ?1",
            [rk.to_string()],
            |r| r.get(0),
        )
        .unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn an_edit_in_the_same_second_after_a_sync_read_it_is_picked_up_by_the_next_incremental_sync() {
    let env = Env::new(FakePlex::start(9, 1, 3), serde_json::json!({}));
    env.sync(&[]);
    let movie = env.plex.keys("movie")[1]; // 1080p SDR
                                           // Edited now: the next (incremental) pass reads it in the second of its `updatedAt`…
    env.plex.set_updated(movie, now());
    let out = env.sync(&[]);
    assert!(out.contains("changed: Movie 1 (1981)"), "{out}");
    assert_eq!(dynamic_range(&env, movie), "sdr");
    // …and a second edit lands in that same second: `updatedAt` does not move.
    env.plex.edit_same_second(movie, true);
    let out = env.sync(&[]);
    assert_eq!(
        dynamic_range(&env, movie),
        "hdr10",
        "the same-second edit was lost:\n{out}"
    );
    assert_converged(&env);
}

#[test]
fn a_deletion_between_two_pages_of_a_full_listing_removes_only_the_deleted_item() {
    let env = Env::new(FakePlex::start(30, 0, 0), serde_json::json!({}));
    env.sync(&[]);
    let movies = env.plex.keys("movie");
    // Plex deletes Movie 3 while the sync is between page 1 (items 0–6) and page 2: Movie 7
    // shifts onto page 1 and is never listed.
    *env.plex.faults.delete_at_page.lock().unwrap() = Some((7, movies[3]));
    let out = env.sync(&["--full"]);
    assert!(
        env.plex.faults.delete_at_page.lock().unwrap().is_none(),
        "the race did not happen"
    );
    assert!(!out.contains("removed: Movie 7"), "{out}");
    assert!(
        indexed(&env).contains_key(&movies[7].to_string()),
        "Movie 7, still in Plex, was removed:\n{out}"
    );
    assert!(out.contains("held back"), "{out}");
    // The next ordinary pass removes the item Plex really deleted, and only it.
    let out = env.sync(&["--full"]);
    assert_eq!(summary(&out).1, 1, "{out}");
    assert!(out.contains("removed: Movie 3 (1983)"), "{out}");
    assert_converged(&env);
}

#[test]
fn a_deletion_between_two_pages_of_the_periodic_deletion_check_removes_only_the_deleted_item() {
    // The deletion check of incremental passes lists 2,000 keys a page.
    let env = Env::new(
        FakePlex::start(2010, 0, 0),
        serde_json::json!({"page_size": 1000, "metadata_batch": 200}),
    );
    env.sync(&[]);
    let movies = env.plex.keys("movie");
    *env.plex.faults.delete_at_page.lock().unwrap() = Some((2000, movies[3]));
    let out = env.sync(&[]);
    assert!(
        env.plex.faults.delete_at_page.lock().unwrap().is_none(),
        "the race did not happen"
    );
    assert!(
        indexed(&env).contains_key(&movies[2000].to_string()),
        "Movie 2000, still in Plex, was removed:\n{out}"
    );
    let out = env.sync(&[]);
    assert!(out.contains("removed: Movie 3 (1983)"), "{out}");
    assert_converged(&env);
}

#[test]
fn an_item_a_listing_leaves_out_is_kept_while_plex_still_returns_it() {
    let env = Env::new(FakePlex::start(12, 0, 0), serde_json::json!({}));
    env.sync(&[]);
    let movies = env.plex.keys("movie");
    env.plex.faults.unlisted.lock().unwrap().insert(movies[4]);
    env.plex.delete(movies[5]);
    let out = env.sync(&["--full"]);
    assert_eq!(summary(&out).1, 1, "{out}");
    assert!(out.contains("removed: Movie 5 (1985)"), "{out}");
    assert!(!out.contains("Movie 4"), "{out}");
    assert_converged(&env);
}

#[test]
fn a_well_formed_empty_listing_does_not_wipe_a_section() {
    let env = Env::new(FakePlex::start(30, 2, 5), serde_json::json!({}));
    env.sync(&[]);
    let before = indexed(&env);
    assert_eq!(before.len(), 30 + 2 + 10);
    env.plex.faults.empty_listings.store(true, Ordering::SeqCst);
    for args in [&[][..], &["--full"][..]] {
        let out = env.sync(args);
        assert_eq!(summary(&out).1, 0, "{out}");
        assert!(out.contains("listed the section as empty"), "{out}");
        assert_eq!(indexed(&env), before, "{out}");
    }
    // Forced, every deletion is still confirmed by Plex, which still returns the items.
    let out = env.sync(&["--full", "--force"]);
    assert_eq!(summary(&out).1, 0, "{out}");
    assert_eq!(indexed(&env), before);
    env.plex
        .faults
        .empty_listings
        .store(false, Ordering::SeqCst);
    let episode = env.plex.keys("episode")[3];
    env.plex.edit(episode, true);
    env.sync(&[]);
    assert_converged(&env);
}

#[test]
fn a_mass_deletion_is_held_back_until_forced_and_removed_lines_name_titles() {
    let env = Env::new(FakePlex::start(30, 0, 0), serde_json::json!({}));
    env.sync(&[]);
    let movies = env.plex.keys("movie");
    for rk in &movies[10..22] {
        env.plex.delete(*rk);
    }
    let out = env.sync(&[]);
    assert_eq!(summary(&out).1, 0, "{out}");
    assert!(
        out.contains("12 of 30 indexed items would go") && out.contains("Movie 10 (1990)"),
        "held back, with titles:\n{out}"
    );
    assert_eq!(indexed(&env).len(), 30);
    let out = env.sync(&["--full", "--force"]);
    assert_eq!(summary(&out).1, 12, "{out}");
    assert!(out.contains("removed: Movie 21 (2001)"), "{out}");
    assert_converged(&env);
    // --force alone is refused: it only makes sense with --full.
    assert!(!env.cli(&["sync", "--force"]).status.success());
}

#[test]
fn status_and_metrics_count_the_loaded_index_before_the_first_sync() {
    let env = Env::new(FakePlex::start(9, 1, 4), serde_json::json!({}));
    env.sync(&[]);
    // Plex is down when the daemon starts.
    env.configure("plex", serde_json::json!({"url": "http://127.0.0.1:1"}));
    let daemon = env.daemon();
    let t = Instant::now();
    let status = loop {
        let out = env.cli(&["status", "--json"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // `status --json` answers `{"running":false,…}` until the daemon listens.
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
            if v["running"] != false {
                break v;
            }
        }
        assert!(t.elapsed() < Duration::from_secs(10), "no status: {text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status["last_sync"].is_null() || status["last_sync"]["ok"] == false,
        "{status}"
    );
    assert_eq!(
        (
            &status["index"]["movies"],
            &status["index"]["episodes"],
            &status["index"]["files"]
        ),
        (
            &serde_json::json!(9),
            &serde_json::json!(4),
            &serde_json::json!(16)
        ),
        "{status}"
    );
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&env.cfg).unwrap()).unwrap();
    let metrics =
        crate::daemon::http_get(cfg["daemon"]["http_listen"].as_str().unwrap(), "/metrics");
    assert!(
        metrics.contains("downshiftarr_index_items{type=\"movie\"} 9"),
        "{metrics}"
    );
    crate::daemon::stop(daemon);
}

#[test]
fn sigterm_during_a_sync_stops_the_daemon_promptly() {
    let env = Env::new(
        FakePlex::start(120, 0, 0),
        serde_json::json!({"page_size": 5, "metadata_batch": 5}),
    );
    // Every listing and metadata request takes 150 ms: the first pass needs ~7 s.
    env.plex.faults.delay_ms.store(150, Ordering::SeqCst);
    let mut daemon = env.daemon();
    let t = Instant::now();
    while env.plex.requests.load(Ordering::SeqCst) < 6 || !env.socket().exists() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the sync never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Command::new("kill")
        .arg("-TERM")
        .arg(daemon.id().to_string())
        .status()
        .unwrap();
    let t = Instant::now();
    while daemon.try_wait().unwrap().is_none() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the daemon never stopped"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = t.elapsed();
    eprintln!("SIGTERM during a sync: the daemon stopped in {took:?}");
    assert!(
        took < Duration::from_millis(2000),
        "SIGTERM during a sync took {took:?} (the grace is 4 s)"
    );
    assert!(
        env.plex.requests.load(Ordering::SeqCst) < 60,
        "the pass went on"
    );
}
