//! One HTTP client for every outside API (Plex, Tautulli, qBittorrent, Trakt, and the downloads
//! job's Radarr, Prowlarr, Jellyfin, Jellystat and notification webhook),
//! so each of them gets the same habits without writing them again:
//!
//! - explicit connect and read timeouts, and an overall deadline across retries;
//! - identity headers (`User-Agent: downshiftarr/<version>`, Plex's `X-Plex-*` where asked);
//! - retries with back-off (250 ms, then ×4) on timeouts, connection failures and 5xx — for
//!   idempotent requests only: a POST, a DELETE or a GET that acts (Plex's terminate) is sent once;
//! - typed errors ([`HttpError`]) that name the service, the server and the path, say what failed
//!   and what to do; a failure is never read as "empty";
//! - secrets in headers (or a form body, for APIs that take no header) — never in a URL we log or
//!   put in an error; every registered secret is also scrubbed from the body excerpts errors carry;
//! - a small cookie jar and form posts (qBittorrent's `SID` login).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use reqwest::Method;
use serde_json::Value;

/// What went wrong, without the "where" (that is in [`HttpError`]).
#[derive(Debug, Clone, PartialEq)]
pub enum ErrorKind {
    /// The configured base URL cannot be used; the whole message (key, value, example).
    InvalidUrl(String),
    /// No answer in time (after retries).
    Timeout { connect: Duration, read: Duration },
    /// Never got an answer: refused, reset, DNS, TLS… (the cause, in words).
    Connect(String),
    /// The server answered a non-2xx status: code and a short, redacted excerpt of the body.
    Status(u16, String),
    /// A 2xx whose body is not what the API promises.
    Decode(String),
    /// The request could not be sent for another reason (the client could not start, the
    /// service is not configured…): the whole message.
    Other(String),
}

/// A failed request to an outside service. `Display` is one line for logs, `status` and
/// `check-config`: which service, which server and path, what failed and what to do.
/// Boxed: it travels in every `Result` of every client.
#[derive(Debug, Clone)]
pub struct HttpError(Box<Failure>);

/// The fields of an [`HttpError`] (reached through `Deref`).
#[derive(Debug, Clone)]
pub struct Failure {
    pub service: &'static str,
    /// `host:port` of the server (empty when the URL is unusable).
    pub addr: String,
    /// The request's path, without its query.
    pub path: String,
    pub kind: ErrorKind,
    /// Keys of the connect and read timeouts, for the timeout message.
    timeout_keys: Option<(&'static str, &'static str)>,
    /// What to do about a 401.
    unauthorized_hint: &'static str,
    /// The rate-limit headers of a failed answer (`Retry-After`, `X-Ratelimit`), lower-case
    /// names: a 429's caller needs them to know when to come back.
    pub headers: Vec<(String, String)>,
}

impl std::ops::Deref for HttpError {
    type Target = Failure;
    fn deref(&self) -> &Failure {
        &self.0
    }
}

impl HttpError {
    /// An error that is not about one request (e.g. "no Plex configured").
    pub fn other(service: &'static str, message: impl Into<String>) -> HttpError {
        HttpError(Box::new(Failure {
            service,
            addr: String::new(),
            path: String::new(),
            kind: ErrorKind::Other(message.into()),
            timeout_keys: None,
            unauthorized_hint: "",
            headers: Vec::new(),
        }))
    }

    /// The HTTP status the server answered, if it answered one.
    pub fn status(&self) -> Option<u16> {
        match self.kind {
            ErrorKind::Status(code, _) => Some(code),
            _ => None,
        }
    }

