//! The decision audit: every decision (shim, reactive guard, Tautulli trigger) with its
//! reason and what enforcement did, stored by the daemon and listed by
//! `downshiftarr decisions [--since DURATION] [--json]`.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use rusqlite::{params, Connection, OpenFlags};
use serde_json::{json, Value};

use crate::cli::DecisionsArgs;

/// Stores one decision record (the shim's JSON record, or the daemon's own).
pub fn insert(db: &Connection, rec: &Value) -> Result<()> {
    let field = |k: &str| rec.get(k).and_then(Value::as_str).map(String::from);
    let user = rec
        .get("viewer")
        .and_then(|v| v.get("user"))
        .and_then(Value::as_str)
        .map(String::from);
    db.execute(
        "INSERT INTO decisions(time, job, decision, reason, session, input, record, origin, user, outcome)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            field("time").unwrap_or_else(downshiftarr_shim::record::now_rfc3339),
            field("job"),
            field("decision"),
            field("reason"),
            field("session"),
            field("input"),
            rec.to_string(),
            field("origin").unwrap_or_else(|| "shim".into()),
            user,
            field("outcome"),
        ],
    )?;
    Ok(())
}

/// Records what enforcement did about the shim's latest decision on a transcode session.
pub fn set_outcome(
    db: &Connection,
    session: &str,
    outcome: &str,
    user: Option<&str>,
) -> Result<()> {
    db.execute(
        "UPDATE decisions SET outcome = ?1, user = COALESCE(user, ?3)
         WHERE id = (SELECT max(id) FROM decisions WHERE session = ?2 AND origin = 'shim')",
        params![outcome, session, user],
    )?;
    Ok(())
}

/// Names the viewer of the shim's decisions about a transcode session once Plex lists it
/// (the shim decides before the session exists).
pub fn set_user(db: &Connection, session: &str, user: &str) -> Result<()> {
    db.execute(
        "UPDATE decisions SET user = ?1 WHERE session = ?2 AND origin = 'shim' AND user IS NULL",
        params![user, session],
    )?;
    Ok(())
}

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

pub fn run(args: DecisionsArgs) -> Result<ExitCode> {
    let path = crate::config::path(args.config.as_deref());
    let cfg = crate::config::load_strict(&path)?;
    let db_path = cfg.index.database_path(&cfg.daemon);
    if !db_path.exists() {
        bail!(
            "no decisions yet: {} does not exist (the daemon creates it)",
            db_path.display()
        );
    }
    let db = Connection::open_with_flags(&db_path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("unable to open {}", db_path.display()))?;
    db.busy_timeout(Duration::from_secs(5))?;
    let since = match &args.since {
        Some(s) => {
            let t = SystemTime::now()
                .checked_sub(parse_duration(s)?)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            downshiftarr_shim::record::rfc3339(t)
        }
        None => String::new(),
    };
    let has_origin: bool = db
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map(|v| v >= 3)
        .unwrap_or(false);
    let sql = if has_origin {
        "SELECT time, origin, decision, reason, session, input, user, outcome, record FROM decisions
         WHERE time >= ?1 ORDER BY id DESC LIMIT ?2"
    } else {
        "SELECT time, 'shim', decision, reason, session, input, NULL, NULL, record FROM decisions
         WHERE time >= ?1 ORDER BY id DESC LIMIT ?2"
    };
    let mut q = db.prepare(sql)?;
    let mut rows: Vec<Value> = q
        .query_map(params![since, args.limit as i64], |r| {
            let record: String = r.get(8)?;
            let rec: Value = serde_json::from_str(&record).unwrap_or(Value::Null);
            Ok(json!({
                "time": r.get::<_, String>(0)?,
                "origin": r.get::<_, String>(1)?,
                "decision": r.get::<_, Option<String>>(2)?,
                "reason": r.get::<_, Option<String>>(3)?,
                "session": r.get::<_, Option<String>>(4)?,
                "input": r.get::<_, Option<String>>(5)?,
                "user": r.get::<_, Option<String>>(6)?,
                "outcome": r.get::<_, Option<String>>(7)?,
                "switched_to": rec.get("switched_to").and_then(|s| s.get("file")).cloned(),
                "no_switch": rec.get("no_switch").cloned(),
            }))
        })?
        .collect::<rusqlite::Result<_>>()?;
    rows.reverse();
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
