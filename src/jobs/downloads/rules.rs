//! The rule engine (pure): does a play count, and which tier, with every reason.

use super::settings::{Thresholds, Who};
use super::{Facts, ItemKind, Play, Tier, Verdict};

/// Does this play count at all (kind, percent ≥ threshold, who)? Err(reason) when not.
pub fn counts(play: &Play, who: &Who, t: &Thresholds) -> Result<(), String> {
    match play.kind {
        ItemKind::Movie => {}
        ItemKind::Episode => {
            return Err("a TV episode: never downloads (Radarr is for movies)".into())
        }
        ItemKind::Other => return Err("not a movie or an episode".into()),
    }
    if let Who::Guest(why) = who {
        return Err(format!("guest: {why}"));
    }
    if play.percent < t.min_watched_percent {
        return Err(format!(
            "watched {:.0}% < {:.0}%: not a full play",
            play.percent, t.min_watched_percent
        ));
    }
    Ok(())
}

fn has(list: &[String], g: &str) -> bool {
    list.iter().any(|x| x.eq_ignore_ascii_case(g.trim()))
}

/// The tier and every reason. `facts.watch_count` includes this play.
pub fn decide(play: &Play, who: &Who, facts: &Facts, t: &Thresholds) -> Verdict {
    let never = |reasons: Vec<String>| Verdict {
        tier: Tier::Never,
        download: false,
        reasons,
    };
    if let Who::Guest(why) = who {
        return never(vec![format!("guest: {why}")]);
    }
    if play.kind != ItemKind::Movie {
        return never(vec!["not a movie: never downloads".into()]);
    }
    let rating = facts.imdb_rating.as_ref();
    let mut instant = Vec::new();
    if let Some(r) = rating.filter(|r| r.value >= t.instant_rating) {
        instant.push(format!(
            "IMDb {:.1} ≥ {:.1} ({})",
            r.value, t.instant_rating, r.source
        ));
    }
    let title = facts
        .title
        .as_ref()
        .map_or(play.title.as_str(), |f| f.value.as_str())
        .to_lowercase();
    let edition = facts
        .edition
        .as_ref()
        .map(|e| e.value.to_lowercase())
        .unwrap_or_default();
    for k in &t.keywords {
        let k = k.trim().to_lowercase();
        if !k.is_empty() && (title.contains(&k) || edition.contains(&k)) {
            instant.push(format!("rare edition: \"{k}\" in the title or edition"));
        }
    }
    if let (Some(y), Some(l)) = (facts.year.as_ref(), facts.original_language.as_ref()) {
        if y.value < t.old_foreign_before_year && !l.value.eq_ignore_ascii_case("english") {
            instant.push(format!(
                "{} film in {} (before {}, not English)",
                y.value, l.value, t.old_foreign_before_year
            ));
        }
    }
    if let (Some(r), Some(v)) = (rating, facts.imdb_votes.as_ref()) {
        if r.value >= t.gem_rating && v.value < t.gem_max_votes {
            instant.push(format!(
                "hidden gem: IMDb {:.1} ≥ {:.1} with {} votes < {} ({})",
                r.value, t.gem_rating, v.value, t.gem_max_votes, v.source
            ));
        }
    }
    if let Some(g) = facts.genres.as_ref() {
        for x in &g.value {
            if has(&t.rare_genres, x) {
                instant.push(format!("rare genre {x} ({})", g.source));
            }
            if has(&t.instant_genres, x) {
                instant.push(format!("genre {x} downloads at once ({})", g.source));
            }
        }
    }
    if facts.favourite.as_ref().is_some_and(|f| f.value) {
        instant.push("marked favourite in Radarr".into());
    }
    if let Some(s) = facts.seeders.as_ref().filter(|_| t.min_seeders_rare > 0) {
        if s.value < t.min_seeders_rare {
            instant.push(format!(
                "rare: {} seeders < {} ({})",
                s.value, t.min_seeders_rare, s.source
            ));
        }
    }
    if !instant.is_empty() {
        return Verdict {
            tier: Tier::Instant,
            download: true,
            reasons: instant,
        };
    }
    let Some(r) = rating else {
        return never(vec![
            "no IMDb rating known: the rewatch tier needs one".into()
        ]);
    };
    if r.value < t.rewatch_min_rating {
        return never(vec![format!(
            "IMDb {:.1} < {:.1} ({})",
            r.value, t.rewatch_min_rating, r.source
        )]);
    }
    let (n, src) = facts
        .watch_count
        .as_ref()
        .map_or((1, "history".to_string()), |c| (c.value, c.source.clone()));
    let mut reasons = vec![format!(
        "IMDb {:.1} in {:.1}–{:.1} ({})",
        r.value, t.rewatch_min_rating, t.instant_rating, r.source
    )];
    let download = n >= t.watch_count_threshold;
    reasons.push(format!(
        "watched {n} time(s) in {} days {} {} ({src})",
        t.window_days,
        if download { "≥" } else { "<" },
        t.watch_count_threshold
    ));
    Verdict {
        tier: Tier::AfterRewatch,
        download,
        reasons,
    }
}
