//! A fake Prowlarr API v1: `GET /api/v1/search?query=…&type=movie` answering an array of
//! `ReleaseResource`s with every field Prowlarr's `ReleaseResource.cs` serialises (`guid`,
//! `age*`, `size`, `files`, `grabs`, `indexerId`, `indexer`, `title`, `sortTitle`, `approved`,
//! `imdbId`, `publishDate`, URLs, `indexerFlags`, `categories`, `magnetUrl`, `infoHash`,
//! `seeders`, `leechers`, `protocol`, `fileName`); usenet releases carry `seeders: null`.
//! `X-Api-Key` (or `?apikey=`) or 401. An unknown query answers `[]` (as Prowlarr does, also
//! for a search that failed inside it). Failure injection from `fake_service`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use downshiftarr::clients::prowlarr::Prowlarr;
use serde_json::{json, Value};

use crate::fake_service::{Answer, FakeServer, Req};

pub const API_KEY: &str = "prowlarr-key-fedcba9876543210";

pub struct FakeProwlarr {
    pub server: FakeServer,
    releases: Arc<Mutex<HashMap<String, Vec<Value>>>>,
}

/// A torrent release from `indexer` with `seeders`.
pub fn torrent(indexer: &str, indexer_id: u32, title: &str, seeders: i64) -> Value {
    let mut r = release(indexer, indexer_id, title, "torrent");
    r["seeders"] = json!(seeders);
    r["leechers"] = json!(seeders / 3);
    r["magnetUrl"] = json!(format!(
        "http://prowlarr:9696/{indexer_id}/download?link=magnet&file={}",
        title.replace(' ', ".")
    ));
    r["infoHash"] = json!("0123456789abcdef0123456789abcdef01234567");
    r
}

/// A usenet release (no seeders: `null`).
pub fn usenet(indexer: &str, indexer_id: u32, title: &str) -> Value {
    release(indexer, indexer_id, title, "usenet")
}

fn release(indexer: &str, indexer_id: u32, title: &str, protocol: &str) -> Value {
    let ext = if protocol == "usenet" {
        "nzb"
    } else {
        "torrent"
    };
    json!({
        "guid": format!("https://{}.example/details/{}", indexer.to_lowercase(), title.len()),
        "age": 412,
        "ageHours": 9888.4,
        "ageMinutes": 593_304.2,
        "size": 9_876_543_210u64,
        "files": 3,
        "grabs": 57,
        "indexerId": indexer_id,
        "indexer": indexer,
        "title": title,
        "sortTitle": title.to_lowercase(),
        "approved": false,
        "imdbId": 0,
        "publishDate": "2023-10-21T18:02:11Z",
        "commentUrl": null,
        "downloadUrl": format!("http://prowlarr:9696/{indexer_id}/download?link=x&file={}", title.replace(' ', ".")),
        "infoUrl": format!("https://{}.example/details", indexer.to_lowercase()),
        "posterUrl": null,
        "indexerFlags": [],
        "categories": [{"id": 2000, "name": "Movies", "subCategories": []}],
        "magnetUrl": null,
        "infoHash": null,
        "seeders": null,
        "leechers": null,
        "protocol": protocol,
        "fileName": format!("{title}.{ext}"),
        "id": 0
    })
}

impl FakeProwlarr {
    pub fn start() -> FakeProwlarr {
        let releases: Arc<Mutex<HashMap<String, Vec<Value>>>> = Arc::default();
        let shared = releases.clone();
        let server = FakeServer::start(
            |r: &Req| {
                let keyed = r.header("x-api-key") == Some(API_KEY)
                    || r.param("apikey").as_deref() == Some(API_KEY);
                (!keyed).then(|| Answer::empty(401))
            },
            move |r: &Req| match (r.method.as_str(), r.path.as_str()) {
                ("GET", "/api/v1/search") => {
                    let q = r.param("query").unwrap_or_default().to_lowercase();
                    let hits = shared.lock().unwrap().get(&q).cloned().unwrap_or_default();
                    Answer::json(200, &Value::Array(hits))
                }
                _ => Answer::json(404, &json!({"message": "NotFound"})),
            },
        );
        FakeProwlarr { server, releases }
    }

    /// What a search for `query` (case-insensitive) answers.
    pub fn set_releases(&self, query: &str, releases: Vec<Value>) {
        self.releases
            .lock()
            .unwrap()
            .insert(query.to_lowercase(), releases);
    }

    pub fn client(&self) -> Prowlarr {
        Prowlarr::new(&self.server.url(), API_KEY, 1000, 2000).unwrap()
    }
}
