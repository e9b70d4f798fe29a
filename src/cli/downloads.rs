//! `downshiftarr downloads …`: the downloads job's admin commands (issue 13). What was typed,
//! the pieces every command shares (the config, the store, Radarr), and the two small
//! commands: `decisions` (the stored decisions with their reasons) and `status` (the
//! daemon's downloads section, or the store's queue when the daemon is down). The others
//! live beside: `downloads_explain.rs` (`explain`, `test`), `downloads_history.rs`
//! (`import-history`), `downloads_prune.rs` (`prune`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};

use crate::cli::decisions::parse_duration;
use crate::clients::radarr::Radarr;
use crate::config::downloads::DownloadsSettings;
use crate::config::Config;
use crate::jobs::downloads::status as dl_status;
use crate::store::downloads::DownloadDecision;
use crate::store::Store;

#[derive(Debug, Args)]
pub struct DownloadsArgs {
    #[command(subcommand)]
    pub command: DownloadsCommand,
}

#[derive(Debug, Subcommand)]
pub enum DownloadsCommand {
    /// Ask the running daemon to evaluate a stored decision again (the dashboard's
    /// "Re-evaluate"): a new decision is made from today's facts and acted on.
    Reevaluate(ReevaluateArgs),
    /// Evaluate a movie now, as if it had just been watched: the tier and every reason, each
    /// fact with its source. Changes nothing.
    Explain(ExplainArgs),
    /// The stored decisions with their reasons and what became of them, newest last.
    Decisions(DecisionsArgs),
    /// Back-fill our watch history from Plex's or Jellystat's, so the rewatch rule works
    /// from day one. Running it twice adds nothing.
    ImportHistory(ImportHistoryArgs),
    /// Replay a sample Jellyfin PlaybackStop (or --file) through the job's intake and rules,
    /// as the original's `smart_download.py test`: prints the decision, changes nothing.
    Test(TestArgs),
    /// Local movies nobody watched in downloads.prune.after_days that no rule keeps, with
    /// their sizes. Deletes (through Radarr) only with --apply AND downloads.prune.enabled.
    Prune(PruneArgs),
    /// The downloads job's state: the running daemon's section, or the store's queue when
    /// the daemon is not running.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The movie's title (as Radarr or the index has it; case does not matter).
    #[arg(value_name = "TITLE")]
    pub title: String,
    #[arg(long, value_name = "Y")]
    pub year: Option<u32>,
    /// Whose play to imagine (default: the first of downloads.tracked_users).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// One JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReevaluateArgs {
    /// The decision's id (`downloads decisions` shows it).
    pub id: i64,
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// `downloads decisions` takes the audit's `decisions` flags.
pub use super::DecisionsArgs;

/// Where `import-history` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum HistorySource {
    /// Plex's watch history (`/status/sessions/history/all`, the plex section's server).
    Plex,
    /// Jellystat's playback history (downloads.jellystat_url).
    Jellystat,
}

#[derive(Debug, Args)]
pub struct ImportHistoryArgs {
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = HistorySource::Plex)]
    pub from: HistorySource,
    /// How far back (default: downloads.window_days).
    #[arg(long, value_name = "N")]
    pub days: Option<u32>,
    /// Print what would be imported, write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A Jellyfin webhook body (JSON, as the plugin posts it); default: a built-in
    /// PlaybackStop of The Matrix (1999) watched to the end by --user.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The built-in sample's user (default: the first of downloads.tracked_users).
    #[arg(long, value_name = "NAME", conflicts_with = "file")]
    pub user: Option<String>,
    /// One JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["report", "apply"])))]
