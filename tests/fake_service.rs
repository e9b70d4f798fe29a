//! The loopback HTTP server the downloads job's fakes share (`fake_radarr`, `fake_prowlarr`,
//! `fake_jellyfin`, `fake_jellystat`, `fake_notify`), in the style of `fake_trakt`: std
//! `TcpListener`, keep-alive, every request recorded (method, path, query, headers, body) with
//! the status it was answered, and failure injection in front of the service's own behaviour:
//! scripted answers per path ("fail N times then succeed": script N failures, the real
//! behaviour resumes), any status, a delay longer than the client waits, a malformed body, an
//! endless body (1 GiB announced, streamed until the client hangs up).
//!
//! Order of a request: the service's gate (auth, URL base) → the scripted answers for its path
//! (or for every path) → the service's handler.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// One answer.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Announce 1 GiB and stream zeros until the client stops reading.
    pub endless: bool,
}

impl Answer {
    pub fn new(status: u16, content_type: &str, body: &[u8]) -> Answer {
        Answer {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.to_vec(),
            delay: Duration::ZERO,
            endless: false,
        }
    }
    pub fn json(status: u16, v: &Value) -> Answer {
        Answer::new(
            status,
            "application/json; charset=utf-8",
            v.to_string().as_bytes(),
        )
    }
    pub fn text(status: u16, s: &str) -> Answer {
        Answer::new(status, "text/plain; charset=utf-8", s.as_bytes())
    }
    pub fn empty(status: u16) -> Answer {
        let mut a = Answer::new(status, "", b"");
        a.headers.clear();
        a
    }
    /// A status with no useful body (500, 503…).
    pub fn status(status: u16) -> Answer {
        Answer::text(status, "")
    }
    /// A 200 whose JSON is cut off.
    pub fn malformed() -> Answer {
        Answer::new(200, "application/json", b"[{\"id\": 1, \"title\": \"Hea")
    }
    /// A 200 that is an HTML page (a web UI or proxy at the wrong path).
    pub fn html(status: u16) -> Answer {
        Answer::new(
            status,
            "text/html",
            b"<!doctype html><html><head><title>404 Not Found</title></head><body><center><h1>404 Not Found</h1></center><hr><center>nginx</center></body></html>",
        )
    }
    /// 200 announcing 1 GiB of body and streaming it.
    pub fn endless() -> Answer {
        let mut a = Answer::new(200, "application/json", b"");
        a.endless = true;
        a
    }
    pub fn slow(mut self, d: Duration) -> Answer {
        self.delay = d;
        self
    }
}

/// A request as the server received it.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    /// Without the query.
    pub path: String,
    pub query: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
    /// A query parameter, percent-decoded (`+` as space).
    pub fn param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k) == name).then(|| decode(v))
        })
    }
}

pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

type Gate = dyn Fn(&Req) -> Option<Answer> + Send + Sync;
type Handler = dyn Fn(&Req) -> Answer + Send + Sync;

struct Inner {
    log: Mutex<Vec<(Req, u16)>>,
    /// Scripted answers by path ("*": any path), used before the handler.
    script: Mutex<HashMap<String, VecDeque<Answer>>>,
    gate: Box<Gate>,
    handler: Box<Handler>,
}

/// A running fake.
pub struct FakeServer {
    pub port: u16,
    inner: Arc<Inner>,
}

impl FakeServer {
    /// Starts a server whose requests pass `gate` (an answer there ends the request) and are
    /// then answered by `handler`.
    pub fn start(
        gate: impl Fn(&Req) -> Option<Answer> + Send + Sync + 'static,
        handler: impl Fn(&Req) -> Answer + Send + Sync + 'static,
    ) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let inner = Arc::new(Inner {
            log: Mutex::default(),
            script: Mutex::default(),
            gate: Box::new(gate),
            handler: Box::new(handler),
        });
        let shared = inner.clone();
        // The listener thread ends with the test process.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || serve(stream, &shared));
            }
        });
        FakeServer { port, inner }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request received, in order.
    pub fn log(&self) -> Vec<Req> {
        self.inner
            .log
            .lock()
            .unwrap()
            .iter()
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// Every request with the status it was answered.
    pub fn answered(&self) -> Vec<(Req, u16)> {
        self.inner.log.lock().unwrap().clone()
    }

    /// Requests with this method and path.
    pub fn requests(&self, method: &str, path: &str) -> Vec<Req> {
        self.log()
            .into_iter()
            .filter(|r| r.method == method && r.path == path)
            .collect()
    }

    /// The next answers for `path` ("*": any path), before the service's behaviour resumes.
    pub fn script(&self, path: &str, answers: Vec<Answer>) {
        self.inner
            .script
            .lock()
            .unwrap()
            .entry(path.into())
            .or_default()
            .extend(answers);
    }

    /// `n` times `a` for `path`, then the service's behaviour again.
    pub fn fail_times(&self, path: &str, n: usize, a: Answer) {
        self.script(path, vec![a; n]);
    }

    /// Forgets the answers still scripted.
    pub fn unscript(&self) {
        self.inner.script.lock().unwrap().clear();
    }
}

/// Reads one HTTP/1.1 request from a keep-alive connection (the fakes' shared reader: the
/// body by `Content-Length`, at most 1 MiB); `None` when the client closed it or sent less
/// than it announced.
pub fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Req> {
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len.min(1 << 20)];
    reader.read_exact(&mut body).ok()?;
    Some(Req {
        method,
        path,
        query,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn serve(stream: TcpStream, inner: &Inner) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    // An answer is written in two parts (head, body): without this, Nagle holds the body
    // until the client ACKs the head, which a delayed ACK makes ~40 ms — the fake's time,
    // not the client's (the downloads dispatch benchmark measured it).
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    // Keep-alive: answer requests on this connection until it closes.
    while let Some(req) = read_request(&mut reader) {
        let a = (inner.gate)(&req)
            .or_else(|| {
                let mut s = inner.script.lock().unwrap();
                let a = s.get_mut(&req.path).and_then(VecDeque::pop_front);
                a.or_else(|| s.get_mut("*").and_then(VecDeque::pop_front))
            })
            .unwrap_or_else(|| (inner.handler)(&req));
        inner.log.lock().unwrap().push((req, a.status));
        std::thread::sleep(a.delay);
        let len = if a.endless {
            1u64 << 30
        } else {
            a.body.len() as u64
        };
        let mut out = format!("HTTP/1.1 {} X\r\nContent-Length: {len}\r\n", a.status);
        for (n, v) in &a.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        out.push_str("\r\n");
        let mut w = &stream;
        if w.write_all(out.as_bytes()).is_err() {
            return;
        }
        if a.endless {
            let chunk = vec![b' '; 64 << 10];
            let mut sent = 0u64;
            while sent < len {
                if w.write_all(&chunk).is_err() {
                    return;
                }
                sent += chunk.len() as u64;
            }
            return;
        }
        if w.write_all(&a.body).is_err() {
            return;
        }
    }
}
