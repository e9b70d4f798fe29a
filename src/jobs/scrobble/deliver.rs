//! The outbox to Trakt (issue 12): each user's calls in order, ≥ 1 s apart per token,
//! every answer sorted into *done* (removed, into history) or *later* (kept, with when and
//! why):
//!
//! | answer | what happens |
//! |---|---|
//! | 201 | done: `started` / `paused` / `scrobbled` (Trakt's `action`) |
//! | 409 | done: `already_scrobbled` — never sent again (the peers' hourly duplicates) |
//! | 429 | kept, not before `Retry-After` (capped) |
//! | 5xx, 52x, timeout, refused | kept, back-off 5 s × 2ⁿ (jittered, ≤ 10 min) |
//! | 401 | one refresh (the new pair saved *before* use), then resent; 401 again: kept, error |
//! | 404 / 422 | search by ids, then title/year; the answer cached per rating key, resent; still nothing: done, `not_found` |
//! | 403, 423 | kept (the app key or the account), error surfaced |
//! | other 4xx | done, `refused` (sending it again cannot help), logged |
//!
//! A user without tokens, or whose refresh token Trakt refused, keeps their calls: the error
//! says `run downshiftarr trakt login --user NAME`. Nothing here sleeps: a pass sends what
//! may go now and says when the next call becomes due.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;
use serde_json::json;

use super::ids::Resolve;
use super::outbox::{self, Entry};
use super::tokens;
use crate::clients::trakt::{
    AnsweredAction, IdType, Ids, Media, ScrobbleItem, SearchResult, SearchType, Tokens, Trakt,
    TraktError, POST_GAP,
};
use crate::store::Store;

/// The first back-off after a transient failure, doubled per attempt…
const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// …up to this.
const BACKOFF_CAP: Duration = Duration::from_secs(600);
/// The longest `Retry-After` believed (a 429 must not park a user's calls for an hour).
const RETRY_AFTER_CAP: Duration = Duration::from_secs(600);
/// An item that cannot be resolved (Plex unreachable, no ids) is tried this many times
/// before it is recorded `not_found`.
const RESOLVE_ATTEMPTS: u32 = 12;
/// Rows read from the outbox per round.
const BATCH: usize = 256;
/// Search resolutions kept (emptied when full).
const FOUND_MAX: usize = 4096;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PassReport {
    /// POSTs sent.
    pub sent: u64,
    /// Calls that reached a final answer.
    pub finished: u64,
    /// Calls kept for later.
    pub deferred: u64,
    /// When the next call becomes due (None: the outbox is empty).
    pub next_due: Option<Instant>,
}

/// Counts by action and result, the last delivery and the last error (no secrets).
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeliveryStats {
    /// action → result → count (`stop` → `scrobbled` → 3; results that are not final too:
    /// `rate_limited`, `transient`, `unauthorized`, …).
    pub counts: BTreeMap<String, BTreeMap<String, u64>>,
    /// Unix ms of the last final answer.
    pub last_delivery_ms: Option<u64>,
    pub last_error: Option<String>,
    pub last_error_ms: Option<u64>,
    /// Users whose calls wait for a login, with why.
    pub unlinked: BTreeMap<String, String>,
}

/// What to do with an entry after trying it.
enum Verdict {
    Done {
        outcome: &'static str,
        trakt: Option<serde_json::Value>,
    },
    Later {
        wait: Duration,
        result: &'static str,
        error: String,
    },
}

/// Sends the outbox to Trakt.
pub struct Deliverer {
    trakt: Trakt,
    /// Scrubbed from every error kept or shown.
    secrets: (String, String),
    gap: Duration,
    backoff_base: Duration,
    backoff_cap: Duration,
    /// Per user (one token each): when the next POST may leave.
    next_slot: HashMap<String, Instant>,
    /// Rating key → what a search found, after a 404/422.
    found: HashMap<String, ScrobbleItem>,
    /// Users refreshed after a 401 since their last success: a second 401 is not refreshed.
    refreshed: HashSet<String>,
    /// Users whose refresh token Trakt refused: (that refresh token, the message). A new
    /// login (other tokens in the store) clears it.
    refused: HashMap<String, (String, String)>,
    stats: DeliveryStats,
    rng: u64,
}

