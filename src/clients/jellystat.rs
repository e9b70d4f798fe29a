//! The Jellystat client of the downloads job (apis.md §5.3, issue 13, optional): play history
//! of one Jellyfin item (the rewatch count) and of the whole server (`downloads
//! import-history`).
//!
//! Auth is the `x-api-token` header (401 none given, 403 invalid: both [`ServiceError::Unauthorized`]).
//! Shapes, from `backend/routes/api.js` across versions:
//! - `POST /api/getItemHistory?size=&page=&sort=ActivityDateInserted&desc=true`
//!   `{"itemid": …}`: newer versions answer `{"current_page", "pages", "size", "sort",
//!   "desc", "results": [rows]}`; older ones a plain array of rows (each with `results: []`).
//! - `GET /api/getHistory?size=&page=`: the newest play per (item, episode, user), each with
//!   `results`, every play of that group (`json_agg`), and `TotalPlays`.
//!
//! Rows are `jf_playback_activity` rows: `UserName`, `NowPlayingItemId`, `NowPlayingItemName`,
//! `EpisodeId`, `ActivityDateInserted` (ISO time), `PlaybackDuration` (seconds; a Postgres
//! `bigint`, so a JSON *string* at the top level through node-postgres, a number inside
//! `json_agg`), `RemoteEndPoint`. A row we cannot read makes the whole answer
//! [`ServiceError::Malformed`]: a count from half the rows would read as "watched less".
//! Paging is bounded, newest first: an item's history by [`MAX_PAGES`] pages of
//! [`PAGE_SIZE`], the server's by the `max` plays asked.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::service::{as_count, parse_time_ms, text, Limits, ServiceClient, ServiceError, Spec};

/// Rows asked per page.
pub const PAGE_SIZE: usize = 100;
/// Pages read for one item at most (the newest `PAGE_SIZE × MAX_PAGES` plays).
pub const MAX_PAGES: usize = 50;

const MAX_BODY: u64 = 32 << 20;

/// A Jellystat instance.
#[derive(Debug)]
pub struct Jellystat {
    svc: ServiceClient,
}

/// One play Jellystat recorded (it records only plays longer than its own threshold).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRow {
    pub user: String,
    /// The Jellyfin item played (the episode's id for an episode).
    pub item_id: String,
    pub item_name: String,
    /// `ActivityDateInserted`, unix milliseconds.
    pub at_ms: u64,
    /// `PlaybackDuration`, seconds.
    pub duration_s: u64,
    /// `RemoteEndPoint`.
    pub address: Option<String>,
}

impl HistoryRow {
    /// Reads one `jf_playback_activity` row. Err names what is missing.
    pub fn from_json(v: &Value) -> Result<HistoryRow, String> {
        if !v.is_object() {
            return Err("a history row that is not an object".into());
        }
        let item_id = text(v, "EpisodeId")
            .or_else(|| text(v, "NowPlayingItemId"))
            .ok_or("a history row without \"NowPlayingItemId\"")?;
        let user = text(v, "UserName")
            .ok_or_else(|| format!("the history row of item {item_id} has no \"UserName\""))?;
        let when = v
            .get("ActivityDateInserted")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                format!("the history row of item {item_id} has no \"ActivityDateInserted\"")
            })?;
        let at_ms = parse_time_ms(when).ok_or_else(|| {
            format!(
                "the history row of item {item_id} has an unreadable time {:?}",
                when.chars().take(40).collect::<String>()
            )
        })?;
        Ok(HistoryRow {
            user,
            item_name: text(v, "NowPlayingItemName").unwrap_or_default(),
            item_id,
            at_ms,
            duration_s: v.get("PlaybackDuration").and_then(as_count).unwrap_or(0),
            address: text(v, "RemoteEndPoint"),
        })
    }
}

/// One page of either shape: its plays, and the number of pages when the shape says it.
pub fn parse_page(v: &Value) -> Result<(Vec<HistoryRow>, Option<usize>), String> {
    let (rows, pages) = match v {
        Value::Array(rows) => (rows, None),
        Value::Object(o) => {
            let rows = o
                .get("results")
                .and_then(Value::as_array)
                .ok_or("an object without a \"results\" array")?;
            let pages = o
                .get("pages")
                .and_then(as_count)
                .map(|p| p.min(usize::MAX as u64) as usize);
            (rows, Some(pages.unwrap_or(1)))
        }
        _ => return Err("neither an array of rows nor a page of results".into()),
    };
    let mut out = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        // getHistory's grouped rows carry every play of the group in `results`; the older
        // plain rows carry an empty one.
        match row.get("results").and_then(Value::as_array) {
            Some(plays) if !plays.is_empty() => {
                for p in plays {
                    out.push(HistoryRow::from_json(p).map_err(|w| format!("row {i}: {w}"))?);
                }
            }
            _ => out.push(HistoryRow::from_json(row).map_err(|w| format!("row {i}: {w}"))?),
        }
    }
    Ok((out, pages))
}

