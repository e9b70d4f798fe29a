//! The Tautulli API v2 client: `terminate_session` (the fallback when Plex's own terminate
//! fails) and `notify` (each enforcement posted to a notifier, `TAUTULLI_LOG_NOTIFIER_ID`).
//!
//! Tautulli answers HTTP 200 for most failures and says so in
//! `{"response":{"result":"error","message":…}}`, so the envelope is always checked
//! (apis.md §6). Tautulli takes its API key only as a parameter, never a header, so calls are
//! form POSTs (`GET|POST /api/v2`, apis.md §6): the key travels in the body, never in a URL
//! a proxy or a log could keep, and errors scrub it. Every call acts, so none is retried.

use std::time::Duration;

use serde_json::Value;

use super::http::HttpClient;

pub struct Tautulli {
    http: HttpClient,
    key: String,
}

impl Tautulli {
    pub fn new(url: &str, key: &str, timeout: Duration) -> Result<Tautulli, String> {
        let http = HttpClient::builder("Tautulli", url)
            .url_key("tautulli.url (or TAUTULLI_URL)", "http://127.0.0.1:8181")
            .timeouts(timeout.min(Duration::from_secs(3)), timeout)
            .header("Accept", "application/json")
            .secret(key)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Tautulli {
            http,
            key: key.to_string(),
        })
    }

    /// Calls `cmd`; the `data` of a `success` envelope, or the reason it failed.
    pub fn call(&self, cmd: &str, params: &[(&str, String)]) -> Result<Value, String> {
        let mut form: Vec<(&str, String)> = vec![("apikey", self.key.clone()), ("cmd", cmd.into())];
        form.extend(params.iter().cloned());
        let body = self
            .http
            .post_form("/api/v2", &form)
            .json()
            .map_err(|e| format!("tautulli {cmd}: {e}"))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::http::tests::{answer, serve};

    #[test]
    fn the_key_travels_in_a_form_body_never_in_the_url_and_a_call_is_sent_once() {
        let s = serve(vec![
            answer(
                200,
                r#"{"response":{"result":"success","data":{"notification_id":1}}}"#,
            ),
            answer(503, "down for KEY-123 maintenance"),
        ]);
        let t = Tautulli::new(&s.url, "KEY-123", Duration::from_secs(2)).unwrap();
        t.notify(4, "subject", "body").unwrap();
        let e = t.terminate(Some("abc"), None, "bye").unwrap_err();
        assert!(
            e.starts_with("tautulli terminate_session: Tautulli at 127.0.0.1:")
                && e.contains("answered 503")
                && !e.contains("KEY-123"),
            "{e}"
        );
        let seen = s.seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "a failed terminate is not retried");
        assert_eq!(seen[0].line, "POST /api/v2 HTTP/1.1");
        assert!(
            seen[0]
                .body
                .starts_with("apikey=KEY-123&cmd=notify&notifier_id=4"),
            "{}",
            seen[0].body
        );
    }

    #[test]
    fn an_error_envelope_is_an_error_with_tautullis_message() {
        let s = serve(vec![answer(
            200,
            r#"{"response":{"result":"error","message":"Invalid apikey","data":{}}}"#,
        )]);
        let t = Tautulli::new(&s.url, "k", Duration::from_secs(2)).unwrap();
        assert_eq!(
            t.notify(1, "s", "b").unwrap_err(),
            "tautulli notify: Invalid apikey"
        );
    }
}
