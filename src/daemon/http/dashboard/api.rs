//! The dashboard's JSON endpoints (issue 14), under the ops API's auth:
//!
//! - `GET /api/dashboard/summary`: now playing with the decision for each session, every
//!   job's health in plain words, the throttle, the scrobbler, which actions apply now;
//! - `GET /api/dashboard/decisions?kind=&user=&origin=&limit=&before_id=`: the audit, newest
//!   first, with the values the filters offer;
//! - `GET /api/dashboard/decisions/<id>`: one decision with its stored record;
//! - `GET /api/dashboard/charts?days=30`: per UTC day, decisions by kind, transcodes
//!   prevented, hours throttled, scrobbles sent (computed at most once a minute);
//! - `POST /api/sync`, `POST /api/throttle/restore`: the actions.
//!
//! Every answer goes through [`redact`]: no configured secret (Plex token, API keys, webhook
//! token, passwords) and no `X-Plex-Token=` value can leave, whatever a record or an error
//! message carries. The field names are a contract with the page: add, never rename.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::playing;
use crate::config::secret::REDACTED;
use crate::daemon::ctx::Ctx;
use crate::daemon::status::Status;
use crate::store::dashboard::AuditFilter;
use crate::store::Store;

/// The most decisions one page lists.
pub const MAX_PAGE: usize = 500;
/// The most days the charts cover.
pub const MAX_DAYS: u32 = 90;
/// How long the charts are reused.
pub const CHARTS_TTL: Duration = Duration::from_secs(60);
/// How long `POST /api/throttle/restore` waits for the throttle job.
pub const RESTORE_WAIT: Duration = Duration::from_secs(20);

/// An endpoint's answer: status and JSON body (redacted by the caller).
pub type Reply = (u16, Value);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn error(code: u16, message: impl Into<String>) -> Reply {
    (code, json!({"ok": false, "message": message.into()}))
}

/// `?a=1&b=2` → the value of `key`, percent-decoded; an empty value is none.
fn param(query: &str, key: &str) -> Option<String> {
    crate::daemon::http::query_param(query, key).filter(|v| !v.is_empty())
}

/// Runs `f` with the HTTP thread's store (opened on first use; a failed open is retried on
/// the next request).
fn with_db<T>(ctx: &Ctx, f: impl FnOnce(&Store) -> T) -> Result<T, String> {
    let mut slot = ctx.dashboard.db.lock().unwrap_or_else(|e| e.into_inner());
    if slot.is_none() {
        let db = Store::open(&ctx.db_path)
            .map_err(|e| format!("the database {}: {e:#}", ctx.db_path.display()))?;
        *slot = Some(db);
    }
    match slot.as_ref() {
        Some(db) => Ok(f(db)),
        None => Err("the database is not open".into()),
    }
}

/// The GET endpoints under `/api/dashboard/`.
pub fn get(ctx: &Ctx, path: &str, query: &str) -> Reply {
    let reply = match path {
        "/api/dashboard/summary" => (200, summary(ctx)),
        "/api/dashboard/decisions" => decisions(ctx, query),
        "/api/dashboard/charts" => charts(ctx, query),
        p => match p.strip_prefix("/api/dashboard/decisions/") {
            Some(id) => decision(ctx, id),
            None => error(404, format!("not found: {p}")),
        },
    };
    let (code, mut body) = reply;
    redact(&mut body, &ctx.config().secret_values());
    (code, body)
}

/// Replaces every configured secret and every `X-Plex-Token=` value in the strings of `v`.
pub fn redact(v: &mut Value, secrets: &[String]) {
    match v {
        Value::String(s) => {
            let mut out = downshiftarr_shim::record::redact(s, None);
            for secret in secrets.iter().filter(|x| x.len() >= 4) {
                if out.contains(secret.as_str()) {
                    out = out.replace(secret.as_str(), REDACTED);
                }
            }
            if out != *s {
                *s = out;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| redact(x, secrets)),
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if is_secret_key(k) {
                    if !x.is_null() {
                        *x = Value::String(REDACTED.into());
                    }
                } else {
                    redact(x, secrets);
                }
            }
        }
        _ => {}
    }
}

