//! The Radarr API v3 client of the downloads job (apis.md §4, issue 13): find a movie by its
//! TMDB id, read its facts (IMDb rating and votes, genres, original language, edition, size,
//! where its file lies), add the `keep` tag (created when missing), start a `MoviesSearch`
//! and poll the command to a final state, add a missing movie, delete one for the prune
//! report, list the library.
//!
//! Failure is never absence: [`Radarr::movie_by_tmdb`] answers `Ok(None)` only when Radarr
//! answered 200 with an empty array; a timeout, a 5xx, a 401 or a body that is not the
//! promised array is a [`ServiceError`] and the caller's decision waits. Auth is the
//! `X-Api-Key` header (never `?apikey=`: a URL ends up in logs). A base URL with Radarr's URL
//! base (`http://host/radarr`) works: every path is appended to it.
//!
//! GETs are retried after transient failures; the POST/PUT/DELETE that act are sent once
//! (the job's durable queue owns their retries).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::service::{as_count, is_absent, text, Limits, ServiceClient, ServiceError, Spec};

/// The largest answer read: `GET /api/v3/movie` of a big library (~6 KB a movie) is tens of
/// MiB; anything past this is reported, not read.
pub const MAX_BODY: u64 = 256 << 20;

/// A Radarr instance.
#[derive(Debug)]
pub struct Radarr {
    svc: ServiceClient,
}

/// A movie in Radarr's library, with what the rules read, and the raw JSON (a PUT sends it
/// back with only the tags changed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Movie {
    pub id: i64,
    pub tmdb_id: u64,
    pub imdb_id: Option<String>,
    pub title: String,
    pub year: Option<u32>,
    /// Radarr has a file for it (possibly a debrid symlink: see `root_folder_path`, `tags`).
    pub has_file: bool,
    pub tags: Vec<u64>,
    pub size_on_disk: u64,
    pub root_folder_path: Option<String>,
    pub path: Option<String>,
    /// `ratings.imdb.value` (none when Radarr has no IMDb rating).
    pub imdb_rating: Option<f64>,
    pub imdb_votes: Option<u64>,
    pub genres: Vec<String>,
    /// `originalLanguage.name` (`English`, `French`).
    pub original_language: Option<String>,
    /// The file's edition (`Director's Cut`), when Radarr parsed one.
    pub edition: Option<String>,
    pub raw: Value,
}

impl Movie {
    /// Reads one movie resource. Err names what is missing or wrong.
    pub fn from_json(v: &Value) -> Result<Movie, String> {
        if !v.is_object() {
            return Err(format!("a movie that is not an object ({})", kind(v)));
        }
        let id = v
            .get("id")
            .and_then(Value::as_i64)
            .ok_or("a movie without a numeric \"id\"")?;
        let tmdb_id = v
            .get("tmdbId")
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("movie {id} has no numeric \"tmdbId\""))?;
        let tags = match v.get("tags") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|t| t.as_u64())
                .collect::<Option<Vec<u64>>>()
                .ok_or_else(|| format!("movie {id} has a tag that is not a tag id"))?,
            Some(other) => return Err(format!("movie {id} has \"tags\" as {}", kind(other))),
        };
        let imdb = v.get("ratings").and_then(|r| r.get("imdb"));
        let imdb_votes = imdb.and_then(|i| i.get("votes")).and_then(as_count);
        let imdb_rating = imdb
            .and_then(|i| i.get("value"))
            .and_then(Value::as_f64)
            .filter(|r| r.is_finite() && *r > 0.0 && *r <= 10.0);
        Ok(Movie {
            id,
            tmdb_id,
            imdb_id: text(v, "imdbId"),
            title: text(v, "title").unwrap_or_default(),
            year: v
                .get("year")
                .and_then(Value::as_u64)
                .filter(|y| (1..=9999).contains(y))
                .map(|y| y as u32),
            has_file: v.get("hasFile").and_then(Value::as_bool).unwrap_or(false),
            tags,
            size_on_disk: v.get("sizeOnDisk").and_then(as_count).unwrap_or(0),
            root_folder_path: text(v, "rootFolderPath"),
            path: text(v, "path"),
            // Radarr writes 0 votes and 0.0 for "no IMDb rating".
            imdb_votes: imdb_votes.filter(|_| imdb_rating.is_some()),
            imdb_rating,
            genres: v
                .get("genres")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            original_language: v.get("originalLanguage").and_then(|l| text(l, "name")),
            edition: v.get("movieFile").and_then(|f| text(f, "edition")),
            raw: v.clone(),
        })
    }
}

/// A Radarr tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub id: u64,
    pub label: String,
}

/// A Radarr command (`CommandResource`): `queued` → `started` → a final state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub id: i64,
    pub name: String,
    /// Lower-case: `queued`, `started`, `completed`, `failed`, `aborted`, `cancelled`,
    /// `orphaned`.
    pub status: String,
}

