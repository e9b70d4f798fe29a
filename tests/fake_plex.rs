//! A fake Plex Media Server for the daemon's tests: a real HTTP server on loopback serving a
//! *generated* library in the JSON shapes recorded in `fixtures/plex-payloads` — sections with
//! `Location`s, `X-Plex-Container-Start/Size` paging with `totalSize`, new-agent `Guid[]` and
//! legacy `com.plexapp.agents.*` guids, ids as strings or numbers as Plex mixes them,
//! multi-version movies (4K HDR10 or Dolby Vision + 1080p SDR) with streams, shows with many
//! episodes — and it can be told to change or delete items, ignore the `updatedAt` filter,
//! answer 500, hang, or demand a token; and to race a sync the way a live Plex does: delete an
//! item between two pages of a listing, answer a well-formed empty listing, leave an item out
//! of listings while `/library/metadata/{key}` still returns it, edit an item without moving
//! its `updatedAt` (a second edit in the same second).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

/// (path, query, X-Plex-Target-Client-Identifier) of a `/player/...` command.
pub type ClientCommand = (String, BTreeMap<String, String>, String);

/// Playback state: `/status/sessions`, terminate, remote-control commands.
#[derive(Default)]
pub struct Play {
    /// `Metadata[]` of `/status/sessions`.
    pub sessions: Mutex<Vec<Value>>,
    /// `/status/sessions` requests answered so far.
    pub polls: AtomicU64,
    /// Sessions are listed only from this poll on (they appear after the transcoder starts).
    pub visible_from_poll: AtomicU64,
    /// Status answered to terminate (0: 200). 401 is "no Plex Pass".
    pub terminate_status: AtomicU64,
    /// (sessionId, reason) of every terminate call.
    pub terminations: Mutex<Vec<(String, String)>>,
    /// Status answered to `/player/...` commands (0: 200, 404: client not reachable).
    pub client_status: AtomicU64,
    /// Every client command.
    pub commands: Mutex<Vec<ClientCommand>>,
    /// `Metadata[]` of `/status/sessions/history/all` (rows as [`Play::history_row`] makes
    /// them), in any order: the fake sorts by `viewedAt` descending as asked.
    pub history: Mutex<Vec<Value>>,
    /// `Account[]` of `/accounts`: (id, name).
    pub accounts: Mutex<Vec<(u64, String)>>,
    /// `/status/sessions/history/all` requests answered, with their query.
    pub history_queries: Mutex<Vec<BTreeMap<String, String>>>,
    /// Answer the history with this status (0: 200).
    pub history_status: AtomicU64,
}

impl Play {
    /// A `/status/sessions` entry shaped like Plex's JSON (apis.md §1.1).
    #[allow(clippy::too_many_arguments)]
    pub fn session(
        key: &str,
        id: &str,
        transcode: &str,
        rk: u64,
        media_id: u64,
        user: &str,
        client: &str,
        video_decision: &str,
    ) -> Value {
        json!({"sessionKey": key, "ratingKey": rk.to_string(), "key": format!("/library/metadata/{rk}"), "type": "movie",
            "title": format!("Item {rk}"), "viewOffset": 754000,
            "Media": [{"id": media_id, "selected": true, "videoResolution": "1080", "Part": [{"id": media_id * 10 + 1, "decision": "transcode", "selected": true}]}],
            "User": {"id": "7", "title": user, "thumb": "https://plex.tv/users/x/avatar"},
            "Player": {"address": "203.0.113.9", "machineIdentifier": client, "model": "foster", "platform": "Android",
                "product": "Plex for Android (TV)", "state": "playing", "title": "Living Room Shield", "local": false, "relayed": false, "secure": true},
            "Session": {"id": id, "bandwidth": 12000, "location": "wan"},
            "TranscodeSession": {"key": format!("/transcode/sessions/{transcode}"), "throttled": false, "complete": false,
                "progress": 3.2, "speed": 1.1, "videoDecision": video_decision, "audioDecision": "transcode",
                "sourceVideoCodec": "hevc", "videoCodec": "h264", "protocol": "dash", "context": "streaming"}})
    }

