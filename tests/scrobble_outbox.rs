//! The scrobble outbox against the fake Trakt (issue 12 "durable outbox"): real SQLite files
//! in temporary directories, the real client, the real id resolver. Trakt down then up, a
//! crash between write and send, 409, 401 → refresh, 429, 404 → search, and a replay of
//! 1,000 calls through seeded failures — each call reaching Trakt exactly once, in order
//! per user.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use downshiftarr::clients::trakt::{ScrobbleAction, Tokens, Trakt, TraktOptions};
use downshiftarr::jobs::scrobble::deliver::Deliverer;
use downshiftarr::jobs::scrobble::ids::IndexResolver;
use downshiftarr::jobs::scrobble::{outbox, tokens, Call, ItemFacts};
use downshiftarr::store::Store;

use crate::fake_trakt::{
    Answer, Chaos, FakeTrakt, Req, CLIENT_ID, CLIENT_SECRET, EXPIRED_TOKEN, GOOD_TOKEN,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn now_s() -> u64 {
    outbox::now_ms() / 1000
}

fn pair(access: &str, refresh: &str) -> Tokens {
    Tokens {
        access_token: access.into(),
        refresh_token: refresh.into(),
        expires_in: 86_400,
        created_at: now_s(),
        scope: Some("public".into()),
        token_type: Some("bearer".into()),
    }
}

fn guardians() -> ItemFacts {
    ItemFacts {
        kind: "movie".into(),
        title: Some("Guardians of the Galaxy".into()),
        year: Some(2014),
        guids: vec!["imdb://tt2015381".into(), "tmdb://118340".into()],
        ..ItemFacts::default()
    }
}

fn call(user: &str, rk: &str, play: &str, action: ScrobbleAction, progress: f64) -> Call {
    Call {
        user: user.into(),
        rating_key: rk.into(),
        play: play.into(),
        action,
        progress,
        at_ms: outbox::now_ms(),
        forced: false,
        item: Some(guardians()),
    }
}

fn client(fake: &FakeTrakt, read_timeout: Duration) -> Trakt {
    let mut o = TraktOptions::new(CLIENT_ID, CLIENT_SECRET);
    o.base_url = fake.url();
    o.read_timeout = read_timeout;
    Trakt::new(o).unwrap()
}

fn deliverer(fake: &FakeTrakt, gap: Duration) -> Deliverer {
    Deliverer::new(
        client(fake, Duration::from_secs(2)),
        (CLIENT_ID.into(), CLIENT_SECRET.into()),
    )
    .with_gap(gap)
    .with_backoff(ms(50), ms(400))
}

/// The store file and a resolver on its own connection (as the daemon runs them).
fn open(path: &Path) -> (Store, IndexResolver) {
    (
        Store::open(path).unwrap(),
        IndexResolver::new(Store::open(path).unwrap(), None),
    )
}

/// Passes until the outbox is empty (≤ 15 s), sleeping until the next call is due.
fn drain(d: &mut Deliverer, store: &Store, r: &mut IndexResolver) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let rep = d.pass(store, r, Instant::now(), &|| false).unwrap();
        if outbox::depth(store).unwrap().0 == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "outbox not drained: {:?}, {:?}",
            outbox::depth(store).unwrap(),
            d.stats()
        );
        let wait = rep
            .next_due
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(ms(20));
        std::thread::sleep(wait.clamp(ms(1), ms(200)));
    }
}

fn scrobbles(log: &[Req]) -> Vec<&Req> {
    log.iter()
        .filter(|r| r.method == "POST" && r.path.starts_with("/scrobble/"))
        .collect()
}

