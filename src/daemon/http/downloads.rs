//! The downloads job's HTTP surface (issue 13).
//!
//! - `POST /webhook/jellyfin/<daemon.webhook_token>`: Jellyfin's webhook plugin. The body is
//!   read as JSON whatever the Content-Type (the plugin's Generic destination sends
//!   `text/plain` unless told otherwise, apis.md §5.1); with `downloads.webhook_secret_header`
//!   set, that header must carry `downloads.webhook_secret` (compared in constant time). A
//!   wrong token is a 404, as for Plex's webhook (the path is never confirmed).
//! - `POST /jellyfin/playback`: the original's path, which had no token. Taken from loopback
//!   (a webhook plugin on the same host, or behind nothing) or with the shared secret header;
//!   from anywhere else it is refused (403), so moving from the original never opens an
//!   unauthenticated door on the network.
//! - `GET /api/downloads/status`, `GET /api/downloads/decisions?since=7d&limit=N`,
//!   `POST /api/downloads/reevaluate/<id>` (behind the ops API's authorization).
//!
//! Nothing is decided here: a body is checked for shape (a JSON object), queued on
//! `ctx.downloads` and answered at once; the job parses and decides.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tiny_http::{Method, Request};

use super::{
    ct_eq, header_value, json_answer, not_allowed, query_param, respond, text, with_body, State,
    MAX_WEBHOOK_BODY,
};
use crate::daemon::ctx::Ctx;
use crate::model::downloads::Intake;
use crate::store::Store;

/// The most decisions one `/api/downloads/decisions` answer carries.
pub const MAX_DECISIONS: usize = 1000;

/// Which door a Jellyfin webhook came through (the metrics' `path` label).
#[derive(Clone, Copy)]
pub enum Door {
    /// `/webhook/jellyfin/<token>` (the token already checked).
    Token,
    /// `/jellyfin/playback`, the original's path.
    Original,
}

impl Door {
    fn label(self) -> &'static str {
        match self {
            Door::Token => "token",
            Door::Original => "original",
        }
    }
}

/// Whether the shared secret header is required, and if so whether `given` carries it.
/// `Ok(true)`: required and matched; `Ok(false)`: not required; `Err`: required and missing
/// or wrong (the message names the header, never the secret).
pub fn check_secret(
    header: &str,
    secret: Option<&str>,
    given: Option<&str>,
) -> Result<bool, String> {
    let header = header.trim();
    if header.is_empty() {
        return Ok(false);
    }
    let Some(secret) = secret.filter(|s| !s.is_empty()) else {
        return Err(format!(
            "downloads.webhook_secret_header is {header:?} but downloads.webhook_secret is not set: set it (or DOWNLOADS_WEBHOOK_SECRET)"
        ));
    };
    match given {
        Some(g) if ct_eq(g.trim().as_bytes(), secret.as_bytes()) => Ok(true),
        Some(_) => Err(format!("wrong shared secret in the {header} header")),
        None => Err(format!(
            "the {header} header with the shared secret is missing"
        )),
    }
}

/// A Jellyfin webhook body as JSON, whatever the Content-Type said (a UTF-8 BOM tolerated).
pub fn jellyfin_body(body: &[u8]) -> Result<Value, String> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "body is not JSON ({e}): enable \"Send All Properties\" in the Jellyfin webhook plugin"
        )
    })?;
    if !v.is_object() {
        return Err("body must be a JSON object".into());
    }
    Ok(v)
}