    /// A watch-history row as Plex answers it (`/status/sessions/history/all`): no year, no
    /// ids, no user name — only `accountID` (a number) and `viewedAt` (epoch seconds).
    pub fn history_row(
        history_id: u64,
        rk: u64,
        title: &str,
        account: u64,
        viewed_at: i64,
    ) -> Value {
        json!({"historyKey": format!("/status/sessions/history/{history_id}"), "key": format!("/library/metadata/{rk}"),
            "ratingKey": rk.to_string(), "librarySectionID": "1", "title": title, "type": "movie",
            "thumb": format!("/library/metadata/{rk}/thumb/1700000000"), "originallyAvailableAt": "1999-03-31",
            "viewedAt": viewed_at, "accountID": account, "deviceID": 3})
    }

    pub fn set_sessions(&self, list: Vec<Value>) {
        *self.sessions.lock().unwrap() = list;
    }

    pub fn terminations(&self) -> Vec<(String, String)> {
        self.terminations.lock().unwrap().clone()
    }
}

/// How to misbehave.
#[derive(Default)]
pub struct Faults {
    pub ignore_updated_filter: AtomicBool,
    /// Answer 500 to every request after this many (0: never).
    pub fail_after: AtomicU64,
    /// Hold every listing/metadata request this many ms.
    pub delay_ms: AtomicU64,
    /// Answer every section listing with `{"MediaContainer":{"size":0,"totalSize":0}}`.
    pub empty_listings: AtomicBool,
    /// (start, ratingKey): when an unfiltered listing page starting at `start` is asked for,
    /// delete the item first (once) — Plex deleting between two pages.
    pub delete_at_page: Mutex<Option<(usize, u64)>>,
    /// Left out of every listing; `/library/metadata/{key}` still returns them.
    pub unlisted: Mutex<BTreeSet<u64>>,
}

#[derive(Clone)]
struct Item {
    json: Value,
    updated: i64,
    section: &'static str,
}

pub struct FakePlex {
    pub url: String,
    pub token: String,
    items: Arc<Mutex<BTreeMap<u64, Item>>>,
    pub faults: Arc<Faults>,
    pub play: Arc<Play>,
    pub requests: Arc<AtomicU64>,
    ws: Arc<Ws>,
    stop: Arc<AtomicBool>,
}

/// The notification websocket: a frame log every connection replays from its own cursor.
#[derive(Default)]
struct Ws {
    frames: Mutex<Vec<String>>,
    /// Bumped to close every open connection.
    generation: AtomicU64,
    /// Handshakes accepted.
    connections: AtomicU64,
}

const BASE_TIME: i64 = 1_700_000_000;

impl FakePlex {
    /// Starts a server with `movies` movies (every third with a 4K HDR version besides the
    /// 1080p one, every ninth of those Dolby Vision) and `shows` shows × `episodes` episodes.
    pub fn start(movies: u64, shows: u64, episodes: u64) -> FakePlex {
        FakePlex::serve_items(FakePlex::generate(movies, shows, episodes))
    }

    /// Serves these movies (full metadata JSON, streams included) in section 1.
    pub fn with_movies(movies: Vec<Value>) -> FakePlex {
        let items = movies
            .into_iter()
            .map(|m| {
                let rk: u64 = m["ratingKey"].as_str().unwrap().parse().unwrap();
                let updated = m["updatedAt"].as_i64().unwrap_or(BASE_TIME);
                (
                    rk,
                    Item {
                        json: m,
                        updated,
                        section: "1",
                    },
                )
            })
            .collect();
        FakePlex::serve_items(items)
    }

