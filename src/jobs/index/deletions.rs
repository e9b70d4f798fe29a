//! Deciding what Plex really deleted — never from absence alone (issue 9 §1).
//!
//! A ratingKey that a section listing did not return is only a *candidate*. Offset paging
//! shifts when Plex deletes an item between pages (the item after the page boundary is never
//! listed), a restarting Plex or a token without access answers a well-formed empty listing,
//! and either used to remove the wrong items for good. So:
//!
//! - a listing is trusted only when it is **complete**: every page reported the same
//!   `totalSize` and the pages held exactly that many items ([`Listing`]);
//! - an **empty** listing of a section the index holds items of, or a **mass** deletion
//!   (more than a fifth of the section's indexed items), is held back unless the owner asks for
//!   it (`sync --full --force`);
//! - every remaining candidate is **confirmed** with `GET /library/metadata/{keys}`: a 404 is
//!   Plex saying the item is gone; an item Plex returns is alive (and refreshed); anything else
//!   holds the candidate back for the next pass.
//!
//! Timeline notifications with state 9 (`metadataState: deleted`) are Plex's own deletion
//! signal and are applied by the daemon directly ([`crate::plex::events::Event::deleted_item`]).

use std::collections::{HashMap, HashSet};

use crate::plex::json::Item;
use crate::plex::Plex;
use crate::store::Store;
use anyhow::Result;

/// A deletion is "mass" when it removes more than `1 / MASS_DIVISOR` of a section's indexed
/// items…
const MASS_DIVISOR: usize = 5;
/// …and more than this many: removing 3 of a 10-film section is an owner tidying up, not a
/// Plex that lost its library, and must not need `--force`.
const MASS_FLOOR: usize = 10;

/// What a paged listing received, and whether it can be trusted as the section's whole set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// Items received over all pages.
    pub received: u64,
    /// The first page's `totalSize` (None: the server did not page).
    pub total: Option<u64>,
    /// A later page reported a different `totalSize`: the section changed mid-listing.
    pub total_changed: bool,
}

impl Listing {
    /// Accounts one page.
    pub fn page(&mut self, got: u64, total: Option<u64>) {
        self.received += got;
        match (self.total, total) {
            (None, t) if self.received == got => self.total = t,
            (Some(a), Some(b)) if a != b => self.total_changed = true,
            _ => {}
        }
    }

    /// Whether every item the server counted arrived, with no change between pages.
    pub fn complete(&self) -> bool {
        !self.total_changed && self.total.is_none_or(|t| t == self.received)
    }

    /// Why the listing is not complete, for the held-back message.
    pub fn why_incomplete(&self) -> String {
        match self.total {
            _ if self.total_changed => {
                "the section changed while it was being listed (totalSize moved between pages)"
                    .into()
            }
            Some(t) => format!(
                "the listing announced {t} items but {} arrived",
                self.received
            ),
            None => "the listing was incomplete".into(),
        }
    }
}

/// Why candidates are not even confirmed this pass, if they are not.
pub fn hold_reason(
    listing: &Listing,
    present: usize,
    candidates: usize,
    indexed: usize,
    force: bool,
) -> Option<String> {
    if force || candidates == 0 {
        return None;
    }
    if !listing.complete() {
        return Some(listing.why_incomplete());
    }
    if present == 0 {
        return Some(
            "Plex listed the section as empty (restarting, re-created, or a token without access?)"
                .into(),
        );
    }
    if is_mass(candidates, indexed) {
        return Some(format!(
            "{candidates} of {indexed} indexed items would go (more than a fifth of the section)"
        ));
    }
    None
}

/// More than a fifth of the section, and more than a handful.
pub fn is_mass(candidates: usize, indexed: usize) -> bool {
    candidates > MASS_FLOOR && candidates * MASS_DIVISOR > indexed
}

/// What Plex said about the candidates.
#[derive(Debug, Default)]
pub struct Confirmed {
    /// Plex answered 404: deleted.
    pub gone: Vec<String>,
    /// Plex returned them (full metadata): a listing missed them.
    pub alive: Vec<Item>,
    /// Neither: held back for the next pass.
    pub unsure: Vec<String>,
}

/// Asks Plex about every candidate, `batch` keys per request. A batch Plex answers with 404
/// holds no live item; a key missing from a 200 answer is asked about alone. `stop` is polled
/// between requests.
pub fn confirm(
    plex: &Plex,
    candidates: &[String],
    batch: usize,
    stop: &dyn Fn() -> bool,
) -> Result<Confirmed> {
    let mut out = Confirmed::default();
    for keys in candidates.chunks(batch.max(1)) {
        if stop() {
            return Err(super::sync::Stopped.into());
        }
        let items = match plex.metadata_items(keys) {
            Ok(items) => items,
            Err(e) if e.status() == Some(404) => {
                out.gone.extend(keys.iter().cloned());
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let returned: HashSet<String> = items.iter().filter_map(|v| v.rating_key.s()).collect();
        out.alive.extend(items);
        for k in keys.iter().filter(|k| !returned.contains(*k)) {
            if keys.len() == 1 {
                out.unsure.push(k.clone());
                continue;
            }
            if stop() {
                return Err(super::sync::Stopped.into());
            }
            match plex.metadata_items(std::slice::from_ref(k)) {
                Err(e) if e.status() == Some(404) => out.gone.push(k.clone()),
                Ok(items) if !items.is_empty() => out.alive.extend(items),
                Ok(_) => out.unsure.push(k.clone()),
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(out)
}

/// "Show / S01E02 Title", "Show (2008)" or "Title (Year)" of indexed items, for `removed:` and
/// held-back lines; a key the index does not know stays a bare ratingKey.
pub fn labels(db: &Store, keys: &[String]) -> Result<HashMap<String, String>> {
    db.labels(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_is_complete_only_when_every_page_agrees() {
        let mut l = Listing::default();
        l.page(7, Some(30));
        l.page(7, Some(30));
        l.page(16, Some(30));
        assert!(l.complete());
        // Item deleted between pages: the total moves and one item is never listed.
        let mut l = Listing::default();
        l.page(7, Some(30));
        l.page(22, Some(29));
        assert!(!l.complete());
        // Fewer items than announced.
        let mut l = Listing::default();
        l.page(5, Some(6));
        assert!(!l.complete(), "{}", l.why_incomplete());
        // An unpaged answer.
        let mut l = Listing::default();
        l.page(3, None);
        assert!(l.complete());
    }

    #[test]
    fn empty_incomplete_and_mass_deletions_are_held_back_unless_forced() {
        let ok = Listing {
            received: 100,
            total: Some(100),
            total_changed: false,
        };
        assert_eq!(hold_reason(&ok, 100, 2, 102, false), None);
        let empty = Listing {
            received: 0,
            total: Some(0),
            total_changed: false,
        };
        assert!(hold_reason(&empty, 0, 102, 102, false).is_some());
        assert!(hold_reason(&empty, 0, 3, 3, false).is_some(), "even tiny");
        assert!(hold_reason(&ok, 70, 30, 100, false).is_some(), "mass");
        assert_eq!(hold_reason(&ok, 70, 30, 100, true), None, "forced");
        assert!(!is_mass(3, 10), "a few items of a small section");
        assert!(is_mass(11, 50));
        assert!(!is_mass(11, 56));
    }
}
