//! The downloads job's heart (issue 13): the services it asks, the facts it gathers for a
//! play, the evaluation (who, counts, facts, verdict) and the action on a stored decision.
//!
//! Radarr is the one service a decision cannot do without: a failed or timed-out Radarr request
//! is an `Err` here, never "the movie is not in Radarr" — the caller keeps the decision in the
//! durable queue and asks again later. Every other source is optional: when it fails, the fact
//! stays unknown and `Facts::notes` says what was used instead ("Jellystat unreachable (…):
//! our own history used").
//!
//! The order of `act` follows the project's rule "state that matters is written before the
//! side effect": the decision is stored and queued before Radarr is touched, the search is
//! recorded once Radarr took it, and only a final answer takes the decision off the queue.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;

use super::rules;
use super::settings::{self, Who};
use super::{Fact, Facts, ItemKind, Play, PlaySource, Verdict};
use crate::clients::jellyfin::Jellyfin;
use crate::clients::jellystat::Jellystat;
use crate::clients::prowlarr::Prowlarr;
use crate::clients::radarr::{Movie, Radarr};
use crate::clients::service::ServiceError;
use crate::config::downloads::DownloadsSettings;
use crate::store::Store;

const DAY_MS: u64 = 86_400_000;

/// The outside services of one configuration.
pub struct Services {
    pub radarr: Radarr,
    pub jellyfin: Option<Jellyfin>,
    pub jellystat: Option<Jellystat>,
    pub prowlarr: Option<Prowlarr>,
}

/// A secret's value, or "" when it is not set.
fn secret(s: &crate::config::secret::Secret) -> anyhow::Result<String> {
    match s.get() {
        Ok(Some(v)) => Ok(v.expose().to_string()),
        Ok(None) => Ok(String::new()),
        Err(e) => anyhow::bail!("{e}"),
    }
}

impl Services {
    /// The clients the settings name. Radarr is required (its URL and key); Jellyfin,
    /// Jellystat and Prowlarr are built when their URL is set.
    pub fn from_settings(s: &DownloadsSettings) -> anyhow::Result<Services> {
        let (c, r) = (s.connect_timeout_ms, s.request_timeout_ms);
        let key = secret(&s.radarr_api_key).context("downloads.radarr_api_key")?;
        if key.is_empty() {
            anyhow::bail!("downloads.radarr_api_key is not set: set RADARR_API_KEY, downloads.radarr_api_key_file or downloads.radarr_api_key");
        }
        let radarr = Radarr::new(&s.radarr_url, &key, c, r)
            .map_err(|e| anyhow::anyhow!("the Radarr client for {}: {e}", s.radarr_url))?;
        let optional = |url: &str, key: &crate::config::secret::Secret, name: &str| {
            if url.trim().is_empty() {
                return Ok(None);
            }
            let k = secret(key).with_context(|| format!("downloads.{name}_api_key"))?;
            Ok::<_, anyhow::Error>(Some(k))
        };
        let jellyfin =
            match optional(&s.jellyfin_url, &s.jellyfin_api_key, "jellyfin")? {
                Some(k) => Some(Jellyfin::new(&s.jellyfin_url, &k, c, r).map_err(|e| {
                    anyhow::anyhow!("the Jellyfin client for {}: {e}", s.jellyfin_url)
                })?),
                None => None,
            };
        let jellystat = match optional(&s.jellystat_url, &s.jellystat_api_key, "jellystat")? {
            Some(k) => Some(Jellystat::new(&s.jellystat_url, &k, c, r).map_err(|e| {
                anyhow::anyhow!("the Jellystat client for {}: {e}", s.jellystat_url)
            })?),
            None => None,
        };
        let prowlarr =
            match optional(&s.prowlarr_url, &s.prowlarr_api_key, "prowlarr")? {
                Some(k) => Some(Prowlarr::new(&s.prowlarr_url, &k, c, r).map_err(|e| {
                    anyhow::anyhow!("the Prowlarr client for {}: {e}", s.prowlarr_url)
                })?),
                None => None,
            };
        Ok(Services {
            radarr,
            jellyfin,
            jellystat,
            prowlarr,
        })
    }
}

