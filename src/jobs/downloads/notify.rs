//! What the downloads job tells the owner (issue 13, "Notifications"): the "download
//! triggered" message after a decision that downloads, and the weekly summary — the
//! downloads of the week and an estimate of the disk space streaming saved. Pure text
//! builders over plain data; the run loop posts them through `clients::notify` and keeps
//! when the last summary went out (`weekly_due`).
//!
//! The estimate of space saved: the original design's claim is "about 70 % of disk saved
//! versus downloading everything". We estimate it per week as the sum of Radarr's
//! `sizeOnDisk` of the distinct movies played that week that were NOT downloaded (streamed
//! from the debrid cloud instead): what downloading everything watched would have put on
//! disk, by Radarr's own numbers. A movie Radarr reports no size for (no file yet, or not in
//! Radarr) is counted apart as "size unknown", never as 0 bytes saved silently. Movies that
//! were already local are neither downloads nor savings.
//!
//! Messages are bounded (Discord takes 2,000 characters): long lists end with "… and N more".
//!
//! The run loop calls [`on_download`] after each decision that downloads and [`weekly_tick`]
//! on each pass (it keeps its own schedule in `job_state`).

use std::collections::BTreeMap;

use super::{Play, Verdict};
use crate::clients::radarr::{Movie, Radarr};
use crate::clients::service::ServiceError;
use crate::config::downloads::{DownloadsSettings, NotifySettings};
use crate::store::downloads::DownloadDecision;
use crate::store::Store;

/// The `job_state` job and keys of the weekly summary: when it was last sent, last tried.
pub const STATE_JOB: &str = "downloads";
pub const STATE_WEEKLY_SENT: &str = "notify.weekly_sent_ms";
pub const STATE_WEEKLY_TRIED: &str = "notify.weekly_tried_ms";
/// A summary that could not be sent is tried again this much later.
pub const WEEKLY_RETRY_MS: u64 = 3_600_000;
/// The most decisions one summary reads.
const WEEK_MAX_DECISIONS: usize = 10_000;

/// A week, in milliseconds.
pub const WEEK_MS: u64 = 7 * 86_400_000;

/// The longest body we send (Discord's `content` limit is 2,000 characters, title included).
pub const MAX_BODY_CHARS: usize = 1_750;

/// Most entries listed per kind in the weekly summary.
const MAX_LISTED: usize = 10;

/// A notification: a title (ntfy's `Title`, Apprise's `title`, Discord's first line) and a
/// body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub title: String,
    pub body: String,
}

/// "Title (Year)", or the title alone.
pub fn label(title: &str, year: Option<u32>) -> String {
    let title = title.trim();
    let title = if title.is_empty() {
        "(untitled)"
    } else {
        title
    };
    match year {
        Some(y) => format!("{title} ({y})"),
        None => title.to_string(),
    }
}

/// The message after a decision that downloads (the original's "DOWNLOAD TRIGGERED …
/// Reason: …" log line, as a notification). `dry_run`: the job only decided.
pub fn triggered(play: &Play, verdict: &Verdict, dry_run: bool) -> Message {
    let name = label(&play.title, play.year);
    let title = if dry_run {
        format!("Download would be triggered (dry run): {name}")
    } else {
        format!("Download triggered: {name}")
    };
    let mut body = format!(
        "{name} — tier {}, watched {:.0}% by {} ({})",
        verdict.tier.as_str(),
        play.percent.clamp(0.0, 100.0),
        if play.user.trim().is_empty() {
            "?"
        } else {
            play.user.trim()
        },
        play.source.as_str()
    );
    if !verdict.reasons.is_empty() {
        body.push_str("\nReason: ");
        body.push_str(&verdict.reasons.join("; "));
    }
    if dry_run {
        body.push_str("\nDry run (downloads.dry_run): nothing was sent to Radarr.");
    }
    Message {
        title: bounded(title, 200),
        body: bounded(body, MAX_BODY_CHARS),
    }
}

/// Whether the weekly summary is due: never sent (`last_sent_ms` 0), or a week has passed.
/// A stamp far in the future (a clock that jumped back, a corrupt record) does not silence
/// the summary for ever: more than a week ahead of `now_ms` is due too.
pub fn weekly_due(last_sent_ms: u64, now_ms: u64) -> bool {
    last_sent_ms == 0
        || now_ms.saturating_sub(last_sent_ms) >= WEEK_MS
        || last_sent_ms.saturating_sub(now_ms) > WEEK_MS
}

