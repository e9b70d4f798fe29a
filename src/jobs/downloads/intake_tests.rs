//! Intake: the Jellyfin plugin's bodies in their real and older shapes, Plex webhooks, and
//! junk that must never panic.

use super::*;
use serde_json::json;

const NOW: u64 = 1_800_000_000_000;

fn fixture(path: &str) -> Value {
    let p = format!("{}/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn jellyfin() -> Value {
    fixture("jellyfin-payloads/playbackstop-movie.json")
}

fn plex_stop() -> Value {
    fixture("plex-payloads/plex-webhook-movie-media-stop.json")
}

#[test]
fn a_jellyfin_playbackstop_is_a_play_with_every_field() {
    let p = from_jellyfin(&jellyfin(), NOW).unwrap().unwrap();
    assert_eq!(p.source, PlaySource::Jellyfin);
    assert_eq!(p.user, "ann");
    assert_eq!(p.kind, ItemKind::Movie);
    assert_eq!(p.title, "The Seventh Seal");
    assert_eq!(p.year, Some(1957));
    assert_eq!(p.item_id, "a3f1c2b4d5e6478f9a0b1c2d3e4f5a6b");
    assert_eq!(
        p.ids,
        Ids {
            imdb: Some("tt0050976".into()),
            tmdb: Some(490),
            tvdb: None
        }
    );
    // 55,872,000,000 of 57,600,000,000 ticks.
    assert!((p.percent - 97.0).abs() < 1e-9, "{}", p.percent);
    assert_eq!(p.genres, ["Drama", "Fantasy"]);
    assert_eq!(p.client.as_deref(), Some("Jellyfin Web (Firefox)"));
    assert_eq!(p.address, None, "no RemoteEndPoint on playback events");
    // 2026-11-28T20:47:12.555Z
    assert_eq!(p.at_ms, 1_795_898_832_555);
}

#[test]
fn the_older_username_field_and_numbers_as_strings_are_read() {
    let mut b = jellyfin();
    let o = b.as_object_mut().unwrap();
    o.remove("NotificationUsername");
    o.insert("Username".into(), json!("Bob"));
    o.insert("Year".into(), json!("1957"));
    o.insert("RunTimeTicks".into(), json!("57600000000"));
    o.insert("PlaybackPositionTicks".into(), json!("28800000000"));
    o.insert("Provider_tmdb".into(), json!(490));
    o.insert("PlayedToCompletion".into(), json!("False"));
    let p = from_jellyfin(&b, NOW).unwrap().unwrap();
    assert_eq!(p.user, "Bob");
    assert_eq!(p.year, Some(1957));
    assert_eq!(p.percent, 50.0);
    assert_eq!(p.ids.tmdb, Some(490));
    // A blank new name falls back to the old one too.
    b["NotificationUsername"] = json!("  ");
    assert_eq!(from_jellyfin(&b, NOW).unwrap().unwrap().user, "Bob");
}

#[test]
fn runtime_ticks_zero_or_absent_and_played_to_completion() {
    let mut b = jellyfin();
    b["RunTimeTicks"] = json!(0);
    assert_eq!(from_jellyfin(&b, NOW).unwrap().unwrap().percent, 0.0);
    b.as_object_mut().unwrap().remove("RunTimeTicks");
    assert_eq!(from_jellyfin(&b, NOW).unwrap().unwrap().percent, 0.0);
    b["PlayedToCompletion"] = json!(true);
    assert_eq!(from_jellyfin(&b, NOW).unwrap().unwrap().percent, 100.0);
    // A position past the end is 100, not 120.
    let mut b = jellyfin();
    b["PlaybackPositionTicks"] = json!(69_120_000_000u64);
    assert_eq!(from_jellyfin(&b, NOW).unwrap().unwrap().percent, 100.0);
}

#[test]
fn episodes_other_videos_audio_and_other_notifications() {
    let mut b = jellyfin();
    b["ItemType"] = json!("Episode");
    b["SeriesName"] = json!("The Expanse");
    assert_eq!(
        from_jellyfin(&b, NOW).unwrap().unwrap().kind,
        ItemKind::Episode
    );
    for other in ["MusicVideo", "Trailer", "Video", "TvChannel"] {
        b["ItemType"] = json!(other);
        assert_eq!(
            from_jellyfin(&b, NOW).unwrap().unwrap().kind,
            ItemKind::Other,
            "{other}"
        );
    }
    for audio in ["Audio", "AudioBook", "Photo"] {
        b["ItemType"] = json!(audio);
        assert_eq!(from_jellyfin(&b, NOW), Ok(None), "{audio}");
    }
    let mut b = jellyfin();
    for n in [
        "PlaybackStart",
        "PlaybackProgress",
        "ItemAdded",
        "UserDataSaved",
    ] {
        b["NotificationType"] = json!(n);
        assert_eq!(from_jellyfin(&b, NOW), Ok(None), "{n}");
    }
}

#[test]
fn genres_as_an_array_ids_and_addresses_are_read_leniently() {
    let mut b = jellyfin();
    b["Genres"] = json!(["Animation", " Family ", "", "animation", 7]);
    b["Provider_imdb"] = json!("TT0050976");
    b["Provider_tvdb"] = json!("not-a-number");
    b["RemoteEndPoint"] = json!("[2001:db8::5]:51234");
    let p = from_jellyfin(&b, NOW).unwrap().unwrap();
    assert_eq!(p.genres, ["Animation", "Family"]);
    assert_eq!(p.ids.imdb.as_deref(), Some("tt0050976"));
    assert_eq!(p.ids.tvdb, None, "an unreadable id is no id, not an error");
    assert_eq!(p.address, Some("2001:db8::5".parse().unwrap()));
    b["RemoteEndPoint"] = json!("203.0.113.9");
    b["Provider_imdb"] = json!("nm0000005");
    let p = from_jellyfin(&b, NOW).unwrap().unwrap();
    assert_eq!(p.address, Some("203.0.113.9".parse().unwrap()));
    assert_eq!(p.ids.imdb, None);
}

#[test]
fn a_timestamp_in_the_future_or_unreadable_is_now() {
    let mut b = jellyfin();
    b["UtcTimestamp"] = json!("2099-01-01T00:00:00Z");
    assert_eq!(from_jellyfin(&b, NOW).unwrap().unwrap().at_ms, NOW);
    for t in [json!("yesterday"), json!(17), json!("2026-13-01T00:00:00Z")] {
        b["UtcTimestamp"] = t.clone();
        assert_eq!(from_jellyfin(&b, NOW).unwrap().unwrap().at_ms, NOW, "{t}");
    }
    assert_eq!(utc_ms("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(utc_ms("2000-03-01T00:00:01.5Z"), Some(951_868_801_500));
    assert_eq!(utc_ms("2024-02-29T23:59:59"), Some(1_709_251_199_000));
}

#[test]
fn unusable_playbackstops_are_errors_naming_the_field() {
    let cases: Vec<(&str, Value, &str)> = vec![
        ("", json!("PlaybackStop"), "not a JSON object"),
        ("", json!({"Name": "x"}), "no \"NotificationType\""),
        (
            "NotificationType",
            json!(["PlaybackStop"]),
            "NotificationType is not a string",
        ),
        ("ItemType", Value::Null, "ItemType is missing"),
        ("ItemType", json!({}), "ItemType is not a string"),
        (
            "NotificationUsername",
            Value::Null,
            "NotificationUsername (or Username) is missing",
        ),
        ("ItemId", json!(""), "ItemId is missing"),
        ("ItemId", json!("f".repeat(500)), "ItemId is too long"),
        ("Name", json!("n".repeat(5000)), "Name is too long"),
        ("Year", json!("nineteen"), "Year is not a number"),
        ("RunTimeTicks", json!(-5), "RunTimeTicks is not a number"),
        (
            "PlaybackPositionTicks",
            json!({"a": 1}),
            "PlaybackPositionTicks is not a number",
        ),
        (
            "PlayedToCompletion",
            json!("maybe"),
            "PlayedToCompletion is not true or false",
        ),
        ("Genres", json!({"a": 1}), "Genres is not a string"),
        ("Genres", json!("g,".repeat(100_000)), "Genres is too long"),
        ("Provider_imdb", json!([1]), "Provider_imdb is not a string"),
    ];
    for (field, value, want) in cases {
        let body = if field.is_empty() {
            value
        } else {
            let mut b = jellyfin();
            b[field] = value;
            b
        };
        let e = from_jellyfin(&body, NOW).unwrap_err();
        assert!(e.contains(want), "{field}: {e} (wanted {want})");
    }
}

#[test]
fn hostile_sizes_are_capped() {
    let mut b = jellyfin();
    b["Genres"] = json!((0..500)
        .map(|i| format!("g{i}"))
        .collect::<Vec<_>>()
        .join(","));
    b["ClientName"] = json!("c".repeat(100_000));
    let e = from_jellyfin(&b, NOW).unwrap_err();
    assert!(e.contains("ClientName is too long"), "{e}");
    b["ClientName"] = json!("Web");
    let p = from_jellyfin(&b, NOW).unwrap().unwrap();
    assert_eq!(p.genres.len(), MAX_GENRES);
    b["Genres"] = json!(vec!["x".repeat(10_000); 3]);
    assert!(from_jellyfin(&b, NOW).unwrap().unwrap().genres.is_empty());
}

#[test]
fn a_plex_media_stop_is_a_play_with_percent_ids_and_genres() {
    let mut payload = plex_stop();
    payload["Metadata"]["Genre"] = json!([{"tag": "Animation"}, {"tag": "Family"}]);
    let p = from_plex_webhook(&payload, NOW).unwrap().unwrap();
    assert_eq!(p.source, PlaySource::PlexWebhook);
    assert_eq!((p.user.as_str(), p.kind), ("elan", ItemKind::Movie));
    assert_eq!((p.title.as_str(), p.year), ("Frozen", Some(2013)));
    assert_eq!(p.item_id, "13194");
    assert_eq!(
        p.ids,
        Ids {
            imdb: Some("tt2294629".into()),
            tmdb: Some(109_445),
            tvdb: Some(89)
        }
    );
    // viewOffset 5,826,000 of 6,133,055 ms.
    assert!((p.percent - 94.993).abs() < 0.01, "{}", p.percent);
    assert_eq!(p.genres, ["Animation", "Family"]);
    assert_eq!(p.client.as_deref(), Some("Plex Web (Safari)"));
    assert_eq!(
        p.address, None,
        "a local player's address is not in the payload"
    );
    assert_eq!(p.at_ms, NOW);
    payload["Player"]["local"] = json!(false);
    let p = from_plex_webhook(&payload, NOW).unwrap().unwrap();
    assert_eq!(p.address, Some("200.200.200.200".parse().unwrap()));
}

#[test]
fn a_plex_scrobble_is_at_least_90_and_other_events_are_none() {
    let mut payload = plex_stop();
    payload["event"] = json!("media.scrobble");
    payload["Metadata"]["viewOffset"] = json!(1000);
    assert_eq!(
        from_plex_webhook(&payload, NOW).unwrap().unwrap().percent,
        PLEX_SCROBBLE_PERCENT
    );
    payload["Metadata"]
        .as_object_mut()
        .unwrap()
        .remove("duration");
    assert_eq!(
        from_plex_webhook(&payload, NOW).unwrap().unwrap().percent,
        PLEX_SCROBBLE_PERCENT
    );
    for ev in [
        "media.play",
        "media.pause",
        "media.resume",
        "media.rate",
        "library.new",
    ] {
        payload["event"] = json!(ev);
        assert_eq!(from_plex_webhook(&payload, NOW), Ok(None), "{ev}");
    }
    // Music (the real example), an episode, a trailer.
    let music = fixture("plex-payloads/plex-webhook-media-play.json");
    let mut music_stop = music.clone();
    music_stop["event"] = json!("media.stop");
    assert_eq!(from_plex_webhook(&music_stop, NOW), Ok(None));
    let mut ep = fixture("plex-payloads/plex-webhook-episode-media-scrobble.json");
    assert_eq!(
        from_plex_webhook(&ep, NOW).unwrap().unwrap().kind,
        ItemKind::Episode
    );
    ep["event"] = json!("media.stop");
    assert_eq!(
        from_plex_webhook(&ep, NOW).unwrap().unwrap().kind,
        ItemKind::Episode
    );
    let mut trailer = fixture("plex-payloads/plex-webhook-trailer-media-play.json");
    trailer["event"] = json!("media.stop");
    if let Some(p) = from_plex_webhook(&trailer, NOW).unwrap() {
        assert_eq!(p.kind, ItemKind::Other);
    }
}

#[test]
fn unusable_plex_stops_are_errors_naming_the_field() {
    assert!(from_plex_webhook(&json!([1]), NOW)
        .unwrap_err()
        .contains("not a JSON object"));
    let mut p = plex_stop();
    p.as_object_mut().unwrap().remove("Account");
    assert!(from_plex_webhook(&p, NOW)
        .unwrap_err()
        .contains("Account.title is missing"));
    let mut p = plex_stop();
    p["Metadata"]["viewOffset"] = json!("soon");
    assert!(from_plex_webhook(&p, NOW)
        .unwrap_err()
        .contains("Metadata.viewOffset is not a number"));
}

/// A small deterministic generator (xorshift), so the junk is the same on every run.
struct Junk(u64);

impl Junk {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn value(&mut self, depth: u32) -> Value {
        match self.next() % if depth > 2 { 6 } else { 8 } {
            0 => Value::Null,
            1 => json!(self.next().is_multiple_of(2)),
            2 => json!(self.next() as i64),
            3 => json!((self.next() as f64) / 3.0 - 1e18),
            4 => json!(
                ["PlaybackStop", "Movie", "media.stop", "tt1", "", "1,2"]
                    [(self.next() % 6) as usize]
            ),
            5 => json!("ü".repeat((self.next() % 3000) as usize)),
            6 => Value::Array(
                (0..self.next() % 4)
                    .map(|_| self.value(depth + 1))
                    .collect(),
            ),
            _ => {
                let keys = [
                    "NotificationType",
                    "ItemType",
                    "Name",
                    "ItemId",
                    "Year",
                    "RunTimeTicks",
                    "PlaybackPositionTicks",
                    "PlayedToCompletion",
                    "Genres",
                    "Genre",
                    "tag",
                    "UtcTimestamp",
                    "event",
                    "Metadata",
                    "Account",
                    "title",
                    "Player",
                    "local",
                    "publicAddress",
                    "viewOffset",
                    "duration",
                    "ratingKey",
                    "type",
                ];
                let mut o = serde_json::Map::new();
                for _ in 0..self.next() % 8 {
                    let k = keys[(self.next() % keys.len() as u64) as usize];
                    o.insert(k.into(), self.value(depth + 1));
                }
                Value::Object(o)
            }
        }
    }
}

/// Junk in every field, on real bodies and from nothing: an answer (Ok or Err) every time,
/// never a panic, and a play's percent always within 0–100.
#[test]
fn junk_never_panics() {
    let mut j = Junk(0x9e37_79b9_7f4a_7c15);
    let bases = [jellyfin(), plex_stop(), json!({})];
    let fields = [
        "NotificationType",
        "ItemType",
        "NotificationUsername",
        "Username",
        "ItemId",
        "Name",
        "Year",
        "RunTimeTicks",
        "PlaybackPositionTicks",
        "PlayedToCompletion",
        "Genres",
        "Provider_imdb",
        "Provider_tmdb",
        "RemoteEndPoint",
        "UtcTimestamp",
        "event",
        "Metadata",
        "Account",
        "Player",
    ];
    let mut plays = 0;
    for i in 0..20_000 {
        let mut body = bases[i % bases.len()].clone();
        if i % 7 == 6 {
            body = j.value(0);
        } else {
            for _ in 0..1 + j.next() % 3 {
                let f = fields[(j.next() % fields.len() as u64) as usize];
                body[f] = j.value(1);
            }
            if j.next().is_multiple_of(4)
                && (body["Metadata"].is_object() || body["Metadata"].is_null())
            {
                body["Metadata"]["viewOffset"] = j.value(2);
                body["Metadata"]["Genre"] = j.value(2);
            }
        }
        for r in [from_jellyfin(&body, NOW), from_plex_webhook(&body, NOW)] {
            if let Ok(Some(p)) = r {
                assert!((0.0..=100.0).contains(&p.percent), "{body}");
                assert!(p.user.len() <= MAX_TEXT && p.item_id.len() <= MAX_ID);
                plays += 1;
            }
        }
    }
    assert!(
        plays > 1000,
        "the junk should leave many bodies usable: {plays}"
    );
}

/// The plugin posting the same stop twice (a retry, two destinations) is one play in our
/// history: the play's time is the plugin's, not the arrival's.
#[test]
fn the_same_jellyfin_stop_posted_twice_is_recorded_once() {
    let s = crate::store::Store::in_memory().unwrap();
    let first = from_jellyfin(&jellyfin(), NOW).unwrap().unwrap();
    let again = from_jellyfin(&jellyfin(), NOW + 4_000).unwrap().unwrap();
    assert_eq!(first, again);
    assert!(s.record_play(&first).unwrap());
    assert!(!s.record_play(&again).unwrap());
    let count = s
        .watch_count("ANN", &first.ids, &first.title, first.year, first.at_ms)
        .unwrap();
    assert_eq!(count, 1);
}
