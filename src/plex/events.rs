//! Plex's real-time notifications: the websocket at `/:/websockets/notifications`, frames
//! turned into typed events for any job to subscribe to, reconnection with back-off by the
//! supervisor. Unknown notification types are ignored (apis.md §1.7).
//!
//! WebSocket frames are `{"NotificationContainer":{"type":T,"size":N,"<Kind>Notification":[…]}}`
//! — always wrapped, always arrays — unlike EventSource frames. Plex sends no application
//! pings, so we ping and treat silence as a dead connection.

use std::net::TcpStream;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tungstenite::client::IntoClientRequest;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::Message;

use crate::plex::json::{n, s};

/// A notification, typed.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// `PlaySessionStateNotification`: no user, no player address (join with /status/sessions).
    Playing {
        session_key: String,
        client: Option<String>,
        rating_key: Option<String>,
        state: String,
        view_offset_ms: Option<i64>,
        transcode_session: Option<String>,
    },
    /// `TimelineEntry`: library items created, processed, deleted (state 9).
    Timeline {
        item: String,
        section: Option<String>,
        kind: Option<i64>,
        state: i64,
        metadata_state: Option<String>,
    },
    /// `ActivityNotification`: scans and refreshes (`library.update.section` …).
    Activity { event: String, kind: String },
    /// `transcodeSession.start|update|end`, with the key normalised to the bare id.
    TranscodeSession {
        phase: String,
        key: String,
        detail: Value,
    },
}

impl Event {
    /// A library change worth a sync (a finished scan or refresh), debounced by the caller.
    pub fn is_scan_finished(&self) -> bool {
        matches!(self, Event::Activity { event, kind } if event == "ended" && kind.starts_with("library."))
    }

    /// The ratingKey Plex says it deleted: a timeline entry with state 9 — Plex's own word,
    /// so it confirms a deletion without a listing (issue 9 §1).
    pub fn deleted_item(&self) -> Option<&str> {
        match self {
            Event::Timeline { item, state: 9, .. } => Some(item),
            _ => None,
        }
    }
}

