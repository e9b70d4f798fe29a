//! The downloads job's clients (`downshiftarr::clients::{radarr, prowlarr, jellystat,
//! jellyfin, notify}`) against their loopback fakes: the calls the job makes, what goes on the
//! wire (paths under a URL base, keys in headers only), and every failure kind sorted into the
//! right `ServiceError` — never `Ok(None)` / empty for a 500, a timeout, a 401 or a malformed
//! answer; `Ok(None)` only for the service's own "there is none".

use std::time::{Duration, Instant};

use downshiftarr::clients::jellyfin::Jellyfin;
use downshiftarr::clients::jellystat::Jellystat;
use downshiftarr::clients::notify;
use downshiftarr::clients::prowlarr::Prowlarr;
use downshiftarr::clients::radarr::Radarr;
use downshiftarr::clients::service::ServiceError;
use serde_json::{json, Value};

use crate::fake_jellyfin::{self, FakeJellyfin};
use crate::fake_jellystat::{self, play, FakeJellystat};
use crate::fake_notify::FakeNotify;
use crate::fake_prowlarr::{self, torrent, usenet, FakeProwlarr};
use crate::fake_radarr::{self, lookup, movie, FakeRadarr};
use crate::fake_service::Answer;

/// A port nothing listens on.
fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

/// The error says where it went and never carries `secret`.
fn clean(e: &ServiceError, secret: &str) {
    let shown = format!("{e} | {e:?}");
    assert!(!shown.contains(secret), "secret in {shown}");
    assert!(shown.contains("127.0.0.1"), "no address in {shown}");
}

// ---- Radarr ---------------------------------------------------------------------------------

#[test]
fn radarr_finds_a_movie_by_tmdb_under_a_url_base_with_the_key_in_a_header() {
    let r = FakeRadarr::with_base("/radarr");
    r.add(movie(7, 603, "The Matrix", 1999, 8.7, 2_100_000));
    let c = r.client();
    let status = c.system_status().unwrap();
    assert_eq!(status["version"], "4.5.2.7388");
    assert_eq!(status["urlBase"], "/radarr");
    let m = c.movie_by_tmdb(603).unwrap().unwrap();
    assert_eq!((m.id, m.tmdb_id, m.title.as_str()), (7, 603, "The Matrix"));
    assert_eq!((m.imdb_rating, m.imdb_votes), (Some(8.7), Some(2_100_000)));
    assert_eq!(m.root_folder_path.as_deref(), Some("/movies"));
    let sent = r.requests("GET", "/api/v3/movie");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].path, "/radarr/api/v3/movie");
    assert_eq!(sent[0].param("tmdbId").as_deref(), Some("603"));
    assert_eq!(sent[0].header("x-api-key"), Some(fake_radarr::API_KEY));
    for (req, _) in r.server.answered() {
        assert!(!req.query.contains(fake_radarr::API_KEY), "key in a URL");
    }
}

#[test]
fn radarr_absent_is_only_a_200_with_an_empty_array() {
    let r = FakeRadarr::start();
    r.add(movie(7, 603, "The Matrix", 1999, 8.7, 2_100_000));
    assert_eq!(r.client().movie_by_tmdb(604).unwrap(), None);
    let sent = r.server.answered();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1, 200);
}