    /// A header the failed answer carried (lower-case name; only the kept rate-limit ones).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn is_unauthorized(&self) -> bool {
        self.status() == Some(401)
    }

    #[allow(dead_code)] // for the jobs that tell a slow service from a failing one
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, ErrorKind::Timeout { .. })
    }

    /// Where the request went, as `host:port/path` (no scheme, query or credentials).
    #[allow(dead_code)] // for logs that want the URL alone
    pub fn url(&self) -> String {
        format!("{}{}", self.addr, self.path)
    }

    /// Worth another try: a timeout, a connection failure or a 5xx.
    fn transient(&self) -> bool {
        match &self.kind {
            ErrorKind::Timeout { .. } | ErrorKind::Connect(_) => true,
            ErrorKind::Status(code, _) => *code >= 500,
            _ => false,
        }
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (service, addr, path) = (self.service, &self.addr, &self.path);
        match &self.kind {
            ErrorKind::InvalidUrl(m) | ErrorKind::Other(m) => f.write_str(m),
            ErrorKind::Timeout { connect, read } => {
                write!(f, "{service} at {addr} did not answer {path} in time (")?;
                match self.timeout_keys {
                    Some((ck, rk)) => {
                        write!(f, "{ck} {}, {rk} {}", connect.as_millis(), read.as_millis())?
                    }
                    None => write!(
                        f,
                        "connect timeout {} ms, read timeout {} ms",
                        connect.as_millis(),
                        read.as_millis()
                    )?,
                }
                f.write_str(")")
            }
            ErrorKind::Connect(cause) => write!(f, "{cause}"),
            ErrorKind::Status(code, excerpt) => {
                let reason = reqwest::StatusCode::from_u16(*code)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                write!(f, "{service} at {addr} answered {code} {reason} for {path}")?;
                if *code == 401 && !self.unauthorized_hint.is_empty() {
                    write!(f, ": {}", self.unauthorized_hint)
                } else if !excerpt.is_empty() {
                    write!(f, ": {excerpt}")
                } else {
                    Ok(())
                }
            }
            ErrorKind::Decode(what) => {
                write!(
                    f,
                    "{service} at {addr} sent something unexpected for {path}: {what}"
                )
            }
        }
    }
}

impl std::error::Error for HttpError {}

/// The identity Plex shows on its dashboard (apis.md §1.0).
const PLEX_IDENTITY: &[(&str, &str)] = &[
    ("X-Plex-Product", "downshiftarr"),
    ("X-Plex-Client-Identifier", "downshiftarr-daemon"),
    ("X-Plex-Device", "downshiftarr"),
    ("X-Plex-Platform", "Linux"),
    ("X-Plex-Version", downshiftarr_shim::VERSION),
];

/// Headers of a failed answer kept in its error (lower-case): when to come back after a 429.
const KEPT_HEADERS: &[&str] = &["retry-after", "x-ratelimit"];

/// Characters of a failed answer's body kept for the error message.
const EXCERPT: usize = 200;

/// The largest 2xx body read (a Plex metadata page of a big library is tens of MiB).
const MAX_BODY: u64 = 512 << 20;

/// How a client for one service is set up. Start with [`HttpClient::builder`].
pub struct Builder {
    service: &'static str,
    base: String,
    url_key: &'static str,
    url_example: &'static str,
    connect: Duration,
    read: Duration,
    timeout_keys: Option<(&'static str, &'static str)>,
    headers: Vec<(String, String)>,
    secrets: Vec<String>,
    unauthorized_hint: &'static str,
    retries: u32,
    backoff: Duration,
    deadline: Duration,
    cookies: bool,
    max_body: u64,
}

impl Builder {
    /// The configuration key the base URL comes from, and an example, for the message an
    /// unusable URL gives.
    pub fn url_key(mut self, key: &'static str, example: &'static str) -> Self {
        self.url_key = key;
        self.url_example = example;
        self
    }

    pub fn timeouts(mut self, connect: Duration, read: Duration) -> Self {
        self.connect = connect;
        self.read = read;
        self
    }

    /// The configuration keys of the two timeouts, named by the timeout message.
    pub fn timeout_keys(mut self, connect: &'static str, read: &'static str) -> Self {
        self.timeout_keys = Some((connect, read));
        self
    }

    /// A header sent with every request.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// A header carrying a secret: sent with every request, scrubbed from every error.
    pub fn secret_header(self, name: &str, value: &str) -> Self {
        self.header(name, value).secret(value)
    }

    /// A value never to appear in an error (a key sent in a form body, a password).
    pub fn secret(mut self, value: &str) -> Self {
        if !value.is_empty() {
            self.secrets.push(value.into());
        }
        self
    }