/// What became of a movie played in the week.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// A download was triggered (searching, searched, or waiting for Radarr).
    Downloaded,
    /// Would have downloaded (`downloads.dry_run`).
    WouldDownload,
    /// Decided to download, but Radarr refused for good.
    Failed,
    /// Played, not downloaded: streamed from the cloud.
    Streamed,
    /// Already on local disk: neither a download nor a saving.
    AlreadyLocal,
}

/// One play of the week, as the summary reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct WeekPlay {
    pub title: String,
    pub year: Option<u32>,
    /// The movie's TMDB id: plays of one movie count once (by title and year without it).
    pub tmdb: Option<u64>,
    pub outcome: Outcome,
    /// The first reason of the verdict ("IMDb 8.7 ≥ 8.5 (radarr)").
    pub reason: Option<String>,
    /// Radarr's `sizeOnDisk` of the movie; `None` or 0: unknown.
    pub size_bytes: Option<u64>,
}

/// `2026-12-04T09:00:00Z`: a unix-ms time to the second, UTC.
pub fn utc(ms: u64) -> String {
    let t = downshiftarr_shim::record::rfc3339(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
    );
    match t.get(..19) {
        Some(head) => format!("{head}Z"),
        None => t,
    }
}

/// Bytes, readable: `1.5 GB` (decimal units, as Radarr shows them).
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The weekly summary over the plays of the week (`from_ms`..`to_ms`, for the header).
/// A movie played several times counts once, with its best outcome (downloaded wins over
/// streamed).
pub fn weekly_summary(plays: &[WeekPlay], from_ms: u64, to_ms: u64) -> Message {
    // One entry per movie: the best outcome wins (the enum's order).
    let mut movies: BTreeMap<String, WeekPlay> = BTreeMap::new();
    for p in plays {
        let key = match p.tmdb {
            Some(t) => format!("tmdb:{t}"),
            None => format!("title:{}|{:?}", p.title.trim().to_lowercase(), p.year),
        };
        match movies.get_mut(&key) {
            Some(have) if p.outcome < have.outcome => {
                let size = have.size_bytes.or(p.size_bytes);
                *have = p.clone();
                have.size_bytes = have.size_bytes.or(size);
            }
            Some(have) => have.size_bytes = have.size_bytes.or(p.size_bytes),
            None => {
                movies.insert(key, p.clone());
            }
        }
    }
    let of =
        |o: Outcome| -> Vec<&WeekPlay> { movies.values().filter(|m| m.outcome == o).collect() };
    let downloaded = of(Outcome::Downloaded);
    let would = of(Outcome::WouldDownload);
    let failed = of(Outcome::Failed);
    let streamed = of(Outcome::Streamed);
    let saved: u64 = streamed
        .iter()
        .filter_map(|m| m.size_bytes)
        .fold(0u64, |a, b| a.saturating_add(b));
    let unknown = streamed
        .iter()
        .filter(|m| m.size_bytes.unwrap_or(0) == 0)
        .count();

    let title = format!(
        "Downloads this week: {} downloaded, ~{} saved by streaming",
        downloaded.len(),
        human_bytes(saved)
    );
    let day = |ms: u64| utc(ms).get(..10).unwrap_or_default().to_string();
    let mut body = format!("Week {} → {}\n", day(from_ms), day(to_ms));
    let mut list = |head: String, items: &[&WeekPlay], with_size: bool| {
        if items.is_empty() {
            return;
        }
        body.push_str(&head);
        body.push('\n');
        for m in items.iter().take(MAX_LISTED) {
            let mut l = format!("- {}", label(&m.title, m.year));
            if with_size {
                match m.size_bytes.filter(|&b| b > 0) {
                    Some(b) => l.push_str(&format!(" — {}", human_bytes(b))),
                    None => l.push_str(" — size unknown"),
                }
            } else if let Some(r) = &m.reason {
                l.push_str(&format!(" — {r}"));
            }
            body.push_str(&l);
            body.push('\n');
        }
        if items.len() > MAX_LISTED {
            body.push_str(&format!("… and {} more\n", items.len() - MAX_LISTED));
        }
    };
    list(
        format!("Downloaded ({}):", downloaded.len()),
        &downloaded,
        false,
    );
    list(
        format!("Would have downloaded, dry run ({}):", would.len()),
        &would,
        false,
    );
    list(
        format!("Download failed in Radarr ({}):", failed.len()),
        &failed,
        false,
    );
    list(
        format!(
            "Streamed, not downloaded ({}): ~{} kept off the disk{}",
            streamed.len(),
            human_bytes(saved),
            if unknown > 0 {
                format!(" ({unknown} of unknown size)")
            } else {
                String::new()
            }
        ),
        &streamed,
        true,
    );
    if movies.is_empty() {
        body.push_str("No plays counted this week.\n");
    }
    body.push_str("(Space saved: Radarr's sizeOnDisk of the movies played and not downloaded.)");
    Message {
        title,
        body: bounded(body, MAX_BODY_CHARS),
    }
}

