//! The daemon's HTTP endpoint (`daemon.http_listen`). tiny_http: blocking, small, no async
//! runtime, which fits a thread-per-job daemon.
//!
//! - `GET /health` (200 when every job is healthy, 503 otherwise) and `GET /metrics`
//!   (Prometheus text): open, answered on the accept thread.
//! - `POST /webhook/plex/<daemon.webhook_token>`: Plex webhooks, queued for the scrobble job and
//!   answered at once. A wrong token is a 404 (the path is the secret: nothing confirms it).
//!   The original's `POST /webhook/trakt` is accepted from this host only.
//! - `/api/…`: the ops API (scrobble status/start/stop, the log tail and its live stream, the
//!   configuration), open to this host and to `Authorization: Bearer <daemon.api_key>`.
//!
//! Everything but `/health` and `/metrics` runs on a worker thread (at most [`MAX_WORKERS`]),
//! so a slow client holds only its own thread. "This host" is a loopback peer that did not come
//! through a proxy: a request with `Forwarded`/`X-Forwarded-For`/`X-Real-IP` is remote.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use serde_json::{json, Value};
use tiny_http::{Header, Method, Request, Response, Server};

use super::ctx::Ctx;
use super::lifecycle::Shutdown;
use super::logring;
use super::metrics::Counter;

/// Requests handled at once beyond `/health` and `/metrics`; more get a 503.
const MAX_WORKERS: usize = 16;
/// Live log streams at once (each holds a worker).
const MAX_STREAMS: usize = 8;
/// A webhook body, its thumbnail included.
const MAX_WEBHOOK_BODY: usize = 1 << 20;
/// Any other body (`POST /api/config`).
const MAX_BODY: usize = 256 << 10;
/// The most lines `GET /api/logs` returns.
const MAX_LOG_LINES: usize = 1000;
/// An SSE comment this often keeps proxies from closing an idle stream.
const HEARTBEAT: Duration = Duration::from_secs(15);

pub fn bind(addr: &str) -> Result<Server> {
    Server::http(addr).map_err(|e| {
        anyhow!("unable to listen on {addr} (daemon.http_listen): {e}; pick a free address or set it to \"\" to turn the endpoint off")
    })
}

/// What the handlers share.
struct Shared {
    ctx: Ctx,
    shutdown: Shutdown,
    workers: AtomicUsize,
    streams: AtomicUsize,
    webhooks: Counter,
}

/// Serves until shutdown.
pub fn serve(server: &Server, ctx: &Ctx, shutdown: &Shutdown) -> Result<()> {
    let shared = Arc::new(Shared {
        ctx: ctx.clone(),
        shutdown: shutdown.clone(),
        workers: AtomicUsize::new(0),
        streams: AtomicUsize::new(0),
        webhooks: ctx.health.metrics.counter(
            "downshiftarr_webhooks_total",
            "Webhook posts, by result (queued, bad_token, too_large, malformed, queue_full, not_local).",
            &["result"],
        ),
    });
    while !shutdown.is_set() {
        let Ok(Some(req)) = server.recv_timeout(Duration::from_millis(250)) else {
            continue;
        };
        let path = req.url().split('?').next().unwrap_or("/");
        if *req.method() == Method::Get && (path == "/health" || path == "/metrics") {
            let res = open_endpoint(&shared.ctx, path);
            let _ = req.respond(res);
            continue;
        }
        if shared.workers.fetch_add(1, Ordering::SeqCst) >= MAX_WORKERS {
            shared.workers.fetch_sub(1, Ordering::SeqCst);
            let _ = req.respond(text(503, "busy: too many requests at once; try again\n"));
            continue;
        }
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                handle(req, &s);
                s.workers.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            shared.workers.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!("http: unable to start a worker thread");
        }
    }
    Ok(())
}

fn open_endpoint(ctx: &Ctx, path: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    if path == "/health" {
        let code = if ctx.health.healthy() { 200 } else { 503 };
        body(
            code,
            "application/json",
            ctx.health.status_json().to_string(),
        )
    } else {
        body(200, "text/plain; version=0.0.4", ctx.health.metrics())
    }
}

fn body(code: u16, content_type: &str, text: String) -> Response<std::io::Cursor<Vec<u8>>> {
    let mut r = Response::from_string(text).with_status_code(code);
    if let Ok(h) = Header::from_bytes("Content-Type", content_type) {
        r.add_header(h);
    }
    r
}

fn text(code: u16, msg: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    body(code, "text/plain; charset=utf-8", msg.to_string())
}

fn json_response(code: u16, v: &Value) -> Response<std::io::Cursor<Vec<u8>>> {
    body(code, "application/json", v.to_string())
}

fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// A request from this host that did not come through a proxy.
fn is_local(peer: Option<&SocketAddr>, forwarded: bool) -> bool {
    !forwarded && peer.is_some_and(|p| is_loopback(p.ip()))
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

fn forwarded(req: &Request) -> bool {
    ["forwarded", "x-forwarded-for", "x-real-ip"]
        .iter()
        .any(|h| header(req, h).is_some())
}

/// Equal without an early exit on the first differing byte (a guessed token learns nothing
/// from the time the answer takes but the length).
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// Whether the caller may use the ops API.
fn authorized(local: bool, authorization: Option<&str>, api_key: &str) -> bool {
    if local {
        return true;
    }
    let Some(given) = authorization.and_then(|a| {
        let (scheme, v) = a.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| v.trim())
    }) else {
        return false;
    };
    !api_key.is_empty() && same_secret(given, api_key)
}

