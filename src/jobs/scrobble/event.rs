//! Both sources of playback, one event model: a websocket `PlaySessionStateNotification`
//! (already an [`Event::Playing`] on the daemon's bus) and a Plex webhook payload
//! (`media.play|pause|resume|stop|scrobble`, apis.md §1.8) become a [`PlaybackEvent`].
//!
//! Lenient on shapes, as Plex is inconsistent (ids as numbers or strings, fields absent), and
//! strict on size: a webhook comes from the network, so a field too long or of a type no Plex
//! sends is an error naming the field, never a panic and never a guess. What is not playback
//! of a video (music, photos, live TV, `library.new`, `media.rate`…) is `Ok(None)`.

use serde_json::Value;

use super::{ItemFacts, PlayState, PlaybackEvent, Source};
use crate::plex::events::Event;
use crate::plex::json::{arr, n, s};

/// Longest identifier we accept (rating keys, session keys, uuids). Plex's are ≤ 40 chars.
const MAX_ID: usize = 128;
/// Longest free text we keep (titles, user names, GUIDs).
const MAX_TEXT: usize = 1024;
/// Most GUIDs kept per item (Plex sends ≤ 4).
const MAX_GUIDS: usize = 32;
/// The share of the item Plex has played when it sends `media.scrobble` (apis.md §1.8).
pub const WATCHED_HINT_PERCENT: f64 = 90.0;

/// A websocket playback notification as a [`PlaybackEvent`] (no user yet: the caller resolves
/// it from the session tracker). `None` for other events, the `error` state, and items that
/// are not library items (live TV's rating key is a gracenote URI, apis.md §1.7).
pub fn from_websocket(e: &Event, now_ms: u64) -> Option<PlaybackEvent> {
    let Event::Playing {
        session_key,
        client,
        rating_key,
        state,
        view_offset_ms,
        ..
    } = e
    else {
        return None;
    };
    let state = match state.as_str() {
        "playing" => PlayState::Playing,
        "paused" => PlayState::Paused,
        "buffering" => PlayState::Buffering,
        "stopped" => PlayState::Stopped,
        _ => return None,
    };
    let rating_key = rating_key.as_deref().filter(|k| library_key(k))?;
    if session_key.is_empty() || session_key.len() > MAX_ID {
        return None;
    }
    Some(PlaybackEvent {
        source: Source::Websocket,
        at_ms: now_ms,
        state,
        session_key: Some(session_key.clone()),
        client_id: client
            .as_ref()
            .filter(|c| !c.is_empty() && c.len() <= MAX_ID)
            .cloned(),
        rating_key: rating_key.to_string(),
        view_offset_ms: view_offset_ms.filter(|o| *o >= 0),
        user: None,
        server_uuid: None,
        watched_hint: false,
        item: None,
    })
}