/// Turns one websocket frame into events. Malformed or unknown frames give none.
pub fn parse(text: &str) -> Vec<Event> {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return Vec::new();
    };
    let c = v.get("NotificationContainer").unwrap_or(&v);
    let kind = s(c, "type").unwrap_or_default();
    let list = |key: &str| {
        c.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    match kind.as_str() {
        "playing" => list("PlaySessionStateNotification")
            .iter()
            .filter_map(|p| {
                Some(Event::Playing {
                    session_key: s(p, "sessionKey")?,
                    client: s(p, "clientIdentifier"),
                    rating_key: s(p, "ratingKey"),
                    state: s(p, "state").unwrap_or_default(),
                    view_offset_ms: n(p, "viewOffset"),
                    transcode_session: s(p, "transcodeSession").map(|k| bare(&k)),
                })
            })
            .collect(),
        "timeline" => list("TimelineEntry")
            .iter()
            .filter_map(|t| {
                Some(Event::Timeline {
                    item: s(t, "itemID")?,
                    section: s(t, "sectionID"),
                    kind: n(t, "type"),
                    state: n(t, "state")?,
                    metadata_state: s(t, "metadataState"),
                })
            })
            .collect(),
        "activity" => list("ActivityNotification")
            .iter()
            .filter_map(|a| {
                Some(Event::Activity {
                    event: s(a, "event")?,
                    kind: s(a.get("Activity")?, "type")?,
                })
            })
            .collect(),
        t if t.starts_with("transcodeSession.") => list("TranscodeSession")
            .iter()
            .filter_map(|x| {
                Some(Event::TranscodeSession {
                    phase: t["transcodeSession.".len()..].to_string(),
                    key: bare(&s(x, "key")?),
                    detail: x.clone(),
                })
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// `/transcode/sessions/<id>` → `<id>` (the key format varies by endpoint, apis.md §1.2).
fn bare(k: &str) -> String {
    k.trim_start_matches("/transcode/sessions/").to_string()
}

/// Fans events out to every subscriber.
#[derive(Default)]
pub struct Bus {
    subscribers: Mutex<Vec<Sender<Event>>>,
}

impl Bus {
    pub fn subscribe(&self) -> Receiver<Event> {
        let (tx, rx) = channel();
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tx);
        rx
    }

    pub fn publish(&self, e: &Event) {
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|s| s.send(e.clone()).is_ok());
    }
}

/// Connects and publishes events until `stop()` says so (the daemon's shutdown); returns an error when the connection drops
/// (the supervisor reconnects with back-off).
pub fn listen(base: &str, token: &str, bus: &Bus, stop: &dyn Fn() -> bool) -> Result<()> {
    let url = notification_url(base)?;
    let mut req = url
        .as_str()
        .into_client_request()
        .context("notification URL")?;
    req.headers_mut()
        .insert("X-Plex-Token", token.parse().context("token header")?);
    let (mut ws, _) = tungstenite::connect(req)
        .map_err(|e| anyhow::anyhow!("unable to open Plex notifications: {e}"))?;
    match ws.get_mut() {
        MaybeTlsStream::Plain(s) => set_timeouts(s),
        MaybeTlsStream::Rustls(s) => set_timeouts(s.get_ref()),
        _ => {}
    }
    tracing::info!("listening to Plex notifications");
    let mut last_seen = Instant::now();
    let mut last_ping = Instant::now();
    while !stop() {
        match ws.read() {
            Ok(Message::Text(t)) => {
                last_seen = Instant::now();
                for e in parse(&t) {
                    bus.publish(&e);
                }
            }
            Ok(Message::Close(_)) => bail!("Plex closed the notification connection"),
            Ok(_) => last_seen = Instant::now(),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => bail!("notification connection lost: {e}"),
        }
        if last_ping.elapsed() > Duration::from_secs(20) {
            last_ping = Instant::now();
            ws.send(Message::Ping(Vec::new().into()))
                .map_err(|e| anyhow::anyhow!("notification connection lost: {e}"))?;
        }
        if last_seen.elapsed() > Duration::from_secs(75) {
            bail!("no notification traffic for 75 s: reconnecting");
        }
    }
    let _ = ws.close(None);
    Ok(())
}

/// `http://host:port` → `ws://host:port/:/websockets/notifications`; `https` → `wss` (TLS with
/// the public roots: Plex's `*.plex.direct` certificates verify; a self-signed one does not).
pub fn notification_url(base: &str) -> Result<String> {
    let (scheme, rest) = match base.split_once("://") {
        Some(("http", rest)) => ("ws", rest),
        Some(("https", rest)) => ("wss", rest),
        _ => bail!("plex.url {base:?} is not an http:// or https:// URL"),
    };
    Ok(format!(
        "{scheme}://{}/:/websockets/notifications",
        rest.trim_end_matches('/')
    ))
}

fn set_timeouts(s: &TcpStream) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(name: &str) -> String {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures/plex-payloads")
                .join(name),
        )
        .unwrap()
    }

    #[test]
    fn recorded_frames() {
        let e = parse(&payload("plex-ws-playing-error.json"));
        assert!(
            matches!(&e[0], Event::Playing { state, .. } if state == "error"),
            "{e:?}"
        );
        let e = parse(&payload("plex-ws-transcodesession-end.json"));
        assert!(
            matches!(&e[0], Event::TranscodeSession { phase, key, .. } if phase == "end" && !key.starts_with('/')),
            "{e:?}"
        );
        let e = parse(&payload("plex-ws-livetv-buffering-with-transcode.json"));
        assert!(
            matches!(
                &e[0],
                Event::Playing {
                    transcode_session: Some(_),
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn activity_and_timeline() {
        let e = parse(
            r#"{"NotificationContainer":{"type":"activity","size":1,"ActivityNotification":[{"event":"ended","uuid":"u","Activity":{"type":"library.update.section","title":"Scanning"}}]}}"#,
        );
        assert!(e[0].is_scan_finished());
        let e = parse(
            r#"{"NotificationContainer":{"type":"timeline","size":1,"TimelineEntry":[{"itemID":"55","sectionID":"1","type":1,"state":9,"metadataState":"deleted"}]}}"#,
        );
        assert_eq!(
            e[0],
            Event::Timeline {
                item: "55".into(),
                section: Some("1".into()),
                kind: Some(1),
                state: 9,
                metadata_state: Some("deleted".into())
            }
        );
        assert_eq!(e[0].deleted_item(), Some("55"), "state 9 is a deletion");
        let e = parse(
            r#"{"NotificationContainer":{"type":"timeline","size":1,"TimelineEntry":[{"itemID":"55","sectionID":"1","type":1,"state":5}]}}"#,
        );
        assert_eq!(e[0].deleted_item(), None, "state 5 (processed) is not");
    }

    #[test]
    fn notification_urls() {
        assert_eq!(
            notification_url("http://127.0.0.1:32400/").unwrap(),
            "ws://127.0.0.1:32400/:/websockets/notifications"
        );
        assert_eq!(
            notification_url("https://10-0-0-5.abc.plex.direct:32400").unwrap(),
            "wss://10-0-0-5.abc.plex.direct:32400/:/websockets/notifications"
        );
        assert!(notification_url("plex:32400").is_err());
    }

    #[test]
    fn https_plex_urls_speak_tls() {
        // A server that is not TLS: the client must try a TLS handshake and say it failed.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            if let Ok((mut c, _)) = l.accept() {
                use std::io::Write;
                let _ = c.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
            }
        });
        let err = listen(
            &format!("https://127.0.0.1:{port}"),
            "token-not-logged-0000",
            &Bus::default(),
            &|| false,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("unable to open Plex notifications"),
            "{err}"
        );
        assert!(!err.contains("token-not-logged"), "{err}");
    }

    #[test]
    fn unknown_and_malformed_frames_are_ignored() {
        assert!(parse(r#"{"NotificationContainer":{"type":"reachability","size":1}}"#).is_empty());
        assert!(parse("not json").is_empty());
        assert!(parse(
            r#"{"NotificationContainer":{"type":"playing","PlaySessionStateNotification":"x"}}"#
        )
        .is_empty());
    }
}