/// Reads a body of at most `max` bytes; `Err(413 response)` beyond.
fn read_body(req: &mut Request, max: usize) -> Result<Vec<u8>, (u16, String)> {
    if req.body_length().is_some_and(|n| n > max) {
        return Err((413, format!("body larger than {max} bytes\n")));
    }
    let mut buf = Vec::new();
    req.as_reader()
        .take(max as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| (400, format!("unable to read the body: {e}\n")))?;
    if buf.len() > max {
        return Err((413, format!("body larger than {max} bytes\n")));
    }
    Ok(buf)
}

fn handle(mut req: Request, s: &Shared) {
    let method = req.method().clone();
    let url = req.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let local = is_local(req.remote_addr(), forwarded(&req));
    let cfg = s.ctx.config();

    if let Some(token) = path.strip_prefix("/webhook/plex/") {
        if method != Method::Post {
            let _ = req.respond(text(405, "webhooks are POSTed\n"));
            return;
        }
        let expected = cfg.daemon.webhook_token.expose();
        if expected.is_empty() || !same_secret(token, expected) {
            s.webhooks.inc_with(&["bad_token"]);
            let _ = req.respond(text(404, "not found\n"));
            return;
        }
        webhook(req, s);
        return;
    }
    if path == "/webhook/trakt" && method == Method::Post {
        // The original's path (CrossWatch), for a Plex on this host: it has no token.
        if !local {
            s.webhooks.inc_with(&["not_local"]);
            let _ = req.respond(text(404, "not found\n"));
            return;
        }
        webhook(req, s);
        return;
    }
    let Some(api) = path.strip_prefix("/api/") else {
        let code = if matches!(path, "/health" | "/metrics") {
            405
        } else {
            404
        };
        let _ = req.respond(text(
            code,
            if code == 405 {
                "method not allowed\n"
            } else {
                "not found\n"
            },
        ));
        return;
    };
    if !authorized(
        local,
        header(&req, "authorization"),
        cfg.daemon.api_key.expose(),
    ) {
        let msg = if cfg.daemon.api_key.expose().is_empty() {
            "the ops API answers this host only: set daemon.api_key (DOWNSHIFTARR_API_KEY) and send Authorization: Bearer <key>\n"
        } else {
            "send Authorization: Bearer <daemon.api_key>\n"
        };
        let mut r = text(401, msg);
        if let Ok(h) = Header::from_bytes("WWW-Authenticate", "Bearer realm=\"downshiftarr\"") {
            r.add_header(h);
        }
        let _ = req.respond(r);
        return;
    }
    let wants_json = header(&req, "accept").is_some_and(|a| a.contains("application/json"));
    let res = match (&method, api) {
        (Method::Get, "scrobble/status") => {
            let st = s.ctx.health.status();
            let section = st.sections.get("scrobble").cloned().unwrap_or_else(
                || json!({ "running": false, "why": "the scrobble job has not reported (scrobble.client_id unset, or starting)" }),
            );
            let mut v = section;
            if let Some(o) = v.as_object_mut() {
                o.insert(
                    "paused".into(),
                    s.ctx.scrobble_paused.load(Ordering::SeqCst).into(),
                );
            }
            json_response(200, &v)
        }
        (Method::Post, "scrobble/start" | "scrobble/stop") => {
            let paused = api.ends_with("stop");
            s.ctx.scrobble_paused.store(paused, Ordering::SeqCst);
            tracing::info!(
                target: "downshiftarr::jobs::scrobble::ops",
                "scrobbling {} through the ops API",
                if paused { "paused" } else { "resumed" }
            );
            json_response(200, &json!({ "paused": paused }))
        }
        (Method::Get, "logs") => {
            let q = Query::parse(query);
            let n = q.n.unwrap_or(80).min(MAX_LOG_LINES);
            let lines = logring::RING.tail(q.job.as_deref(), n);
            if wants_json {
                json_response(200, &json!(lines))
            } else {
                let mut out = String::new();
                for l in lines {
                    out.push_str(&l.render());
                    out.push('\n');
                }
                text(200, &out)
            }
        }
        (Method::Get, "logs/stream") => {
            let q = Query::parse(query);
            stream_logs(req, s, q.job);
            return;
        }
        (Method::Get, "config") => match serde_json::to_value(&cfg.config) {
            Ok(v) => json_response(200, &v),
            Err(e) => text(500, &format!("unable to show the configuration: {e}\n")),
        },
        (Method::Post, "config") => match read_body(&mut req, MAX_BODY) {
            Ok(b) => {
                let (code, v) = super::api_config::replace(&s.ctx, &b);
                json_response(code, &v)
            }
            Err((code, msg)) => text(code, &msg),
        },
        (_, "scrobble/status" | "scrobble/start" | "scrobble/stop" | "logs" | "logs/stream" | "config") => {
            text(405, "method not allowed\n")
        }
        _ => text(404, "not found: the ops API has /api/scrobble/status, /api/scrobble/start, /api/scrobble/stop, /api/logs, /api/logs/stream and /api/config\n"),
    };
    let _ = req.respond(res);
}

