//! Plays seen on Plex (issue 13): the websocket's playback notifications, attributed with the
//! session tracker, and the de-duplication of one play heard from several Plex sources.
//!
//! The websocket carries no user (apis.md §1.7): the viewer and the player's address come from
//! the `sessions` job's listings, through the scrobble job's [`Viewers`] cache (a session no
//! listing ever named is nobody's — never the owner's). A play ends when Plex says `stopped`,
//! or when a fresh listing no longer shows the session (a player that vanished); its share is
//! the last offset over the duration the listing gave. What was played (kind, title, ids) is
//! filled in by the run loop from the index.
//!
//! One play may reach us three times (the websocket's stop, Plex's `media.scrobble` at 90 %
//! and its `media.stop`): [`Recent`] keeps the Plex plays that counted, so the second and third
//! are not a "rewatch".

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::jobs::scrobble::event;
use crate::jobs::scrobble::viewers::{Seen, Viewers};
use crate::jobs::scrobble::PlayState;
use crate::plex::events::Event;
use crate::plex::sessions::Session;

/// A session's viewer is awaited this long after its stop before the play is dropped.
pub const HOLD: Duration = Duration::from_secs(3);
/// Sessions remembered (bounded whatever Plex sends).
const CAP: usize = 4096;
/// A session silent this long is forgotten (a player paused for a night is still followed).
const TTL: Duration = Duration::from_secs(12 * 3600);

/// A play that ended on Plex, before its item is looked up.
#[derive(Clone, Debug, PartialEq)]
pub struct Ended {
    pub user: String,
    pub address: Option<String>,
    pub client: Option<String>,
    pub rating_key: String,
    /// 0–100; `None` when the duration is unknown.
    pub percent: Option<f64>,
    /// The kind and title the listing gave (`movie`, `episode`, `clip`…).
    pub kind: String,
    pub title: String,
}

/// An open play of a session.
#[derive(Clone, Debug)]
struct Open {
    rating_key: String,
    offset_ms: Option<i64>,
    heard: Instant,
}

/// A stop whose viewer no listing has named yet.
struct Held {
    session: String,
    open: Open,
    until: Instant,
}

/// The websocket follower.
pub struct Follower {
    viewers: Viewers,
    open: HashMap<String, Open>,
    held: Vec<Held>,
}

impl Default for Follower {
    fn default() -> Self {
        Follower::new()
    }
}

fn ended(seen: &Seen, open: &Open) -> Ended {
    let percent = match (open.offset_ms, seen.duration_ms) {
        (Some(o), Some(d)) if d > 0 => Some((o as f64 * 100.0 / d as f64).clamp(0.0, 100.0)),
        _ => None,
    };
    Ended {
        user: seen.user.clone(),
        address: seen.address.clone(),
        client: seen.client_id.clone(),
        rating_key: open.rating_key.clone(),
        percent,
        kind: seen.kind.clone(),
        title: seen.title.clone(),
    }
}

impl Follower {
    pub fn new() -> Follower {
        Follower {
            viewers: Viewers::new(CAP, TTL),
            open: HashMap::new(),
            held: Vec::new(),
        }
    }

    /// Learns the viewers of a listing.
    pub fn learn(&mut self, list: &[Session], now: Instant) {
        self.viewers.learn(list, now);
    }

    /// A websocket notification: the plays it ends (a `stopped`, or a session that moved on
    /// to another item), and whether a confirming listing should be asked for (a session no
    /// listing named yet).
    pub fn on_event(&mut self, e: &Event, latest: &[Session], now: Instant) -> (Vec<Ended>, bool) {
        let Some(ev) = event::from_websocket(e, 0) else {
            return (Vec::new(), false);
        };
        let Some(key) = ev.session_key.clone() else {
            return (Vec::new(), false);
        };
        self.viewers.heard(&key, ev.view_offset_ms, now);
        let mut out = Vec::new();
        let mut ask = false;
        // The same session playing another item: the previous one ended (autoplay).
        if let Some(prev) = self.open.get(&key) {
            if prev.rating_key != ev.rating_key {
                let prev = prev.clone();
                self.open.remove(&key);
                out.extend(self.close(&key, prev, latest, now, &mut ask));
            }
        }
        let offset = ev.view_offset_ms.or_else(|| {
            self.open
                .get(&key)
                .filter(|o| o.rating_key == ev.rating_key)
                .and_then(|o| o.offset_ms)
        });
        let open = Open {
            rating_key: ev.rating_key.clone(),
            offset_ms: offset,
            heard: now,
        };
        if ev.state == PlayState::Stopped {
            self.open.remove(&key);
            out.extend(self.close(&key, open, latest, now, &mut ask));
        } else {
            if self.viewers.of(latest, &key).is_none() {
                ask = true;
            }
            self.open.insert(key, open);
        }
        if self.open.len() > CAP {
            // Forget the longest silent (a flood of sessions that never stop).
            if let Some(k) = self
                .open
                .iter()
                .min_by_key(|(_, o)| o.heard)
                .map(|(k, _)| k.clone())
            {
                self.open.remove(&k);
            }
        }
        (out, ask)
    }