/// Keys whose values are secrets wherever they appear in a record.
fn is_secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    ["token", "api_key", "apikey", "password", "secret"]
        .iter()
        .any(|s| k == *s || k.ends_with(&format!("_{s}")) || k.starts_with("x-plex-token"))
}

/// `1,234,567`.
fn thousands(n: i64) -> String {
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// Milliseconds of an RFC 3339 UTC time (`2026-11-23T07:12:05.123Z`, as we write them).
pub fn rfc3339_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let ms = match s.get(19..20) {
        Some(".") => {
            let frac: String = s[20..].chars().take_while(char::is_ascii_digit).collect();
            let padded = format!("{frac:0<3}");
            padded.get(..3)?.parse::<i64>().ok()?
        }
        _ => 0,
    };
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let t = ((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000) + ms;
    u64::try_from(t).ok()
}

/// `YYYY-MM-DD` of a unix day.
fn day_name(day: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(u64::try_from(day.max(0)).unwrap_or(0) * 86_400);
    downshiftarr_shim::record::rfc3339(t)[..10].to_string()
}

// ---------------------------------------------------------------------------- summary

/// `GET /api/dashboard/summary`.
pub fn summary(ctx: &Ctx) -> Value {
    let status = ctx.health.status();
    let cfg = ctx.config();
    let snapshot = ctx.sessions.latest();
    let now_s = now_ms() / 1000;
    let (now_playing, recent) = with_db(ctx, |db| {
        let playing: Vec<Value> = snapshot
            .list
            .iter()
            .map(|s| {
                let row = playing::stored(db, s, &ctx.lookup, now_s);
                playing::entry(s, row.as_ref(), &cfg.shim, &ctx.lookup)
            })
            .collect();
        let recent = db
            .scrobble_history(0, 5)
            .map(|rows| {
                rows.iter()
                    .rev()
                    .map(|r| {
                        json!({"at_ms": r.delivered_ms, "user": r.user, "title": r.title,
                               "action": r.action, "progress": r.progress, "outcome": r.outcome})
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        (playing, recent)
    })
    .unwrap_or_else(|e| {
        tracing::warn!("dashboard: {e}");
        let playing = snapshot
            .list
            .iter()
            .map(|s| playing::entry(s, None, &cfg.shim, &ctx.lookup))
            .collect();
        (playing, Vec::new())
    });
    let throttle = throttle_view(&status);
    let scrobble = scrobble_view(&status, recent);
    let actions = json!({
        "sync": cfg.plex_access.is_ok(),
        "scrobble_pause": scrobble["state"] == "running",
        "scrobble_resume": scrobble["state"] == "paused",
        "throttle_restore": throttle["state"] == "throttled",
    });
    json!({
        "generated_at_ms": now_ms(),
        "version": status.version,
        "uptime_s": status.uptime_s,
        "healthy": status.healthy,
        // Plex never listed the sessions yet (or not lately): not "nobody is playing".
        "sessions_known": snapshot.generation > 0,
        "sessions_age_s": snapshot.at.map(|t| t.elapsed().as_secs()),
        "now_playing": now_playing,
        "jobs": jobs_view(&status, &cfg),
        "throttle": throttle,
        "scrobble": scrobble,
        "actions": actions,
    })
}

fn fact(label: &str, value: impl Into<String>) -> Value {
    json!({"label": label, "value": value.into()})
}

/// A job as the page lists it.
fn job(
    name: &str,
    state: &str,
    summary: String,
    last_error: Option<String>,
    facts: Vec<Value>,
) -> Value {
    json!({"name": name, "state": state, "summary": summary, "last_error": last_error, "facts": facts})
}

/// Every job in plain words: the seven the page names, then any other that is failing.
pub fn jobs_view(status: &Status, cfg: &crate::config::Config) -> Vec<Value> {
    // (page name, job table name)
    const NAMED: [(&str, &str); 7] = [
        ("heal", "heal"),
        ("index", "sync"),
        ("socket", "socket"),
        ("guard", "guard"),
        ("throttle", "throttle"),
        ("scrobble", "scrobble"),
        ("downloads", "downloads"),
    ];
    let state_of = |key: &str| match status.jobs.get(key) {
        None => "off",
        Some(j) if j.last_error.is_some() => "failing",
        Some(_) => "ok",
    };
    let job_error = |key: &str| status.jobs.get(key).and_then(|j| j.last_error.clone());
    let section = |k: &str| status.sections.get(k);
    let mut out = Vec::new();
    for (name, key) in NAMED {
        let mut state = state_of(key).to_string();
        let mut last_error = job_error(key);
        let mut facts = Vec::new();
        let summary = match name {
            "heal" => match state.as_str() {
                "off" => "not watching the transcoder".to_string(),
                _ => "keeps the shim in place of Plex's transcoder".to_string(),
            },
            "index" => {
                let i = &status.index;
                facts.push(fact("Movies", thousands(i.movies)));
                facts.push(fact("Shows", thousands(i.shows)));
                facts.push(fact("Episodes", thousands(i.episodes)));
                facts.push(fact("Files", thousands(i.files)));
                let items = thousands(i.movies + i.episodes);
                match &status.last_sync {
                    None if state == "ok" => {
                        state = "starting".into();
                        format!("{items} items indexed; first sync running")
                    }
                    None => format!("{items} items indexed"),
                    Some(l) => {
                        facts.push(fact("Last sync", l.at.clone()));
                        if let (false, Some(e)) = (l.ok, &l.error) {
                            last_error.get_or_insert_with(|| e.clone());
                            if state == "ok" {
                                state = "failing".into();
                            }
                        }
                        match &l.summary {
                            Some(s) => format!(
                                "{items} items indexed; last sync {} ({} changed, {} removed, {:.1} s)",
                                l.at, s.changed, s.removed, s.seconds
                            ),
                            None => format!("{items} items indexed; last sync {} failed", l.at),
                        }
                    }
                }
            }
            "socket" => {
                let s = &status.shim;
                facts.push(fact("Lookups", thousands(s.lookups as i64)));
                facts.push(fact("Found", thousands(s.lookup_hits as i64)));
                facts.push(fact("Decisions reported", thousands(s.decisions as i64)));
                facts.push(fact(
                    "Refused peers",
                    thousands(s.rejected_connections as i64),
                ));
                format!(
                    "answered {} shim lookups ({} found); {} decisions reported",
                    thousands(s.lookups as i64),
                    thousands(s.lookup_hits as i64),
                    thousands(s.decisions as i64)
                )
            }
            "guard" => {
                let e = &status.enforcement;
                let count = |action: &str| -> u64 {
                    e.counts
                        .iter()
                        .filter(|c| c.action == action)
                        .map(|c| c.count)
                        .sum()
                };
                for c in &e.counts {
                    facts.push(fact(
                        &format!("{}: {}", c.action, c.reason),
                        thousands(c.count as i64),
                    ));
                }
                if e.plex_pass_missing {
                    last_error = Some("terminating needs Plex Pass on the server owner's account: Plex answered 401 to terminate".into());
                } else if last_error.is_none() {
                    last_error = e.last_error.clone();
                }
                if state == "ok" && !cfg.enforce.guard {
                    state = "off".into();
                    "reactive guard off (enforce.guard is false); refusals are still enforced"
                        .into()
                } else {
                    format!(
                        "{} sessions stopped, {} clients moved, {} left playing",
                        count("terminated"),
                        count("switched_client"),
                        count("left_playing")
                    )
                }
            }
            "throttle" => match section("throttle") {
                None => {
                    state = "off".into();
                    "off: throttle.qbittorrent_url is not set".into()
                }
                Some(t) => {
                    let str_of = |k: &str| t.get(k).and_then(Value::as_str).map(String::from);
                    let streams = t
                        .get("remote_streams")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len);
                    if let Some(p) = str_of("problem") {
                        last_error = Some(p);
                    }
                    facts.push(fact(
                        "qBittorrent",
                        str_of("qbittorrent_url")
                            .map(|u| strip_userinfo(&u))
                            .unwrap_or_default(),
                    ));
                    facts.push(fact("Remote streams", streams.to_string()));
                    if let Some(f) = str_of("in_force") {
                        facts.push(fact("In force", f));
                    }
                    if let Some(r) = str_of("will_restore") {
                        facts.push(fact("Gives back", r));
                    }
                    if let Some(l) = str_of("left_to_user") {
                        facts.push(fact("Left alone", l));
                    }
                    match str_of("in_force") {
                        Some(f) => format!("throttled: {f}; {streams} remote stream(s)"),
                        None => format!(
                            "idle: {streams} remote stream(s), qBittorrent at its own limits"
                        ),
                    }
                }
            },
            "scrobble" => match section("scrobble") {
                None => {
                    state = "off".into();
                    "off: no Trakt account configured".into()
                }
                Some(s) => {
                    let num = |k: &str| s.get(k).and_then(Value::as_u64).unwrap_or(0);
                    let str_of = |k: &str| s.get(k).and_then(Value::as_str).map(String::from);
                    if let Some(p) = str_of("problem").or_else(|| str_of("last_error")) {
                        last_error = Some(p);
                    }
                    let users = s
                        .get("users_linked")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len);
                    facts.push(fact("Users linked", users.to_string()));
                    facts.push(fact("Outbox", num("outbox_depth").to_string()));
                    facts.push(fact("Plays followed", num("active_plays").to_string()));
                    if let Some(d) = str_of("last_delivery") {
                        facts.push(fact("Last sent", d));
                    }
                    let paused = s.get("paused").and_then(Value::as_bool) == Some(true);
                    format!(
                        "{}{} play(s) followed, {} call(s) waiting",
                        if paused {
                            "PAUSED: nothing new is sent; "
                        } else {
                            ""
                        },
                        num("active_plays"),
                        num("outbox_depth")
                    )
                }
            },
            _ => match section("downloads") {
                None if state == "off" => "smart downloads: off".to_string(),
                None => "smart downloads: starting".to_string(),
                Some(d) => {
                    if state == "off" {
                        state = "ok".into();
                    }
                    if let Some(m) = d.as_object() {
                        for (k, v) in m
                            .iter()
                            .filter(|(_, v)| v.is_number() || v.is_string() || v.is_boolean())
                        {
                            let text = v.as_str().map_or_else(|| v.to_string(), String::from);
                            facts.push(fact(k, text));
                        }
                    }
                    if let Some(p) = d.get("problem").and_then(Value::as_str) {
                        last_error = Some(p.to_string());
                    }
                    d.get("summary")
                        .and_then(Value::as_str)
                        .map_or_else(|| "smart downloads: on".to_string(), String::from)
                }
            },
        };
        out.push(job(name, &state, summary, last_error, facts));
    }
    for (key, j) in &status.jobs {
        if NAMED.iter().any(|(_, k)| k == key) {
            continue;
        }
        if let Some(e) = &j.last_error {
            out.push(job(
                key,
                "failing",
                format!("restarted {} time(s)", j.restarts),
                Some(e.clone()),
                Vec::new(),
            ));
        }
    }
    out
}

/// `http://user:pass@host:8080` → `http://host:8080`.
fn strip_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (auth, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
            let host = auth.rsplit_once('@').map_or(auth, |(_, h)| h);
            if path.is_empty() && !rest.contains('/') {
                format!("{scheme}://{host}")
            } else {
                format!("{scheme}://{host}/{path}")
            }
        }
        None => url.to_string(),
    }
}

/// The throttle's part of the summary.
pub fn throttle_view(status: &Status) -> Value {
    let Some(t) = status.sections.get("throttle") else {
        return json!({"state": "off", "remote_streams": 0, "limit": null, "since_ms": null, "streams": []});
    };
    let in_force = t.get("in_force").and_then(Value::as_str);
    let streams = t.get("remote_streams").cloned().unwrap_or(json!([]));
    json!({
        "state": if in_force.is_some() { "throttled" } else { "idle" },
        "remote_streams": streams.as_array().map_or(0, Vec::len),
        "streams": streams,
        "limit": in_force,
        "will_restore": t.get("will_restore"),
        "since_ms": t.get("since").and_then(Value::as_str).and_then(rfc3339_ms),
        "problem": t.get("problem"),
        "last_transition": t.get("last_transition"),
    })
}

/// The scrobbler's part of the summary.
pub fn scrobble_view(status: &Status, recent: Vec<Value>) -> Value {
    let Some(s) = status.sections.get("scrobble") else {
        return json!({"state": "off", "outbox": 0, "recent": recent});
    };
    let paused = s.get("paused").and_then(Value::as_bool) == Some(true);
    json!({
        "state": if paused { "paused" } else { "running" },
        "outbox": s.get("outbox_depth").and_then(Value::as_u64).unwrap_or(0),
        "recent": recent,
        "last_delivery": s.get("last_delivery"),
        "problem": s.get("problem"),
    })
}

// -------------------------------------------------------------------------- decisions

/// `GET /api/dashboard/decisions`.
fn decisions(ctx: &Ctx, query: &str) -> Reply {
    let limit = match param(query, "limit").map(|v| v.parse::<usize>()) {
        None => 50,
        Some(Ok(n)) => n.clamp(1, MAX_PAGE),
        Some(Err(_)) => return error(400, "limit: expected a number"),
    };
    let before_id = match param(query, "before_id").map(|v| v.parse::<i64>()) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return error(400, "before_id: expected a decision id"),
    };
    let (kind, user, origin) = (
        param(query, "kind"),
        param(query, "user"),
        param(query, "origin"),
    );
    let f = AuditFilter {
        decision: kind.as_deref(),
        user: user.as_deref(),
        origin: origin.as_deref(),
        before_id,
        limit,
    };
    let read = with_db(ctx, |db| -> anyhow::Result<Value> {
        let rows = db.audit_page(&f)?;
        let (kinds, users) = db.audit_filter_values()?;
        let next = (rows.len() == limit)
            .then(|| rows.last().map(|r| r.id))
            .flatten();
        Ok(json!({
            "decisions": rows.iter().map(row_json).collect::<Vec<_>>(),
            "kinds": kinds,
            "users": users,
            "next_before_id": next,
        }))
    });
    match read {
        Ok(Ok(v)) => (200, v),
        Ok(Err(e)) => error(500, format!("reading the decision audit: {e:#}")),
        Err(e) => error(503, e),
    }
}