impl Command {
    /// Radarr will not change it any more.
    pub fn is_final(&self) -> bool {
        matches!(
            self.status.as_str(),
            "completed" | "failed" | "aborted" | "cancelled" | "orphaned"
        )
    }

    /// The command ran to its end. For `MoviesSearch` that means "searched", not "grabbed"
    /// (apis.md §4).
    pub fn succeeded(&self) -> bool {
        self.status == "completed"
    }

    /// Reads one command resource.
    pub fn from_json(v: &Value) -> Result<Command, String> {
        let id = v
            .get("id")
            .and_then(Value::as_i64)
            .ok_or("a command without a numeric \"id\"")?;
        let status = text(v, "status")
            .ok_or_else(|| format!("command {id} has no \"status\""))?
            .to_ascii_lowercase();
        Ok(Command {
            id,
            name: text(v, "name").unwrap_or_default(),
            status,
        })
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Radarr {
    /// A client for Radarr at `base_url` (with its URL base, if any).
    pub fn new(
        base_url: &str,
        api_key: &str,
        connect_ms: u64,
        request_ms: u64,
    ) -> Result<Radarr, ServiceError> {
        Radarr::with_max_body(base_url, api_key, connect_ms, request_ms, MAX_BODY)
    }

    /// As [`Radarr::new`], reading answers up to `max_body` bytes.
    pub fn with_max_body(
        base_url: &str,
        api_key: &str,
        connect_ms: u64,
        request_ms: u64,
        max_body: u64,
    ) -> Result<Radarr, ServiceError> {
        let svc = ServiceClient::new(
            Spec {
                name: "Radarr",
                forbidden_is_unauthorized: false,
                hide_path: false,
            },
            base_url,
            &[("X-Api-Key", api_key)],
            &[],
            Limits {
                connect_ms,
                request_ms,
                max_body,
                retries: 2,
            },
        )?;
        Ok(Radarr { svc })
    }

    /// Requests sent so far (for `/metrics`).
    pub fn calls(&self) -> u64 {
        self.svc.calls()
    }

    /// `GET /api/v3/system/status`: proves the URL and the key (version, `urlBase`…).
    pub fn system_status(&self) -> Result<Value, ServiceError> {
        let path = "/api/v3/system/status";
        let v = self.svc.get_json(path, &[])?;
        if v.get("version").and_then(Value::as_str).is_none() {
            return Err(self.svc.malformed(path, "a status without a \"version\""));
        }
        Ok(v)
    }

    /// `GET /api/v3/movie?tmdbId=`: the movie, or `Ok(None)` ONLY when Radarr answered 200
    /// with an empty array.
    pub fn movie_by_tmdb(&self, tmdb: u64) -> Result<Option<Movie>, ServiceError> {
        let path = "/api/v3/movie";
        let v = self.svc.get_json(path, &[("tmdbId", tmdb.to_string())])?;
        let list = v.as_array().ok_or_else(|| {
            self.svc
                .malformed(path, format!("{} instead of an array of movies", kind(&v)))
        })?;
        if list.is_empty() {
            return Ok(None);
        }
        let movies = list
            .iter()
            .map(Movie::from_json)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|w| self.svc.malformed(path, w))?;
        // An array that does not hold the movie asked for is not an answer about it.
        movies
            .into_iter()
            .find(|m| m.tmdb_id == tmdb)
            .map(Some)
            .ok_or_else(|| {
                self.svc.malformed(
                    path,
                    format!(
                        "{} movie(s), none with tmdbId {tmdb} (is this Radarr v3 or later?)",
                        list.len()
                    ),
                )
            })
    }

    /// `GET /api/v3/movie`: the whole library (the prune report; avoid in hot paths).
    pub fn movies(&self) -> Result<Vec<Movie>, ServiceError> {
        let path = "/api/v3/movie";
        let v = self.svc.get_json(path, &[])?;
        let list = v.as_array().ok_or_else(|| {
            self.svc
                .malformed(path, format!("{} instead of an array of movies", kind(&v)))
        })?;
        list.iter()
            .enumerate()
            .map(|(i, m)| Movie::from_json(m).map_err(|w| format!("element {i}: {w}")))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|w| self.svc.malformed(path, w))
    }