pub struct PruneArgs {
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// List what would be deleted and why the rest is kept; delete nothing.
    #[arg(long)]
    pub report: bool,
    /// Delete the listed movies and their files through Radarr — only when
    /// downloads.prune.enabled is true; never a movie with the keep tag.
    #[arg(long)]
    pub apply: bool,
    /// One JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// One JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: DownloadsArgs) -> Result<ExitCode> {
    match args.command {
        DownloadsCommand::Explain(a) => super::downloads_explain::explain(a),
        DownloadsCommand::Decisions(a) => decisions(a),
        DownloadsCommand::ImportHistory(a) => super::downloads_history::run(a),
        DownloadsCommand::Test(a) => super::downloads_explain::test(a),
        DownloadsCommand::Prune(a) => super::downloads_prune::run(a),
        DownloadsCommand::Status(a) => status(a),
        DownloadsCommand::Reevaluate(a) => super::ops::action(
            &config(a.config.as_deref())?,
            &format!("/api/downloads/reevaluate/{}", a.id),
            &format!("decision {} queued for evaluation", a.id),
        ),
    }
}

// ---- shared ------------------------------------------------------------------------------

/// The configuration, loaded as the daemon loads it (file, environment, secrets).
pub(crate) fn config(flag: Option<&Path>) -> Result<Config> {
    let path = crate::config::path(flag);
    crate::config::load(&path)
}

/// The section, refused when the job is off (no Radarr to ask).
pub(crate) fn enabled(cfg: &Config) -> Result<&DownloadsSettings> {
    let s = &cfg.downloads;
    if !s.enabled() {
        bail!("the downloads job is off: set downloads.radarr_url (or RADARR_URL) and its API key");
    }
    Ok(s)
}

/// The Radarr client of the section; a key whose file could not be read is said here.
pub(crate) fn radarr(s: &DownloadsSettings) -> Result<Radarr> {
    let key = match s.radarr_api_key.get() {
        Ok(Some(k)) => k.expose().to_string(),
        Ok(None) => bail!(
            "no Radarr API key: set RADARR_API_KEY, downloads.radarr_api_key_file or downloads.radarr_api_key"
        ),
        Err(e) => bail!("{e}"),
    };
    Radarr::new(
        &s.radarr_url,
        &key,
        s.connect_timeout_ms,
        s.request_timeout_ms,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))
}

/// The store's path.
pub(crate) fn db_path(cfg: &Config) -> PathBuf {
    cfg.index.database_path(&cfg.daemon)
}

