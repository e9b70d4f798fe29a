//! The daemon's HTTP endpoint (`daemon.http_listen`), tiny_http: blocking, small, no async
//! runtime, which fits a thread-per-job daemon.
//!
//! - `/health` (200 when every job is healthy, 503 otherwise) and `/metrics` (Prometheus
//!   text): unauthenticated, as before;
//! - `POST /webhook/plex/<daemon.webhook_token>`: Plex's webhook (multipart, JSON or form),
//!   queued on `ctx.webhooks` for the scrobble job and answered at once; a wrong or unset
//!   token is a 404 (the path is never confirmed). `POST /webhook/trakt` (the original's
//!   path) is the same without a token, from loopback only. When the downloads job is on (and
//!   `downloads.plex_plays`), the same payload is queued on `ctx.downloads` too;
//! - `POST /webhook/jellyfin/<daemon.webhook_token>` and the original's `POST
//!   /jellyfin/playback`: Jellyfin's webhook plugin, for the downloads job ([`downloads`]);
//!   `/health` answers POST as well as GET (the original did);
//! - `/api/…`: the ops API (scrobble status/start/stop, downloads status/decisions/reevaluate,
//!   logs, the configuration, the dashboard's endpoints and actions), behind
//!   `Authorization: Bearer <daemon.api_key>` or the dashboard's login cookie unless the
//!   caller is on loopback ([`dashboard::auth`]);
//! - `GET/POST /login`, `POST /logout`: the dashboard's login form;
//! - `/` and `/assets/…`: the dashboard page (`dashboard::assets`), the ops API's access rule;
//!   without it, the login form (401).
//!
//! Requests are routed on the accept thread; a request with a body is read and handled on a
//! worker thread (at most [`MAX_BODY_WORKERS`] at once: a slow client cannot hold the accept
//! thread), a log stream on its own thread (at most [`MAX_STREAMS`]).

pub mod dashboard;
pub mod downloads;
pub mod multipart;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use serde_json::{json, Value};
use tiny_http::{Header, Method, Request, Response, Server};

use super::ctx::Ctx;
use super::lifecycle::Shutdown;
use super::logring;
use super::metrics::Counter;
use crate::config::secret::REDACTED;

/// The largest webhook body (Plex's multipart carries a thumbnail JPEG).
pub const MAX_WEBHOOK_BODY: usize = 1 << 20;
/// The largest body of any other request.
pub const MAX_BODY: usize = 256 << 10;
/// How long a client may take to send its body.
const BODY_DEADLINE: Duration = Duration::from_secs(10);
/// Bodies being read at once; beyond: 503.
pub const MAX_BODY_WORKERS: usize = 16;
/// Log streams at once; beyond: 503.
pub const MAX_STREAMS: usize = 8;
/// A comment line on an idle log stream, so a gone client is noticed.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// The most lines `/api/logs` returns.
const MAX_LOG_LINES: usize = 1000;

pub fn bind(addr: &str) -> Result<Server> {
    Server::http(addr).map_err(|e| anyhow!("unable to listen on {addr}: {e}"))
}

/// What the handlers share.
struct State {
    ctx: Ctx,
    webhooks: Counter,
    /// Jellyfin webhooks, by door and result.
    downloads_hooks: Counter,
    bodies: Arc<AtomicUsize>,
    streams: Arc<AtomicUsize>,
}

pub fn serve(server: &Server, ctx: &Ctx, shutdown: &Shutdown) -> Result<()> {
    let st = State {
        ctx: ctx.clone(),
        webhooks: ctx.health.metrics.counter(
            "downshiftarr_webhooks_total",
            "Plex webhook requests, by result (queued, bad_request, too_large, queue_full, …)",
            &["result"],
        ),
        downloads_hooks: ctx.health.metrics.counter(
            "downshiftarr_downloads_webhooks_total",
            "Jellyfin webhook requests, by path (token, original) and result (queued, bad_request, unauthorized, forbidden, queue_full, off)",
            &["path", "result"],
        ),
        bodies: Arc::default(),
        streams: Arc::default(),
    };
    let mut secrets_of: Option<Arc<super::ctx::Loaded>> = None;
    while !shutdown.is_set() {
        // The log ring redacts the secrets of the configuration in effect.
        let cfg = ctx.config();
        if !secrets_of.as_ref().is_some_and(|c| Arc::ptr_eq(c, &cfg)) {
            logring::ring().set_secrets(cfg.secret_values());
            secrets_of = Some(cfg);
        }
        let Ok(Some(req)) = server.recv_timeout(Duration::from_millis(250)) else {
            continue;
        };
        handle(req, &st);
    }
    Ok(())
}

