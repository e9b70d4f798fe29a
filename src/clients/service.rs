//! The one error shape of the downloads job's services (Radarr, Prowlarr, Jellyfin, Jellystat,
//! the notification webhook), and the thin layer over [`HttpClient`] they share.
//!
//! Why a shape of its own: the job must never read a failed request as "absent" or "not
//! watched" (issue 13; daemon-peers.md §3). So every call answers `Ok(value)` only when the
//! service answered what it promises, and a failure is one of five kinds a caller can act on
//! — [`ServiceError::Unauthorized`] (fix the key), [`ServiceError::Http`] (the service said no,
//! or is failing), [`ServiceError::Timeout`], [`ServiceError::Connect`] (retry later) and
//! [`ServiceError::Malformed`] (the answer is not what the API promises: wrong URL base, wrong
//! service, a version we do not know). `Display` says what failed, where (the URL without its
//! query or credentials), and what to do. No key ever appears: keys travel in headers the
//! [`HttpClient`] registers as secrets and scrubs from every body excerpt.
//!
//! The HTTP habits come from [`HttpClient`]: connect and request timeouts, bounded reads (a
//! hostile 1 GB answer is cut at the client's cap and reported, never slurped), retries of
//! idempotent GETs after timeouts, connection failures and 5xx; POST/PUT/DELETE are sent once.

use std::time::Duration;

use serde_json::Value;

use super::http::{ErrorKind, HttpClient, HttpError};

/// A failed call to one of the downloads job's services.
#[derive(Clone, Debug, PartialEq)]
pub enum ServiceError {
    /// The service refused the API key (401; Jellystat's 403 "invalid key" too).
    Unauthorized { service: &'static str, url: String },
    /// The service answered a status that is not a success: the code and a short excerpt of
    /// the body (secrets scrubbed).
    Http {
        service: &'static str,
        url: String,
        status: u16,
        body_excerpt: String,
    },
    /// No answer within the time allowed (after the retries of a GET).
    Timeout {
        service: &'static str,
        url: String,
        after_ms: u64,
    },
    /// Never got an answer: refused, reset, DNS, TLS, an unusable URL (the cause, in words).
    Connect {
        service: &'static str,
        url: String,
        cause: String,
    },
    /// A success whose body is not what the API promises (not JSON, a field missing, too
    /// large).
    Malformed {
        service: &'static str,
        url: String,
        what: String,
    },
}

impl ServiceError {
    /// The service the call went to.
    pub fn service(&self) -> &'static str {
        match self {
            ServiceError::Unauthorized { service, .. }
            | ServiceError::Http { service, .. }
            | ServiceError::Timeout { service, .. }
            | ServiceError::Connect { service, .. }
            | ServiceError::Malformed { service, .. } => service,
        }
    }

    /// Where the call went (no query, no credentials).
    pub fn url(&self) -> &str {
        match self {
            ServiceError::Unauthorized { url, .. }
            | ServiceError::Http { url, .. }
            | ServiceError::Timeout { url, .. }
            | ServiceError::Connect { url, .. }
            | ServiceError::Malformed { url, .. } => url,
        }
    }

    /// The HTTP status the service answered, when it answered one (401 for `Unauthorized`).
    pub fn status(&self) -> Option<u16> {
        match self {
            ServiceError::Http { status, .. } => Some(*status),
            ServiceError::Unauthorized { .. } => Some(401),
            _ => None,
        }
    }