/// A Jellyfin webhook through either door: the secret, then the body, then the queue.
pub(super) fn jellyfin(req: Request, st: &State, method: &Method, door: Door, loopback: bool) {
    let counter = st.downloads_hooks.clone();
    if *method != Method::Post {
        return respond(req, not_allowed("POST"));
    }
    let cfg = st.ctx.config();
    let d = &cfg.downloads;
    if !d.enabled() {
        counter.inc_with(&[door.label(), "off"]);
        return respond(
            req,
            text(
                404,
                "the downloads job is off: set downloads.radarr_url (or RADARR_URL)",
            ),
        );
    }
    let secret = d.webhook_secret.get().ok().flatten();
    let given = match d.webhook_secret_header.trim() {
        "" => None,
        h => header_value(&req, h),
    };
    let secret_ok = match check_secret(
        &d.webhook_secret_header,
        secret.as_ref().map(|s| s.expose()),
        given,
    ) {
        Ok(matched) => matched,
        Err(e) => {
            counter.inc_with(&[door.label(), "unauthorized"]);
            tracing::warn!("downloads: Jellyfin webhook refused: {e}");
            return respond(req, text(401, e));
        }
    };
    if matches!(door, Door::Original) && !loopback && !secret_ok {
        counter.inc_with(&[door.label(), "forbidden"]);
        return respond(
            req,
            text(
                403,
                "POST /jellyfin/playback is taken from this host only: use /webhook/jellyfin/<daemon.webhook_token>, or set downloads.webhook_secret_header and send the secret",
            ),
        );
    }
    let ctx = st.ctx.clone();
    with_body(req, st, MAX_WEBHOOK_BODY, move |body| {
        match jellyfin_body(&body) {
            Ok(v) => queue(&ctx, Intake::Jellyfin(v), &counter, door),
            Err(e) => {
                counter.inc_with(&[door.label(), "bad_request"]);
                tracing::warn!("downloads: Jellyfin webhook refused: {e}");
                text(400, e)
            }
        }
    });
}