fn row_json(r: &crate::store::dashboard::AuditRow) -> Value {
    json!({
        "id": r.id,
        "at": r.time,
        "at_ms": rfc3339_ms(&r.time),
        "origin": r.origin,
        "job": r.job,
        "decision": r.decision,
        "reason": r.reason,
        "file": r.input,
        "user": r.user,
        "outcome": r.outcome,
        "session": r.session,
    })
}

/// `GET /api/dashboard/decisions/<id>`.
fn decision(ctx: &Ctx, id: &str) -> Reply {
    let Ok(id) = id.parse::<i64>() else {
        return error(400, format!("not a decision id: {id:?}"));
    };
    let cfg = ctx.config();
    match with_db(ctx, |db| db.audit_row(id)) {
        Ok(Ok(Some(r))) => {
            let mut v = row_json(&r);
            let record: Value =
                serde_json::from_str(&r.record).unwrap_or_else(|_| json!({"unreadable": r.record}));
            v["record"] = record;
            v["view"] = playing::view(Some(&r), false, &cfg.shim, &ctx.lookup);
            (200, v)
        }
        Ok(Ok(None)) => error(404, format!("no decision {id}")),
        Ok(Err(e)) => error(500, format!("reading decision {id}: {e:#}")),
        Err(e) => error(503, e),
    }
}

