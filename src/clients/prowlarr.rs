//! The Prowlarr client of the downloads job (issue 13, optional): the best seeder count across
//! every indexer for a movie, `< downloads.min_seeders_rare` making it "rare".
//!
//! `GET /api/v1/search?query=…&type=movie` with `X-Api-Key` answers an array of
//! `ReleaseResource`s (Prowlarr `src/Prowlarr.Api.V1/Search/ReleaseResource.cs`): `title`,
//! `indexer`, `indexerId`, `size`, `protocol` (`torrent` / `usenet`), `seeders` and `leechers`
//! (`int?`, null for usenet), `guid`, `publishDate`, … A search costs every indexer real work
//! and can be slow, so it is sent once, never retried by the client.
//!
//! Upstream quirk to know: Prowlarr's `SearchController` logs and swallows an unexpected
//! exception and answers 200 `[]`, so an empty answer is "no release Prowlarr could find",
//! a weak fact; the caller records where it came from.

use serde_json::Value;

use super::service::{Limits, ServiceClient, ServiceError, Spec};

/// Search answers are a few hundred releases at most.
const MAX_BODY: u64 = 32 << 20;

/// A Prowlarr instance.
#[derive(Debug)]
pub struct Prowlarr {
    svc: ServiceClient,
}

impl Prowlarr {
    pub fn new(
        base_url: &str,
        api_key: &str,
        connect_ms: u64,
        request_ms: u64,
    ) -> Result<Prowlarr, ServiceError> {
        let svc = ServiceClient::new(
            Spec {
                name: "Prowlarr",
                forbidden_is_unauthorized: false,
                hide_path: false,
            },
            base_url,
            &[("X-Api-Key", api_key)],
            &[],
            Limits {
                connect_ms,
                request_ms,
                max_body: MAX_BODY,
                retries: 0,
            },
        )?;
        Ok(Prowlarr { svc })
    }

    /// Best seeder count across indexers for a movie search. `Ok(None)`: no torrent release
    /// found (a 200 with `[]`, or usenet releases only, which have no seeders).
    pub fn best_seeders(&self, query: &str) -> Result<Option<u32>, ServiceError> {
        let path = "/api/v1/search";
        let v = self.svc.get_json_once(
            path,
            &[("query", query.to_string()), ("type", "movie".to_string())],
        )?;
        best_seeders(&v).map_err(|w| self.svc.malformed(path, w))
    }
}

/// The best `seeders` of an array of releases (pure). Err: not an array of releases.
pub fn best_seeders(v: &Value) -> Result<Option<u32>, String> {
    let list = v
        .as_array()
        .ok_or("an answer that is not an array of releases")?;
    let mut best: Option<u32> = None;
    for (i, r) in list.iter().enumerate() {
        if !r.is_object() {
            return Err(format!("release {i} is not an object"));
        }
        let seeders = match r.get("seeders") {
            None | Some(Value::Null) => continue,
            Some(s) => s
                .as_i64()
                .ok_or_else(|| format!("release {i} has \"seeders\" that is not a number"))?,
        };
        // Some trackers report -1 for "unknown".
        if seeders < 0 {
            continue;
        }
        let s = u32::try_from(seeders).unwrap_or(u32::MAX);
        best = Some(best.map_or(s, |b| b.max(s)));
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_best_torrent_wins_and_usenet_has_no_seeders() {
        let rel = |indexer: &str, protocol: &str, seeders: Value| {
            json!({"guid": "g", "indexer": indexer, "indexerId": 1, "title": "Film.1999.1080p",
                   "size": 1_000_000_000u64, "protocol": protocol, "seeders": seeders,
                   "leechers": Value::Null})
        };
        assert_eq!(best_seeders(&json!([])), Ok(None));
        assert_eq!(
            best_seeders(&json!([rel("NZBgeek", "usenet", Value::Null)])),
            Ok(None)
        );
        assert_eq!(
            best_seeders(&json!([
                rel("A", "torrent", json!(3)),
                rel("NZB", "usenet", Value::Null),
                rel("B", "torrent", json!(41)),
                rel("C", "torrent", json!(-1)),
            ])),
            Ok(Some(41))
        );
        assert_eq!(
            best_seeders(&json!([rel("A", "torrent", json!(0))])),
            Ok(Some(0))
        );
        assert!(best_seeders(&json!({"results": []})).is_err());
        assert!(best_seeders(&json!([rel("A", "torrent", json!("many"))])).is_err());
        assert!(best_seeders(&json!([1])).is_err());
    }
}
