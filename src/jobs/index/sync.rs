//! Keeping the index in step with Plex, incrementally.
//!
//! Per section:
//! - **Probe** once whether the server honours `updatedAt>>=` (a future timestamp must match
//!   nothing); the answer is cached in `meta`. If it does not, listings are full and compared
//!   client-side (apis.md §1.3).
//! - **Changed items** only: movies (and, for TV, episodes and shows) updated since the
//!   section's watermark — the largest `updatedAt` seen by the last complete pass — then their
//!   full metadata (streams, DOVI fields) in batches of `/library/metadata/k1,k2,…`.
//! - **Deletions** by a ratingKey-set diff of the section — periodically
//!   (`index.deletion_check_interval_s`) and on every full pass — never from absence alone:
//!   each candidate is confirmed by Plex, and empty, incomplete or mass deletions are held
//!   back (`deletions`).
//! - **Same-second edits**: the incremental bound overlaps the watermark, and items stamped in
//!   the second the last pass read them are fetched once more (`SETTLE_MARGIN_S`).
//! - **Crash-safe**: every batch is one transaction; the watermark moves only when a section's
//!   pass completed, so `kill -9` anywhere leaves a consistent index and the next pass
//!   finishes the job. A Plex error aborts the pass before anything is deleted; so does
//!   shutdown (`stop`, polled between requests).

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::Value;

use super::deletions;
use crate::plex::json::{s, Item};
use crate::plex::Plex;
use crate::store::{Store, DEFAULT_CACHE_KIB};

/// Plex listing types.
const MOVIE: u8 = 1;
const SHOW: u8 = 2;
const EPISODE: u8 = 4;

/// What a sync should do.
#[derive(Clone, Debug)]
pub struct Options {
    /// Ignore watermarks: list everything, compare `updatedAt` client-side.
    pub full: bool,
    /// Only this section key.
    pub section: Option<String>,
    /// Only items with this title (and year).
    pub title: Option<(String, Option<i64>)>,
    /// Read Plex, write nothing.
    pub dry_run: bool,
    /// With `full`: apply deletions that would be held back (empty, incomplete or mass).
    pub force: bool,
    pub page_size: u64,
    pub metadata_batch: usize,
    /// Seconds between ratingKey-set diffs for deletions (0: every pass; `full` always runs it).
    pub deletion_interval_s: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            full: false,
            section: None,
            title: None,
            dry_run: false,
            force: false,
            page_size: 500,
            metadata_batch: 50,
            deletion_interval_s: 0,
        }
    }
}

/// What a pass did: the status's own type, so `status` shows it as it is.
pub use crate::daemon::status::SyncSummary as Summary;

/// Progress reported while syncing.
pub enum Progress<'a> {
    Section {
        title: &'a str,
        index: usize,
        total: usize,
    },
    Items {
        done: u64,
        total: u64,
        label: &'a str,
    },
    Changed {
        what: &'a str,
        title: String,
    },
    /// Items Plex did not list but that were not removed, and why (up to 20 named).
    HeldBack {
        reason: &'a str,
        titles: &'a [String],
        more: usize,
    },
}

