//! The rule engine's table: every tier, every threshold at and beside its edge, per-user
//! thresholds, guests, TV episodes, short plays.

use super::*;
use crate::config::downloads::DownloadsSettings;
use crate::jobs::downloads::settings::{thresholds, who};
use crate::jobs::downloads::{Ids, PlaySource};

fn play() -> Play {
    Play {
        source: PlaySource::Jellyfin,
        at_ms: 1_000,
        user: "ann".into(),
        address: None,
        kind: ItemKind::Movie,
        title: "Heat".into(),
        year: Some(1995),
        ids: Ids {
            imdb: Some("tt0113277".into()),
            tmdb: Some(949),
            tvdb: None,
        },
        item_id: "abc".into(),
        percent: 95.0,
        genres: Vec::new(),
        client: None,
    }
}

/// A 7.5-rated English film from 1995 with many votes, watched once: after-rewatch, waiting.
fn facts() -> Facts {
    Facts {
        imdb_rating: Some(Fact::new(7.5, "radarr")),
        imdb_votes: Some(Fact::new(700_000, "radarr")),
        genres: Some(Fact::new(vec!["Crime".into(), "Drama".into()], "radarr")),
        original_language: Some(Fact::new("English".into(), "radarr")),
        year: Some(Fact::new(1995, "radarr")),
        title: Some(Fact::new("Heat".into(), "radarr")),
        edition: None,
        favourite: Some(Fact::new(false, "radarr")),
        seeders: None,
        watch_count: Some(Fact::new(1, "history")),
        notes: Vec::new(),
    }
}

fn settings() -> DownloadsSettings {
    serde_json::from_str(
        r#"{"radarr_url": "http://radarr", "tracked_users": ["ann", "bob"],
            "home_networks": ["192.168.0.0/16"], "guests_by_network": true,
            "min_seeders_rare": 5,
            "users": {"Bob": {"watch_count_threshold": 3, "instant_rating": 9.0,
                              "rewatch_min_rating": 6.0, "min_watched_percent": 80},
                      "kid": {"never": true}}}"#,
    )
    .unwrap()
}

/// One row: what differs from the base, and what the engine must say.
struct Row {
    name: &'static str,
    edit: fn(&mut Play, &mut Facts),
    tier: Tier,
    download: bool,
    /// A reason that must be among the verdict's.
    reason: &'static str,
}

fn same(_: &mut Play, _: &mut Facts) {}