impl Deliverer {
    /// `client_id_secret`: the app's credentials, kept out of every message.
    pub fn new(trakt: Trakt, client_id_secret: (String, String)) -> Deliverer {
        let seed = outbox::now_ms() | 1;
        Deliverer {
            trakt,
            secrets: client_id_secret,
            gap: POST_GAP,
            backoff_base: BACKOFF_BASE,
            backoff_cap: BACKOFF_CAP,
            next_slot: HashMap::new(),
            found: HashMap::new(),
            refreshed: HashSet::new(),
            refused: HashMap::new(),
            stats: DeliveryStats::default(),
            rng: seed,
        }
    }

    /// POSTs of one user `gap` apart instead of Trakt's 1 s (tests replaying many calls).
    pub fn with_gap(mut self, gap: Duration) -> Deliverer {
        self.gap = gap;
        self.trakt.set_post_gap(gap);
        self
    }

    /// The back-off after transient failures: `base` × 2ⁿ up to `cap` (tests).
    pub fn with_backoff(mut self, base: Duration, cap: Duration) -> Deliverer {
        self.backoff_base = base;
        self.backoff_cap = cap;
        self
    }

    pub fn stats(&self) -> &DeliveryStats {
        &self.stats
    }

    /// Trakt requests made so far.
    pub fn trakt_calls(&self) -> u64 {
        self.trakt.calls()
    }

    /// Sends every due entry that may go now; returns when nothing more may, with when the
    /// next one becomes due. `stop()` is asked between calls.
    pub fn pass(
        &mut self,
        store: &Store,
        resolver: &mut dyn Resolve,
        now: Instant,
        stop: &dyn Fn() -> bool,
    ) -> Result<PassReport> {
        let mut report = PassReport::default();
        let mut clock = now;
        loop {
            let mut progressed = false;
            let now_ms = outbox::now_ms();
            for e in outbox::due(store, now_ms, BATCH)? {
                if stop() {
                    return self.finish(store, report, HashMap::new());
                }
                let user = tokens::key(&e.call.user);
                if self.next_slot.get(&user).is_some_and(|t| *t > clock) {
                    continue;
                }
                progressed = true;
                let verdict = self.try_entry(store, resolver, &e, &user, &mut report)?;
                self.apply(store, &e, verdict, &mut report)?;
                clock = clock.max(Instant::now());
            }
            if !progressed || stop() {
                break;
            }
            clock = clock.max(Instant::now());
        }
        let waits = self.next_slot.clone();
        self.finish(store, report, waits)
    }

    fn finish(
        &mut self,
        store: &Store,
        mut report: PassReport,
        waits: HashMap<String, Instant>,
    ) -> Result<PassReport> {
        let now = Instant::now();
        let now_ms = outbox::now_ms();
        // Forget slots long past (the map stays as small as the active users).
        self.next_slot.retain(|_, t| *t > now);
        let stored = outbox::next_due(store)?;
        let mut next = stored.map(|ms| now + Duration::from_millis(ms.saturating_sub(now_ms)));
        if let Some(ms) = stored {
            if ms <= now_ms {
                // Due now but held by the pacer: due when the first slot opens.
                next = waits.values().filter(|t| **t > now).min().copied().or(next);
            }
        }
        report.next_due = next;
        Ok(report)
    }

