//! The Jellyfin REST client of the downloads job (apis.md §5.2, issue 13, optional): an item
//! with the user's data (`CommunityRating`, `Genres`, `ProviderIds`, `UserData.PlayCount`) and
//! a user's id by name.
//!
//! Auth: `Authorization: MediaBrowser Token="<key>"` (the key is scrubbed from every message,
//! bare and inside the header). The item is read at `GET /Users/{userId}/Items/{itemId}`,
//! which answers from 10.8 to 10.11 (10.9 moved the user to a query parameter and kept this
//! route, hidden; in 10.8 `GET /Items/{id}` is a 405: jellyfin #12260).

use serde_json::Value;

use super::http::encode_segment;
use super::service::{as_count, is_absent, text, Limits, ServiceClient, ServiceError, Spec};
use crate::model::downloads::Ids;

const MAX_BODY: u64 = 16 << 20;

/// A Jellyfin server.
#[derive(Debug)]
pub struct Jellyfin {
    svc: ServiceClient,
}

/// What the rules read of a Jellyfin item (`BaseItemDto`).
#[derive(Clone, Debug, PartialEq)]
pub struct JellyfinItem {
    pub name: String,
    /// `ProductionYear`.
    pub year: Option<u32>,
    /// `Type`: `Movie`, `Episode`, …
    pub kind: String,
    pub community_rating: Option<f64>,
    pub genres: Vec<String>,
    /// `ProviderIds` (`Imdb`, `Tmdb`, `Tvdb`; names compared case-insensitively).
    pub ids: Ids,
    /// `UserData.PlayCount` (absent when Jellyfin did not attach the user's data).
    pub play_count: Option<u32>,
    /// `RunTimeTicks` in seconds (1 tick = 100 ns): what a Jellystat play's duration is a
    /// share of (`downloads import-history --from jellystat`).
    pub runtime_s: Option<u64>,
}