#[rustfmt::skip]
const ROWS: &[Row] = &[
    // -- after_rewatch, and the watch-count threshold --
    Row { name: "7.5, watched once: waits", edit: same, tier: Tier::AfterRewatch, download: false,
          reason: "watched 1 time in 90 days < 2 (history): waiting for a rewatch" },
    Row { name: "7.5, watched twice: downloads", edit: |_, f| f.watch_count = Some(Fact::new(2, "history")),
          tier: Tier::AfterRewatch, download: true, reason: "watched 2 times in 90 days ≥ 2 (history)" },
    Row { name: "7.5, watched 3 times (jellystat)", edit: |_, f| f.watch_count = Some(Fact::new(3, "jellystat")),
          tier: Tier::AfterRewatch, download: true, reason: "watched 3 times in 90 days ≥ 2 (jellystat)" },
    Row { name: "watch count unknown: waits", edit: |_, f| { f.watch_count = None },
          tier: Tier::AfterRewatch, download: false, reason: "watch count unknown" },
    Row { name: "rating at the rewatch floor", edit: |_, f| f.imdb_rating = Some(Fact::new(7.0, "radarr")),
          tier: Tier::AfterRewatch, download: false, reason: "IMDb 7 is within 7–8.5 (radarr)" },
    Row { name: "rating just under instant", edit: |_, f| f.imdb_rating = Some(Fact::new(8.49, "jellyfin")),
          tier: Tier::AfterRewatch, download: false, reason: "IMDb 8.49 is within 7–8.5 (jellyfin)" },
    Row { name: "unknown rating is not low", edit: |_, f| { f.imdb_rating = None; f.imdb_votes = None },
          tier: Tier::AfterRewatch, download: false, reason: "IMDb rating unknown (no source had it): not read as low" },
    Row { name: "unknown rating, rewatched: downloads",
          edit: |_, f| { f.imdb_rating = None; f.watch_count = Some(Fact::new(2, "history")) },
          tier: Tier::AfterRewatch, download: true, reason: "watched 2 times" },
    // -- never --
    Row { name: "rating just under the floor", edit: |_, f| f.imdb_rating = Some(Fact::new(6.99, "radarr")),
          tier: Tier::Never, download: false, reason: "IMDb 6.99 < 7 (radarr): never downloads" },
    Row { name: "low rating rewatched: still never",
          edit: |_, f| { f.imdb_rating = Some(Fact::new(5.0, "radarr")); f.watch_count = Some(Fact::new(9, "history")) },
          tier: Tier::Never, download: false, reason: "IMDb 5 < 7" },
    Row { name: "a TV episode", edit: |p, f| { p.kind = ItemKind::Episode; f.imdb_rating = Some(Fact::new(9.5, "radarr")) },
          tier: Tier::Never, download: false, reason: "a TV episode: only movies download" },
    Row { name: "a trailer", edit: |p, _| p.kind = ItemKind::Other,
          tier: Tier::Never, download: false, reason: "not a movie" },
    Row { name: "89.9 % is under 90", edit: |p, f| { p.percent = 89.9; f.imdb_rating = Some(Fact::new(9.0, "radarr")) },
          tier: Tier::Never, download: false, reason: "played 89.9 % < 90 % (min_watched_percent; jellyfin)" },
    Row { name: "a 1-second play", edit: |p, _| p.percent = 0.02,
          tier: Tier::Never, download: false, reason: "played 0.02 % < 90 %" },
    Row { name: "a NaN percent", edit: |p, _| p.percent = f64::NAN,
          tier: Tier::Never, download: false, reason: "played NaN %" },
    Row { name: "exactly 90 % counts", edit: |p, f| { p.percent = 90.0; f.watch_count = Some(Fact::new(2, "history")) },
          tier: Tier::AfterRewatch, download: true, reason: "watched 2 times" },
    Row { name: "a guest by network", edit: |p, f| { p.address = Some("203.0.113.9".parse().unwrap()); f.imdb_rating = Some(Fact::new(9.0, "radarr")) },
          tier: Tier::Never, download: false, reason: "guest: 203.0.113.9 is outside home_networks" },
    Row { name: "at home by network", edit: |p, _| p.address = Some("192.168.7.7".parse().unwrap()),
          tier: Tier::AfterRewatch, download: false, reason: "watched 1 time" },
    Row { name: "a guest by name", edit: |p, f| { p.user = "mallory".into(); f.imdb_rating = Some(Fact::new(9.0, "radarr")) },
          tier: Tier::Never, download: false, reason: "guest: \"mallory\" is not in tracked_users" },
    Row { name: "a guest by never", edit: |p, f| { p.user = "KID".into(); f.imdb_rating = Some(Fact::new(9.0, "radarr")) },
          tier: Tier::Never, download: false, reason: "guest: downloads.users.kid.never is set" },
    // -- instant, each rule alone --
    Row { name: "IMDb at instant", edit: |_, f| f.imdb_rating = Some(Fact::new(8.5, "radarr")),
          tier: Tier::Instant, download: true, reason: "IMDb 8.5 ≥ 8.5 (radarr)" },
    Row { name: "keyword in the title", edit: |_, f| f.title = Some(Fact::new("Heat (Director’s Cut)".into(), "radarr")),
          tier: Tier::Instant, download: true, reason: "title \"Heat (Director’s Cut)\" contains \"director's cut\" (radarr)" },
    Row { name: "keyword in the play's title", edit: |p, f| { f.title = None; p.title = "Heat REMASTERED".into() },
          tier: Tier::Instant, download: true, reason: "title \"Heat REMASTERED\" contains \"remastered\" (jellyfin)" },
    Row { name: "keyword in the edition", edit: |_, f| f.edition = Some(Fact::new("Criterion Collection".into(), "radarr")),
          tier: Tier::Instant, download: true, reason: "edition \"Criterion Collection\" contains \"criterion\" (radarr)" },
    Row { name: "old and foreign", edit: |_, f| { f.year = Some(Fact::new(1957, "radarr")); f.original_language = Some(Fact::new("Swedish".into(), "radarr")) },
          tier: Tier::Instant, download: true, reason: "released 1957 < 1990 (radarr) in Swedish (radarr): an old foreign film" },
    Row { name: "old but English", edit: |_, f| { f.year = Some(Fact::new(1957, "radarr")) },
          tier: Tier::AfterRewatch, download: false, reason: "IMDb 7.5" },
    Row { name: "foreign but 1990", edit: |_, f| { f.year = Some(Fact::new(1990, "radarr")); f.original_language = Some(Fact::new("French".into(), "radarr")) },
          tier: Tier::AfterRewatch, download: false, reason: "IMDb 7.5" },
    Row { name: "old, language unknown: not guessed", edit: |_, f| { f.year = Some(Fact::new(1957, "radarr")); f.original_language = None },
          tier: Tier::AfterRewatch, download: false, reason: "IMDb 7.5" },
    Row { name: "old by the play's year", edit: |p, f| { f.year = None; p.year = Some(1960); f.original_language = Some(Fact::new("ja".into(), "jellyfin")) },
          tier: Tier::Instant, download: true, reason: "released 1960 < 1990 (jellyfin) in ja (jellyfin)" },
    Row { name: "hidden gem", edit: |_, f| { f.imdb_rating = Some(Fact::new(8.0, "radarr")); f.imdb_votes = Some(Fact::new(49_999, "radarr")) },
          tier: Tier::Instant, download: true, reason: "hidden gem: IMDb 8 ≥ 8 with 49999 votes < 50000 (radarr)" },
    Row { name: "a gem with 50,000 votes is not hidden", edit: |_, f| { f.imdb_rating = Some(Fact::new(8.0, "radarr")); f.imdb_votes = Some(Fact::new(50_000, "radarr")) },
          tier: Tier::AfterRewatch, download: false, reason: "IMDb 8 is within" },
    Row { name: "few votes but 7.9", edit: |_, f| { f.imdb_rating = Some(Fact::new(7.9, "radarr")); f.imdb_votes = Some(Fact::new(100, "radarr")) },
          tier: Tier::AfterRewatch, download: false, reason: "IMDb 7.9 is within" },
    Row { name: "votes unknown: no gem", edit: |_, f| { f.imdb_rating = Some(Fact::new(8.2, "radarr")); f.imdb_votes = None },
          tier: Tier::AfterRewatch, download: false, reason: "IMDb 8.2 is within" },
    Row { name: "rare genre", edit: |_, f| f.genres = Some(Fact::new(vec!["Drama".into(), "silent".into()], "radarr")),
          tier: Tier::Instant, download: true, reason: "rare genre silent (radarr)" },
    Row { name: "rare genre from the webhook", edit: |p, f| { f.genres = None; p.genres = vec!["World Cinema".into()] },
          tier: Tier::Instant, download: true, reason: "rare genre World Cinema (jellyfin)" },
    Row { name: "favourite tag", edit: |_, f| f.favourite = Some(Fact::new(true, "radarr")),
          tier: Tier::Instant, download: true, reason: "marked a favourite with the favourite tag (radarr)" },
    Row { name: "instant genre", edit: |_, f| f.genres = Some(Fact::new(vec!["Animation".into()], "jellyfin")),
          tier: Tier::Instant, download: true, reason: "genre Animation (jellyfin)" },
    Row { name: "few seeders", edit: |_, f| f.seeders = Some(Fact::new(4, "prowlarr")),
          tier: Tier::Instant, download: true, reason: "rare: 4 seeders < 5 (prowlarr)" },
    Row { name: "5 seeders is not rare", edit: |_, f| f.seeders = Some(Fact::new(5, "prowlarr")),
          tier: Tier::AfterRewatch, download: false, reason: "IMDb 7.5" },
    Row { name: "an instant rule beats a low rating", edit: |_, f| { f.imdb_rating = Some(Fact::new(5.1, "radarr")); f.genres = Some(Fact::new(vec!["Family".into()], "radarr")) },
          tier: Tier::Instant, download: true, reason: "genre Family (radarr)" },
    // -- per-user thresholds (Bob: 3 plays, instant 9.0, floor 6.0, 80 %) --
    Row { name: "Bob: 8.7 is not instant for him", edit: |p, f| { p.user = "bob".into(); f.imdb_rating = Some(Fact::new(8.7, "radarr")); f.watch_count = Some(Fact::new(2, "history")) },
          tier: Tier::AfterRewatch, download: false, reason: "watched 2 times in 90 days < 3 (history)" },
    Row { name: "Bob: three plays", edit: |p, f| { p.user = "bob".into(); f.watch_count = Some(Fact::new(3, "history")) },
          tier: Tier::AfterRewatch, download: true, reason: "watched 3 times in 90 days ≥ 3 (history)" },
    Row { name: "Bob: 6.5 is above his floor", edit: |p, f| { p.user = "Bob".into(); f.imdb_rating = Some(Fact::new(6.5, "radarr")) },
          tier: Tier::AfterRewatch, download: false, reason: "IMDb 6.5 is within 6–9 (radarr)" },
    Row { name: "Bob: 9.0 is instant", edit: |p, f| { p.user = "bob".into(); f.imdb_rating = Some(Fact::new(9.0, "radarr")) },
          tier: Tier::Instant, download: true, reason: "IMDb 9 ≥ 9 (radarr)" },
    Row { name: "Bob: 85 % counts for him", edit: |p, f| { p.user = "bob".into(); p.percent = 85.0; f.watch_count = Some(Fact::new(3, "history")) },
          tier: Tier::AfterRewatch, download: true, reason: "watched 3 times" },
    Row { name: "Bob: 79 % does not", edit: |p, _| { p.user = "bob".into(); p.percent = 79.0 },
          tier: Tier::Never, download: false, reason: "played 79 % < 80 %" },
];