fn queue(
    ctx: &Ctx,
    work: Intake,
    counter: &crate::daemon::metrics::Counter,
    door: Door,
) -> super::Answer {
    if ctx.downloads.send(work) {
        counter.inc_with(&[door.label(), "queued"]);
        json_answer(200, &json!({"status": "queued"}))
    } else {
        counter.inc_with(&[door.label(), "queue_full"]);
        text(503, "downloads queue full; retry later")
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `7d`, `12h`, `30m`, `90s` or a bare number of days → milliseconds.
pub fn parse_since(v: &str) -> Result<u64, String> {
    let v = v.trim();
    let (num, unit) = match v.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => v.split_at(i),
        None => (v, "d"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("since: {v:?} is not a duration such as 7d, 12h or 30m"))?;
    let unit_ms: u64 = match unit {
        "d" => 86_400_000,
        "h" => 3_600_000,
        "m" => 60_000,
        "s" => 1000,
        _ => return Err(format!("since: unknown unit in {v:?}: use d, h, m or s")),
    };
    n.checked_mul(unit_ms)
        .ok_or_else(|| format!("since: {v:?} is too large"))
}

/// The `/api/downloads/…` routes (authorization already checked).
pub(super) fn api(req: Request, st: &State, method: &Method, path: &str, query: &str) {
    let ctx = &st.ctx;
    match path {
        "/api/downloads/status" => {
            if *method != Method::Get {
                return respond(req, not_allowed("GET"));
            }
            let section = ctx.health.status().sections.get("downloads").cloned().unwrap_or_else(|| {
                json!({"running": false, "note": "the downloads job has not published a status (not configured: set downloads.radarr_url, or not started yet)"})
            });
            respond(req, json_answer(200, &section))
        }
        "/api/downloads/decisions" => {
            if *method != Method::Get {
                return respond(req, not_allowed("GET"));
            }
            let since = match query_param(query, "since").map(|v| parse_since(&v)) {
                None => 7 * 86_400_000,
                Some(Ok(ms)) => ms,
                Some(Err(e)) => return respond(req, text(400, e)),
            };
            let limit = match query_param(query, "limit") {
                None => 100,
                Some(v) => match v.parse::<usize>() {
                    Ok(n) => n.min(MAX_DECISIONS),
                    Err(_) => {
                        return respond(req, text(400, format!("limit: not a number: {v:?}")))
                    }
                },
            };
            let found = Store::open(&ctx.db_path)
                .and_then(|s| s.download_decisions(unix_ms().saturating_sub(since), limit));
            match found {
                Ok(list) => respond(req, json_answer(200, &json!({"decisions": list}))),
                Err(e) => respond(
                    req,
                    text(
                        500,
                        format!(
                            "reading the decisions from {}: {e:#}",
                            ctx.db_path.display()
                        ),
                    ),
                ),
            }
        }
        p if p.starts_with("/api/downloads/reevaluate/") => {
            if *method != Method::Post {
                return respond(req, not_allowed("POST"));
            }
            let raw = &p["/api/downloads/reevaluate/".len()..];
            let Ok(id) = raw.parse::<i64>() else {
                return respond(
                    req,
                    text(400, format!("reevaluate: {raw:?} is not a decision id")),
                );
            };
            match Store::open(&ctx.db_path).and_then(|s| s.download_decision(id)) {
                Ok(Some(_)) => {}
                Ok(None) => return respond(req, text(404, format!("no decision {id}"))),
                Err(e) => {
                    return respond(
                        req,
                        text(
                            500,
                            format!(
                                "reading decision {id} from {}: {e:#}",
                                ctx.db_path.display()
                            ),
                        ),
                    )
                }
            }
            if !ctx.config().downloads.enabled() {
                return respond(
                    req,
                    text(409, "the downloads job is off: set downloads.radarr_url"),
                );
            }
            if ctx.downloads.send(Intake::Reevaluate(id)) {
                respond(req, json_answer(202, &json!({"queued": id})))
            } else {
                respond(req, text(503, "downloads queue full; retry later"))
            }
        }
        _ => respond(req, text(404, "not found")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_secret_is_required_only_when_its_header_is_named() {
        assert_eq!(check_secret("", None, None), Ok(false));
        assert_eq!(check_secret("", Some("s"), Some("x")), Ok(false));
        assert_eq!(
            check_secret("X-Secret", Some("s3cret"), Some("s3cret")),
            Ok(true)
        );
        assert_eq!(
            check_secret("X-Secret", Some("s3cret"), Some(" s3cret ")),
            Ok(true)
        );
        let wrong = check_secret("X-Secret", Some("s3cret"), Some("s3cre")).unwrap_err();
        assert!(
            wrong.contains("X-Secret") && !wrong.contains("s3cret"),
            "{wrong}"
        );
        assert!(check_secret("X-Secret", Some("s3cret"), None)
            .unwrap_err()
            .contains("missing"));
        assert!(check_secret("X-Secret", None, Some("x"))
            .unwrap_err()
            .contains("downloads.webhook_secret is not set"));
    }

    #[test]
    fn a_jellyfin_body_is_json_whatever_it_was_labelled() {
        let v = jellyfin_body(br#"{"NotificationType":"PlaybackStop"}"#).unwrap();
        assert_eq!(v["NotificationType"], "PlaybackStop");
        let v = jellyfin_body(b"\xEF\xBB\xBF{\"Name\":\"x\"}").unwrap();
        assert_eq!(v["Name"], "x");
        assert!(jellyfin_body(b"Name=x").unwrap_err().contains("not JSON"));
        assert!(jellyfin_body(b"[1]").unwrap_err().contains("object"));
        assert!(jellyfin_body(b"").is_err());
    }

    #[test]
    fn since_reads_days_hours_minutes_seconds() {
        assert_eq!(parse_since("7d"), Ok(7 * 86_400_000));
        assert_eq!(parse_since("7"), Ok(7 * 86_400_000));
        assert_eq!(parse_since("12h"), Ok(12 * 3_600_000));
        assert_eq!(parse_since("30m"), Ok(30 * 60_000));
        assert_eq!(parse_since("90s"), Ok(90_000));
        assert!(parse_since("7w").is_err());
        assert!(parse_since("d").is_err());
        assert!(parse_since("99999999999999999999d").is_err());
        assert!(parse_since("999999999999999d").is_err());
    }
}
