//! Who is watching: a session tracker fed by `/status/sessions` and the notification socket.
//!
//! The transcoder's arguments carry no user and no client, and Plex's `playing` notifications
//! carry no user either (apis.md §1.7); only `/status/sessions` (admin token) names the
//! viewer. The tracker keeps the last listing, joins notifications onto it by `sessionKey`
//! and transcode key, and *learns* client id → viewer from every session it sees, so a
//! `playing` notification from a known client names its viewer before Plex lists the session.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use downshiftarr_shim::policy::Viewer;
use serde::Serialize;
use serde_json::Value;

use crate::plex::events::Event;
use crate::plex::json::{n, s};

/// One playing session, as `/status/sessions` shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Session {
    /// `sessionKey`: what notifications carry.
    pub session_key: String,
    /// `Session.id`: the id `/status/sessions/terminate` needs (absent for some music
    /// sessions, which cannot be terminated).
    pub session_id: Option<String>,
    /// The transcode key, bare (`/transcode/sessions/` stripped).
    pub transcode: Option<String>,
    pub rating_key: Option<String>,
    /// The source media (version) being played.
    pub media_id: Option<String>,
    pub title: String,
    pub kind: String,
    pub viewer: Viewer,
    /// `TranscodeSession.videoDecision == "transcode"`.
    pub video_transcode: bool,
    pub view_offset_ms: Option<i64>,
    pub state: String,
    /// Live TV sessions carry a non-library rating key.
    pub live: bool,
    /// `Player.address`: the client's address as Plex sees it (a proxy's or a VPN's address
    /// when there is one in between).
    pub address: Option<String>,
    /// `Session.location`: `lan` or `wan`.
    pub location: Option<String>,
    /// `Session.bandwidth` (kbit/s): what Plex reserves for the stream.
    pub bandwidth_kbps: Option<i64>,
    /// The played version's `Media.bitrate` (kbit/s).
    pub bitrate_kbps: Option<i64>,
    pub duration_ms: Option<i64>,
    /// `TranscodeSession.videoDecision` (`transcode`, `copy`, …); `None` when Plex plays the
    /// file directly.
    pub video_decision: Option<String>,
}

fn obj<'a>(v: &'a Value, k: &str) -> Option<&'a Value> {
    match v.get(k)? {
        Value::Array(a) => a.first(),
        o => Some(o),
    }
}

fn flag(v: &Value, k: &str) -> Option<bool> {
    match v.get(k)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => Some(s == "1" || s.eq_ignore_ascii_case("true")),
        Value::Number(n) => Some(n.as_i64() == Some(1)),
        _ => None,
    }
}

/// Parses `/status/sessions` `Metadata[]`. Entries without a `sessionKey` are skipped.
pub fn parse_sessions(list: &[Value]) -> Vec<Session> {
    list.iter().filter_map(parse_one).collect()
}

fn parse_one(m: &Value) -> Option<Session> {
    let session_key = s(m, "sessionKey")?;
    let user = obj(m, "User");
    let player = obj(m, "Player");
    let session = obj(m, "Session");
    let ts = obj(m, "TranscodeSession");
    let rating_key = s(m, "ratingKey");
    let media = m.get("Media").and_then(Value::as_array).and_then(|a| {
        a.iter()
            .find(|x| flag(x, "selected") == Some(true))
            .or(a.first())
    });
    let video_decision = ts.and_then(|t| s(t, "videoDecision"));
    let local = player
        .and_then(|p| flag(p, "local"))
        .or_else(|| session.and_then(|s2| s(s2, "location")).map(|l| l == "lan"));
    Some(Session {
        session_key,
        session_id: session.and_then(|x| s(x, "id")),
        transcode: ts
            .and_then(|t| s(t, "key"))
            .map(|k| k.trim_start_matches("/transcode/sessions/").to_string()),
        live: rating_key
            .as_deref()
            .is_some_and(|k| k.contains("://") || k.starts_with('/'))
            || s(m, "key").is_some_and(|k| k.starts_with("/livetv/")),
        rating_key,
        media_id: media.and_then(|x| s(x, "id")),
        title: s(m, "title").unwrap_or_default(),
        kind: s(m, "type").unwrap_or_default(),
        viewer: Viewer {
            user: user.and_then(|u| s(u, "title")),
            client: player.and_then(|p| s(p, "product")),
            device: player.and_then(|p| s(p, "title").or_else(|| s(p, "device"))),
            platform: player.and_then(|p| s(p, "platform")),
            client_id: player.and_then(|p| s(p, "machineIdentifier")),
            local,
        },
        video_transcode: video_decision.as_deref() == Some("transcode"),
        video_decision,
        view_offset_ms: n(m, "viewOffset"),
        address: player.and_then(|p| s(p, "address")),
        location: session.and_then(|x| s(x, "location")),
        bandwidth_kbps: session.and_then(|x| n(x, "bandwidth")),
        bitrate_kbps: media.and_then(|x| n(x, "bitrate")),
        duration_ms: n(m, "duration").or_else(|| media.and_then(|x| n(x, "duration"))),
        state: player
            .and_then(|p| s(p, "state"))
            .unwrap_or_else(|| "unknown".into()),
    })
}

