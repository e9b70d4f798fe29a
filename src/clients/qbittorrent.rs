//! The qBittorrent WebUI API v2 client the throttle job drives: global upload/download limits
//! and the alternative speed mode, behind a login that never locks the owner out.
//!
//! What it copes with (apis.md §2, payloads/qbittorrent-login-responses.md):
//! - 4.x logins answer `200` + `Ok.`/`Fails.` with cookie `SID`; ≥ 5.2 answers `204`/`401` with
//!   cookie `QBT_SID_<port>`. Whatever cookie the login sets is sent back, never a fixed name.
//! - An API key (≥ 5.2, WebAPI ≥ 2.14.1) goes in `Authorization: Bearer`; older servers ignore
//!   the header, so it is dropped once `app/webapiVersion` says the server is older.
//! - `Referer` and `Origin` are the WebUI's own origin on every request (CSRF protection).
//! - With "bypass authentication for localhost" the API answers without a login, so we log in
//!   only when a call is refused (`403`, or `401` on ≥ 5.2), and then only once per call.
//! - Five failed logins ban the address for an hour — the owner's browser too. A refused login
//!   therefore starts a back-off (1 min, doubling up to 1 h; a ban waits the longest) during
//!   which no login is attempted at all, and [`Qbittorrent::auth_problem`] says so.
//! - The transfer endpoints speak bytes/s and `0` means unlimited: [`RateLimit`] carries the
//!   wire value, so what we found is restored to the byte.
//!
//! The password and the API key are never in a log line, an error or `Debug` output.
//!
//! Requests go through the one HTTP client builder ([`HttpClient`]): its timeouts, its cookie
//! jar, its bounded reads, its scrubbing of the password and key from every message, and its
//! retries — for reads only: a GET refused or answered 5xx (a qBittorrent restarting) is tried
//! again a couple of times, within one request timeout, so a server that hangs costs one
//! timeout, not three (the throttle's give-back at shutdown must fit in the grace); a login or
//! a setter (POST) is sent once.

use std::time::{Duration, Instant};

use reqwest::header::HeaderValue;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::clients::http::{ErrorKind, HttpClient, HttpError};

/// Longer 2xx answers are an error: every answer we read is a short text.
const MAX_BODY: u64 = 64 * 1024;

/// The first wait before a GET is tried again (then ×4, two retries at most).
const RETRY_BACKOFF: Duration = Duration::from_millis(250);

/// `setSpeedLimitsMode` exists from qBittorrent 4.5.0 (WebAPI 2.8.18).
const SET_SPEED_LIMITS_MODE_SINCE: WebApiVersion = WebApiVersion(2, 8, 18);
/// API keys exist from qBittorrent 5.2.0 (WebAPI 2.14.1).
const API_KEY_SINCE: WebApiVersion = WebApiVersion(2, 14, 1);

/// A global speed limit as qBittorrent's transfer endpoints carry it: bytes per second,
/// `0` = unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RateLimit(pub u64);

impl RateLimit {
    pub const UNLIMITED: RateLimit = RateLimit(0);

    /// `kib` KiB/s (our settings' unit); `0` is unlimited.
    pub fn from_kib(kib: u64) -> RateLimit {
        RateLimit(kib.saturating_mul(1024))
    }

    pub fn bytes_per_s(self) -> u64 {
        self.0
    }

    pub fn is_unlimited(self) -> bool {
        self.0 == 0
    }

    /// True when `self` lets less through than `other` (any limit is tighter than unlimited).
    pub fn tighter_than(self, other: RateLimit) -> bool {
        !self.is_unlimited() && (other.is_unlimited() || self.0 < other.0)
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            0 => f.write_str("unlimited"),
            b if b % 1024 == 0 => write!(f, "{} KiB/s", b / 1024),
            b => write!(f, "{b} B/s"),
        }
    }
}

/// The speed settings the throttle job reads and changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpeedState {
    /// `transfer/uploadLimit`: the limit of the mode in force (the alternative limit while the
    /// alternative mode is on).
    pub upload: RateLimit,
    pub download: RateLimit,
    /// `transfer/speedLimitsMode` = 1.
    pub alt_mode: bool,
}

