//! A Plex rating key → what Trakt is told is being watched (issue 12 "ids from our own
//! index"). The library index already parsed every GUID form (new `Guid[]`, legacy
//! `com.plexapp.agents.*`), so most plays need no Plex call at all:
//!
//! 1. the index: a movie → `{title, year, ids}`; an episode → its own ids when the index has
//!    them, else the show's ids (its grandparent row) with season and number. A legacy
//!    agent's episode GUID (`com.plexapp.agents.thetvdb://SHOW/S/E`) names the *show*: its
//!    "ids" are never sent as the episode's (Trakt would scrobble another episode);
//! 2. not indexed (added since the last sync) → one `GET /library/metadata/{rk}` (and one for
//!    the show of an episode: an episode's answer carries no show GUIDs);
//! 3. neither → the facts the event carried (a webhook's `Metadata`).
//!
//! Answers are cached per rating key (bounded). The resolver owns its own [`Store`]
//! connection (a `Store` is one thread's; the daemon opens a second one on the same file), so
//! it can be handed to the delivery loop as a `Box<dyn Resolve>`.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::ItemFacts;
use crate::clients::trakt::{Ids, Media, ScrobbleItem};
use crate::plex::json::{self, Item};
use crate::plex::Plex;
use crate::store::outbox::IndexedItem;
use crate::store::Store;

/// The rating keys the cache holds at most (it is emptied when full: it only saves calls).
const CACHE_MAX: usize = 4096;

/// Turns a rating key (and what the event knew) into a Trakt item.
pub trait Resolve: Send {
    /// `Err` names what was missing or what failed (Plex unreachable: worth trying later).
    fn resolve(
        &mut self,
        rating_key: &str,
        facts: Option<&ItemFacts>,
    ) -> Result<ScrobbleItem, String>;
}

/// The index first, then Plex, then the event's facts; cached.
pub struct IndexResolver {
    store: Store,
    plex: Option<Plex>,
    cache: HashMap<String, ScrobbleItem>,
    plex_calls: u64,
}

impl IndexResolver {
    /// `store`: a connection of its own on the daemon's file; `plex`: None when Plex is not
    /// configured (the index and the events' facts only).
    pub fn new(store: Store, plex: Option<Plex>) -> IndexResolver {
        IndexResolver {
            store,
            plex,
            cache: HashMap::new(),
            plex_calls: 0,
        }
    }

    /// `/library/metadata` requests made so far.
    pub fn plex_calls(&self) -> u64 {
        self.plex_calls
    }

    fn look_in_index(&self, rk: &str) -> Result<Option<ScrobbleItem>, String> {
        let read = |k: &str| {
            self.store
                .scrobble_item(k)
                .map_err(|e| format!("reading rating key {k} from the library index: {e:#}"))
        };
        let Some(it) = read(rk)? else {
            return Ok(None);
        };
        match it.kind.as_str() {
            "movie" => Ok(Some(ScrobbleItem::Movie(media_of(&it)))),
            "episode" => {
                let own = if is_legacy(it.guid.as_deref().unwrap_or("")) {
                    Ids::default()
                } else {
                    ids_of(&it)
                };
                if own != Ids::default() {
                    return Ok(Some(ScrobbleItem::Episode(own)));
                }
                let (Some(season), Some(number)) = (num(it.season), num(it.episode)) else {
                    return Ok(None);
                };
                let Some(show) = it
                    .grandparent_key
                    .as_deref()
                    .map(read)
                    .transpose()?
                    .flatten()
                else {
                    return Ok(None);
                };
                let show = media_of(&show);
                if show.ids == Ids::default() {
                    return Ok(None);
                }
                Ok(Some(ScrobbleItem::ShowEpisode {
                    show,
                    season,
                    number,
                }))
            }
            _ => Ok(None),
        }
    }

    /// One `/library/metadata` call (two for an episode: its show's GUIDs).
    fn ask_plex(&mut self, rk: &str) -> Result<Option<ScrobbleItem>, String> {
        let Some(plex) = &self.plex else {
            return Ok(None);
        };
        let fetch = |k: &str| -> Result<Option<Value>, String> {
            match plex.metadata(&[k.to_string()]) {
                Ok(mut v) if !v.is_empty() => Ok(Some(v.swap_remove(0))),
                Ok(_) => Ok(None),
                Err(e) if e.status() == Some(404) => Ok(None),
                Err(e) => Err(format!("asking Plex for rating key {k}: {e}")),
            }
        };
        self.plex_calls += 1;
        let Some(m) = fetch(rk)? else {
            return Ok(None);
        };
        let mut facts = facts_of(&m);
        if facts.kind == "episode" {
            if let Some(show_rk) = facts.show_rating_key.clone() {
                self.plex_calls += 1;
                if let Some(show) = fetch(&show_rk)? {
                    facts.show_guids = facts_of(&show).guids;
                    facts.show_title = facts.show_title.or_else(|| json::s(&show, "title"));
                }
            }
        }
        Ok(item_from_facts(&facts))
    }
}