/// A webhook payload (the JSON of the multipart `payload` part, or the raw body) as a
/// [`PlaybackEvent`]. `Ok(None)`: not playback of a video (other events, music, photos, live
/// TV); `Err`: a playback event whose payload is unusable, the message naming the field.
pub fn from_webhook(payload: &Value, now_ms: u64) -> Result<Option<PlaybackEvent>, String> {
    if !payload.is_object() {
        return Err("webhook payload is not a JSON object".into());
    }
    let event = match payload.get("event") {
        Some(Value::String(e)) if e.len() <= MAX_ID => e.as_str(),
        Some(Value::String(_)) => return Err("webhook \"event\" is too long".into()),
        Some(_) => return Err("webhook \"event\" is not a string".into()),
        None => return Err("webhook payload has no \"event\"".into()),
    };
    let (state, watched_hint) = match event {
        "media.play" | "media.resume" => (PlayState::Playing, false),
        "media.scrobble" => (PlayState::Playing, true),
        "media.pause" => (PlayState::Paused, false),
        "media.stop" => (PlayState::Stopped, false),
        _ => return Ok(None),
    };
    let meta = match payload.get("Metadata") {
        Some(m @ Value::Object(_)) => m,
        Some(_) => return Err(format!("webhook {event}: \"Metadata\" is not an object")),
        None => return Err(format!("webhook {event} has no \"Metadata\"")),
    };
    let kind = text(meta, "type", MAX_ID).map_err(|e| format!("webhook {event}: Metadata.{e}"))?;
    if let Some(k) = &kind {
        if !matches!(k.as_str(), "movie" | "episode" | "clip") {
            return Ok(None); // music, photos, …
        }
    }
    let rating_key = text(meta, "ratingKey", MAX_ID)
        .map_err(|e| format!("webhook {event}: Metadata.{e}"))?
        .ok_or_else(|| format!("webhook {event}: Metadata.ratingKey is missing"))?;
    if !library_key(&rating_key) {
        return Ok(None); // live TV and other non-library items
    }
    let field = |obj: &str, key: &str| -> Result<Option<String>, String> {
        match payload.get(obj) {
            None | Some(Value::Null) => Ok(None),
            Some(o @ Value::Object(_)) => {
                text(o, key, MAX_TEXT).map_err(|e| format!("webhook {event}: {obj}.{e}"))
            }
            Some(_) => Err(format!("webhook {event}: \"{obj}\" is not an object")),
        }
    };
    let user = field("Account", "title")?.filter(|u| !u.trim().is_empty());
    let server_uuid = field("Server", "uuid")?.filter(|u| !u.is_empty());
    let client_id = field("Player", "uuid")?.filter(|u| !u.is_empty());
    let view_offset_ms = match meta.get("viewOffset") {
        None | Some(Value::Null) => None,
        Some(_) => Some(
            n(meta, "viewOffset")
                .filter(|o| *o >= 0)
                .ok_or_else(|| format!("webhook {event}: Metadata.viewOffset is not a number"))?,
        ),
    };
    Ok(Some(PlaybackEvent {
        source: Source::Webhook,
        at_ms: now_ms,
        state,
        session_key: None,
        client_id,
        rating_key,
        view_offset_ms,
        user,
        server_uuid,
        watched_hint,
        item: Some(facts_from_metadata(meta)),
    }))
}

/// [`ItemFacts`] from a Plex metadata object (a webhook's `Metadata`, `/library/metadata`'s
/// `Metadata[0]`). Never fails: a field missing, mistyped or absurdly long is left out.
pub fn facts_from_metadata(m: &Value) -> ItemFacts {
    let kind = short(m, "type").unwrap_or_default();
    let episode = kind == "episode";
    let extra = kind == "clip"
        || kind == "trailer"
        || short(m, "subtype").is_some_and(|s| !s.is_empty())
        || m.get("extraType").is_some_and(|v| !v.is_null());
    ItemFacts {
        title: short(m, "title"),
        year: n(m, "year").and_then(|y| u32::try_from(y).ok()),
        section: short(m, "librarySectionID"),
        section_title: short(m, "librarySectionTitle"),
        extra,
        duration_ms: n(m, "duration").filter(|d| *d > 0),
        guids: guids(m, "guid", "Guid"),
        show_title: episode.then(|| short(m, "grandparentTitle")).flatten(),
        show_rating_key: episode.then(|| short(m, "grandparentRatingKey")).flatten(),
        show_guids: if episode {
            guids(m, "grandparentGuid", "grandparentGuids")
        } else {
            Vec::new()
        },
        season: episode
            .then(|| n(m, "parentIndex").and_then(|v| u32::try_from(v).ok()))
            .flatten(),
        episode: episode
            .then(|| n(m, "index").and_then(|v| u32::try_from(v).ok()))
            .flatten(),
        kind,
    }
}

/// A library rating key: digits (live TV's are URIs, apis.md §1.7).
fn library_key(k: &str) -> bool {
    !k.is_empty() && k.len() <= MAX_ID && k.bytes().all(|b| b.is_ascii_digit())
}

/// A string-or-number field within `max` bytes; `Err` names the field when it is another type
/// or too long.
fn text(v: &Value, key: &str, max: usize) -> Result<Option<String>, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(x)) if x.len() > max => Err(format!("{key} is too long")),
        Some(Value::String(_) | Value::Number(_)) => Ok(s(v, key)),
        Some(_) => Err(format!("{key} is not a string")),
    }
}

