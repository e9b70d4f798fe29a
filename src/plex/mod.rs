//! The Plex Media Server client: base URL + token, JSON, identity headers, explicit timeouts,
//! retries with back-off on timeouts and 5xx — and a failed request is never read as "empty",
//! the top bug of peer tools (daemon-peers.md §4): anything but a 2xx answer carrying a
//! `MediaContainer` is an error, and a sync pass that sees one stops without deleting anything.
//!
//! The token travels only in the `X-Plex-Token` header, so no URL we log or put in an error
//! contains it. Every error names the server (`host:port`) and says what failed, classified
//! from the HTTP client's error chain: `cannot connect to Plex at 127.0.0.1:1: connection
//! refused`, a timeout, a DNS or TLS failure, or the HTTP status Plex answered.

pub mod events;
pub mod json;
pub mod sessions;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::Value;

/// Why a Plex request failed. Each variant carries the whole message (server, request and
/// cause), so logs, `status` and `check-config` all say the same thing.
#[derive(Debug)]
pub enum PlexError {
    /// No answer in time (after retries).
    Timeout(String),
    /// 401: a bad token, or a Plex Pass feature on a server without it.
    Unauthorized(String),
    /// Any other non-2xx status (after retries for 5xx).
    Status(u16, String),
    /// Connection refused, DNS, TLS, an invalid URL…
    Connect(String),
    /// A 2xx whose body is not a Plex `MediaContainer`.
    Malformed(String),
}

impl std::fmt::Display for PlexError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlexError::Timeout(m)
            | PlexError::Unauthorized(m)
            | PlexError::Status(_, m)
            | PlexError::Connect(m)
            | PlexError::Malformed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for PlexError {}

/// One page of a listing.
pub struct Page {
    pub items: Vec<json::Item>,
    /// `totalSize` when the server pages.
    pub total: Option<u64>,
}

/// A Plex server connection.
pub struct Plex {
    http: Client,
    base: String,
    /// `host:port`, for messages.
    addr: String,
    /// Why `base` cannot be used: every request fails with this at once.
    invalid: Option<String>,
    token: String,
    timeouts: (Duration, Duration),
    retries: u32,
    calls: AtomicU64,
}

/// The client identity Plex shows on its dashboard.
const IDENTITY: &[(&str, &str)] = &[
    ("X-Plex-Product", "downshiftarr"),
    ("X-Plex-Client-Identifier", "downshiftarr-daemon"),
    ("X-Plex-Device", "downshiftarr"),
    ("X-Plex-Platform", "Linux"),
];

impl Plex {
    pub fn new(
        base: &str,
        token: &str,
        connect_timeout: Duration,
        read_timeout: Duration,
    ) -> Result<Plex, PlexError> {
        let http = Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(read_timeout)
            .build()
            .map_err(|e| PlexError::Connect(format!("unable to start an HTTP client: {e}")))?;
        let base = base.trim_end_matches('/').to_string();
        // An unusable URL is reported by every request (as an unreachable server is), so the
        // callers' fallbacks (KILL_ON_PLEX_CONNECT_FAIL…) apply to it unchanged.
        let (addr, invalid) = match address(&base) {
            Ok(a) => (a, None),
            Err(why) => (
                String::new(),
                Some(format!(
                    "plex.url (or PLEX_URL) {:?} is not a usable URL: {why}; expected e.g. http://127.0.0.1:32400",
                    downshiftarr_shim::record::redact(&base, Some(token))
                )),
            ),
        };
        Ok(Plex {
            http,
            base,
            addr,
            invalid,
            token: token.to_string(),
            timeouts: (connect_timeout, read_timeout),
            retries: 2,
            calls: AtomicU64::new(0),
        })
    }