    /// Worth the same call again later without changing anything: a timeout, no connection,
    /// a 5xx, a 429 or a 408. A 401, a 4xx or a malformed answer needs someone to look.
    pub fn transient(&self) -> bool {
        match self {
            ServiceError::Timeout { .. } | ServiceError::Connect { .. } => true,
            ServiceError::Http { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            _ => false,
        }
    }
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceError::Unauthorized { service, url } => write!(
                f,
                "{service} at {url} refused the API key: set {} to the API key {}",
                key_setting(service),
                key_source(service)
            ),
            ServiceError::Http {
                service,
                url,
                status,
                body_excerpt,
            } => {
                let reason = reqwest::StatusCode::from_u16(*status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                write!(f, "{service} at {url} answered {status} {reason}")?;
                if !body_excerpt.is_empty() {
                    write!(f, " ({body_excerpt})")?;
                }
                match status {
                    500..=599 => write!(f, "; {service} is failing: see its logs; retried later"),
                    429 => write!(f, "; {service} asks to slow down; retried later"),
                    404 => write!(
                        f,
                        "; check {} (the URL base too, e.g. http://host:port/{})",
                        url_setting(service),
                        service.to_ascii_lowercase()
                    ),
                    _ => write!(f, "; {service} refused the request"),
                }
            }
            ServiceError::Timeout {
                service,
                url,
                after_ms,
            } => write!(
                f,
                "{service} at {url} did not answer within {after_ms} ms \
                 (downloads.request_timeout_ms); retried later"
            ),
            ServiceError::Connect {
                service,
                url,
                cause,
            } => write!(
                f,
                "cannot reach {service} at {url}: {cause}; check {} and that {service} is running",
                url_setting(service)
            ),
            ServiceError::Malformed { service, url, what } => write!(
                f,
                "{service} at {url} sent something unexpected: {what}; does {} point at {service}?",
                url_setting(service)
            ),
        }
    }
}

impl std::error::Error for ServiceError {}

/// The setting holding a service's URL, for messages.
fn url_setting(service: &str) -> &'static str {
    match service {
        "Radarr" => "downloads.radarr_url (RADARR_URL)",
        "Prowlarr" => "downloads.prowlarr_url (PROWLARR_URL)",
        "Jellyfin" => "downloads.jellyfin_url (JELLYFIN_URL)",
        "Jellystat" => "downloads.jellystat_url (JELLYSTAT_URL)",
        _ => "downloads.notify.url (DOWNLOADS_NOTIFY_URL)",
    }
}

/// The setting holding a service's key, for messages.
fn key_setting(service: &str) -> &'static str {
    match service {
        "Radarr" => "downloads.radarr_api_key (RADARR_API_KEY)",
        "Prowlarr" => "downloads.prowlarr_api_key (PROWLARR_API_KEY)",
        "Jellyfin" => "downloads.jellyfin_api_key (JELLYFIN_API_KEY)",
        "Jellystat" => "downloads.jellystat_api_key (JELLYSTAT_API_KEY)",
        _ => "the key inside downloads.notify.url",
    }
}

/// Where the owner finds that key.
fn key_source(service: &str) -> &'static str {
    match service {
        "Radarr" => "shown in Radarr → Settings → General → Security",
        "Prowlarr" => "shown in Prowlarr → Settings → General → Security",
        "Jellyfin" => "created in Jellyfin → Dashboard → API Keys",
        "Jellystat" => "created in Jellystat → Settings → API Keys",
        _ => "the service gave",
    }
}

/// How one service is reached.
pub(crate) struct Spec {
    pub name: &'static str,
    /// Also read a 403 as "the key is wrong" (Jellystat: 401 no key, 403 invalid key).
    pub forbidden_is_unauthorized: bool,
    /// Show only `scheme://host:port` in messages (a webhook URL carries its key in the path).
    pub hide_path: bool,
}

/// A service's base URL and the habits above; each client wraps one.
pub(crate) struct ServiceClient {
    http: HttpClient,
    spec: Spec,
    /// The base URL as shown in messages: no credentials, no query.
    shown: String,
    request: Duration,
}

impl std::fmt::Debug for ServiceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(self.spec.name)
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

/// The timeouts and limits of one client.
pub(crate) struct Limits {
    pub connect_ms: u64,
    pub request_ms: u64,
    /// The largest success body read.
    pub max_body: u64,
    /// Retries of a GET after a transient failure.
    pub retries: u32,
}

impl ServiceClient {
    /// A client for `base` (with its URL base if any: `http://host/radarr`). `headers` are sent
    /// with every request and scrubbed from every message, as are `secrets`.
    pub fn new(
        spec: Spec,
        base: &str,
        headers: &[(&str, &str)],
        secrets: &[&str],
        limits: Limits,
    ) -> Result<ServiceClient, ServiceError> {
        let base = base.trim();
        let shown = shown_url(base, spec.hide_path).map_err(|cause| ServiceError::Connect {
            service: spec.name,
            url: if spec.hide_path {
                "the configured URL".into()
            } else {
                redact_userinfo(base)
            },
            cause,
        })?;
        let connect = Duration::from_millis(limits.connect_ms.max(1));
        let request = Duration::from_millis(limits.request_ms.max(1));
        let mut b = HttpClient::builder(spec.name, base.trim_end_matches('/'))
            .timeouts(connect, request)
            .header("Accept", "application/json")
            .max_body(limits.max_body)
            // Retries stop before the third request's worth of waiting.
            .retries(
                limits.retries,
                Duration::from_millis(200),
                request * 3 + connect,
            );
        for (name, value) in headers {
            b = b.secret_header(name, value);
        }
        for s in secrets {
            b = b.secret(s);
        }
        let http = b.build().map_err(|e| ServiceError::Connect {
            service: spec.name,
            url: shown.clone(),
            cause: e.to_string(),
        })?;
        Ok(ServiceClient {
            http,
            spec,
            shown,
            request,
        })
    }

