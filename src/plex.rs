//! The Plex Media Server client: base URL + token, JSON, identity headers, explicit timeouts,
//! retries with back-off on timeouts and 5xx — and a failed request is never read as "empty",
//! the top bug of peer tools (daemon-peers.md §4): anything but a 2xx answer carrying a
//! `MediaContainer` is an error, and a sync pass that sees one stops without deleting anything.
//!
//! The token travels only in the `X-Plex-Token` header, so no URL we log or put in an error
//! contains it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::Value;

/// Why a Plex request failed.
#[derive(Debug)]
pub enum PlexError {
    /// No answer in time (after retries).
    Timeout(String),
    /// 401: a bad token, or a Plex Pass feature on a server without it.
    Unauthorized(String),
    /// Any other non-2xx status (after retries for 5xx).
    Status(u16, String),
    /// Connection refused, DNS, TLS…
    Connect(String),
    /// A 2xx whose body is not a Plex `MediaContainer`.
    Malformed(String),
}

impl std::fmt::Display for PlexError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlexError::Timeout(p) => write!(f, "plex did not answer in time: {p}"),
            PlexError::Unauthorized(p) => write!(f, "plex refused the token (401): {p}"),
            PlexError::Status(s, p) => write!(f, "plex answered {s}: {p}"),
            PlexError::Connect(e) => write!(f, "unable to reach plex: {e}"),
            PlexError::Malformed(p) => {
                write!(f, "plex sent something that is not a MediaContainer: {p}")
            }
        }
    }
}

impl std::error::Error for PlexError {}

/// One page of a listing.
pub struct Page {
    pub items: Vec<Value>,
    /// `totalSize` when the server pages.
    pub total: Option<u64>,
}

/// A Plex server connection.
pub struct Plex {
    http: Client,
    base: String,
    token: String,
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
            .map_err(|e| PlexError::Connect(e.to_string()))?;
        Ok(Plex {
            http,
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
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
        let url = format!("{}{path}", self.base);
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
                        let body: Value = resp
                            .json()
                            .map_err(|e| PlexError::Malformed(format!("{path}: {e}")))?;
                        return match body.get("MediaContainer") {
                            Some(mc) if mc.is_object() => Ok(Some(mc.clone())),
                            _ => Err(PlexError::Malformed(path.to_string())),
                        };
                    }
                    if status == StatusCode::UNAUTHORIZED {
                        return Err(PlexError::Unauthorized(path.to_string()));
                    }
                    if !status.is_server_error() {
                        return Err(PlexError::Status(status.as_u16(), path.to_string()));
                    }
                    PlexError::Status(status.as_u16(), path.to_string())
                }
                Err(e) if e.is_timeout() => PlexError::Timeout(path.to_string()),
                Err(e) if e.is_connect() => return Err(PlexError::Connect(without_url(&e))),
                Err(e) => return Err(PlexError::Connect(without_url(&e))),
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
        let mc = self.get(&format!("/library/sections/{}/all", enc(key)), &q, &headers)?;
        Ok(Page {
            items: array(&mc, "Metadata"),
            total: mc
                .get("totalSize")
                .and_then(|t| t.as_u64().or_else(|| t.as_str()?.parse().ok())),
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

/// reqwest's message without the URL (which is token-free anyway, but long).
fn without_url(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    if let Some(u) = e.url() {
        msg = msg.replace(u.as_str(), "");
    }
    msg.trim().to_string()
}