#[test]
fn the_table_of_tiers_and_thresholds() {
    let s = settings();
    let mut failures = Vec::new();
    for row in ROWS {
        let (mut p, mut f) = (play(), facts());
        (row.edit)(&mut p, &mut f);
        let w = who(&s, &p.user, p.address);
        let t = thresholds(&s, &p.user);
        let v = decide(&p, &w, &f, &t);
        let ok = v.tier == row.tier
            && v.download == row.download
            && v.reasons.iter().any(|r| r.contains(row.reason));
        if !ok {
            failures.push(format!(
                "{}: got {:?} download={} {:?}; wanted {:?} download={} with {:?}",
                row.name, v.tier, v.download, v.reasons, row.tier, row.download, row.reason
            ));
        }
        // `counts` agrees with the verdict's never-for-not-counting.
        if counts(&p, &w, &t).is_err() {
            assert_eq!((v.tier, v.download), (Tier::Never, false), "{}", row.name);
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_instant_reason_is_given_not_only_the_first() {
    let s = settings();
    let (p, mut f) = (play(), facts());
    f.imdb_rating = Some(Fact::new(8.9, "radarr"));
    f.imdb_votes = Some(Fact::new(1200, "radarr"));
    f.favourite = Some(Fact::new(true, "radarr"));
    f.seeders = Some(Fact::new(0, "prowlarr"));
    let v = decide(&p, &Who::Tracked, &f, &thresholds(&s, "ann"));
    assert_eq!(v.tier, Tier::Instant);
    assert_eq!(
        v.reasons,
        [
            "IMDb 8.9 ≥ 8.5 (radarr)",
            "hidden gem: IMDb 8.9 ≥ 8 with 1200 votes < 50000 (radarr)",
            "marked a favourite with the favourite tag (radarr)",
            "rare: 0 seeders < 5 (prowlarr)",
        ]
    );
}

#[test]
fn the_seeder_rule_is_off_at_zero_and_unknown_seeders_are_not_rare() {
    let mut s = settings();
    let (p, mut f) = (play(), facts());
    f.seeders = None;
    let v = decide(&p, &Who::Tracked, &f, &thresholds(&s, "ann"));
    assert_eq!(v.tier, Tier::AfterRewatch);
    s.min_seeders_rare = 0;
    f.seeders = Some(Fact::new(0, "prowlarr"));
    let v = decide(&p, &Who::Tracked, &f, &thresholds(&s, "ann"));
    assert_eq!(v.tier, Tier::AfterRewatch, "{:?}", v.reasons);
}

#[test]
fn editable_lists_are_honoured() {
    let mut s = settings();
    s.keywords = vec!["4K Restoration".into()];
    s.rare_genres.clear();
    s.instant_genres = vec!["Documentary".into()];
    let (p, mut f) = (play(), facts());
    f.title = Some(Fact::new("Heat 4k restoration".into(), "radarr"));
    let v = decide(&p, &Who::Tracked, &f, &thresholds(&s, "ann"));
    assert!(
        v.reasons[0].contains("contains \"4K Restoration\""),
        "{v:?}"
    );
    f.title = Some(Fact::new("Heat Remastered".into(), "radarr"));
    f.genres = Some(Fact::new(
        vec!["Silent".into(), "documentary".into()],
        "radarr",
    ));
    let v = decide(&p, &Who::Tracked, &f, &thresholds(&s, "ann"));
    assert_eq!(v.reasons, ["genre documentary (radarr)"]);
    s.old_foreign_before_year = 0;
    f.genres = None;
    f.year = Some(Fact::new(1920, "radarr"));
    f.original_language = Some(Fact::new("German".into(), "radarr"));
    let v = decide(&p, &Who::Tracked, &f, &thresholds(&s, "ann"));
    assert_eq!(
        v.tier,
        Tier::AfterRewatch,
        "0 turns the old-foreign rule off"
    );
}

#[test]
fn numbers_are_written_plainly() {
    assert_eq!(num(8.5), "8.5");
    assert_eq!(num(7.0), "7");
    assert_eq!(num(90.0), "90");
    assert_eq!(num(8.49), "8.49");
    assert_eq!(num(0.02), "0.02");
}