/// `job` and `n` of a query string.
#[derive(Default)]
struct Query {
    job: Option<String>,
    n: Option<usize>,
}

impl Query {
    fn parse(q: &str) -> Query {
        let mut out = Query::default();
        for pair in q.split('&') {
            match pair.split_once('=') {
                Some(("job", v)) if !v.is_empty() => out.job = Some(v.to_string()),
                Some(("n", v)) => out.n = v.parse().ok(),
                _ => {}
            }
        }
        out
    }
}

fn webhook(mut req: Request, s: &Shared) {
    let ct = header(&req, "content-type").map(str::to_string);
    let res = match read_body(&mut req, MAX_WEBHOOK_BODY) {
        Err((code, msg)) => {
            s.webhooks.inc_with(&["too_large"]);
            text(code, &msg)
        }
        Ok(b) => match super::webhook::payload_of(ct.as_deref(), &b) {
            Err(e) => {
                s.webhooks.inc_with(&["malformed"]);
                tracing::info!(target: "downshiftarr::jobs::scrobble::webhook", "webhook refused: {e}");
                text(400, &format!("{e}\n"))
            }
            Ok(v) => {
                if s.ctx.webhooks.send(v) {
                    s.webhooks.inc_with(&["queued"]);
                    text(200, "queued\n")
                } else {
                    s.webhooks.inc_with(&["queue_full"]);
                    text(
                        503,
                        "webhook queue full; the scrobble job is behind or not running\n",
                    )
                }
            }
        },
    };
    let _ = req.respond(res);
}

/// `text/event-stream` of new log lines until the client leaves or the daemon stops. Written
/// on the raw connection: tiny_http's chunked writer holds 8 KiB before it sends anything.
fn stream_logs(req: Request, s: &Shared, job: Option<String>) {
    if s.streams.fetch_add(1, Ordering::SeqCst) >= MAX_STREAMS {
        s.streams.fetch_sub(1, Ordering::SeqCst);
        let _ = req.respond(text(503, "too many log streams open; close one\n"));
        return;
    }
    let mut w = req.into_writer();
    let mut ok = w
        .write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n: downshiftarr log stream\n\n",
        )
        .and_then(|_| w.flush())
        .is_ok();
    let mut from = logring::RING.next_seq();
    let mut quiet = Duration::ZERO;
    while ok && !s.shutdown.is_set() {
        let wait = Duration::from_millis(500);
        let (lines, next) = logring::RING.wait_from(from, job.as_deref(), wait);
        from = next;
        let mut out = String::new();
        for l in &lines {
            // One line per event: a message never holds a newline the client would split on.
            out.push_str("data: ");
            out.push_str(&l.render().replace(['\r', '\n'], " "));
            out.push_str("\n\n");
        }
        if lines.is_empty() {
            quiet += wait;
            if quiet >= HEARTBEAT {
                out.push_str(": heartbeat\n\n");
                quiet = Duration::ZERO;
            }
        } else {
            quiet = Duration::ZERO;
        }
        if !out.is_empty() {
            ok = w.write_all(out.as_bytes()).and_then(|_| w.flush()).is_ok();
        }
    }
    s.streams.fetch_sub(1, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_without_a_proxy_is_local() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(is_local(Some(&at("127.0.0.1:5000")), false));
        assert!(is_local(Some(&at("[::1]:5000")), false));
        assert!(is_local(Some(&at("[::ffff:127.0.0.1]:5000")), false));
        assert!(
            !is_local(Some(&at("127.0.0.1:5000")), true),
            "through a proxy"
        );
        assert!(!is_local(Some(&at("192.168.1.20:5000")), false));
        assert!(!is_local(None, false));
    }

    #[test]
    fn the_ops_api_needs_the_bearer_key_from_elsewhere() {
        let key = "k-0123456789abcdef";
        assert!(authorized(true, None, ""));
        assert!(authorized(false, Some("Bearer k-0123456789abcdef"), key));
        assert!(authorized(false, Some("bearer  k-0123456789abcdef "), key));
        assert!(!authorized(false, Some("Bearer k-0123456789abcdeX"), key));
        assert!(!authorized(false, Some("Basic k-0123456789abcdef"), key));
        assert!(
            !authorized(false, Some("Bearer "), ""),
            "no key: nobody remote"
        );
        assert!(!authorized(false, None, key));
        assert!(
            same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("ab", "abc")
        );
    }

    #[test]
    fn queries_read_job_and_n() {
        let q = Query::parse("job=scrobble&n=12&x=1");
        assert_eq!((q.job.as_deref(), q.n), (Some("scrobble"), Some(12)));
        let q = Query::parse("n=lots&job=");
        assert_eq!((q.job, q.n), (None, None));
    }
}