    fn close(
        &mut self,
        key: &str,
        open: Open,
        latest: &[Session],
        now: Instant,
        ask: &mut bool,
    ) -> Option<Ended> {
        match self.viewers.of(latest, key) {
            Some(seen) => Some(ended(&seen, &open)),
            None => {
                *ask = true;
                self.held.push(Held {
                    session: key.to_string(),
                    open,
                    until: now + HOLD,
                });
                None
            }
        }
    }

    /// Time passes: held stops whose viewer a listing now names; sessions a fresh listing no
    /// longer shows (`listed`: `None` when the last listing is stale — a failed poll is no
    /// observation) end with their last offset. Returns the plays and the stops dropped
    /// because no listing ever named their viewer (for a log line).
    pub fn tick(
        &mut self,
        latest: &[Session],
        listed: Option<&HashSet<String>>,
        now: Instant,
    ) -> (Vec<Ended>, Vec<String>) {
        let mut out = Vec::new();
        let mut dropped = Vec::new();
        for h in std::mem::take(&mut self.held) {
            match self.viewers.of(latest, &h.session) {
                Some(seen) => out.push(ended(&seen, &h.open)),
                None if now >= h.until => dropped.push(format!(
                    "session {} (rating key {})",
                    h.session, h.open.rating_key
                )),
                None => self.held.push(h),
            }
        }
        if let Some(listed) = listed {
            let gone: Vec<String> = self
                .open
                .iter()
                .filter(|(k, o)| {
                    !listed.contains(*k) && now.saturating_duration_since(o.heard) > HOLD
                })
                .map(|(k, _)| k.clone())
                .collect();
            for k in gone {
                if let Some(o) = self.open.remove(&k) {
                    if let Some(seen) = self.viewers.of(latest, &k) {
                        out.push(ended(&seen, &o));
                    }
                }
            }
        }
        (out, dropped)
    }

    /// Plays being followed.
    pub fn active(&self) -> usize {
        self.open.len()
    }
}

/// The Plex plays that counted lately, by (user, item): the same play heard again from
/// another Plex source within the window is not a second play.
pub struct Recent {
    window_ms: u64,
    seen: HashMap<(String, String), u64>,
}

impl Recent {
    pub fn new(window: Duration) -> Recent {
        Recent {
            window_ms: window.as_millis() as u64,
            seen: HashMap::new(),
        }
    }

    /// Whether a counted play of `item` by `user` was seen within the window before `at_ms`.
    pub fn is_repeat(&self, user: &str, item: &str, at_ms: u64) -> bool {
        self.seen
            .get(&(user.to_lowercase(), item.to_string()))
            .is_some_and(|t| at_ms.saturating_sub(*t) < self.window_ms)
    }