/// Runs one pass. `stop` is polled between requests; when it answers true the pass ends with
/// [`Stopped`], leaving a consistent index.
pub fn run(
    plex: &Plex,
    db: &Store,
    opts: &Options,
    progress: &mut dyn FnMut(Progress<'_>),
    stop: &dyn Fn() -> bool,
) -> Result<Summary> {
    // A larger page cache while writing: a full sync touches every index of every table, and
    // with SQLite's 2 MiB default it re-reads its own pages from the OS over and over. Given
    // back when the pass ends, so the daemon does not keep it.
    db.set_cache_kib(SYNC_CACHE_KIB)?;
    let r = pass(plex, db, opts, progress, stop);
    db.set_cache_kib(DEFAULT_CACHE_KIB)?;
    r
}

/// SQLite's page cache during a pass, in KiB.
const SYNC_CACHE_KIB: u32 = 32 * 1024;

fn pass(
    plex: &Plex,
    db: &Store,
    opts: &Options,
    progress: &mut dyn FnMut(Progress<'_>),
    stop: &dyn Fn() -> bool,
) -> Result<Summary> {
    let started = Instant::now();
    let calls0 = plex.calls();
    let mut sum = Summary::default();
    let sections = plex.sections().context("listing library sections")?;
    let wanted: Vec<&Value> = sections
        .iter()
        .filter(|d| {
            opts.section
                .as_deref()
                .is_none_or(|k| s(d, "key").as_deref() == Some(k))
        })
        .collect();
    for (i, d) in wanted.iter().enumerate() {
        let (Some(key), Some(kind)) = (s(d, "key"), s(d, "type")) else {
            continue;
        };
        let title = s(d, "title").unwrap_or_default();
        progress(Progress::Section {
            title: &title,
            index: i + 1,
            total: wanted.len(),
        });
        if kind != "movie" && kind != "show" {
            sum.skipped_sections += 1;
            continue;
        }
        if !opts.dry_run {
            db.upsert_section(d)?;
        }
        section(plex, db, opts, &key, &kind, &mut sum, progress, stop)
            .with_context(|| format!("syncing section {title:?}"))?;
    }
    sum.api_calls = plex.calls() - calls0;
    sum.seconds = started.elapsed().as_secs_f64();
    Ok(sum)
}

fn watermark_key(section: &str) -> String {
    format!("section:{section}:watermark")
}

/// Whether the server honours `updatedAt>>=` for this section (cached).
fn filter_honoured(plex: &Plex, db: &Store, section: &str, kind: u8) -> Result<bool> {
    let key = format!("section:{section}:filter");
    if let Some(v) = db.meta_get(&key)? {
        return Ok(v == "1");
    }
    let future = now() + 86_400 * 365;
    let honoured = plex.count(section, kind, Some(future))? == 0;
    if !honoured {
        tracing::warn!(
            section,
            "the server ignores updatedAt>>=: syncing by full listings compared client-side"
        );
    }
    db.meta_set(&key, if honoured { "1" } else { "0" })?;
    Ok(honoured)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// What a listing keeps of each item: enough to decide whether to fetch it.
struct Listed {
    rk: String,
    updated: Option<i64>,
}

/// Seconds before a pass's start from which an item's `updatedAt` is not yet settled: Plex
/// stamps whole seconds, so an item read in the second it was edited can be edited again in
/// that second without its `updatedAt` moving. Such items are fetched once more by the next
/// pass. Plex runs on this host (the shim replaces its transcoder), so the clocks agree; the
/// margin absorbs the rounding.
const SETTLE_MARGIN_S: i64 = 1;

#[allow(clippy::too_many_arguments)]
fn section(
    plex: &Plex,
    db: &Store,
    opts: &Options,
    key: &str,
    kind: &str,
    sum: &mut Summary,
    progress: &mut dyn FnMut(Progress<'_>),
    stop: &dyn Fn() -> bool,
) -> Result<()> {
    let pass_started = now();
    let leaf = if kind == "movie" { MOVIE } else { EPISODE };
    let meta_i64 = |db: &Store, k: String| -> Result<Option<i64>> {
        Ok(db.meta_get(&k)?.and_then(|v| v.parse().ok()))
    };
    let watermark = meta_i64(db, watermark_key(key))?;
    // Items stamped at or after this were read in (or just before) their own second by the
    // last pass: not settled yet.
    let unsettled_from = meta_i64(db, read_at_key(key))?.map(|t| t - SETTLE_MARGIN_S);
    let incremental = !opts.full
        && watermark.is_some()
        && opts.title.is_none()
        && filter_honoured(plex, db, key, leaf)?;
    // Overlap the watermark: an item edited in the same second as the last pass's newest edit,
    // after that pass read it, keeps that `updatedAt`. One second below both bounds works
    // whether the server reads `updatedAt>>=` as "at or after" or as "after" (apis.md §1.3);
    // the client-side comparison below decides what really changed.
    let since = if incremental {
        watermark.map(|w| unsettled_from.map_or(w, |u| w.min(u)) - 1)
    } else {
        None
    };
    let stored = db.stored_updated(key)?;
    let title_filter = |v: &Item| match &opts.title {
        None => true,
        Some((t, y)) => {
            let title = v.grandparent_title.s().or_else(|| v.title.s());
            title.is_some_and(|x| x.eq_ignore_ascii_case(t))
                && y.is_none_or(|y| v.year.n() == Some(y) || v.parent_year.n() == Some(y))
        }
    };
    let mut listed: Vec<Listed> = Vec::new();
    let mut listing = deletions::Listing::default();
    {
        let mut keep = |v: &Item| {
            if let Some(rk) = v.rating_key.s() {
                if title_filter(v) {
                    listed.push(Listed {
                        rk,
                        updated: v.updated_at.n(),
                    });
                }
            }
        };
        list(
            plex,
            key,
            leaf,
            opts.page_size,
            since,
            &mut listing,
            stop,
            &mut keep,
        )?;
        if kind == "show" {
            list(
                plex,
                key,
                SHOW,
                opts.page_size,
                since,
                &mut listing,
                stop,
                &mut keep,
            )?;
        }
    }
    let mut max_updated = watermark.unwrap_or(0);
    let mut changed: Vec<String> = Vec::new();
    for l in &listed {
        sum.seen += 1;
        max_updated = max_updated.max(l.updated.unwrap_or(0));
        let unsettled = l
            .updated
            .is_some_and(|u| unsettled_from.is_some_and(|f| u >= f));
        if l.updated.is_none()
            || stored.get(&l.rk).copied().flatten() != l.updated
            || !stored.contains_key(&l.rk)
            || unsettled
        {
            changed.push(l.rk.clone());
        }
    }
    // Full metadata for the changed items, `metadata_batch` keys per request, written
    // `WRITE_BATCH` items per transaction: each commit rewrites the B-tree pages it touched,
    // so a transaction per request cost a full sync most of its CPU (issue 9). Items fetched
    // but not yet written when Plex fails or the daemon stops are fetched again by the next
    // pass: the watermark has not moved.
    let total = changed.len() as u64;
    let mut done = 0u64;
    let mut fetched: Vec<Item> = Vec::new();
    let batches: Vec<&[String]> = changed.chunks(opts.metadata_batch.max(1)).collect();
    for (i, batch) in batches.iter().enumerate() {
        if stop() {
            return Err(Stopped.into());
        }
        let items = plex.metadata_items(batch)?;
        if items.len() < batch.len() {
            tracing::debug!(
                "plex returned {} of {} requested items (some were deleted meanwhile)",
                items.len(),
                batch.len()
            );
        }
        fetched.extend(items);
        if fetched.len() < WRITE_BATCH && i + 1 < batches.len() {
            continue;
        }
        store(
            db,
            key,
            &std::mem::take(&mut fetched),
            &stored,
            opts.dry_run,
            sum,
            &mut |it, what| {
                done += 1;
                progress(Progress::Items {
                    done,
                    total,
                    label: &it.label(),
                });
                if let Some(what) = what {
                    progress(Progress::Changed {
                        what,
                        title: it.label(),
                    });
                }
            },
        )?;
    }
    // Deletions: the section's complete key set against the index — when due, and only after
    // everything above succeeded (a Plex error has already returned).
    if opts.title.is_none() && deletion_check_due(db, key, opts)? {
        let mut present: HashSet<String> = HashSet::new();
        let presence = if incremental {
            let mut presence = deletions::Listing::default();
            let page = opts.page_size.max(2000);
            let mut add = |v: &Item| present.extend(v.rating_key.s());
            list(plex, key, leaf, page, None, &mut presence, stop, &mut add)?;
            if kind == "show" {
                list(plex, key, SHOW, page, None, &mut presence, stop, &mut add)?;
            }
            presence
        } else {
            present.extend(listed.iter().map(|l| l.rk.clone()));
            listing.clone()
        };
        let levels = if kind == "movie" {
            &["movie"][..]
        } else {
            &["episode", "show"][..]
        };
        let mut indexed = 0usize;
        let mut candidates: Vec<String> = Vec::new();
        for level in levels {
            let keys = db.rating_keys(key, level)?;
            indexed += keys.len();
            candidates.extend(keys.into_iter().filter(|k| !present.contains(k)));
        }
        let force = opts.full && opts.force;
        let hold =
            deletions::hold_reason(&presence, present.len(), candidates.len(), indexed, force);
        let (gone, unsure) = match hold {
            Some(reason) => {
                held_back(db, key, &reason, &candidates, sum, progress)?;
                (Vec::new(), candidates)
            }
            None => {
                let c = deletions::confirm(plex, &candidates, opts.metadata_batch, stop)?;
                // Alive after all: a listing missed them; refresh them while we have them.
                store(
                    db,
                    key,
                    &c.alive,
                    &stored,
                    opts.dry_run,
                    sum,
                    &mut |it, what| {
                        if let Some(what) = what {
                            progress(Progress::Changed {
                                what,
                                title: it.label(),
                            });
                        }
                    },
                )?;
                if !c.unsure.is_empty() {
                    let reason = "plex neither returned them nor answered 404";
                    held_back(db, key, reason, &c.unsure, sum, progress)?;
                }
                (c.gone, c.unsure)
            }
        };
        let deletions_settled = unsure.is_empty();
        if !gone.is_empty() {
            let names = deletions::labels(db, &gone)?;
            for k in &gone {
                progress(Progress::Changed {
                    what: if opts.dry_run {
                        "would remove"
                    } else {
                        "removed"
                    },
                    title: names.get(k).cloned().unwrap_or_else(|| k.clone()),
                });
            }
            sum.removed += gone.len() as u64;
            if !opts.dry_run {
                super::delete_items(db, &gone)?;
            }
        }
        // A held-back check is due again on the next pass, not in six hours.
        if !opts.dry_run && deletions_settled {
            db.meta_set(
                &format!("section:{key}:deletions_checked"),
                &now().to_string(),
            )?;
        }
    }
    // The watermark moves only past a listing that held every changed item: a page shift
    // could have hidden one whose `updatedAt` is below the new maximum.
    if !opts.dry_run && opts.title.is_none() && listing.complete() {
        db.write(|db| {
            db.meta_set(&watermark_key(key), &max_updated.to_string())?;
            db.meta_set(&read_at_key(key), &pass_started.to_string())
        })?;
    } else if !listing.complete() {
        tracing::warn!(
            section = key,
            "{}: the watermark stays where it was, the next pass lists again",
            listing.why_incomplete()
        );
    }
    Ok(())
}

/// A sync pass stopped because the daemon is shutting down (nothing half-written: every
/// batch is its own transaction and the watermark did not move).
#[derive(Debug)]
pub struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sync stopped: the daemon is shutting down")
    }
}

impl std::error::Error for Stopped {}

fn read_at_key(section: &str) -> String {
    format!("section:{section}:read_at")
}

/// Lists a section level page by page into `f`, accounting every page in `listing`;
/// `stop` is polled between pages.
#[allow(clippy::too_many_arguments)]
fn list(
    plex: &Plex,
    key: &str,
    kind: u8,
    page: u64,
    since: Option<i64>,
    listing: &mut deletions::Listing,
    stop: &dyn Fn() -> bool,
    f: &mut dyn FnMut(&Item),
) -> Result<()> {
    let page = page.max(1);
    let mut level = deletions::Listing::default();
    let mut start = 0u64;
    loop {
        if stop() {
            return Err(Stopped.into());
        }
        let p = plex.section_page(key, kind, start, page, since)?;
        let got = p.items.len() as u64;
        for it in &p.items {
            f(it);
        }
        level.page(got, p.total);
        start += got;
        let more = match p.total {
            Some(total) => start < total && got > 0,
            None => got == page && got > 0,
        };
        if !more {
            break;
        }
    }
    listing.received += level.received;
    listing.total = Some(listing.total.unwrap_or(0) + level.total.unwrap_or(level.received));
    listing.total_changed |= !level.complete();
    Ok(())
}

/// Items written per transaction during a pass.
const WRITE_BATCH: usize = 1000;

/// Writes full items (one transaction; none in a dry run) and tells `each` what happened to
/// every item: `Some("added" | "changed" | "would update")` or `None` when unchanged.
fn store(
    db: &Store,
    section: &str,
    items: &[Item],
    stored: &HashMap<String, Option<i64>>,
    dry_run: bool,
    sum: &mut Summary,
    each: &mut dyn FnMut(&Item, Option<&'static str>),
) -> Result<()> {
    let mut one = |it: &Item, written: Option<bool>| {
        let Some(rk) = it.rating_key.s() else {
            // Nothing to index it by: skipped, and said (hostile or broken answers).
            tracing::warn!(
                section,
                "skipped an item without a ratingKey: {:?}",
                it.label()
            );
            return;
        };
        let is_new = !stored.contains_key(&rk);
        let what = match written {
            None => Some("would update"),
            Some(w) => w.then_some(if is_new { "added" } else { "changed" }),
        };
        if what.is_some() {
            sum.changed += 1;
            if is_new && written.is_some() {
                sum.added += 1;
            }
        }
        each(it, what);
    };
    // A dry run walks the same items and says what it would do, writing nothing.
    if dry_run {
        for it in items {
            one(it, None);
        }
        return Ok(());
    }
    let written = db.write(|db| {
        items
            .iter()
            .map(|it| db.upsert_item(section, it))
            .collect::<Result<Vec<bool>>>()
    })?;
    for (it, w) in items.iter().zip(written) {
        one(it, Some(w));
    }
    Ok(())
}

/// How many held-back titles a log line names.
const HELD_BACK_NAMED: usize = 20;

/// Says which candidate deletions were not applied and why (titles, not just keys).
fn held_back(
    db: &Store,
    section: &str,
    reason: &str,
    keys: &[String],
    sum: &mut Summary,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<()> {
    sum.held_back += keys.len() as u64;
    let named = &keys[..keys.len().min(HELD_BACK_NAMED)];
    let names = deletions::labels(db, named)?;
    let titles: Vec<String> = named
        .iter()
        .map(|k| names.get(k).cloned().unwrap_or_else(|| k.clone()))
        .collect();
    let more = keys.len() - named.len();
    tracing::warn!(
        section,
        held_back = keys.len(),
        "not removing {} item(s) Plex did not list: {reason}; they stay indexed until a later pass confirms them (or `downshiftarr sync --full --force`): {}{}",
        keys.len(),
        titles.join(", "),
        if more > 0 { format!(" and {more} more") } else { String::new() }
    );
    progress(Progress::HeldBack {
        reason,
        titles: &titles,
        more,
    });
    Ok(())
}

fn deletion_check_due(db: &Store, section: &str, opts: &Options) -> Result<bool> {
    if opts.full || opts.deletion_interval_s == 0 {
        return Ok(true);
    }
    let last: i64 = db
        .meta_get(&format!("section:{section}:deletions_checked"))?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(now() - last >= opts.deletion_interval_s as i64)
}