/// `app/webapiVersion`, e.g. `2.8.19`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WebApiVersion(pub u32, pub u32, pub u32);

impl WebApiVersion {
    /// `2.8.19`, `2.14`, ` 2.11.2\n`; anything else is `None`.
    pub fn parse(text: &str) -> Option<WebApiVersion> {
        let mut parts = text.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = match parts.next() {
            Some(p) => p.parse().ok()?,
            None => 0,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(WebApiVersion(major, minor, patch))
    }
}

impl std::fmt::Display for WebApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// How to reach and authenticate to one qBittorrent.
#[derive(Clone)]
pub struct QbitOptions {
    /// The WebUI's base URL, e.g. `http://127.0.0.1:8080` (a reverse-proxy path prefix is kept).
    pub url: String,
    pub username: String,
    /// `None`: no login possible (localhost bypass or an API key).
    pub password: Option<String>,
    /// `qbt_…`, sent as `Authorization: Bearer` to servers with WebAPI ≥ 2.14.1.
    pub api_key: Option<String>,
    /// Per request (connect + answer).
    pub timeout: Duration,
    /// The first wait after a refused login; it doubles after each refusal.
    pub backoff_initial: Duration,
    /// The longest wait, and the wait after a ban (qBittorrent bans for 3600 s by default).
    pub backoff_max: Duration,
}

impl QbitOptions {
    pub fn new(url: &str) -> QbitOptions {
        QbitOptions {
            url: url.to_string(),
            username: String::new(),
            password: None,
            api_key: None,
            timeout: Duration::from_secs(5),
            backoff_initial: Duration::from_secs(60),
            backoff_max: Duration::from_secs(3600),
        }
    }
}

impl std::fmt::Debug for QbitOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QbitOptions")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Why a qBittorrent request failed. The message names the service, the URL and what to do.
#[derive(Clone, Debug, PartialEq)]
pub enum QbitError {
    /// The base URL is not an `http(s)://` URL.
    BadUrl { url: String, detail: String },
    /// No answer: connection refused, timeout, DNS, TLS.
    Unreachable { url: String, detail: String },
    /// The username/password were refused (`200 Fails.` or `401`).
    LoginRefused { url: String, user: String },
    /// `403` on login: this address is banned after too many failed logins.
    Banned { url: String },
    /// No login was attempted: we are waiting after a refusal.
    BackingOff {
        url: String,
        user: String,
        banned: bool,
        retry_in: Duration,
    },
    /// A login is needed and there is nothing to log in with.
    NoCredentials { url: String, hint: String },
    /// Still refused after a fresh login (or the API key was refused).
    Forbidden {
        url: String,
        status: u16,
        detail: String,
    },
    /// Any other HTTP status.
    Status {
        url: String,
        status: u16,
        body: String,
    },
    /// A 2xx answer we cannot read.
    BadAnswer {
        url: String,
        body: String,
        expected: &'static str,
    },
}

impl std::fmt::Display for QbitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QbitError::BadUrl { url, detail } => {
                write!(f, "qbittorrent: invalid url {url:?}: {detail}")
            }
            QbitError::Unreachable { url, detail } => {
                write!(f, "qbittorrent: no answer from {url}: {detail}")
            }
            QbitError::LoginRefused { url, user } => write!(
                f,
                "qbittorrent: login refused at {url} as {user:?}; check the qbittorrent username and password"
            ),
            QbitError::Banned { url } => write!(
                f,
                "qbittorrent: {url} refused the login with 403: this address is banned after too many failed logins; wait for the ban to end (web_ui_ban_duration) or restart qbittorrent"
            ),
            QbitError::BackingOff {
                url,
                user,
                banned: false,
                retry_in,
            } => write!(
                f,
                "qbittorrent: login refused at {url} as {user:?}; next attempt in {}s; check qbittorrent password",
                retry_in.as_secs()
            ),
            QbitError::BackingOff {
                url,
                banned: true,
                retry_in,
                ..
            } => write!(
                f,
                "qbittorrent: this address is banned at {url}; next login attempt in {}s; wait for the ban to end or restart qbittorrent",
                retry_in.as_secs()
            ),
            QbitError::NoCredentials { url, hint } => {
                write!(f, "qbittorrent: {url} requires a login: {hint}")
            }
            QbitError::Forbidden {
                url,
                status,
                detail,
            } => {
                write!(f, "qbittorrent: {url} refused the call (HTTP {status}): {detail}")
            }
            QbitError::Status { url, status, body } => {
                write!(f, "qbittorrent: {url} answered HTTP {status}")?;
                if !body.is_empty() {
                    write!(f, ": {body}")?;
                }
                Ok(())
            }
            QbitError::BadAnswer {
                url,
                body,
                expected,
            } => write!(
                f,
                "qbittorrent: {url} answered {body:?}; expected {expected}"
            ),
        }
    }
}

