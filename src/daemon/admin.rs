//! The daemon's admin requests: what `downshiftarr status` and `downshiftarr tautulli` ask the
//! running daemon. They travel on the shim's socket in the shim's framing
//! (`downshiftarr_shim::protocol`: a 4-byte big-endian length, then JSON with `"v": 1` and a
//! `"type"`), but the shim never sends them, so they are defined here and not in the shim's
//! crate (issue 10). Their tags never overlap the shim's ([`protocol::REQUEST_TYPES`]).
//!
//! | request | response |
//! |---|---|
//! | `{"v":1,"type":"status"}` | `{"v":1,"type":"status","status":{"version":…,"healthy":…,"index":{…},"last_sync":{…},"jobs":{…},…}}` ([`Status`]) |
//! | `{"v":1,"type":"tautulli_event","event":{…}}` | `{"v":1,"type":"enforced","outcome":{"action":…,"reason":…}}` |
//! | a request neither protocol reads | `{"v":1,"type":"error","message":"…"}` |
//!
//! The daemon reads a frame as the shim's `Request` first (the `lookup_source` hot path pays
//! nothing for the admin requests), then as an [`AdminRequest`] ([`decode_request`]). The JSON
//! is the one these requests had when they lived in the shim's protocol, so a `status` or a
//! `tautulli` of either version talks to a daemon of either version.

use downshiftarr_shim::protocol::{self, ClientError, Request};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::status::Status;

/// A request only the admin CLI sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AdminRequest {
    /// The daemon's health, for `downshiftarr status`.
    Status,
    /// A Tautulli trigger handed over by `downshiftarr tautulli`. Kept as JSON: a trigger the
    /// daemon cannot read is answered with a `failed` outcome that says why, not a frame error.
    TautulliEvent { event: Value },
}

/// The daemon's answer to an [`AdminRequest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AdminResponse {
    /// Uptime, index counts, last sync, job health (boxed: the other answers are small).
    Status { status: Box<Status> },
    /// What the daemon did about a Tautulli trigger (`{"action":…,"reason":…,…}`).
    Enforced { outcome: Value },
    /// The request could not be read (the shim protocol's error, same shape).
    Error { message: String },
}

/// The `"type"` of every [`AdminRequest`].
pub const ADMIN_TYPES: &[&str] = &["status", "tautulli_event"];

/// A request read from the socket: the shim's, or the admin CLI's.
#[derive(Clone, Debug, PartialEq)]
pub enum Incoming {
    Shim(Request),
    Admin(AdminRequest),
}