    /// Plex's client identity headers (`X-Plex-Product`, `X-Plex-Client-Identifier`…).
    pub fn plex_identity(mut self) -> Self {
        for (k, v) in PLEX_IDENTITY {
            self.headers.push(((*k).into(), (*v).into()));
        }
        self
    }

    /// What a 401 means for this service and what to do (e.g. which key holds the token).
    pub fn unauthorized_hint(mut self, hint: &'static str) -> Self {
        self.unauthorized_hint = hint;
        self
    }

    /// Retries of an idempotent request after a transient failure, the first back-off (then
    /// ×4), and the deadline no retry starts after.
    pub fn retries(mut self, retries: u32, first_backoff: Duration, deadline: Duration) -> Self {
        self.retries = retries;
        self.backoff = first_backoff;
        self.deadline = deadline;
        self
    }

    /// Keeps the cookies the server sets and sends them back (qBittorrent's `SID`).
    pub fn cookies(mut self, on: bool) -> Self {
        self.cookies = on;
        self
    }

    /// The largest 2xx body read (default 512 MiB); a longer one is a decode error, never a
    /// silently cut value. For APIs whose answers are all short (qBittorrent's numbers).
    pub fn max_body(mut self, bytes: u64) -> Self {
        self.max_body = bytes;
        self
    }

    pub fn build(self) -> Result<HttpClient, HttpError> {
        let base = self.base.trim_end_matches('/').to_string();
        let http = Client::builder()
            .connect_timeout(self.connect)
            .timeout(self.read)
            .user_agent(concat!("downshiftarr/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                HttpError::other(
                    self.service,
                    format!("unable to start an HTTP client for {}: {e}", self.service),
                )
            })?;
        // An unusable URL is reported by every request (as an unreachable server is), so the
        // callers' fallbacks (KILL_ON_PLEX_CONNECT_FAIL…) apply to it unchanged.
        let (addr, invalid) = match address(&base) {
            Ok(a) => (a, None),
            Err(why) => {
                let shown = scrub(
                    &downshiftarr_shim::record::redact(&base, None),
                    &self.secrets,
                );
                let key = if self.url_key.is_empty() {
                    self.service
                } else {
                    self.url_key
                };
                let mut m = format!("{key} {shown:?} is not a usable URL: {why}");
                if !self.url_example.is_empty() {
                    m.push_str(&format!("; expected e.g. {}", self.url_example));
                }
                (String::new(), Some(m))
            }
        };
        Ok(HttpClient {
            http,
            service: self.service,
            base,
            addr,
            invalid,
            headers: self.headers,
            secrets: self.secrets,
            timeouts: (self.connect, self.read),
            timeout_keys: self.timeout_keys,
            unauthorized_hint: self.unauthorized_hint,
            retries: self.retries,
            backoff: self.backoff,
            deadline: self.deadline,
            jar: self.cookies.then(Mutex::default),
            max_body: self.max_body,
            calls: AtomicU64::new(0),
        })
    }
}

/// A client for one service: a base URL and the habits above.
pub struct HttpClient {
    http: Client,
    service: &'static str,
    base: String,
    /// `host:port`, for messages.
    addr: String,
    /// Why `base` cannot be used: every request fails with this at once.
    invalid: Option<String>,
    headers: Vec<(String, String)>,
    secrets: Vec<String>,
    timeouts: (Duration, Duration),
    timeout_keys: Option<(&'static str, &'static str)>,
    unauthorized_hint: &'static str,
    retries: u32,
    backoff: Duration,
    deadline: Duration,
    jar: Option<Mutex<BTreeMap<String, String>>>,
    max_body: u64,
    calls: AtomicU64,
}

/// A 2xx answer, read whole.
#[derive(Debug)]
pub struct Response {
    /// 200 vs 204 matters to some APIs (qBittorrent's logins).
    pub status: u16,
    pub body: Vec<u8>,
}

/// One request being set up: `client.get(path).query(…).send()`.
pub struct Request<'a> {
    client: &'a HttpClient,
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    form: Option<Vec<(String, String)>>,
    /// The body: JSON unless a `Content-Type` header says otherwise (`post_bytes`).
    json: Option<Vec<u8>>,
    timeout: Option<Duration>,
    retries: u32,
}

