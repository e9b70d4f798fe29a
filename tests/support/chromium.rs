//! Headless Chromium driven over the DevTools protocol (CDP): JSON messages on one websocket
//! (tungstenite, already a dependency of the daemon), so no WebDriver server and no new crate.
//!
//! The browser runs with the flags that work as root in a container (`--no-sandbox`, no GPU,
//! no QUIC, no background networking) and a fresh profile in a temporary directory. One page
//! target is attached in flat mode; commands wait for their answer while events are kept, and
//! a JavaScript `confirm()` is answered as the test said ([`Browser::dialogs`] records each).
//! Every read has a deadline, so a stuck browser fails the test instead of hanging it.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

/// How long one CDP command may take.
const COMMAND_DEADLINE: Duration = Duration::from_secs(30);

/// The Chromium binary on `PATH` (Debian's `chromium`, or another distribution's name).
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .iter()
    .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
    .find(|p| p.is_file())
}

pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    ws: WebSocket<TcpStream>,
    session: String,
    next_id: u64,
    /// Events received while waiting for answers (method, params).
    pub events: Vec<(String, Value)>,
    /// The message of every JavaScript dialog the page opened, in order.
    pub dialogs: Vec<String>,
    /// Whether the next dialogs are accepted (OK) or dismissed (Cancel).
    pub accept_dialogs: bool,
    log: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Starts `bin` headless with a `width`×`height` window; its stderr goes to `log`.
    pub fn launch(bin: &Path, width: u32, height: u32, log: &Path) -> Browser {
        let profile = tempfile::Builder::new()
            .prefix("dsa-chromium-")
            .tempdir()
            .unwrap();
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
            ])
            .arg(format!("--window-size={width},{height}"))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("unable to start {}: {e}", bin.display()));
        // Chromium writes the port it bound and the browser target's path to this file.
        let port_file = profile.path().join("DevToolsActivePort");
        let start = Instant::now();
        let (port, path) = loop {
            if let Ok(t) = std::fs::read_to_string(&port_file) {
                let mut lines = t.lines();
                if let (Some(p), Some(path)) = (lines.next(), lines.next()) {
                    break (p.trim().to_string(), path.trim().to_string());
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "chromium never opened its DevTools port; its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let stream = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
        stream.set_read_timeout(Some(COMMAND_DEADLINE)).unwrap();
        let (ws, _) = tungstenite::client(format!("ws://127.0.0.1:{port}{path}"), stream)
            .unwrap_or_else(|e| panic!("devtools websocket: {e}"));
        let mut b = Browser {
            child,
            _profile: profile,
            ws,
            session: String::new(),
            next_id: 0,
            events: Vec::new(),
            dialogs: Vec::new(),
            accept_dialogs: true,
            log: log.to_path_buf(),
        };
        let targets = b.call("Target.getTargets", json!({}));
        let page = targets["targetInfos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .map(|t| t["targetId"].clone())
            .unwrap_or_else(|| panic!("no page target: {targets}"));
        let attached = b.call(
            "Target.attachToTarget",
            json!({"targetId": page, "flatten": true}),
        );
        b.session = attached["sessionId"].as_str().unwrap().to_string();
        for domain in ["Page.enable", "Runtime.enable", "Network.enable"] {
            b.call(domain, json!({}));
        }
        b
    }

    /// Sends a command (to the page once attached) and returns its `result`; a CDP error
    /// panics with the method named.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        self.ws.send(Message::text(msg.to_string())).unwrap();
        let start = Instant::now();
        loop {
            assert!(
                start.elapsed() < COMMAND_DEADLINE,
                "{method}: no answer from chromium within {COMMAND_DEADLINE:?}"
            );
            let m = match self.ws.read() {
                Ok(Message::Text(t)) => t,
                Ok(_) => continue,
                Err(e) => panic!(
                    "{method}: devtools connection: {e}; chromium's log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                ),
            };
            let v: Value = serde_json::from_str(m.as_str()).unwrap();
            if v["id"] == json!(id) {
                if let Some(e) = v.get("error") {
                    panic!("{method}: {e}");
                }
                return v["result"].clone();
            }
            if let Some(ev) = v["method"].as_str() {
                if ev == "Page.javascriptDialogOpening" {
                    self.dialogs
                        .push(v["params"]["message"].as_str().unwrap_or("").to_string());
                    // Answered without waiting: the command that opened the dialog (a click)
                    // answers only once the dialog is closed.
                    self.next_id += 1;
                    let answer = json!({"id": self.next_id, "method": "Page.handleJavaScriptDialog",
                        "params": {"accept": self.accept_dialogs}, "sessionId": self.session});
                    self.ws.send(Message::text(answer.to_string())).unwrap();
                }
                self.events.push((ev.to_string(), v["params"].clone()));
            }
        }
    }

    /// Loads `url` and waits for its `load` event.
    pub fn navigate(&mut self, url: &str) {
        self.events.clear();
        let r = self.call("Page.navigate", json!({"url": url}));
        assert!(r.get("errorText").is_none(), "navigate {url}: {r}");
        self.wait("the page's load event", |b| {
            b.events.iter().any(|(m, _)| m == "Page.loadEventFired")
        });
    }

    /// The value of a JavaScript expression (a promise is awaited); an exception panics.
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(ex) = r.get("exceptionDetails") {
            panic!("{expr}: {ex}");
        }
        r["result"]["value"].clone()
    }

    /// Polls until `f` holds (15 s), keeping events flowing.
    pub fn wait(&mut self, what: &str, mut f: impl FnMut(&mut Browser) -> bool) {
        let start = Instant::now();
        while !f(self) {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "{what}: not within 15 s; the page reads:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(100));
            // A cheap command, so events arrive.
            self.call("Runtime.evaluate", json!({"expression": "1"}));
        }
    }

    /// Waits until `expr` is truthy (an exception, as while a new page loads, is "not yet").
    pub fn wait_js(&mut self, what: &str, expr: &str) {
        let e = format!("!!({expr})");
        self.wait(what, |b| {
            let r = b.call(
                "Runtime.evaluate",
                json!({"expression": e, "returnByValue": true}),
            );
            r["result"]["value"] == json!(true)
        });
    }

    /// What a person reads on the page (`innerText` of the body).
    pub fn text(&mut self) -> String {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": "document.body ? document.body.innerText : ''", "returnByValue": true}),
        );
        r["result"]["value"].as_str().unwrap_or("").to_string()
    }

    /// The text of the first element matching `selector` (`None` when there is none).
    pub fn text_of(&mut self, selector: &str) -> Option<String> {
        let sel = serde_json::to_string(selector).unwrap();
        self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); return e ? e.innerText : null; }})()"
        ))
        .as_str()
        .map(str::to_string)
    }

    /// A real mouse click (pressed and released) in the middle of the element.
    pub fn click(&mut self, selector: &str) {
        let sel = serde_json::to_string(selector).unwrap();
        let rect = self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); if (!e) return null;
               e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect();
               return [r.left + r.width / 2, r.top + r.height / 2]; }})()"
        ));
        let (x, y) = match rect.as_array() {
            Some(a) => (a[0].as_f64().unwrap(), a[1].as_f64().unwrap()),
            None => panic!(
                "nothing to click at {selector}; the page reads:\n{}",
                self.text()
            ),
        };
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            );
        }
    }

    /// Types `text` into the focused element, as keystrokes.
    pub fn type_text(&mut self, text: &str) {
        self.call("Input.insertText", json!({"text": text}));
    }

    /// Headers sent with every request from now on (e.g. `X-Forwarded-For`).
    pub fn extra_headers(&mut self, headers: Value) {
        self.call("Network.setExtraHTTPHeaders", json!({"headers": headers}));
    }

    /// A viewport of `width`×`height` CSS pixels (`mobile` for a phone's).
    pub fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
    }

    /// `prefers-color-scheme` as `scheme` (`light` or `dark`).
    pub fn color_scheme(&mut self, scheme: &str) {
        self.call(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
        );
    }

    /// A PNG of the whole page.
    pub fn screenshot(&mut self) -> Vec<u8> {
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        base64_decode(r["data"].as_str().unwrap())
    }
}

impl Browser {
    /// A PNG of what the viewport shows.
    pub fn screenshot_viewport(&mut self) -> Vec<u8> {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        base64_decode(r["data"].as_str().unwrap())
    }
}

/// Standard base64 (the screenshot's encoding), padding and whitespace ignored.
pub fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = ((acc << 6) | v) & 0xff_ffff;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
