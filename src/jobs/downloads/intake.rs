//! Webhook bodies → [`Play`]: Jellyfin's webhook plugin (`PlaybackStop` with "Send All
//! Properties") and Plex's webhooks (`media.stop`, `media.scrobble`).
//!
//! Both come from the network, so the rules are those of the scrobbler's `event.rs`: lenient
//! on shapes (numbers as strings, the plugin's older `Username`, `Genres` as one comma-joined
//! string or an array, `RunTimeTicks` 0 when unknown), strict on size (a field too long or of a
//! type no server sends is an error naming the field), never a panic and never a guess. What
//! is not the end of a video play (`PlaybackStart`, music, photos, `media.rate`…) is
//! `Ok(None)`. Field list: `payloads/jellyfin-webhook-playbackstop.FIELDS.md`, apis.md §1.8.

use std::net::{IpAddr, SocketAddr};

use serde_json::Value;

use super::{Ids, ItemKind, Play, PlaySource};
use crate::jobs::scrobble::event as plex_event;
use crate::plex::json::arr;

/// Longest identifier we accept (Jellyfin item ids are 32 hex digits, Plex rating keys ≤ 40).
const MAX_ID: usize = 128;
/// Longest free text we keep (titles, user names, client names).
const MAX_TEXT: usize = 1024;
/// Most genres kept per item, and the longest genre name.
const MAX_GENRES: usize = 32;
const MAX_GENRE: usize = 128;
/// The share of the item Plex has played when it sends `media.scrobble` (apis.md §1.8).
const PLEX_SCROBBLE_PERCENT: f64 = 90.0;
/// Jellyfin item types that are not video: no play of them can download.
const NOT_VIDEO: &[&str] = &[
    "Audio",
    "AudioBook",
    "MusicAlbum",
    "MusicArtist",
    "Photo",
    "PhotoAlbum",
    "Book",
];

/// A Jellyfin webhook body (already JSON) → a Play. `Ok(None)`: not a `PlaybackStop`, or not
/// a video (music, photos) — nothing else to do. `Err`: a `PlaybackStop` whose body is
/// unusable, naming the field. Old (`Username`) and new (`NotificationUsername`) names;
/// numbers as strings or numbers; ticks → percent (`PlayedToCompletion` = true → 100);
/// `Genres` comma-joined or an array; `Provider_imdb/tmdb/tvdb`. The play's time is the
/// plugin's `UtcTimestamp` (so the same play posted twice is one play), else `now_ms`.
pub fn from_jellyfin(body: &Value, now_ms: u64) -> Result<Option<Play>, String> {
    if !body.is_object() {
        return Err(
            "jellyfin webhook body is not a JSON object (turn on \"Send All Properties\" \
                    in the webhook plugin)"
                .into(),
        );
    }
    let err = |e: String| format!("jellyfin webhook: {e}");
    let kind = text(body, "NotificationType", MAX_ID)
        .map_err(err)?
        .ok_or_else(|| {
            "jellyfin webhook has no \"NotificationType\" (turn on \"Send All Properties\" in \
             the webhook plugin)"
                .to_string()
        })?;
    if kind != "PlaybackStop" {
        return Ok(None);
    }
    let err = |e: String| format!("jellyfin PlaybackStop: {e}");
    let item_type = text(body, "ItemType", MAX_ID)
        .map_err(err)?
        .ok_or_else(|| err("ItemType is missing".into()))?;
    if NOT_VIDEO.contains(&item_type.as_str()) {
        return Ok(None);
    }
    let kind = match item_type.as_str() {
        "Movie" => ItemKind::Movie,
        "Episode" => ItemKind::Episode,
        _ => ItemKind::Other,
    };
    let user = match text(body, "NotificationUsername", MAX_TEXT).map_err(err)? {
        Some(u) if !u.trim().is_empty() => u,
        _ => text(body, "Username", MAX_TEXT)
            .map_err(err)?
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| err("NotificationUsername (or Username) is missing".into()))?,
    };
    let item_id = text(body, "ItemId", MAX_ID)
        .map_err(err)?
        .filter(|i| !i.is_empty())
        .ok_or_else(|| err("ItemId is missing".into()))?;
    let title = text(body, "Name", MAX_TEXT)
        .map_err(err)?
        .unwrap_or_default();
    let year = number(body, "Year").map_err(err)?.and_then(year_of);
    let run_ticks = number(body, "RunTimeTicks").map_err(err)?.unwrap_or(0.0);
    let position_ticks = number(body, "PlaybackPositionTicks")
        .map_err(err)?
        .unwrap_or(0.0);
    let completed = flag(body, "PlayedToCompletion").map_err(err)?;
    let percent = if completed == Some(true) {
        100.0
    } else {
        share(position_ticks, run_ticks)
    };
    let genres = match body.get("Genres") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(g)) if g.len() > MAX_GENRES * MAX_GENRE => {
            return Err(err("Genres is too long".into()))
        }
        Some(Value::String(g)) => genre_list(g.split(',')),
        Some(Value::Array(a)) => genre_list(a.iter().filter_map(Value::as_str)),
        Some(_) => return Err(err("Genres is not a string".into())),
    };
    let ids = Ids {
        imdb: text(body, "Provider_imdb", MAX_ID)
            .map_err(err)?
            .and_then(|i| imdb_id(&i)),
        tmdb: text(body, "Provider_tmdb", MAX_ID)
            .map_err(err)?
            .and_then(|i| positive(&i)),
        tvdb: text(body, "Provider_tvdb", MAX_ID)
            .map_err(err)?
            .and_then(|i| positive(&i)),
    };
    let client = match (
        text(body, "ClientName", MAX_TEXT).map_err(err)?,
        text(body, "DeviceName", MAX_TEXT).map_err(err)?,
    ) {
        (Some(c), Some(d)) if !c.is_empty() && !d.is_empty() => Some(format!("{c} ({d})")),
        (Some(c), _) if !c.is_empty() => Some(c),
        (_, Some(d)) if !d.is_empty() => Some(d),
        _ => None,
    };
    // Not on playback events per the plugin's source, but some versions and templates add it.
    let address = text(body, "RemoteEndPoint", MAX_ID)
        .map_err(err)?
        .and_then(|a| address(&a));
    let at_ms = text(body, "UtcTimestamp", MAX_ID)
        .ok()
        .flatten()
        .and_then(|t| utc_ms(&t))
        .filter(|t| *t <= now_ms && *t > 0)
        .unwrap_or(now_ms);
    Ok(Some(Play {
        source: PlaySource::Jellyfin,
        at_ms,
        user,
        address,
        kind,
        title,
        year,
        ids,
        item_id,
        percent,
        genres,
        client,
    }))
}