/// What [`evaluate`] found: who played, whether the play counts, the facts, the verdict, and
/// Radarr's movie when Radarr has it.
#[derive(Debug)]
pub struct Evaluation {
    pub who: Who,
    pub counted: Result<(), String>,
    pub facts: Facts,
    pub verdict: Verdict,
    pub movie: Option<Movie>,
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The favourite/keep/remote tags' ids, read once per gather when the movie carries tags.
fn tag_ids(sv: &Services, labels: &[&str]) -> Result<Vec<Option<u64>>, ServiceError> {
    if labels.iter().all(|l| l.trim().is_empty()) {
        return Ok(vec![None; labels.len()]);
    }
    let tags = sv.radarr.tags()?;
    Ok(labels
        .iter()
        .map(|l| {
            tags.iter()
                .find(|t| !l.trim().is_empty() && t.label.eq_ignore_ascii_case(l.trim()))
                .map(|t| t.id)
        })
        .collect())
}

/// Radarr's facts about its movie.
fn radarr_facts(
    sv: &Services,
    s: &DownloadsSettings,
    m: &Movie,
    f: &mut Facts,
) -> Result<(), ServiceError> {
    const R: &str = "radarr";
    if let Some(r) = m.imdb_rating.filter(|r| *r > 0.0) {
        f.imdb_rating = Some(Fact::new(r, R));
    }
    if let Some(v) = m.imdb_votes.filter(|v| *v > 0) {
        f.imdb_votes = Some(Fact::new(v, R));
    }
    if !m.genres.is_empty() {
        f.genres = Some(Fact::new(m.genres.clone(), R));
    }
    if let Some(l) = m.original_language.clone().filter(|l| !l.is_empty()) {
        f.original_language = Some(Fact::new(l, R));
    }
    if let Some(y) = m.year.filter(|y| *y > 0) {
        f.year = Some(Fact::new(y, R));
    }
    if !m.title.is_empty() {
        f.title = Some(Fact::new(m.title.clone(), R));
    }
    if let Some(e) = m.edition.clone().filter(|e| !e.is_empty()) {
        f.edition = Some(Fact::new(e, R));
    }
    let favourite = if m.tags.is_empty() || s.favourite_tag.trim().is_empty() {
        false
    } else {
        let ids = tag_ids(sv, &[&s.favourite_tag])?;
        ids[0].is_some_and(|id| m.tags.contains(&id))
    };
    f.favourite = Some(Fact::new(favourite, R));
    Ok(())
}

/// Facts from a Radarr lookup object (a movie not in the library: `ratings.imdb`, `genres`,
/// `originalLanguage.name`, `year`).
fn lookup_facts(v: &serde_json::Value, f: &mut Facts) {
    const R: &str = "radarr_lookup";
    let imdb = &v["ratings"]["imdb"];
    if let Some(r) = imdb["value"].as_f64().filter(|r| *r > 0.0) {
        f.imdb_rating = Some(Fact::new(r, R));
    }
    if let Some(n) = imdb["votes"].as_u64().filter(|n| *n > 0) {
        f.imdb_votes = Some(Fact::new(n, R));
    }
    if let Some(g) = v["genres"].as_array() {
        let g: Vec<String> = g
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect();
        if !g.is_empty() {
            f.genres = Some(Fact::new(g, R));
        }
    }
    if let Some(l) = v["originalLanguage"]["name"]
        .as_str()
        .filter(|l| !l.is_empty())
    {
        f.original_language = Some(Fact::new(l.to_string(), R));
    }
    if let Some(y) = v["year"]
        .as_u64()
        .and_then(|y| u32::try_from(y).ok())
        .filter(|y| *y > 0)
    {
        f.year = Some(Fact::new(y, R));
    }
    if let Some(t) = v["title"].as_str().filter(|t| !t.is_empty()) {
        f.title = Some(Fact::new(t.to_string(), R));
    }
}

/// Gathers the facts for a play: Radarr's movie by TMDB id (required: a failure is `Err`),
/// Jellyfin's item, Prowlarr's seeders, and the watch count in the window — our own history,
/// and Jellystat's when configured (the larger; each source's failure a note). The count is
/// what the history holds (the run loop records a counted play before it gathers), and at
/// least 1: this play.
pub fn gather(
    sv: &Services,
    store: &Store,
    s: &DownloadsSettings,
    play: &Play,
) -> Result<(Facts, Option<Movie>), ServiceError> {
    let mut f = Facts::default();
    let mut movie = None;
    let mut ids = play.ids.clone();
    let t = settings::thresholds(s, &play.user);

    // Jellyfin first when the play came from it: it may fill the TMDB id Radarr needs.
    if let (Some(jf), PlaySource::Jellyfin) = (&sv.jellyfin, play.source) {
        match jellyfin_item(jf, play) {
            Ok(Some(item)) => {
                if ids.tmdb.is_none() {
                    ids.tmdb = item.ids.tmdb;
                }
                if ids.imdb.is_none() {
                    ids.imdb = item.ids.imdb.clone();
                }
                if let Some(r) = item.community_rating.filter(|r| *r > 0.0) {
                    f.imdb_rating = Some(Fact::new(r, "jellyfin"));
                }
                if !item.genres.is_empty() {
                    f.genres = Some(Fact::new(item.genres.clone(), "jellyfin"));
                }
                if let Some(n) = item.play_count {
                    f.notes.push(format!("Jellyfin counts {n} plays of this item by {} in all time (not windowed: not used for the count)", play.user));
                }
            }
            Ok(None) => f.notes.push(format!(
                "Jellyfin does not know item {} for user {}",
                play.item_id, play.user
            )),
            Err(e) => f.notes.push(format!(
                "Jellyfin unavailable ({e}): its rating and genres not used"
            )),
        }
    }

    match ids.tmdb {
        Some(tmdb) => match sv.radarr.movie_by_tmdb(tmdb)? {
            Some(m) => {
                radarr_facts(sv, s, &m, &mut f)?;
                movie = Some(m);
            }
            None => {
                f.notes.push(format!("TMDB {tmdb} is not in Radarr"));
                if s.add_missing {
                    if let Some(l) = sv.radarr.lookup_tmdb(tmdb)? {
                        lookup_facts(&l, &mut f);
                    }
                }
            }
        },
        None => f.notes.push(
            "the play carries no TMDB id: Radarr cannot be asked about it (only the play's own facts used)".into(),
        ),
    }

    // What the play itself said, where nothing better is known.
    let src = match play.source {
        PlaySource::Jellyfin => "webhook",
        PlaySource::PlexWebhook | PlaySource::PlexWebsocket | PlaySource::PlexHistory => "plex",
        PlaySource::Jellystat => "jellystat",
        PlaySource::Test => "test",
    };
    if f.genres.is_none() && !play.genres.is_empty() {
        f.genres = Some(Fact::new(play.genres.clone(), src));
    }
    if f.year.is_none() {
        f.year = play.year.map(|y| Fact::new(y, src));
    }
    if f.title.is_none() && !play.title.is_empty() {
        f.title = Some(Fact::new(play.title.clone(), src));
    }

    // Prowlarr's seeders, only when the rule is on.
    if t.min_seeders_rare > 0 {
        if let Some(p) = &sv.prowlarr {
            let title = f
                .title
                .as_ref()
                .map_or(play.title.as_str(), |t| t.value.as_str());
            let query = match f.year.as_ref() {
                Some(y) => format!("{title} {}", y.value),
                None => title.to_string(),
            };
            match p.best_seeders(&query) {
                Ok(Some(n)) => f.seeders = Some(Fact::new(n, "prowlarr")),
                Ok(None) => {
                    f.seeders = Some(Fact::new(0, "prowlarr"));
                    f.notes
                        .push(format!("Prowlarr found no release for {query:?}"));
                }
                Err(e) => f.notes.push(format!(
                    "Prowlarr unavailable ({e}): the seeder rule not applied"
                )),
            }
        }
    }

    // The watch count in the window.
    let since = play.at_ms.saturating_sub(u64::from(t.window_days) * DAY_MS);
    let year = f.year.as_ref().map(|y| y.value).or(play.year);
    let ours = match store.watch_count(&play.user, &ids, &play.title, year, since) {
        Ok(n) => n,
        Err(e) => {
            f.notes
                .push(format!("our watch history could not be read ({e:#})"));
            0
        }
    };
    let mut count = Fact::new(ours.max(1), "history");
    if let (Some(js), PlaySource::Jellyfin) = (&sv.jellystat, play.source) {
        match jellystat_count(js, play, movie.as_ref(), t.min_watched_percent, since) {
            Ok(Some(n)) if n > count.value => count = Fact::new(n, "jellystat"),
            Ok(Some(_)) => {}
            Ok(None) => f.notes.push(
                "Jellystat's plays not counted: the movie's runtime is unknown, so a full play cannot be told from a short one".into(),
            ),
            Err(e) => f.notes.push(format!("Jellystat unreachable ({e}): our own history used")),
        }
    }
    f.watch_count = Some(count);
    Ok((f, movie))
}

fn jellyfin_item(
    jf: &Jellyfin,
    play: &Play,
) -> Result<Option<crate::clients::jellyfin::JellyfinItem>, ServiceError> {
    let Some(uid) = jf.user_id(&play.user)? else {
        return Ok(None);
    };
    jf.item(&uid, &play.item_id)
}

/// Jellystat's plays of the item by the user in the window that lasted at least the
/// threshold share of the runtime (Jellystat keeps every play over a minute: a one-minute
/// look is not a watch). `None` when the runtime is unknown.
fn jellystat_count(
    js: &Jellystat,
    play: &Play,
    movie: Option<&Movie>,
    min_pct: f64,
    since_ms: u64,
) -> Result<Option<u32>, ServiceError> {
    let Some(runtime_s) = movie
        .and_then(|m| m.raw["runtime"].as_u64())
        .filter(|m| *m > 0)
        .map(|m| m * 60)
    else {
        return Ok(None);
    };
    let rows = js.item_history(&play.item_id)?;
    let need = runtime_s as f64 * min_pct / 100.0;
    let n = rows
        .iter()
        .filter(|r| {
            r.user.eq_ignore_ascii_case(&play.user)
                && r.at_ms >= since_ms
                && r.duration_s as f64 >= need
        })
        .count();
    Ok(Some(u32::try_from(n).unwrap_or(u32::MAX)))
}

/// Evaluates a play end to end without side effects: who played, whether the play counts,
/// and — only when it counts — the facts and the verdict. A play that does not count asks
/// nothing of Radarr.
pub fn evaluate(
    sv: &Services,
    store: &Store,
    s: &DownloadsSettings,
    play: &Play,
) -> Result<Evaluation, ServiceError> {
    let who = settings::who(s, &play.user, play.address);
    let t = settings::thresholds(s, &play.user);
    let counted = rules::counts(play, &who, &t);
    if let Err(why) = &counted {
        return Ok(Evaluation {
            who,
            counted: counted.clone(),
            facts: Facts::default(),
            verdict: Verdict {
                tier: super::Tier::Never,
                download: false,
                reasons: vec![why.clone()],
            },
            movie: None,
        });
    }
    let (facts, movie) = gather(sv, store, s, play)?;
    let verdict = rules::decide(play, &who, &facts, &t);
    Ok(Evaluation {
        who,
        counted,
        facts,
        verdict,
        movie,
    })
}

/// Whether Radarr's file is on local disk: `hasFile`, and not under a remote (debrid) root
/// folder nor carrying a remote tag.
fn is_local(m: &Movie, s: &DownloadsSettings, remote_tag_ids: &[u64]) -> bool {
    if !m.has_file {
        return false;
    }
    let under = |p: &str| {
        s.remote_root_folders.iter().any(|r| {
            let r = r.trim_end_matches('/');
            !r.is_empty() && (p == r || p.starts_with(&format!("{r}/")))
        })
    };
    let remote_folder =
        m.root_folder_path.as_deref().is_some_and(under) || m.path.as_deref().is_some_and(under);
    let remote_tag = m.tags.iter().any(|t| remote_tag_ids.contains(t));
    !remote_folder && !remote_tag
}

/// Why [`act`] could not finish: Radarr failed (the decision waits and is tried again), or
/// the store could not be read or written.
#[derive(Debug)]
pub enum ActError {
    Service(ServiceError),
    Store(String),
}

impl std::fmt::Display for ActError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ActError::Service(e) => write!(f, "{e}"),
            ActError::Store(e) => write!(f, "the store: {e}"),
        }
    }
}

