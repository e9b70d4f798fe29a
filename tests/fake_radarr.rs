//! A fake Radarr API v3 (apis.md §4) built from `fixtures/radarr-payloads` (copied from
//! `reference/payloads/radarr-*`): movies are the recorded movie resource with the seeded
//! values, commands the recorded CommandResource shape, the status the recorded status.
//!
//! What it does as Radarr does: `X-Api-Key` (or `?apikey=`) on every `/api` path, else 401
//! with an empty body; a URL base (`/radarr`): paths under it are the API, anything else is
//! the web UI's HTML page (so a wrong base reads as "not Radarr", never as "no movie");
//! `GET /api/v3/movie?tmdbId=` an array of 0 or 1; lookups 404 for an unknown TMDB id; a POST
//! of a movie already there is a 400 with Servarr's validation array; tags are stored
//! lower-case and a second POST of a label answers the existing tag; commands go queued →
//! started → a final state after a seeded number of polls. Failure injection comes from
//! `fake_service` (`server.script`, `fail_times`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use downshiftarr::clients::radarr::Radarr;
use serde_json::{json, Value};

use crate::fake_service::{Answer, FakeServer, Req};

pub const MOVIE: &str = include_str!("../fixtures/radarr-payloads/radarr-movie.json");
pub const STATUS: &str = include_str!("../fixtures/radarr-payloads/radarr-system-status.json");
pub const COMMAND: &str = include_str!("../fixtures/radarr-payloads/radarr-command-response.json");

pub const API_KEY: &str = "radarr-key-0123456789abcdef0123456789ab";

/// A command the fake ran.
#[derive(Clone, Debug)]
pub struct Cmd {
    pub id: i64,
    pub name: String,
    pub body: Value,
    pub polls: u32,
}

struct State {
    movies: Vec<Value>,
    tags: Vec<(u64, String)>,
    lookups: HashMap<u64, Value>,
    commands: BTreeMap<i64, Cmd>,
    next_movie: i64,
    next_tag: u64,
    next_cmd: i64,
    /// Polls answered `queued`, then polls answered `started`, then `final_status`.
    queued_polls: u32,
    started_polls: u32,
    final_status: String,
    deleted: Vec<(i64, bool)>,
}

pub struct FakeRadarr {
    pub server: FakeServer,
    /// The URL base Radarr is configured with (`""` or `/radarr`).
    pub base: String,
    state: Arc<Mutex<State>>,
}

/// The recorded movie with these values (a fresh resource: no tags, a file on disk).
pub fn movie(id: i64, tmdb: u64, title: &str, year: u32, imdb: f64, votes: u64) -> Value {
    let mut m: Value = serde_json::from_str(MOVIE).unwrap();
    m["id"] = json!(id);
    m["tmdbId"] = json!(tmdb);
    m["imdbId"] = json!(format!("tt{:07}", tmdb));
    m["title"] = json!(title);
    m["sortTitle"] = json!(title.to_lowercase());
    m["year"] = json!(year);
    m["ratings"]["imdb"]["value"] = json!(imdb);
    m["ratings"]["imdb"]["votes"] = json!(votes);
    m["rootFolderPath"] = json!("/movies");
    m["path"] = json!(format!("/movies/{title} ({year})"));
    m["movieFile"]["movieId"] = json!(id);
    m
}

/// What `GET /api/v3/movie/lookup/tmdb` answers for a movie not in the library (`id` 0, no
/// file, no path).
pub fn lookup(tmdb: u64, title: &str, year: u32, imdb: f64, votes: u64) -> Value {
    let mut m = movie(0, tmdb, title, year, imdb, votes);
    let o = m.as_object_mut().unwrap();
    for k in ["movieFile", "path", "rootFolderPath", "qualityProfileId"] {
        o.remove(k);
    }
    m["id"] = json!(0);
    m["hasFile"] = json!(false);
    m["sizeOnDisk"] = json!(0);
    m["monitored"] = json!(false);
    m
}

impl FakeRadarr {
    pub fn start() -> FakeRadarr {
        FakeRadarr::with_base("")
    }

