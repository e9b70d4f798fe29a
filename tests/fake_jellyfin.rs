//! A fake Jellyfin REST API (apis.md §5.2): `GET /Users` (the user list an API key sees),
//! `GET /Users/{userId}/Items/{itemId}` (a `BaseItemDto` with that user's `UserData`) and the
//! 10.9+ form `GET /Items/{itemId}?userId=`. Auth: `Authorization: MediaBrowser Token="…"`
//! (also `X-Emby-Token`) or 401. An unknown item or user is Jellyfin's 404 with an empty body
//! (10.8) or a ProblemDetails JSON (10.9+, `problem_details`). Failure injection from
//! `fake_service`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use downshiftarr::clients::jellyfin::Jellyfin;
use serde_json::{json, Value};

use crate::fake_service::{Answer, FakeServer, Req};

pub const API_KEY: &str = "jellyfin-key-a1b2c3d4e5f60718";

#[derive(Default)]
struct State {
    /// (name, id)
    users: Vec<(String, String)>,
    items: HashMap<String, Value>,
    /// (user id, item id) → UserData
    user_data: HashMap<(String, String), Value>,
    problem_details: bool,
}

pub struct FakeJellyfin {
    pub server: FakeServer,
    state: Arc<Mutex<State>>,
}

/// A movie `BaseItemDto`.
pub fn movie(
    id: &str,
    name: &str,
    year: u32,
    rating: f64,
    genres: &[&str],
    imdb: &str,
    tmdb: u64,
) -> Value {
    json!({
        "Name": name,
        "ServerId": "srv1",
        "Id": id,
        "Etag": "e1",
        "DateCreated": "2024-01-05T10:00:00.0000000Z",
        "CanDelete": true,
        "CanDownload": true,
        "SortName": name.to_lowercase(),
        "PremiereDate": format!("{year}-03-31T00:00:00.0000000Z"),
        "ExternalUrls": [],
        "Path": format!("/media/movies/{name} ({year})/{name}.mkv"),
        "OfficialRating": "R",
        "ChannelId": null,
        "Overview": "",
        "Taglines": [],
        "Genres": genres,
        "CommunityRating": rating,
        "RunTimeTicks": 81_600_000_000u64,
        "ProductionYear": year,
        "ProviderIds": {"Imdb": imdb, "Tmdb": tmdb.to_string()},
        "IsFolder": false,
        "ParentId": "lib1",
        "Type": "Movie",
        "Studios": [],
        "GenreItems": [],
        "LocalTrailerCount": 0,
        "MediaType": "Video"
    })
}

impl FakeJellyfin {
    pub fn start() -> FakeJellyfin {
        let state: Arc<Mutex<State>> = Arc::default();
        let shared = state.clone();
        let server = FakeServer::start(
            |r: &Req| {
                let token = r
                    .header("authorization")
                    .and_then(|a| {
                        let i = a.find("Token=\"")? + 7;
                        let rest = &a[i..];
                        Some(rest[..rest.find('"')?].to_string())
                    })
                    .or_else(|| r.header("x-emby-token").map(str::to_string));
                (token.as_deref() != Some(API_KEY)).then(|| Answer::empty(401))
            },
            move |r: &Req| handle(r, &shared.lock().unwrap()),
        );
        FakeJellyfin { server, state }
    }

    /// A user; its id.
    pub fn add_user(&self, name: &str) -> String {
        let mut s = self.state.lock().unwrap();
        let id = format!("{:032x}", s.users.len() + 0xabc0);
        s.users.push((name.into(), id.clone()));
        id
    }

    pub fn add_item(&self, item: Value) {
        let id = item["Id"].as_str().unwrap().to_string();
        self.state.lock().unwrap().items.insert(id, item);
    }

    /// `UserData` of `user_id` for `item_id`, with this play count.
    pub fn set_play_count(&self, user_id: &str, item_id: &str, count: u32) {
        self.state.lock().unwrap().user_data.insert(
            (user_id.into(), item_id.into()),
            json!({"PlaybackPositionTicks": 0, "PlayCount": count, "IsFavorite": false,
                   "Played": count > 0, "Key": item_id, "ItemId": item_id}),
        );
    }

    /// 404s carry a ProblemDetails body (10.9+) instead of nothing (10.8).
    pub fn problem_details(&self) {
        self.state.lock().unwrap().problem_details = true;
    }

    pub fn client(&self) -> Jellyfin {
        Jellyfin::new(&self.server.url(), API_KEY, 1000, 2000).unwrap()
    }
}

fn not_found(s: &State) -> Answer {
    if s.problem_details {
        Answer::json(
            404,
            &json!({"type": "https://tools.ietf.org/html/rfc9110#section-15.5.5",
                    "title": "Not Found", "status": 404, "traceId": "00-abc-def-00"}),
        )
    } else {
        Answer::empty(404)
    }
}

fn item_for(s: &State, user: &str, item: &str) -> Answer {
    if !s.users.iter().any(|(_, id)| id == user) {
        return not_found(s);
    }
    match s.items.get(item) {
        Some(v) => {
            let mut v = v.clone();
            v["UserData"] = s
                .user_data
                .get(&(user.to_string(), item.to_string()))
                .cloned()
                .unwrap_or_else(|| json!({"PlaybackPositionTicks": 0, "PlayCount": 0, "IsFavorite": false, "Played": false, "Key": item, "ItemId": item}));
            Answer::json(200, &v)
        }
        None => not_found(s),
    }
}

fn handle(r: &Req, s: &State) -> Answer {
    let parts: Vec<&str> = r.path.trim_matches('/').split('/').collect();
    match (r.method.as_str(), parts.as_slice()) {
        ("GET", ["Users"]) => Answer::json(
            200,
            &Value::Array(
                s.users
                    .iter()
                    .map(|(n, id)| {
                        json!({"Name": n, "ServerId": "srv1", "Id": id, "HasPassword": true,
                                          "HasConfiguredPassword": true, "EnableAutoLogin": false,
                                          "Policy": {"IsAdministrator": false}})
                    })
                    .collect(),
            ),
        ),
        ("GET", ["Users", user, "Items", item]) => item_for(s, user, item),
        ("GET", ["Items", item]) => match r.param("userId") {
            Some(u) => item_for(s, &u, item),
            None => Answer::json(200, s.items.get(*item).unwrap_or(&Value::Null)),
        },
        _ => not_found(s),
    }
}
