//! `downshiftarr throttle`: the throttle job on its own, a drop-in for the original tool.
//!
//! `--config` takes either the downshiftarr config (its `throttle` and `plex` sections) or the
//! original's JSON file, recognised by its keys; `PLEX_TOKEN` and `QBITTORRENT_PASSWORD`
//! override as they did. Without `--once` it runs until SIGTERM/SIGINT (then gives the
//! bandwidth back) with the daemon's own jobs: Plex's notifications, the session poller and the
//! throttle loop. `--once` looks once and decides as if every threshold were met; `--dry-run`
//! changes nothing; `--restore` gives back what a throttle changed and exits.
//!
//! Exit status: 0 done, 1 Plex or qBittorrent failed (nothing was decided on a failed
//! look), 2 bad usage or configuration.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::cli::ThrottleArgs;
use crate::config::{self, Config, Secret};
use crate::daemon::ctx::Ctx;
use crate::daemon::health::Health;
use crate::daemon::lifecycle::{self, Shutdown};
use crate::daemon::logging;
use crate::jobs::throttle::legacy::parse_legacy;
use crate::jobs::throttle::run::{Engine, Outcome};
use crate::plex::sessions::parse_sessions;
use crate::store::lookup::Lookup;
use crate::store::Store;

/// Keys only the original's file has at its top level.
const LEGACY_KEYS: [&str; 6] = [
    "plex_url",
    "plex_token",
    "qbittorrent_url",
    "streaming_upload_kbps",
    "idle_upload_kbps",
    "poll_interval_sec",
];

/// The configuration to run with, and where the record goes.
struct Setup {
    config: Config,
    path: PathBuf,
    legacy: bool,
}

pub fn run(args: ThrottleArgs) -> Result<ExitCode> {
    let setup = load(&args)?;
    let cfg = &setup.config;
    if !cfg.throttle.enabled() {
        bail!(
            "config {}: throttle.qbittorrent_url is not set, so there is nothing to throttle",
            setup.path.display()
        );
    }
    let db = cfg.index.database_path(&cfg.daemon);
    if args.restore {
        return restore(cfg, &db);
    }
    if args.once {
        return once(cfg, &db, args.dry_run);
    }
    run_loop(setup, args.verbose, args.dry_run)
}

/// Reads `--config`: the original's file by its keys, else ours.
fn load(args: &ThrottleArgs) -> Result<Setup> {
    let path = config::path(args.config.as_deref());
    let text = read_small(&path)?;
    let legacy = text.as_deref().is_some_and(is_legacy);
    if !legacy {
        if text.is_none() && args.config.is_some() {
            bail!(
                "config file {} does not exist: check the --config path",
                path.display()
            );
        }
        let mut config = config::load(&path)?;
        if let Some(dir) = &args.state_dir {
            config.daemon.state_dir = dir.display().to_string();
            config.index.database.clear();
        }
        return Ok(Setup {
            config,
            path,
            legacy,
        });
    }
    let env = |k: &str| std::env::var(k).ok();
    let l = parse_legacy(
        &path.display().to_string(),
        text.as_deref().unwrap_or("{}"),
        env("PLEX_TOKEN"),
        env("QBITTORRENT_PASSWORD"),
    )
    .map_err(anyhow::Error::msg)?;
    for k in &l.ignored_keys {
        eprintln!(
            "note: {}: {k} is a setting of the original tool that downshiftarr does not use",
            path.display()
        );
    }
    let mut config = Config::default();
    config.plex.url = l.plex_url;
    config.plex.token = Secret::new(l.plex_token);
    config.throttle = l.throttle;
    config.daemon.state_dir = state_dir(args.state_dir.as_deref()).display().to_string();
    // The daemon's own jobs stay off: this process only throttles.
    config.enforce.guard = false;
    config.daemon.http_listen.clear();
    config.validate()?;
    Ok(Setup {
        config,
        path,
        legacy,
    })
}

/// The file's text, `None` when absent; at most 1 MiB, regular files only.
fn read_small(path: &Path) -> Result<Option<String>> {
    use downshiftarr_shim::open::{self, OpenError};
    use std::io::Read;
    match open::read(path, open::Kind::Regular) {
        Ok(f) => {
            let mut t = String::new();
            f.take(1 << 20)
                .read_to_string(&mut t)
                .with_context(|| format!("unable to read config {}", path.display()))?;
            Ok(Some(t))
        }
        Err(OpenError::NotFound) => Ok(None),
        Err(e) => bail!("unable to read config {}: {e}", path.display()),
    }
}

fn is_legacy(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .is_some_and(|o| LEGACY_KEYS.iter().any(|k| o.contains_key(*k)))
}

/// Where the original's users keep our record.
fn state_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(d) = flag {
        return d.to_path_buf();
    }
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = env("STATE_DIRECTORY") {
        return d;
    }
    let system = PathBuf::from("/var/lib/downshiftarr");
    if nix::unistd::access(&system, nix::unistd::AccessFlags::W_OK).is_ok() {
        return system;
    }
    env("XDG_STATE_HOME")
        .or_else(|| env("HOME").map(|h| h.join(".local/state")))
        .map_or(system, |d| d.join("downshiftarr"))
}

fn open_store(db: &Path) -> Result<Store> {
    Store::open(db).with_context(|| {
        format!(
            "the throttle keeps what it changed in {}; pass --state-dir DIR with a writable directory",
            db.display()
        )
    })
}