/// The week's decisions as the summary reads them: what became of each play (by the
/// decision's status), with Radarr's `sizeOnDisk` of the movie (`movies`, matched by TMDB
/// id). `is_local`: the movie's file is on local disk (not a cloud symlink) — a play of a
/// movie already local is no saving.
pub fn week_plays(
    decisions: &[DownloadDecision],
    movies: &[Movie],
    is_local: impl Fn(&Movie) -> bool,
) -> Vec<WeekPlay> {
    let by_tmdb: BTreeMap<u64, &Movie> = movies.iter().map(|m| (m.tmdb_id, m)).collect();
    decisions
        .iter()
        .map(|d| {
            let movie = d.play.ids.tmdb.and_then(|t| by_tmdb.get(&t).copied());
            let outcome = match d.status.as_str() {
                "dry_run" => Outcome::WouldDownload,
                "already_local" => Outcome::AlreadyLocal,
                "failed" if d.verdict.download => Outcome::Failed,
                _ if d.verdict.download => Outcome::Downloaded,
                _ if movie.is_some_and(&is_local) => Outcome::AlreadyLocal,
                _ => Outcome::Streamed,
            };
            WeekPlay {
                title: d.play.title.clone(),
                year: d.play.year,
                tmdb: d.play.ids.tmdb,
                outcome,
                reason: d.verdict.reasons.first().cloned(),
                size_bytes: movie.map(|m| m.size_on_disk).filter(|&b| b > 0),
            }
        })
        .collect()
}

/// Posts a message to `downloads.notify.url` (nothing when it is empty: `Ok(false)`).
pub fn send(n: &NotifySettings, m: &Message, timeout_ms: u64) -> Result<bool, ServiceError> {
    let url = n.url.expose().trim();
    if url.is_empty() {
        return Ok(false);
    }
    crate::clients::notify::post(url, &n.kind, &m.title, &m.body, timeout_ms)?;
    Ok(true)
}

/// The run loop's call after a decision that downloads: the "download triggered" message to
/// `downloads.notify.url` (`Ok(false)`: no URL). A failure is the caller's to log: the
/// download itself does not wait for a notification.
pub fn on_download(
    s: &DownloadsSettings,
    play: &Play,
    verdict: &Verdict,
) -> Result<bool, ServiceError> {
    send(
        &s.notify,
        &triggered(play, verdict, s.dry_run),
        s.request_timeout_ms,
    )
}

/// The run loop's weekly step, cheap to call on every pass: when `notify.weekly_summary` is
/// on, a URL is set and the summary is due ([`weekly_due`] on the stored time), reads the
/// week's decisions from the store and Radarr's library (sizes, tags), posts the summary and
/// stores when. `Ok(true)`: sent. A failure (Radarr, the webhook, the store) is returned and
/// tried again [`WEEKLY_RETRY_MS`] later; it is never recorded as sent.
pub fn weekly_tick(
    store: &Store,
    radarr: &Radarr,
    s: &DownloadsSettings,
    now_ms: u64,
) -> anyhow::Result<bool> {
    if !s.notify.weekly_summary || s.notify.url.expose().trim().is_empty() {
        return Ok(false);
    }
    let sent: u64 = store.state_get(STATE_JOB, STATE_WEEKLY_SENT)?.unwrap_or(0);
    if !weekly_due(sent, now_ms) {
        return Ok(false);
    }
    let tried: u64 = store.state_get(STATE_JOB, STATE_WEEKLY_TRIED)?.unwrap_or(0);
    if tried > sent && tried <= now_ms && now_ms - tried < WEEKLY_RETRY_MS {
        return Ok(false);
    }
    store.state_put(STATE_JOB, STATE_WEEKLY_TRIED, &now_ms)?;
    let from = now_ms.saturating_sub(WEEK_MS);
    let decisions = store.download_decisions(from, WEEK_MAX_DECISIONS)?;
    let radarr_err = |e: ServiceError| anyhow::anyhow!("weekly summary not sent: {e}");
    let movies = radarr.movies().map_err(radarr_err)?;
    let tags = radarr.tags().map_err(radarr_err)?;
    let rules = super::prune::Rules::new(s, &tags);
    let plays = week_plays(&decisions, &movies, |m| rules.is_local(m));
    let msg = weekly_summary(&plays, from, now_ms);
    send(&s.notify, &msg, s.request_timeout_ms)
        .map_err(|e| anyhow::anyhow!("weekly summary not sent: {e}"))?;
    store.state_put(STATE_JOB, STATE_WEEKLY_SENT, &now_ms)?;
    Ok(true)
}