    /// Requests sent so far (for summaries and `/metrics`).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// GETs `path` and returns its `MediaContainer`.
    pub fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
        headers: &[(&str, String)],
    ) -> Result<Value, PlexError> {
        self.request(path, query, headers, None, true, self.retries)
            .map(|v| v.unwrap_or(Value::Null))
    }

    /// `GET /status/sessions`: what is playing now (admin token). `timeout` bounds the whole
    /// request (no retries) when the caller is on a deadline.
    /// The read timeout every request is bounded by.
    pub fn read_timeout(&self) -> Duration {
        self.timeouts.1
    }

    pub fn sessions(&self, timeout: Option<Duration>) -> Result<Vec<Value>, PlexError> {
        let retries = if timeout.is_some() { 0 } else { self.retries };
        let mc = self
            .request("/status/sessions", &[], &[], timeout, true, retries)?
            .unwrap_or(Value::Null);
        Ok(mc
            .get("Metadata")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    /// `/status/sessions/terminate?sessionId=…&reason=…` (apis.md §1.6). A 401 here means the
    /// server owner has no Plex Pass ([`PlexError::Unauthorized`]).
    pub fn terminate(&self, session_id: &str, reason: &str) -> Result<(), PlexError> {
        self.request(
            "/status/sessions/terminate",
            &[
                ("sessionId", session_id.to_string()),
                ("reason", reason.to_string()),
            ],
            &[],
            None,
            false,
            0,
        )
        .map(|_| ())
    }

    /// A remote-control command to a client, proxied through the server
    /// (`/player/playback/playMedia`, `/player/playback/seekTo`).
    pub fn client_command(
        &self,
        client: &str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<(), PlexError> {
        self.request(
            path,
            query,
            &[("X-Plex-Target-Client-Identifier", client.to_string())],
            None,
            false,
            0,
        )
        .map(|_| ())
    }

    fn request(
        &self,
        path: &str,
        query: &[(&str, String)],
        headers: &[(&str, String)],
        timeout: Option<Duration>,
        container: bool,
        retries: u32,
    ) -> Result<Option<Value>, PlexError> {
        let Some(body) = self.request_body(path, query, headers, timeout, container, retries)?
        else {
            return Ok(None);
        };
        let addr = &self.addr;
        let body: Value = serde_json::from_slice(&body).map_err(|e| {
            PlexError::Malformed(format!(
                "Plex at {addr} sent something that is not JSON for {path}: {e}"
            ))
        })?;
        match body.get("MediaContainer") {
            Some(mc) if mc.is_object() => Ok(Some(mc.clone())),
            _ => Err(PlexError::Malformed(format!(
                "Plex at {addr} sent something that is not a MediaContainer for {path}"
            ))),
        }
    }

    /// A listing or metadata answer read straight into [`json::Container`] (no `Value` tree:
    /// a full sync parses hundreds of MB of these).
    fn container(
        &self,
        path: &str,
        query: &[(&str, String)],
        headers: &[(&str, String)],
    ) -> Result<json::Container, PlexError> {
        let body = self
            .request_body(path, query, headers, None, true, self.retries)?
            .unwrap_or_default();
        let addr = &self.addr;
        match json::container(&body) {
            Ok(Some(c)) => Ok(c),
            Ok(None) => Err(PlexError::Malformed(format!(
                "Plex at {addr} sent something that is not a MediaContainer for {path}"
            ))),
            Err(e) => Err(PlexError::Malformed(format!(
                "Plex at {addr} sent something that is not JSON for {path}: {e}"
            ))),
        }
    }

    /// Sends a GET (with retries) and returns the body of a 2xx answer when `container`.
    fn request_body(
        &self,
        path: &str,
        query: &[(&str, String)],
        headers: &[(&str, String)],
        timeout: Option<Duration>,
        container: bool,
        retries: u32,
    ) -> Result<Option<Vec<u8>>, PlexError> {
        if let Some(why) = &self.invalid {
            return Err(PlexError::Connect(why.clone()));
        }
        let url = format!("{}{path}", self.base);
        let addr = &self.addr;
        let mut delay = Duration::from_millis(250);
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.calls.fetch_add(1, Ordering::Relaxed);
            let mut req = self
                .http
                .get(&url)
                .query(query)
                .header("Accept", "application/json")
                .header("X-Plex-Token", &self.token);
            if let Some(t) = timeout {
                req = req.timeout(t);
            }
            for (k, v) in IDENTITY {
                req = req.header(*k, *v);
            }
            req = req.header("X-Plex-Version", downshiftarr_shim::VERSION);
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            let retryable = match req.send() {
                Ok(resp) => {
                    let status = resp.status();
                    if status.is_success() && !container {
                        return Ok(None);
                    }
                    if status.is_success() {
                        let body = resp.bytes().map_err(|e| {
                            PlexError::Malformed(format!(
                                "Plex at {addr} sent something that is not JSON for {path}: {}",
                                cause(&e)
                            ))
                        })?;
                        return Ok(Some(Vec::from(body)));
                    }
                    let answered = format!("Plex at {addr} answered {status} for {path}");
                    if status == StatusCode::UNAUTHORIZED {
                        return Err(PlexError::Unauthorized(format!(
                            "{answered}: the token is wrong (plex.token_file, plex.token or PLEX_TOKEN), or the feature needs Plex Pass"
                        )));
                    }
                    if !status.is_server_error() {
                        return Err(PlexError::Status(status.as_u16(), answered));
                    }
                    PlexError::Status(status.as_u16(), answered)
                }
                Err(e) if e.is_timeout() => PlexError::Timeout(format!(
                    "Plex at {addr} did not answer {path} in time (plex.connect_timeout_ms {}, plex.read_timeout_ms {})",
                    self.timeouts.0.as_millis(),
                    timeout.unwrap_or(self.timeouts.1).as_millis()
                )),
                Err(e) => return Err(PlexError::Connect(self.unreachable(&e))),
            };
            if attempt > retries {
                return Err(retryable);
            }
            tracing::debug!("{retryable}; retrying in {} ms", delay.as_millis());
            std::thread::sleep(delay);
            delay *= 4;
        }
    }

    /// `GET /identity`: the server's machine identifier and version.
    pub fn identity(&self) -> Result<Value, PlexError> {
        self.get("/identity", &[], &[])
    }

    /// `GET /library/sections`.
    pub fn sections(&self) -> Result<Vec<Value>, PlexError> {
        let mc = self.get("/library/sections", &[], &[])?;
        Ok(array(&mc, "Directory"))
    }

    /// One page of `/library/sections/{key}/all?type=…`, optionally only items updated since `since`.
    pub fn section_page(
        &self,
        key: &str,
        kind: u8,
        start: u64,
        size: u64,
        since: Option<i64>,
    ) -> Result<Page, PlexError> {
        let mut q = vec![
            ("type", kind.to_string()),
            ("includeGuids", "1".to_string()),
        ];
        if let Some(t) = since {
            q.push(("updatedAt>>", t.to_string()));
        }
        let headers = [
            ("X-Plex-Container-Start", start.to_string()),
            ("X-Plex-Container-Size", size.to_string()),
        ];
        let mc = self.container(&format!("/library/sections/{}/all", enc(key)), &q, &headers)?;
        Ok(Page {
            total: match &mc.total_size {
                json::Scalar::Num(t) => t.as_u64(),
                json::Scalar::Str(t) => t.parse().ok(),
                _ => None,
            },
            items: mc.metadata.0,
        })
    }

    /// How many items a filter matches (`X-Plex-Container-Size: 0`).
    pub fn count(&self, key: &str, kind: u8, since: Option<i64>) -> Result<u64, PlexError> {
        let p = self.section_page(key, kind, 0, 0, since)?;
        p.total.ok_or_else(|| {
            PlexError::Malformed(format!("/library/sections/{key}/all without totalSize"))
        })
    }

    /// `GET /library/metadata/{k1,k2,…}`: full items with versions, streams and DOVI fields.
    pub fn metadata(&self, keys: &[String]) -> Result<Vec<Value>, PlexError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let joined: Vec<String> = keys.iter().map(|k| enc(k)).collect();
        let mc = self.get(
            &format!("/library/metadata/{}", joined.join(",")),
            &[("includeGuids", "1".into())],
            &[],
        )?;
        Ok(array(&mc, "Metadata"))
    }

    /// [`Plex::metadata`] read into [`json::Item`]s, for the index.
    pub fn metadata_items(&self, keys: &[String]) -> Result<Vec<json::Item>, PlexError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let joined: Vec<String> = keys.iter().map(|k| enc(k)).collect();
        let mc = self.container(
            &format!("/library/metadata/{}", joined.join(",")),
            &[("includeGuids", "1".into())],
            &[],
        )?;
        Ok(mc.metadata.0)
    }
}