fn restore(cfg: &Config, db: &Path) -> Result<ExitCode> {
    let store = open_store(db)?;
    let mut engine = Engine::new(cfg.throttle.clone(), false).map_err(anyhow::Error::msg)?;
    engine
        .resume(&store, Instant::now())
        .map_err(anyhow::Error::msg)?;
    match engine.restore(&store, "downshiftarr throttle --restore") {
        Ok(Some(plan)) => {
            if !plan.user_changed.is_empty() {
                println!(
                    "left as the user set it (changed by hand): {}",
                    plan.user_changed.join(", ")
                );
            } else if plan.writes.is_empty() {
                println!("qbittorrent already had its own limits back; the record is cleared");
            } else {
                let w: Vec<String> = plan.writes.iter().map(|w| w.to_string()).collect();
                println!("restored: {}", w.join(", "));
            }
            Ok(ExitCode::SUCCESS)
        }
        Ok(None) => {
            println!(
                "nothing to restore: no throttle of {} is recorded in {}",
                cfg.throttle.qbittorrent_url,
                db.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("downshiftarr throttle --restore: {e}; the record is kept, try again");
            Ok(ExitCode::from(1))
        }
    }
}

fn once(cfg: &Config, db: &Path, dry_run: bool) -> Result<ExitCode> {
    let (url, token) = cfg.plex.resolved()?;
    let plex = crate::plex::Plex::new(
        &url,
        &token,
        std::time::Duration::from_millis(cfg.plex.connect_timeout_ms),
        std::time::Duration::from_millis(cfg.plex.read_timeout_ms),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let sessions = match plex.sessions(None) {
        Ok(list) => parse_sessions(&list),
        Err(e) => {
            eprintln!("downshiftarr throttle: {e}; nothing was decided or changed");
            return Ok(ExitCode::from(1));
        }
    };
    let store = if dry_run {
        Store::open_read_only(db).ok()
    } else {
        Some(open_store(db)?)
    };
    let mut engine = Engine::new(cfg.throttle.clone(), dry_run)
        .map_err(anyhow::Error::msg)?
        .decide_now();
    let none = NoRecord;
    let record: &dyn crate::jobs::throttle::run::Record = match &store {
        Some(s) => s,
        None => &none,
    };
    engine
        .resume(record, Instant::now())
        .map_err(anyhow::Error::msg)?;
    engine.observe(Instant::now(), &sessions, None);
    let outcome = engine.reconcile(record, Instant::now());
    let status = engine.status();
    let streams = if status.remote_streams.is_empty() {
        "no remote stream".to_string()
    } else {
        format!(
            "{} remote stream(s): {}",
            status.remote_streams.len(),
            status.remote_streams.join(", ")
        )
    };
    println!("{streams}");
    let line = match &outcome {
        Outcome::Engaged(s) => format!("throttled: {}", s.describe()),
        Outcome::Moved(s) => format!("throttle moved: {}", s.describe()),
        Outcome::Reapplied(w) => format!("re-applied: {}", w.join(", ")),
        Outcome::Released { plan } if plan.writes.is_empty() => {
            "idle: released (nothing to write back)".into()
        }
        Outcome::Released { plan } => format!(
            "idle: restored {}",
            plan.writes
                .iter()
                .map(|w| w.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Outcome::LeftToUser(w) => format!("left as the user set it: {}", w.join(", ")),
        Outcome::WouldEngage(s) => format!("dry run: would throttle: {}", s.describe()),
        Outcome::WouldRelease(s) => format!(
            "dry run: would give back what was changed ({})",
            s.describe()
        ),
        Outcome::Nothing => match (&status.problem, engine.current()) {
            (Some(p), _) => {
                eprintln!("downshiftarr throttle: {p}");
                return Ok(ExitCode::from(1));
            }
            (None, Some(s)) => format!("streaming: already throttled ({})", s.describe()),
            (None, None) => "idle: nothing to change".into(),
        },
    };
    println!("{line}");
    Ok(ExitCode::SUCCESS)
}

/// `--once --dry-run` without a store: nothing recorded, nothing to record.
struct NoRecord;

impl crate::jobs::throttle::run::Record for NoRecord {
    fn all(&self) -> Result<Vec<crate::jobs::throttle::apply::ThrottleState>, String> {
        Ok(Vec::new())
    }
    fn save(&self, _: &crate::jobs::throttle::apply::ThrottleState) -> Result<(), String> {
        Err("dry run: nothing is stored".into())
    }
    fn clear(&self, _: &str) -> Result<(), String> {
        Ok(())
    }
}

/// Runs until SIGTERM/SIGINT: Plex's notifications and the session poller on their threads,
/// the throttle loop on this one; on the signal, the bandwidth is given back.
fn run_loop(setup: Setup, verbose: bool, dry_run: bool) -> Result<ExitCode> {
    let signals = lifecycle::block_signals()?;
    let _levels = logging::init(verbose || setup.config.daemon.debug)?;
    tracing::info!(
        config = %setup.path.display(),
        original_format = setup.legacy,
        dry_run,
        "downshiftarr throttle starting"
    );
    let shutdown = Shutdown::default();
    lifecycle::spawn_signal_thread(signals, shutdown.clone())?;
    let ctx = Ctx::new(
        setup.path,
        setup.config,
        shutdown.clone(),
        Arc::new(Health::new()),
        Lookup::default(),
    );
    let jobs = crate::jobs::start_only(&ctx, &["sessions", "events"])?;
    lifecycle::notify("READY=1");
    let result = crate::jobs::throttle::run::run(&ctx, &shutdown, dry_run);
    shutdown.trigger();
    for j in jobs {
        let _ = j.join();
    }
    result?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_file_is_recognised_by_its_keys() {
        assert!(is_legacy(
            r#"{"plex_url":"http://p:32400","qbittorrent_url":"http://q:8080"}"#
        ));
        assert!(!is_legacy(
            r#"{"throttle":{"qbittorrent_url":"http://q:8080"}}"#
        ));
        assert!(!is_legacy("not json"));
        assert!(!is_legacy("[1]"));
    }
}