    /// Requests sent so far, retries included.
    pub fn calls(&self) -> u64 {
        self.http.calls()
    }

    /// The URL of `path` as shown in messages.
    pub fn url(&self, path: &str) -> String {
        if self.spec.hide_path {
            self.shown.clone()
        } else {
            format!("{}{path}", self.shown)
        }
    }

    pub fn malformed(&self, path: &str, what: impl Into<String>) -> ServiceError {
        ServiceError::Malformed {
            service: self.spec.name,
            url: self.url(path),
            what: self.http.scrub(&what.into()),
        }
    }

    /// Sorts a failed request into a [`ServiceError`].
    pub fn fail(&self, path: &str, e: HttpError) -> ServiceError {
        let (service, url) = (self.spec.name, self.url(path));
        match &e.kind {
            ErrorKind::Status(401, _) => ServiceError::Unauthorized { service, url },
            ErrorKind::Status(403, _) if self.spec.forbidden_is_unauthorized => {
                ServiceError::Unauthorized { service, url }
            }
            ErrorKind::Status(status, excerpt) => ServiceError::Http {
                service,
                url,
                status: *status,
                body_excerpt: excerpt.clone(),
            },
            ErrorKind::Timeout { read, .. } => ServiceError::Timeout {
                service,
                url,
                after_ms: read.as_millis() as u64,
            },
            ErrorKind::Connect(cause) => {
                // The HTTP client's words name the service and address again: keep the cause.
                let prefix = format!("cannot connect to {service} at {}: ", e.addr);
                let cause = cause.strip_prefix(&prefix).unwrap_or(cause);
                ServiceError::Connect {
                    service,
                    url,
                    cause: self.hide(cause),
                }
            }
            ErrorKind::Decode(what) => ServiceError::Malformed {
                service,
                url,
                what: self.hide(what),
            },
            ErrorKind::InvalidUrl(m) | ErrorKind::Other(m) => ServiceError::Connect {
                service,
                url,
                cause: self.hide(m),
            },
        }
    }

    /// `text` without the secrets registered (keys, and a webhook URL's path and tokens).
    fn hide(&self, text: &str) -> String {
        self.http.scrub(text)
    }

    /// A GET answered with JSON (retried after transient failures).
    pub fn get_json(&self, path: &str, query: &[(&str, String)]) -> Result<Value, ServiceError> {
        self.http
            .get(path)
            .query(query)
            .json()
            .map_err(|e| self.fail(path, e))
    }