/// Reads a frame body as the shim's request, else as an admin request. The error of a frame
/// neither reads is the one of the protocol its `"type"` belongs to; an unknown type is named
/// with every type the daemon answers.
pub fn decode_request(body: &[u8]) -> Result<Incoming, ClientError> {
    let shim_err = match protocol::decode::<Request>(body) {
        Ok(r) => return Ok(Incoming::Shim(r)),
        Err(ClientError::BadFrame(e)) => e,
        Err(e) => return Err(e),
    };
    let admin_err = match protocol::decode::<AdminRequest>(body) {
        Ok(r) => return Ok(Incoming::Admin(r)),
        Err(ClientError::BadFrame(e)) => e,
        Err(e) => return Err(e),
    };
    #[derive(Deserialize)]
    struct Tag {
        #[serde(rename = "type")]
        kind: Option<String>,
    }
    let kind = serde_json::from_slice::<Tag>(body)
        .ok()
        .and_then(|t| t.kind);
    Err(ClientError::BadFrame(match kind {
        Some(k) if ADMIN_TYPES.contains(&k.as_str()) => admin_err,
        Some(k) if !protocol::REQUEST_TYPES.contains(&k.as_str()) => format!(
            "unknown request type {k:?}: the daemon answers {} (the shim's) and {} (the admin commands')",
            protocol::REQUEST_TYPES.join(", "),
            ADMIN_TYPES.join(", ")
        ),
        _ => shim_err,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use downshiftarr_shim::protocol::{encode, Response};
    use serde_json::json;

    fn frame_text(f: &[u8]) -> &str {
        assert_eq!(
            u32::from_be_bytes(f[..4].try_into().unwrap()) as usize,
            f.len() - 4
        );
        std::str::from_utf8(&f[4..]).unwrap()
    }

    /// The bytes these requests had when they were the shim protocol's `Request::Status` /
    /// `Request::TautulliEvent` and `Response::Status { status: Value }` / `Response::Enforced`.
    #[test]
    fn the_wire_format_is_the_one_before_the_move() {
        assert_eq!(
            frame_text(&encode(&AdminRequest::Status)),
            r#"{"v":1,"type":"status"}"#
        );
        assert_eq!(
            frame_text(&encode(&AdminRequest::TautulliEvent {
                event: json!({"rating_key": "12"})
            })),
            r#"{"v":1,"type":"tautulli_event","event":{"rating_key":"12"}}"#
        );
        let mut status = Status {
            version: "1.2.3".into(),
            healthy: true,
            ..Status::default()
        };
        status.index.movies = 7;
        status
            .sections
            .insert("throttle".into(), json!({"limited": false}));
        let sent: Value = serde_json::from_str(frame_text(&encode(&AdminResponse::Status {
            status: Box::new(status.clone()),
        })))
        .unwrap();
        assert_eq!(
            sent,
            json!({"v": 1, "type": "status", "status": serde_json::to_value(&status).unwrap()})
        );
        assert_eq!(sent["status"]["index"]["movies"], 7);
        assert_eq!(sent["status"]["throttle"]["limited"], false);
        let outcome = json!({"action": "terminated", "reason": "refused by the shim"});
        assert_eq!(
            frame_text(&encode(&AdminResponse::Enforced {
                outcome: outcome.clone()
            })),
            r#"{"v":1,"type":"enforced","outcome":{"action":"terminated","reason":"refused by the shim"}}"#
        );
        // The error answer has the shim protocol's shape: either client reads it.
        let err = encode(&Response::Error {
            message: "m".into(),
        });
        assert_eq!(
            protocol::decode::<AdminResponse>(&err[4..]).unwrap(),
            AdminResponse::Error {
                message: "m".into()
            }
        );
        // A status answer as an older daemon wrote it (partial) still reads, typed.
        let old = br#"{"v":1,"type":"status","status":{"healthy":false,"index":{"files":3}}}"#;
        let AdminResponse::Status { status } = protocol::decode::<AdminResponse>(old).unwrap()
        else {
            panic!("not a status")
        };
        assert!(!status.healthy);
        assert_eq!(status.index.files, 3);
    }

    #[test]
    fn every_admin_type_is_listed_and_none_is_the_shims() {
        let all = [
            AdminRequest::Status,
            AdminRequest::TautulliEvent { event: json!({}) },
        ];
        for r in &all {
            // A new variant fails to compile here: add it to `all` and to ADMIN_TYPES.
            match r {
                AdminRequest::Status | AdminRequest::TautulliEvent { .. } => {}
            }
            let v = serde_json::to_value(r).unwrap();
            let t = v["type"].as_str().unwrap();
            assert!(ADMIN_TYPES.contains(&t), "{t} is not in ADMIN_TYPES");
            assert!(!protocol::REQUEST_TYPES.contains(&t), "{t} is the shim's");
        }
        assert_eq!(all.len(), ADMIN_TYPES.len());
    }

    #[test]
    fn frames_are_told_apart_and_errors_name_what_failed() {
        let d = |s: &str| decode_request(s.as_bytes());
        assert_eq!(
            d(r#"{"v":1,"type":"lookup_source","path":"/m/A.mkv"}"#).unwrap(),
            Incoming::Shim(Request::LookupSource {
                path: "/m/A.mkv".into()
            })
        );
        assert_eq!(
            d(r#"{"v":1,"type":"status"}"#).unwrap(),
            Incoming::Admin(AdminRequest::Status)
        );
        assert_eq!(
            d(r#"{"v":1,"type":"tautulli_event","event":{"rating_key":12}}"#).unwrap(),
            Incoming::Admin(AdminRequest::TautulliEvent {
                event: json!({"rating_key": 12})
            })
        );
        let msg = |s: &str| match d(s) {
            Err(ClientError::BadFrame(m)) => m,
            other => panic!("{s}: {other:?}"),
        };
        // An unknown type: named, with every type the daemon answers.
        let m = msg(r#"{"v":1,"type":"nope"}"#);
        assert!(m.starts_with(r#"unknown request type "nope""#), "{m}");
        for t in [
            "ping",
            "lookup_source",
            "session_context",
            "status",
            "tautulli_event",
        ] {
            assert!(m.contains(t), "{t} not in {m}");
        }
        // A known type with a field missing: that protocol's own error.
        let m = msg(r#"{"v":1,"type":"tautulli_event"}"#);
        assert!(m.contains("missing field `event`"), "{m}");
        let m = msg(r#"{"v":1,"type":"lookup_source"}"#);
        assert!(m.contains("missing field `path`"), "{m}");
        // Not JSON, no type, a type that is not a string.
        assert!(!msg("\u{1}garbage").is_empty());
        assert!(msg(r#"{"v":1}"#).contains("type"));
        assert!(!msg(r#"{"v":1,"type":5}"#).is_empty());
        // Another protocol version is said as such, whatever the type.
        assert!(matches!(
            d(r#"{"v":2,"type":"status"}"#),
            Err(ClientError::Version(2))
        ));
    }
}