/// How long a learned client → viewer pairing is trusted.
const LEARNED_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Default)]
struct State {
    sessions: HashMap<String, Session>,
    /// Transcode key → client id, from `playing` notifications (before Plex lists it).
    transcode_client: HashMap<String, (String, Instant)>,
    /// Client id → the viewer last seen on it.
    clients: HashMap<String, (Viewer, Instant)>,
}

/// The tracker. Cheap to query from socket workers.
#[derive(Default)]
pub struct Tracker {
    state: Mutex<State>,
}

impl Tracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the session list with a fresh `/status/sessions` listing.
    pub fn replace(&self, list: Vec<Session>) {
        let mut st = self.lock();
        let now = Instant::now();
        for s in &list {
            if let (Some(c), true) = (&s.viewer.client_id, s.viewer.user.is_some()) {
                st.clients.insert(c.clone(), (s.viewer.clone(), now));
            }
        }
        st.sessions = list
            .into_iter()
            .map(|s| (s.session_key.clone(), s))
            .collect();
        st.clients.retain(|_, (_, t)| t.elapsed() < LEARNED_TTL);
        st.transcode_client
            .retain(|_, (_, t)| t.elapsed() < Duration::from_secs(6 * 3600));
    }

    /// Applies a notification.
    pub fn on_event(&self, e: &Event) {
        let mut st = self.lock();
        match e {
            Event::Playing {
                session_key,
                client,
                transcode_session,
                state,
                view_offset_ms,
                ..
            } => {
                if let (Some(t), Some(c)) = (transcode_session, client) {
                    st.transcode_client
                        .insert(t.clone(), (c.clone(), Instant::now()));
                }
                if state == "stopped" {
                    st.sessions.remove(session_key);
                } else if let Some(s) = st.sessions.get_mut(session_key) {
                    s.state = state.clone();
                    if view_offset_ms.is_some() {
                        s.view_offset_ms = *view_offset_ms;
                    }
                    if transcode_session.is_some() {
                        s.transcode = transcode_session.clone();
                    }
                }
            }
            Event::TranscodeSession { phase, key, .. } if phase == "end" => {
                st.transcode_client.remove(key);
                for s in st.sessions.values_mut() {
                    if s.transcode.as_deref() == Some(key) {
                        s.video_transcode = false;
                    }
                }
            }
            _ => {}
        }
    }

    /// The state (`playing`, `paused`, …) the tracker holds for a session.
    pub fn state_of(&self, session_key: &str) -> Option<String> {
        self.lock()
            .sessions
            .get(session_key)
            .map(|s| s.state.clone())
    }

    /// Who is watching transcode session `transcode`, if known.
    pub fn viewer(&self, transcode: &str) -> Option<Viewer> {
        let st = self.lock();
        if let Some(s) = st
            .sessions
            .values()
            .find(|s| s.transcode.as_deref() == Some(transcode))
        {
            return Some(s.viewer.clone());
        }
        let (client, _) = st.transcode_client.get(transcode)?;
        st.clients.get(client).map(|(v, _)| v.clone())
    }

    /// The session transcoding `transcode`.
    #[cfg(test)]
    pub fn by_transcode(&self, transcode: &str) -> Option<Session> {
        self.lock()
            .sessions
            .values()
            .find(|s| s.transcode.as_deref() == Some(transcode))
            .cloned()
    }
}

/// Who is playing now, for every job: the tracker (for the shim's viewer question) and the
/// last `/status/sessions` listing as an immutable snapshot. The `sessions` job publishes;
/// the guard (and every later job) waits for a newer snapshot. A failed poll publishes
/// nothing: a consumer never mistakes "Plex did not answer" for "nobody is playing".
#[derive(Default)]
pub struct Sessions {
    pub tracker: Tracker,
    latest: Mutex<Published>,
    changed: Condvar,
    /// One on-demand listing at a time (the shim's viewer question).
    pub refreshing: Mutex<()>,
    /// A consumer saw something worth confirming at once (the throttle's first sight of a
    /// remote stream): the sessions job polls again soon instead of at the backstop.
    confirm: std::sync::atomic::AtomicBool,
}

/// The latest snapshot and its generation (0: none yet).
#[derive(Clone, Default)]
pub struct Published {
    pub generation: u64,
    pub at: Option<Instant>,
    pub list: Arc<[Session]>,
    /// When the notification that asked for this listing arrived (`None`: a backstop poll).
    pub cause: Option<Instant>,
}

impl Sessions {
    fn latest_lock(&self) -> std::sync::MutexGuard<'_, Published> {
        self.latest.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh listing: the tracker takes it and waiting consumers wake up.
    pub fn publish(&self, list: Vec<Session>) {
        self.publish_caused(list, None);
    }