/// A Plex webhook payload (`media.stop` / `media.scrobble`) → a Play: percent from
/// `viewOffset`/`duration`; `media.scrobble` is at least 90 (Plex sends it when a play passes
/// 90 %). `Ok(None)` for other events and what is not a video. The address is the player's
/// `publicAddress` when Plex says the player is not local; a local player's address is not
/// in the payload (`None`: not a guest by network).
pub fn from_plex_webhook(payload: &Value, now_ms: u64) -> Result<Option<Play>, String> {
    let event = match payload.get("event") {
        Some(Value::String(e)) => e.as_str(),
        _ => "",
    };
    let scrobble = event == "media.scrobble";
    if !scrobble && event != "media.stop" {
        if event.is_empty() {
            // No usable event: the parser's error says what is wrong with the payload.
            return plex_event::from_webhook(payload, now_ms).map(|_| None);
        }
        return Ok(None); // media.play, media.rate, library.new…: nothing to record
    }
    let Some(e) = plex_event::from_webhook(payload, now_ms)? else {
        return Ok(None);
    };
    let err = |m: &str| format!("plex webhook {event}: {m}");
    let item = e.item.unwrap_or_default();
    let kind = match item.kind.as_str() {
        _ if item.extra => ItemKind::Other,
        "movie" => ItemKind::Movie,
        "episode" => ItemKind::Episode,
        _ => ItemKind::Other,
    };
    let user = e
        .user
        .ok_or_else(|| err("Account.title is missing (whose play was it?)"))?;
    let mut percent = match (e.view_offset_ms, item.duration_ms) {
        (Some(o), Some(d)) if d > 0 => share(o as f64, d as f64),
        _ => 0.0,
    };
    if scrobble {
        percent = percent.max(PLEX_SCROBBLE_PERCENT);
    }
    let mut ids = Ids::default();
    for g in &item.guids {
        if let Some(i) = g.strip_prefix("imdb://") {
            ids.imdb = ids.imdb.or_else(|| imdb_id(i));
        } else if let Some(i) = g.strip_prefix("tmdb://") {
            ids.tmdb = ids.tmdb.or_else(|| positive(i));
        } else if let Some(i) = g.strip_prefix("tvdb://") {
            ids.tvdb = ids.tvdb.or_else(|| positive(i));
        }
    }
    let meta = payload.get("Metadata").unwrap_or(&Value::Null);
    let genres = genre_list(
        arr(meta, "Genre")
            .iter()
            .take(MAX_GENRES * 4)
            .filter_map(|g| g.get("tag").and_then(Value::as_str)),
    );
    let player = payload.get("Player").unwrap_or(&Value::Null);
    let local = player.get("local").and_then(|l| match l {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => Some(n.as_i64() != Some(0)),
        Value::String(s) => Some(s == "1" || s == "true"),
        _ => None,
    });
    let address = match local {
        Some(false) => player
            .get("publicAddress")
            .and_then(Value::as_str)
            .filter(|a| a.len() <= MAX_ID)
            .and_then(address),
        _ => None,
    };
    let client = player
        .get("title")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty() && t.len() <= MAX_TEXT)
        .map(String::from);
    Ok(Some(Play {
        source: PlaySource::PlexWebhook,
        at_ms: now_ms,
        user,
        address,
        kind,
        title: item.title.unwrap_or_default(),
        year: item.year.and_then(|y| year_of(f64::from(y))),
        ids,
        item_id: e.rating_key,
        percent,
        genres,
        client,
    }))
}