impl std::error::Error for QbitError {}

/// The wait after refused logins.
#[derive(Clone, Debug)]
struct Backoff {
    until: Instant,
    delay: Duration,
    banned: bool,
}

/// One answer: the whole body of a 2xx (up to [`MAX_BODY`]), or the status and a short,
/// scrubbed excerpt of any other.
struct Reply {
    status: u16,
    body: String,
}

/// A connection to one qBittorrent WebUI. Blocking; one caller at a time (`&mut self`).
pub struct Qbittorrent {
    /// Sends `Referer`/`Origin` on every request and keeps the login's cookies (whatever their
    /// name) in its jar.
    http: HttpClient,
    opts: QbitOptions,
    /// `…/api/v2/`, for messages.
    api: String,
    webapi: Option<WebApiVersion>,
    /// The server refused the API key: log in with the password instead.
    api_key_refused: bool,
    backoff: Option<Backoff>,
    login_attempts: u64,
    /// Reads are tried again after a timeout or a 5xx (off when a deadline is near).
    retry_reads: bool,
}

impl std::fmt::Debug for Qbittorrent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qbittorrent")
            .field("url", &self.opts.url)
            .field("username", &self.opts.username)
            .field("logged_in", &self.http.has_cookies())
            .field("webapi", &self.webapi)
            .field("backing_off", &self.backoff.is_some())
            .finish()
    }
}

