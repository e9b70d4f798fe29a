//! `downshiftarr sync` and `downshiftarr discover`: the library index from the command line,
//! as library-sync users expect — change lines only when something changed, a closing summary.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::{DiscoverArgs, SyncArgs};
use crate::config;
use crate::jobs::index::{self, sync};
use crate::plex::Plex;

pub fn sync(args: SyncArgs) -> Result<ExitCode> {
    let cfg = config::load(&config::path(args.config.as_deref()))?;
    let plex = Plex::from_config(&cfg.plex)?;
    let db_path = cfg.index.database_path(&cfg.daemon);
    let db = index::open(&db_path)?;
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
    let summary = sync::run(&plex, &db, &opts, &mut |p| match p {
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
    let mut found = 0;
    for it in db.titled(&args.title, args.year)? {
        found += 1;
        println!(
            "{} ({}) [{}, ratingKey {}]",
            it.title,
            it.year.map(|y| y.to_string()).unwrap_or_else(|| "?".into()),
            it.kind,
            it.rating_key
        );
        let id = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        println!(
            "  ids: preferred {} imdb {} tmdb {} tvdb {}",
            id(it.preferred_id),
            id(it.imdb),
            id(it.tmdb),
            id(it.tvdb)
        );
        for v in db.versions_of(&it.rating_key, 50)? {
            println!(
                "  version {}: {}x{} {}{} {} kbps{} — {}",
                v.media_id,
                v.width.unwrap_or(0),
                v.height.unwrap_or(0),
                v.dynamic_range.unwrap_or_else(|| "?".into()),
                v.dv_profile
                    .map(|p| format!(" profile {p}"))
                    .unwrap_or_default(),
                v.bitrate_kbps.unwrap_or(0),
                v.edition.map(|e| format!(" [{e}]")).unwrap_or_default(),
                cfg.index.local_path(&v.file)
            );
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
