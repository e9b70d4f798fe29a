//! Webhook bodies → plays: Jellyfin's webhook plugin (`PlaybackStop`, old and new field
//! names, numbers as strings or numbers) and Plex's webhooks (`media.stop`,
//! `media.scrobble`).

use serde_json::Value;

use super::{Ids, ItemKind, Play, PlaySource};

const MAX_TEXT: usize = 1024;

fn text(v: &Value, k: &str) -> Result<Option<String>, String> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= MAX_TEXT => {
            Ok(Some(s.clone()).filter(|s| !s.trim().is_empty()))
        }
        Some(Value::String(_)) => Err(format!("{k} is too long")),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(format!("{k} is not a string")),
    }
}

fn num(v: &Value, k: &str) -> Result<Option<f64>, String> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .map(Some)
            .map_err(|_| format!("{k} is not a number: {s:?}")),
        Some(_) => Err(format!("{k} is not a number")),
    }
}

fn year(v: Option<f64>) -> Option<u32> {
    v.filter(|y| *y >= 1800.0 && *y < 3000.0).map(|y| y as u32)
}

/// A Jellyfin webhook body → a Play.
pub fn from_jellyfin(body: &Value, now_ms: u64) -> Result<Option<Play>, String> {
    if !body.is_object() {
        return Err("the Jellyfin webhook body is not a JSON object".into());
    }
    if text(body, "NotificationType")?.as_deref() != Some("PlaybackStop") {
        return Ok(None);
    }
    let kind = match text(body, "ItemType")?.as_deref() {
        Some("Movie") => ItemKind::Movie,
        Some("Episode") => ItemKind::Episode,
        _ => return Ok(None),
    };
    let user = match text(body, "NotificationUsername")? {
        Some(u) => u,
        None => text(body, "Username")?
            .ok_or("PlaybackStop without NotificationUsername (or Username)")?,
    };
    let item_id = text(body, "ItemId")?.ok_or("PlaybackStop without ItemId")?;
    let run = num(body, "RunTimeTicks")?.unwrap_or(0.0);
    let pos = num(body, "PlaybackPositionTicks")?.unwrap_or(0.0);
    let done = matches!(body.get("PlayedToCompletion"), Some(Value::Bool(true)))
        || matches!(body.get("PlayedToCompletion"), Some(Value::String(s)) if s.eq_ignore_ascii_case("true"));
    let percent = if done {
        100.0
    } else if run > 0.0 {
        (pos * 100.0 / run).clamp(0.0, 100.0)
    } else {
        0.0
    };
    let genres = match body.get("Genres") {
        Some(Value::String(s)) => s
            .split(',')
            .map(|g| g.trim().to_string())
            .filter(|g| !g.is_empty())
            .collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|g| g.as_str().map(|g| g.trim().to_string()))
            .collect(),
        _ => Vec::new(),
    };
    let id = |k: &str| text(body, k).map(|v| v.and_then(|v| v.trim().parse::<u64>().ok()));
    Ok(Some(Play {
        source: PlaySource::Jellyfin,
        at_ms: now_ms,
        user,
        address: text(body, "RemoteEndPoint")?.and_then(|a| a.parse().ok()),
        kind,
        title: text(body, "Name")?.unwrap_or_default(),
        year: year(num(body, "Year")?),
        ids: Ids {
            imdb: text(body, "Provider_imdb")?,
            tmdb: id("Provider_tmdb")?,
            tvdb: id("Provider_tvdb")?,
        },
        item_id,
        percent,
        genres,
        client: text(body, "ClientName")?.or(text(body, "DeviceName")?),
    }))
}

/// A Plex webhook payload → a Play.
pub fn from_plex_webhook(payload: &Value, now_ms: u64) -> Result<Option<Play>, String> {
    let event = text(payload, "event")?.ok_or("Plex webhook without \"event\"")?;
    let scrobble = match event.as_str() {
        "media.stop" => false,
        "media.scrobble" => true,
        _ => return Ok(None),
    };
    let meta = payload
        .get("Metadata")
        .filter(|m| m.is_object())
        .ok_or_else(|| format!("{event} without Metadata"))?;
    let kind = match text(meta, "type")?.as_deref() {
        Some("movie") => ItemKind::Movie,
        Some("episode") => ItemKind::Episode,
        _ => return Ok(None),
    };
    let user = payload
        .get("Account")
        .map(|a| text(a, "title"))
        .transpose()?
        .flatten()
        .ok_or_else(|| format!("{event} without Account.title"))?;
    let rating_key =
        text(meta, "ratingKey")?.ok_or_else(|| format!("{event} without Metadata.ratingKey"))?;
    let duration = num(meta, "duration")?.unwrap_or(0.0);
    let offset = num(meta, "viewOffset")?.unwrap_or(0.0);
    let mut percent = if duration > 0.0 {
        (offset * 100.0 / duration).clamp(0.0, 100.0)
    } else {
        0.0
    };
    if scrobble {
        percent = percent.max(90.0);
    }
    let ids = crate::plex::json::Item::from_value(meta).external_ids();
    let genres = meta
        .get("Genre")
        .and_then(Value::as_array)
        .map(|g| {
            g.iter()
                .filter_map(|x| x["tag"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(Play {
        source: PlaySource::PlexWebhook,
        at_ms: now_ms,
        user,
        address: None,
        kind,
        title: text(meta, "title")?.unwrap_or_default(),
        year: year(num(meta, "year")?),
        ids: Ids {
            imdb: ids.imdb,
            tmdb: ids.tmdb.and_then(|t| t.parse().ok()),
            tvdb: ids.tvdb.and_then(|t| t.parse().ok()),
        },
        item_id: rating_key,
        percent,
        genres,
        client: payload
            .get("Player")
            .map(|p| text(p, "title"))
            .transpose()?
            .flatten(),
    }))
}