/// A string-or-number field kept only when of a sane length.
fn short(v: &Value, key: &str) -> Option<String> {
    s(v, key).filter(|x| x.len() <= MAX_TEXT)
}

/// Every GUID: the `single` string (or array, as some answers have it) and the `list`
/// array's `id`s, de-duplicated, in order.
fn guids(m: &Value, single: &str, list: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |g: Option<String>| {
        if let Some(g) = g.filter(|g| !g.is_empty() && g.len() <= MAX_TEXT) {
            if out.len() < MAX_GUIDS && !out.contains(&g) {
                out.push(g);
            }
        }
    };
    add(s(m, single));
    for e in arr(m, single)
        .iter()
        .chain(arr(m, list))
        .take(MAX_GUIDS * 4)
    {
        add(s(e, "id"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture(name: &str) -> Value {
        let p = format!(
            "{}/fixtures/plex-payloads/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
    }

    fn playing(state: &str, rk: Option<&str>) -> Event {
        Event::Playing {
            session_key: "21".into(),
            client: Some("bsa256dspr4svju3zq3ssndfx".into()),
            rating_key: rk.map(Into::into),
            state: state.into(),
            view_offset_ms: Some(60_000),
            transcode_session: None,
        }
    }

    #[test]
    fn websocket_states_map_and_buffering_is_not_a_pause() {
        for (st, want) in [
            ("playing", PlayState::Playing),
            ("paused", PlayState::Paused),
            ("buffering", PlayState::Buffering),
            ("stopped", PlayState::Stopped),
        ] {
            let e = from_websocket(&playing(st, Some("6263")), 7).unwrap();
            assert_eq!(e.state, want);
            assert_eq!(e.session_key.as_deref(), Some("21"));
            assert_eq!(e.client_id.as_deref(), Some("bsa256dspr4svju3zq3ssndfx"));
            assert_eq!(e.rating_key, "6263");
            assert_eq!(e.view_offset_ms, Some(60_000));
            assert_eq!(
                (e.at_ms, e.source, e.user.clone()),
                (7, Source::Websocket, None)
            );
        }
    }

    #[test]
    fn websocket_error_state_live_tv_and_other_events_are_not_playback() {
        assert_eq!(from_websocket(&playing("error", Some("6263")), 1), None);
        assert_eq!(from_websocket(&playing("playing", None), 1), None);
        let frame = std::fs::read_to_string(format!(
            "{}/fixtures/plex-payloads/plex-ws-livetv-buffering-with-transcode.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let events = crate::plex::events::parse(&frame);
        assert_eq!(events.len(), 1);
        assert_eq!(
            from_websocket(&events[0], 1),
            None,
            "live TV is not scrobbled"
        );
        let frame = std::fs::read_to_string(format!(
            "{}/fixtures/plex-payloads/plex-ws-playing-error.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        assert_eq!(
            from_websocket(&crate::plex::events::parse(&frame)[0], 1),
            None
        );
        let activity = Event::Activity {
            event: "ended".into(),
            kind: "library.update.section".into(),
        };
        assert_eq!(from_websocket(&activity, 1), None);
    }

    #[test]
    fn websocket_sequence_fixture_reads_as_one_session() {
        let text = std::fs::read_to_string(format!(
            "{}/fixtures/plex-payloads/plex-ws-playing-movie-sequence.jsonl",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let evs: Vec<PlaybackEvent> = text
            .lines()
            .flat_map(crate::plex::events::parse)
            .filter_map(|e| from_websocket(&e, 0))
            .collect();
        assert!(evs.len() >= 5, "{evs:?}");
        assert!(evs.iter().all(|e| e.session_key.as_deref() == Some("21")));
        assert_eq!(evs.first().unwrap().state, PlayState::Buffering);
        assert_eq!(evs.last().unwrap().state, PlayState::Stopped);
    }

    #[test]
    fn webhook_movie_stop_carries_user_server_player_and_facts() {
        let e = from_webhook(&fixture("plex-webhook-movie-media-stop.json"), 9)
            .unwrap()
            .unwrap();
        assert_eq!(e.source, Source::Webhook);
        assert_eq!(e.state, PlayState::Stopped);
        assert_eq!(e.user.as_deref(), Some("elan"));
        assert_eq!(
            e.server_uuid.as_deref(),
            Some("54664a3d8acc39983675640ec9ce00b70af9cc36")
        );
        assert_eq!(e.client_id.as_deref(), Some("r6yfkdnfggbh2bdnvkffwbms"));
        assert_eq!(e.session_key, None);
        assert_eq!(e.rating_key, "13194");
        assert_eq!(e.view_offset_ms, Some(5_826_000));
        assert!(!e.watched_hint);
        let f = e.item.unwrap();
        assert_eq!(f.kind, "movie");
        assert_eq!(f.title.as_deref(), Some("Frozen"));
        assert_eq!(f.year, Some(2013));
        assert_eq!(f.section.as_deref(), Some("1"));
        assert_eq!(f.section_title.as_deref(), Some("Movies"));
        assert_eq!(f.duration_ms, Some(6_133_055));
        assert!(!f.extra);
        assert_eq!(
            f.guids,
            [
                "plex://movie/5d776926ad5437001f7595eb",
                "imdb://tt2294629",
                "tmdb://109445",
                "tvdb://89"
            ]
        );
        assert_eq!((f.show_title, f.season, f.episode), (None, None, None));
    }

    #[test]
    fn webhook_episode_scrobble_is_a_watched_hint_with_show_facts() {
        let e = from_webhook(&fixture("plex-webhook-episode-media-scrobble.json"), 1)
            .unwrap()
            .unwrap();
        assert_eq!(e.state, PlayState::Playing);
        assert!(e.watched_hint);
        let f = e.item.unwrap();
        assert_eq!(f.kind, "episode");
        assert_eq!(f.show_title.as_deref(), Some("The Expanse"));
        assert_eq!(f.show_rating_key.as_deref(), Some("5170"));
        assert_eq!(f.show_guids, ["plex://show/5d9c086c02391c001f5893d7"]);
        assert_eq!((f.season, f.episode), (Some(2), Some(5)));
        assert_eq!(f.section.as_deref(), Some("2"));
        assert!(
            f.guids.contains(&"tvdb://5735373".to_string()),
            "{:?}",
            f.guids
        );
    }

    #[test]
    fn webhook_trailer_is_an_extra() {
        let e = from_webhook(&fixture("plex-webhook-trailer-media-play.json"), 1)
            .unwrap()
            .unwrap();
        assert!(e.item.unwrap().extra);
        for m in [
            json!({"type": "movie", "subtype": "trailer"}),
            json!({"type": "movie", "extraType": 1}),
            json!({"type": "clip"}),
        ] {
            assert!(facts_from_metadata(&m).extra, "{m}");
        }
        assert!(!facts_from_metadata(&json!({"type": "movie", "subtype": ""})).extra);
    }

    #[test]
    fn webhook_events_map_to_states() {
        let base = fixture("plex-webhook-movie-media-stop.json");
        for (ev, st, hint) in [
            ("media.play", PlayState::Playing, false),
            ("media.resume", PlayState::Playing, false),
            ("media.pause", PlayState::Paused, false),
            ("media.stop", PlayState::Stopped, false),
            ("media.scrobble", PlayState::Playing, true),
        ] {
            let mut p = base.clone();
            p["event"] = ev.into();
            let e = from_webhook(&p, 1).unwrap().unwrap();
            assert_eq!((e.state, e.watched_hint), (st, hint), "{ev}");
        }
    }

    #[test]
    fn webhooks_that_are_not_video_playback_are_none() {
        // The real example: a music track.
        assert_eq!(
            from_webhook(&fixture("plex-webhook-media-play.json"), 1),
            Ok(None)
        );
        let base = fixture("plex-webhook-movie-media-stop.json");
        for ev in [
            "media.rate",
            "library.new",
            "playback.started",
            "admin.database.backup",
        ] {
            let mut p = base.clone();
            p["event"] = ev.into();
            assert_eq!(from_webhook(&p, 1), Ok(None), "{ev}");
        }
        let mut photo = base.clone();
        photo["Metadata"]["type"] = "photo".into();
        assert_eq!(from_webhook(&photo, 1), Ok(None));
        let mut live = base;
        live["Metadata"]["ratingKey"] = "com.gracenote.onconnect://episode/EP01".into();
        assert_eq!(from_webhook(&live, 1), Ok(None));
    }

    #[test]
    fn lenient_shapes_numbers_as_strings_and_missing_fields() {
        let p = json!({
            "event": "media.pause",
            "Metadata": {"ratingKey": 42, "type": "movie", "year": "1999",
                         "duration": "5400000", "viewOffset": "1200", "librarySectionID": 3,
                         "guid": [{"id": "imdb://tt0133093"}]}
        });
        let e = from_webhook(&p, 1).unwrap().unwrap();
        assert_eq!(e.rating_key, "42");
        assert_eq!(e.view_offset_ms, Some(1200));
        assert_eq!((e.user, e.server_uuid, e.client_id), (None, None, None));
        let f = e.item.unwrap();
        assert_eq!((f.year, f.duration_ms), (Some(1999), Some(5_400_000)));
        assert_eq!(f.section.as_deref(), Some("3"));
        assert_eq!(f.guids, ["imdb://tt0133093"]);
        // Nothing at all: an empty kind, nothing else, no panic.
        assert_eq!(facts_from_metadata(&json!(null)), ItemFacts::default());
        assert_eq!(facts_from_metadata(&json!([1, 2])), ItemFacts::default());
    }

    #[test]
    fn hostile_webhooks_are_errors_naming_the_field() {
        let base = fixture("plex-webhook-movie-media-stop.json");
        let cases: Vec<(Value, &str)> = vec![
            (json!("media.play"), "not a JSON object"),
            (json!({"Metadata": {}}), "no \"event\""),
            (json!({"event": 7}), "\"event\" is not a string"),
            (
                json!({"event": "x".repeat(10_000)}),
                "\"event\" is too long",
            ),
            (json!({"event": "media.play"}), "no \"Metadata\""),
            (
                json!({"event": "media.play", "Metadata": []}),
                "\"Metadata\" is not an object",
            ),
            (
                json!({"event": "media.play", "Metadata": {"type": "movie"}}),
                "Metadata.ratingKey is missing",
            ),
            (
                json!({"event": "media.play", "Metadata": {"ratingKey": {"a": 1}}}),
                "Metadata.ratingKey is not a string",
            ),
            (
                json!({"event": "media.play", "Metadata": {"ratingKey": "9".repeat(5000)}}),
                "Metadata.ratingKey is too long",
            ),
            (
                json!({"event": "media.play", "Metadata": {"ratingKey": "1", "viewOffset": "soon"}}),
                "Metadata.viewOffset is not a number",
            ),
            (
                json!({"event": "media.play", "Metadata": {"ratingKey": "1", "type": ["movie"]}}),
                "Metadata.type is not a string",
            ),
        ];
        for (p, want) in cases {
            let e = from_webhook(&p, 1).unwrap_err();
            assert!(e.contains(want), "{e} (wanted {want})");
        }
        let mut p = base.clone();
        p["Account"]["title"] = "a".repeat(100_000).into();
        assert!(from_webhook(&p, 1)
            .unwrap_err()
            .contains("Account.title is too long"));
        let mut p = base.clone();
        p["Account"] = json!(["elan"]);
        assert!(from_webhook(&p, 1)
            .unwrap_err()
            .contains("\"Account\" is not an object"));
        let mut p = base;
        p["Server"]["uuid"] = json!(true);
        assert!(from_webhook(&p, 1)
            .unwrap_err()
            .contains("Server.uuid is not a string"));
    }

    #[test]
    fn huge_and_many_guids_are_bounded() {
        let many: Vec<Value> = (0..10_000)
            .map(|i| json!({"id": format!("tmdb://{i}")}))
            .collect();
        let f = facts_from_metadata(&json!({
            "type": "movie", "title": "t".repeat(1_000_000), "guid": "x".repeat(100_000), "Guid": many
        }));
        assert_eq!(f.title, None);
        assert_eq!(f.guids.len(), MAX_GUIDS);
        assert_eq!(f.guids[0], "tmdb://0");
    }
}