impl Jellystat {
    pub fn new(
        base_url: &str,
        api_key: &str,
        connect_ms: u64,
        request_ms: u64,
    ) -> Result<Jellystat, ServiceError> {
        let svc = ServiceClient::new(
            Spec {
                name: "Jellystat",
                forbidden_is_unauthorized: true,
                hide_path: false,
            },
            base_url,
            &[("x-api-token", api_key)],
            &[],
            Limits {
                connect_ms,
                request_ms,
                max_body: MAX_BODY,
                retries: 2,
            },
        )?;
        Ok(Jellystat { svc })
    }

    /// `POST /api/getItemHistory`, both response shapes, every page (bounded), newest first.
    pub fn item_history(&self, item_id: &str) -> Result<Vec<HistoryRow>, ServiceError> {
        let path = "/api/getItemHistory";
        let body = json!({ "itemid": item_id });
        self.pages(path, usize::MAX, MAX_PAGES, |page| {
            self.svc.post_json(path, &page_query(page), &body)
        })
    }

    /// `GET /api/getHistory` paged (for import-history), at most `max` plays, newest first
    /// (`max` 0: nothing is asked).
    pub fn history(&self, max: usize) -> Result<Vec<HistoryRow>, ServiceError> {
        let path = "/api/getHistory";
        // Every full page gives at least PAGE_SIZE plays (a grouped row holds one or more).
        let max_pages = max.div_ceil(PAGE_SIZE);
        self.pages(path, max, max_pages, |page| {
            self.svc.get_json(path, &page_query(page))
        })
    }

    fn pages(
        &self,
        path: &str,
        max: usize,
        max_pages: usize,
        fetch: impl FnMut(usize) -> Result<Value, ServiceError>,
    ) -> Result<Vec<HistoryRow>, ServiceError> {
        collect_pages(max, max_pages, fetch, |w| self.svc.malformed(path, w))
    }
}

/// Reads pages 1, 2, … until the last page, an empty page, `max` plays or `max_pages` pages.
/// Any page failing fails the whole: a history missing its later pages would read as
/// "watched less".
fn collect_pages(
    max: usize,
    max_pages: usize,
    mut fetch: impl FnMut(usize) -> Result<Value, ServiceError>,
    malformed: impl Fn(String) -> ServiceError,
) -> Result<Vec<HistoryRow>, ServiceError> {
    let mut out = Vec::new();
    let mut page = 1;
    while out.len() < max && page <= max_pages {
        let (rows, pages) = parse_page(&fetch(page)?).map_err(&malformed)?;
        let empty = rows.is_empty();
        out.extend(rows);
        match pages {
            // The older plain array has no pages: it was everything.
            None => break,
            Some(p) if page >= p || empty => break,
            Some(_) => page += 1,
        }
    }
    out.truncate(max);
    Ok(out)
}

