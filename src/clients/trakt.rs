//! The Trakt API v2 client (apis.md §3, issue 12): typed scrobble calls, id and text search,
//! device-code login and token refresh, and the per-token POST pacing Trakt asks for.
//!
//! Every answer is sorted into what the scrobble outbox must do with it ([`TraktError`]):
//! a 409 is *already done* and never sent again (PlexTraktSync retried 409s and made hourly
//! duplicates, PR #1882), a 429 says when to come back, 5xx / Cloudflare 52x / timeouts are
//! transient, a 401 asks for one refresh, 404/422 ask for a search, the rest are permanent. A
//! failure is never read as "nothing to do". POSTs are sent once (the outbox owns retries);
//! searches are GETs and get the HTTP client's retries.
//!
//! Secrets: the client secret is registered with the HTTP client; access and refresh tokens
//! travel per call and are scrubbed from every message this module makes. `Tokens` has a
//! redacting `Debug`.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::http::{encode_segment, ErrorKind, HttpClient, HttpError};

/// The production API; `https://api-staging.trakt.tv` works too.
pub const DEFAULT_BASE_URL: &str = "https://api.trakt.tv";

/// Trakt's `AUTHED_API_POST_LIMIT`: one POST per second per token (apis.md §3.1).
pub const POST_GAP: Duration = Duration::from_secs(1);

/// How long to wait after a 429 that says nothing usable ("retry in ~30 s", apis.md §3.1).
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(30);

/// The longest wait a `Retry-After` is believed for (a hostile value cannot park the outbox).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How the client reaches Trakt.
#[derive(Clone)]
pub struct TraktOptions {
    pub base_url: String,
    /// The app's client id (sent as `trakt-api-key`).
    pub client_id: String,
    pub client_secret: String,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

impl TraktOptions {
    pub fn new(client_id: &str, client_secret: &str) -> TraktOptions {
        TraktOptions {
            base_url: DEFAULT_BASE_URL.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(15),
        }
    }
}

/// A Trakt call that did not succeed, sorted by what the caller does next.
#[derive(Debug, Clone, PartialEq)]
pub enum TraktError {
    /// 409: the same scrobble was recorded recently. Final: never sent again.
    AlreadyDone {
        watched_at: Option<String>,
        expires_at: Option<String>,
    },
    /// 429: come back after `retry_after` (from `Retry-After`, else the default).
    RateLimited {
        retry_after: Duration,
        limit: Option<Box<RateLimitInfo>>,
        message: String,
    },
    /// 5xx, Cloudflare 52x, a timeout or no connection: retry with back-off.
    Transient(String),
    /// 401: the token is missing or expired; refresh once, then retry.
    Unauthorized(String),
    /// 404 / 422: the ids did not resolve (or the body was refused); fall back to a search.
    NotFound { status: u16, message: String },
    /// Anything else (403 bad app key, 400, 412, 420, 423, 426, a garbled 2xx…): final.
    Permanent {
        status: Option<u16>,
        message: String,
    },
}

impl TraktError {
    /// Worth sending the same call again later (after `retry_after` for a 429).
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            TraktError::RateLimited { .. } | TraktError::Transient(_)
        )
    }
}

impl std::fmt::Display for TraktError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TraktError::AlreadyDone {
                watched_at,
                expires_at,
            } => write!(
                f,
                "Trakt answered 409: already scrobbled (watched at {}, window ends {}); not sent again",
                watched_at.as_deref().unwrap_or("?"),
                expires_at.as_deref().unwrap_or("?")
            ),
            TraktError::RateLimited {
                retry_after,
                message,
                ..
            } => write!(f, "{message}; retrying in {} s", retry_after.as_secs()),
            TraktError::Transient(m) | TraktError::Unauthorized(m) => f.write_str(m),
            TraktError::NotFound { message, .. } | TraktError::Permanent { message, .. } => {
                f.write_str(message)
            }
        }
    }
}

impl std::error::Error for TraktError {}

/// The `X-Ratelimit` header of a 429 (apis.md §3.1).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RateLimitInfo {
    pub name: Option<String>,
    pub period: Option<u64>,
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    pub until: Option<String>,
}

/// The three scrobble endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScrobbleAction {
    Start,
    Pause,
    Stop,
}

impl ScrobbleAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ScrobbleAction::Start => "start",
            ScrobbleAction::Pause => "pause",
            ScrobbleAction::Stop => "stop",
        }
    }
}

/// Ids of a movie, show or episode; any subset is accepted by Trakt.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ids {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trakt: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imdb: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmdb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tvdb: Option<u64>,
}