    /// Remembers a counted play (and forgets what is past the window).
    pub fn remember(&mut self, user: &str, item: &str, at_ms: u64) {
        let w = self.window_ms;
        self.seen.retain(|_, t| at_ms.saturating_sub(*t) < w);
        if self.seen.len() >= CAP {
            self.seen.clear();
        }
        self.seen
            .insert((user.to_lowercase(), item.to_string()), at_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plex::sessions::parse_sessions;
    use serde_json::json;

    fn session(key: &str, user: &str, rk: &str, addr: &str) -> Session {
        parse_sessions(&[
            json!({"sessionKey": key, "ratingKey": rk, "type": "movie", "title": "Dune",
            "duration": 6_000_000, "viewOffset": 0,
            "User": {"id": "1", "title": user},
            "Player": {"machineIdentifier": "tv-1", "state": "playing", "address": addr}}),
        ])
        .remove(0)
    }

    fn frame(key: &str, rk: &str, state: &str, offset: i64) -> Event {
        Event::Playing {
            session_key: key.into(),
            client: Some("tv-1".into()),
            rating_key: Some(rk.into()),
            state: state.into(),
            view_offset_ms: Some(offset),
            transcode_session: None,
        }
    }

    #[test]
    fn a_stop_at_95_percent_is_a_play_of_the_listed_viewer_with_their_address() {
        let t0 = Instant::now();
        let list = vec![session("1", "alice", "1001", "192.168.1.20")];
        let mut f = Follower::new();
        f.learn(&list, t0);
        assert!(f
            .on_event(&frame("1", "1001", "playing", 0), &list, t0)
            .0
            .is_empty());
        assert_eq!(f.active(), 1);
        let (out, ask) = f.on_event(&frame("1", "1001", "stopped", 5_700_000), &list, t0);
        assert!(!ask);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].user, "alice");
        assert_eq!(out[0].address.as_deref(), Some("192.168.1.20"));
        assert_eq!(out[0].rating_key, "1001");
        assert!((out[0].percent.unwrap() - 95.0).abs() < 1e-9);
        assert_eq!(f.active(), 0);
    }

    #[test]
    fn an_unnamed_session_is_held_then_dropped_never_given_to_someone_else() {
        let t0 = Instant::now();
        let mut f = Follower::new();
        let (out, ask) = f.on_event(&frame("9", "1001", "stopped", 5_900_000), &[], t0);
        assert!(out.is_empty() && ask);
        // A listing names it in time: the play is its viewer's.
        let list = vec![session("9", "bob", "1001", "203.0.113.9")];
        let (out, dropped) = f.tick(&list, None, t0 + Duration::from_secs(1));
        assert_eq!(out.len(), 1, "{dropped:?}");
        assert_eq!(out[0].user, "bob");
        // Another one nobody names: dropped after the hold, said once.
        f.on_event(&frame("10", "1002", "stopped", 5_900_000), &[], t0);
        let (out, dropped) = f.tick(&[], None, t0 + HOLD + Duration::from_millis(1));
        assert!(out.is_empty());
        assert_eq!(dropped.len(), 1);
        let (_, dropped) = f.tick(&[], None, t0 + HOLD * 2);
        assert!(dropped.is_empty());
    }

    #[test]
    fn a_vanished_session_ends_with_its_last_offset_but_not_on_a_stale_listing() {
        let t0 = Instant::now();
        let list = vec![session("1", "alice", "1001", "192.168.1.20")];
        let mut f = Follower::new();
        f.learn(&list, t0);
        f.on_event(&frame("1", "1001", "playing", 5_820_000), &list, t0);
        let later = t0 + HOLD + Duration::from_secs(1);
        // No fresh listing: nothing is read into the silence.
        assert!(f.tick(&[], None, later).0.is_empty());
        // Still listed: still playing.
        let keys: HashSet<String> = ["1".to_string()].into();
        assert!(f.tick(&list, Some(&keys), later).0.is_empty());
        let (out, _) = f.tick(&[], Some(&HashSet::new()), later);
        assert_eq!(out.len(), 1);
        assert!((out[0].percent.unwrap() - 97.0).abs() < 1e-9);
    }

    #[test]
    fn autoplay_ends_the_previous_item() {
        let t0 = Instant::now();
        let list = vec![session("4", "alice", "1006", "192.168.1.20")];
        let mut f = Follower::new();
        f.learn(&list, t0);
        f.on_event(&frame("4", "1006", "playing", 5_990_000), &list, t0);
        let (out, _) = f.on_event(&frame("4", "1007", "playing", 0), &list, t0);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].rating_key, "1006");
        assert_eq!(f.active(), 1);
    }

    #[test]
    fn one_play_heard_from_two_plex_sources_is_one_play() {
        let mut r = Recent::new(Duration::from_secs(3 * 3600));
        assert!(!r.is_repeat("Alice", "1001", 1_000));
        r.remember("Alice", "1001", 1_000);
        assert!(r.is_repeat("alice", "1001", 60_000));
        assert!(!r.is_repeat("bob", "1001", 60_000));
        assert!(!r.is_repeat("alice", "1002", 60_000));
        assert!(!r.is_repeat("alice", "1001", 1_000 + 3 * 3_600_000));
    }
}