    /// A GET answered with JSON, sent once (a search that costs the service real work).
    pub fn get_json_once(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Value, ServiceError> {
        self.http
            .get(path)
            .query(query)
            .once()
            .json()
            .map_err(|e| self.fail(path, e))
    }

    /// A JSON POST answered with JSON (sent once).
    pub fn post_json(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: &Value,
    ) -> Result<Value, ServiceError> {
        self.http
            .post_json(path, body)
            .query(query)
            .json()
            .map_err(|e| self.fail(path, e))
    }

    /// A JSON PUT (sent once); the answer's body is not read as JSON (Radarr sends the movie,
    /// older versions nothing).
    pub fn put_json(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: &Value,
    ) -> Result<(), ServiceError> {
        self.http
            .put_json(path, body)
            .query(query)
            .send()
            .map(|_| ())
            .map_err(|e| self.fail(path, e))
    }

    /// A DELETE (sent once).
    pub fn delete(&self, path: &str, query: &[(&str, String)]) -> Result<(), ServiceError> {
        self.http
            .delete(path)
            .query(query)
            .send()
            .map(|_| ())
            .map_err(|e| self.fail(path, e))
    }

    /// A POST to the base URL itself with extra headers, answered with anything (sent once):
    /// the notification webhook. `body` is JSON, or plain text when `text` is given.
    pub fn post_hook(
        &self,
        body: &Value,
        text: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<(), ServiceError> {
        let mut r = match text {
            Some(t) => self
                .http
                .post_bytes("", t.as_bytes().to_vec(), "text/plain; charset=utf-8"),
            None => self.http.post_json("", body),
        };
        for (n, v) in headers {
            r = r.header(n, v);
        }
        r.timeout(self.request)
            .send()
            .map(|_| ())
            .map_err(|e| self.fail("", e))
    }
}

/// A 404 that is the service's own "no such thing", not a page from something else at that
/// address (a reverse proxy's or a web UI's HTML 404 means the URL is wrong, not the item
/// absent).
pub(crate) fn is_absent(e: &ServiceError) -> bool {
    match e {
        ServiceError::Http {
            status: 404,
            body_excerpt,
            ..
        } => {
            let b = body_excerpt.trim_start();
            !(b.starts_with('<') || b.to_ascii_lowercase().contains("<html"))
        }
        _ => false,
    }
}

/// `base` as shown in messages: no credentials, no query, no trailing slash; or why it cannot
/// be used.
fn shown_url(base: &str, hide_path: bool) -> Result<String, String> {
    if base.is_empty() {
        return Err("no URL is configured".into());
    }
    let mut url = reqwest::Url::parse(base).map_err(|e| format!("not a usable URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "not a usable URL: the scheme is {:?}, not http or https",
            url.scheme()
        ));
    }
    if url.host_str().is_none() {
        return Err("not a usable URL: no host".into());
    }
    if !hide_path && (url.query().is_some() || url.fragment().is_some()) {
        return Err(
            "the URL carries a query or fragment: give the bare base URL (the API key has its own setting)"
                .into(),
        );
    }
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    if hide_path {
        url.set_path("");
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// `base` without `user:password@`, for the message about a URL that cannot be parsed.
fn redact_userinfo(base: &str) -> String {
    match base.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, host)) if !rest.split('/').next().unwrap_or("").is_empty() => {
                format!("{scheme}://<redacted>@{host}")
            }
            _ => base.to_string(),
        },
        None => base.to_string(),
    }
}

/// Unix milliseconds of an ISO 8601 / RFC 3339 time (`2024-05-01T20:15:30.123Z`,
/// `2024-05-01T20:15:30+02:00`, `2024-05-01 20:15:30`; no zone = UTC). None when unreadable.
pub(crate) fn parse_time_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut ms = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let f = &frac[..digits];
        let mut v = 0i64;
        for (i, c) in f.bytes().take(3).enumerate() {
            v += i64::from(c - b'0') * [100, 10, 1][i];
        }
        ms = v;
        rest = &frac[digits..];
    }
    let offset_s: i64 = match rest {
        "" | "Z" | "z" => 0,
        z if (z.starts_with('+') || z.starts_with('-')) && z.len() == 6 && &z[3..4] == ":" => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let zh: i64 = z[1..3].parse().ok()?;
            let zm: i64 = z[4..6].parse().ok()?;
            sign * (zh * 3600 + zm * 60)
        }
        _ => return None,
    };
    // Howard Hinnant's days_from_civil.
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_s;
    u64::try_from(secs * 1000 + ms).ok()
}

/// A JSON number or a numeric string (Postgres `bigint`s reach JSON as strings through
/// node-postgres) as u64; negative and fractional values are cut to whole, non-negative.
pub(crate) fn as_count(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite())
                .map(|f| f.max(0.0) as u64)
        }),
        Value::String(s) => {
            let t = s.trim();
            t.parse::<u64>().ok().or_else(|| {
                t.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(|f| f.max(0.0) as u64)
            })
        }
        _ => None,
    }
}