// ----------------------------------------------------------------------------- charts

/// `GET /api/dashboard/charts`.
fn charts(ctx: &Ctx, query: &str) -> Reply {
    let days = match param(query, "days").map(|v| v.parse::<u32>()) {
        None => 30,
        Some(Ok(n)) => n.clamp(1, MAX_DAYS),
        Some(Err(_)) => return error(400, "days: expected a number"),
    };
    {
        let c = ctx
            .dashboard
            .charts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some((d, at, v)) = c.as_ref() {
            if *d == days && at.elapsed() < CHARTS_TTL {
                return (200, v.clone());
            }
        }
    }
    let status = ctx.health.status();
    let in_force_since = status
        .sections
        .get("throttle")
        .filter(|t| t.get("in_force").is_some_and(|f| !f.is_null()))
        .and_then(|t| t.get("since").and_then(Value::as_str).and_then(rfc3339_ms));
    match with_db(ctx, |db| compute_charts(db, days, now_ms(), in_force_since)) {
        Ok(Ok(v)) => {
            *ctx.dashboard
                .charts
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some((days, Instant::now(), v.clone()));
            (200, v)
        }
        Ok(Err(e)) => error(500, format!("computing the charts: {e:#}")),
        Err(e) => error(503, e),
    }
}

/// The charts over the `days` UTC days ending today (at `now_ms`); `throttled_since_ms`: a
/// throttle in force now (its hours so far count).
pub fn compute_charts(
    db: &Store,
    days: u32,
    now_ms: u64,
    throttled_since_ms: Option<u64>,
) -> anyhow::Result<Value> {
    let today = (now_ms / 86_400_000) as i64;
    let first = today - i64::from(days) + 1;
    let n = days as usize;
    let idx = |day: i64| (day >= first && day <= today).then(|| (day - first) as usize);
    let names: Vec<String> = (first..=today).map(day_name).collect();
    let mut by_kind: Map<String, Value> = Map::new();
    let mut counts: std::collections::BTreeMap<String, Vec<u64>> =
        ["pass", "rewrite", "switch", "refuse"]
            .iter()
            .map(|k| (k.to_string(), vec![0; n]))
            .collect();
    let mut prevented = vec![0u64; n];
    for (day, kind, count) in db.audit_per_day(&names[0])? {
        let Some(i) = names.iter().position(|d| *d == day) else {
            continue;
        };
        let kind = if kind.is_empty() {
            "unknown".to_string()
        } else {
            kind
        };
        if matches!(kind.as_str(), "rewrite" | "switch" | "refuse") {
            prevented[i] += count;
        }
        counts.entry(kind).or_insert_with(|| vec![0; n])[i] += count;
    }
    for (k, v) in counts {
        by_kind.insert(k, json!(v));
    }
    let mut throttled_s = vec![0u64; n];
    for (day, secs) in db.throttled_per_day()? {
        if let Some(i) = idx(day) {
            throttled_s[i] += secs;
        }
    }
    if let Some(since) = throttled_since_ms {
        let mut t = since / 1000;
        let end = now_ms / 1000;
        while t < end {
            let day = t / 86_400;
            let next = ((day + 1) * 86_400).min(end);
            if let Some(i) = idx(day as i64) {
                throttled_s[i] += next - t;
            }
            t = next;
        }
    }
    let mut scrobbles = vec![0u64; n];
    for (day, count) in
        db.scrobbles_per_day(u64::try_from(first.max(0)).unwrap_or(0) * 86_400_000)?
    {
        if let Some(i) = idx(day) {
            scrobbles[i] += count;
        }
    }
    let hours: Vec<f64> = throttled_s
        .iter()
        .map(|s| (*s as f64 / 36.0).round() / 100.0)
        .collect();
    Ok(json!({
        "days": names,
        "decisions": by_kind,
        "transcodes_prevented": prevented,
        "throttled_hours": hours,
        "scrobbles_sent": scrobbles,
    }))
}

