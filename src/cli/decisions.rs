//! `downshiftarr decisions [--since DURATION] [--json]`: every decision (shim, reactive
//! guard, Tautulli trigger) with its reason and what enforcement did — from the store, plus
//! what the shim logged to its decision log that the daemon has not imported yet (it was
//! down, or the shim could not reach it).

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::cli::DecisionsArgs;
use crate::jobs::audit::logfile;
use crate::store::Store;

/// `90s`, `15m`, `2h`, `7d`, `1w`.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().with_context(|| {
        format!("--since {s:?}: expected a number and a unit (90s, 15m, 2h, 7d)")
    })?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => bail!("--since {s:?}: unknown unit {unit:?} (s, m, h, d, w)"),
    };
    Ok(Duration::from_secs(n.saturating_mul(mult)))
}

/// One row of `decisions` from a stored or logged record.
fn row(rec: &Value, origin: String, user: Option<String>, outcome: Option<String>) -> Value {
    let s = |k: &str| rec.get(k).and_then(Value::as_str);
    json!({
        "time": s("time").unwrap_or(""),
        "origin": origin,
        "decision": s("decision"),
        "reason": s("reason"),
        "session": s("session"),
        "input": s("input"),
        "user": user,
        "outcome": outcome,
        "switched_to": rec.get("switched_to").and_then(|s| s.get("file")).cloned(),
        "no_switch": rec.get("no_switch").cloned(),
    })
}

/// The rows stored in the database, newest `limit` since `since`, oldest first.
fn stored(db: &Store, since: &str, limit: usize) -> Result<Vec<Value>> {
    Ok(db
        .decisions_since(since, limit)?
        .into_iter()
        .map(|d| {
            let rec: Value = serde_json::from_str(&d.record).unwrap_or(Value::Null);
            row(&rec, d.origin, d.user, d.outcome)
        })
        .collect())
}

/// A logged record as a row: the shim's viewer, a trigger's outcome.
fn logged(rec: &Value) -> Value {
    let s = |k: &str| rec.get(k).and_then(Value::as_str).map(String::from);
    let user = rec
        .get("viewer")
        .and_then(|v| v.get("user"))
        .and_then(Value::as_str)
        .map(String::from);
    row(
        rec,
        s("origin").unwrap_or_else(|| "shim".into()),
        user,
        s("outcome"),
    )
}

pub fn run(args: DecisionsArgs) -> Result<ExitCode> {
    let path = crate::config::path(args.config.as_deref());
    let cfg = crate::config::load(&path)?;
    let db_path = cfg.index.database_path(&cfg.daemon);
    let log = Path::new(&cfg.shim.decision_log);
    let log_exists =
        !cfg.shim.decision_log.is_empty() && (log.exists() || logfile::rotated_path(log).exists());
    if !db_path.exists() && !log_exists {
        bail!(
            "no decisions yet: neither {} (the daemon creates it) nor the decision log {} exists",
            db_path.display(),
            if cfg.shim.decision_log.is_empty() {
                "(shim.decision_log is off)".to_string()
            } else {
                cfg.shim.decision_log.clone()
            }
        );
    }
    let db = if db_path.exists() {
        Some(Store::open_read_only(&db_path)?)
    } else {
        None
    };
    let since = match &args.since {
        Some(s) => {
            let t = SystemTime::now()
                .checked_sub(parse_duration(s)?)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            downshiftarr_shim::record::rfc3339(t)
        }
        None => String::new(),
    };
    let mut rows = match &db {
        Some(db) => stored(db, &since, args.limit)?,
        None => Vec::new(),
    };
    // What the daemon has not imported yet (it was down, or the shim could not reach it).
    if log_exists {
        match logfile::pending(db.as_ref(), log, &since, args.limit) {
            Ok(recs) => rows.extend(recs.iter().map(logged)),
            Err(e) => eprintln!("downshiftarr decisions: {e:#}"),
        }
        // RFC 3339 UTC with milliseconds sorts as text; the sort is stable.
        rows.sort_by(|a, b| a["time"].as_str().cmp(&b["time"].as_str()));
        let extra = rows.len().saturating_sub(args.limit);
        rows.drain(..extra);
    }
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    if args.json {
        for r in &rows {
            writeln!(out, "{r}")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        writeln!(
            out,
            "no decisions{}",
            if since.is_empty() {
                ""
            } else {
                " in that time"
            }
        )?;
    }
    for r in &rows {
        let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
        let base = s("input").rsplit('/').next().unwrap_or("").to_string();
        write!(
            out,
            "{}  {:<8} {:<7} {}",
            s("time").get(..19).unwrap_or(s("time")),
            s("origin"),
            s("decision"),
            s("reason")
        )?;
        if !base.is_empty() {
            write!(out, "  [{base}]")?;
        }
        if !s("user").is_empty() {
            write!(out, "  user={}", s("user"))?;
        }
        if let Some(to) = r.get("switched_to").and_then(Value::as_str) {
            write!(out, "  -> {}", to.rsplit('/').next().unwrap_or(to))?;
        }
        if !s("outcome").is_empty() {
            write!(out, "  => {}", s("outcome"))?;
        }
        writeln!(out)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5y")
            .unwrap_err()
            .to_string()
            .contains("unknown unit"));
    }
}
