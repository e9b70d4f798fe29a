//! The rule engine: the original design's tiers over plain data, no I/O.
//!
//! - **instant** (download after the first play): IMDb ≥ `instant_rating`; a keyword in the
//!   title or edition; released before `old_foreign_before_year` in a language other than
//!   English; a hidden gem (IMDb ≥ `gem_rating` with fewer than `gem_max_votes` votes); a rare
//!   genre; the owner's favourite tag; an instant genre (Family, Animation); fewer seeders than
//!   `min_seeders_rare` when that rule is on and the count is known.
//! - **after_rewatch**: `rewatch_min_rating` ≤ IMDb < `instant_rating`; downloads once watched
//!   `watch_count_threshold` times in the window (this play included). An unknown rating is
//!   not a low one: it is said, and decided as after-rewatch (the rewatch shows it is loved).
//! - **never**: IMDb < `rewatch_min_rating` with no instant rule, TV episodes and other
//!   non-movies, guests, plays under `min_watched_percent`.
//!
//! Every reason is a plain sentence naming the fact's source (`IMDb 8.7 ≥ 8.5 (radarr)`), so
//! the decision log and `downloads explain` can show why without more work.

use super::settings::{Thresholds, Who};
use super::{Fact, Facts, ItemKind, Play, Tier, Verdict};

/// Does this play count at all (kind, percent ≥ threshold, who)? `Err(reason)` when not.
pub fn counts(play: &Play, who: &Who, t: &Thresholds) -> Result<(), String> {
    match play.kind {
        ItemKind::Movie => {}
        ItemKind::Episode => return Err("a TV episode: only movies download".into()),
        ItemKind::Other => {
            return Err(
                "not a movie (a trailer, music video or other): only movies download".into(),
            )
        }
    }
    if let Who::Guest(why) = who {
        return Err(format!("guest: {why}"));
    }
    if !(play.percent.is_finite() && play.percent >= t.min_watched_percent) {
        return Err(format!(
            "played {} % < {} % (min_watched_percent; {})",
            num(play.percent),
            num(t.min_watched_percent),
            play.source.as_str()
        ));
    }
    Ok(())
}

/// The tier and every reason. `facts.watch_count` includes this play. Never/TV/guests →
/// `download = false`.
pub fn decide(play: &Play, who: &Who, facts: &Facts, t: &Thresholds) -> Verdict {
    if let Err(why) = counts(play, who, t) {
        return Verdict {
            tier: Tier::Never,
            download: false,
            reasons: vec![why],
        };
    }
    let instant = instant_reasons(play, facts, t);
    if !instant.is_empty() {
        return Verdict {
            tier: Tier::Instant,
            download: true,
            reasons: instant,
        };
    }
    let mut reasons = Vec::new();
    match &facts.imdb_rating {
        Some(r) if r.value < t.rewatch_min_rating => {
            reasons.push(format!(
                "IMDb {} < {} ({}): never downloads",
                num(r.value),
                num(t.rewatch_min_rating),
                r.source
            ));
            return Verdict {
                tier: Tier::Never,
                download: false,
                reasons,
            };
        }
        Some(r) => reasons.push(format!(
            "IMDb {} is within {}–{} ({}): downloads after {} plays in {} days",
            num(r.value),
            num(t.rewatch_min_rating),
            num(t.instant_rating),
            r.source,
            t.watch_count_threshold,
            t.window_days
        )),
        None => reasons.push(format!(
            "IMDb rating unknown (no source had it): not read as low; downloads after {} plays \
             in {} days",
            t.watch_count_threshold, t.window_days
        )),
    }
    let download = match &facts.watch_count {
        Some(c) if c.value >= t.watch_count_threshold => {
            reasons.push(format!(
                "watched {} in {} days ≥ {} ({})",
                times(c.value),
                t.window_days,
                t.watch_count_threshold,
                c.source
            ));
            true
        }
        Some(c) => {
            reasons.push(format!(
                "watched {} in {} days < {} ({}): waiting for a rewatch",
                times(c.value),
                t.window_days,
                t.watch_count_threshold,
                c.source
            ));
            false
        }
        None => {
            reasons.push("watch count unknown (no history answered): waiting".into());
            false
        }
    };
    Verdict {
        tier: Tier::AfterRewatch,
        download,
        reasons,
    }
}

