//! A fake Tautulli (API v2) on loopback: the envelope `{"response":{"result","message","data"}}`
//! answered with HTTP 200 even for errors, as Tautulli does (apis.md §6); a wrong key is an
//! error envelope; `terminate_session` can be told to fail the way Tautulli does without
//! Plex Pass.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::fake_plex::decode;

pub struct FakeTautulli {
    pub url: String,
    pub key: String,
    /// The parameters (query and form body) of every call.
    pub calls: Arc<Mutex<Vec<BTreeMap<String, String>>>>,
    /// When set, `terminate_session` answers this error message.
    pub terminate_error: Arc<Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
}

impl FakeTautulli {
    pub fn start() -> FakeTautulli {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("bind fake tautulli");
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let f = FakeTautulli {
            url,
            key: "fake-tautulli-key-0123".into(),
            calls: Arc::default(),
            terminate_error: Arc::default(),
            stop: Arc::default(),
        };
        let (calls, err, stop, key) = (
            f.calls.clone(),
            f.terminate_error.clone(),
            f.stop.clone(),
            f.key.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok(Some(mut req)) = server.recv_timeout(Duration::from_millis(50)) else {
                    continue;
                };
                let url = req.url().to_string();
                // Parameters come in the query (GET) or a form body (POST), as Tautulli's
                // CherryPy handler merges them.
                let mut form = String::new();
                let _ = std::io::Read::read_to_string(req.as_reader(), &mut form);
                let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
                let q: BTreeMap<String, String> = query
                    .split('&')
                    .chain(form.split('&'))
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (decode(k), decode(v)))
                    .collect();
                calls.lock().unwrap().push(q.clone());
                let envelope = |result: &str, message: Option<&str>, data: serde_json::Value| json!({"response": {"result": result, "message": message, "data": data}});
                let body = if !url.starts_with("/api/v2") {
                    json!({"error": "not found"})
                } else if q.get("apikey") != Some(&key) {
                    envelope("error", Some("Invalid apikey"), json!({}))
                } else {
                    match q.get("cmd").map(String::as_str) {
                        Some("terminate_session") => match err.lock().unwrap().clone() {
                            Some(m) => envelope("error", Some(&m), json!({})),
                            None => envelope("success", Some("Session terminated."), json!({})),
                        },
                        Some("notify") => envelope("success", None, json!({"notification_id": 1})),
                        _ => envelope("error", Some("Unknown command"), json!({})),
                    }
                };
                let _ = req.respond(
                    tiny_http::Response::from_string(body.to_string()).with_header(
                        "Content-Type: application/json"
                            .parse::<tiny_http::Header>()
                            .unwrap(),
                    ),
                );
            }
        });
        f
    }

    /// Calls of one command.
    pub fn calls_of(&self, cmd: &str) -> Vec<BTreeMap<String, String>> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|q| q.get("cmd").map(String::as_str) == Some(cmd))
            .cloned()
            .collect()
    }
}

impl Drop for FakeTautulli {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