/// A movie or show as Trakt names it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Media {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub year: Option<u32>,
    #[serde(default)]
    pub ids: Ids,
}

/// An episode as Trakt answers it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Episode {
    pub season: Option<u32>,
    pub number: Option<u32>,
    pub title: Option<String>,
    #[serde(default)]
    pub ids: Ids,
}

/// What is being watched, in one of the request shapes of apis.md §3.2.
#[derive(Debug, Clone, PartialEq)]
pub enum ScrobbleItem {
    /// `{"movie": {title, year, ids}}` (`trakt-scrobble-start-movie.request.json`).
    Movie(Media),
    /// `{"episode": {"ids": …}}`: the episode's own ids are known.
    Episode(Ids),
    /// `{"show": {…}, "episode": {season, number}}`
    /// (`trakt-scrobble-start-episode-by-show.request.json`).
    ShowEpisode {
        show: Media,
        season: u32,
        number: u32,
    },
}

impl ScrobbleItem {
    /// The request body for this item at `progress` (a percentage, clamped to 0–100).
    pub fn body(&self, progress: f64) -> Value {
        let mut body = match self {
            ScrobbleItem::Movie(m) => json!({ "movie": m }),
            ScrobbleItem::Episode(ids) => json!({ "episode": { "ids": ids } }),
            ScrobbleItem::ShowEpisode {
                show,
                season,
                number,
            } => json!({ "show": show, "episode": { "season": season, "number": number } }),
        };
        body["progress"] = progress_value(progress);
        body
    }
}

/// A percentage as JSON: a whole number is written as one (`10`, not `10.0`), like the
/// recorded requests; NaN and infinities (not JSON) become 0, the rest is clamped to 0–100.
fn progress_value(p: f64) -> Value {
    let p = if p.is_finite() {
        p.clamp(0.0, 100.0)
    } else {
        0.0
    };
    if p.fract() == 0.0 {
        json!(p as u64)
    } else {
        json!(p)
    }
}

/// What Trakt did with a scrobble (`action` of the 201).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnsweredAction {
    Start,
    Pause,
    /// A play added to history (a stop at ≥ 80 %).
    Scrobble,
    Other(String),
}

/// The 201 answer of a scrobble call. A `stop` below 80 % comes back as `Pause` and adds
/// nothing to history (`trakt-scrobble-stop-below-80-treated-as-pause.response-201.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct ScrobbleAnswer {
    pub id: u64,
    pub action: AnsweredAction,
    pub progress: f64,
    pub movie: Option<Media>,
    pub show: Option<Media>,
    pub episode: Option<Episode>,
}

impl ScrobbleAnswer {
    /// A play was added to the user's history.
    pub fn is_play(&self) -> bool {
        self.action == AnsweredAction::Scrobble
    }
}

#[derive(Deserialize)]
struct RawAnswer {
    id: Option<u64>,
    action: String,
    progress: Option<f64>,
    movie: Option<Media>,
    show: Option<Media>,
    episode: Option<Episode>,
}

/// `id_type` of `GET /search/{id_type}/{id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdType {
    Trakt,
    Imdb,
    Tmdb,
    Tvdb,
}

impl IdType {
    fn as_str(self) -> &'static str {
        match self {
            IdType::Trakt => "trakt",
            IdType::Imdb => "imdb",
            IdType::Tmdb => "tmdb",
            IdType::Tvdb => "tvdb",
        }
    }
}

/// `type` of a search (needed for tmdb/tvdb: the same number can be a movie and a show).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchType {
    Movie,
    Show,
    Episode,
}

impl SearchType {
    fn as_str(self) -> &'static str {
        match self {
            SearchType::Movie => "movie",
            SearchType::Show => "show",
            SearchType::Episode => "episode",
        }
    }
}

/// One hit of a search: `{type, score, movie|show|episode(+show)}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SearchResult {
    #[serde(rename = "type")]
    pub kind: String,
    pub score: Option<f64>,
    pub movie: Option<Media>,
    pub show: Option<Media>,
    pub episode: Option<Episode>,
}

/// `POST /oauth/device/code`'s answer: show `user_code` and `verification_url`, poll every
/// `interval` s with `device_code` until `expires_in` s have passed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DeviceCode {
    pub device_code: String,
    pub user_code: String,
    pub verification_url: String,
    pub expires_in: u64,
    pub interval: u64,
}