impl Qbittorrent {
    pub fn new(opts: QbitOptions) -> Result<Qbittorrent, QbitError> {
        let bad = |detail: &str| QbitError::BadUrl {
            url: opts.url.clone(),
            detail: detail.to_string(),
        };
        let parsed = reqwest::Url::parse(opts.url.trim()).map_err(|e| bad(&e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(bad("expected http://host:port or https://host:port"));
        }
        let origin = parsed.origin().ascii_serialization();
        let base = opts.url.trim().trim_end_matches('/');
        let api = format!("{base}/api/v2/");
        let mut builder = HttpClient::builder("qBittorrent", base)
            .url_key("throttle.qbittorrent_url", "http://127.0.0.1:8080")
            .timeouts(opts.timeout.min(Duration::from_secs(3)), opts.timeout)
            // A read is tried again while a restart is under way, but not after a timeout.
            .retries(2, RETRY_BACKOFF, opts.timeout)
            .cookies(true)
            .max_body(MAX_BODY)
            .header("Referer", &origin)
            .header("Origin", &origin);
        for secret in [&opts.password, &opts.api_key].into_iter().flatten() {
            builder = builder.secret(secret);
        }
        let http = builder.build().map_err(|e| bad(&e.to_string()))?;
        Ok(Qbittorrent {
            http,
            opts,
            api,
            webapi: None,
            api_key_refused: false,
            backoff: None,
            login_attempts: 0,
            retry_reads: true,
        })
    }

    /// Whether a read that timed out or met a 5xx is tried again (on by default; off for the
    /// last requests before a shutdown deadline, where each attempt must count).
    pub fn set_retry_reads(&mut self, on: bool) {
        self.retry_reads = on;
    }

    /// The base URL, for messages.
    pub fn url(&self) -> &str {
        &self.opts.url
    }

    /// How many logins were sent to the server (refused ones included).
    pub fn login_attempts(&self) -> u64 {
        self.login_attempts
    }

    /// While logins are suspended after a refusal: the sentence for `status` and `/health`.
    pub fn auth_problem(&self) -> Option<String> {
        self.backoff_error(Instant::now()).map(|e| e.to_string())
    }

    /// New credentials (a configuration reload): the back-off ends, the session is dropped.
    pub fn set_credentials(&mut self, username: &str, password: Option<String>) {
        self.opts.username = username.to_string();
        self.opts.password = password;
        self.backoff = None;
        self.http.clear_cookies();
    }

    fn backoff_error(&self, now: Instant) -> Option<QbitError> {
        let b = self.backoff.as_ref()?;
        let retry_in = b.until.checked_duration_since(now)?;
        Some(QbitError::BackingOff {
            url: self.endpoint("auth/login"),
            user: self.opts.username.clone(),
            banned: b.banned,
            // Round up: "next attempt in 0s" while still waiting would be wrong.
            retry_in: Duration::from_secs(
                retry_in.as_secs() + u64::from(retry_in.subsec_nanos() > 0),
            ),
        })
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }

    fn use_api_key(&self) -> bool {
        self.opts.api_key.is_some()
            && !self.api_key_refused
            && self.webapi.is_none_or(|v| v >= API_KEY_SINCE)
    }

    /// Sends one request with the session cookie (the jar's) or the API key, and reads the
    /// whole answer. A login carries neither: the jar is emptied before it.
    fn send(
        &self,
        method: Method,
        path: &str,
        form: &[(&str, String)],
        login: bool,
    ) -> Result<Reply, QbitError> {
        let url = self.endpoint(path);
        let wire = format!("/api/v2/{path}");
        let mut req = if method == Method::POST {
            self.http.post_form(&wire, form)
        } else if self.retry_reads {
            self.http.get(&wire)
        } else {
            self.http.get(&wire).once()
        };
        if !login && self.use_api_key() {
            if let Some(key) = &self.opts.api_key {
                let value = format!("Bearer {key}");
                // Checked here: a value reqwest refuses would fail the request as if the
                // server were unreachable.
                if HeaderValue::from_str(&value).is_err() {
                    return Err(QbitError::NoCredentials {
                        url,
                        hint: "the api_key contains characters an HTTP header cannot carry".into(),
                    });
                }
                req = req.header("Authorization", &value);
            }
        }
        match req.send() {
            Ok(r) => Ok(Reply {
                status: r.status,
                body: String::from_utf8_lossy(&r.body).into_owned(),
            }),
            Err(e) => match &e.kind {
                ErrorKind::Status(status, excerpt) => Ok(Reply {
                    status: *status,
                    body: excerpt.clone(),
                }),
                _ => Err(transport_error(url, &e)),
            },
        }
    }

    /// One API call: on `403`/`401`, log in (unless backing off) and try once more.
    fn call(
        &mut self,
        method: Method,
        path: &str,
        form: &[(&str, String)],
    ) -> Result<String, QbitError> {
        let reply = self.send(method.clone(), path, form, false)?;
        if !matches!(reply.status, 401 | 403) {
            return self.finish(path, reply);
        }
        if self.use_api_key() {
            if self.opts.password.is_none() {
                return Err(QbitError::Forbidden {
                    url: self.endpoint(path),
                    status: reply.status,
                    detail: "the api_key was refused (api keys need qbittorrent 5.2, WebAPI 2.14.1, or later); generate a new key in qbittorrent's WebUI options or configure a password".into(),
                });
            }
            self.api_key_refused = true;
        }
        self.login()?;
        let reply = self.send(method, path, form, false)?;
        if matches!(reply.status, 401 | 403) {
            return Err(QbitError::Forbidden {
                url: self.endpoint(path),
                status: reply.status,
                detail: "refused again right after a successful login; check WebUI host header validation and reverse proxy settings".into(),
            });
        }
        self.finish(path, reply)
    }

    fn finish(&self, path: &str, reply: Reply) -> Result<String, QbitError> {
        match reply.status {
            200 | 204 => Ok(reply.body),
            status => Err(QbitError::Status {
                url: self.endpoint(path),
                status,
                body: self.short(&reply.body),
            }),
        }
    }

    /// Logs in, unless a back-off is running. A refusal starts or doubles the back-off.
    pub fn login(&mut self) -> Result<(), QbitError> {
        let now = Instant::now();
        if let Some(e) = self.backoff_error(now) {
            return Err(e);
        }
        let url = self.endpoint("auth/login");
        let Some(password) = self.opts.password.clone() else {
            let mut hint = "no password is configured: set throttle.password_file or QBITTORRENT_PASSWORD, or enable \"bypass authentication for clients on localhost\" in qbittorrent".to_string();
            if let (Some(_), Some(v)) = (&self.opts.api_key, self.webapi) {
                if v < API_KEY_SINCE {
                    hint = format!("an api_key needs qbittorrent 5.2 or later (WebAPI {API_KEY_SINCE}); this server speaks WebAPI {v}: configure a password instead");
                }
            }
            return Err(QbitError::NoCredentials { url, hint });
        };
        self.login_attempts += 1;
        // Whatever cookie a refused session left is not sent; the jar then holds exactly what
        // this login sets.
        self.http.clear_cookies();
        let form = [
            ("username", self.opts.username.clone()),
            ("password", password),
        ];
        let reply = self.send(Method::POST, "auth/login", &form, true)?;
        match (reply.status, reply.body.trim()) {
            (204, _) | (200, "Ok.") => {
                // The jar keeps the session cookie, whatever its name (`SID`, `QBT_SID_<port>`).
                // Localhost bypass may set none: the next calls simply need none.
                self.backoff = None;
                Ok(())
            }
            (200, "Fails.") | (401, _) => {
                self.start_backoff(now, false);
                Err(QbitError::LoginRefused {
                    url,
                    user: self.opts.username.clone(),
                })
            }
            (403, _) => {
                self.start_backoff(now, true);
                Err(QbitError::Banned { url })
            }
            (200, body) => Err(QbitError::BadAnswer {
                url,
                body: self.short(body),
                expected: "\"Ok.\" or \"Fails.\"",
            }),
            (status, _) => Err(QbitError::Status {
                url,
                status,
                body: self.short(&reply.body),
            }),
        }
    }

    /// Ends the server-side session (`auth/logout`) and forgets the cookie; the next call logs
    /// in again if the server asks for it. Nothing to do without a session.
    pub fn logout(&mut self) -> Result<(), QbitError> {
        if !self.http.has_cookies() {
            return Ok(());
        }
        let reply = self.send(Method::POST, "auth/logout", &[], false)?;
        self.http.clear_cookies();
        self.finish("auth/logout", reply).map(drop)
    }

    fn start_backoff(&mut self, now: Instant, banned: bool) {
        let delay = if banned {
            self.opts.backoff_max
        } else {
            match &self.backoff {
                Some(b) => (b.delay * 2).min(self.opts.backoff_max),
                None => self.opts.backoff_initial.min(self.opts.backoff_max),
            }
        };
        self.http.clear_cookies();
        self.backoff = Some(Backoff {
            until: now + delay,
            delay,
            banned,
        });
    }

    /// The first 200 characters of an answer, on one line, without the password or key.
    fn short(&self, body: &str) -> String {
        // Scrubbed before it is cut, so no part of a secret survives at the cut.
        self.http
            .scrub(body.trim())
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(200)
            .collect()
    }

    /// `app/webapiVersion`, read once.
    pub fn webapi_version(&mut self) -> Result<WebApiVersion, QbitError> {
        if let Some(v) = self.webapi {
            return Ok(v);
        }
        let body = self.call(Method::GET, "app/webapiVersion", &[])?;
        let v = WebApiVersion::parse(&body).ok_or_else(|| QbitError::BadAnswer {
            url: self.endpoint("app/webapiVersion"),
            body: self.short(&body),
            expected: "a version such as 2.8.19",
        })?;
        self.webapi = Some(v);
        Ok(v)
    }

    fn read_number(&mut self, path: &str) -> Result<u64, QbitError> {
        let body = self.call(Method::GET, path, &[])?;
        body.trim().parse().map_err(|_| QbitError::BadAnswer {
            url: self.endpoint(path),
            body: self.short(&body),
            expected: "a whole number",
        })
    }

    /// The global upload limit of the mode in force.
    pub fn upload_limit(&mut self) -> Result<RateLimit, QbitError> {
        self.read_number("transfer/uploadLimit").map(RateLimit)
    }

    pub fn download_limit(&mut self) -> Result<RateLimit, QbitError> {
        self.read_number("transfer/downloadLimit").map(RateLimit)
    }

    /// Sets the upload limit of the mode in force (the alternative limit while it is on).
    pub fn set_upload_limit(&mut self, limit: RateLimit) -> Result<(), QbitError> {
        self.call(
            Method::POST,
            "transfer/setUploadLimit",
            &[("limit", limit.0.to_string())],
        )
        .map(drop)
    }

    pub fn set_download_limit(&mut self, limit: RateLimit) -> Result<(), QbitError> {
        self.call(
            Method::POST,
            "transfer/setDownloadLimit",
            &[("limit", limit.0.to_string())],
        )
        .map(drop)
    }

    /// True while the alternative speed limits are in force.
    pub fn alt_speed_mode(&mut self) -> Result<bool, QbitError> {
        match self.read_number("transfer/speedLimitsMode")? {
            0 => Ok(false),
            1 => Ok(true),
            n => Err(QbitError::BadAnswer {
                url: self.endpoint("transfer/speedLimitsMode"),
                body: n.to_string(),
                expected: "0 or 1",
            }),
        }
    }

    /// Turns the alternative speed mode on or off: `setSpeedLimitsMode` (idempotent) where the
    /// WebAPI has it, else a read and a `toggleSpeedLimitsMode` only when it differs.
    pub fn set_alt_speed_mode(&mut self, on: bool) -> Result<(), QbitError> {
        if self.webapi_version()? >= SET_SPEED_LIMITS_MODE_SINCE {
            let mode = if on { "1" } else { "0" };
            return self
                .call(
                    Method::POST,
                    "transfer/setSpeedLimitsMode",
                    &[("mode", mode.to_string())],
                )
                .map(drop);
        }
        if self.alt_speed_mode()? != on {
            self.call(Method::POST, "transfer/toggleSpeedLimitsMode", &[])?;
        }
        Ok(())
    }

    /// Limits and mode, read in one go.
    pub fn speed_state(&mut self) -> Result<SpeedState, QbitError> {
        Ok(SpeedState {
            alt_mode: self.alt_speed_mode()?,
            upload: self.upload_limit()?,
            download: self.download_limit()?,
        })
    }
}

/// A request that got no usable answer: no connection, no answer in time, an answer broken
/// off or too long. `url` is the endpoint's; the builder's message names the server.
fn transport_error(url: String, e: &HttpError) -> QbitError {
    match &e.kind {
        ErrorKind::Timeout { connect, read } => QbitError::Unreachable {
            url,
            detail: format!(
                "timed out (connect {} ms, answer {} ms: throttle.request_timeout_ms)",
                connect.as_millis(),
                read.as_millis()
            ),
        },
        ErrorKind::Decode(what) => QbitError::BadAnswer {
            url,
            body: format!("<{what}>"),
            expected: "a short text answer",
        },
        ErrorKind::InvalidUrl(detail) => QbitError::BadUrl {
            url,
            detail: detail.clone(),
        },
        _ => QbitError::Unreachable {
            url,
            detail: e.to_string(),
        },
    }
}

#[cfg(test)]
#[path = "qbittorrent_tests.rs"]
mod tests;
