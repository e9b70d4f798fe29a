//! `downshiftarr scrobble history [--since 1d] [--json]`: the calls the outbox finished
//! (delivered, 409, not found, superseded), read from the store read-only — the daemon may be
//! running — one line each, newest last.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use clap::Args;
use serde_json::json;

use crate::cli::decisions::parse_duration;
use crate::jobs::scrobble::outbox::{self, HistoryRow};
use crate::store::Store;

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Only the last DURATION (`30m`, `12h`, `1d`).
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// At most this many, newest last.
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub limit: usize,
}

fn time(ms: u64) -> String {
    downshiftarr_shim::record::rfc3339(UNIX_EPOCH + Duration::from_millis(ms))
}

/// One line: delivered at, user, item, action, progress, outcome.
fn line(r: &HistoryRow) -> String {
    let t = time(r.delivered_ms);
    let item = match &r.title {
        Some(title) => format!("{title} [{}]", r.rating_key),
        None => format!("rating key {}", r.rating_key),
    };
    format!(
        "{}  {:<12} {:<5} {:>5.1}%  {:<17} {}",
        t.get(..19).unwrap_or(&t),
        r.user,
        r.action,
        r.progress,
        r.outcome,
        item
    )
}

pub fn run(args: HistoryArgs) -> Result<ExitCode> {
    let path = crate::config::path(args.config.as_deref());
    let cfg = crate::config::load(&path)?;
    let db_path = cfg.index.database_path(&cfg.daemon);
    if !db_path.exists() {
        bail!(
            "no scrobble history yet: {} does not exist (the daemon creates it)",
            db_path.display()
        );
    }
    let db = Store::open_read_only(&db_path)?;
    let since_ms = match &args.since {
        Some(s) => SystemTime::now()
            .checked_sub(parse_duration(s)?)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(0))
            .unwrap_or(0),
        None => 0,
    };
    let rows = match outbox::history(&db, since_ms, args.limit) {
        Ok(r) => r,
        // A database from before the outbox (migration 8): nothing delivered yet.
        Err(e) if format!("{e:#}").contains("no such table") => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        for r in &rows {
            let mut v = json!(r);
            v["time"] = json!(time(r.delivered_ms));
            v["at"] = json!(time(r.at_ms));
            writeln!(out, "{v}")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        writeln!(
            out,
            "no scrobbles{}",
            if args.since.is_some() {
                " in that time"
            } else {
                ""
            }
        )?;
    }
    for r in &rows {
        writeln!(out, "{}", line(r))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_names_time_user_item_action_progress_and_outcome() {
        let r = HistoryRow {
            id: 1,
            user: "ann".into(),
            rating_key: "42".into(),
            play: "p".into(),
            action: "stop".into(),
            progress: 93.25,
            title: Some("Dune".into()),
            at_ms: 0,
            delivered_ms: 1_764_000_000_000,
            outcome: "scrobbled".into(),
            trakt: None,
        };
        let l = line(&r);
        assert!(l.starts_with("2025-11-24T16:00:00"), "{l}");
        for part in ["ann", "stop", "93.2%", "scrobbled", "Dune [42]"] {
            assert!(l.contains(part), "{part}: {l}");
        }
        let bare = line(&HistoryRow { title: None, ..r });
        assert!(bare.ends_with("rating key 42"), "{bare}");
    }
}