#[test]
fn radarr_every_failure_is_its_own_error_never_absent() {
    let r = FakeRadarr::start();
    r.add(movie(7, 603, "The Matrix", 1999, 8.7, 2_100_000));
    let path = "/api/v3/movie";

    // 500 on every attempt (a GET is tried three times), the body echoing the key.
    r.server.fail_times(
        path,
        3,
        Answer::text(
            500,
            &format!("Object reference not set; key={}", fake_radarr::API_KEY),
        ),
    );
    let e = r.client().movie_by_tmdb(603).unwrap_err();
    assert!(matches!(e, ServiceError::Http { status: 500, .. }), "{e:?}");
    assert!(e.transient());
    clean(&e, fake_radarr::API_KEY);
    assert!(e.to_string().contains("/api/v3/movie"), "{e}");

    r.server.fail_times(path, 3, Answer::status(503));
    let e = r.client().movie_by_tmdb(603).unwrap_err();
    assert!(matches!(e, ServiceError::Http { status: 503, .. }), "{e:?}");

    // A wrong key: 401, named as such, with the setting to fix.
    let bad = Radarr::new(&r.url(), "wrong-key", 1000, 2000).unwrap();
    let e = bad.movie_by_tmdb(603).unwrap_err();
    assert!(matches!(e, ServiceError::Unauthorized { .. }), "{e:?}");
    assert!(!e.transient());
    assert!(e.to_string().contains("radarr_api_key"), "{e}");
    assert!(!e.to_string().contains("wrong-key"), "{e}");

    // A cut-off body, an object instead of the array.
    r.server.fail_times(path, 1, Answer::malformed());
    let e = r.client().movie_by_tmdb(603).unwrap_err();
    assert!(matches!(e, ServiceError::Malformed { .. }), "{e:?}");
    r.server
        .fail_times(path, 1, Answer::json(200, &json!({"id": 7, "tmdbId": 603})));
    let e = r.client().movie_by_tmdb(603).unwrap_err();
    assert!(matches!(e, ServiceError::Malformed { .. }), "{e:?}");
    // An array holding another movie is no answer about this one.
    r.server.fail_times(
        path,
        1,
        Answer::json(200, &json!([movie(9, 999, "Other", 2001, 6.0, 10)])),
    );
    let e = r.client().movie_by_tmdb(603).unwrap_err();
    assert!(matches!(e, ServiceError::Malformed { .. }), "{e:?}");

    // Slower than the client waits.
    r.server.fail_times(
        path,
        3,
        Answer::json(200, &json!([])).slow(Duration::from_millis(1200)),
    );
    let t = Instant::now();
    let e = r.client_timeout(300).movie_by_tmdb(603).unwrap_err();
    assert!(
        matches!(e, ServiceError::Timeout { after_ms: 300, .. }),
        "{e:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(e.to_string().contains("request_timeout_ms"), "{e}");
    r.server.unscript();

    // Nothing listening.
    let gone = Radarr::new(&closed_port_url(), fake_radarr::API_KEY, 500, 500).unwrap();
    let e = gone.movie_by_tmdb(603).unwrap_err();
    assert!(matches!(e, ServiceError::Connect { .. }), "{e:?}");
    assert!(e.to_string().contains("radarr_url"), "{e}");

    // A wrong URL base reaches Radarr's web page, not its API.
    let wrong = Radarr::new(
        &format!("{}/sonarr", r.server.url()),
        fake_radarr::API_KEY,
        1000,
        2000,
    )
    .unwrap();
    let e = wrong.movie_by_tmdb(603).unwrap_err();
    assert!(matches!(e, ServiceError::Malformed { .. }), "{e:?}");

    // And after all that, the movie is still found.
    assert!(r.client().movie_by_tmdb(603).unwrap().is_some());
}

#[test]
fn radarr_a_get_that_fails_once_is_retried_and_succeeds() {
    let r = FakeRadarr::start();
    r.add(movie(7, 603, "The Matrix", 1999, 8.7, 2_100_000));
    r.server.fail_times("/api/v3/movie", 1, Answer::status(503));
    let m = r.client().movie_by_tmdb(603).unwrap();
    assert_eq!(m.map(|m| m.id), Some(7));
    let statuses: Vec<u16> = r.server.answered().iter().map(|(_, s)| *s).collect();
    assert_eq!(statuses, vec![503, 200]);
}

#[test]
fn radarr_an_answer_past_the_cap_is_refused_not_read() {
    let r = FakeRadarr::start();
    r.server.fail_times("/api/v3/movie", 1, Answer::endless());
    let c = Radarr::with_max_body(&r.url(), fake_radarr::API_KEY, 1000, 5000, 1 << 20).unwrap();
    let t = Instant::now();
    let e = c.movies().unwrap_err();
    assert!(matches!(e, ServiceError::Malformed { .. }), "{e:?}");
    assert!(e.to_string().contains("larger than 1 MiB"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn radarr_tags_are_found_case_insensitively_created_once_and_added_keeping_the_movie() {
    let r = FakeRadarr::start();
    let keep = r.add_tag("Keep");
    r.add(movie(7, 603, "The Matrix", 1999, 8.7, 2_100_000));
    let c = r.client();
    assert_eq!(c.ensure_tag("keep").unwrap(), keep);
    assert!(r.requests("POST", "/api/v3/tag").is_empty());
    let fav = c.ensure_tag("Favorite").unwrap();
    assert_ne!(fav, keep);
    assert_eq!(
        r.requests("POST", "/api/v3/tag")[0].json(),
        json!({"label": "Favorite"})
    );
    // Radarr stores it lower-case; asking again finds it.
    assert_eq!(c.ensure_tag("FAVORITE").unwrap(), fav);
    assert_eq!(r.requests("POST", "/api/v3/tag").len(), 1);
    assert_eq!(c.tags().unwrap().len(), 2);
    assert_eq!(
        r.tags(),
        vec![(keep, "Keep".to_string()), (fav, "favorite".to_string())]
    );

    let before = r.movie(7).unwrap();
    let m = c.movie_by_tmdb(603).unwrap().unwrap();
    c.add_tag(&m, keep).unwrap();
    let put = r.requests("PUT", "/api/v3/movie/7");
    assert_eq!(put.len(), 1);
    assert_eq!(put[0].param("moveFiles").as_deref(), Some("false"));
    let after = r.movie(7).unwrap();
    assert_eq!(after["tags"], json!([keep]));
    let (mut a, mut b) = (after.clone(), before.clone());
    a.as_object_mut().unwrap().remove("tags");
    b.as_object_mut().unwrap().remove("tags");
    assert_eq!(a, b, "a PUT changed more than the tags");

    // Already tagged: nothing is sent.
    let m = c.movie_by_tmdb(603).unwrap().unwrap();
    c.add_tag(&m, keep).unwrap();
    assert_eq!(r.requests("PUT", "/api/v3/movie/7").len(), 1);

    // A PUT refused is an error, sent once.
    r.server
        .fail_times("/api/v3/movie/7", 1, Answer::status(500));
    let e = c.add_tag(&m, fav).unwrap_err();
    assert!(matches!(e, ServiceError::Http { status: 500, .. }), "{e:?}");
    assert_eq!(r.requests("PUT", "/api/v3/movie/7").len(), 2);
}

#[test]
fn radarr_a_search_is_polled_from_queued_to_completed() {
    let r = FakeRadarr::start();
    r.add(movie(7, 603, "The Matrix", 1999, 8.7, 2_100_000));
    r.command_progress(2, 1, "completed");
    let c = r.client();
    let cmd = c.search(&[7]).unwrap();
    assert_eq!(
        (cmd.name.as_str(), cmd.status.as_str()),
        ("MoviesSearch", "queued")
    );
    assert!(!cmd.is_final());
    assert_eq!(
        r.requests("POST", "/api/v3/command")[0].json(),
        json!({"name": "MoviesSearch", "movieIds": [7]})
    );
    let mut seen = Vec::new();
    loop {
        let now = c.command(cmd.id).unwrap();
        seen.push(now.status.clone());
        if now.is_final() {
            assert!(now.succeeded());
            break;
        }
        assert!(seen.len() < 10);
    }
    assert_eq!(seen, vec!["queued", "queued", "started", "completed"]);
    assert_eq!(r.commands().len(), 1);
    assert_eq!(r.commands()[0].body["movieIds"], json!([7]));

    r.command_progress(0, 0, "failed");
    let cmd = c.search(&[7]).unwrap();
    let done = c.command(cmd.id).unwrap();
    assert!(done.is_final() && !done.succeeded());

    // A command Radarr forgot (a restart) is its 404, not a state.
    let e = c.command(999).unwrap_err();
    assert!(matches!(e, ServiceError::Http { status: 404, .. }), "{e:?}");
}

#[test]
fn radarr_a_search_refused_is_sent_once_and_an_error() {
    let r = FakeRadarr::start();
    r.server
        .fail_times("/api/v3/command", 1, Answer::status(500));
    let e = r.client().search(&[7]).unwrap_err();
    assert!(matches!(e, ServiceError::Http { status: 500, .. }), "{e:?}");
    assert_eq!(r.requests("POST", "/api/v3/command").len(), 1);
    assert!(r.commands().is_empty());
    r.server.fail_times(
        "/api/v3/command",
        1,
        Answer::status(503).slow(Duration::from_millis(1500)),
    );
    let e = r.client_timeout(300).search(&[7]).unwrap_err();
    assert!(matches!(e, ServiceError::Timeout { .. }), "{e:?}");
    assert_eq!(r.requests("POST", "/api/v3/command").len(), 2);
}

#[test]
fn radarr_adds_a_missing_movie_from_its_lookup() {
    let r = FakeRadarr::start();
    r.set_lookup(550, lookup(550, "Fight Club", 1999, 8.8, 2_300_000));
    let c = r.client();
    assert_eq!(c.lookup_tmdb(551).unwrap(), None);
    assert_eq!(c.movie_by_tmdb(550).unwrap(), None);
    let found = c.lookup_tmdb(550).unwrap().unwrap();
    let keep = c.ensure_tag("keep").unwrap();
    let m = c.add_movie(&found, 4, "/movies", &[keep], true).unwrap();
    assert!(m.id > 0 && !m.has_file);
    assert_eq!((m.tmdb_id, m.tags.clone()), (550, vec![keep]));
    let sent = r.requests("POST", "/api/v3/movie")[0].json();
    assert_eq!(sent["qualityProfileId"], 4);
    assert_eq!(sent["rootFolderPath"], "/movies");
    assert_eq!(sent["monitored"], true);
    assert_eq!(sent["addOptions"], json!({"searchForMovie": true}));
    assert_eq!(sent["title"], "Fight Club");
    assert_eq!(r.commands().len(), 1, "searchForMovie starts a search");
    assert_eq!(c.movie_by_tmdb(550).unwrap().map(|x| x.id), Some(m.id));

    // Radarr's validation answer, with its words.
    let e = c.add_movie(&found, 4, "/movies", &[], false).unwrap_err();
    match &e {
        ServiceError::Http {
            status: 400,
            body_excerpt,
            ..
        } => assert!(
            body_excerpt.contains("already been added"),
            "{body_excerpt}"
        ),
        other => panic!("{other:?}"),
    }
    // A lookup answer that is a web page is not "unknown to TMDB".
    r.server
        .fail_times("/api/v3/movie/lookup/tmdb", 1, Answer::html(404));
    let e = c.lookup_tmdb(550).unwrap_err();
    assert!(matches!(e, ServiceError::Http { status: 404, .. }), "{e:?}");
}

#[test]
fn radarr_lists_the_library_and_deletes_through_the_api() {
    let r = FakeRadarr::start();
    r.add(movie(7, 603, "The Matrix", 1999, 8.7, 2_100_000));
    r.add(movie(8, 604, "The Matrix Reloaded", 2003, 7.2, 640_000));
    let c = r.client();
    let all = c.movies().unwrap();
    assert_eq!(all.iter().map(|m| m.id).collect::<Vec<_>>(), vec![7, 8]);
    assert_eq!(all[1].size_on_disk, 10_501_793_191);
    c.delete_movie(8, true).unwrap();
    assert_eq!(r.deleted(), vec![(8, true)]);
    let del = r.requests("DELETE", "/api/v3/movie/8");
    assert_eq!(del[0].param("deleteFiles").as_deref(), Some("true"));
    let e = c.delete_movie(8, true).unwrap_err();
    assert!(matches!(e, ServiceError::Http { status: 404, .. }), "{e:?}");
    assert_eq!(c.movies().unwrap().len(), 1);
}

// ---- Prowlarr -------------------------------------------------------------------------------

#[test]
fn prowlarr_best_seeders_across_indexers() {
    let p = FakeProwlarr::start();
    p.set_releases(
        "The Matrix 1999",
        vec![
            torrent("TorrentLeech", 3, "The.Matrix.1999.1080p.BluRay.x264", 3),
            usenet("NZBgeek", 5, "The.Matrix.1999.2160p.UHD.BluRay"),
            torrent("IPTorrents", 4, "The.Matrix.1999.REMASTERED.720p", 41),
        ],
    );
    p.set_releases(
        "Obscure 1961",
        vec![usenet("NZBgeek", 5, "Obscure.1961.DVDRip")],
    );
    let c = p.client();
    assert_eq!(c.best_seeders("The Matrix 1999").unwrap(), Some(41));
    let sent = &p.server.log()[0];
    assert_eq!(sent.path, "/api/v1/search");
    assert_eq!(sent.param("query").as_deref(), Some("The Matrix 1999"));
    assert_eq!(sent.param("type").as_deref(), Some("movie"));
    assert_eq!(sent.header("x-api-key"), Some(fake_prowlarr::API_KEY));
    assert_eq!(c.best_seeders("nothing at all").unwrap(), None);
    assert_eq!(c.best_seeders("Obscure 1961").unwrap(), None);
}

#[test]
fn prowlarr_failures_are_errors_and_a_search_is_sent_once() {
    let p = FakeProwlarr::start();
    let path = "/api/v1/search";
    p.server.fail_times(path, 1, Answer::status(500));
    let e = p.client().best_seeders("x").unwrap_err();
    assert!(matches!(e, ServiceError::Http { status: 500, .. }), "{e:?}");
    assert_eq!(p.server.log().len(), 1, "a search is not sent again");
    clean(&e, fake_prowlarr::API_KEY);

    let e = Prowlarr::new(&p.server.url(), "nope", 1000, 2000)
        .unwrap()
        .best_seeders("x")
        .unwrap_err();
    assert!(matches!(e, ServiceError::Unauthorized { .. }), "{e:?}");
    assert!(e.to_string().contains("prowlarr_api_key"), "{e}");

    p.server.fail_times(
        path,
        1,
        Answer::json(200, &json!([])).slow(Duration::from_millis(1000)),
    );
    let slow = Prowlarr::new(&p.server.url(), fake_prowlarr::API_KEY, 1000, 300).unwrap();
    let e = slow.best_seeders("x").unwrap_err();
    assert!(matches!(e, ServiceError::Timeout { .. }), "{e:?}");

    p.server.fail_times(path, 1, Answer::malformed());
    let e = p.client().best_seeders("x").unwrap_err();
    assert!(matches!(e, ServiceError::Malformed { .. }), "{e:?}");
    p.server.fail_times(
        path,
        1,
        Answer::json(200, &json!({"message": "Search failed"})),
    );
    let e = p.client().best_seeders("x").unwrap_err();
    assert!(matches!(e, ServiceError::Malformed { .. }), "{e:?}");

    let e = Prowlarr::new(&closed_port_url(), "k", 300, 300)
        .unwrap()
        .best_seeders("x")
        .unwrap_err();
    assert!(matches!(e, ServiceError::Connect { .. }), "{e:?}");
}

// ---- Jellystat ------------------------------------------------------------------------------

fn at(day: u32, n: u32) -> String {
    format!("2024-05-{day:02}T{:02}:{:02}:00.000Z", n / 60 % 24, n % 60)
}

#[test]
fn jellystat_item_history_reads_every_page_of_the_new_shape() {
    let j = FakeJellystat::start();
    j.add(
        (0..250)
            .map(|n| {
                play(
                    "alice",
                    "item-matrix",
                    "The Matrix",
                    &at(1 + n / 100, n),
                    7000 + u64::from(n),
                )
            })
            .collect(),
    );
    j.add(vec![play("bob", "item-other", "Heat", &at(3, 1), 6000)]);
    let rows = j.client().item_history("item-matrix").unwrap();
    assert_eq!(rows.len(), 250);
    assert!(rows
        .iter()
        .all(|r| r.item_id == "item-matrix" && r.user == "alice"));
    assert!(
        rows.windows(2).all(|w| w[0].at_ms >= w[1].at_ms),
        "newest first"
    );
    assert!(rows.iter().any(|r| r.duration_s == 7249));
    assert_eq!(rows[0].address.as_deref(), Some("192.168.1.20"));
    let sent = j.server.log();
    assert_eq!(sent.len(), 3);
    for (i, req) in sent.iter().enumerate() {
        assert_eq!(
            (req.method.as_str(), req.path.as_str()),
            ("POST", "/api/getItemHistory")
        );
        assert_eq!(req.param("page"), Some((i + 1).to_string()));
        assert_eq!(req.param("size").as_deref(), Some("100"));
        assert_eq!(req.json(), json!({"itemid": "item-matrix"}));
        assert_eq!(req.header("x-api-token"), Some(fake_jellystat::API_KEY));
    }
    // An item nobody played: a 200 with no results is an empty history.
    assert!(j.client().item_history("item-none").unwrap().is_empty());
}

#[test]
fn jellystat_item_history_reads_the_older_plain_array() {
    let j = FakeJellystat::start();
    j.legacy();
    j.add(vec![
        play("alice", "m1", "Heat", "2023-01-02T03:04:05.000Z", 95),
        play("alice", "m1", "Heat", "2023-02-02T03:04:05.000Z", 7100),
    ]);
    let rows = j.client().item_history("m1").unwrap();
    assert_eq!(
        rows.iter().map(|r| r.duration_s).collect::<Vec<_>>(),
        vec![7100, 95]
    );
    assert_eq!(j.server.log().len(), 1);
}

#[test]
fn jellystat_history_flattens_the_groups_and_stops_at_max() {
    let j = FakeJellystat::start();
    j.add(vec![
        play("alice", "m1", "Heat", &at(1, 1), 100),
        play("alice", "m1", "Heat", &at(2, 1), 200),
        play("bob", "m1", "Heat", &at(3, 1), 300),
        play("alice", "m2", "Alien", &at(4, 1), 400),
    ]);
    let c = j.client();
    let mut all = c.history(1000).unwrap();
    all.sort_by_key(|r| r.at_ms);
    assert_eq!(
        all.iter()
            .map(|r| (r.user.as_str(), r.item_id.as_str(), r.duration_s))
            .collect::<Vec<_>>(),
        vec![
            ("alice", "m1", 100),
            ("alice", "m1", 200),
            ("bob", "m1", 300),
            ("alice", "m2", 400)
        ]
    );
    assert_eq!(c.history(2).unwrap().len(), 2);
    assert!(j
        .server
        .log()
        .iter()
        .all(|r| r.method == "GET" && r.path == "/api/getHistory"));
}

#[test]
fn jellystat_failures_are_errors_never_an_empty_history() {
    let j = FakeJellystat::start();
    j.add(vec![play("alice", "m1", "Heat", &at(1, 1), 100)]);
    let path = "/api/getItemHistory";

    let e = Jellystat::new(&j.server.url(), "wrong", 1000, 2000)
        .unwrap()
        .item_history("m1")
        .unwrap_err();
    assert!(
        matches!(e, ServiceError::Unauthorized { .. }),
        "403 is a bad key: {e:?}"
    );
    assert!(e.to_string().contains("jellystat_api_key"), "{e}");

    // Jellystat's database errors are 503s.
    j.server
        .fail_times(path, 1, Answer::text(503, "connection terminated"));
    let e = j.client().item_history("m1").unwrap_err();
    assert!(matches!(e, ServiceError::Http { status: 503, .. }), "{e:?}");
    assert!(e.transient());
    clean(&e, fake_jellystat::API_KEY);

    j.server.fail_times(path, 1, Answer::malformed());
    let e = j.client().item_history("m1").unwrap_err();
    assert!(matches!(e, ServiceError::Malformed { .. }), "{e:?}");

    // A row we cannot read fails the answer, naming it.
    let mut bad = play("alice", "m1", "Heat", "not a date", 1);
    bad["PlaybackDuration"] = json!("12");
    j.server.fail_times(
        path,
        1,
        Answer::json(200, &json!({"pages": 1, "results": [bad]})),
    );
    let e = j.client().item_history("m1").unwrap_err();
    assert!(
        e.to_string().contains("ActivityDateInserted") || e.to_string().contains("time"),
        "{e}"
    );

    // A later page failing is an error, not the first page alone.
    let page1 = json!({"current_page": "1", "pages": 2, "size": "100",
                       "results": [play("alice", "m1", "Heat", &at(1, 1), 100)]});
    j.server
        .script(path, vec![Answer::json(200, &page1), Answer::status(503)]);
    let e = j.client().item_history("m1").unwrap_err();
    assert!(matches!(e, ServiceError::Http { status: 503, .. }), "{e:?}");

    // getHistory never answering (its catch logs and stays silent).
    j.server.fail_times(
        "/api/getHistory",
        3,
        Answer::status(200).slow(Duration::from_millis(1000)),
    );
    let slow = Jellystat::new(&j.server.url(), fake_jellystat::API_KEY, 1000, 300).unwrap();
    let e = slow.history(10).unwrap_err();
    assert!(matches!(e, ServiceError::Timeout { .. }), "{e:?}");
    j.server.unscript();

    let e = Jellystat::new(&closed_port_url(), "k", 300, 300)
        .unwrap()
        .item_history("m1")
        .unwrap_err();
    assert!(matches!(e, ServiceError::Connect { .. }), "{e:?}");
    assert_eq!(j.client().item_history("m1").unwrap().len(), 1);
}

// ---- Jellyfin -------------------------------------------------------------------------------

#[test]
fn jellyfin_user_and_item_with_the_users_play_count() {
    let f = FakeJellyfin::start();
    let alice = f.add_user("Alice");
    f.add_user("bob");
    f.add_item(fake_jellyfin::movie(
        "f00d",
        "The Matrix",
        1999,
        8.2,
        &["Action", "Science Fiction"],
        "tt0133093",
        603,
    ));
    f.set_play_count(&alice, "f00d", 2);
    let c = f.client();
    assert_eq!(c.user_id("alice").unwrap(), Some(alice.clone()));
    assert_eq!(c.user_id("carol").unwrap(), None);
    let item = c.item(&alice, "f00d").unwrap().unwrap();
    assert_eq!(
        (item.name.as_str(), item.year, item.kind.as_str()),
        ("The Matrix", Some(1999), "Movie")
    );
    assert_eq!(item.community_rating, Some(8.2));
    assert_eq!(item.genres, vec!["Action", "Science Fiction"]);
    assert_eq!(
        (item.ids.imdb.as_deref(), item.ids.tmdb),
        (Some("tt0133093"), Some(603))
    );
    assert_eq!(item.play_count, Some(2));
    let sent = f
        .server
        .requests("GET", &format!("/Users/{alice}/Items/f00d"));
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].header("authorization").map(str::to_string),
        Some(format!("MediaBrowser Token=\"{}\"", fake_jellyfin::API_KEY))
    );
}

#[test]
fn jellyfin_an_unknown_item_is_none_only_when_jellyfin_says_so() {
    let f = FakeJellyfin::start();
    let alice = f.add_user("alice");
    let c = f.client();
    assert_eq!(c.item(&alice, "gone").unwrap(), None);
    f.problem_details();
    assert_eq!(c.item(&alice, "gone").unwrap(), None);
    // A proxy's HTML 404 (the wrong URL) is an error.
    f.server
        .fail_times(&format!("/Users/{alice}/Items/gone"), 1, Answer::html(404));
    let e = c.item(&alice, "gone").unwrap_err();
    assert!(matches!(e, ServiceError::Http { status: 404, .. }), "{e:?}");
    assert!(e.to_string().contains("jellyfin_url"), "{e}");
}

#[test]
fn jellyfin_failures_are_errors() {
    let f = FakeJellyfin::start();
    let alice = f.add_user("alice");
    f.add_item(fake_jellyfin::movie(
        "f00d",
        "Heat",
        1995,
        8.3,
        &["Crime"],
        "tt0113277",
        949,
    ));
    let path = format!("/Users/{alice}/Items/f00d");

    let e = Jellyfin::new(&f.server.url(), "wrong", 1000, 2000)
        .unwrap()
        .item(&alice, "f00d")
        .unwrap_err();
    assert!(matches!(e, ServiceError::Unauthorized { .. }), "{e:?}");

    f.server.fail_times(&path, 3, Answer::status(500));
    let e = f.client().item(&alice, "f00d").unwrap_err();
    assert!(matches!(e, ServiceError::Http { status: 500, .. }), "{e:?}");
    clean(&e, fake_jellyfin::API_KEY);

    f.server.fail_times(&path, 1, Answer::malformed());
    assert!(matches!(
        f.client().item(&alice, "f00d").unwrap_err(),
        ServiceError::Malformed { .. }
    ));
    f.server
        .fail_times("/Users", 1, Answer::json(200, &json!({"Items": []})));
    assert!(matches!(
        f.client().user_id("alice").unwrap_err(),
        ServiceError::Malformed { .. }
    ));

    // An endless answer stops at the client's cap.
    f.server.fail_times(&path, 1, Answer::endless());
    let t = Instant::now();
    let e = f.client().item(&alice, "f00d").unwrap_err();
    assert!(matches!(e, ServiceError::Malformed { .. }), "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(10));

    f.server.fail_times(
        &path,
        3,
        Answer::status(200).slow(Duration::from_millis(1000)),
    );
    let slow = Jellyfin::new(&f.server.url(), fake_jellyfin::API_KEY, 1000, 300).unwrap();
    assert!(matches!(
        slow.item(&alice, "f00d").unwrap_err(),
        ServiceError::Timeout { .. }
    ));
    f.server.unscript();
    assert!(f.client().item(&alice, "f00d").unwrap().is_some());
}

// ---- Notifications --------------------------------------------------------------------------

#[test]
fn notifications_take_each_webhooks_shape() {
    let n = FakeNotify::start();
    let discord = n.url("/api/webhooks/1234/SECRET-TOKEN");
    notify::post(
        &discord,
        "",
        "Download triggered",
        "The Matrix (1999): IMDb 8.7",
        2000,
    )
    .unwrap();
    notify::post(
        &n.url("/topic-films"),
        "ntfy",
        "Téléchargement",
        "Amélie (2001)",
        2000,
    )
    .unwrap();
    notify::post(&n.url("/notify/apprise"), "", "Weekly", "3 downloads", 2000).unwrap();
    notify::post(&n.url("/hook"), "", "Weekly", "3 downloads", 2000).unwrap();
    let log = n.server.answered();
    assert_eq!(
        log.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        vec![204, 200, 200, 200]
    );
    assert_eq!(
        log[0].0.json(),
        json!({"content": "**Download triggered**\nThe Matrix (1999): IMDb 8.7"})
    );
    assert_eq!(log[1].0.body, "Amélie (2001)");
    assert!(log[1]
        .0
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(
        log[1].0.header("title"),
        Some("=?UTF-8?B?VMOpbMOpY2hhcmdlbWVudA==?=")
    );
    assert_eq!(
        log[2].0.json(),
        json!({"title": "Weekly", "body": "3 downloads", "type": "info"})
    );
    assert_eq!(log[3].0.json()["event"], "downloads");
    assert_eq!(log[3].0.json()["body"], "3 downloads");
}

#[test]
fn notification_failures_are_errors_without_the_webhook_secret() {
    let n = FakeNotify::start();
    let discord = n.url("/api/webhooks/1234/SECRET-TOKEN");
    let e = notify::post(&discord, "", "", "", 2000).unwrap_err();
    assert!(matches!(e, ServiceError::Http { status: 400, .. }), "{e:?}");
    n.server.fail_times(
        "/api/webhooks/1234/SECRET-TOKEN",
        1,
        Answer::text(500, "token SECRET-TOKEN rejected"),
    );
    let e = notify::post(&discord, "", "t", "b", 2000).unwrap_err();
    assert!(matches!(e, ServiceError::Http { status: 500, .. }), "{e:?}");
    clean(&e, "SECRET-TOKEN");
    n.server.fail_times(
        "/api/webhooks/1234/SECRET-TOKEN",
        1,
        Answer::empty(204).slow(Duration::from_millis(1000)),
    );
    let e = notify::post(&discord, "", "t", "b", 300).unwrap_err();
    assert!(matches!(e, ServiceError::Timeout { .. }), "{e:?}");
    clean(&e, "SECRET-TOKEN");
    // Sent once each: no retry of a notification.
    assert_eq!(n.server.log().len(), 3);
    let e = notify::post(
        &format!("{}/api/webhooks/1/SECRET-TOKEN", closed_port_url()),
        "",
        "t",
        "b",
        300,
    )
    .unwrap_err();
    assert!(matches!(e, ServiceError::Connect { .. }), "{e:?}");
    clean(&e, "SECRET-TOKEN");
    let e = notify::post(&discord, "slack", "t", "b", 300).unwrap_err();
    assert!(e.to_string().contains("slack"), "{e}");
}

/// The shapes the fakes replay are the recorded ones (a fake drifting from the payload would
/// make every test above meaningless).
#[test]
fn the_fakes_replay_the_recorded_payloads() {
    let recorded: Value = serde_json::from_str(fake_radarr::MOVIE).unwrap();
    let seeded = movie(7, 603, "The Matrix", 1999, 8.7, 2_100_000);
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    for k in keys(&recorded) {
        assert!(seeded.get(&k).is_some(), "seeded movie lacks {k}");
    }
    let status: Value = serde_json::from_str(fake_radarr::STATUS).unwrap();
    assert_eq!(status["appName"], "Radarr");
}