    fn generate(movies: u64, shows: u64, episodes: u64) -> BTreeMap<u64, Item> {
        let mut items = BTreeMap::new();
        let mut rk = 1000u64;
        for i in 0..movies {
            rk += 1;
            let year = 1980 + (i % 45) as i64;
            let title = format!("Movie {i}");
            let mut media = vec![media_json(
                rk * 10,
                1920,
                1080,
                "bt709",
                None,
                &format!("/data/Movies/{title} ({year})/{title} ({year}) - 1080p.mkv"),
                rk,
            )];
            if i % 3 == 0 {
                let dv = (i % 9 == 0).then_some(8);
                media.insert(
                    0,
                    media_json(
                        rk * 10 + 1,
                        3840,
                        2160,
                        "smpte2084",
                        dv,
                        &format!("/data/Movies/{title} ({year})/{title} ({year}) - 2160p.mkv"),
                        rk,
                    ),
                );
            }
            let guid = if i % 2 == 0 {
                json!({"guid": format!("plex://movie/5d77{rk:020x}"), "Guid": [{"id": format!("imdb://tt{:07}", i)}, {"id": format!("tmdb://{}", 100 + i)}]})
            } else {
                json!({"guid": format!("com.plexapp.agents.imdb://tt{:07}?lang=en", i)})
            };
            let mut m = json!({"ratingKey": rk.to_string(), "key": format!("/library/metadata/{rk}"), "type": "movie", "title": title,
                "year": year, "librarySectionID": 1, "addedAt": BASE_TIME, "updatedAt": BASE_TIME + i as i64, "Media": media});
            merge(&mut m, guid);
            items.insert(
                rk,
                Item {
                    json: m,
                    updated: BASE_TIME + i as i64,
                    section: "1",
                },
            );
        }
        // Every item has its own second, as in a real library (where an incremental pass
        // re-lists only the items of the watermark's second), TV after the movies.
        for sh in 0..shows {
            rk += 1;
            let show_rk = rk;
            let title = format!("Show {sh}");
            items.insert(show_rk, Item {
                json: json!({"ratingKey": show_rk.to_string(), "type": "show", "title": title, "year": 2000 + (sh % 20) as i64,
                    "guid": format!("com.plexapp.agents.thetvdb://{}?lang=en", 70000 + sh), "updatedAt": BASE_TIME + show_rk as i64, "librarySectionID": "2"}),
                updated: BASE_TIME + show_rk as i64,
                section: "2",
            });
            for e in 0..episodes {
                rk += 1;
                let (season, ep) = (1 + e / 10, 1 + e % 10);
                let file = format!(
                    "/data/TV/{title}/Season {season:02}/{title} - S{season:02}E{ep:02}.mkv"
                );
                items.insert(rk, Item {
                    json: json!({"ratingKey": rk.to_string(), "type": "episode", "title": format!("Episode {ep}"),
                        "grandparentTitle": title, "grandparentRatingKey": show_rk.to_string(), "parentIndex": season, "index": ep,
                        "guid": format!("com.plexapp.agents.thetvdb://{}/{season}/{ep}?lang=en", 70000 + sh), "updatedAt": BASE_TIME + rk as i64,
                        "librarySectionID": 2, "Media": [media_json(rk * 10, 1920, 1080, "bt709", None, &file, rk)]}),
                    updated: BASE_TIME + rk as i64,
                    section: "2",
                });
            }
        }
        items
    }