    /// A Radarr whose URL base is `base` (`/radarr`).
    pub fn with_base(base: &str) -> FakeRadarr {
        let base = base.trim_end_matches('/').to_string();
        let state = Arc::new(Mutex::new(State {
            movies: Vec::new(),
            tags: Vec::new(),
            lookups: HashMap::new(),
            commands: BTreeMap::new(),
            next_movie: 1000,
            next_tag: 1,
            next_cmd: 1,
            queued_polls: 1,
            started_polls: 1,
            final_status: "completed".into(),
            deleted: Vec::new(),
        }));
        let (gate_base, handler_base) = (base.clone(), base.clone());
        let shared = state.clone();
        let server = FakeServer::start(
            move |r| gate(r, &gate_base),
            move |r| handle(r, &handler_base, &mut shared.lock().unwrap()),
        );
        FakeRadarr {
            server,
            base,
            state,
        }
    }

    /// The base URL with the URL base.
    pub fn url(&self) -> String {
        format!("{}{}", self.server.url(), self.base)
    }

    pub fn client(&self) -> Radarr {
        Radarr::new(&self.url(), API_KEY, 1000, 2000).unwrap()
    }

    /// A client giving up after `request_ms`.
    pub fn client_timeout(&self, request_ms: u64) -> Radarr {
        Radarr::new(&self.url(), API_KEY, 1000, request_ms).unwrap()
    }

    /// Seeds a movie resource (see [`movie`]).
    pub fn add(&self, m: Value) {
        self.state.lock().unwrap().movies.push(m);
    }

    /// Seeds a tag; its id.
    pub fn add_tag(&self, label: &str) -> u64 {
        let mut s = self.state.lock().unwrap();
        let id = s.next_tag;
        s.next_tag += 1;
        s.tags.push((id, label.into()));
        id
    }

    /// What a lookup of `tmdb` answers (see [`lookup`]).
    pub fn set_lookup(&self, tmdb: u64, v: Value) {
        self.state.lock().unwrap().lookups.insert(tmdb, v);
    }

    /// Commands answer `queued` for `queued` polls, `started` for `started` more, then
    /// `final_status`.
    pub fn command_progress(&self, queued: u32, started: u32, final_status: &str) {
        let mut s = self.state.lock().unwrap();
        s.queued_polls = queued;
        s.started_polls = started;
        s.final_status = final_status.into();
    }

    pub fn movies(&self) -> Vec<Value> {
        self.state.lock().unwrap().movies.clone()
    }

    pub fn movie(&self, id: i64) -> Option<Value> {
        self.movies().into_iter().find(|m| m["id"] == json!(id))
    }

    pub fn tags(&self) -> Vec<(u64, String)> {
        self.state.lock().unwrap().tags.clone()
    }

    pub fn commands(&self) -> Vec<Cmd> {
        self.state
            .lock()
            .unwrap()
            .commands
            .values()
            .cloned()
            .collect()
    }

    /// `(movie id, deleteFiles)` of every DELETE that removed a movie.
    pub fn deleted(&self) -> Vec<(i64, bool)> {
        self.state.lock().unwrap().deleted.clone()
    }

    /// Requests to `path` under the URL base.
    pub fn requests(&self, method: &str, path: &str) -> Vec<Req> {
        self.server
            .requests(method, &format!("{}{path}", self.base))
    }
}

/// The API path under the URL base, or None when the path is not under it.
fn api_path<'a>(r: &'a Req, base: &str) -> Option<&'a str> {
    let p = r.path.strip_prefix(base)?;
    p.starts_with("/api/").then_some(p)
}

fn gate(r: &Req, base: &str) -> Option<Answer> {
    let Some(_) = api_path(r, base) else {
        // Radarr's web UI answers every other path with its single page.
        return Some(Answer::new(
            200,
            "text/html",
            b"<!doctype html><html><head><title>Radarr</title></head><body><div id=\"root\"></div></body></html>",
        ));
    };
    let keyed =
        r.header("x-api-key") == Some(API_KEY) || r.param("apikey").as_deref() == Some(API_KEY);
    (!keyed).then(|| Answer::empty(401))
}

fn not_found() -> Answer {
    Answer::json(404, &json!({"message": "NotFound", "description": ""}))
}

fn now() -> String {
    downshiftarr_shim::record::now_rfc3339()
}