/// One poll of `POST /oauth/device/token` (apis.md §3.3).
#[derive(Debug, Clone, PartialEq)]
pub enum DevicePoll {
    /// 200: the user approved.
    Authorized(Tokens),
    /// 400: not yet approved; keep polling.
    Pending,
    /// 404: the device code is wrong.
    InvalidCode,
    /// 409: the code was already used.
    AlreadyUsed,
    /// 410: the code expired; start again.
    Expired,
    /// 418: the user said no.
    Denied,
    /// 429: polling too fast; add to the interval.
    SlowDown,
}

/// An access/refresh token pair. The refresh token is single-use: persist a new pair before
/// using it (trakt/trakt-api #48).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    /// Lifetime in seconds (24 h since 2025, apis.md §3.3).
    pub expires_in: u64,
    /// Unix seconds.
    pub created_at: u64,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub token_type: Option<String>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("access_token", &"<redacted>")
            .field("refresh_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .field("created_at", &self.created_at)
            .finish()
    }
}

impl Tokens {
    /// Unix seconds the access token stops working.
    pub fn expires_at(&self) -> u64 {
        self.created_at.saturating_add(self.expires_in)
    }

    /// Time to refresh at `now` (unix seconds): a day before expiry, or — for short-lived
    /// tokens such as Trakt's 24 h ones, where a day before is at once — with a quarter of
    /// the lifetime left (apis.md §3.3: "refresh at 75 % of lifetime").
    pub fn needs_refresh(&self, now: u64) -> bool {
        let margin = (self.expires_in / 4).min(86_400);
        now.saturating_add(margin) >= self.expires_at()
    }
}

/// Spaces POSTs made with the same token ≥ [`POST_GAP`] apart. Pure: the caller passes the
/// clock's `now` and sleeps until the slot it gets. Tokens are kept as hashes only.
#[derive(Debug, Default)]
pub struct Pacer {
    gap: Duration,
    last: HashMap<u64, Instant>,
}

impl Pacer {
    pub fn new(gap: Duration) -> Pacer {
        Pacer {
            gap,
            last: HashMap::new(),
        }
    }

    /// Reserves the next slot for `token` at or after `now`, and returns it.
    pub fn reserve(&mut self, token: &str, now: Instant) -> Instant {
        let gap = self.gap;
        // Forget tokens whose last slot is long past (the map stays as small as the users).
        self.last
            .retain(|_, t| now.saturating_duration_since(*t) < gap);
        let key = token_key(token);
        let at = match self.last.get(&key) {
            Some(prev) => now.max(*prev + gap),
            None => now,
        };
        self.last.insert(key, at);
        at
    }
}

fn token_key(token: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    token.hash(&mut h);
    h.finish()
}

/// A Trakt API client for one app (client id/secret); user tokens are passed per call.
pub struct Trakt {
    http: HttpClient,
    opts: TraktOptions,
    pacer: Mutex<Pacer>,
}

impl Trakt {
    pub fn new(opts: TraktOptions) -> Result<Trakt, TraktError> {
        let http = HttpClient::builder("Trakt", &opts.base_url)
            .url_key("scrobble.trakt_url", DEFAULT_BASE_URL)
            .timeouts(opts.connect_timeout, opts.read_timeout)
            .header("trakt-api-version", "2")
            .header("Content-Type", "application/json")
            .secret_header("trakt-api-key", &opts.client_id)
            .secret(&opts.client_secret)
            .unauthorized_hint("the Trakt token is missing or expired: refresh it, or log in again with `downshiftarr trakt login`")
            .build()
            .map_err(|e| TraktError::Permanent {
                status: None,
                message: e.to_string(),
            })?;
        Ok(Trakt {
            http,
            opts,
            pacer: Mutex::new(Pacer::new(POST_GAP)),
        })
    }

    /// Spaces POSTs made with one token `gap` apart instead of [`POST_GAP`] (the outbox's
    /// tests replay a thousand calls; nothing else should go below Trakt's limit).
    pub fn set_post_gap(&mut self, gap: Duration) {
        self.pacer = Mutex::new(Pacer::new(gap));
    }

    /// Requests sent so far (for `/metrics`).
    pub fn calls(&self) -> u64 {
        self.http.calls()
    }