impl HttpClient {
    /// A client for `service` (as named in messages: `Plex`, `Tautulli`) at `base`. Defaults:
    /// 2 s to connect, 15 s to read, 2 retries (250 ms then 1 s), no retry after 60 s.
    pub fn builder(service: &'static str, base: &str) -> Builder {
        Builder {
            service,
            base: base.into(),
            url_key: "",
            url_example: "",
            connect: Duration::from_secs(2),
            read: Duration::from_secs(15),
            timeout_keys: None,
            headers: Vec::new(),
            secrets: Vec::new(),
            unauthorized_hint: "",
            retries: 2,
            backoff: Duration::from_millis(250),
            deadline: Duration::from_secs(60),
            cookies: false,
            max_body: MAX_BODY,
        }
    }

    /// Requests sent so far, retries included (for summaries and `/metrics`).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The read timeout every request is bounded by (unless it sets its own).
    pub fn read_timeout(&self) -> Duration {
        self.timeouts.1
    }

    /// `host:port` of the server.
    #[allow(dead_code)] // for messages the callers write themselves
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// A GET: retried after transient failures unless told [`Request::once`].
    pub fn get(&self, path: &str) -> Request<'_> {
        self.request(Method::GET, path, self.retries)
    }

    /// A form POST (`application/x-www-form-urlencoded`): never retried.
    pub fn post_form(&self, path: &str, form: &[(&str, String)]) -> Request<'_> {
        let mut r = self.request(Method::POST, path, 0);
        r.form = Some(form.iter().map(|(k, v)| ((*k).into(), v.clone())).collect());
        r
    }

    /// A JSON POST (`Content-Type: application/json`): never retried.
    pub fn post_json(&self, path: &str, body: &Value) -> Request<'_> {
        let mut r = self.request(Method::POST, path, 0);
        r.json = Some(body.to_string().into_bytes());
        r
    }

    /// A JSON PUT (`Content-Type: application/json`): never retried (Radarr's movie edit).
    pub fn put_json(&self, path: &str, body: &Value) -> Request<'_> {
        let mut r = self.request(Method::PUT, path, 0);
        r.json = Some(body.to_string().into_bytes());
        r
    }

    /// A POST of raw bytes with their `Content-Type`: never retried (ntfy's plain-text
    /// messages).
    pub fn post_bytes(&self, path: &str, body: Vec<u8>, content_type: &str) -> Request<'_> {
        let mut r = self.request(Method::POST, path, 0);
        r.json = Some(body);
        r.headers.push(("Content-Type".into(), content_type.into()));
        r
    }

    /// A DELETE: never retried.
    pub fn delete(&self, path: &str) -> Request<'_> {
        self.request(Method::DELETE, path, 0)
    }

    fn request(&self, method: Method, path: &str, retries: u32) -> Request<'_> {
        Request {
            client: self,
            method,
            path: path.into(),
            query: Vec::new(),
            headers: Vec::new(),
            form: None,
            json: None,
            timeout: None,
            retries,
        }
    }

    /// An error about a request to this service (for checks the caller makes on a 2xx body).
    pub fn error(&self, path: &str, kind: ErrorKind) -> HttpError {
        HttpError(Box::new(Failure {
            service: self.service,
            addr: self.addr.clone(),
            path: path.into(),
            kind,
            timeout_keys: self.timeout_keys,
            unauthorized_hint: self.unauthorized_hint,
            headers: Vec::new(),
        }))
    }

    /// Keeps the `name=value` of every `Set-Cookie`; an empty value or `Max-Age=0` deletes.
    fn keep_cookies(&self, headers: &reqwest::header::HeaderMap) {
        let Some(jar) = &self.jar else { return };
        let mut jar = jar.lock().unwrap_or_else(|e| e.into_inner());
        for h in headers.get_all(reqwest::header::SET_COOKIE) {
            let Ok(h) = h.to_str() else { continue };
            let mut parts = h.split(';');
            let Some((name, value)) = parts.next().and_then(|kv| kv.split_once('=')) else {
                continue;
            };
            let expired = parts.any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
            let (name, value) = (name.trim(), value.trim());
            if value.is_empty() || expired {
                jar.remove(name);
            } else if !name.is_empty() {
                jar.insert(name.into(), value.into());
            }
        }
    }

    /// `text` with every registered secret replaced by `<redacted>`, for messages the caller
    /// writes about a 2xx body (which may echo what was sent).
    pub fn scrub(&self, text: &str) -> String {
        scrub(text, &self.secrets)
    }

    /// Forgets every cookie: a logout, a login about to start afresh, new credentials.
    pub fn clear_cookies(&self) {
        if let Some(jar) = &self.jar {
            jar.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }

    /// True while the jar holds a cookie (a session the server opened).
    pub fn has_cookies(&self) -> bool {
        self.jar
            .as_ref()
            .is_some_and(|j| !j.lock().unwrap_or_else(|e| e.into_inner()).is_empty())
    }

    fn cookie_header(&self) -> Option<String> {
        let jar = self.jar.as_ref()?.lock().unwrap_or_else(|e| e.into_inner());
        (!jar.is_empty()).then(|| {
            jar.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    /// One attempt.
    fn attempt(&self, r: &Request<'_>) -> Result<Response, HttpError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut req = self
            .http
            .request(r.method.clone(), format!("{}{}", self.base, r.path))
            .query(&r.query);
        for (k, v) in self.headers.iter().chain(&r.headers) {
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some(c) = self.cookie_header() {
            req = req.header(reqwest::header::COOKIE, c);
        }
        if let Some(form) = &r.form {
            req = req.form(form);
        }
        if let Some(json) = &r.json {
            let typed = self
                .headers
                .iter()
                .chain(&r.headers)
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
            if !typed {
                req = req.header(reqwest::header::CONTENT_TYPE, "application/json");
            }
            req = req.body(json.clone());
        }
        if let Some(t) = r.timeout {
            req = req.timeout(t);
        }
        let timeout = || ErrorKind::Timeout {
            connect: self.timeouts.0,
            read: r.timeout.unwrap_or(self.timeouts.1),
        };
        let resp = req.send().map_err(|e| {
            self.error(
                &r.path,
                if e.is_timeout() {
                    timeout()
                } else {
                    ErrorKind::Connect(self.unreachable(&e))
                },
            )
        })?;
        self.keep_cookies(resp.headers());
        let kept: Vec<(String, String)> = KEPT_HEADERS
            .iter()
            .filter_map(|n| {
                let v = resp.headers().get(*n)?.to_str().ok()?;
                Some(((*n).to_string(), v.chars().take(EXCERPT).collect()))
            })
            .collect();
        let status = resp.status().as_u16();
        let ok = (200..300).contains(&status);
        // Bounded reads: a hostile or broken server cannot fill memory within the timeout.
        let limit = if ok {
            self.max_body
        } else {
            4 * EXCERPT as u64
        };
        let mut body = Vec::new();
        let mut resp = resp;
        if let Err(e) =
            std::io::Read::read_to_end(&mut std::io::Read::take(&mut resp, limit + 1), &mut body)
        {
            let timed_out = e.kind() == std::io::ErrorKind::TimedOut
                || e.get_ref()
                    .and_then(|i| i.downcast_ref::<reqwest::Error>())
                    .is_some_and(reqwest::Error::is_timeout);
            return Err(self.error(
                &r.path,
                if timed_out {
                    timeout()
                } else {
                    ErrorKind::Connect(format!(
                        "{} at {} broke off its answer to {}: {}",
                        self.service,
                        self.addr,
                        r.path,
                        scrub(&e.to_string(), &self.secrets)
                    ))
                },
            ));
        }
        if ok {
            if body.len() as u64 > self.max_body {
                return Err(self.error(
                    &r.path,
                    ErrorKind::Decode(format!("an answer larger than {}", size(self.max_body))),
                ));
            }
            return Ok(Response { status, body });
        }
        // Scrubbed before it is cut, so no part of a secret survives at the cut.
        let text = scrub(
            &downshiftarr_shim::record::redact(&String::from_utf8_lossy(&body), None),
            &self.secrets,
        );
        let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut excerpt: String = words.chars().take(EXCERPT).collect();
        if excerpt.len() < words.len() || body.len() as u64 > limit {
            excerpt.push('…');
        }
        let mut e = self.error(&r.path, ErrorKind::Status(status, excerpt));
        e.0.headers = kept;
        Err(e)
    }

    /// Why a request never got an answer, classified from the error chain.
    fn unreachable(&self, e: &reqwest::Error) -> String {
        let (service, addr) = (self.service, &self.addr);
        let mut chain: Vec<&(dyn std::error::Error + 'static)> = vec![e];
        while let Some(next) = chain.last().and_then(|c| c.source()) {
            chain.push(next);
        }
        let io_kind = chain
            .iter()
            .find_map(|c| c.downcast_ref::<std::io::Error>())
            .map(|io| io.kind());
        let text: Vec<String> = chain.iter().map(|c| c.to_string().to_lowercase()).collect();
        let mentions = |w: &str| text.iter().any(|t| t.contains(w));
        // The innermost cause says what really happened, without reqwest's wrapping or the URL.
        let inner = scrub(
            &chain.last().map(|c| c.to_string()).unwrap_or_default(),
            &self.secrets,
        );
        let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
        use std::io::ErrorKind as K;
        if mentions("dns error") || mentions("failed to lookup address") {
            format!("cannot connect to {service} at {addr}: cannot resolve {host}: {inner}")
        } else if io_kind == Some(K::ConnectionRefused) {
            format!("cannot connect to {service} at {addr}: connection refused")
        } else if matches!(io_kind, Some(K::ConnectionReset | K::ConnectionAborted)) {
            format!("cannot connect to {service} at {addr}: connection reset")
        } else if mentions("certificate") || mentions("tls") || mentions("handshake") {
            format!("cannot connect to {service} at {addr}: TLS failed: {inner}")
        } else if e.is_connect() {
            format!("cannot connect to {service} at {addr}: {inner}")
        } else {
            format!("request to {service} at {addr} failed: {inner}")
        }
    }
}

impl Request<'_> {
    pub fn query(mut self, query: &[(&str, String)]) -> Self {
        self.query
            .extend(query.iter().map(|(k, v)| ((*k).into(), v.clone())));
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Bounds this request (each attempt) instead of the client's read timeout.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    /// Sent once: a GET that acts (Plex's terminate, a client command), or a caller on a
    /// deadline.
    pub fn once(mut self) -> Self {
        self.retries = 0;
        self
    }

    /// Sends the request, retrying transient failures of idempotent requests with back-off
    /// within the client's deadline.
    pub fn send(self) -> Result<Response, HttpError> {
        let c = self.client;
        if let Some(why) = &c.invalid {
            return Err(c.error(&self.path, ErrorKind::InvalidUrl(why.clone())));
        }
        let started = Instant::now();
        let mut delay = c.backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match c.attempt(&self) {
                Ok(r) => return Ok(r),
                Err(e)
                    if e.transient()
                        && attempt <= self.retries
                        && started.elapsed() + delay < c.deadline =>
                {
                    tracing::debug!("{e}; retrying in {} ms", delay.as_millis());
                    std::thread::sleep(delay);
                    delay *= 4;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends the request and decodes a 2xx body as JSON.
    pub fn json(self) -> Result<Value, HttpError> {
        let (c, path) = (self.client, self.path.clone());
        let r = self.send()?;
        serde_json::from_slice(&r.body).map_err(|e| {
            c.error(
                &path,
                ErrorKind::Decode(format!("not JSON ({})", scrub(&e.to_string(), &c.secrets))),
            )
        })
    }
}

/// `host:port` of a base URL, or why it cannot be used.
fn address(base: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(base).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "the scheme is {:?}, not http or https",
            url.scheme()
        ));
    }
    let host = url.host_str().ok_or("no host")?;
    let port = url.port_or_known_default().ok_or("no port")?;
    Ok(format!("{host}:{port}"))
}

/// `512 MiB`, `64 KiB`, `100 bytes`.
fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// `s` with every secret replaced by `<redacted>`.
fn scrub(s: &str, secrets: &[String]) -> String {
    let mut out = s.to_string();
    for secret in secrets {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "<redacted>");
        }
    }
    out
}

/// Percent-encodes a path segment (ids from outside are opaque strings).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The scripted loopback server the clients' tests use.
#[cfg(test)]
#[path = "http_tests.rs"]
pub(crate) mod tests;