fn array(mc: &Value, key: &str) -> Vec<Value> {
    mc.get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Percent-encodes a path segment (rating keys are opaque strings).
fn enc(s: &str) -> String {
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

/// The innermost cause of an error: the part that says what really happened
/// (`Connection refused (os error 111)`), without reqwest's wrapping or the URL.
fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

impl Plex {
    /// Why a request never got an answer, classified from the error chain.
    fn unreachable(&self, e: &reqwest::Error) -> String {
        let addr = &self.addr;
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
        let inner = cause(e);
        let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
        use std::io::ErrorKind as K;
        if mentions("dns error") || mentions("failed to lookup address") {
            format!("cannot connect to Plex at {addr}: cannot resolve {host}: {inner}")
        } else if io_kind == Some(K::ConnectionRefused) {
            format!("cannot connect to Plex at {addr}: connection refused")
        } else if matches!(io_kind, Some(K::ConnectionReset | K::ConnectionAborted)) {
            format!("cannot connect to Plex at {addr}: connection reset")
        } else if mentions("certificate") || mentions("tls") || mentions("handshake") {
            format!("cannot connect to Plex at {addr}: TLS failed: {inner}")
        } else if e.is_connect() {
            format!("cannot connect to Plex at {addr}: {inner}")
        } else {
            format!("request to Plex at {addr} failed: {inner}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plex(url: &str) -> Plex {
        let t = Duration::from_millis(500);
        match Plex::new(url, "SECRET-TOKEN", t, t) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_closed_port_names_the_server_and_the_cause() {
        let e = plex("http://127.0.0.1:1")
            .identity()
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "cannot connect to Plex at 127.0.0.1:1: connection refused"
        );
    }

    #[test]
    fn an_unknown_host_says_it_cannot_be_resolved() {
        let e = plex("http://no-such-host.invalid:32400")
            .identity()
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "cannot connect to Plex at no-such-host.invalid:32400: cannot resolve no-such-host.invalid"
            ),
            "{e}"
        );
    }

    #[test]
    fn an_invalid_url_names_the_key_and_value_but_never_the_token() {
        let e = plex("ht tp://x").identity().unwrap_err().to_string();
        assert!(
            e.starts_with("plex.url (or PLEX_URL) \"ht tp://x\" is not a usable URL"),
            "{e}"
        );
        let e = plex("ftp://plex:32400/?X-Plex-Token=SECRET-TOKEN")
            .sections()
            .unwrap_err()
            .to_string();
        assert!(e.contains("not http or https"), "{e}");
        assert!(!e.contains("SECRET-TOKEN"), "{e}");
    }
}
