//! `downshiftarr downloads prune --report | --apply`: the smart deletion report (issue 13).
//!
//! Local movies (Radarr has the file, and it is not a debrid/cloud symlink by root folder or
//! tag) that nobody watched in `downloads.prune.after_days` (our watch history,
//! `store.last_played`) and that no rule keeps — IMDb at or above `prune.keep_rating`, the
//! keep tag, the favourite tag, or added to Radarr within the same days (a movie nobody had
//! the time to watch yet) — with their sizes and a total.
//!
//! [`plan`] is pure. [`run`] gathers its inputs and stops at the first failure: a Radarr or
//! store error is said and nothing is deleted, never read as "nothing to prune" or "not
//! watched". `--apply` deletes only when `downloads.prune.enabled`, and then only through
//! Radarr (`DELETE /api/v3/movie/{id}?deleteFiles=true`), each movie read again from Radarr
//! just before: one that has gained the keep tag (or lost its file) meanwhile is left alone.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{bail, Result};
use serde_json::json;

use super::downloads::{config, enabled, now_ms, radarr, time, PruneArgs};
use crate::jobs::downloads::notify::{human_bytes, label};
use crate::jobs::downloads::prune::{plan, Entry, Plan, Rules};

fn print_plan(p: &Plan, rules: &Rules) {
    println!(
        "{} local movie(s) not watched by anyone in {} days that no rule keeps:",
        p.prune.len(),
        rules.after_days
    );
    for e in &p.prune {
        println!(
            "  {:>10}  {}  [radarr {}]  last played: {}",
            human_bytes(e.size_bytes),
            label(&e.title, e.year),
            e.radarr_id,
            e.last_played_ms.map(time).unwrap_or_else(|| "never".into())
        );
    }
    println!("total: {}", human_bytes(p.total_bytes));
    println!(
        "kept: {} local movie(s); {} movie(s) not on local disk",
        p.kept.len(),
        p.not_local
    );
    for e in &p.kept {
        println!(
            "  kept  {}  — {}",
            label(&e.title, e.year),
            e.kept_because.as_deref().unwrap_or("?")
        );
    }
}

pub fn run(args: PruneArgs) -> Result<ExitCode> {
    let cfg = config(args.config.as_deref())?;
    let s = enabled(&cfg)?;
    let r = radarr(s)?;
    let fail = |e: crate::clients::service::ServiceError| {
        anyhow::anyhow!(
            "{e}; the prune report needs Radarr's library: nothing listed, nothing deleted"
        )
    };
    let movies = r.movies().map_err(fail)?;
    let tags = r.tags().map_err(fail)?;
    let rules = Rules::new(s, &tags);
    // Our history: without it every movie would look unwatched.
    let Some(store) = super::downloads::store_read_only(&cfg)? else {
        bail!(
            "no watch history: {} does not exist; run the daemon (or `downshiftarr downloads import-history`) first — nothing listed, nothing deleted",
            super::downloads::db_path(&cfg).display()
        );
    };
    let mut last = BTreeMap::new();
    for m in movies.iter().filter(|m| rules.is_local(m)) {
        match store.last_played(m.tmdb_id) {
            Ok(Some(at)) => {
                last.insert(m.tmdb_id, at);
            }
            Ok(None) => {}
            Err(e) => {
                return Err(e.context(format!(
                    "reading the last play of {} from our history: nothing listed, nothing deleted",
                    label(&m.title, m.year)
                )))
            }
        }
    }
    let now = now_ms();
    let p = plan(&movies, &last, &rules, now);
    if !args.apply {
        if args.json {
            println!("{}", json!({"apply": false, "plan": p}));
        } else {
            print_plan(&p, &rules);
            println!("report only: nothing deleted");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !s.prune.enabled {
        if args.json {
            println!(
                "{}",
                json!({"apply": true, "refused": "downloads.prune.enabled is false", "plan": p, "deleted": []})
            );
        } else {
            print_plan(&p, &rules);
            println!(
                "refused: --apply deletes only when downloads.prune.enabled is true — nothing deleted"
            );
        }
        return Ok(ExitCode::from(1));
    }
    if !args.json {
        print_plan(&p, &rules);
    }
    let mut deleted: Vec<&Entry> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    for e in &p.prune {
        // Read again just before: the keep tag may have been added, the file removed.
        let fresh = match r.movie_by_tmdb(e.tmdb) {
            Ok(Some(m)) => m,
            Ok(None) => {
                skipped.push(format!("{}: no longer in Radarr", label(&e.title, e.year)));
                continue;
            }
            Err(err) => bail!(
                "{err}; stopped before deleting {} — deleted so far: {}",
                label(&e.title, e.year),
                names(&deleted)
            ),
        };
        if rules.keep_tag.is_some_and(|t| fresh.tags.contains(&t))
            || rules.favourite_tag.is_some_and(|t| fresh.tags.contains(&t))
            || !rules.is_local(&fresh)
            || fresh.id != e.radarr_id
        {
            skipped.push(format!(
                "{}: changed in Radarr since the report (tag, file or id), left alone",
                label(&e.title, e.year)
            ));
            continue;
        }
        if let Err(err) = r.delete_movie(fresh.id, true) {
            bail!(
                "{err}; deleting {} failed, stopped — deleted so far: {}",
                label(&e.title, e.year),
                names(&deleted)
            );
        }
        if !args.json {
            println!(
                "deleted {} ({}) through Radarr",
                label(&e.title, e.year),
                human_bytes(e.size_bytes)
            );
        }
        deleted.push(e);
    }
    let freed: u64 = deleted
        .iter()
        .fold(0u64, |a, e| a.saturating_add(e.size_bytes));
    if args.json {
        println!(
            "{}",
            json!({"apply": true, "plan": p, "deleted": deleted, "skipped": skipped, "freed_bytes": freed})
        );
    } else {
        for sk in &skipped {
            println!("skipped {sk}");
        }
        println!(
            "deleted {} movie(s), {} freed",
            deleted.len(),
            human_bytes(freed)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn names(list: &[&Entry]) -> String {
    if list.is_empty() {
        return "none".into();
    }
    list.iter()
        .map(|e| label(&e.title, e.year))
        .collect::<Vec<_>>()
        .join(", ")
}