    /// [`publish`](Self::publish), with the arrival of the notification that asked for it.
    pub fn publish_caused(&self, list: Vec<Session>, cause: Option<Instant>) {
        self.tracker.replace(list.clone());
        let mut p = self.latest_lock();
        p.generation += 1;
        p.at = Some(Instant::now());
        p.cause = cause;
        p.list = list.into();
        drop(p);
        self.changed.notify_all();
    }

    /// Asks the sessions job for a confirming listing soon.
    pub fn request_confirmation(&self) {
        self.confirm
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether a confirmation was asked for since the last call.
    pub fn take_confirmation(&self) -> bool {
        self.confirm
            .swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    pub fn latest(&self) -> Published {
        self.latest_lock().clone()
    }

    /// The first snapshot newer than `generation`, waiting up to `timeout`.
    pub fn wait_newer(&self, generation: u64, timeout: Duration) -> Option<Published> {
        let p = self.latest_lock();
        let (p, _) = self
            .changed
            .wait_timeout_while(p, timeout, |p| p.generation <= generation)
            .unwrap_or_else(|e| e.into_inner());
        (p.generation > generation).then(|| p.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn listing() -> Vec<Value> {
        vec![
            json!({"sessionKey": "7", "ratingKey": "55", "title": "Film", "type": "movie", "viewOffset": 61000,
            "Media": [{"id": 551, "selected": true}],
            "User": {"id": "1", "title": "alice"},
            "Player": {"machineIdentifier": "tv-1", "product": "Plex for Android (TV)", "title": "Shield", "platform": "Android", "state": "playing", "local": false},
            "Session": {"id": "abcsession", "location": "wan"},
            "TranscodeSession": {"key": "/transcode/sessions/tx-1", "videoDecision": "transcode"}}),
        ]
    }

    #[test]
    fn parses_and_answers_by_transcode_key() {
        let t = Tracker::default();
        t.replace(parse_sessions(&listing()));
        let s = t.by_transcode("tx-1").unwrap();
        assert_eq!(s.session_id.as_deref(), Some("abcsession"));
        assert_eq!(s.media_id.as_deref(), Some("551"));
        assert!(s.video_transcode);
        let v = t.viewer("tx-1").unwrap();
        assert_eq!(v.user.as_deref(), Some("alice"));
        assert_eq!(v.local, Some(false));
    }

    #[test]
    fn learns_clients_and_names_a_new_transcode_from_a_notification() {
        let t = Tracker::default();
        t.replace(parse_sessions(&listing()));
        t.replace(Vec::new()); // alice stopped
        assert!(t.viewer("tx-2").is_none());
        t.on_event(&Event::Playing {
            session_key: "8".into(),
            client: Some("tv-1".into()),
            rating_key: Some("56".into()),
            state: "buffering".into(),
            view_offset_ms: Some(0),
            transcode_session: Some("tx-2".into()),
        });
        assert_eq!(t.viewer("tx-2").unwrap().user.as_deref(), Some("alice"));
    }

    #[test]
    fn xml_shaped_flags_and_missing_parts_are_tolerated() {
        let list = vec![
            json!({"sessionKey": "2", "Player": {"local": "1"}, "Session": [{"id": "x"}]}),
            json!({"title": "no key"}),
        ];
        let s = parse_sessions(&list);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].viewer.local, Some(true));
        assert_eq!(s[0].session_id.as_deref(), Some("x"));
        assert!(!s[0].video_transcode);
    }

    #[test]
    fn snapshots_wake_waiters_and_carry_what_jobs_need() {
        let hub = Arc::new(Sessions::default());
        assert_eq!(hub.latest().generation, 0);
        assert!(hub.wait_newer(0, Duration::from_millis(10)).is_none());
        let h = hub.clone();
        let waiter = std::thread::spawn(move || h.wait_newer(0, Duration::from_secs(5)));
        std::thread::sleep(Duration::from_millis(20));
        let mut l = listing();
        l[0]["Player"]["address"] = json!("10.8.0.3");
        l[0]["Session"]["bandwidth"] = json!(5212);
        l[0]["Media"][0]["bitrate"] = json!(4000);
        l[0]["duration"] = json!(7_200_000);
        hub.publish(parse_sessions(&l));
        let p = waiter.join().unwrap().expect("woken by the publish");
        assert_eq!(p.generation, 1);
        let s = &p.list[0];
        assert_eq!(s.address.as_deref(), Some("10.8.0.3"));
        assert_eq!(s.location.as_deref(), Some("wan"));
        assert_eq!(s.bandwidth_kbps, Some(5212));
        assert_eq!(s.bitrate_kbps, Some(4000));
        assert_eq!(s.duration_ms, Some(7_200_000));
        assert_eq!(s.video_decision.as_deref(), Some("transcode"));
        // The tracker took the same listing.
        assert_eq!(
            hub.tracker.viewer("tx-1").unwrap().user.as_deref(),
            Some("alice")
        );
        assert!(hub.wait_newer(1, Duration::from_millis(10)).is_none());
    }
}