    /// `POST /scrobble/{action}` for `item` at `progress` %, with the user's access token.
    pub fn scrobble(
        &self,
        token: &str,
        action: ScrobbleAction,
        item: &ScrobbleItem,
        progress: f64,
    ) -> Result<ScrobbleAnswer, TraktError> {
        let path = format!("/scrobble/{}", action.as_str());
        let body = item.body(progress);
        let value = self.post(&path, &body, Some(token), &[token])?;
        let raw: RawAnswer = serde_json::from_value(value).map_err(|e| garbled(&path, &e))?;
        Ok(ScrobbleAnswer {
            id: raw.id.unwrap_or(0),
            action: match raw.action.as_str() {
                "start" => AnsweredAction::Start,
                "pause" => AnsweredAction::Pause,
                "scrobble" => AnsweredAction::Scrobble,
                other => AnsweredAction::Other(other.chars().take(40).collect()),
            },
            progress: raw.progress.unwrap_or(progress),
            movie: raw.movie,
            show: raw.show,
            episode: raw.episode,
        })
    }

    /// `GET /search/{id_type}/{id}?type=…`: what an id is on Trakt (empty: nothing has it).
    pub fn search_id(
        &self,
        id_type: IdType,
        id: &str,
        kind: SearchType,
    ) -> Result<Vec<SearchResult>, TraktError> {
        let path = format!("/search/{}/{}", id_type.as_str(), encode_segment(id));
        self.search(&path, &[("type", kind.as_str().to_string())])
    }

    /// `GET /search/{type}?query=…&years=…`: a title (and year) search.
    pub fn search_text(
        &self,
        kind: SearchType,
        title: &str,
        year: Option<u32>,
    ) -> Result<Vec<SearchResult>, TraktError> {
        let path = format!("/search/{}", kind.as_str());
        let mut q = vec![("query", title.to_string())];
        if let Some(y) = year {
            q.push(("years", y.to_string()));
        }
        self.search(&path, &q)
    }