/// The scrobble POSTs Trakt answered with a final 201/409: (path, progress).
fn finals(fake: &FakeTrakt) -> Vec<(String, f64, String)> {
    fake.answered()
        .into_iter()
        .filter(|(r, s)| r.path.starts_with("/scrobble/") && (*s == 201 || *s == 409))
        .map(|(r, _)| {
            (
                r.path.clone(),
                r.json()["progress"].as_f64().unwrap(),
                r.header("authorization").unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn trakt_down_during_a_play_then_up_delivers_once_in_order() {
    let fake = FakeTrakt::start();
    let dir = tempfile::tempdir().unwrap();
    let (store, mut r) = open(&dir.path().join("index.sqlite"));
    tokens::save(&store, "ann", &pair(GOOD_TOKEN, "refresh-token-1")).unwrap();
    let mut d = deliverer(&fake, ms(20));
    // Trakt is down: 503, a Cloudflare 520, 503…
    fake.script("/scrobble/start", vec![Answer::new(503, "")]);
    fake.script(
        "/scrobble/stop",
        vec![
            Answer::cloudflare_520(),
            Answer::new(503, ""),
            Answer::new(502, ""),
        ],
    );
    outbox::push(&store, &call("ann", "7", "a", ScrobbleAction::Start, 1.0)).unwrap();
    let rep = d.pass(&store, &mut r, Instant::now(), &|| false).unwrap();
    assert_eq!((rep.sent, rep.finished, rep.deferred), (1, 0, 1));
    assert!(rep.next_due.is_some(), "it says when to come back");
    // The play goes on and ends while Trakt is down; then another play starts.
    outbox::push(&store, &call("ann", "7", "a", ScrobbleAction::Stop, 95.0)).unwrap();
    outbox::push(&store, &call("ann", "8", "b", ScrobbleAction::Start, 2.0)).unwrap();
    drain(&mut d, &store, &mut r);
    assert_eq!(
        finals(&fake),
        vec![
            (
                "/scrobble/stop".into(),
                95.0,
                format!("Bearer {GOOD_TOKEN}")
            ),
            (
                "/scrobble/start".into(),
                2.0,
                format!("Bearer {GOOD_TOKEN}")
            )
        ],
        "the stop once, then the next play; the superseded start never again"
    );
    let h = outbox::history(&store, 0, 10).unwrap();
    let outcomes: Vec<_> = h
        .iter()
        .map(|r| (r.action.as_str(), r.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("start", "superseded"),
            ("stop", "scrobbled"),
            ("start", "started")
        ]
    );
    assert_eq!(d.stats().counts["stop"]["transient"], 3);
    assert_eq!(d.stats().counts["stop"]["scrobbled"], 1);
    assert!(d.stats().last_delivery_ms.is_some());
    // Nothing is sent again.
    d.pass(&store, &mut r, Instant::now(), &|| false).unwrap();
    assert_eq!(scrobbles(&fake.log()).len(), 6);
}

#[test]
fn a_crash_between_write_and_send_delivers_once_after_restart() {
    let fake = FakeTrakt::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.sqlite");
    {
        let (store, _r) = open(&path);
        tokens::save(&store, "ann", &pair(GOOD_TOKEN, "refresh-token-1")).unwrap();
        let _d = deliverer(&fake, ms(20));
        outbox::push(&store, &call("ann", "7", "a", ScrobbleAction::Stop, 91.0)).unwrap();
        // The process dies here: nothing was sent.
    }
    assert!(scrobbles(&fake.log()).is_empty());
    let (store, mut r) = open(&path);
    assert_eq!(outbox::depth(&store).unwrap().0, 1);
    let mut d = deliverer(&fake, ms(20));
    drain(&mut d, &store, &mut r);
    d.pass(&store, &mut r, Instant::now(), &|| false).unwrap();
    assert_eq!(finals(&fake).len(), 1);
    assert_eq!(scrobbles(&fake.log()).len(), 1);
    assert_eq!(
        outbox::history(&store, 0, 10).unwrap()[0].outcome,
        "scrobbled"
    );
}

#[test]
fn a_409_is_done_and_never_sent_again() {
    let fake = FakeTrakt::start();
    let dir = tempfile::tempdir().unwrap();
    let (store, mut r) = open(&dir.path().join("index.sqlite"));
    tokens::save(&store, "ann", &pair(GOOD_TOKEN, "refresh-token-1")).unwrap();
    let mut d = deliverer(&fake, ms(20));
    fake.script("/scrobble/stop", vec![Answer::conflict()]);
    outbox::push(&store, &call("ann", "7", "a", ScrobbleAction::Stop, 99.0)).unwrap();
    let rep = d.pass(&store, &mut r, Instant::now(), &|| false).unwrap();
    assert_eq!((rep.sent, rep.finished, rep.next_due), (1, 1, None));
    std::thread::sleep(ms(100));
    d.pass(&store, &mut r, Instant::now(), &|| false).unwrap();
    assert_eq!(scrobbles(&fake.log()).len(), 1);
    let h = outbox::history(&store, 0, 10).unwrap();
    assert_eq!(h[0].outcome, "already_scrobbled");
    assert!(h[0].trakt.as_ref().unwrap()["watched_at"].is_string());
}

#[test]
fn a_401_refreshes_once_and_the_new_pair_is_stored_before_it_is_used() {
    let fake = FakeTrakt::start();
    fake.fresh_tokens();
    let dir = tempfile::tempdir().unwrap();
    let (store, mut r) = open(&dir.path().join("index.sqlite"));
    tokens::save(&store, "Ann", &pair(EXPIRED_TOKEN, "refresh-token-1")).unwrap();
    // A long gap: the pass returns between the refresh and the resend.
    let mut d = deliverer(&fake, ms(1500));
    outbox::push(&store, &call("Ann", "7", "a", ScrobbleAction::Start, 3.0)).unwrap();
    d.pass(&store, &mut r, Instant::now(), &|| false).unwrap();
    let log = fake.log();
    let paths: Vec<_> = log.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, vec!["/scrobble/start", "/oauth/token"]);
    // Between: the new pair is in the store, the old refresh token gone.
    let stored = tokens::load(&store, "ann").unwrap().unwrap();
    assert_eq!(stored.access_token, GOOD_TOKEN);
    assert_eq!(stored.refresh_token, "refresh-token-2");
    assert_eq!(outbox::depth(&store).unwrap().0, 1);
    drain(&mut d, &store, &mut r);
    outbox::push(&store, &call("Ann", "7", "a", ScrobbleAction::Stop, 90.0)).unwrap();
    drain(&mut d, &store, &mut r);
    let log = fake.log();
    let refreshes: Vec<_> = log.iter().filter(|r| r.path == "/oauth/token").collect();
    assert_eq!(refreshes.len(), 1, "the refresh token is used once");
    assert_eq!(fake.refreshes(), 1);
    assert_eq!(refreshes[0].json()["refresh_token"], "refresh-token-1");
    assert_eq!(
        finals(&fake),
        vec![
            (
                "/scrobble/start".into(),
                3.0,
                format!("Bearer {GOOD_TOKEN}")
            ),
            (
                "/scrobble/stop".into(),
                90.0,
                format!("Bearer {GOOD_TOKEN}")
            )
        ]
    );
}

#[test]
fn a_refused_refresh_keeps_the_calls_and_says_to_log_in_again() {
    let fake = FakeTrakt::start();
    let dir = tempfile::tempdir().unwrap();
    let (store, mut r) = open(&dir.path().join("index.sqlite"));
    tokens::save(&store, "bob", &pair(EXPIRED_TOKEN, "refresh-token-spent")).unwrap();
    let mut d = deliverer(&fake, ms(20));
    outbox::push(&store, &call("bob", "7", "a", ScrobbleAction::Stop, 95.0)).unwrap();
    d.pass(&store, &mut r, Instant::now(), &|| false).unwrap();
    assert_eq!(outbox::depth(&store).unwrap().0, 1, "kept");
    let why = &d.stats().unlinked["bob"];
    assert!(why.contains("downshiftarr trakt login --user bob"), "{why}");
    assert!(!why.contains(CLIENT_SECRET) && !why.contains("refresh-token-spent"));
    // A new login: delivered.
    tokens::save(&store, "bob", &pair(GOOD_TOKEN, "refresh-token-1")).unwrap();
    store
        .write(|s| {
            let e = &outbox::due(s, u64::MAX, 10)?[0];
            s.outbox_retry_later(e.id, 0, "test: due now").map(|_| ())
        })
        .unwrap();
    drain(&mut d, &store, &mut r);
    assert_eq!(finals(&fake).len(), 1);
    assert!(d.stats().unlinked.is_empty());
}

#[test]
fn a_429_is_honoured() {
    let fake = FakeTrakt::start();
    let dir = tempfile::tempdir().unwrap();
    let (store, mut r) = open(&dir.path().join("index.sqlite"));
    tokens::save(&store, "ann", &pair(GOOD_TOKEN, "refresh-token-1")).unwrap();
    let mut d = deliverer(&fake, ms(20));
    let mut limited = Answer::new(429, "");
    limited.headers.push(("Retry-After".into(), "2".into()));
    fake.script("/scrobble/start", vec![limited]);
    outbox::push(&store, &call("ann", "7", "a", ScrobbleAction::Start, 1.0)).unwrap();
    let t0 = outbox::now_ms();
    let rep = d.pass(&store, &mut r, Instant::now(), &|| false).unwrap();
    assert_eq!(rep.deferred, 1);
    assert!(outbox::due(&store, t0 + 1_800, 10).unwrap().is_empty());
    assert_eq!(outbox::due(&store, t0 + 2_500, 10).unwrap().len(), 1);
    let wait = rep
        .next_due
        .unwrap()
        .saturating_duration_since(Instant::now());
    assert!(wait > ms(1_500) && wait <= ms(2_100), "{wait:?}");
    drain(&mut d, &store, &mut r);
    let posts = scrobbles(&fake.log())
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(posts.len(), 2);
    assert!(posts[1].at.duration_since(posts[0].at) >= ms(1_900));
    assert_eq!(d.stats().counts["start"]["rate_limited"], 1);
}

#[test]
fn a_404_searches_resends_with_the_found_ids_and_caches_them() {
    let fake = FakeTrakt::start();
    let dir = tempfile::tempdir().unwrap();
    let (store, mut r) = open(&dir.path().join("index.sqlite"));
    tokens::save(&store, "ann", &pair(GOOD_TOKEN, "refresh-token-1")).unwrap();
    let mut d = deliverer(&fake, ms(20));
    fake.script("/scrobble/start", vec![Answer::new(404, "")]);
    outbox::push(&store, &call("ann", "7", "a", ScrobbleAction::Start, 1.0)).unwrap();
    drain(&mut d, &store, &mut r);
    let log = fake.log();
    let paths: Vec<_> = log.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "/scrobble/start",
            "/search/imdb/tt2015381",
            "/scrobble/start"
        ]
    );
    assert_eq!(log[0].json()["movie"]["ids"].get("trakt"), None);
    assert_eq!(log[2].json()["movie"]["ids"]["trakt"], 28);
    // The second call of the item goes straight with the found ids.
    outbox::push(&store, &call("ann", "7", "a", ScrobbleAction::Stop, 85.0)).unwrap();
    drain(&mut d, &store, &mut r);
    let log = fake.log();
    assert_eq!(log.len(), 4, "no second search");
    assert_eq!(log[3].path, "/scrobble/stop");
    assert_eq!(log[3].json()["movie"]["ids"]["trakt"], 28);

    // Nothing on Trakt has it: recorded not_found once, not retried.
    fake.script("/scrobble/start", vec![Answer::new(404, "")]);
    let mut nothing = call("ann", "9", "c", ScrobbleAction::Start, 1.0);
    nothing.item = Some(ItemFacts {
        kind: "movie".into(),
        title: Some("Nothing At All".into()),
        year: Some(1901),
        guids: vec!["imdb://tt0000001".into()],
        ..ItemFacts::default()
    });
    outbox::push(&store, &nothing).unwrap();
    drain(&mut d, &store, &mut r);
    let tail: Vec<_> = fake.log()[4..].iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        tail,
        vec!["/scrobble/start", "/search/imdb/tt0000001", "/search/movie"]
    );
    let h = outbox::history(&store, 0, 10).unwrap();
    assert_eq!(h.last().unwrap().outcome, "not_found");
}