impl std::error::Error for ActError {}

impl From<ServiceError> for ActError {
    fn from(e: ServiceError) -> ActError {
        ActError::Service(e)
    }
}

/// What [`act`] did, for the decision log and the status.
#[derive(Clone, Debug, PartialEq)]
pub struct Acted {
    /// The decision's new status.
    pub status: String,
    pub detail: Option<String>,
    pub radarr_id: Option<i64>,
    /// The `MoviesSearch` command Radarr took, to poll.
    pub command_id: Option<i64>,
}

/// Acts on a stored decision: nothing for a verdict that does not download; in dry-run mode
/// only says what it would do; otherwise (unless a search of this movie was sent within
/// `search_dedupe_days`) the keep tag and one `MoviesSearch` — or the add, when the movie is
/// missing and `add_missing` is on. The new status is written to the store; a Radarr failure
/// is `Err` with nothing written (the caller reschedules).
pub fn act(
    sv: &Services,
    store: &Store,
    s: &DownloadsSettings,
    decision_id: i64,
) -> Result<String, ActError> {
    act_detailed(sv, store, s, decision_id).map(|a| a.status)
}

/// [`act`], with what it did.
pub fn act_detailed(
    sv: &Services,
    store: &Store,
    s: &DownloadsSettings,
    decision_id: i64,
) -> Result<Acted, ActError> {
    let store_err = |e: anyhow::Error| ActError::Store(format!("{e:#}"));
    let Some(d) = store.download_decision(decision_id).map_err(store_err)? else {
        return Ok(Acted {
            status: "failed".into(),
            detail: Some(format!("decision {decision_id} is not in the store")),
            radarr_id: None,
            command_id: None,
        });
    };
    let done =
        |status: &str, detail: Option<String>, radarr_id: Option<i64>, command_id: Option<i64>| {
            store
                .set_download_status(decision_id, status, detail.as_deref(), radarr_id)
                .map_err(store_err)?;
            Ok(Acted {
                status: status.to_string(),
                detail,
                radarr_id,
                command_id,
            })
        };
    if !d.verdict.download {
        return done("no_download", None, None, None);
    }
    if d.play.kind != ItemKind::Movie {
        return done("no_download", Some("not a movie".into()), None, None);
    }
    let Some(tmdb) = d.play.ids.tmdb else {
        return done(
            "failed",
            Some("the play carries no TMDB id: Radarr cannot find the movie".into()),
            None,
            None,
        );
    };
    let now = unix_ms();
    let window = u64::from(s.search_dedupe_days) * DAY_MS;
    if let Some(at) = store.last_search(tmdb).map_err(store_err)? {
        if now.saturating_sub(at) < window {
            let days = now.saturating_sub(at) / DAY_MS;
            return done(
                "searched",
                Some(format!(
                    "already searched {days} day(s) ago: one search per movie per {} days",
                    s.search_dedupe_days
                )),
                None,
                None,
            );
        }
    }
    let movie = sv.radarr.movie_by_tmdb(tmdb)?;
    if s.dry_run {
        let what = match &movie {
            Some(m) => format!(
                "would tag {:?} and search Radarr movie {} ({})",
                s.keep_tag, m.id, m.title
            ),
            None if s.add_missing => format!("would add TMDB {tmdb} to Radarr and search it"),
            None => format!("TMDB {tmdb} is not in Radarr (downloads.add_missing is off)"),
        };
        return done(
            "dry_run",
            Some(format!("dry run: {what}")),
            movie.map(|m| m.id),
            None,
        );
    }
    let Some(m) = movie else {
        let (Some(qp), false) = (s.quality_profile_id, s.root_folder.trim().is_empty()) else {
            let why = if s.add_missing {
                "downloads.add_missing needs downloads.quality_profile_id and downloads.root_folder"
            } else {
                "downloads.add_missing is off"
            };
            return done(
                "failed",
                Some(format!("TMDB {tmdb} is not in Radarr ({why})")),
                None,
                None,
            );
        };
        if !s.add_missing {
            return done(
                "failed",
                Some(format!(
                    "TMDB {tmdb} is not in Radarr (downloads.add_missing is off)"
                )),
                None,
                None,
            );
        }
        let Some(lookup) = sv.radarr.lookup_tmdb(tmdb)? else {
            return done(
                "failed",
                Some(format!("Radarr's lookup does not know TMDB {tmdb}")),
                None,
                None,
            );
        };
        let keep = sv.radarr.ensure_tag(&s.keep_tag)?;
        let added = sv
            .radarr
            .add_movie(&lookup, qp, &s.root_folder, &[keep], true)?;
        store
            .record_search(tmdb, now, added.id, None)
            .map_err(store_err)?;
        return done(
            "searched",
            Some(format!(
                "added {} to Radarr (tag {:?}) with a search",
                added.title, s.keep_tag
            )),
            Some(added.id),
            None,
        );
    };
    let remote_tag_ids: Vec<u64> = if s.remote_tags.is_empty() || m.tags.is_empty() {
        Vec::new()
    } else {
        let labels: Vec<&str> = s.remote_tags.iter().map(String::as_str).collect();
        tag_ids(sv, &labels)?.into_iter().flatten().collect()
    };
    let keep = sv.radarr.ensure_tag(&s.keep_tag)?;
    if !m.tags.contains(&keep) {
        sv.radarr.add_tag(&m, keep)?;
    }
    if is_local(&m, s, &remote_tag_ids) {
        return done(
            "already_local",
            Some(format!(
                "{} has a local file: tagged {:?}, no search",
                m.title, s.keep_tag
            )),
            Some(m.id),
            None,
        );
    }
    let cmd = sv.radarr.search(&[m.id])?;
    store
        .record_search(tmdb, now, m.id, Some(cmd.id))
        .map_err(store_err)?;
    let status = if cmd.is_final() {
        if cmd.succeeded() {
            "searched"
        } else {
            "failed"
        }
    } else {
        "searching"
    };
    done(
        status,
        Some(format!(
            "MoviesSearch command {} for Radarr movie {} ({}): {}",
            cmd.id, m.id, m.title, cmd.status
        )),
        Some(m.id),
        Some(cmd.id),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn movie(has_file: bool, root: &str, tags: Vec<u64>) -> Movie {
        Movie {
            id: 1,
            tmdb_id: 550,
            imdb_id: None,
            title: "Fight Club".into(),
            year: Some(1999),
            has_file,
            tags,
            size_on_disk: 0,
            root_folder_path: Some(root.into()),
            path: Some(format!("{root}/Fight Club (1999)")),
            imdb_rating: None,
            imdb_votes: None,
            genres: vec![],
            original_language: None,
            edition: None,
            raw: serde_json::Value::Null,
        }
    }

    #[test]
    fn a_debrid_symlink_is_not_a_local_file() {
        let s = DownloadsSettings {
            remote_root_folders: vec!["/mnt/debrid/".into()],
            ..DownloadsSettings::default()
        };
        assert!(is_local(&movie(true, "/movies", vec![]), &s, &[]));
        assert!(!is_local(&movie(false, "/movies", vec![]), &s, &[]));
        assert!(!is_local(&movie(true, "/mnt/debrid", vec![]), &s, &[]));
        // A folder that only starts with the same letters is not under it.
        assert!(is_local(&movie(true, "/mnt/debrid2", vec![]), &s, &[]));
        assert!(!is_local(&movie(true, "/movies", vec![4]), &s, &[4]));
        assert!(is_local(&movie(true, "/movies", vec![5]), &s, &[4]));
    }
}
