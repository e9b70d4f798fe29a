//! `downshiftarr sync` and `downshiftarr discover`: the library index from the command line,
//! as library-sync users expect — change lines only when something changed, a closing summary.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use rusqlite::params;

use crate::cli::{DiscoverArgs, SyncArgs};
use crate::config;
use crate::jobs::index::{self, sync};
use crate::plex::Plex;

pub fn sync(args: SyncArgs) -> Result<ExitCode> {
    let cfg = config::load(&config::path(args.config.as_deref()))?;
    let plex = Plex::from_config(&cfg.plex)?;
    let db_path = cfg.index.database_path(&cfg.daemon);
    let mut db = index::open(&db_path)?;
    let opts = sync::Options {
        full: args.full,
        section: args.section.clone(),
        title: args.title.clone().map(|t| (t, args.year)),
        dry_run: args.dry_run,
        force: args.force,
        page_size: args.page_size.unwrap_or(cfg.index.page_size),
        metadata_batch: cfg.index.metadata_batch,
        deletion_interval_s: cfg.index.deletion_check_interval_s,
    };
    // Progress bars on a terminal (library and item progress, change lines above them);
    // plain lines otherwise, so logs and pipes stay readable.
    let tty = std::io::stderr().is_terminal();
    let bars = indicatif::MultiProgress::new();
    let style = |t: &str| {
        indicatif::ProgressStyle::with_template(t)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    };
    let library = bars.add(
        indicatif::ProgressBar::new(0).with_style(style("library {bar:30} {pos}/{len} {msg}")),
    );
    let items =
        bars.add(indicatif::ProgressBar::new(0).with_style(style("items   {bar:30} {msg}")));
    if !tty {
        bars.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut err = std::io::stderr();
    let summary = sync::run(&plex, &mut db, &opts, &mut |p| match p {
        sync::Progress::Section {
            title,
            index,
            total,
        } => {
            library.set_length(total as u64);
            library.set_position(index as u64);
            library.set_message(title.to_string());
            items.set_position(0);
            items.set_message("");
            if !tty {
                let _ = writeln!(err, "[{index}/{total}] {title}");
            }
        }
        sync::Progress::Items { done, total, label } => {
            items.set_length(total);
            items.set_position(done);
            items.set_message(format!("{label} ({done}/{total})"));
        }
        sync::Progress::Changed { what, title } => {
            if tty {
                bars.suspend(|| eprintln!("  {what}: {title}"));
            } else {
                let _ = writeln!(err, "  {what}: {title}");
            }
        }
        sync::Progress::HeldBack {
            reason,
            titles,
            more,
        } => {
            let mut text = format!("  held back (not removed): {reason}\n");
            for t in titles {
                text.push_str(&format!("    {t}\n"));
            }
            if more > 0 {
                text.push_str(&format!("    … and {more} more\n"));
            }
            text.push_str("  they stay indexed until Plex confirms the deletion; `downshiftarr sync --full --force` applies it now\n");
            if tty {
                bars.suspend(|| eprint!("{text}"));
            } else {
                let _ = write!(err, "{text}");
            }
        }
    }, &|| false)
    .context("sync failed; nothing was deleted")?;
    library.finish_and_clear();
    items.finish_and_clear();
    let c = index::counts(&db)?;
    println!(
        "{}: {} seen, {} changed ({} added), {} removed, {} held back, {} sections skipped, {} API calls, {:.2} s",
        if args.dry_run { "dry run" } else { "synced" },
        summary.seen,
        summary.changed,
        summary.added,
        summary.removed,
        summary.held_back,
        summary.skipped_sections,
        summary.api_calls,
        summary.seconds
    );
    println!(
        "index: {} sections, {} movies, {} shows, {} episodes, {} files",
        c.sections, c.movies, c.shows, c.episodes, c.files
    );
    Ok(ExitCode::SUCCESS)
}

pub fn discover(args: DiscoverArgs) -> Result<ExitCode> {
    let cfg = config::load(&config::path(args.config.as_deref()))?;
    let db = index::open(&cfg.index.database_path(&cfg.daemon))?;
    let mut q = db.prepare(
        "SELECT rating_key, type, title, year, preferred_id, imdb, tmdb, tvdb FROM items
         WHERE title = ?1 COLLATE NOCASE AND (?2 IS NULL OR year = ?2) AND type IN ('movie', 'show') ORDER BY year",
    )?;
    let items = q.query_map(params![args.title, args.year], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<i64>>(3)?,
            r.get::<_, Option<String>>(4)?,
            [
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, Option<String>>(7)?,
            ],
        ))
    })?;
    let mut found = 0;
    for it in items {
        let (rk, kind, title, year, preferred, [imdb, tmdb, tvdb]) = it?;
        found += 1;
        println!(
            "{title} ({}) [{kind}, ratingKey {rk}]",
            year.map(|y| y.to_string()).unwrap_or_else(|| "?".into())
        );
        println!(
            "  ids: preferred {} imdb {} tmdb {} tvdb {}",
            preferred.unwrap_or("-".into()),
            imdb.unwrap_or("-".into()),
            tmdb.unwrap_or("-".into()),
            tvdb.unwrap_or("-".into())
        );
        let mut v = db.prepare(
            "SELECT m.id, m.width, m.height, m.dynamic_range, m.dv_profile, m.bitrate_kbps, m.edition, p.file
             FROM media m JOIN parts p ON p.media_id = m.id WHERE m.rating_key = ?1
                OR m.rating_key IN (SELECT rating_key FROM items WHERE grandparent_key = ?1) ORDER BY m.height DESC LIMIT 50",
        )?;
        let rows = v.query_map([&rk], |r| {
            Ok(format!(
                "  version {}: {}x{} {}{} {} kbps{} — {}",
                r.get::<_, String>(0)?,
                r.get::<_, Option<u32>>(1)?.unwrap_or(0),
                r.get::<_, Option<u32>>(2)?.unwrap_or(0),
                r.get::<_, Option<String>>(3)?.unwrap_or_else(|| "?".into()),
                r.get::<_, Option<u8>>(4)?
                    .map(|p| format!(" profile {p}"))
                    .unwrap_or_default(),
                r.get::<_, Option<u32>>(5)?.unwrap_or(0),
                r.get::<_, Option<String>>(6)?
                    .map(|e| format!(" [{e}]"))
                    .unwrap_or_default(),
                cfg.index.local_path(&r.get::<_, String>(7)?)
            ))
        })?;
        for row in rows {
            println!("{}", row?);
        }
    }
    if found == 0 {
        println!(
            "no movie or show titled {:?}{} in the index",
            args.title,
            args.year.map(|y| format!(" ({y})")).unwrap_or_default()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
