//! The Tautulli API v2 client: `terminate_session` (the fallback when Plex's own terminate
//! fails) and `notify` (each enforcement posted to a notifier, `TAUTULLI_LOG_NOTIFIER_ID`).
//!
//! Tautulli answers HTTP 200 for most failures and says so in
//! `{"response":{"result":"error","message":…}}`, so the envelope is always checked
//! (apis.md §6). The API key travels as a query parameter: errors never carry the URL.

use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::Value;

pub struct Tautulli {
    http: Client,
    base: String,
    key: String,
}

impl Tautulli {
    pub fn new(url: &str, key: &str, timeout: Duration) -> Result<Tautulli, String> {
        let http = Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(3)))
            .build()
            .map_err(|e| e.without_url().to_string())?;
        Ok(Tautulli {
            http,
            base: url.trim_end_matches('/').to_string(),
            key: key.to_string(),
        })
    }

    /// Calls `cmd`; the `data` of a `success` envelope, or the reason it failed.
    pub fn call(&self, cmd: &str, params: &[(&str, String)]) -> Result<Value, String> {
        let mut q: Vec<(&str, String)> = vec![("apikey", self.key.clone()), ("cmd", cmd.into())];
        q.extend(params.iter().cloned());
        let resp = self
            .http
            .get(format!("{}/api/v2", self.base))
            .query(&q)
            .send()
            .map_err(|e| format!("tautulli {cmd}: {}", e.without_url()))?;
        let status = resp.status();
        let body: Value = resp
            .json()
            .map_err(|_| format!("tautulli {cmd}: answered {status} without a JSON envelope"))?;
        let r = body
            .get("response")
            .ok_or_else(|| format!("tautulli {cmd}: no \"response\" envelope"))?;
        match r.get("result").and_then(Value::as_str) {
            Some("success") => Ok(r.get("data").cloned().unwrap_or(Value::Null)),
            _ => Err(format!(
                "tautulli {cmd}: {}",
                r.get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("failed without a message")
            )),
        }
    }

    /// `terminate_session` by `session_id` (preferred) or `session_key`.
    pub fn terminate(
        &self,
        session_id: Option<&str>,
        session_key: Option<&str>,
        message: &str,
    ) -> Result<(), String> {
        let mut p = vec![("message", message.to_string())];
        match (session_id, session_key) {
            (Some(id), _) => p.push(("session_id", id.to_string())),
            (None, Some(k)) => p.push(("session_key", k.to_string())),
            (None, None) => return Err("tautulli terminate_session: no session id or key".into()),
        }
        self.call("terminate_session", &p).map(|_| ())
    }

    /// `notify`: posts one message to a notifier.
    pub fn notify(&self, notifier_id: u32, subject: &str, body: &str) -> Result<(), String> {
        self.call(
            "notify",
            &[
                ("notifier_id", notifier_id.to_string()),
                ("subject", subject.to_string()),
                ("body", body.to_string()),
            ],
        )
        .map(|_| ())
    }
}