fn handle(r: &Req, base: &str, s: &mut State) -> Answer {
    let Some(p) = api_path(r, base) else {
        return Answer::status(500);
    };
    let id_in = |prefix: &str| -> Option<i64> { p.strip_prefix(prefix)?.parse().ok() };
    match (r.method.as_str(), p) {
        ("GET", "/api/v3/system/status") => {
            let mut v: Value = serde_json::from_str(STATUS).unwrap();
            v["urlBase"] = json!(base);
            Answer::json(200, &v)
        }
        ("GET", "/api/v3/movie") => match r.param("tmdbId") {
            Some(t) => {
                let Ok(t) = t.parse::<u64>() else {
                    return Answer::json(
                        400,
                        &json!([{"propertyName": "tmdbId", "errorMessage": "The value is not valid."}]),
                    );
                };
                let hits: Vec<Value> = s
                    .movies
                    .iter()
                    .filter(|m| m["tmdbId"] == json!(t))
                    .cloned()
                    .collect();
                Answer::json(200, &Value::Array(hits))
            }
            None => Answer::json(200, &Value::Array(s.movies.clone())),
        },
        ("GET", "/api/v3/movie/lookup/tmdb") => {
            let t = r.param("tmdbId").and_then(|t| t.parse::<u64>().ok());
            match t.and_then(|t| s.lookups.get(&t)) {
                Some(v) => Answer::json(200, v),
                None => Answer::json(
                    404,
                    &json!({"message": format!("Movie with TmdbId {} not found", t.unwrap_or(0))}),
                ),
            }
        }
        ("POST", "/api/v3/movie") => {
            let mut m = r.json();
            let Some(tmdb) = m["tmdbId"].as_u64() else {
                return Answer::json(
                    400,
                    &json!([{"propertyName": "TmdbId", "errorMessage": "'Tmdb Id' must not be empty.", "severity": "error"}]),
                );
            };
            if m["qualityProfileId"].as_u64().unwrap_or(0) == 0
                || m["rootFolderPath"].as_str().unwrap_or("").is_empty()
            {
                return Answer::json(
                    400,
                    &json!([{"propertyName": "RootFolderPath", "errorMessage": "'Root Folder Path' must not be empty.", "severity": "error"}]),
                );
            }
            if s.movies.iter().any(|x| x["tmdbId"] == json!(tmdb)) {
                return Answer::json(
                    400,
                    &json!([{"propertyName": "TmdbId", "errorMessage": "This movie has already been added", "attemptedValue": tmdb, "severity": "error", "errorCode": "MovieExistsValidator"}]),
                );
            }
            let id = s.next_movie;
            s.next_movie += 1;
            m["id"] = json!(id);
            m["hasFile"] = json!(false);
            m["sizeOnDisk"] = json!(0);
            m["path"] = json!(format!(
                "{}/{} ({})",
                m["rootFolderPath"].as_str().unwrap_or(""),
                m["title"].as_str().unwrap_or(""),
                m["year"]
            ));
            if m["addOptions"]["searchForMovie"] == json!(true) {
                new_command(s, "MoviesSearch", json!({"movieIds": [id]}));
            }
            s.movies.push(m.clone());
            Answer::json(201, &m)
        }
        ("PUT", _) if id_in("/api/v3/movie/").is_some() => {
            let id = id_in("/api/v3/movie/").unwrap();
            let m = r.json();
            if !m.is_object() || m["id"] != json!(id) {
                return Answer::json(
                    400,
                    &json!([{"propertyName": "Id", "errorMessage": "Id must match the route", "severity": "error"}]),
                );
            }
            match s.movies.iter_mut().find(|x| x["id"] == json!(id)) {
                Some(x) => {
                    *x = m.clone();
                    Answer::json(202, &m)
                }
                None => not_found(),
            }
        }
        ("DELETE", _) if id_in("/api/v3/movie/").is_some() => {
            let id = id_in("/api/v3/movie/").unwrap();
            let before = s.movies.len();
            s.movies.retain(|x| x["id"] != json!(id));
            if s.movies.len() == before {
                return not_found();
            }
            let files = r.param("deleteFiles").as_deref() == Some("true");
            s.deleted.push((id, files));
            Answer::empty(200)
        }
        ("GET", _) if id_in("/api/v3/movie/").is_some() => {
            let id = id_in("/api/v3/movie/").unwrap();
            match s.movies.iter().find(|x| x["id"] == json!(id)) {
                Some(m) => Answer::json(200, m),
                None => not_found(),
            }
        }
        ("GET", "/api/v3/tag") => Answer::json(
            200,
            &Value::Array(
                s.tags
                    .iter()
                    .map(|(id, l)| json!({"id": id, "label": l}))
                    .collect(),
            ),
        ),
        ("POST", "/api/v3/tag") => {
            let label = r.json()["label"]
                .as_str()
                .unwrap_or("")
                .trim()
                .to_lowercase();
            if label.is_empty() {
                return Answer::json(
                    400,
                    &json!([{"propertyName": "Label", "errorMessage": "'Label' must not be empty.", "severity": "error"}]),
                );
            }
            if let Some((id, l)) = s.tags.iter().find(|(_, l)| *l == label) {
                return Answer::json(201, &json!({"id": id, "label": l}));
            }
            let id = s.next_tag;
            s.next_tag += 1;
            s.tags.push((id, label.clone()));
            Answer::json(201, &json!({"id": id, "label": label}))
        }
        ("POST", "/api/v3/command") => {
            let body = r.json();
            let Some(name) = body["name"].as_str().map(str::to_string) else {
                return Answer::json(400, &json!({"message": "Unknown command"}));
            };
            let c = new_command(s, &name, body);
            Answer::json(201, &c)
        }
        ("GET", _) if id_in("/api/v3/command/").is_some() => {
            let id = id_in("/api/v3/command/").unwrap();
            let (q, st, fin) = (s.queued_polls, s.started_polls, s.final_status.clone());
            let Some(c) = s.commands.get_mut(&id) else {
                return not_found();
            };
            c.polls += 1;
            let status = if c.polls <= q {
                "queued".to_string()
            } else if c.polls <= q + st {
                "started".to_string()
            } else {
                fin
            };
            let c = c.clone();
            Answer::json(200, &command_json(&c, &status))
        }
        _ if p.starts_with("/api/") => not_found(),
        _ => Answer::status(405),
    }
}

