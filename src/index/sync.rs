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
//!   (`index.deletion_check_interval_s`) and on every full pass — after a complete listing only.
//! - **Crash-safe**: every batch is one transaction; the watermark moves only when a section's
//!   pass completed, so `kill -9` anywhere leaves a consistent index and the next pass
//!   finishes the job. A Plex error aborts the pass before anything is deleted.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use anyhow::{Context, Result};
use rusqlite::Connection;
use serde_json::Value;

use super::plexjson::{n, s};
use crate::plex::Plex;

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
            page_size: 500,
            metadata_batch: 50,
            deletion_interval_s: 0,
        }
    }
}

/// What a sync did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Summary {
    pub seen: u64,
    pub changed: u64,
    pub added: u64,
    pub removed: u64,
    pub skipped_sections: u64,
    pub api_calls: u64,
    pub seconds: f64,
}

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
}

/// Runs one pass.
pub fn run(
    plex: &Plex,
    db: &mut Connection,
    opts: &Options,
    progress: &mut dyn FnMut(Progress<'_>),
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
            super::upsert_section(db, d)?;
        }
        section(plex, db, opts, &key, &kind, &mut sum, progress)
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
fn filter_honoured(plex: &Plex, db: &Connection, section: &str, kind: u8) -> Result<bool> {
    let key = format!("section:{section}:filter");
    if let Some(v) = super::meta_get(db, &key)? {
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
    super::meta_set(db, &key, if honoured { "1" } else { "0" })?;
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

#[allow(clippy::too_many_arguments)]
fn section(
    plex: &Plex,
    db: &mut Connection,
    opts: &Options,
    key: &str,
    kind: &str,
    sum: &mut Summary,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<()> {
    let leaf = if kind == "movie" { MOVIE } else { EPISODE };
    let watermark: Option<i64> =
        super::meta_get(db, &watermark_key(key))?.and_then(|v| v.parse().ok());
    let incremental = !opts.full
        && watermark.is_some()
        && opts.title.is_none()
        && filter_honoured(plex, db, key, leaf)?;
    // Strictly after the watermark: an inclusive bound would re-list every item sharing the
    // last timestamp (after a library scan, thousands do).
    let since = if incremental {
        watermark.map(|w| w + 1)
    } else {
        None
    };
    let stored = stored_updated(db, key)?;
    let title_filter = |v: &Value| match &opts.title {
        None => true,
        Some((t, y)) => {
            let title = s(v, "grandparentTitle").or_else(|| s(v, "title"));
            title.is_some_and(|x| x.eq_ignore_ascii_case(t))
                && y.is_none_or(|y| n(v, "year") == Some(y) || n(v, "parentYear") == Some(y))
        }
    };
    let mut listed: Vec<Listed> = Vec::new();
    let mut keep = |v: &Value| {
        if let Some(rk) = s(v, "ratingKey") {
            if title_filter(v) {
                listed.push(Listed {
                    rk,
                    updated: n(v, "updatedAt"),
                });
            }
        }
    };
    plex.for_each_in_section(key, leaf, opts.page_size, since, &mut keep)?;
    if kind == "show" {
        plex.for_each_in_section(key, SHOW, opts.page_size, since, &mut keep)?;
    }
    let mut max_updated = watermark.unwrap_or(0);
    let mut changed: Vec<String> = Vec::new();
    for l in &listed {
        sum.seen += 1;
        max_updated = max_updated.max(l.updated.unwrap_or(0));
        if l.updated.is_none()
            || stored.get(&l.rk).copied().flatten() != l.updated
            || !stored.contains_key(&l.rk)
        {
            changed.push(l.rk.clone());
        }
    }
    // Full metadata for the changed items, in batches, one transaction each.
    let total = changed.len() as u64;
    let mut done = 0u64;
    for batch in changed.chunks(opts.metadata_batch.max(1)) {
        let items = plex.metadata(batch)?;
        if items.len() < batch.len() {
            tracing::debug!(
                "plex returned {} of {} requested items (some were deleted meanwhile)",
                items.len(),
                batch.len()
            );
        }
        // A dry run walks the same items and says what it would do, writing nothing.
        let tx = if opts.dry_run {
            None
        } else {
            Some(db.transaction()?)
        };
        for it in &items {
            done += 1;
            progress(Progress::Items {
                done,
                total,
                label: &label(it),
            });
            let is_new = !stored.contains_key(&s(it, "ratingKey").unwrap_or_default());
            let what = match &tx {
                None => Some("would update"),
                Some(tx) => super::upsert_item(tx, key, it)?.then_some(if is_new {
                    "added"
                } else {
                    "changed"
                }),
            };
            if let Some(what) = what {
                sum.changed += 1;
                if is_new && tx.is_some() {
                    sum.added += 1;
                }
                progress(Progress::Changed {
                    what,
                    title: label(it),
                });
            }
        }
        if let Some(tx) = tx {
            tx.commit()?;
        }
    }
    // Deletions: the section's complete key set against the index — when due, and only after
    // everything above succeeded (a Plex error has already returned).
    if opts.title.is_none() && deletion_check_due(db, key, opts)? {
        let mut present: HashSet<String> = HashSet::new();
        if incremental {
            plex.for_each_in_section(key, leaf, opts.page_size.max(2000), None, &mut |v| {
                present.extend(s(v, "ratingKey"));
            })?;
            if kind == "show" {
                plex.for_each_in_section(key, SHOW, opts.page_size.max(2000), None, &mut |v| {
                    present.extend(s(v, "ratingKey"));
                })?;
            }
        } else {
            present.extend(listed.iter().map(|l| l.rk.clone()));
        }
        let mut gone: Vec<String> = Vec::new();
        for level in if kind == "movie" {
            &["movie"][..]
        } else {
            &["episode", "show"][..]
        } {
            gone.extend(
                super::rating_keys(db, key, level)?
                    .into_iter()
                    .filter(|k| !present.contains(k)),
            );
        }
        if !gone.is_empty() {
            for k in &gone {
                progress(Progress::Changed {
                    what: if opts.dry_run {
                        "would remove"
                    } else {
                        "removed"
                    },
                    title: k.clone(),
                });
            }
            sum.removed += gone.len() as u64;
            if !opts.dry_run {
                let tx = db.transaction()?;
                super::delete_items(&tx, &gone)?;
                tx.commit()?;
            }
        }
        if !opts.dry_run {
            super::meta_set(
                db,
                &format!("section:{key}:deletions_checked"),
                &now().to_string(),
            )?;
        }
    }
    if !opts.dry_run && opts.title.is_none() {
        super::meta_set(db, &watermark_key(key), &max_updated.to_string())?;
    }
    Ok(())
}

/// `updated_at` of every indexed item of a section, in one query.
fn stored_updated(db: &Connection, section: &str) -> Result<HashMap<String, Option<i64>>> {
    let mut q = db.prepare("SELECT rating_key, updated_at FROM items WHERE section_key = ?1")?;
    let rows = q.query_map([section], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<HashMap<_, _>>>()?)
}

fn deletion_check_due(db: &Connection, section: &str, opts: &Options) -> Result<bool> {
    if opts.full || opts.deletion_interval_s == 0 {
        return Ok(true);
    }
    let last: i64 = super::meta_get(db, &format!("section:{section}:deletions_checked"))?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(now() - last >= opts.deletion_interval_s as i64)
}

/// "Show / S01E02 Title" or "Title (Year)" for progress lines.
fn label(v: &Value) -> String {
    match (s(v, "grandparentTitle"), n(v, "parentIndex"), n(v, "index")) {
        (Some(show), Some(season), Some(ep)) => format!(
            "{show} / S{season:02}E{ep:02} {}",
            s(v, "title").unwrap_or_default()
        ),
        _ => match n(v, "year") {
            Some(y) => format!("{} ({y})", s(v, "title").unwrap_or_default()),
            None => s(v, "title").unwrap_or_default(),
        },
    }
}