/// Every instant rule that matched, each with its source; empty when none did.
fn instant_reasons(play: &Play, facts: &Facts, t: &Thresholds) -> Vec<String> {
    let mut out = Vec::new();
    let from_play = play.source.as_str();
    if let Some(r) = &facts.imdb_rating {
        if r.value >= t.instant_rating {
            out.push(format!(
                "IMDb {} ≥ {} ({})",
                num(r.value),
                num(t.instant_rating),
                r.source
            ));
        }
    }
    // Keywords: the title (the facts', else the play's) and the edition.
    let play_title = Fact::new(play.title.clone(), from_play);
    let no_edition = Fact::new(String::new(), "");
    let texts = [
        ("title", facts.title.as_ref().unwrap_or(&play_title)),
        ("edition", facts.edition.as_ref().unwrap_or(&no_edition)),
    ];
    for (what, text) in texts {
        let hay = fold(&text.value);
        for k in &t.keywords {
            let needle = fold(k);
            if !needle.is_empty() && hay.contains(&needle) {
                out.push(format!(
                    "{what} {:?} contains {k:?} ({})",
                    text.value, text.source
                ));
            }
        }
    }
    let year = facts
        .year
        .clone()
        .or_else(|| play.year.map(|y| Fact::new(y, from_play)));
    if let Some(y) =
        year.filter(|y| t.old_foreign_before_year > 0 && y.value < t.old_foreign_before_year)
    {
        match &facts.original_language {
            Some(l) if !english(&l.value) => out.push(format!(
                "released {} < {} ({}) in {} ({}): an old foreign film",
                y.value, t.old_foreign_before_year, y.source, l.value, l.source
            )),
            _ => {}
        }
    }
    if let (Some(r), Some(v)) = (&facts.imdb_rating, &facts.imdb_votes) {
        if r.value >= t.gem_rating && v.value < t.gem_max_votes {
            out.push(format!(
                "hidden gem: IMDb {} ≥ {} with {} votes < {} ({})",
                num(r.value),
                num(t.gem_rating),
                v.value,
                t.gem_max_votes,
                v.source
            ));
        }
    }
    let genres = genres(play, facts);
    for (list, what) in [(&t.rare_genres, "rare genre"), (&t.instant_genres, "genre")] {
        for (g, source) in &genres {
            if list.iter().any(|r| fold(r) == fold(g)) {
                out.push(format!("{what} {g} ({source})"));
            }
        }
    }
    if let Some(f) = facts.favourite.as_ref().filter(|f| f.value) {
        out.push(format!(
            "marked a favourite with the favourite tag ({})",
            f.source
        ));
    }
    if t.min_seeders_rare > 0 {
        if let Some(s) = facts
            .seeders
            .as_ref()
            .filter(|s| s.value < t.min_seeders_rare)
        {
            out.push(format!(
                "rare: {} seeders < {} ({})",
                s.value, t.min_seeders_rare, s.source
            ));
        }
    }
    out
}

/// The genres known, each once, with the first source that named it (the facts' first, then
/// the play's).
fn genres(play: &Play, facts: &Facts) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let from_facts = facts
        .genres
        .iter()
        .flat_map(|f| f.value.iter().map(move |g| (g, f.source.as_str())));
    let from_play = play.genres.iter().map(|g| (g, play.source.as_str()));
    for (g, source) in from_facts.chain(from_play) {
        if !out.iter().any(|(o, _)| fold(o) == fold(g)) {
            out.push((g.clone(), source.to_string()));
        }
    }
    out
}

/// Lower case with typographic apostrophes made plain (`Director’s Cut` matches
/// `director's cut`).
fn fold(s: &str) -> String {
    s.trim().to_lowercase().replace(['’', '‘', '`'], "'")
}

/// Radarr names the language (`English`); other sources may give the code.
fn english(lang: &str) -> bool {
    matches!(fold(lang).as_str(), "english" | "en" | "eng")
}

/// `8.7`, `90`, `7.25`: no trailing zeros.
fn num(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

fn times(n: u32) -> String {
    if n == 1 {
        "1 time".into()
    } else {
        format!("{n} times")
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