impl JellyfinItem {
    /// Reads a `BaseItemDto`. Err names what is missing.
    pub fn from_json(v: &Value) -> Result<JellyfinItem, String> {
        if !v.is_object() {
            return Err("an item that is not an object".into());
        }
        let name = text(v, "Name").ok_or("an item without a \"Name\"")?;
        let kind = text(v, "Type").ok_or_else(|| format!("item {name:?} has no \"Type\""))?;
        let provider = |key: &str| -> Option<String> {
            v.get("ProviderIds")?
                .as_object()?
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .and_then(|(_, val)| match val {
                    Value::String(s) => Some(s.trim().to_string()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .filter(|s| !s.is_empty())
        };
        Ok(JellyfinItem {
            year: v
                .get("ProductionYear")
                .and_then(Value::as_u64)
                .filter(|y| (1..=9999).contains(y))
                .map(|y| y as u32),
            community_rating: v
                .get("CommunityRating")
                .and_then(Value::as_f64)
                .filter(|r| r.is_finite() && *r > 0.0 && *r <= 10.0),
            genres: v
                .get("Genres")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            ids: Ids {
                imdb: provider("Imdb").filter(|i| i.starts_with("tt")),
                tmdb: provider("Tmdb").and_then(|t| t.parse().ok()),
                tvdb: provider("Tvdb").and_then(|t| t.parse().ok()),
            },
            play_count: v
                .get("UserData")
                .and_then(|u| u.get("PlayCount"))
                .and_then(as_count)
                .map(|c| c.min(u64::from(u32::MAX)) as u32),
            runtime_s: v
                .get("RunTimeTicks")
                .and_then(as_count)
                .map(|t| t / 10_000_000)
                .filter(|&s| s > 0),
            name,
            kind,
        })
    }
}

impl Jellyfin {
    pub fn new(
        base_url: &str,
        api_key: &str,
        connect_ms: u64,
        request_ms: u64,
    ) -> Result<Jellyfin, ServiceError> {
        let auth = format!("MediaBrowser Token=\"{api_key}\"");
        let svc = ServiceClient::new(
            Spec {
                name: "Jellyfin",
                forbidden_is_unauthorized: false,
                hide_path: false,
            },
            base_url,
            &[("Authorization", &auth)],
            &[api_key],
            Limits {
                connect_ms,
                request_ms,
                max_body: MAX_BODY,
                retries: 2,
            },
        )?;
        Ok(Jellyfin { svc })
    }

    /// `GET /Users/{userId}/Items/{itemId}`. `Ok(None)`: Jellyfin's own 404 (no such item or
    /// user); a 404 page from something else at that address is an error.
    pub fn item(&self, user_id: &str, item_id: &str) -> Result<Option<JellyfinItem>, ServiceError> {
        let path = format!(
            "/Users/{}/Items/{}",
            encode_segment(user_id),
            encode_segment(item_id)
        );
        match self.svc.get_json(&path, &[]) {
            Ok(v) => JellyfinItem::from_json(&v)
                .map(Some)
                .map_err(|w| self.svc.malformed(&path, w)),
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The id of the user named `name` (case-insensitively) from `GET /Users`; `Ok(None)`
    /// when Jellyfin listed its users and none has that name.
    pub fn user_id(&self, name: &str) -> Result<Option<String>, ServiceError> {
        let path = "/Users";
        let v = self.svc.get_json(path, &[])?;
        let users = v
            .as_array()
            .ok_or_else(|| self.svc.malformed(path, "not an array of users"))?;
        for (i, u) in users.iter().enumerate() {
            let n = text(u, "Name").ok_or_else(|| {
                self.svc
                    .malformed(path, format!("user {i} has no \"Name\""))
            })?;
            if n.eq_ignore_ascii_case(name.trim()) {
                return text(u, "Id").map(Some).ok_or_else(|| {
                    self.svc
                        .malformed(path, format!("user {n:?} has no \"Id\""))
                });
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_item_is_read_with_its_ids_and_user_data() {
        let v = json!({
            "Name": "The Matrix", "Id": "f1", "Type": "Movie", "ProductionYear": 1999,
            "CommunityRating": 8.2, "OfficialRating": "R", "Genres": ["Action", " Science Fiction "],
            "ProviderIds": {"Imdb": "tt0133093", "Tmdb": "603", "tvdb": "", "TmdbCollection": "2344"},
            "RunTimeTicks": 81_600_000_000u64,
            "UserData": {"PlaybackPositionTicks": 0, "PlayCount": 3, "IsFavorite": false,
                         "Played": true, "Key": "603", "ItemId": "f1"}
        });
        let i = JellyfinItem::from_json(&v).unwrap();
        assert_eq!(i.name, "The Matrix");
        assert_eq!((i.kind.as_str(), i.year), ("Movie", Some(1999)));
        assert_eq!(i.community_rating, Some(8.2));
        assert_eq!(i.genres, vec!["Action", "Science Fiction"]);
        assert_eq!(
            i.ids,
            Ids {
                imdb: Some("tt0133093".into()),
                tmdb: Some(603),
                tvdb: None
            }
        );
        assert_eq!(i.play_count, Some(3));
    }

    #[test]
    fn a_bare_item_has_no_facts_and_a_broken_one_says_why() {
        let i = JellyfinItem::from_json(&json!({"Name": "X", "Type": "Episode"})).unwrap();
        assert_eq!(
            (i.year, i.community_rating, i.play_count),
            (None, None, None)
        );
        assert_eq!(i.ids, Ids::default());
        assert!(JellyfinItem::from_json(&json!({"Type": "Movie"}))
            .unwrap_err()
            .contains("Name"));
        assert!(JellyfinItem::from_json(&json!([])).is_err());
    }

    #[test]
    fn the_key_is_nowhere_in_debug() {
        let j = Jellyfin::new("http://127.0.0.1:1/jf", "JFKEY-9999", 100, 100).unwrap();
        assert!(!format!("{j:?}").contains("JFKEY-9999"));
    }
}