#[test]
fn a_replay_of_1000_calls_through_failures_arrives_once_each_in_order_per_user() {
    let fake = FakeTrakt::start();
    let users = ["ann", "bob", "cy"];
    for u in users {
        fake.accept_token(&format!("tok-{u}"));
    }
    fake.chaos(Chaos {
        seed: 0x5eed_1234_abcd,
        server_errors: 60,
        rate_limits: 25,
        retry_after_s: 1,
        timeouts: 8,
        slow: ms(700),
    });
    let dir = tempfile::tempdir().unwrap();
    let (store, mut r) = open(&dir.path().join("index.sqlite"));
    for u in users {
        tokens::save(&store, u, &pair(&format!("tok-{u}"), "refresh-token-1")).unwrap();
    }
    let mut d = Deliverer::new(
        client(&fake, ms(300)),
        (CLIENT_ID.into(), CLIENT_SECRET.into()),
    )
    .with_gap(ms(2))
    .with_backoff(ms(10), ms(200));
    let actions = [
        ScrobbleAction::Start,
        ScrobbleAction::Pause,
        ScrobbleAction::Stop,
    ];
    let t0 = Instant::now();
    for batch in 0..40 {
        for i in batch * 25..(batch + 1) * 25 {
            let u = users[i % 3];
            let j = i / 3;
            let c = call(
                u,
                &format!("{}", 100 + j),
                &format!("{u}-{j}"),
                actions[j % 3],
                j as f64 * 0.25,
            );
            outbox::push(&store, &c).unwrap();
        }
        d.pass(&store, &mut r, Instant::now(), &|| false).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while outbox::depth(&store).unwrap().0 > 0 {
        assert!(Instant::now() < deadline, "not drained: {:?}", d.stats());
        let rep = d.pass(&store, &mut r, Instant::now(), &|| false).unwrap();
        let wait = rep
            .next_due
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(ms(5));
        std::thread::sleep(wait.clamp(ms(1), ms(100)));
    }
    let elapsed = t0.elapsed();
    let answered = fake.answered();
    let mut by_user: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut failures: BTreeMap<u16, u32> = BTreeMap::new();
    for (req, status) in &answered {
        if status / 100 == 2 || *status == 409 {
            let who = req.header("authorization").unwrap().to_string();
            by_user
                .entry(who)
                .or_default()
                .push(req.json()["progress"].as_f64().unwrap());
        } else {
            *failures.entry(*status).or_default() += 1;
        }
    }
    // The failures did happen…
    assert!(
        failures.get(&429).copied().unwrap_or(0) >= 5,
        "{failures:?}"
    );
    assert!(
        failures.get(&503).copied().unwrap_or(0) >= 10,
        "{failures:?}"
    );
    assert!(
        failures.get(&520).copied().unwrap_or(0) >= 5,
        "{failures:?}"
    );
    assert!(d
        .stats()
        .counts
        .values()
        .any(|m| m.contains_key("transient")));
    // …and every call arrived exactly once, in order per user.
    assert_eq!(by_user.len(), 3);
    for (u, got) in &by_user {
        let n = got.len();
        let want: Vec<f64> = (0..n).map(|j| j as f64 * 0.25).collect();
        assert_eq!(got, &want, "{u}: order or count");
    }
    let total: usize = by_user.values().map(Vec::len).sum();
    assert_eq!(total, 1000, "0 lost, 0 duplicated");
    let h = outbox::history(&store, 0, 2000).unwrap();
    assert_eq!(h.len(), 1000);
    eprintln!(
        "replay: 1000 calls, {} requests, {:?} failures, {:.1} s",
        answered.len(),
        failures,
        elapsed.as_secs_f64()
    );
}

#[test]
fn scrobble_history_prints_what_became_of_each_call_newest_last() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    std::fs::write(
        &cfg,
        serde_json::json!({"daemon": {"state_dir": dir.path().join("state")}}).to_string(),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(crate::util::cli())
            .args(["scrobble", "history", "--config"])
            .arg(&cfg)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let store = Store::open(&dir.path().join("state/index.sqlite")).unwrap();
    assert_eq!(run(&[]).trim(), "no scrobbles");
    let start = outbox::push(&store, &call("ann", "7", "a", ScrobbleAction::Start, 1.0)).unwrap();
    outbox::delivered(&store, start, "started", None).unwrap();
    let stop = outbox::push(&store, &call("ann", "7", "a", ScrobbleAction::Stop, 97.5)).unwrap();
    outbox::delivered(&store, stop, "already_scrobbled", None).unwrap();
    // Still owed: not history.
    outbox::push(&store, &call("bob", "8", "b", ScrobbleAction::Start, 0.0)).unwrap();
    // The daemon keeps its connection open while the CLI reads.
    let text = run(&["--since", "1h"]);
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains("start") && lines[0].contains("started"),
        "{text}"
    );
    assert!(
        lines[1].contains("97.5%")
            && lines[1].contains("already_scrobbled")
            && lines[1].contains("Guardians of the Galaxy [7]"),
        "{text}"
    );
    let json: Vec<serde_json::Value> = run(&["--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(json.len(), 2);
    assert_eq!(json[1]["outcome"], "already_scrobbled");
    assert_eq!(json[1]["user"], "ann");
    assert!(json[1]["time"].as_str().unwrap().ends_with('Z'));
    // A bad duration names itself.
    let out = std::process::Command::new(crate::util::cli())
        .args(["scrobble", "history", "--since", "soon", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--since \"soon\""));
}

#[test]
fn an_item_missing_from_the_index_is_asked_of_plex_once_with_its_show() {
    use downshiftarr::clients::trakt::{Ids, Media, ScrobbleItem};
    use downshiftarr::jobs::scrobble::ids::Resolve;
    let plex = crate::fake_plex::FakePlex::start(1, 1, 2);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.sqlite");
    let _store = Store::open(&path).unwrap();
    let client = downshiftarr::plex::Plex::new(&plex.url, &plex.token, ms(500), ms(2000)).unwrap();
    let mut r = IndexResolver::new(Store::open(&path).unwrap(), Some(client));
    // Episode 1003 (S01E01 of show 1002, legacy TVDB agent): by the show's id.
    let want = ScrobbleItem::ShowEpisode {
        show: Media {
            title: Some("Show 0".into()),
            year: None,
            ids: Ids {
                tvdb: Some(70000),
                ..Ids::default()
            },
        },
        season: 1,
        number: 1,
    };
    assert_eq!(r.resolve("1003", None).unwrap(), want);
    assert_eq!(r.plex_calls(), 2, "the episode, then its show");
    // Cached: no more calls.
    assert_eq!(r.resolve("1003", None).unwrap(), want);
    assert_eq!(r.plex_calls(), 2);
    // A movie with new-agent GUIDs.
    let ScrobbleItem::Movie(m) = r.resolve("1001", None).unwrap() else {
        panic!()
    };
    assert_eq!(
        (m.ids.imdb.as_deref(), m.ids.tmdb),
        (Some("tt0000000"), Some(100))
    );
    // Plex does not know it and the event carried nothing: said, not guessed.
    let e = r.resolve("999999", None).unwrap_err();
    assert!(e.contains("999999"), "{e}");
}

#[test]
fn a_403_is_kept_with_its_error_and_a_400_is_refused_once() {
    let fake = FakeTrakt::start();
    let dir = tempfile::tempdir().unwrap();
    let (store, mut r) = open(&dir.path().join("index.sqlite"));
    tokens::save(&store, "ann", &pair(GOOD_TOKEN, "refresh-token-1")).unwrap();
    let mut d = deliverer(&fake, ms(20));
    fake.script("/scrobble/start", vec![Answer::new(403, "")]);
    fake.script("/scrobble/pause", vec![Answer::new(400, "")]);
    outbox::push(&store, &call("ann", "7", "a", ScrobbleAction::Start, 1.0)).unwrap();
    let rep = d.pass(&store, &mut r, Instant::now(), &|| false).unwrap();
    assert_eq!((rep.finished, rep.deferred), (0, 1));
    let e = &outbox::due(&store, u64::MAX, 10).unwrap()[0];
    assert!(e.last_error.as_deref().unwrap().contains("403"), "{e:?}");
    assert!(d.stats().last_error.as_deref().unwrap().contains("403"));
    assert!(!d.stats().last_error.as_deref().unwrap().contains(CLIENT_ID));
    drain(&mut d, &store, &mut r);
    outbox::push(&store, &call("ann", "7", "b", ScrobbleAction::Pause, 5.0)).unwrap();
    drain(&mut d, &store, &mut r);
    let h = outbox::history(&store, 0, 10).unwrap();
    let outcomes: Vec<_> = h.iter().map(|r| r.outcome.as_str()).collect();
    assert_eq!(outcomes, vec!["started", "refused"]);
    assert_eq!(
        scrobbles(&fake.log()).len(),
        3,
        "403, then 201; the 400 once"
    );
}