impl Resolve for IndexResolver {
    fn resolve(
        &mut self,
        rating_key: &str,
        facts: Option<&ItemFacts>,
    ) -> Result<ScrobbleItem, String> {
        if let Some(hit) = self.cache.get(rating_key) {
            return Ok(hit.clone());
        }
        let found = match self.look_in_index(rating_key)? {
            Some(i) => Some(i),
            None => match self.ask_plex(rating_key) {
                Ok(i) => i,
                // Plex unreachable: the event's facts may still do; else say why.
                Err(e) => match facts.and_then(item_from_facts) {
                    Some(i) => return Ok(i),
                    None => return Err(e),
                },
            },
        };
        let item = match found.or_else(|| facts.and_then(item_from_facts)) {
            Some(i) => i,
            None => {
                return Err(format!(
                    "rating key {rating_key}: no ids for it in the library index, from Plex, or in the event"
                ))
            }
        };
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
        self.cache.insert(rating_key.to_string(), item.clone());
        Ok(item)
    }
}

/// A legacy agent's GUID: for an episode, the first segment is the show's id.
fn is_legacy(guid: &str) -> bool {
    guid.starts_with("com.plexapp.agents.")
}

fn num(v: Option<i64>) -> Option<u32> {
    v.and_then(|v| u32::try_from(v).ok())
}

fn parse_ids(imdb: Option<&str>, tmdb: Option<&str>, tvdb: Option<&str>) -> Ids {
    Ids {
        imdb: imdb.filter(|s| !s.is_empty()).map(str::to_string),
        tmdb: tmdb.and_then(|s| s.parse().ok()),
        tvdb: tvdb.and_then(|s| s.parse().ok()),
        ..Ids::default()
    }
}

fn ids_of(it: &IndexedItem) -> Ids {
    parse_ids(it.imdb.as_deref(), it.tmdb.as_deref(), it.tvdb.as_deref())
}

fn media_of(it: &IndexedItem) -> Media {
    Media {
        title: Some(it.title.clone()).filter(|t| !t.is_empty()),
        year: num(it.year),
        ids: ids_of(it),
    }
}

/// Every GUID form → Trakt ids (the index's own parser).
fn ids_from_guids(guids: &[String]) -> Ids {
    let v = json!({ "Guid": guids.iter().map(|g| json!({ "id": g })).collect::<Vec<_>>() });
    let e = Item::from_value(&v).external_ids();
    parse_ids(e.imdb.as_deref(), e.tmdb.as_deref(), e.tvdb.as_deref())
}

/// The facts of a Plex metadata object (`/library/metadata` `Metadata[0]`, a webhook's
/// `Metadata`): every GUID (`Guid[]` and the legacy `guid`), episode numbering and show.
pub fn facts_of(m: &Value) -> ItemFacts {
    let mut guids: Vec<String> = json::arr(m, "Guid")
        .iter()
        .filter_map(|g| json::s(g, "id"))
        .collect();
    guids.extend(json::s(m, "guid"));
    let kind = json::s(m, "type").unwrap_or_default();
    let episode = kind == "episode";
    ItemFacts {
        title: json::s(m, "title"),
        year: json::n(m, "year").and_then(|y| u32::try_from(y).ok()),
        section: json::s(m, "librarySectionID"),
        duration_ms: json::n(m, "duration"),
        guids,
        show_title: episode.then(|| json::s(m, "grandparentTitle")).flatten(),
        show_rating_key: episode
            .then(|| json::s(m, "grandparentRatingKey"))
            .flatten(),
        season: episode
            .then(|| json::n(m, "parentIndex").and_then(|v| u32::try_from(v).ok()))
            .flatten(),
        episode: episode
            .then(|| json::n(m, "index").and_then(|v| u32::try_from(v).ok()))
            .flatten(),
        kind,
        ..ItemFacts::default()
    }
}