fn new_command(s: &mut State, name: &str, body: Value) -> Value {
    let id = s.next_cmd;
    s.next_cmd += 1;
    let c = Cmd {
        id,
        name: name.into(),
        body,
        polls: 0,
    };
    s.commands.insert(id, c.clone());
    command_json(&c, "queued")
}

/// The recorded CommandResource shape, for a manual command.
fn command_json(c: &Cmd, status: &str) -> Value {
    let mut v: Value = serde_json::from_str(COMMAND).unwrap();
    let t = now();
    v["id"] = json!(c.id);
    v["name"] = json!(c.name);
    v["commandName"] = json!(if c.name == "MoviesSearch" {
        "Movies Search".to_string()
    } else {
        c.name.clone()
    });
    let mut body = c.body.clone();
    if let Some(o) = body.as_object_mut() {
        o.insert("name".into(), json!(c.name));
        o.insert("trigger".into(), json!("manual"));
        o.insert("sendUpdatesToClient".into(), json!(true));
        o.insert("updateScheduledTask".into(), json!(true));
        o.insert("requiresDiskAccess".into(), json!(false));
        o.insert("isExclusive".into(), json!(false));
        o.insert("isTypeExclusive".into(), json!(false));
        o.insert("suppressMessages".into(), json!(false));
    }
    v["body"] = body;
    v["priority"] = json!("normal");
    v["status"] = json!(status);
    v["trigger"] = json!("manual");
    v["queued"] = json!(t);
    v["stateChangeTime"] = json!(t);
    let o = v.as_object_mut().unwrap();
    if status == "queued" {
        for k in ["started", "ended", "duration", "message"] {
            o.remove(k);
        }
    } else if status == "started" {
        for k in ["ended", "duration"] {
            o.remove(k);
        }
        o.insert("message".into(), json!("Searching for 1 movie"));
    } else {
        o.insert(
            "message".into(),
            json!(if status == "completed" {
                "Completed"
            } else {
                "Failed"
            }),
        );
    }
    v
}