/// A string-or-number field within `max` bytes; `Err` names the field when it is another type
/// or too long.
fn text(v: &Value, key: &str, max: usize) -> Result<Option<String>, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(x)) if x.len() > max => Err(format!("{key} is too long")),
        Some(Value::String(x)) => Ok(Some(x.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(format!("{key} is not a string")),
    }
}

/// A number or numeric string (blank: absent); `Err` names the field otherwise.
fn number(v: &Value, key: &str) -> Result<Option<f64>, String> {
    let n = match v.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(Value::String(s)) if s.len() <= 64 => s.trim().parse::<f64>().ok(),
        Some(_) => None,
    };
    match n {
        Some(n) if n.is_finite() && n >= 0.0 => Ok(Some(n)),
        _ => Err(format!("{key} is not a number")),
    }
}

/// `true`/`false`, `1`/`0`, `"true"`/`"False"`; `Err` names the field otherwise.
fn flag(v: &Value, key: &str) -> Result<Option<bool>, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::Number(n)) => Ok(Some(n.as_f64() != Some(0.0))),
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(Some(true)),
            "false" | "0" | "" => Ok(Some(false)),
            _ => Err(format!("{key} is not true or false")),
        },
        Some(_) => Err(format!("{key} is not true or false")),
    }
}

/// `part` of `whole` in percent, 0–100; 0 when the whole is unknown (0 ticks).
fn share(part: f64, whole: f64) -> f64 {
    if whole > 0.0 && part.is_finite() && whole.is_finite() {
        (part / whole * 100.0).clamp(0.0, 100.0)
    } else {
        0.0
    }
}

/// A plausible release year.
fn year_of(y: f64) -> Option<u32> {
    (1870.0..=2200.0).contains(&y).then_some(y as u32)
}

/// Genre names, trimmed, non-empty, of sane length, de-duplicated, at most [`MAX_GENRES`].
fn genre_list<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for g in names.take(MAX_GENRES * 4) {
        let g = g.trim();
        if g.is_empty() || g.len() > MAX_GENRE || out.iter().any(|o| o.eq_ignore_ascii_case(g)) {
            continue;
        }
        out.push(g.to_string());
        if out.len() == MAX_GENRES {
            break;
        }
    }
    out
}

/// `tt0133093` (lower-cased prefix), else nothing.
fn imdb_id(s: &str) -> Option<String> {
    let s = s.trim();
    let digits = s.get(2..)?;
    (s.len() <= 16
        && s[..2].eq_ignore_ascii_case("tt")
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit()))
    .then(|| format!("tt{digits}"))
}

/// A positive whole number (TMDB, TVDB ids).
fn positive(s: &str) -> Option<u64> {
    s.trim().parse::<u64>().ok().filter(|n| *n > 0)
}

/// An address, with or without a port (`192.168.1.5`, `[::1]:8096`, `10.0.0.2:51234`).
fn address(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// `2024-05-01T20:15:31.1234567Z` (the plugin's `UtcTimestamp`; an offset other than UTC or
/// none is taken as UTC) → unix milliseconds.
fn utc_ms(t: &str) -> Option<u64> {
    let b = t.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = t.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())
            .flatten()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    if h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut ms = 0;
    if b.get(19) == Some(&b'.') {
        let frac: String = t[20..]
            .chars()
            .take_while(char::is_ascii_digit)
            .take(3)
            .collect();
        ms = format!("{frac:0<3}").parse().unwrap_or(0);
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y2, m2) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + s;
    u64::try_from(secs * 1000 + ms).ok()
}

#[cfg(test)]
#[path = "intake_tests.rs"]
mod tests;
