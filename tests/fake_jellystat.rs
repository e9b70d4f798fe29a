//! A fake Jellystat (apis.md §5.3, `backend/routes/api.js`): `POST /api/getItemHistory` and
//! `GET /api/getHistory` over seeded `jf_playback_activity` rows, in the newer paged shape
//! (`{"current_page", "pages", "size", "sort", "desc", "results"}`, `current_page`/`size`
//! echoed as the query's strings, `PlaybackDuration` a string as node-postgres renders a
//! `bigint`) or the older plain array (each row with `results: []`). getHistory groups the
//! plays per (item, episode, user) as Jellystat's query does: the newest row, with every play
//! of the group in `results` (numbers as numbers there: `json_agg`) and `TotalPlays`.
//! Auth: `x-api-token` (or `?apiKey=`): none → 401, wrong → 403. getItemHistory without an
//! `itemid` → 400 "No Item ID provided". Failure injection from `fake_service`.

use std::sync::{Arc, Mutex};

use downshiftarr::clients::jellystat::Jellystat;
use serde_json::{json, Value};

use crate::fake_service::{Answer, FakeServer, Req};

pub const API_KEY: &str = "jellystat-key-00112233445566778899";

#[derive(Default)]
struct State {
    rows: Vec<Value>,
    legacy: bool,
}

pub struct FakeJellystat {
    pub server: FakeServer,
    state: Arc<Mutex<State>>,
}

/// One `jf_playback_activity` row of a movie play.
pub fn play(user: &str, item_id: &str, name: &str, at: &str, duration_s: u64) -> Value {
    json!({
        "Id": format!("{item_id}-{user}-{at}"),
        "IsPaused": false,
        "UserId": format!("uid-{user}"),
        "UserName": user,
        "Client": "Jellyfin Web",
        "DeviceName": "Firefox",
        "DeviceId": "TW96aWxsYS81LjA",
        "ApplicationVersion": "10.9.11",
        "NowPlayingItemId": item_id,
        "NowPlayingItemName": name,
        "SeasonId": null,
        "SeriesName": null,
        "EpisodeId": null,
        "PlaybackDuration": duration_s,
        "ActivityDateInserted": at,
        "PlayMethod": "DirectPlay",
        "MediaStreams": [],
        "TranscodingInfo": null,
        "PlayState": {"PositionTicks": duration_s * 10_000_000, "IsPaused": false},
        "OriginalContainer": "mkv",
        "RemoteEndPoint": "192.168.1.20",
        "ServerId": "srv1"
    })
}

impl FakeJellystat {
    pub fn start() -> FakeJellystat {
        let state: Arc<Mutex<State>> = Arc::default();
        let shared = state.clone();
        let server = FakeServer::start(
            |r: &Req| {
                let key = r
                    .header("x-api-token")
                    .map(str::to_string)
                    .or_else(|| r.param("apiKey"));
                match key.as_deref() {
                    None => Some(Answer::text(401, "No API key provided")),
                    Some(API_KEY) => None,
                    Some(_) => Some(Answer::text(403, "Invalid API key")),
                }
            },
            move |r: &Req| handle(r, &shared.lock().unwrap()),
        );
        FakeJellystat { server, state }
    }

    /// Seeds plays (any order; answers are newest first).
    pub fn add(&self, rows: Vec<Value>) {
        self.state.lock().unwrap().rows.extend(rows);
    }

    /// Answer in the older plain-array shape.
    pub fn legacy(&self) {
        self.state.lock().unwrap().legacy = true;
    }

    pub fn client(&self) -> Jellystat {
        Jellystat::new(&self.server.url(), API_KEY, 1000, 2000).unwrap()
    }
}

fn sorted(rows: impl Iterator<Item = Value>) -> Vec<Value> {
    let mut v: Vec<Value> = rows.collect();
    v.sort_by(|a, b| {
        b["ActivityDateInserted"]
            .as_str()
            .cmp(&a["ActivityDateInserted"].as_str())
    });
    v
}

/// A row as node-postgres renders it at the top level (`bigint` as a string).
fn top_level(mut row: Value) -> Value {
    if let Some(d) = row["PlaybackDuration"].as_u64() {
        row["PlaybackDuration"] = json!(d.to_string());
    }
    row
}

fn page(r: &Req, rows: Vec<Value>) -> Answer {
    let size_s = r.param("size").unwrap_or_else(|| "50".into());
    let page_s = r.param("page").unwrap_or_else(|| "1".into());
    let size: usize = size_s.parse().unwrap_or(50).max(1);
    let page: usize = page_s.parse().unwrap_or(1).max(1);
    let pages = rows.len().div_ceil(size);
    let results: Vec<Value> = rows
        .into_iter()
        .skip((page - 1) * size)
        .take(size)
        .collect();
    Answer::json(
        200,
        &json!({
            "current_page": page_s,
            "pages": pages,
            "size": size_s,
            "sort": r.param("sort").unwrap_or_else(|| "ActivityDateInserted".into()),
            "desc": r.param("desc").unwrap_or_else(|| "true".into()),
            "results": results,
        }),
    )
}

fn handle(r: &Req, s: &State) -> Answer {
    match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/api/getItemHistory") => {
            let Some(item) = r.json()["itemid"].as_str().map(str::to_string) else {
                return Answer::text(400, "No Item ID provided");
            };
            let hits = sorted(
                s.rows
                    .iter()
                    .filter(|row| {
                        ["EpisodeId", "SeasonId", "NowPlayingItemId"]
                            .iter()
                            .any(|k| row[*k].as_str() == Some(item.as_str()))
                    })
                    .cloned(),
            );
            if s.legacy {
                let rows: Vec<Value> = hits
                    .into_iter()
                    .map(|mut row| {
                        row["results"] = json!([]);
                        top_level(row)
                    })
                    .collect();
                return Answer::json(200, &Value::Array(rows));
            }
            page(r, hits.into_iter().map(top_level).collect())
        }
        ("GET", "/api/getHistory") => {
            // The newest play per (item, episode, user), with every play of the group.
            let all = sorted(s.rows.iter().cloned());
            let mut groups: Vec<(String, Vec<Value>)> = Vec::new();
            for row in all {
                let key = format!(
                    "{}|{}|{}",
                    row["NowPlayingItemId"],
                    row["EpisodeId"].as_str().unwrap_or("1"),
                    row["UserId"]
                );
                match groups.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, g)) => g.push(row),
                    None => groups.push((key, vec![row])),
                }
            }
            let rows: Vec<Value> = groups
                .into_iter()
                .map(|(_, g)| {
                    let total: u64 = g
                        .iter()
                        .filter_map(|p| p["PlaybackDuration"].as_u64())
                        .sum();
                    let mut latest = top_level(g[0].clone());
                    latest["TotalPlays"] = json!(g.len().to_string());
                    latest["TotalDuration"] = json!(total.to_string());
                    latest["PlaybackDuration"] = json!(total.to_string());
                    latest["results"] = Value::Array(g);
                    latest
                })
                .collect();
            page(r, rows)
        }
        _ => Answer::text(404, "Cannot GET"),
    }
}