/// `s` cut to at most `max` characters (on a character boundary), ending with "…" when cut.
fn bounded(s: String, max: usize) -> String {
    if s.chars().count() <= max {
        return s;
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::downloads::{Ids, ItemKind, PlaySource, Tier};

    fn play() -> Play {
        Play {
            source: PlaySource::Jellyfin,
            at_ms: 1_764_000_000_000,
            user: "alice".into(),
            address: None,
            kind: ItemKind::Movie,
            title: "Paprika".into(),
            year: Some(2006),
            ids: Ids {
                tmdb: Some(4977),
                ..Ids::default()
            },
            item_id: "abc".into(),
            percent: 97.4,
            genres: vec!["Animation".into()],
            client: None,
        }
    }

    fn verdict() -> Verdict {
        Verdict {
            tier: Tier::Instant,
            download: true,
            reasons: vec![
                "genre Animation is an instant genre (jellyfin)".into(),
                "IMDb 7.7 (radarr)".into(),
            ],
        }
    }

    #[test]
    fn the_triggered_message_names_the_movie_the_tier_the_user_and_every_reason() {
        let m = triggered(&play(), &verdict(), false);
        assert_eq!(m.title, "Download triggered: Paprika (2006)");
        assert_eq!(
            m.body,
            "Paprika (2006) — tier instant, watched 97% by alice (jellyfin)\n\
             Reason: genre Animation is an instant genre (jellyfin); IMDb 7.7 (radarr)"
        );
        let m = triggered(&play(), &verdict(), true);
        assert!(m.title.starts_with("Download would be triggered (dry run)"));
        assert!(
            m.body.ends_with("nothing was sent to Radarr."),
            "{}",
            m.body
        );
    }

    #[test]
    fn a_hostile_title_or_reason_list_stays_bounded() {
        let mut p = play();
        p.title = "x".repeat(10_000);
        let mut v = verdict();
        v.reasons = vec!["é".repeat(5_000); 10];
        let m = triggered(&p, &v, false);
        assert!(m.title.chars().count() <= 200);
        assert_eq!(m.body.chars().count(), MAX_BODY_CHARS);
        assert!(m.body.ends_with('…'));
    }

    #[test]
    fn weekly_is_due_after_a_week_never_before_and_survives_a_clock_jump() {
        let now = 1_764_000_000_000;
        assert!(weekly_due(0, now), "never sent");
        assert!(!weekly_due(now - 1000, now));
        assert!(!weekly_due(now - WEEK_MS + 1, now));
        assert!(weekly_due(now - WEEK_MS, now));
        assert!(!weekly_due(now + 3_600_000, now), "a little ahead: wait");
        assert!(weekly_due(now + WEEK_MS + 1, now), "far ahead: nonsense");
    }

    fn wp(title: &str, tmdb: u64, outcome: Outcome, size: Option<u64>) -> WeekPlay {
        WeekPlay {
            title: title.into(),
            year: Some(2000),
            tmdb: Some(tmdb),
            outcome,
            reason: Some(format!("reason for {title}")),
            size_bytes: size,
        }
    }

    #[test]
    fn the_weekly_summary_counts_movies_once_and_sums_what_streaming_saved() {
        let plays = vec![
            wp("Alpha", 1, Outcome::Streamed, Some(4_000_000_000)),
            wp("Alpha", 1, Outcome::Streamed, Some(4_000_000_000)),
            wp("Beta", 2, Outcome::Streamed, Some(2_500_000_000)),
            // Streamed once, then downloaded after the rewatch: a download, not a saving.
            wp("Gamma", 3, Outcome::Streamed, Some(9_000_000_000)),
            wp("Gamma", 3, Outcome::Downloaded, None),
            wp("Delta", 4, Outcome::Streamed, None),
            wp("Local", 5, Outcome::AlreadyLocal, Some(7_000_000_000)),
        ];
        let m = weekly_summary(&plays, 1_763_395_200_000, 1_764_000_000_000);
        assert_eq!(
            m.title,
            "Downloads this week: 1 downloaded, ~6.5 GB saved by streaming"
        );
        for want in [
            "Week 2025-11-17 → 2025-11-24\n",
            "Downloaded (1):\n- Gamma (2000) — reason for Gamma\n",
            "Streamed, not downloaded (3): ~6.5 GB kept off the disk (1 of unknown size)\n",
            "- Alpha (2000) — 4.0 GB\n- Beta (2000) — 2.5 GB\n- Delta (2000) — size unknown\n",
        ] {
            assert!(m.body.contains(want), "{want:?} not in\n{}", m.body);
        }
        assert!(!m.body.contains("Local"), "{}", m.body);
        assert!(!m.body.contains("dry run"), "{}", m.body);
    }

    #[test]
    fn an_empty_week_and_a_long_week_read_well() {
        let m = weekly_summary(&[], 0, WEEK_MS);
        assert_eq!(
            m.title,
            "Downloads this week: 0 downloaded, ~0 B saved by streaming"
        );
        assert!(m.body.contains("No plays counted this week."));
        let plays: Vec<WeekPlay> = (0..500)
            .map(|i| wp(&format!("Movie {i}"), i, Outcome::Streamed, Some(1_000_000)))
            .collect();
        let m = weekly_summary(&plays, 0, WEEK_MS);
        assert!(m.body.contains("… and 490 more"), "{}", m.body);
        assert!(m.body.contains("~500.0 MB kept off the disk"), "{}", m.body);
        assert!(m.body.chars().count() <= MAX_BODY_CHARS);
    }

    #[test]
    fn bytes_read_as_people_write_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500), "1.5 KB");
        assert_eq!(human_bytes(42_100_000_000), "42.1 GB");
        assert_eq!(human_bytes(u64::MAX), "18446744.1 TB");
    }

    fn decision(id: i64, tmdb: u64, status: &str, download: bool) -> DownloadDecision {
        let mut p = play();
        p.title = format!("Movie {tmdb}");
        p.ids.tmdb = Some(tmdb);
        DownloadDecision {
            id,
            at_ms: 1,
            play: p,
            verdict: Verdict {
                tier: if download { Tier::Instant } else { Tier::Never },
                download,
                reasons: vec![format!("why {tmdb}")],
            },
            facts: Default::default(),
            status: status.into(),
            detail: None,
            radarr_id: None,
        }
    }

    fn radarr_movie(tmdb: u64, size: u64, local: bool) -> Movie {
        let v = serde_json::json!({"id": tmdb, "tmdbId": tmdb, "title": format!("Movie {tmdb}"),
            "hasFile": local, "sizeOnDisk": size});
        Movie::from_json(&v).unwrap()
    }

    #[test]
    fn decisions_become_week_plays_by_status_with_radarr_sizes() {
        let ds = vec![
            decision(1, 1, "searched", true),
            decision(2, 2, "retrying", true),
            decision(3, 3, "dry_run", true),
            decision(4, 4, "failed", true),
            decision(5, 5, "no_download", false),
            decision(6, 6, "already_local", true),
            decision(7, 7, "no_download", false),
            decision(8, 8, "no_download", false),
        ];
        let movies = vec![
            radarr_movie(5, 3_000_000_000, false),
            radarr_movie(7, 5_000_000_000, true),
        ];
        let w = week_plays(&ds, &movies, |m| m.has_file);
        let got: Vec<(u64, Outcome, Option<u64>)> = w
            .iter()
            .map(|p| (p.tmdb.unwrap(), p.outcome, p.size_bytes))
            .collect();
        assert_eq!(
            got,
            [
                (1, Outcome::Downloaded, None),
                (2, Outcome::Downloaded, None),
                (3, Outcome::WouldDownload, None),
                (4, Outcome::Failed, None),
                (5, Outcome::Streamed, Some(3_000_000_000)),
                (6, Outcome::AlreadyLocal, None),
                (7, Outcome::AlreadyLocal, Some(5_000_000_000)),
                (8, Outcome::Streamed, None),
            ]
        );
        assert_eq!(w[0].reason.as_deref(), Some("why 1"));
    }

    #[test]
    fn nothing_is_sent_without_a_url() {
        let n = NotifySettings::default();
        let m = Message {
            title: "t".into(),
            body: "b".into(),
        };
        assert!(!send(&n, &m, 100).unwrap());
    }
}