fn page_query(page: usize) -> Vec<(&'static str, String)> {
    vec![
        ("size", PAGE_SIZE.to_string()),
        ("page", page.to_string()),
        ("sort", "ActivityDateInserted".into()),
        ("desc", "true".into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(user: &str, item: &str, when: &str, dur: Value) -> Value {
        json!({
            "Id": "a1", "IsPaused": false, "UserId": "u1", "UserName": user,
            "Client": "Jellyfin Web", "DeviceName": "Firefox", "DeviceId": "d1",
            "ApplicationVersion": "10.9.11", "NowPlayingItemId": item,
            "NowPlayingItemName": "The Matrix", "SeasonId": null, "SeriesName": null,
            "EpisodeId": null, "PlaybackDuration": dur, "ActivityDateInserted": when,
            "PlayMethod": "DirectPlay", "RemoteEndPoint": "192.168.1.20",
            "EpisodeNumber": null, "SeasonNumber": null
        })
    }

    #[test]
    fn the_paged_shape_is_read_with_string_durations() {
        let page = json!({
            "current_page": "1", "pages": 3, "size": "100", "sort": "ActivityDateInserted",
            "desc": "true",
            "results": [row("alice", "abc", "2024-05-01T20:15:30.123Z", json!("7200"))]
        });
        let (rows, pages) = parse_page(&page).unwrap();
        assert_eq!(pages, Some(3));
        assert_eq!(
            rows,
            vec![HistoryRow {
                user: "alice".into(),
                item_id: "abc".into(),
                item_name: "The Matrix".into(),
                at_ms: 1_714_594_530_123,
                duration_s: 7200,
                address: Some("192.168.1.20".into()),
            }]
        );
    }

    #[test]
    fn the_older_plain_array_is_read_too() {
        let mut r = row("bob", "abc", "2023-01-02T03:04:05.000Z", json!(95));
        r["results"] = json!([]);
        let (rows, pages) = parse_page(&json!([r])).unwrap();
        assert_eq!(pages, None);
        assert_eq!((rows[0].user.as_str(), rows[0].duration_s), ("bob", 95));
    }

    #[test]
    fn grouped_rows_give_every_play_of_the_group() {
        let mut latest = row("alice", "abc", "2024-05-03T00:00:00Z", json!("300"));
        latest["results"] = json!([
            row("alice", "abc", "2024-05-03T00:00:00Z", json!(100)),
            row("alice", "abc", "2024-05-01T00:00:00Z", json!(200)),
        ]);
        latest["TotalPlays"] = json!("2");
        let (rows, _) = parse_page(&json!({"pages": 1, "results": [latest]})).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].duration_s, 200);
    }

    #[test]
    fn paging_stops_at_the_last_page_the_cap_or_a_failure() {
        let page = |p: usize, pages: usize| {
            json!({"current_page": p.to_string(), "pages": pages,
                   "results": (0..PAGE_SIZE).map(|i| row("a", &format!("{p}-{i}"), "2024-01-01T00:00:00Z", json!(1))).collect::<Vec<_>>()})
        };
        let bad = |w: String| ServiceError::Malformed {
            service: "Jellystat",
            url: "u".into(),
            what: w,
        };
        // Every page of three, then stop.
        let mut asked = Vec::new();
        let rows = collect_pages(
            usize::MAX,
            MAX_PAGES,
            |p| {
                asked.push(p);
                Ok(page(p, 3))
            },
            bad,
        )
        .unwrap();
        assert_eq!((rows.len(), asked), (3 * PAGE_SIZE, vec![1, 2, 3]));
        // A cap of plays, and a cap of pages, whatever the server claims.
        let mut asked = 0;
        let rows = collect_pages(
            150,
            9,
            |p| {
                asked += 1;
                Ok(page(p, 1000))
            },
            bad,
        )
        .unwrap();
        assert_eq!((rows.len(), asked), (150, 2));
        let mut asked = 0;
        let rows = collect_pages(
            usize::MAX,
            4,
            |p| {
                asked += 1;
                Ok(page(p, 1000))
            },
            bad,
        )
        .unwrap();
        assert_eq!((rows.len(), asked), (4 * PAGE_SIZE, 4));
        let mut asked = 0;
        assert!(collect_pages(
            0,
            9,
            |p| {
                asked += 1;
                Ok(page(p, 1))
            },
            bad
        )
        .unwrap()
        .is_empty());
        assert_eq!(asked, 0);
        // An empty page ends it even when more are announced.
        let rows = collect_pages(
            usize::MAX,
            9,
            |_| Ok(json!({"pages": 5, "results": []})),
            bad,
        )
        .unwrap();
        assert!(rows.is_empty());
        // A later page failing fails the whole.
        let e = collect_pages(
            usize::MAX,
            9,
            |p| {
                if p == 1 {
                    Ok(page(1, 2))
                } else {
                    Ok(json!("oops"))
                }
            },
            bad,
        )
        .unwrap_err();
        assert!(matches!(e, ServiceError::Malformed { .. }));
    }

    #[test]
    fn an_unreadable_row_fails_the_page_naming_it() {
        let bad = row("alice", "abc", "last tuesday", json!(1));
        let e = parse_page(&json!([
            row("a", "b", "2024-01-01T00:00:00Z", json!(1)),
            bad
        ]))
        .unwrap_err();
        assert!(e.contains("row 1") && e.contains("unreadable time"), "{e}");
        let mut no_user = row("x", "abc", "2024-01-01T00:00:00Z", json!(1));
        no_user["UserName"] = Value::Null;
        assert!(parse_page(&json!([no_user]))
            .unwrap_err()
            .contains("UserName"));
        assert!(parse_page(&json!({"rows": []})).is_err());
        assert!(parse_page(&json!("No Item ID provided")).is_err());
    }
}
