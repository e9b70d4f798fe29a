//! A fake notification endpoint answering as each kind does: a Discord webhook
//! (`/api/webhooks/{id}/{token}`: JSON with a non-empty `content` ≤ 2,000 characters → 204, else
//! 400 with Discord's error JSON), an ntfy topic (`/{topic}`: any body → 200 with the message
//! JSON, `Title` header echoed), an Apprise API (`/notify/{key}`: JSON with `body` → 200, else
//! 400) and any other path as a generic JSON hook (200). Every request recorded; failure
//! injection from `fake_service`.

use serde_json::{json, Value};

use crate::fake_service::{Answer, FakeServer, Req};

pub struct FakeNotify {
    pub server: FakeServer,
}

impl FakeNotify {
    pub fn start() -> FakeNotify {
        FakeNotify {
            server: FakeServer::start(|_| None, handle),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }
}

fn is_json(r: &Req) -> bool {
    r.header("content-type")
        .is_some_and(|c| c.starts_with("application/json"))
}

fn handle(r: &Req) -> Answer {
    if r.method != "POST" {
        return Answer::status(405);
    }
    let body: Value = r.json();
    if r.path.starts_with("/api/webhooks/") {
        let content = body["content"].as_str().unwrap_or("");
        if !is_json(r) || content.is_empty() || content.chars().count() > 2000 {
            return Answer::json(
                400,
                &json!({"message": "Cannot send an empty message", "code": 50006}),
            );
        }
        return Answer::empty(204);
    }
    if r.path.starts_with("/notify/") {
        if !is_json(r) || body["body"].as_str().is_none() {
            return Answer::text(400, "Bad FORM Payload provided");
        }
        return Answer::text(200, "Notification(s) sent.");
    }
    if r.path.starts_with("/topic-") {
        return Answer::json(
            200,
            &json!({"id": "sPs4e3Vu0qSw", "time": 1_733_300_000u64, "expires": 1_733_343_200u64,
                    "event": "message", "topic": r.path.trim_start_matches('/'),
                    "title": r.header("title").unwrap_or(""), "message": r.body}),
        );
    }
    Answer::json(200, &json!({"ok": true}))
}