    /// Tokens, item, POST: what to do with `e`.
    fn try_entry(
        &mut self,
        store: &Store,
        resolver: &mut dyn Resolve,
        e: &Entry,
        user: &str,
        report: &mut PassReport,
    ) -> Result<Verdict> {
        let now_s = outbox::now_ms() / 1000;
        let tokens = match self.tokens_for(store, user, &e.call.user, now_s)? {
            Ok(t) => t,
            Err(v) => return Ok(v),
        };
        let (item, from_search) = match self.found.get(&e.call.rating_key) {
            Some(i) => (i.clone(), true),
            None => match resolver.resolve(&e.call.rating_key, e.call.item.as_ref()) {
                Ok(i) => (i, false),
                Err(why) if e.attempts + 1 >= RESOLVE_ATTEMPTS => {
                    self.note_error(&why);
                    return Ok(Verdict::Done {
                        outcome: "not_found",
                        trakt: Some(json!({ "error": self.scrub(&why) })),
                    });
                }
                Err(why) => {
                    return Ok(Verdict::Later {
                        wait: self.backoff(e.attempts),
                        result: "unresolved",
                        error: why,
                    })
                }
            },
        };
        let answer = self.post(user, &tokens, e, &item, report);
        Ok(match answer {
            Ok(a) => {
                self.refreshed.remove(user);
                Verdict::Done {
                    outcome: match &a.action {
                        AnsweredAction::Start => "started",
                        AnsweredAction::Pause => "paused",
                        AnsweredAction::Scrobble => "scrobbled",
                        AnsweredAction::Other(_) => "accepted",
                    },
                    trakt: Some(json!({
                        "id": a.id,
                        "action": match &a.action {
                            AnsweredAction::Other(o) => o.as_str(),
                            AnsweredAction::Start => "start",
                            AnsweredAction::Pause => "pause",
                            AnsweredAction::Scrobble => "scrobble",
                        },
                        "progress": a.progress,
                    })),
                }
            }
            Err(TraktError::AlreadyDone {
                watched_at,
                expires_at,
            }) => Verdict::Done {
                outcome: "already_scrobbled",
                trakt: Some(json!({ "watched_at": watched_at, "expires_at": expires_at })),
            },
            Err(TraktError::RateLimited { retry_after, .. }) => Verdict::Later {
                wait: retry_after.min(RETRY_AFTER_CAP),
                result: "rate_limited",
                error: format!(
                    "Trakt answered 429 (rate limited) for {}: retrying in {} ms",
                    e.call.user,
                    retry_after.min(RETRY_AFTER_CAP).as_millis()
                ),
            },
            Err(TraktError::Transient(m)) => Verdict::Later {
                wait: self.backoff(e.attempts),
                result: "transient",
                error: m,
            },
            Err(TraktError::Unauthorized(m)) => {
                if self.refreshed.contains(user) {
                    Verdict::Later {
                        wait: self.backoff(e.attempts),
                        result: "unauthorized",
                        error: format!(
                            "Trakt refused the refreshed token of {}: {m}; run downshiftarr trakt login --user {}",
                            e.call.user, e.call.user
                        ),
                    }
                } else {
                    match self.refresh(store, user, &e.call.user, &tokens)? {
                        Ok(_) => {
                            self.refreshed.insert(user.to_string());
                            Verdict::Later {
                                wait: Duration::ZERO,
                                result: "unauthorized",
                                error: format!(
                                    "Trakt answered 401 for {}: token refreshed",
                                    e.call.user
                                ),
                            }
                        }
                        Err(v) => v,
                    }
                }
            }
            Err(TraktError::NotFound { status, message }) if !from_search => {
                match self.search(&item) {
                    Ok(Some(found)) => {
                        if self.found.len() >= FOUND_MAX {
                            self.found.clear();
                        }
                        self.found.insert(e.call.rating_key.clone(), found);
                        Verdict::Later {
                            wait: Duration::ZERO,
                            result: "searched",
                            error: format!("Trakt answered {status} for rating key {}: found by search, resending", e.call.rating_key),
                        }
                    }
                    Ok(None) => {
                        self.note_error(&message);
                        Verdict::Done {
                            outcome: "not_found",
                            trakt: Some(json!({ "status": status })),
                        }
                    }
                    Err(err) => Verdict::Later {
                        wait: self.backoff(e.attempts),
                        result: "transient",
                        error: format!(
                            "searching Trakt for rating key {}: {err}",
                            e.call.rating_key
                        ),
                    },
                }
            }
            Err(TraktError::NotFound { status, message }) => {
                self.note_error(&message);
                Verdict::Done {
                    outcome: "not_found",
                    trakt: Some(json!({ "status": status })),
                }
            }
            Err(TraktError::Permanent {
                status: Some(s @ (403 | 423)),
                message,
            }) => Verdict::Later {
                wait: self.backoff(e.attempts),
                result: "forbidden",
                error: format!("Trakt answered {s}: {message}"),
            },
            Err(TraktError::Permanent {
                status: Some(s),
                message,
            }) => {
                self.note_error(&message);
                Verdict::Done {
                    outcome: "refused",
                    trakt: Some(json!({ "status": s, "error": self.scrub(&message) })),
                }
            }
            // A 2xx we could not read, or a request that could not be made: Trakt
            // de-duplicates a resend (409), so it is sent again rather than lost.
            Err(TraktError::Permanent {
                status: None,
                message,
            }) => Verdict::Later {
                wait: self.backoff(e.attempts),
                result: "transient",
                error: message,
            },
        })
    }

