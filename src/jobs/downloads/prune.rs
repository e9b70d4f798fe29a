//! The smart deletion report's rules (issue 13), pure: which of Radarr's movies are on local
//! disk (a file, not under a remote root folder nor carrying a remote tag: a debrid symlink
//! is not a download), and which local movies nobody watched in `prune.after_days` that no
//! rule keeps — the keep tag, the favourite tag, IMDb at or above `prune.keep_rating`, a play
//! or an addition to Radarr within those days. `downshiftarr downloads prune` gathers the
//! inputs and acts (cli/downloads_prune.rs); the weekly summary reads [`Rules::is_local`].

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::notify::utc as time;
use crate::clients::radarr::{Movie, Tag};
use crate::config::downloads::DownloadsSettings;

const DAY_MS: u64 = 86_400_000;

/// What the rules read, resolved from the settings and Radarr's tags.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rules {
    pub after_days: u32,
    pub keep_rating: f64,
    /// Tag ids (none when Radarr has no tag of that label).
    pub keep_tag: Option<u64>,
    pub favourite_tag: Option<u64>,
    pub remote_tags: BTreeSet<u64>,
    pub remote_roots: Vec<String>,
}

impl Rules {
    /// The settings' rules with the tag labels found in Radarr's tags (case-insensitively).
    pub fn new(s: &DownloadsSettings, tags: &[Tag]) -> Rules {
        let id = |label: &str| {
            let label = label.trim();
            (!label.is_empty())
                .then(|| {
                    tags.iter()
                        .find(|t| t.label.trim().eq_ignore_ascii_case(label))
                        .map(|t| t.id)
                })
                .flatten()
        };
        Rules {
            after_days: s.prune.after_days,
            keep_rating: s.prune.keep_rating,
            keep_tag: id(&s.keep_tag),
            favourite_tag: id(&s.favourite_tag),
            remote_tags: s.remote_tags.iter().filter_map(|l| id(l)).collect(),
            remote_roots: s.remote_root_folders.clone(),
        }
    }

    /// Whether a path lies under one of the remote root folders (whole path components:
    /// `/mnt/debrid` holds `/mnt/debrid/x`, not `/mnt/debrid2/x`).
    fn remote_path(&self, path: &str) -> bool {
        self.remote_roots.iter().any(|root| {
            let root = root.trim().trim_end_matches('/');
            !root.is_empty()
                && (path == root
                    || path
                        .strip_prefix(root)
                        .is_some_and(|rest| rest.starts_with('/')))
        })
    }

    /// A movie whose file is on local disk: Radarr has the file, and neither its root
    /// folder, its path nor its tags say it is a cloud symlink.
    pub fn is_local(&self, m: &Movie) -> bool {
        m.has_file
            && !m.tags.iter().any(|t| self.remote_tags.contains(t))
            && !m
                .root_folder_path
                .as_deref()
                .is_some_and(|p| self.remote_path(p))
            && !m.path.as_deref().is_some_and(|p| self.remote_path(p))
    }
}

/// A movie the report lists.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Entry {
    pub radarr_id: i64,
    pub tmdb: u64,
    pub title: String,
    pub year: Option<u32>,
    pub size_bytes: u64,
    /// Last played by anyone (unix ms), when our history has a play.
    pub last_played_ms: Option<u64>,
    /// Why it is kept (kept entries only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_because: Option<String>,
}

/// The report.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Plan {
    /// Would be deleted, largest first.
    pub prune: Vec<Entry>,
    pub total_bytes: u64,
    /// Local movies kept, with the reason.
    pub kept: Vec<Entry>,
    /// Movies without a local file (not downloaded, or streamed from the cloud).
    pub not_local: usize,
}

/// When Radarr added the movie (its `added`, RFC 3339), in unix ms.
fn added_ms(m: &Movie) -> Option<u64> {
    m.raw
        .get("added")
        .and_then(|v| v.as_str())
        .and_then(crate::clients::service::parse_time_ms)
}