/// A string field, `None` when absent, null, not a string or blank.
pub(crate) fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_in_every_shape_jellystat_and_radarr_use() {
        assert_eq!(parse_time_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_time_ms("2024-05-01T20:15:30.123Z"),
            Some(1_714_594_530_123)
        );
        assert_eq!(
            parse_time_ms("2024-05-01T22:15:30.123456+02:00"),
            Some(1_714_594_530_123)
        );
        assert_eq!(
            parse_time_ms("2024-05-01 20:15:30"),
            Some(1_714_594_530_000)
        );
        assert_eq!(parse_time_ms("2000-02-29T00:00:00Z"), Some(951_782_400_000));
        for bad in [
            "",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2024-05-01T25:00:00Z",
            "2024-05-01T20:15:30.Z",
            "2024-05-01T20:15:30+0200",
            "2024-05-01T20:15:30Zjunk",
            "1969-12-31T23:59:59Z",
            "２０２４-05-01T20:15:30Z",
        ] {
            assert_eq!(parse_time_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn counts_come_as_numbers_or_strings() {
        assert_eq!(as_count(&serde_json::json!(42)), Some(42));
        assert_eq!(as_count(&serde_json::json!("42")), Some(42));
        assert_eq!(as_count(&serde_json::json!(" 7.9 ")), Some(7));
        assert_eq!(as_count(&serde_json::json!(-3)), Some(0));
        assert_eq!(as_count(&serde_json::json!("x")), None);
        assert_eq!(as_count(&serde_json::json!(null)), None);
    }

    #[test]
    fn shown_urls_keep_the_url_base_and_lose_credentials() {
        assert_eq!(
            shown_url("http://u:p@h:7878/radarr/", false).unwrap(),
            "http://h:7878/radarr"
        );
        assert_eq!(
            shown_url("https://discord.com/api/webhooks/1/SECRET", true).unwrap(),
            "https://discord.com"
        );
        assert!(shown_url("http://h/radarr?apikey=k", false).is_err());
        assert!(shown_url("ftp://h", false).is_err());
        assert!(shown_url("", false).is_err());
        assert_eq!(redact_userinfo("http://u:p@h:x"), "http://<redacted>@h:x");
    }

    #[test]
    fn every_error_says_what_failed_where_and_what_to_do() {
        let url = || "http://h:7878/radarr/api/v3/movie".to_string();
        let cases = [
            (
                ServiceError::Unauthorized {
                    service: "Radarr",
                    url: url(),
                },
                vec![
                    "refused the API key",
                    "downloads.radarr_api_key",
                    "Settings",
                ],
            ),
            (
                ServiceError::Http {
                    service: "Radarr",
                    url: url(),
                    status: 503,
                    body_excerpt: "database is locked".into(),
                },
                vec![
                    "answered 503 Service Unavailable",
                    "database is locked",
                    "retried later",
                ],
            ),
            (
                ServiceError::Http {
                    service: "Radarr",
                    url: url(),
                    status: 404,
                    body_excerpt: String::new(),
                },
                vec!["answered 404 Not Found", "downloads.radarr_url", "URL base"],
            ),
            (
                ServiceError::Timeout {
                    service: "Radarr",
                    url: url(),
                    after_ms: 10_000,
                },
                vec![
                    "did not answer within 10000 ms",
                    "downloads.request_timeout_ms",
                ],
            ),
            (
                ServiceError::Connect {
                    service: "Radarr",
                    url: url(),
                    cause: "connection refused".into(),
                },
                vec![
                    "cannot reach Radarr",
                    "connection refused",
                    "RADARR_URL",
                    "running",
                ],
            ),
            (
                ServiceError::Malformed {
                    service: "Jellystat",
                    url: url(),
                    what: "row 3: no \"UserName\"".into(),
                },
                vec![
                    "sent something unexpected",
                    "row 3",
                    "downloads.jellystat_url",
                ],
            ),
        ];
        for (e, words) in cases {
            let shown = e.to_string();
            assert!(
                shown.contains("http://h:7878/radarr/api/v3/movie"),
                "{shown}"
            );
            for w in words {
                assert!(shown.contains(w), "{w:?} missing from {shown}");
            }
        }
    }

    #[test]
    fn only_a_services_own_404_reads_as_absent() {
        let e = |body: &str| ServiceError::Http {
            service: "Jellyfin",
            url: "u".into(),
            status: 404,
            body_excerpt: body.into(),
        };
        assert!(is_absent(&e("")));
        assert!(is_absent(&e(r#"{"title":"Not Found","status":404}"#)));
        assert!(!is_absent(&e("<html><body>nginx 404</body></html>")));
        assert!(!is_absent(&ServiceError::Timeout {
            service: "Jellyfin",
            url: "u".into(),
            after_ms: 1
        }));
    }
}