    fn post(
        &mut self,
        user: &str,
        tokens: &Tokens,
        e: &Entry,
        item: &ScrobbleItem,
        report: &mut PassReport,
    ) -> Result<crate::clients::trakt::ScrobbleAnswer, TraktError> {
        let at = Instant::now();
        self.next_slot.insert(user.to_string(), at + self.gap);
        report.sent += 1;
        self.trakt
            .scrobble(&tokens.access_token, e.call.action, item, e.call.progress)
    }

    /// The user's tokens, refreshed first when they are due; `Err(verdict)` holds the call.
    fn tokens_for(
        &mut self,
        store: &Store,
        user: &str,
        name: &str,
        now_s: u64,
    ) -> Result<std::result::Result<Tokens, Verdict>> {
        let t = match tokens::load(store, user) {
            Ok(Some(t)) => t,
            Ok(None) => {
                let msg = format!(
                    "{name} is not linked to Trakt: run downshiftarr trakt login --user {name}"
                );
                self.stats.unlinked.insert(user.to_string(), msg.clone());
                return Ok(Err(Verdict::Later {
                    wait: self.backoff_cap,
                    result: "unlinked",
                    error: msg,
                }));
            }
            Err(e) => {
                return Ok(Err(Verdict::Later {
                    wait: self.backoff_cap,
                    result: "unlinked",
                    error: format!("{e:#}"),
                }))
            }
        };
        if let Some((spent, msg)) = self.refused.get(user) {
            if *spent == t.refresh_token {
                return Ok(Err(Verdict::Later {
                    wait: self.backoff_cap,
                    result: "unlinked",
                    error: msg.clone(),
                }));
            }
            // A new login since: try again.
            self.refused.remove(user);
        }
        self.stats.unlinked.remove(user);
        if t.needs_refresh(now_s) {
            return self.refresh(store, user, name, &t);
        }
        Ok(Ok(t))
    }

    /// One refresh: the new pair is saved before it is returned (the old refresh token is
    /// spent the moment Trakt answers). A refused refresh token marks the user unlinked.
    fn refresh(
        &mut self,
        store: &Store,
        user: &str,
        name: &str,
        old: &Tokens,
    ) -> Result<std::result::Result<Tokens, Verdict>> {
        match self.trakt.refresh(&old.refresh_token) {
            Ok(new) => {
                tokens::save(store, user, &new)?;
                Ok(Ok(new))
            }
            Err(TraktError::Unauthorized(m)) => {
                let msg = format!(
                    "Trakt refused the refresh token of {name} ({}); calls are kept: run downshiftarr trakt login --user {name}",
                    self.scrub(&m)
                );
                self.refused
                    .insert(user.to_string(), (old.refresh_token.clone(), msg.clone()));
                self.stats.unlinked.insert(user.to_string(), msg.clone());
                Ok(Err(Verdict::Later {
                    wait: self.backoff_cap,
                    result: "unlinked",
                    error: msg,
                }))
            }
            Err(e) => Ok(Err(Verdict::Later {
                wait: self.backoff(0),
                result: "transient",
                error: format!("refreshing the Trakt token of {name}: {e}"),
            })),
        }
    }

    /// 404/422: what the item is on Trakt by its ids, then by title and year.
    fn search(&self, item: &ScrobbleItem) -> Result<Option<ScrobbleItem>, TraktError> {
        let by_ids = |ids: &Ids, kind: SearchType| -> Result<Option<SearchResult>, TraktError> {
            let mut tries: Vec<(IdType, String)> = Vec::new();
            tries.extend(ids.imdb.clone().map(|i| (IdType::Imdb, i)));
            tries.extend(ids.tmdb.map(|i| (IdType::Tmdb, i.to_string())));
            tries.extend(ids.tvdb.map(|i| (IdType::Tvdb, i.to_string())));
            for (t, id) in tries {
                if let Some(hit) = self.trakt.search_id(t, &id, kind)?.into_iter().next() {
                    return Ok(Some(hit));
                }
            }
            Ok(None)
        };
        let by_text = |m: &Media, kind: SearchType| -> Result<Option<SearchResult>, TraktError> {
            match &m.title {
                Some(t) => Ok(self.trakt.search_text(kind, t, m.year)?.into_iter().next()),
                None => Ok(None),
            }
        };
        Ok(match item {
            ScrobbleItem::Movie(m) => {
                let hit = match by_ids(&m.ids, SearchType::Movie)? {
                    Some(h) => Some(h),
                    None => by_text(m, SearchType::Movie)?,
                };
                hit.and_then(|h| h.movie).map(ScrobbleItem::Movie)
            }
            ScrobbleItem::Episode(ids) => by_ids(ids, SearchType::Episode)?
                .and_then(|h| h.episode)
                .map(|ep| ScrobbleItem::Episode(ep.ids)),
            ScrobbleItem::ShowEpisode {
                show,
                season,
                number,
            } => {
                let hit = match by_ids(&show.ids, SearchType::Show)? {
                    Some(h) => Some(h),
                    None => by_text(show, SearchType::Show)?,
                };
                hit.and_then(|h| h.show)
                    .map(|show| ScrobbleItem::ShowEpisode {
                        show,
                        season: *season,
                        number: *number,
                    })
            }
        }
        .filter(|found| found != item))
    }