/// The report over Radarr's movies and the last play of each (by TMDB id, from our
/// history; a movie absent from the map has never been played).
pub fn plan(
    movies: &[Movie],
    last_played: &BTreeMap<u64, u64>,
    rules: &Rules,
    now_ms: u64,
) -> Plan {
    let cutoff = now_ms.saturating_sub(u64::from(rules.after_days) * DAY_MS);
    let mut p = Plan::default();
    for m in movies {
        if !rules.is_local(m) {
            p.not_local += 1;
            continue;
        }
        let last = last_played.get(&m.tmdb_id).copied();
        let keep = if rules.keep_tag.is_some_and(|t| m.tags.contains(&t)) {
            Some("keep tag".to_string())
        } else if rules.favourite_tag.is_some_and(|t| m.tags.contains(&t)) {
            Some("favourite tag".to_string())
        } else if let Some(r) = m.imdb_rating.filter(|&r| r >= rules.keep_rating) {
            Some(format!("IMDb {r:.1} ≥ {:.1}", rules.keep_rating))
        } else if let Some(at) = last.filter(|&at| at >= cutoff) {
            Some(format!("watched {}", time(at)))
        } else {
            added_ms(m).filter(|&at| at >= cutoff).map(|at| {
                format!(
                    "added {} (less than {} days ago)",
                    time(at),
                    rules.after_days
                )
            })
        };
        let e = Entry {
            radarr_id: m.id,
            tmdb: m.tmdb_id,
            title: m.title.clone(),
            year: m.year,
            size_bytes: m.size_on_disk,
            last_played_ms: last,
            kept_because: keep.clone(),
        };
        if keep.is_some() {
            p.kept.push(e);
        } else {
            p.total_bytes = p.total_bytes.saturating_add(e.size_bytes);
            p.prune.push(e);
        }
    }
    p.prune.sort_by(|a, b| {
        b.size_bytes
            .cmp(&a.size_bytes)
            .then_with(|| a.title.cmp(&b.title))
    });
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_764_000_000_000; // 2025-11-24T16:00:00Z

    fn movie(id: i64, title: &str) -> Movie {
        Movie {
            id,
            tmdb_id: 1000 + id as u64,
            imdb_id: None,
            title: title.into(),
            year: Some(2000),
            has_file: true,
            tags: Vec::new(),
            size_on_disk: 1_000_000_000 * id as u64,
            root_folder_path: Some("/movies".into()),
            path: Some(format!("/movies/{title} (2000)")),
            imdb_rating: Some(6.5),
            imdb_votes: Some(1000),
            genres: Vec::new(),
            original_language: None,
            edition: None,
            raw: json!({"added": "2020-01-01T00:00:00Z"}),
        }
    }

    fn rules() -> Rules {
        Rules {
            after_days: 180,
            keep_rating: 8.5,
            keep_tag: Some(1),
            favourite_tag: Some(2),
            remote_tags: [3].into(),
            remote_roots: vec!["/mnt/debrid/".into()],
        }
    }

    #[test]
    fn only_unwatched_local_movies_no_rule_keeps_are_listed_largest_first() {
        let mut ms: Vec<Movie> = (1..=10).map(|i| movie(i, &format!("M{i}"))).collect();
        ms[0].tags = vec![1]; // keep tag
        ms[1].tags = vec![2]; // favourite
        ms[2].imdb_rating = Some(8.5); // high rated
        ms[3].tags = vec![3]; // remote by tag
        ms[4].root_folder_path = Some("/mnt/debrid".into()); // remote by root
        ms[5].has_file = false; // not downloaded
        ms[6].raw = json!({"added": "2025-11-01T00:00:00Z"}); // added recently
                                                              // ms[7] watched recently, ms[8] watched long ago, ms[9] never.
        let last = BTreeMap::from([
            (ms[7].tmdb_id, NOW - 10 * DAY_MS),
            (ms[8].tmdb_id, NOW - 200 * DAY_MS),
        ]);
        let p = plan(&ms, &last, &rules(), NOW);
        let titles: Vec<&str> = p.prune.iter().map(|e| e.title.as_str()).collect();
        assert_eq!(titles, ["M10", "M9"]);
        assert_eq!(p.total_bytes, 19_000_000_000);
        assert_eq!(p.prune[1].last_played_ms, Some(NOW - 200 * DAY_MS));
        assert_eq!(p.not_local, 3);
        let kept: Vec<(&str, &str)> = p
            .kept
            .iter()
            .map(|e| (e.title.as_str(), e.kept_because.as_deref().unwrap()))
            .collect();
        assert_eq!(
            kept,
            [
                ("M1", "keep tag"),
                ("M2", "favourite tag"),
                ("M3", "IMDb 8.5 ≥ 8.5"),
                ("M7", "added 2025-11-01T00:00:00Z (less than 180 days ago)"),
                ("M8", "watched 2025-11-14T16:00:00Z"),
            ]
        );
    }

    #[test]
    fn remote_roots_match_whole_path_components() {
        let r = rules();
        let mut m = movie(1, "A");
        m.root_folder_path = Some("/mnt/debrid2".into());
        m.path = Some("/mnt/debrid2/A".into());
        assert!(r.is_local(&m));
        m.path = Some("/mnt/debrid/A".into());
        assert!(!r.is_local(&m));
    }

    #[test]
    fn tags_are_found_by_label_in_any_case() {
        let s = DownloadsSettings {
            remote_tags: vec!["Debrid".into(), "missing".into()],
            ..DownloadsSettings::default()
        };
        let tags = vec![
            Tag {
                id: 7,
                label: "KEEP".into(),
            },
            Tag {
                id: 9,
                label: "debrid".into(),
            },
        ];
        let r = Rules::new(&s, &tags);
        assert_eq!(r.keep_tag, Some(7));
        assert_eq!(r.favourite_tag, None);
        assert_eq!(r.remote_tags, [9].into());
    }
}