/// The store read-only (the daemon may be running), `None` when it does not exist yet.
pub(crate) fn store_read_only(cfg: &Config) -> Result<Option<Store>> {
    let db = db_path(cfg);
    if !db.exists() {
        return Ok(None);
    }
    Store::open_read_only(&db)
        .with_context(|| format!("the store {}", db.display()))
        .map(Some)
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `2026-12-04T09:00:00Z`.
pub(crate) fn time(ms: u64) -> String {
    crate::jobs::downloads::notify::utc(ms)
}

/// Whether an error is "this table does not exist" (a store from before the downloads
/// tables, opened read-only so not migrated): nothing stored yet.
pub(crate) fn no_table(e: &anyhow::Error) -> bool {
    format!("{e:#}").contains("no such table")
}

// ---- decisions ---------------------------------------------------------------------------

/// One readable line: time, user, tier, whether it downloads, status, movie, reasons.
pub(crate) fn decision_line(d: &DownloadDecision) -> String {
    let label = crate::jobs::downloads::notify::label(&d.play.title, d.play.year);
    let mut l = format!(
        "{}  #{:<5} {:<12} {:<13} {:<8} {:<13} {}",
        time(d.at_ms),
        d.id,
        d.play.user,
        d.verdict.tier.as_str(),
        if d.verdict.download { "download" } else { "no" },
        d.status,
        label
    );
    if !d.verdict.reasons.is_empty() {
        l.push_str(" — ");
        l.push_str(&d.verdict.reasons.join("; "));
    }
    if let Some(detail) = &d.detail {
        l.push_str(&format!(" [{detail}]"));
    }
    l
}

fn decisions(args: DecisionsArgs) -> Result<ExitCode> {
    let cfg = config(args.config.as_deref())?;
    let since_ms = match &args.since {
        Some(s) => now_ms().saturating_sub(u64::try_from(parse_duration(s)?.as_millis())?),
        None => 0,
    };
    let rows = match store_read_only(&cfg)? {
        None => Vec::new(),
        Some(store) => match store.download_decisions(since_ms, args.limit) {
            Ok(r) => r,
            Err(e) if no_table(&e) => Vec::new(),
            Err(e) => return Err(e.context("reading the download decisions")),
        },
    };
    let mut out = std::io::stdout().lock();
    // The store gives newest first; people read newest last.
    for d in rows.iter().rev() {
        if args.json {
            let mut v = serde_json::to_value(d)?;
            v["time"] = json!(time(d.at_ms));
            writeln!(out, "{v}")?;
        } else {
            writeln!(out, "{}", decision_line(d))?;
        }
    }
    if rows.is_empty() && !args.json {
        writeln!(
            out,
            "no download decisions{}",
            if args.since.is_some() {
                " in that time"
            } else {
                " yet"
            }
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

// ---- status ------------------------------------------------------------------------------

fn status(args: StatusArgs) -> Result<ExitCode> {
    let cfg = config(args.config.as_deref())?;
    match crate::cli::status::daemon_status(args.config.as_deref()) {
        Ok((socket, st)) => {
            let section = st.sections.get(dl_status::JOB).cloned();
            if args.json {
                println!(
                    "{}",
                    json!({"running": true, "socket": socket, "enabled": cfg.downloads.enabled(), "downloads": section})
                );
            } else {
                match &section {
                    Some(v) => dl_status::lines(v).iter().for_each(|l| println!("{l}")),
                    None if cfg.downloads.enabled() => println!(
                        "downloads: the daemon at {socket} runs no downloads job (restart it after setting downloads.radarr_url)"
                    ),
                    None => println!(
                        "downloads: off (downloads.radarr_url or RADARR_URL is not set)"
                    ),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err((socket, e)) => {
            // The daemon is down: what the store says is owed.
            let (queued, recent) = match store_read_only(&cfg)? {
                None => (Vec::new(), Vec::new()),
                Some(store) => {
                    let queued = match store.queued_downloads() {
                        Ok(q) => q,
                        Err(e) if no_table(&e) => Vec::new(),
                        Err(e) => return Err(e.context("reading the download queue")),
                    };
                    let mut recent = Vec::new();
                    for q in &queued {
                        match store.download_decision(q.decision_id) {
                            Ok(Some(d)) => recent.push(d),
                            Ok(None) => {}
                            Err(e) => return Err(e.context("reading a queued download decision")),
                        }
                    }
                    (queued, recent)
                }
            };
            if args.json {
                let q: Vec<Value> = queued
                    .iter()
                    .map(|q| {
                        let d = recent.iter().find(|d| d.id == q.decision_id);
                        json!({"decision_id": q.decision_id, "attempts": q.attempts,
                            "next_at": time(q.next_at_ms), "last_error": q.last_error,
                            "title": d.map(|d| d.play.title.clone()), "year": d.and_then(|d| d.play.year)})
                    })
                    .collect();
                println!(
                    "{}",
                    json!({"running": false, "socket": socket, "error": e, "enabled": cfg.downloads.enabled(), "queue": q})
                );
            } else {
                println!("downshiftarr daemon: not running ({e})");
                if queued.is_empty() {
                    println!("downloads queue (from the store): empty");
                } else {
                    println!(
                        "downloads queue (from the store): {} decision(s) waiting for Radarr",
                        queued.len()
                    );
                    for q in &queued {
                        let what = recent
                            .iter()
                            .find(|d| d.id == q.decision_id)
                            .map(|d| {
                                crate::jobs::downloads::notify::label(&d.play.title, d.play.year)
                            })
                            .unwrap_or_else(|| "?".into());
                        println!(
                            "  #{} {what}: {} attempt(s), next at {}{}",
                            q.decision_id,
                            q.attempts,
                            time(q.next_at_ms),
                            q.last_error
                                .as_deref()
                                .map(|e| format!(", last error: {e}"))
                                .unwrap_or_default()
                        );
                    }
                }
            }
            Ok(ExitCode::from(2))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_seconds() {
        assert_eq!(time(1_764_000_000_000), "2025-11-24T16:00:00Z");
    }
}
