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

use std::time::Duration;

use serde_json::Value;

use crate::clients::http::{encode_segment as enc, ErrorKind, HttpClient};
use crate::config::PlexConfig;

/// Why a Plex request failed: the shared typed HTTP error, naming `Plex`, the server and the
/// path (`status()` 404 = gone, `is_unauthorized()` = a bad token or no Plex Pass).
pub type PlexError = crate::clients::http::HttpError;

/// One page of a listing.
pub struct Page {
    pub items: Vec<json::Item>,
    /// `totalSize` when the server pages.
    pub total: Option<u64>,
}

/// A Plex server connection.
pub struct Plex {
    http: HttpClient,
}

impl Plex {
    /// The client for the configuration: URL and token resolved as everywhere (`PLEX_URL`,
    /// `PLEX_TOKEN`, `plex.token_file`, `plex.token`), the configured timeouts.
    pub fn from_config(cfg: &PlexConfig) -> anyhow::Result<Plex> {
        let (url, token) = cfg.resolved()?;
        Ok(Plex::new(
            &url,
            &token,
            Duration::from_millis(cfg.connect_timeout_ms),
            Duration::from_millis(cfg.read_timeout_ms),
        )?)
    }

    /// A client from parts, for callers whose URL and token come from elsewhere (the
    /// Tautulli drop-in's settings file).
    pub fn new(
        base: &str,
        token: &str,
        connect_timeout: Duration,
        read_timeout: Duration,
    ) -> Result<Plex, PlexError> {
        let http = HttpClient::builder("Plex", base)
            .url_key("plex.url (or PLEX_URL)", "http://127.0.0.1:32400")
            .timeouts(connect_timeout, read_timeout)
            .timeout_keys("plex.connect_timeout_ms", "plex.read_timeout_ms")
            .header("Accept", "application/json")
            .plex_identity()
            .secret_header("X-Plex-Token", token)
            .unauthorized_hint(
                "the token is wrong (plex.token_file, plex.token or PLEX_TOKEN), or the feature needs Plex Pass",
            )
            .build()?;
        Ok(Plex { http })
    }

    /// Requests sent so far (for summaries and `/metrics`).
    pub fn calls(&self) -> u64 {
        self.http.calls()
    }

    /// The read timeout every request is bounded by.
    pub fn read_timeout(&self) -> Duration {
        self.http.read_timeout()
    }

    /// GETs `path` and returns its `MediaContainer`.
    pub fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
        headers: &[(&str, String)],
    ) -> Result<Value, PlexError> {
        let mut req = self.http.get(path).query(query);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        self.container(path, req.json())
    }

    /// `GET /status/sessions`: what is playing now (admin token). `timeout` bounds the whole
    /// request (no retries) when the caller is on a deadline.
    pub fn sessions(&self, timeout: Option<Duration>) -> Result<Vec<Value>, PlexError> {
        let mut req = self.http.get("/status/sessions");
        if let Some(t) = timeout {
            req = req.timeout(t).once();
        }
        let mc = self.container("/status/sessions", req.json())?;
        Ok(array(&mc, "Metadata"))
    }

    /// `/status/sessions/terminate?sessionId=…&reason=…` (apis.md §1.6): a GET that acts, so
    /// it is sent once. A 401 here means the server owner has no Plex Pass
    /// ([`PlexError::is_unauthorized`]).
    pub fn terminate(&self, session_id: &str, reason: &str) -> Result<(), PlexError> {
        self.http
            .get("/status/sessions/terminate")
            .query(&[
                ("sessionId", session_id.to_string()),
                ("reason", reason.to_string()),
            ])
            .once()
            .send()
            .map(|_| ())
    }

    /// A remote-control command to a client, proxied through the server
    /// (`/player/playback/playMedia`, `/player/playback/seekTo`); sent once.
    pub fn client_command(
        &self,
        client: &str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<(), PlexError> {
        self.http
            .get(path)
            .query(query)
            .header("X-Plex-Target-Client-Identifier", client)
            .once()
            .send()
            .map(|_| ())
    }

    /// The `MediaContainer` of a JSON answer: anything else is an error, never "empty".
    fn container(&self, path: &str, body: Result<Value, PlexError>) -> Result<Value, PlexError> {
        let mut body = body?;
        match body.get_mut("MediaContainer").map(Value::take) {
            Some(mc) if mc.is_object() => Ok(mc),
            _ => Err(self
                .http
                .error(path, ErrorKind::Decode("not a MediaContainer".into()))),
        }
    }

    /// A listing or metadata answer read straight into [`json::Container`] (no `Value` tree:
    /// a full sync parses hundreds of MB of these). Anything but a `MediaContainer` is an
    /// error, never "empty".
    fn typed(
        &self,
        path: &str,
        query: &[(&str, String)],
        headers: &[(&str, String)],
    ) -> Result<json::Container, PlexError> {
        let mut req = self.http.get(path).query(query);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let body = req.send()?.body;
        match json::container(&body) {
            Ok(Some(c)) => Ok(c),
            Ok(None) => Err(self
                .http
                .error(path, ErrorKind::Decode("not a MediaContainer".into()))),
            Err(e) => Err(self
                .http
                .error(path, ErrorKind::Decode(format!("not JSON: {e}")))),
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
        let mc = self.typed(&format!("/library/sections/{}/all", enc(key)), &q, &headers)?;
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
            self.http.error(
                &format!("/library/sections/{key}/all"),
                ErrorKind::Decode("no totalSize".into()),
            )
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

impl Plex {
    /// [`Plex::metadata`] read into [`json::Item`]s, for the index.
    pub fn metadata_items(&self, keys: &[String]) -> Result<Vec<json::Item>, PlexError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let joined: Vec<String> = keys.iter().map(|k| enc(k)).collect();
        let mc = self.typed(
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

    #[test]
    fn terminate_is_sent_once_and_reads_are_retried() {
        use crate::clients::http::tests::{answer, serve};
        let s = serve(vec![
            answer(503, ""),
            answer(503, ""),
            answer(200, r#"{"MediaContainer":{"size":0}}"#),
        ]);
        let p = plex(&s.url);
        assert_eq!(p.terminate("abc", "bye").unwrap_err().status(), Some(503));
        assert_eq!(s.seen.lock().unwrap().len(), 1);
        assert_eq!(p.sections().unwrap().len(), 0);
        let seen = s.seen.lock().unwrap();
        assert_eq!(seen.len(), 3, "the 503 then a 200");
        assert_eq!(
            seen[0].line,
            "GET /status/sessions/terminate?sessionId=abc&reason=bye HTTP/1.1"
        );
        assert!(seen.iter().all(
            |r| r.header("x-plex-token").as_deref() == Some("SECRET-TOKEN")
                && r.header("accept").as_deref() == Some("application/json")
        ));
    }

    #[test]
    fn a_2xx_without_a_media_container_is_an_error_not_empty() {
        use crate::clients::http::tests::{answer, serve};
        let s = serve(vec![answer(200, r#"{"errors":[]}"#)]);
        let e = plex(&s.url).sections().unwrap_err().to_string();
        assert!(
            e.ends_with("sent something unexpected for /library/sections: not a MediaContainer"),
            "{e}"
        );
    }
}
