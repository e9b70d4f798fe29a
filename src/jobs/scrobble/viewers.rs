//! Who is watching a session, and what is being watched — the pure parts of the scrobble
//! job's edge (issue 12).
//!
//! Plex's websocket frame carries no user (apis.md §1.7; the peers that read an empty name as
//! "the owner" scrobbled everybody's plays to the owner). The viewer of a `sessionKey` comes
//! from the sessions job's `/status/sessions` snapshots: every listed session with a user is
//! learned here and kept (bounded, expiring), so a `stopped` for a session Plex no longer lists
//! is still attributed. A session no snapshot ever named is *unknown*, never someone else's.
//! A client id is not a viewer: a Plex Home TV is shared by several users.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::ItemFacts;
use crate::plex::sessions::{Published, Session};
use crate::store::items::ItemRow;

/// What a snapshot said of a session, kept after Plex stops listing it.
#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    pub user: String,
    pub client_id: Option<String>,
    pub rating_key: Option<String>,
    pub kind: String,
    pub title: String,
    pub duration_ms: Option<i64>,
    pub view_offset_ms: Option<i64>,
    /// `Player.address` (the downloads job tells guests by network).
    pub address: Option<String>,
    last: Instant,
}

impl Seen {
    fn of(s: &Session, now: Instant) -> Option<Seen> {
        let user = s.viewer.user.clone().filter(|u| !u.trim().is_empty())?;
        Some(Seen {
            user,
            client_id: s.viewer.client_id.clone(),
            rating_key: s.rating_key.clone(),
            kind: s.kind.clone(),
            title: s.title.clone(),
            duration_ms: s.duration_ms,
            view_offset_ms: s.view_offset_ms,
            address: s.address.clone(),
            last: now,
        })
    }
}

/// The session key → viewer cache.
pub struct Viewers {
    by_key: HashMap<String, Seen>,
    cap: usize,
    ttl: Duration,
}

impl Viewers {
    /// At most `cap` sessions, each forgotten `ttl` after it was last listed or heard of.
    pub fn new(cap: usize, ttl: Duration) -> Viewers {
        Viewers {
            by_key: HashMap::new(),
            cap: cap.max(1),
            ttl,
        }
    }

    /// Learns every session of a listing that names its user. A listing is the truth of the
    /// moment: a session key Plex reused for another viewer is overwritten.
    pub fn learn(&mut self, list: &[Session], now: Instant) {
        for s in list {
            if let Some(seen) = Seen::of(s, now) {
                self.by_key.insert(s.session_key.clone(), seen);
            }
        }
        self.by_key
            .retain(|_, s| now.saturating_duration_since(s.last) < self.ttl);
        if self.by_key.len() > self.cap {
            // Forget the longest silent first (bounded whatever Plex sends).
            let mut ages: Vec<(Instant, String)> = self
                .by_key
                .iter()
                .map(|(k, s)| (s.last, k.clone()))
                .collect();
            ages.sort();
            let excess = self.by_key.len() - self.cap;
            for (_, k) in ages.into_iter().take(excess) {
                self.by_key.remove(&k);
            }
        }
    }

    /// The viewer of `session_key`: the latest listing first (the truth now), else what an
    /// earlier listing said.
    pub fn of(&self, latest: &[Session], session_key: &str) -> Option<Seen> {
        latest
            .iter()
            .find(|s| s.session_key == session_key)
            .and_then(|s| Seen::of(s, Instant::now()))
            .or_else(|| self.by_key.get(session_key).cloned())
    }

    /// A websocket event was heard for the session: it stays remembered, with its offset.
    pub fn heard(&mut self, session_key: &str, view_offset_ms: Option<i64>, now: Instant) {
        if let Some(s) = self.by_key.get_mut(session_key) {
            s.last = now;
            if view_offset_ms.is_some() {
                s.view_offset_ms = view_offset_ms;
            }
        }
    }