/// `res` with a header added (names and values here are ASCII: never refused).
fn with_header(res: Answer, name: &str, value: &str) -> Answer {
    match Header::from_bytes(name.as_bytes(), value.as_bytes()) {
        Ok(h) => res.with_header(h),
        Err(()) => res,
    }
}

type Answer = Response<std::io::Cursor<Vec<u8>>>;

fn text(code: u16, body: impl Into<String>) -> Answer {
    let mut b = body.into();
    if !b.ends_with('\n') {
        b.push('\n');
    }
    with_header(
        Response::from_string(b).with_status_code(code),
        "Content-Type",
        "text/plain; charset=utf-8",
    )
}

fn json_answer(code: u16, v: &Value) -> Answer {
    with_header(
        Response::from_string(v.to_string()).with_status_code(code),
        "Content-Type",
        "application/json",
    )
}

/// Whether the peer is on this host (127.0.0.0/8, ::1, or IPv4-mapped loopback).
pub fn is_loopback(peer: Option<&SocketAddr>) -> bool {
    match peer.map(|p| p.ip()) {
        Some(IpAddr::V4(a)) => a.is_loopback(),
        Some(IpAddr::V6(a)) => {
            a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        None => false,
    }
}

/// Equal, in a time that depends only on the lengths.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether an ops API call may proceed: loopback always; elsewhere only with
/// `Authorization: Bearer <api_key>` (no key configured: nobody from elsewhere).
pub fn authorized(peer: Option<&SocketAddr>, authorization: Option<&str>, api_key: &str) -> bool {
    if is_loopback(peer) {
        return true;
    }
    if api_key.is_empty() {
        return false;
    }
    let Some(given) = authorization.and_then(|a| {
        let (scheme, token) = a.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }) else {
        return false;
    };
    ct_eq(given.as_bytes(), api_key.as_bytes())
}

fn header_value<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// `?a=1&b=2` → the value of `key`, percent-decoded.
fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| String::from_utf8_lossy(&percent_decode(v.as_bytes())).into_owned())
    })
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space; a bad `%` escape stays).
fn percent_decode(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => match (hex(s[i + 1]), hex(s[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn handle(req: Request, st: &State) {
    let url = req.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let method = req.method().clone();
    // A request a proxy forwarded is not from this host, whatever address it came from: a
    // reverse proxy on loopback must not open the ops API to everyone behind it.
    let peer = dashboard::auth::peer_of(&req);
    let loopback = is_loopback(peer.as_ref());

    if let Some(token) = path.strip_prefix("/webhook/plex/") {
        let cfg = st.ctx.config();
        let ok = match cfg.daemon.webhook_token.get() {
            Ok(Some(t)) => ct_eq(token.as_bytes(), t.expose().as_bytes()),
            _ => false,
        };
        if !ok {
            st.webhooks.inc_with(&["not_found"]);
            return respond(req, text(404, "not found"));
        }
        return webhook(req, st, &method);
    }
    if let Some(token) = path.strip_prefix("/webhook/jellyfin/") {
        let cfg = st.ctx.config();
        let ok = match cfg.daemon.webhook_token.get() {
            Ok(Some(t)) => ct_eq(token.as_bytes(), t.expose().as_bytes()),
            _ => false,
        };
        if !ok {
            st.downloads_hooks.inc_with(&["token", "not_found"]);
            return respond(req, text(404, "not found"));
        }
        return downloads::jellyfin(req, st, &method, downloads::Door::Token, loopback);
    }
    match path {
        "/jellyfin/playback" => {
            downloads::jellyfin(req, st, &method, downloads::Door::Original, loopback)
        }
        // The original answered `/health` to GET and POST alike; `/metrics` is GET only.
        "/health" if method == Method::Post => {
            let h = &st.ctx.health;
            let code = if h.healthy() { 200 } else { 503 };
            respond(req, json_answer(code, &h.status_json()))
        }
        "/health" if method != Method::Get && method != Method::Head => {
            respond(req, not_allowed("GET, POST"))
        }
        "/metrics" if method != Method::Get && method != Method::Head => {
            respond(req, not_allowed("GET"))
        }
        "/health" => {
            let h = &st.ctx.health;
            let code = if h.healthy() { 200 } else { 503 };
            respond(req, json_answer(code, &h.status_json()))
        }
        "/metrics" => respond(
            req,
            with_header(
                Response::from_string(st.ctx.health.metrics()),
                "Content-Type",
                "text/plain; version=0.0.4",
            ),
        ),
        "/webhook/trakt" if loopback => webhook(req, st, &method),
        "/login" => match method {
            Method::Get | Method::Head => {
                let page = dashboard::auth::get_login(&req, &st.ctx);
                respond(req, page)
            }
            Method::Post => {
                let ctx = st.ctx.clone();
                let secure = dashboard::auth::is_https(&req);
                with_body(req, st, 4096, move |body| {
                    dashboard::auth::post_login(&ctx, &body, secure)
                })
            }
            _ => respond(req, not_allowed("GET, POST")),
        },
        "/logout" => match method {
            Method::Post => {
                let out = dashboard::auth::post_logout(&req, &st.ctx);
                respond(req, out)
            }
            _ => respond(req, not_allowed("POST")),
        },
        p if dashboard::assets::is_dashboard_path(p) => {
            if dashboard::auth::page_access(&req, &st.ctx) != dashboard::auth::Access::Allowed {
                // Who are you? The sign-in form, never the page.
                return respond(req, dashboard::auth::login_page(401, None));
            }
            let res = dashboard::assets::answer(
                p,
                &method,
                header_value(&req, "Accept-Encoding"),
                header_value(&req, "If-None-Match"),
            );
            respond(req, res)
        }
        p if p == "/api" || p.starts_with("/api/") => {
            match dashboard::auth::api_access(&req, &st.ctx) {
                Ok(_) => api(req, st, &method, p, query),
                Err(refused) => respond(req, refused),
            }
        }
        _ => respond(req, text(404, "not found")),
    }
}

fn not_allowed(allow: &str) -> Answer {
    with_header(
        text(405, format!("method not allowed: use {allow}")),
        "Allow",
        allow,
    )
}

fn respond(req: Request, res: Answer) {
    let _ = req.respond(res);
}

fn api(req: Request, st: &State, method: &Method, path: &str, query: &str) {
    let ctx = &st.ctx;
    let want = |m: Method, allow: &str| (*method != m).then(|| not_allowed(allow));
    if path.starts_with("/api/downloads/") {
        return downloads::api(req, st, method, path, query);
    }
    match path {
        "/api/scrobble/status" => {
            if let Some(r) = want(Method::Get, "GET") {
                return respond(req, r);
            }
            let status = ctx.health.status();
            let section = status.sections.get("scrobble").cloned().unwrap_or_else(|| {
                json!({"running": false, "note": "the scrobble job has not published a status (not configured, or not started yet)"})
            });
            respond(req, json_answer(200, &section))
        }
        "/api/scrobble/start" | "/api/scrobble/stop" => {
            if let Some(r) = want(Method::Post, "POST") {
                return respond(req, r);
            }
            let paused = path.ends_with("stop");
            ctx.scrobble_paused.store(paused, Ordering::SeqCst);
            // Under the scrobble job's target: `/api/logs?job=scrobble` shows it.
            tracing::info!(
                target: "downshiftarr::jobs::scrobble::ops",
                "scrobble {} through the ops API",
                if paused { "paused" } else { "resumed" }
            );
            let message = if paused {
                "scrobbling paused: plays are followed, nothing new is sent to Trakt"
            } else {
                "scrobbling resumed"
            };
            respond(
                req,
                json_answer(
                    200,
                    &json!({"paused": paused, "ok": true, "message": message}),
                ),
            )
        }
        "/api/sync" => {
            if let Some(r) = want(Method::Post, "POST") {
                return respond(req, r);
            }
            let (code, body) = dashboard::api::sync(ctx);
            respond(req, json_answer(code, &body))
        }
        "/api/throttle/restore" => {
            if let Some(r) = want(Method::Post, "POST") {
                return respond(req, r);
            }
            // The throttle job answers within a second or two: wait on a worker thread.
            let ctx = ctx.clone();
            with_body(req, st, MAX_BODY, move |_| {
                let (code, body) = dashboard::api::throttle_restore(&ctx);
                json_answer(code, &body)
            })
        }
        p if p.starts_with("/api/dashboard/") => {
            if let Some(r) = want(Method::Get, "GET") {
                return respond(req, r);
            }
            let (code, body) = dashboard::api::get(ctx, p, query);
            respond(
                req,
                with_header(json_answer(code, &body), "Cache-Control", "no-store"),
            )
        }
        "/api/logs" => {
            if let Some(r) = want(Method::Get, "GET") {
                return respond(req, r);
            }
            let n = match query_param(query, "n") {
                None => 80,
                Some(v) => match v.parse::<usize>() {
                    Ok(n) => n.min(MAX_LOG_LINES),
                    Err(_) => return respond(req, text(400, format!("n: not a number: {v:?}"))),
                },
            };
            let job = query_param(query, "job");
            let lines = logring::ring().tail(job.as_deref(), n);
            let as_json =
                header_value(&req, "Accept").is_some_and(|a| a.contains("application/json"));
            if as_json {
                respond(req, json_answer(200, &json!(lines)))
            } else {
                let body: String = lines.iter().map(|l| l.text() + "\n").collect();
                respond(
                    req,
                    with_header(
                        Response::from_string(body),
                        "Content-Type",
                        "text/plain; charset=utf-8",
                    ),
                )
            }
        }
        "/api/logs/stream" => {
            if let Some(r) = want(Method::Get, "GET") {
                return respond(req, r);
            }
            let job = query_param(query, "job");
            stream(req, st, job)
        }
        "/api/config" => match *method {
            Method::Get => {
                let cfg = ctx.config();
                match serde_json::to_value(&cfg.config) {
                    Ok(v) => respond(req, json_answer(200, &v)),
                    Err(e) => respond(req, text(500, format!("configuration: {e}"))),
                }
            }
            Method::Post => {
                let ctx = ctx.clone();
                with_body(req, st, MAX_BODY, move |body| {
                    match post_config(&ctx, &body) {
                        Ok(v) => json_answer(200, &v),
                        Err(e) => text(400, e),
                    }
                })
            }
            _ => respond(req, not_allowed("GET, POST")),
        },
        _ => respond(req, text(404, "not found")),
    }
}

/// Reads the body on a worker thread (capped, with a deadline), then answers with `then`.
fn with_body(
    mut req: Request,
    st: &State,
    limit: usize,
    then: impl FnOnce(Vec<u8>) -> Answer + Send + 'static,
) {
    if req.body_length().is_some_and(|n| n > limit) {
        return respond(req, text(413, format!("body larger than {limit} bytes")));
    }
    let bodies = st.bodies.clone();
    if bodies.fetch_add(1, Ordering::SeqCst) >= MAX_BODY_WORKERS {
        bodies.fetch_sub(1, Ordering::SeqCst);
        return respond(req, text(503, "busy: too many requests being read; retry"));
    }
    let spawned = std::thread::Builder::new()
        .name("http-body".into())
        .spawn(move || {
            let res = match read_body(req.as_reader(), limit, BODY_DEADLINE) {
                Ok(body) => then(body),
                Err((code, msg)) => text(code, msg),
            };
            let _ = req.respond(res);
            bodies.fetch_sub(1, Ordering::SeqCst);
        });
    if let Err(e) = spawned {
        st.bodies.fetch_sub(1, Ordering::SeqCst);
        tracing::warn!("http: unable to start a request thread: {e}");
    }
}

/// At most `limit` bytes, within `deadline` (checked between reads: a client that trickles
/// is cut off; one that stalls holds only its worker).
pub fn read_body(
    r: &mut dyn Read,
    limit: usize,
    deadline: Duration,
) -> Result<Vec<u8>, (u16, String)> {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 16 << 10];
    loop {
        let n = r
            .read(&mut buf)
            .map_err(|e| (400, format!("reading the body: {e}")))?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > limit {
            return Err((413, format!("body larger than {limit} bytes")));
        }
        out.extend_from_slice(&buf[..n]);
        if start.elapsed() > deadline {
            return Err((
                408,
                format!("body not received within {}s", deadline.as_secs()),
            ));
        }
    }
}

fn webhook(req: Request, st: &State, method: &Method) {
    if *method != Method::Post {
        return respond(req, not_allowed("POST"));
    }
    let ctx = st.ctx.clone();
    let counter = st.webhooks.clone();
    let ct = header_value(&req, "Content-Type").unwrap_or("").to_string();
    // Who takes a Plex webhook: the downloads job when it counts Plex plays, the scrobble job
    // when it is on — and, as before, the scrobble queue whenever the downloads job does not
    // take it.
    let cfg = ctx.config();
    let to_downloads = cfg.downloads.enabled() && cfg.downloads.plex_plays;
    let to_scrobble = cfg.scrobble.enabled() || !to_downloads;
    drop(cfg);
    if req.body_length().is_some_and(|n| n > MAX_WEBHOOK_BODY) {
        counter.inc_with(&["too_large"]);
    }
    with_body(
        req,
        st,
        MAX_WEBHOOK_BODY,
        move |body| match webhook_payload(&ct, &body) {
            Ok(v) => {
                let mut full = false;
                if to_downloads {
                    let work = crate::model::downloads::Intake::PlexWebhook(v.clone());
                    full |= !ctx.downloads.send(work);
                }
                if to_scrobble {
                    full |= !ctx.webhooks.send(v);
                }
                if full {
                    counter.inc_with(&["queue_full"]);
                    text(503, "webhook queue full; retry later")
                } else {
                    counter.inc_with(&["queued"]);
                    text(200, "queued")
                }
            }
            Err(e) => {
                counter.inc_with(&["bad_request"]);
                tracing::warn!("webhook refused: {e}");
                text(400, e)
            }
        },
    );
}

/// The payload of a Plex webhook body: multipart (`payload` part), JSON, or a form's
/// `payload=` field; a JSON object.
pub fn webhook_payload(content_type: &str, body: &[u8]) -> Result<Value, String> {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let json: Vec<u8> = match mime.as_str() {
        "multipart/form-data" => {
            let b = multipart::boundary(content_type)?;
            let parts = multipart::parse(body, &b)?;
            parts
                .into_iter()
                .find(|p| p.name == "payload")
                .ok_or("multipart body without a payload part")?
                .data
                .to_vec()
        }
        "application/json" => body.to_vec(),
        "application/x-www-form-urlencoded" => body
            .split(|&b| b == b'&')
            .find_map(|kv| kv.strip_prefix(b"payload="))
            .map(percent_decode)
            .ok_or("form body without a payload= field")?,
        "" => return Err("no Content-Type: send multipart/form-data, application/json or application/x-www-form-urlencoded".into()),
        other => return Err(format!("unsupported Content-Type {other:?}: send multipart/form-data, application/json or application/x-www-form-urlencoded")),
    };
    let v: Value =
        serde_json::from_slice(&json).map_err(|e| format!("payload: invalid JSON: {e}"))?;
    if !v.is_object() {
        return Err("payload: must be a JSON object".into());
    }
    Ok(v)
}

/// Posted secrets shown as `<redacted>` take the file's value back (or are left out when the
/// file has none): a configuration read with GET and posted back keeps its secrets.
fn restore_redacted(posted: &mut Value, file: Option<&Value>) {
    match posted {
        Value::Object(m) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let cur = file.and_then(|f| f.get(&k));
                if m.get(&k).and_then(Value::as_str) == Some(REDACTED) {
                    match cur {
                        Some(c) => {
                            m.insert(k, c.clone());
                        }
                        None => {
                            m.remove(&k);
                        }
                    }
                } else if let Some(v) = m.get_mut(&k) {
                    restore_redacted(v, cur);
                }
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter_mut().enumerate() {
                restore_redacted(v, file.and_then(|f| f.get(i)));
            }
        }
        _ => {}
    }
}

/// Checks a posted configuration as the loader does, writes it atomically in place of the
/// file, and asks for a reload. An error changes nothing and names the key.
fn post_config(ctx: &Ctx, body: &[u8]) -> Result<Value, String> {
    let mut posted: Value =
        serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let path = &ctx.config_path;
    let file: Option<Value> = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    restore_redacted(&mut posted, file.as_ref());
    let text = serde_json::to_string_pretty(&posted).map_err(|e| format!("{e}"))?;
    let mut c = crate::config::parse(&text)?;
    c.validate().map_err(|e| format!("{e:#}"))?;
    let errors = c.apply_env(&|k| std::env::var(k).ok());
    if !errors.is_empty() {
        return Err(format!("environment: {}", errors.join("; ")));
    }
    c.validate().map_err(|e| format!("environment: {e:#}"))?;
    write_atomically(path, format!("{text}\n").as_bytes())
        .map_err(|e| format!("unable to write {}: {e}", path.display()))?;
    let restart = crate::config::Config::needs_restart(&ctx.config(), &c);
    tracing::info!(config = %path.display(), "configuration written through the ops API; reloading");
    ctx.shutdown.request_reload();
    Ok(json!({"written": path, "reload": "requested", "needs_restart": restart}))
}

/// Temp file beside `path` (the file's mode kept, 0640 for a new one), fsync, rename, fsync
/// of the directory.
fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o640);
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config.json".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `text/event-stream` of new log lines, on its own thread.
fn stream(req: Request, st: &State, job: Option<String>) {
    let streams = st.streams.clone();
    if streams.fetch_add(1, Ordering::SeqCst) >= MAX_STREAMS {
        streams.fetch_sub(1, Ordering::SeqCst);
        return respond(
            req,
            text(503, format!("at most {MAX_STREAMS} log streams at once")),
        );
    }
    let shutdown = st.ctx.shutdown.clone();
    let spawned = std::thread::Builder::new()
        .name("http-logs".into())
        .spawn(move || {
            let ring = logring::ring();
            let mut next = ring.next_seq();
            let mut w = req.into_writer();
            let _ = (|| -> std::io::Result<()> {
                w.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n: downshiftarr log stream\n\n")?;
                w.flush()?;
                let mut last = Instant::now();
                while !shutdown.is_set() {
                    let lines = ring.since(next, Duration::from_millis(500));
                    let mut out = String::new();
                    for l in lines.iter().filter(|l| l.is_of(job.as_deref())) {
                        for part in l.text().split('\n') {
                            out.push_str("data: ");
                            out.push_str(part.trim_end_matches('\r'));
                            out.push('\n');
                        }
                        out.push('\n');
                    }
                    if let Some(l) = lines.last() {
                        next = l.seq + 1;
                    }
                    if out.is_empty() && last.elapsed() >= HEARTBEAT {
                        out.push_str(": heartbeat\n\n");
                    }
                    if !out.is_empty() {
                        w.write_all(out.as_bytes())?;
                        w.flush()?;
                        last = Instant::now();
                    }
                }
                Ok(())
            })();
            streams.fetch_sub(1, Ordering::SeqCst);
        });
    if let Err(e) = spawned {
        st.streams.fetch_sub(1, Ordering::SeqCst);
        tracing::warn!("http: unable to start a log stream thread: {e}");
    }
}

#[cfg(test)]
mod tests;