/// A Trakt item from facts: a movie by its ids (or title/year), an episode by its own ids,
/// else by its show's ids with season and number. None when nothing identifies it.
pub fn item_from_facts(f: &ItemFacts) -> Option<ScrobbleItem> {
    let ids = ids_from_guids(&f.guids);
    match f.kind.as_str() {
        "movie" => {
            let m = Media {
                title: f.title.clone(),
                year: f.year,
                ids,
            };
            (m.ids != Ids::default() || m.title.is_some()).then_some(ScrobbleItem::Movie(m))
        }
        "episode" => {
            let own: Vec<String> = f.guids.iter().filter(|g| !is_legacy(g)).cloned().collect();
            let ids = ids_from_guids(&own);
            if ids != Ids::default() {
                return Some(ScrobbleItem::Episode(ids));
            }
            let show = Media {
                title: f.show_title.clone(),
                year: None,
                ids: ids_from_guids(&f.show_guids),
            };
            match (f.season, f.episode) {
                (Some(season), Some(number))
                    if show.ids != Ids::default() || show.title.is_some() =>
                {
                    Some(ScrobbleItem::ShowEpisode {
                        show,
                        season,
                        number,
                    })
                }
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> Store {
        let s = Store::in_memory().unwrap();
        for v in [
            json!({"ratingKey": "10", "type": "movie", "title": "Dune", "year": 2021,
                   "Guid": [{"id": "imdb://tt1160419"}, {"id": "tmdb://438631"}]}),
            json!({"ratingKey": "20", "type": "show", "title": "Severance", "year": 2022,
                   "guid": "com.plexapp.agents.thetvdb://371980?lang=en"}),
            json!({"ratingKey": "21", "type": "episode", "title": "Good News About Hell",
                   "grandparentRatingKey": "20", "parentIndex": 1, "index": 1}),
            json!({"ratingKey": "22", "type": "episode", "title": "Half Loop",
                   "grandparentRatingKey": "20", "parentIndex": 1, "index": 2,
                   "Guid": [{"id": "tvdb://8229225"}]}),
            json!({"ratingKey": "23", "type": "episode", "title": "In Perpetuity",
                   "grandparentRatingKey": "20", "parentIndex": 1, "index": 3,
                   "guid": "com.plexapp.agents.thetvdb://371980/1/3?lang=en"}),
        ] {
            s.upsert_item("1", &Item::from_value(&v)).unwrap();
        }
        s
    }

    #[test]
    fn the_index_gives_movies_episodes_by_own_ids_and_by_show() {
        let mut r = IndexResolver::new(index(), None);
        let ScrobbleItem::Movie(m) = r.resolve("10", None).unwrap() else {
            panic!()
        };
        assert_eq!(m.title.as_deref(), Some("Dune"));
        assert_eq!(m.year, Some(2021));
        assert_eq!(m.ids.imdb.as_deref(), Some("tt1160419"));
        assert_eq!(m.ids.tmdb, Some(438631));
        assert_eq!(
            r.resolve("22", None).unwrap(),
            ScrobbleItem::Episode(Ids {
                tvdb: Some(8229225),
                ..Ids::default()
            })
        );
        let ScrobbleItem::ShowEpisode {
            show,
            season,
            number,
        } = r.resolve("21", None).unwrap()
        else {
            panic!()
        };
        assert_eq!((show.ids.tvdb, season, number), (Some(371980), 1, 1));
        assert_eq!(show.title.as_deref(), Some("Severance"));
        // A legacy episode GUID carries the show's id: by show, season and number.
        let ScrobbleItem::ShowEpisode { show, number, .. } = r.resolve("23", None).unwrap() else {
            panic!()
        };
        assert_eq!((show.ids.tvdb, number), (Some(371980), 3));
    }

    #[test]
    fn unknown_keys_fall_back_to_the_events_facts_or_say_what_is_missing() {
        let mut r = IndexResolver::new(index(), None);
        let e = r.resolve("99", None).unwrap_err();
        assert!(e.contains("rating key 99"), "{e}");
        let facts = facts_of(&json!({
            "type": "episode", "title": "Pilot", "grandparentTitle": "Breaking Bad",
            "grandparentRatingKey": "500", "parentIndex": "1", "index": 1,
        }));
        let with_show = ItemFacts {
            show_guids: vec!["tvdb://81189".into()],
            ..facts.clone()
        };
        assert_eq!(
            r.resolve("99", Some(&with_show)).unwrap(),
            ScrobbleItem::ShowEpisode {
                show: Media {
                    title: Some("Breaking Bad".into()),
                    year: None,
                    ids: Ids {
                        tvdb: Some(81189),
                        ..Ids::default()
                    }
                },
                season: 1,
                number: 1
            }
        );
        // Nothing identifies a clip.
        assert_eq!(
            item_from_facts(&facts_of(&json!({"type": "clip", "title": "Trailer"}))),
            None
        );
    }
}