    /// The session `user` plays `rating_key` in on `client_id` (a webhook names no session
    /// key), for what the webhook lacks (its view offset, the duration).
    pub fn for_webhook(
        &self,
        user: &str,
        client_id: Option<&str>,
        rating_key: &str,
    ) -> Option<&Seen> {
        self.by_key
            .values()
            .filter(|s| {
                s.user.eq_ignore_ascii_case(user)
                    && s.rating_key.as_deref() == Some(rating_key)
                    && (client_id.is_none() || s.client_id.as_deref() == client_id)
            })
            .max_by_key(|s| s.last)
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// The session keys Plex lists now, or `None` when the last listing is older than
/// `stale_after` (the sessions job publishes nothing when a poll fails: a failed listing is
/// never read as "every session is gone") or there was none yet.
pub fn listed(p: &Published, now: Instant, stale_after: Duration) -> Option<HashSet<String>> {
    let at = p.at?;
    if p.generation == 0 || now.saturating_duration_since(at) > stale_after {
        return None;
    }
    Some(p.list.iter().map(|s| s.session_key.clone()).collect())
}

/// The facts of an indexed item (its ids as GUIDs, the show's for an episode), with the
/// duration the session knows.
pub fn facts_from_row(row: &ItemRow, seen: Option<&Seen>) -> ItemFacts {
    let guids = |imdb: &Option<String>, tmdb: &Option<String>, tvdb: &Option<String>| {
        let mut g = Vec::new();
        if let Some(v) = imdb {
            g.push(format!("imdb://{v}"));
        }
        if let Some(v) = tmdb {
            g.push(format!("tmdb://{v}"));
        }
        if let Some(v) = tvdb {
            g.push(format!("tvdb://{v}"));
        }
        g
    };
    let num = |v: Option<i64>| v.and_then(|n| u32::try_from(n).ok());
    ItemFacts {
        kind: row.kind.clone(),
        title: Some(row.title.clone()),
        year: num(row.year),
        section: Some(row.section.clone()),
        section_title: row.section_title.clone(),
        extra: false,
        duration_ms: seen.and_then(|s| s.duration_ms),
        guids: guids(&row.imdb, &row.tmdb, &row.tvdb),
        show_title: row.show_title.clone(),
        show_rating_key: row.show_key.clone(),
        show_guids: guids(&row.show_imdb, &row.show_tmdb, &row.show_tvdb),
        season: num(row.season),
        episode: num(row.episode),
    }
}

/// What the session alone says of an item the index does not hold (a trailer is a `clip`:
/// the library index keeps no extras).
pub fn facts_from_session(seen: &Seen) -> ItemFacts {
    ItemFacts {
        kind: seen.kind.clone(),
        title: Some(seen.title.clone()).filter(|t| !t.is_empty()),
        extra: seen.kind == "clip",
        duration_ms: seen.duration_ms,
        ..ItemFacts::default()
    }
}

/// Keys seen once: a refusal is logged once per session and reason, not at every
/// notification (Plex repeats `playing` every few seconds). Bounded: forgets all when full.
pub struct Once {
    seen: HashSet<String>,
    cap: usize,
}

impl Once {
    pub fn new(cap: usize) -> Once {
        Once {
            seen: HashSet::new(),
            cap: cap.max(1),
        }
    }

    /// True the first time `key` is offered.
    pub fn first(&mut self, key: String) -> bool {
        if self.seen.len() >= self.cap && !self.seen.contains(&key) {
            self.seen.clear();
        }
        self.seen.insert(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plex::sessions::parse_sessions;
    use serde_json::json;
    use std::sync::Arc;

    fn session(key: &str, user: Option<&str>, rk: &str, client: &str) -> Session {
        let mut v = json!({"sessionKey": key, "ratingKey": rk, "type": "movie", "title": "Dune",
            "duration": 9_000_000, "viewOffset": 60_000,
            "Player": {"machineIdentifier": client, "state": "playing"}});
        if let Some(u) = user {
            v["User"] = json!({"id": "1", "title": u});
        }
        parse_sessions(&[v]).remove(0)
    }

    #[test]
    fn a_session_plex_stopped_listing_is_still_attributed_and_an_unnamed_one_never_is() {
        let t0 = Instant::now();
        let mut v = Viewers::new(8, Duration::from_secs(3600));
        let listing = vec![
            session("7", Some("alice"), "55", "tv-1"),
            session("8", None, "56", "tv-2"),
            session("9", Some("  "), "57", "tv-3"),
        ];
        v.learn(&listing, t0);
        assert_eq!(v.of(&listing, "7").unwrap().user, "alice");
        // Gone from the listing: the cache still knows.
        assert_eq!(v.of(&[], "7").unwrap().user, "alice");
        assert_eq!(v.of(&[], "7").unwrap().duration_ms, Some(9_000_000));
        // No user, or an empty one: unknown, never "the owner".
        assert!(v.of(&listing, "8").is_none());
        assert!(v.of(&listing, "9").is_none());
        assert!(v.of(&[], "404").is_none());
        // A reused key: the latest listing wins over the cache.
        let reused = vec![session("7", Some("bob"), "70", "tv-9")];
        assert_eq!(v.of(&reused, "7").unwrap().user, "bob");
        v.learn(&reused, t0);
        assert_eq!(v.of(&[], "7").unwrap().user, "bob");
    }

    #[test]
    fn the_cache_is_bounded_and_expires_but_a_heard_session_stays() {
        let t0 = Instant::now();
        let mut v = Viewers::new(3, Duration::from_secs(60));
        for i in 0..5u32 {
            v.learn(
                &[session(&i.to_string(), Some("u"), "1", "c")],
                t0 + Duration::from_secs(u64::from(i)),
            );
        }
        assert_eq!(v.len(), 3, "the oldest two are forgotten");
        assert!(v.of(&[], "0").is_none() && v.of(&[], "4").is_some());
        v.heard("2", Some(777), t0 + Duration::from_secs(50));
        assert_eq!(v.of(&[], "2").unwrap().view_offset_ms, Some(777));
        v.learn(&[], t0 + Duration::from_secs(100));
        assert!(v.of(&[], "3").is_none() && v.of(&[], "4").is_none());
        assert!(v.of(&[], "2").is_some(), "heard 50 s ago: kept");
        v.learn(&[], t0 + Duration::from_secs(200));
        assert!(v.is_empty());
    }

    #[test]
    fn a_webhook_finds_its_session_by_user_item_and_player() {
        let mut v = Viewers::new(8, Duration::from_secs(3600));
        let t0 = Instant::now();
        v.learn(&[session("7", Some("Alice"), "55", "tv-1")], t0);
        v.learn(&[session("8", Some("bob"), "55", "tv-2")], t0);
        assert_eq!(
            v.for_webhook("alice", Some("tv-1"), "55").unwrap().user,
            "Alice"
        );
        assert_eq!(
            v.for_webhook("bob", None, "55")
                .unwrap()
                .client_id
                .as_deref(),
            Some("tv-2")
        );
        assert!(v.for_webhook("alice", Some("tv-2"), "55").is_none());
        assert!(v.for_webhook("alice", Some("tv-1"), "56").is_none());
    }

    #[test]
    fn a_stale_or_missing_listing_is_no_listing() {
        let now = Instant::now();
        let none = Published::default();
        assert_eq!(listed(&none, now, Duration::from_secs(30)), None);
        let p = Published {
            generation: 3,
            at: Some(now),
            list: Arc::from(vec![session("7", Some("a"), "1", "c")]),
            cause: None,
        };
        let keys = listed(&p, now + Duration::from_secs(5), Duration::from_secs(30)).unwrap();
        assert!(keys.contains("7") && keys.len() == 1);
        assert_eq!(
            listed(&p, now + Duration::from_secs(31), Duration::from_secs(30)),
            None
        );
        let empty = Published {
            list: Arc::from(Vec::new()),
            ..p
        };
        assert_eq!(
            listed(&empty, now, Duration::from_secs(30)),
            Some(HashSet::new())
        );
    }

    #[test]
    fn facts_come_from_the_index_with_ids_and_from_the_session_otherwise() {
        let row = ItemRow {
            rating_key: "11".into(),
            kind: "episode".into(),
            title: "Pilot".into(),
            year: Some(2008),
            section: "2".into(),
            season: Some(1),
            episode: Some(-1),
            show_key: Some("10".into()),
            tvdb: Some("349232".into()),
            show_title: Some("The Show".into()),
            show_tvdb: Some("81189".into()),
            show_imdb: Some("tt0903747".into()),
            ..ItemRow::default()
        };
        let mut seen = Viewers::new(1, Duration::from_secs(60));
        seen.learn(&[session("7", Some("a"), "11", "c")], Instant::now());
        let s = seen.of(&[], "7").unwrap();
        let f = facts_from_row(&row, Some(&s));
        assert_eq!(f.guids, vec!["tvdb://349232"]);
        assert_eq!(f.show_guids, vec!["imdb://tt0903747", "tvdb://81189"]);
        assert_eq!((f.season, f.episode, f.year), (Some(1), None, Some(2008)));
        assert_eq!(f.section.as_deref(), Some("2"));
        assert_eq!(f.duration_ms, Some(9_000_000));
        assert!(!f.extra);
        let mut clip = s.clone();
        clip.kind = "clip".into();
        let f = facts_from_session(&clip);
        assert!(f.extra && f.kind == "clip" && f.section.is_none());
        assert!(!facts_from_session(&s).extra);
    }

    #[test]
    fn once_says_first_once_and_stays_bounded() {
        let mut o = Once::new(2);
        assert!(o.first("a".into()));
        assert!(!o.first("a".into()));
        assert!(o.first("b".into()));
        assert!(o.first("c".into()), "full: forgets and takes the new one");
        assert!(o.seen.len() <= 2);
    }
}