// ---------------------------------------------------------------------------- actions

/// `POST /api/sync`: the index job syncs now (or right after the sync it is running).
pub fn sync(ctx: &Ctx) -> Reply {
    if let Err(e) = &ctx.config().plex_access {
        return error(409, format!("the library index is not synced: {e}"));
    }
    let already = ctx.dashboard.sync_requested.swap(true, Ordering::SeqCst);
    tracing::info!(target: "downshiftarr::jobs::index::ops", "library sync requested through the ops API");
    let message = if already {
        "a library sync was already requested: it starts within a second, or right after the sync running now"
    } else {
        "library sync requested: it starts within a second, or right after the sync running now"
    };
    (202, json!({"ok": true, "message": message}))
}

/// `POST /api/throttle/restore`: asks the throttle job to give qBittorrent its limits back
/// now, and waits for its answer (on a request worker thread: up to [`RESTORE_WAIT`]).
pub fn throttle_restore(ctx: &Ctx) -> Reply {
    let cfg = ctx.config();
    if !cfg.throttle.enabled() {
        return error(
            409,
            "the throttle job is off: throttle.qbittorrent_url is not set",
        );
    }
    if !ctx.health.status().sections.contains_key("throttle") {
        return error(
            503,
            "the throttle job has not started yet; try again in a moment",
        );
    }
    let (tx, rx) = sync_channel(1);
    if !ctx.dashboard.throttle_restore.send(tx) {
        return error(
            503,
            "restore requests are queued already; try again in a moment",
        );
    }
    let reply = match rx.recv_timeout(RESTORE_WAIT) {
        Ok(Ok(message)) => (200, json!({"ok": true, "message": message})),
        Ok(Err(e)) => error(
            502,
            format!("qBittorrent's limits were not given back: {e}; the record is kept, try again"),
        ),
        Err(RecvTimeoutError::Timeout) => error(
            504,
            format!(
                "the throttle job did not answer within {} s (it may be restarting); try again",
                RESTORE_WAIT.as_secs()
            ),
        ),
        Err(RecvTimeoutError::Disconnected) => error(
            503,
            "the throttle job dropped the request (restarting?); try again",
        ),
    };
    let mut body = reply.1;
    redact(&mut body, &cfg.secret_values());
    (reply.0, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_wherever_they_are() {
        let secrets = vec!["plex-tok-123".to_string(), "k3y-abcdef".to_string()];
        let mut v = json!({
            "input": "http://127.0.0.1:32400/x?X-Plex-Token=zzzz&a=1",
            "error": "cannot reach http://h?token=plex-tok-123",
            "nested": [{"api_key": "anything", "note": "k3y-abcdef in text"}],
            "plex_token": "p", "token": null, "tokens_seen": 3,
        });
        redact(&mut v, &secrets);
        let text = v.to_string();
        for s in ["plex-tok-123", "k3y-abcdef", "zzzz", "anything"] {
            assert!(!text.contains(s), "{s} in {text}");
        }
        assert_eq!(v["nested"][0]["api_key"], REDACTED);
        assert_eq!(v["plex_token"], REDACTED);
        assert_eq!(v["token"], Value::Null);
        assert_eq!(v["tokens_seen"], 3);
    }

    #[test]
    fn times_and_numbers_read_back() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            rfc3339_ms("2026-11-23T07:12:05.123Z"),
            Some(1_795_417_925_123)
        );
        let now = SystemTime::now();
        let back = rfc3339_ms(&downshiftarr_shim::record::rfc3339(now)).unwrap();
        let ms = now.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        assert_eq!(back, ms);
        assert_eq!(rfc3339_ms("garbage"), None);
        assert_eq!(rfc3339_ms("2026-1x-23T07:12:05Z"), None);
        assert_eq!(day_name(20_000), "2024-10-04");
        assert_eq!(thousands(20_000), "20,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(strip_userinfo("http://u:p@q:8080"), "http://q:8080");
        assert_eq!(strip_userinfo("http://q:8080/x"), "http://q:8080/x");
    }

    #[test]
    fn charts_count_per_day_with_the_throttle_in_force() {
        let db = Store::in_memory().unwrap();
        let day = 20_000i64; // 2024-10-04
        let at = |d: i64, h: u64| {
            downshiftarr_shim::record::rfc3339(
                UNIX_EPOCH + Duration::from_secs(d as u64 * 86_400 + h * 3600),
            )
        };
        for (d, kind) in [
            (day, "refuse"),
            (day, "pass"),
            (day - 1, "switch"),
            (day - 1, "rewrite"),
            (day - 40, "refuse"),
        ] {
            db.insert_decision(&json!({"time": at(d, 1), "decision": kind}))
                .unwrap();
        }
        db.throttled_add((day as u64 - 1) * 86_400, (day as u64 - 1) * 86_400 + 7200)
            .unwrap();
        let now = (day as u64 * 86_400 + 12 * 3600) * 1000;
        let v = compute_charts(&db, 3, now, Some(now - 1_800_000)).unwrap();
        assert_eq!(v["days"], json!(["2024-10-02", "2024-10-03", "2024-10-04"]));
        assert_eq!(v["decisions"]["refuse"], json!([0, 0, 1]));
        assert_eq!(v["decisions"]["pass"], json!([0, 0, 1]));
        assert_eq!(v["decisions"]["switch"], json!([0, 1, 0]));
        assert_eq!(v["decisions"]["rewrite"], json!([0, 1, 0]));
        assert_eq!(v["transcodes_prevented"], json!([0, 2, 1]));
        assert_eq!(v["throttled_hours"], json!([0.0, 2.0, 0.5]));
        assert_eq!(v["scrobbles_sent"], json!([0, 0, 0]));
    }
}