    /// `GET /api/v3/movie/lookup/tmdb?tmdbId=`: what Radarr knows of a movie not in the
    /// library (the body `add_movie` takes). `Ok(None)`: Radarr's own 404 for an unknown id.
    pub fn lookup_tmdb(&self, tmdb: u64) -> Result<Option<Value>, ServiceError> {
        let path = "/api/v3/movie/lookup/tmdb";
        match self.svc.get_json(path, &[("tmdbId", tmdb.to_string())]) {
            Ok(v) if v.is_object() => {
                if v.get("tmdbId").and_then(Value::as_u64) != Some(tmdb) {
                    return Err(self
                        .svc
                        .malformed(path, format!("a lookup whose tmdbId is not {tmdb}")));
                }
                Ok(Some(v))
            }
            Ok(v) => Err(self
                .svc
                .malformed(path, format!("{} instead of a movie", kind(&v)))),
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /api/v3/movie`: adds a looked-up movie, monitored, with `tags`; `search` asks
    /// Radarr to search at once (`addOptions.searchForMovie`).
    pub fn add_movie(
        &self,
        lookup: &Value,
        quality_profile_id: u64,
        root_folder: &str,
        tags: &[u64],
        search: bool,
    ) -> Result<Movie, ServiceError> {
        let path = "/api/v3/movie";
        let mut body = match lookup {
            Value::Object(_) => lookup.clone(),
            other => {
                return Err(self.svc.malformed(
                    path,
                    format!("asked to add {} instead of a looked-up movie", kind(other)),
                ))
            }
        };
        body["qualityProfileId"] = json!(quality_profile_id);
        body["rootFolderPath"] = json!(root_folder);
        body["monitored"] = json!(true);
        body["tags"] = json!(tags);
        body["addOptions"] = json!({ "searchForMovie": search });
        let v = self.svc.post_json(path, &[], &body)?;
        Movie::from_json(&v).map_err(|w| self.svc.malformed(path, w))
    }

    /// `GET /api/v3/tag`.
    pub fn tags(&self) -> Result<Vec<Tag>, ServiceError> {
        let path = "/api/v3/tag";
        let v = self.svc.get_json(path, &[])?;
        let list = v.as_array().ok_or_else(|| {
            self.svc
                .malformed(path, format!("{} instead of an array of tags", kind(&v)))
        })?;
        list.iter()
            .map(parse_tag)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|w| self.svc.malformed(path, w))
    }

    /// The id of the tag labelled `label` (case-insensitively), created when missing.
    pub fn ensure_tag(&self, label: &str) -> Result<u64, ServiceError> {
        let wanted = label.trim();
        if let Some(t) = self
            .tags()?
            .into_iter()
            .find(|t| t.label.trim().eq_ignore_ascii_case(wanted))
        {
            return Ok(t.id);
        }
        let path = "/api/v3/tag";
        let v = self.svc.post_json(path, &[], &json!({ "label": wanted }))?;
        let tag = parse_tag(&v).map_err(|w| self.svc.malformed(path, w))?;
        if !tag.label.trim().eq_ignore_ascii_case(wanted) {
            return Err(self.svc.malformed(
                path,
                format!("asked for tag {wanted:?}, got {:?}", tag.label),
            ));
        }
        Ok(tag.id)
    }

    /// `PUT /api/v3/movie/{id}` with `tag` added to the movie's raw JSON (nothing else
    /// changes; pass a freshly read movie). Nothing is sent when the tag is already there.
    pub fn add_tag(&self, movie: &Movie, tag: u64) -> Result<(), ServiceError> {
        if movie.tags.contains(&tag) {
            return Ok(());
        }
        let path = format!("/api/v3/movie/{}", movie.id);
        let mut body = movie.raw.clone();
        if !body.is_object() {
            return Err(self
                .svc
                .malformed(&path, "the movie's JSON is not an object".to_string()));
        }
        let mut tags = movie.tags.clone();
        tags.push(tag);
        body["tags"] = json!(tags);
        body["id"] = json!(movie.id);
        self.svc
            .put_json(&path, &[("moveFiles", "false".into())], &body)
    }

    /// `POST /api/v3/command {"name":"MoviesSearch","movieIds":[…]}`.
    pub fn search(&self, movie_ids: &[i64]) -> Result<Command, ServiceError> {
        let path = "/api/v3/command";
        let v = self.svc.post_json(
            path,
            &[],
            &json!({ "name": "MoviesSearch", "movieIds": movie_ids }),
        )?;
        Command::from_json(&v).map_err(|w| self.svc.malformed(path, w))
    }

    /// `GET /api/v3/command/{id}`: the command's state now.
    pub fn command(&self, id: i64) -> Result<Command, ServiceError> {
        let path = format!("/api/v3/command/{id}");
        let v = self.svc.get_json(&path, &[])?;
        let c = Command::from_json(&v).map_err(|w| self.svc.malformed(&path, w))?;
        if c.id != id {
            return Err(self
                .svc
                .malformed(&path, format!("asked for command {id}, got {}", c.id)));
        }
        Ok(c)
    }

    /// `DELETE /api/v3/movie/{id}?deleteFiles=…` (the prune report's `--apply`).
    pub fn delete_movie(&self, id: i64, delete_files: bool) -> Result<(), ServiceError> {
        let path = format!("/api/v3/movie/{id}");
        self.svc.delete(
            &path,
            &[
                ("deleteFiles", delete_files.to_string()),
                ("addImportExclusion", "false".into()),
            ],
        )
    }
}

fn parse_tag(v: &Value) -> Result<Tag, String> {
    let id = v
        .get("id")
        .and_then(Value::as_u64)
        .ok_or("a tag without a numeric \"id\"")?;
    let label = v
        .get("label")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("tag {id} has no \"label\""))?;
    Ok(Tag {
        id,
        label: label.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOVIE: &str = include_str!("../../fixtures/radarr-payloads/radarr-movie.json");
    const COMMAND: &str =
        include_str!("../../fixtures/radarr-payloads/radarr-command-response.json");

    #[test]
    fn the_recorded_movie_is_read_whole() {
        let v: Value = serde_json::from_str(MOVIE).unwrap();
        let m = Movie::from_json(&v).unwrap();
        assert_eq!(m.id, 1);
        assert_eq!(m.tmdb_id, 123_456);
        assert_eq!(m.imdb_id.as_deref(), Some("tt123456"));
        assert_eq!(m.title, "string");
        assert_eq!(m.year, Some(2014));
        assert!(m.has_file);
        assert!(m.tags.is_empty());
        assert_eq!(m.size_on_disk, 10_501_793_191);
        assert_eq!(m.root_folder_path, None);
        assert_eq!(m.path.as_deref(), Some("string"));
        assert_eq!(m.imdb_rating, Some(7.3));
        assert_eq!(m.imdb_votes, Some(473_890));
        assert_eq!(m.genres, vec!["string".to_string()]);
        assert_eq!(m.original_language.as_deref(), Some("English"));
        // `movieFile.edition` is "" in the recording: no edition.
        assert_eq!(m.edition, None);
        assert_eq!(m.raw, v);
    }

    #[test]
    fn odd_movies_are_read_or_refused_with_the_field_named() {
        let mut v: Value = serde_json::from_str(MOVIE).unwrap();
        v["ratings"] = json!({ "imdb": { "votes": 0, "value": 0.0 } });
        v["movieFile"]["edition"] = json!("Director's Cut");
        v["tags"] = json!([3, 7]);
        v["rootFolderPath"] = json!("/mnt/debrid/movies");
        v["year"] = json!(0);
        v["imdbId"] = json!("");
        let m = Movie::from_json(&v).unwrap();
        assert_eq!((m.imdb_rating, m.imdb_votes), (None, None));
        assert_eq!(m.edition.as_deref(), Some("Director's Cut"));
        assert_eq!(m.tags, vec![3, 7]);
        assert_eq!(m.root_folder_path.as_deref(), Some("/mnt/debrid/movies"));
        assert_eq!((m.year, m.imdb_id), (None, None));

        let mut no_tmdb = v.clone();
        no_tmdb.as_object_mut().unwrap().remove("tmdbId");
        assert!(Movie::from_json(&no_tmdb).unwrap_err().contains("tmdbId"));
        let mut bad_tags = v.clone();
        bad_tags["tags"] = json!(["keep"]);
        assert!(Movie::from_json(&bad_tags).unwrap_err().contains("tag"));
        assert!(Movie::from_json(&json!([])).unwrap_err().contains("array"));
        assert!(Movie::from_json(&json!({"tmdbId": 1}))
            .unwrap_err()
            .contains("\"id\""));
    }

    #[test]
    fn commands_are_final_only_in_a_final_state() {
        let v: Value = serde_json::from_str(COMMAND).unwrap();
        let c = Command::from_json(&v).unwrap();
        assert_eq!(
            (c.id, c.name.as_str(), c.status.as_str()),
            (0, "MessagingCleanup", "completed")
        );
        assert!(c.is_final() && c.succeeded());
        for (status, fin, ok) in [
            ("queued", false, false),
            ("Started", false, false),
            ("failed", true, false),
            ("aborted", true, false),
            ("cancelled", true, false),
            ("orphaned", true, false),
        ] {
            let c = Command::from_json(&json!({"id": 5, "name": "MoviesSearch", "status": status}))
                .unwrap();
            assert_eq!((c.is_final(), c.succeeded()), (fin, ok), "{status}");
        }
        assert!(Command::from_json(&json!({"id": 5})).is_err());
    }

    #[test]
    fn a_radarr_debug_never_shows_the_key() {
        let r = Radarr::new("http://u:pw@127.0.0.1:1/radarr", "SECRETKEY123", 100, 100).unwrap();
        let d = format!("{r:?}");
        assert!(!d.contains("SECRETKEY123") && !d.contains("pw"), "{d}");
        assert!(d.contains("127.0.0.1:1/radarr"), "{d}");
    }
}