    fn search(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<SearchResult>, TraktError> {
        let value = self
            .http
            .get(path)
            .query(query)
            .json()
            .map_err(|e| classify(&e, &[]))?;
        serde_json::from_value(value).map_err(|e| garbled(path, &e))
    }

    /// `POST /oauth/device/code`: starts a device login.
    pub fn device_code(&self) -> Result<DeviceCode, TraktError> {
        let path = "/oauth/device/code";
        let v = self.post(
            path,
            &json!({ "client_id": self.opts.client_id }),
            None,
            &[],
        )?;
        serde_json::from_value(v).map_err(|e| garbled(path, &e))
    }

    /// `POST /oauth/device/token`: one poll of a device login.
    pub fn poll_device_token(&self, device_code: &str) -> Result<DevicePoll, TraktError> {
        let path = "/oauth/device/token";
        let body = json!({
            "code": device_code,
            "client_id": self.opts.client_id,
            "client_secret": self.opts.client_secret,
        });
        match self.post(path, &body, None, &[device_code]) {
            Ok(v) => Ok(DevicePoll::Authorized(
                serde_json::from_value(v).map_err(|e| garbled(path, &e))?,
            )),
            Err(e) => match status_of(&e) {
                Some(400) => Ok(DevicePoll::Pending),
                Some(404) => Ok(DevicePoll::InvalidCode),
                Some(409) => Ok(DevicePoll::AlreadyUsed),
                Some(410) => Ok(DevicePoll::Expired),
                Some(418) => Ok(DevicePoll::Denied),
                Some(429) => Ok(DevicePoll::SlowDown),
                _ => Err(e),
            },
        }
    }

    /// `POST /oauth/token` with `grant_type: refresh_token`: the new pair. The old refresh
    /// token is spent: persist the answer before anything else. A refused refresh token is
    /// `Unauthorized` (log in again).
    pub fn refresh(&self, refresh_token: &str) -> Result<Tokens, TraktError> {
        let path = "/oauth/token";
        let body = json!({
            "refresh_token": refresh_token,
            "client_id": self.opts.client_id,
            "client_secret": self.opts.client_secret,
            "redirect_uri": "urn:ietf:wg:oauth:2.0:oob",
            "grant_type": "refresh_token",
        });
        match self.post(path, &body, None, &[refresh_token]) {
            Ok(v) => serde_json::from_value(v).map_err(|e| garbled(path, &e)),
            Err(TraktError::Permanent {
                status: Some(400),
                message,
            }) => Err(TraktError::Unauthorized(message)),
            Err(e) => Err(e),
        }
    }

    /// A paced JSON POST (sent once); `secrets` are scrubbed from any error.
    fn post(
        &self,
        path: &str,
        body: &Value,
        token: Option<&str>,
        secrets: &[&str],
    ) -> Result<Value, TraktError> {
        let mut req = self.http.post_json(path, body);
        if let Some(t) = token {
            let slot = self
                .pacer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .reserve(t, Instant::now());
            let wait = slot.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        req.json().map_err(|e| classify(&e, secrets))
    }
}

/// The status an error came from, for the device poll.
fn status_of(e: &TraktError) -> Option<u16> {
    match e {
        TraktError::AlreadyDone { .. } => Some(409),
        TraktError::RateLimited { .. } => Some(429),
        TraktError::Unauthorized(_) => Some(401),
        TraktError::NotFound { status, .. } => Some(*status),
        TraktError::Permanent { status, .. } => *status,
        TraktError::Transient(_) => None,
    }
}

fn garbled(path: &str, e: &serde_json::Error) -> TraktError {
    TraktError::Permanent {
        status: None,
        message: format!("Trakt sent something unexpected for {path}: {e}"),
    }
}

/// Sorts a failed request into what the caller does next.
fn classify(e: &HttpError, secrets: &[&str]) -> TraktError {
    let mut message = e.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        message = message.replace(s, "<redacted>");
    }
    let (code, excerpt) = match &e.kind {
        ErrorKind::Status(code, excerpt) => (*code, excerpt.as_str()),
        ErrorKind::Timeout { .. } | ErrorKind::Connect(_) => return TraktError::Transient(message),
        ErrorKind::Decode(_) => {
            // A 2xx we cannot read: Trakt did take the call, so it is not sent again.
            return TraktError::Permanent {
                status: None,
                message,
            };
        }
        ErrorKind::InvalidUrl(_) | ErrorKind::Other(_) => {
            return TraktError::Permanent {
                status: None,
                message,
            }
        }
    };
    match code {
        409 => {
            let v: Value = serde_json::from_str(excerpt).unwrap_or(Value::Null);
            let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
            TraktError::AlreadyDone {
                watched_at: field("watched_at"),
                expires_at: field("expires_at"),
            }
        }
        429 => {
            let limit: Option<Box<RateLimitInfo>> = e
                .header("x-ratelimit")
                .and_then(|h| serde_json::from_str(h).ok());
            let retry_after = e
                .header("retry-after")
                .and_then(|h| h.trim().parse::<u64>().ok())
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_RETRY_AFTER)
                .min(MAX_RETRY_AFTER);
            TraktError::RateLimited {
                retry_after,
                limit,
                message,
            }
        }
        401 => TraktError::Unauthorized(message),
        404 | 422 => TraktError::NotFound {
            status: code,
            message,
        },
        500..=599 => TraktError::Transient(message),
        _ => TraktError::Permanent {
            status: Some(code),
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_spaces_one_token_and_not_two() {
        let t0 = Instant::now();
        let mut p = Pacer::new(POST_GAP);
        assert_eq!(p.reserve("a", t0), t0);
        // Same token 100 ms later: pushed to one second after the first.
        assert_eq!(
            p.reserve("a", t0 + Duration::from_millis(100)),
            t0 + POST_GAP
        );
        // A third call queued behind the second.
        assert_eq!(
            p.reserve("a", t0 + Duration::from_millis(200)),
            t0 + 2 * POST_GAP
        );
        // Another token is not held back.
        let b = t0 + Duration::from_millis(300);
        assert_eq!(p.reserve("b", b), b);
        // Long after, a call goes at once, and stale entries are forgotten.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(p.reserve("a", later), later);
        assert_eq!(p.last.len(), 1);
    }

    #[test]
    fn refresh_is_due_a_day_before_or_at_three_quarters() {
        let day = Tokens {
            access_token: "a".into(),
            refresh_token: "r".into(),
            expires_in: 86_400,
            created_at: 1_000_000,
            scope: None,
            token_type: None,
        };
        assert_eq!(day.expires_at(), 1_086_400);
        assert!(!day.needs_refresh(1_000_000));
        assert!(!day.needs_refresh(1_000_000 + 64_799));
        assert!(day.needs_refresh(1_000_000 + 64_800));
        let quarter = Tokens {
            expires_in: 90 * 86_400,
            ..day.clone()
        };
        assert!(!quarter.needs_refresh(1_000_000 + 88 * 86_400));
        assert!(quarter.needs_refresh(1_000_000 + 89 * 86_400));
        assert!(!format!("{day:?}").contains("\"a\""));
    }

    #[test]
    fn progress_is_whole_when_whole_and_always_json() {
        assert_eq!(progress_value(10.0), json!(10));
        assert_eq!(progress_value(1.25), json!(1.25));
        assert_eq!(progress_value(f64::NAN), json!(0));
        assert_eq!(progress_value(250.0), json!(100));
        assert_eq!(progress_value(-3.0), json!(0));
    }
}