    fn serve_items(items: BTreeMap<u64, Item>) -> FakePlex {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake plex");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let fake = FakePlex {
            url,
            token: "fake-admin-token-123456".into(),
            items: Arc::new(Mutex::new(items)),
            faults: Arc::new(Faults::default()),
            play: Arc::new(Play::default()),
            requests: Arc::new(AtomicU64::new(0)),
            ws: Arc::default(),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (items, faults, play, requests, stop, token, ws) = (
            fake.items.clone(),
            fake.faults.clone(),
            fake.play.clone(),
            fake.requests.clone(),
            fake.stop.clone(),
            fake.token.clone(),
            fake.ws.clone(),
        );
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (items, faults, play, requests, token, ws) = (
                            items.clone(),
                            faults.clone(),
                            play.clone(),
                            requests.clone(),
                            token.clone(),
                            ws.clone(),
                        );
                        std::thread::spawn(move || {
                            let mut head = [0u8; 40];
                            let n = conn.peek(&mut head).unwrap_or(0);
                            if head[..n].starts_with(b"GET /:/websockets/notifications") {
                                serve_ws(conn, &ws, &token);
                            } else {
                                serve(conn, &items, &faults, &play, &requests, &token);
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        fake
    }

    /// Changes an item the way a metadata refresh does: new `updatedAt`, new stream facts.
    pub fn edit(&self, rk: u64, hdr: bool) {
        let updated = self.items.lock().unwrap()[&rk].updated + 1000;
        self.set_updated(rk, updated);
        self.edit_same_second(rk, hdr);
    }

    /// Stamps an item's `updatedAt`.
    pub fn set_updated(&self, rk: u64, updated: i64) {
        let mut items = self.items.lock().unwrap();
        let it = items.get_mut(&rk).expect("item to stamp");
        it.updated = updated;
        it.json["updatedAt"] = json!(updated);
    }

    /// New stream facts, same `updatedAt`: a second edit within the second of the first.
    pub fn edit_same_second(&self, rk: u64, hdr: bool) {
        let mut items = self.items.lock().unwrap();
        let it = items.get_mut(&rk).expect("item to edit");
        if let Some(media) = it.json["Media"].as_array_mut() {
            for m in media {
                for p in m["Part"].as_array_mut().into_iter().flatten() {
                    for s in p["Stream"].as_array_mut().into_iter().flatten() {
                        if s["streamType"] == json!(1) {
                            s["colorTrc"] = json!(if hdr { "smpte2084" } else { "bt709" });
                        }
                    }
                }
            }
        }
    }

    /// Sends a notification frame to every websocket client (and later ones).
    pub fn notify(&self, frame: serde_json::Value) {
        self.ws.frames.lock().unwrap().push(frame.to_string());
    }

    /// Closes every open notification connection.
    pub fn drop_websockets(&self) {
        self.ws.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Notification connections accepted so far.
    pub fn websocket_connections(&self) -> u64 {
        self.ws.connections.load(Ordering::SeqCst)
    }

    /// Removes the version of an item with this height.
    pub fn remove_version(&self, rk: u64, height: u32) {
        let mut items = self.items.lock().unwrap();
        let it = items.get_mut(&rk).expect("item");
        if let Some(m) = it.json["Media"].as_array_mut() {
            m.retain(|x| x["height"] != json!(height));
        }
    }

    /// Adds an SDR H.264 version of this height at `file` to an item (a third version).
    #[allow(dead_code)] // benches/daemon_index.rs builds its 200,000-file library with it
    pub fn add_version(&self, rk: u64, height: u32, file: &str) {
        let mut items = self.items.lock().unwrap();
        let it = items.get_mut(&rk).expect("item");
        let width = height * 16 / 9;
        if let Some(m) = it.json["Media"].as_array_mut() {
            m.push(media_json(
                rk * 10 + 2,
                width,
                height,
                "bt709",
                None,
                file,
                rk,
            ));
        }
    }

    pub fn delete(&self, rk: u64) {
        self.items.lock().unwrap().remove(&rk);
    }

    /// (ratingKey, updatedAt) of every movie, show and episode Plex holds now.
    pub fn holdings(&self) -> BTreeMap<String, i64> {
        self.items
            .lock()
            .unwrap()
            .iter()
            .map(|(k, i)| (k.to_string(), i.updated))
            .collect()
    }

    /// Rating keys of the movies with a 4K version, and of all episodes.
    pub fn keys(&self, kind: &str) -> Vec<u64> {
        self.items
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, i)| i.json["type"] == json!(kind))
            .map(|(k, _)| *k)
            .collect()
    }
}

impl Drop for FakePlex {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn merge(a: &mut Value, b: Value) {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
}

fn media_json(id: u64, w: u32, h: u32, trc: &str, dv: Option<u8>, file: &str, rk: u64) -> Value {
    let mut video = json!({"id": id * 10, "streamType": 1, "index": 0, "codec": if h > 1080 { "hevc" } else { "h264" },
        "bitDepth": if h > 1080 { 10 } else { 8 }, "colorTrc": trc, "width": w, "height": h, "default": true,
        "displayTitle": if h > 1080 { "4K HDR10 (HEVC Main 10)" } else { "1080p (H.264)" }});
    if let Some(p) = dv {
        merge(
            &mut video,
            json!({"DOVIPresent": true, "DOVIProfile": p, "DOVIBLPresent": true, "DOVIBLCompatID": 1, "DOVILevel": 6}),
        );
    }
    json!({"id": id, "width": w, "height": h, "bitrate": if h > 1080 { 60000 } else { 10000 }, "container": "mkv",
        "videoResolution": if h > 1080 { "4k" } else { "1080" }, "videoCodec": video["codec"].clone(),
        "Part": [{"id": id * 10 + 1, "key": format!("/library/parts/{}/1/file.mkv", id * 10 + 1), "file": file,
            "Stream": [video,
              {"id": id * 10 + 2, "streamType": 2, "index": 1, "codec": "eac3", "channels": 6, "languageCode": "eng", "default": true},
              {"id": id * 10 + 3, "streamType": 2, "index": 2, "codec": "aac", "channels": 2, "languageCode": "ger"},
              {"id": id * 10 + 4, "streamType": 3, "index": 3, "codec": "srt", "languageCode": "eng", "forced": rk.is_multiple_of(2)}]}]})
}

/// Strips streams, as listings do (apis.md §1.3).
fn listing(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(media) = v["Media"].as_array_mut() {
        for m in media {
            for p in m["Part"].as_array_mut().into_iter().flatten() {
                if let Some(o) = p.as_object_mut() {
                    o.remove("Stream");
                }
            }
        }
    }
    v
}

// The handshake callback's error type is tungstenite's `ErrorResponse`, fixed by its trait.
#[allow(clippy::result_large_err)]
fn serve_ws(conn: TcpStream, ws: &Ws, token: &str) {
    let check = |req: &tungstenite::handshake::server::Request, resp| match req
        .headers()
        .get("X-Plex-Token")
        .and_then(|v| v.to_str().ok())
    {
        Some(t) if t == token => Ok(resp),
        _ => {
            let mut r =
                tungstenite::handshake::server::ErrorResponse::new(Some("unauthorized".into()));
            *r.status_mut() = tungstenite::http::StatusCode::UNAUTHORIZED;
            Err(r)
        }
    };
    let _ = conn.set_read_timeout(Some(Duration::from_millis(20)));
    let Ok(mut sock) = tungstenite::accept_hdr(conn, check) else {
        return;
    };
    ws.connections.fetch_add(1, Ordering::SeqCst);
    let generation = ws.generation.load(Ordering::SeqCst);
    let mut cursor = ws.frames.lock().unwrap().len(); // only frames sent from now on
    loop {
        if ws.generation.load(Ordering::SeqCst) != generation {
            return; // dropped: close the TCP connection without a close frame
        }
        let pending: Vec<String> = ws.frames.lock().unwrap()[cursor..].to_vec();
        for f in pending {
            if sock.send(tungstenite::Message::Text(f.into())).is_err() {
                return;
            }
            cursor += 1;
        }
        match sock.read() {
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

fn respond(conn: &mut TcpStream, status: &str, body: &str) {
    let _ = write!(conn, "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
}

pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(x) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(x);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve(
    mut conn: TcpStream,
    items: &Mutex<BTreeMap<u64, Item>>,
    faults: &Faults,
    play: &Play,
    requests: &AtomicU64,
    token: &str,
) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let n = requests.fetch_add(1, Ordering::SeqCst) + 1;
    let fail_after = faults.fail_after.load(Ordering::SeqCst);
    if fail_after > 0 && n > fail_after {
        return respond(
            &mut conn,
            "500 Internal Server Error",
            "{\"error\":\"boom\"}",
        );
    }
    if headers.get("x-plex-token").map(String::as_str) != Some(token) {
        return respond(
            &mut conn,
            "401 Unauthorized",
            "{\"errors\":[{\"code\":1001,\"message\":\"User could not be authenticated\"}]}",
        );
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let q: BTreeMap<String, String> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect();
    let delay = faults.delay_ms.load(Ordering::SeqCst);
    if delay > 0 && path.starts_with("/library/") {
        std::thread::sleep(Duration::from_millis(delay));
    }
    let body = if path == "/status/sessions" {
        let n = play.polls.fetch_add(1, Ordering::SeqCst) + 1;
        let list: Vec<Value> = if n >= play.visible_from_poll.load(Ordering::SeqCst) {
            play.sessions.lock().unwrap().clone()
        } else {
            Vec::new()
        };
        if list.is_empty() {
            json!({"MediaContainer": {"size": 0}})
        } else {
            json!({"MediaContainer": {"size": list.len(), "Metadata": list}})
        }
    } else if path == "/status/sessions/terminate" {
        let id = q.get("sessionId").cloned().unwrap_or_default();
        let reason = q.get("reason").cloned().unwrap_or_default();
        play.terminations.lock().unwrap().push((id.clone(), reason));
        match play.terminate_status.load(Ordering::SeqCst) {
            401 => {
                return respond(
                    &mut conn,
                    "401 Unauthorized",
                    "{\"errors\":[{\"message\":\"Server does not have the feature enabled\"}]}",
                )
            }
            0 | 200 => {}
            other => return respond(&mut conn, &format!("{other} Error"), "{}"),
        }
        let mut sessions = play.sessions.lock().unwrap();
        let before = sessions.len();
        sessions.retain(|s| s["Session"]["id"] != json!(id));
        if sessions.len() == before {
            return respond(&mut conn, "404 Not Found", "{}");
        }
        return respond(&mut conn, "200 OK", "");
    } else if path.starts_with("/player/playback/") {
        let target = headers
            .get("x-plex-target-client-identifier")
            .cloned()
            .unwrap_or_default();
        play.commands
            .lock()
            .unwrap()
            .push((path.to_string(), q.clone(), target));
        return match play.client_status.load(Ordering::SeqCst) {
            0 | 200 => respond(&mut conn, "200 OK", ""),
            other => respond(&mut conn, &format!("{other} Error"), "{}"),
        };
    } else if path == "/status/sessions/history/all" {
        play.history_queries.lock().unwrap().push(q.clone());
        match play.history_status.load(Ordering::SeqCst) {
            0 | 200 => {}
            other => return respond(&mut conn, &format!("{other} Error"), "{\"error\":\"boom\"}"),
        }
        let num = |k: &str| {
            headers
                .get(k)
                .or_else(|| q.get(k))
                .and_then(|v| v.parse::<usize>().ok())
        };
        let start = num("x-plex-container-start").unwrap_or(0);
        let size = num("x-plex-container-size").unwrap_or(usize::MAX);
        // `viewedAt>=T` arrives as the key `viewedAt>` with the value `T` (apis.md §1.3).
        let after: Option<i64> = q.get("viewedAt>").and_then(|v| v.parse().ok());
        let account: Option<i64> = q.get("accountID").and_then(|v| v.parse().ok());
        let mut rows: Vec<Value> = play
            .history
            .lock()
            .unwrap()
            .iter()
            .filter(|r| after.is_none_or(|t| r["viewedAt"].as_i64().unwrap_or(0) >= t))
            .filter(|r| account.is_none_or(|a| r["accountID"].as_i64() == Some(a)))
            .cloned()
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r["viewedAt"].as_i64().unwrap_or(0)));
        let total = rows.len();
        let page: Vec<Value> = rows.into_iter().skip(start).take(size).collect();
        if page.is_empty() {
            json!({"MediaContainer": {"size": 0, "totalSize": total, "offset": start}})
        } else {
            json!({"MediaContainer": {"size": page.len(), "totalSize": total, "offset": start, "Metadata": page}})
        }
    } else if path == "/accounts" {
        let list: Vec<Value> = play
            .accounts
            .lock()
            .unwrap()
            .iter()
            .map(|(id, name)| {
                json!({"id": id, "key": format!("/accounts/{id}"), "name": name,
                "defaultAudioLanguage": "en", "autoSelectAudio": true, "subtitleMode": 0})
            })
            .collect();
        json!({"MediaContainer": {"size": list.len(), "identifier": "com.plexapp.system.accounts", "Account": list}})
    } else if path == "/identity" {
        json!({"MediaContainer": {"size": 0, "machineIdentifier": "fake-plex-machine", "version": "1.42.0.0000-fake"}})
    } else if path == "/library/sections" {
        json!({"MediaContainer": {"size": 3, "Directory": [
            {"key": "1", "type": "movie", "title": "Movies", "agent": "tv.plex.agents.movie", "Location": [{"id": 1, "path": "/data/Movies"}]},
            {"key": "2", "type": "show", "title": "TV Shows", "agent": "tv.plex.agents.series", "Location": [{"id": 2, "path": "/data/TV"}]},
            {"key": "3", "type": "artist", "title": "Music", "Location": [{"id": 3, "path": "/data/Music"}]}]}})
    } else if let Some(rest) = path
        .strip_prefix("/library/sections/")
        .and_then(|r| r.strip_suffix("/all"))
    {
        let kind = match q.get("type").map(String::as_str) {
            Some("1") => "movie",
            Some("2") => "show",
            Some("4") => "episode",
            _ => "movie",
        };
        let since: Option<i64> = if faults.ignore_updated_filter.load(Ordering::SeqCst) {
            None
        } else {
            q.get("updatedAt>>").and_then(|v| v.parse().ok())
        };
        let num = |k: &str| {
            headers
                .get(k)
                .or_else(|| q.get(k))
                .and_then(|v| v.parse::<usize>().ok())
        };
        let start = num("x-plex-container-start").unwrap_or(0);
        let size = num("x-plex-container-size").unwrap_or(usize::MAX);
        if faults.empty_listings.load(Ordering::SeqCst) {
            return respond(
                &mut conn,
                "200 OK",
                "{\"MediaContainer\":{\"size\":0,\"totalSize\":0}}",
            );
        }
        let mut items = items.lock().unwrap();
        if since.is_none() {
            let mut race = faults.delete_at_page.lock().unwrap();
            if let Some((at, rk)) = *race {
                if at == start && size > 0 {
                    items.remove(&rk);
                    *race = None;
                }
            }
        }
        let unlisted = faults.unlisted.lock().unwrap().clone();
        let matching = || {
            items.iter().filter_map(|(k, i)| {
                (i.section == rest
                    && i.json["type"] == json!(kind)
                    && since.is_none_or(|s| i.updated >= s)
                    && !unlisted.contains(k))
                .then_some(i)
            })
        };
        let total = matching().count();
        // Page first, then build the listing JSON of that page only.
        let page: Vec<Value> = matching()
            .skip(start)
            .take(size)
            .map(|i| listing(&i.json))
            .collect();
        json!({"MediaContainer": {"size": page.len(), "totalSize": total, "offset": start, "librarySectionID": rest, "Metadata": page}})
    } else if let Some(keys) = path.strip_prefix("/library/metadata/") {
        let items = items.lock().unwrap();
        let found: Vec<Value> = decode(keys)
            .split(',')
            .filter_map(|k| k.parse::<u64>().ok())
            .filter_map(|k| items.get(&k).map(|i| i.json.clone()))
            .collect();
        if found.is_empty() {
            return respond(&mut conn, "404 Not Found", "{}");
        }
        json!({"MediaContainer": {"size": found.len(), "Metadata": found}})
    } else {
        return respond(&mut conn, "404 Not Found", "{}");
    };
    respond(&mut conn, "200 OK", &body.to_string());
}

/// Waits until the daemon under test answers `lookup_source` for `path` (its index has
/// synced from this fake), at most `limit`; returns the answer.
pub fn wait_for_lookup(
    socket: &std::path::Path,
    path: &str,
    limit: Duration,
) -> downshiftarr_shim::protocol::Response {
    use downshiftarr_shim::protocol::{Client, Request, Response};
    let t = std::time::Instant::now();
    loop {
        if let Ok(mut c) =
            Client::connect(socket, std::time::Instant::now() + Duration::from_secs(2))
        {
            if let Ok(r @ Response::Source { found: true, .. }) =
                c.call(&Request::LookupSource { path: path.into() })
            {
                return r;
            }
        }
        assert!(t.elapsed() < limit, "the daemon did not answer for {path}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