    fn apply(
        &mut self,
        store: &Store,
        e: &Entry,
        v: Verdict,
        report: &mut PassReport,
    ) -> Result<()> {
        let action = e.call.action.as_str();
        match v {
            Verdict::Done { outcome, trakt } => {
                outbox::delivered(store, e.id, outcome, trakt.as_ref())?;
                self.count(action, outcome);
                self.stats.last_delivery_ms = Some(outbox::now_ms());
                report.finished += 1;
                if outcome == "not_found" || outcome == "refused" {
                    tracing::warn!(
                        user = %e.call.user, rating_key = %e.call.rating_key, action, outcome,
                        "scrobble not delivered: {}",
                        self.stats.last_error.as_deref().unwrap_or("")
                    );
                }
            }
            Verdict::Later {
                wait,
                result,
                error,
            } => {
                let error = self.scrub(&error);
                let at = outbox::now_ms()
                    .saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
                outbox::retry_later(store, e.id, at, &error)?;
                self.count(action, result);
                if !matches!(result, "searched") {
                    self.note_error(&error);
                }
                report.deferred += 1;
            }
        }
        Ok(())
    }

    fn count(&mut self, action: &str, result: &str) {
        *self
            .stats
            .counts
            .entry(action.to_string())
            .or_default()
            .entry(result.to_string())
            .or_default() += 1;
    }

    fn note_error(&mut self, error: &str) {
        self.stats.last_error = Some(self.scrub(error));
        self.stats.last_error_ms = Some(outbox::now_ms());
    }

    /// Client id and secret out of a message (tokens are scrubbed by the client).
    fn scrub(&self, s: &str) -> String {
        let mut s = s.to_string();
        for secret in [&self.secrets.0, &self.secrets.1] {
            if !secret.is_empty() {
                s = s.replace(secret.as_str(), "<redacted>");
            }
        }
        s
    }

    /// `base` × 2^attempts, capped, with up to 20 % taken off at random (calls held by
    /// one outage do not all come back in the same millisecond).
    fn backoff(&mut self, attempts: u32) -> Duration {
        let full = self
            .backoff_base
            .saturating_mul(1u32 << attempts.min(20))
            .min(self.backoff_cap);
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let off = (self.rng % 200) as u32; // 0..20.0 % in tenths of a percent
        full - full * off / 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::trakt::TraktOptions;

    fn deliverer() -> Deliverer {
        let t = Trakt::new(TraktOptions::new("cid-123", "csecret-456")).unwrap();
        Deliverer::new(t, ("cid-123".into(), "csecret-456".into()))
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered_down_only() {
        let mut d = deliverer();
        for n in 0..30 {
            let full = (BACKOFF_BASE * (1u32 << n.min(20))).min(BACKOFF_CAP);
            let b = d.backoff(n);
            assert!(b <= full && b >= full * 8 / 10, "{n}: {b:?} vs {full:?}");
        }
        let spread: HashSet<Duration> = (0..20).map(|_| d.backoff(3)).collect();
        assert!(spread.len() > 1, "jittered");
    }

    #[test]
    fn secrets_are_scrubbed_from_errors() {
        let mut d = deliverer();
        d.note_error("bad key cid-123 with csecret-456 inside");
        assert_eq!(
            d.stats().last_error.as_deref(),
            Some("bad key <redacted> with <redacted> inside")
        );
    }
}
