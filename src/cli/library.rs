//! `downshiftarr sync` and `downshiftarr discover`: the library index from the command line,
//! as library-sync users expect — change lines only when something changed, a closing summary.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cli::{DiscoverArgs, SyncArgs};
use crate::config;
use crate::jobs::index::{self, sync};
use crate::plex::Plex;

pub fn sync(args: SyncArgs) -> Result<ExitCode> {
    let cfg = config::load_strict(&config::path(args.config.as_deref()))?;
    let (url, token) = cfg.plex.resolved()?;
    let plex = Plex::new(
        &url,
        &token,
        Duration::from_millis(cfg.plex.connect_timeout_ms),
        Duration::from_millis(cfg.plex.read_timeout_ms),
    )?;
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
    let cfg = config::load_strict(&config::path(args.config.as_deref()))?;
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

/// How to start the daemon, for a `status` that found none.
const START_HINT: &str =
    "start it with `systemctl start downshiftarr` (or run `downshiftarr daemon` in a terminal)";

/// `downshiftarr status`: the daemon's health over its socket. Exit status 0 healthy,
/// 1 unhealthy, 2 not running or not reachable; `--json` always prints one object.
pub fn status(args: crate::cli::StatusArgs) -> Result<ExitCode> {
    let (socket, status) = match daemon_status(args.config.as_deref()) {
        Ok(answer) => answer,
        Err((socket, e)) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"running": false, "socket": socket, "error": e})
                );
            } else {
                println!("downshiftarr daemon: not running ({e})");
                println!("{START_HINT}");
            }
            return Ok(ExitCode::from(2));
        }
    };
    let healthy = status.get("healthy") == Some(&serde_json::Value::Bool(true));
    let code = ExitCode::from(if healthy { 0 } else { 1 });
    if args.json {
        let mut v = status;
        if let Some(o) = v.as_object_mut() {
            o.insert("running".into(), true.into());
            o.insert("socket".into(), socket.into());
        }
        println!("{v}");
        return Ok(code);
    }
    print_status(&status)?;
    Ok(code)
}

/// Asks the daemon for its status. The socket is the shim's: `shim.socket`, or
/// `DOWNSHIFTARR_SOCKET` when set (as the shim reads it). Errors carry the socket tried.
fn daemon_status(
    flag: Option<&std::path::Path>,
) -> std::result::Result<(String, serde_json::Value), (Option<String>, String)> {
    use downshiftarr_shim::protocol::{Client, ClientError, Request, Response};
    let (path, _) =
        crate::cli::check_config::config_file(flag).map_err(|e| (None, format!("{e:#}")))?;
    let env = |k: &str| std::env::var(k).ok();
    let socket = downshiftarr_shim::config::load(&path, &env).config.socket;
    if socket.is_empty() {
        return Err((
            Some(socket),
            "no socket configured: shim.socket (or DOWNSHIFTARR_SOCKET) is empty".into(),
        ));
    }
    let fail = |e: String| (Some(socket.clone()), e);
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let mut c = Client::connect(std::path::Path::new(&socket), deadline).map_err(|e| {
        fail(match e {
            ClientError::NotRunning => format!("nothing listens at {socket}"),
            e => format!("unable to connect to {socket}: {e}"),
        })
    })?;
    match c.call(&Request::Status) {
        Ok(Response::Status { status }) => Ok((socket.clone(), status)),
        Ok(_) => Err(fail(format!("the daemon at {socket} answered something else"))),
        Err(ClientError::Eof) => Err(fail(format!(
            "the daemon at {socket} closed the connection: this user may not use the socket (run as root, the daemon's user or a member of daemon.socket_group)"
        ))),
        Err(e) => Err(fail(format!("the daemon at {socket}: {e}"))),
    }
}

/// The readable status.
fn print_status(status: &serde_json::Value) -> Result<()> {
    let g = |p: &str| status.pointer(p).cloned().unwrap_or_default();
    println!(
        "downshiftarr daemon {} — up {} s, {}",
        g("/version").as_str().unwrap_or("?"),
        g("/uptime_s"),
        if g("/healthy") == true {
            "healthy"
        } else {
            "UNHEALTHY"
        }
    );
    println!(
        "index: {} movies, {} shows, {} episodes, {} files",
        g("/index/movies"),
        g("/index/shows"),
        g("/index/episodes"),
        g("/index/files")
    );
    match status.get("last_sync").filter(|v| !v.is_null()) {
        Some(s) if s["ok"] == true => println!(
            "last sync: {} — {} changed, {} removed, {} API calls, {:.2} s",
            s["at"].as_str().unwrap_or("?"),
            s["summary"]["changed"],
            s["summary"]["removed"],
            s["summary"]["api_calls"],
            s["summary"]["seconds"].as_f64().unwrap_or(0.0)
        ),
        Some(s) => println!(
            "last sync: {} — FAILED: {}",
            s["at"].as_str().unwrap_or("?"),
            s["error"].as_str().unwrap_or("?")
        ),
        None => println!("last sync: none yet"),
    }
    if let Some(jobs) = status.get("jobs").and_then(|j| j.as_object()) {
        for (name, j) in jobs {
            match j["last_error"].as_str() {
                Some(e) => println!(
                    "job {name}: restarted {} times, last error: {e}",
                    j["restarts"]
                ),
                None => println!("job {name}: ok"),
            }
        }
    }
    println!(
        "shim: {} lookups ({} found), {} decisions reported",
        g("/shim/lookups"),
        g("/shim/lookup_hits"),
        g("/shim/decisions")
    );
    let counts: Vec<String> = g("/enforcement/counts")
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    format!(
                        "{} {} ({})",
                        c["count"],
                        c["action"].as_str().unwrap_or("?"),
                        c["reason"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    println!(
        "enforcement: {}",
        if counts.is_empty() {
            "nothing yet".to_string()
        } else {
            counts.join(", ")
        }
    );
    if g("/enforcement/plex_pass_missing") == true {
        println!(
            "PLEX PASS MISSING: Plex answered 401 to terminate — stopping a stream with a message needs Plex Pass on the server owner's account"
        );
    }
    if let Some(e) = g("/enforcement/last_error").as_str() {
        println!("last enforcement error: {e}");
    }
    Ok(())
}
