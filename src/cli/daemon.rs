//! `downshiftarr daemon`: everything that is not a transcode decision.
//!
//! One process, a thread per job, one shutdown signal fanned out to all of them
//! (`lifecycle`), jobs restarted with back-off when they fail (`supervisor`). The first job is
//! the transcoder healer (`heal`); the shim's socket service and the library index follow.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use crate::cli::DaemonArgs;
use crate::config::{self, Config, PLEX_DIRS};
use crate::daemon::lifecycle::{self, InstanceLock, Shutdown};
use crate::daemon::{health, http, logging, supervisor};
use crate::jobs::index::{self, sync, Lookup};
use crate::jobs::{guard, heal, socket};

/// How long jobs get to finish after SIGTERM before the daemon exits anyway.
const STOP_GRACE: Duration = Duration::from_secs(4);

pub fn run(args: DaemonArgs) -> Result<ExitCode> {
    let path = config::path(args.config.as_deref());
    let cfg = config::load_strict(&path)?;
    let signals = lifecycle::block_signals()?;
    let levels = logging::init(args.verbose || cfg.daemon.debug)?;
    let _lock = InstanceLock::acquire(Path::new(&cfg.daemon.state_dir))?;
    tracing::info!(version = downshiftarr_shim::VERSION, config = %path.display(), "downshiftarr daemon starting");

    // The configuration jobs read on every pass; SIGHUP swaps it.
    let live = Arc::new(std::sync::RwLock::new(cfg.clone()));
    let shutdown = Shutdown::default();
    lifecycle::spawn_signal_thread(signals, shutdown.clone())?;
    let stats = Arc::new(health::Stats::default());
    let health = Arc::new(health::Health::new(stats.clone()));
    let mut jobs = Vec::new();
    if cfg.daemon.heal_transcoder {
        match plex_dir(&cfg) {
            Some(dir) => {
                let paths = heal::Paths::new(
                    &dir,
                    Path::new(&cfg.daemon.shim_binary),
                    Path::new(&cfg.daemon.state_dir),
                );
                let interval = Duration::from_secs(cfg.daemon.heal_interval_s as u64);
                jobs.push(supervisor::spawn(
                    "heal",
                    shutdown.clone(),
                    health.clone(),
                    Box::new(move |sd| heal::run(&paths, interval, sd)),
                ));
            }
            None => tracing::warn!(
                "no Plex install found ({}): the transcoder healer is off",
                PLEX_DIRS.join(", ")
            ),
        }
    }

    // The index: migrated, and loaded into memory before the socket answers anything.
    let db_path = cfg.index.database_path(&cfg.daemon);
    let db = index::open(&db_path)?;
    // What the shim logged while the daemon was down joins the audit (idempotent).
    crate::jobs::audit::import_decision_log(&db, &cfg.shim.decision_log);
    let lookup = Lookup::default();
    lookup.rebuild(&db)?;
    tracing::info!(files = lookup.len(), database = %db_path.display(), "library index loaded");
    // What the index holds is served now, so `status` and `/metrics` count it before the
    // first sync succeeds (Plex often starts after us).
    health.set_counts(index::counts(&db)?);
    drop(db);

    // The shim's socket.
    let (listener, mut access) =
        socket::bind(Path::new(&cfg.shim.socket), &cfg.daemon.socket_group)?;
    access.uids.extend(&cfg.daemon.allowed_uids);
    access.gids.extend(&cfg.daemon.allowed_gids);
    let (tx, rx) = sync_channel::<serde_json::Value>(4096);
    let shared = Arc::new(guard::Shared::new(
        lookup.clone(),
        live.clone(),
        health.clone(),
        tx.clone(),
    ));
    {
        let (lookup, h, listener) = (lookup.clone(), health.clone(), Arc::new(listener));
        let enf: Arc<dyn socket::Enforcement> = shared.clone();
        let job = Box::new(move |sd: &Shutdown| {
            socket::serve(&listener, &access, &lookup, &tx, &enf, &h, sd)
        });
        jobs.push(supervisor::spawn(
            "socket",
            shutdown.clone(),
            health.clone(),
            job,
        ));
    }
    let (refuse_tx, refuse_rx) = sync_channel::<serde_json::Value>(256);
    {
        let (db_path, h, sh) = (db_path.clone(), health.clone(), shared.clone());
        let rx = Arc::new(std::sync::Mutex::new(rx));
        let job = Box::new(move |sd: &Shutdown| audit(&db_path, &rx, &refuse_tx, &sh, &h, sd));
        jobs.push(supervisor::spawn(
            "audit",
            shutdown.clone(),
            health.clone(),
            job,
        ));
    }
    {
        let sh = shared.clone();
        let rx = std::sync::Mutex::new(refuse_rx);
        let job = Box::new(move |sd: &Shutdown| guard::refusals(&sh, &rx, sd));
        jobs.push(supervisor::spawn(
            "refusals",
            shutdown.clone(),
            health.clone(),
            job,
        ));
    }
    let bus = Arc::new(crate::plex::events::Bus::default());
    {
        let sh = shared.clone();
        let events = std::sync::Mutex::new(bus.subscribe());
        let job = Box::new(move |sd: &Shutdown| guard::guard(&sh, &events, sd));
        jobs.push(supervisor::spawn(
            "guard",
            shutdown.clone(),
            health.clone(),
            job,
        ));
    }
    match cfg.plex.resolved() {
        Ok((url, token)) => {
            let events = std::sync::Mutex::new(bus.subscribe());
            let (lookup, live2, db_path, h) = (
                lookup.clone(),
                live.clone(),
                db_path.clone(),
                health.clone(),
            );
            let job =
                Box::new(move |sd: &Shutdown| sync_job(&live2, &db_path, &lookup, &h, &events, sd));
            jobs.push(supervisor::spawn(
                "sync",
                shutdown.clone(),
                health.clone(),
                job,
            ));
            let job =
                Box::new(move |sd: &Shutdown| crate::plex::events::listen(&url, &token, &bus, sd));
            jobs.push(supervisor::spawn(
                "events",
                shutdown.clone(),
                health.clone(),
                job,
            ));
        }
        Err(e) => tracing::warn!("the library index will not be synced: {e:#}"),
    }
    if !cfg.daemon.http_listen.is_empty() {
        let server = Arc::new(http::bind(&cfg.daemon.http_listen)?);
        let h = health.clone();
        let job = Box::new(move |sd: &Shutdown| http::serve(&server, &h, sd));
        jobs.push(supervisor::spawn(
            "http",
            shutdown.clone(),
            health.clone(),
            job,
        ));
        tracing::info!(listen = %cfg.daemon.http_listen, "serving /health and /metrics");
    }
    lifecycle::notify("READY=1");
    tracing::info!(socket = %cfg.shim.socket, "ready");

    let mut reloads = shutdown.reload_generation();
    while !shutdown.wait(Duration::from_secs(1)) {
        if shutdown.reload_generation() != reloads {
            reloads = shutdown.reload_generation();
            lifecycle::notify("RELOADING=1");
            match config::load_strict(&path) {
                Ok(new) => {
                    levels.set_debug(args.verbose || new.daemon.debug);
                    let old = live.read().unwrap_or_else(|e| e.into_inner()).clone();
                    let needs_restart: Vec<&str> = [
                        ("shim.socket", old.shim.socket != new.shim.socket),
                        (
                            "daemon.state_dir",
                            old.daemon.state_dir != new.daemon.state_dir,
                        ),
                        (
                            "daemon.http_listen",
                            old.daemon.http_listen != new.daemon.http_listen,
                        ),
                        (
                            "daemon.socket_group",
                            old.daemon.socket_group != new.daemon.socket_group,
                        ),
                        (
                            "daemon.allowed_uids/gids",
                            old.daemon.allowed_uids != new.daemon.allowed_uids
                                || old.daemon.allowed_gids != new.daemon.allowed_gids,
                        ),
                        (
                            "daemon healer keys",
                            old.daemon.heal_transcoder != new.daemon.heal_transcoder
                                || old.daemon.plex_dir != new.daemon.plex_dir
                                || old.daemon.shim_binary != new.daemon.shim_binary
                                || old.daemon.heal_interval_s != new.daemon.heal_interval_s,
                        ),
                        ("index.database", old.index.database != new.index.database),
                    ]
                    .into_iter()
                    .filter_map(|(k, changed)| changed.then_some(k))
                    .collect();
                    if !needs_restart.is_empty() {
                        tracing::warn!(
                            "reloaded; these changes take effect after a restart: {}",
                            needs_restart.join(", ")
                        );
                    } else {
                        tracing::info!("configuration reloaded");
                    }
                    *live.write().unwrap_or_else(|e| e.into_inner()) = new;
                }
                Err(e) => {
                    tracing::error!("reload failed, keeping the running configuration: {e:#}")
                }
            }
            lifecycle::notify("READY=1");
        }
    }
    lifecycle::notify("STOPPING=1");
    let deadline = std::time::Instant::now() + STOP_GRACE;
    for j in jobs {
        while !j.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if j.is_finished() {
            let _ = j.join();
        }
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Stores decision records (the shim's reports and the daemon's own) in the audit table,
/// remembers which transcodes the shim handled, and queues refusals for termination.
fn audit(
    db_path: &Path,
    rx: &std::sync::Mutex<Receiver<serde_json::Value>>,
    refusals: &std::sync::mpsc::SyncSender<serde_json::Value>,
    shared: &guard::Shared,
    health: &health::Health,
    shutdown: &Shutdown,
) -> Result<()> {
    let db = index::open(db_path)?;
    let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
    while !shutdown.is_set() {
        let rec = match rx.recv_timeout(Duration::from_millis(250)) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        };
        let field = |k: &str| rec.get(k).and_then(|v| v.as_str()).map(String::from);
        if field("kind").as_deref() == Some("outcome") {
            if let (Some(s), Some(o)) = (field("session"), field("outcome")) {
                crate::jobs::audit::set_outcome(&db, &s, &o, field("user").as_deref())?;
            }
            continue;
        }
        if field("kind").as_deref() == Some("viewer") {
            if let (Some(s), Some(u)) = (field("session"), field("user")) {
                crate::jobs::audit::set_user(&db, &s, &u)?;
            }
            continue;
        }
        if rec.get("origin").is_none() {
            // The shim's own report.
            health.decision(
                "shim",
                &field("decision").unwrap_or_default(),
                &field("reason").unwrap_or_default(),
            );
            shared.note_shim(&rec);
            if field("decision").as_deref() != Some("pass") {
                tracing::info!(
                    decision = field("decision").unwrap_or_default(),
                    reason = field("reason").unwrap_or_default(),
                    input = field("input").unwrap_or_default(),
                    "shim decision"
                );
            }
            if field("decision").as_deref() == Some("refuse")
                && refusals.try_send(rec.clone()).is_err()
            {
                tracing::warn!("refusal queue full: a refused session is not terminated");
            }
        }
        crate::jobs::audit::insert(&db, &rec)?;
    }
    Ok(())
}

/// Syncs the index from Plex now and every `index.sync_interval_s`.
#[allow(clippy::too_many_arguments)]
fn sync_job(
    live: &std::sync::RwLock<Config>,
    db_path: &Path,
    lookup: &Lookup,
    health: &health::Health,
    events: &std::sync::Mutex<Receiver<crate::plex::events::Event>>,
    shutdown: &Shutdown,
) -> Result<()> {
    let db = index::open(db_path)?;
    let mut client: Option<((String, String), crate::plex::Plex)> = None;
    loop {
        // Read the configuration each pass: SIGHUP may have changed Plex or the index knobs.
        let cfg = live.read().unwrap_or_else(|e| e.into_inner()).clone();
        let (url, token) = cfg.plex.resolved()?;
        if client
            .as_ref()
            .is_none_or(|(k, _)| k != &(url.clone(), token.clone()))
        {
            let t = |ms| Duration::from_millis(ms);
            client = Some((
                (url.clone(), token.clone()),
                crate::plex::Plex::new(
                    &url,
                    &token,
                    t(cfg.plex.connect_timeout_ms),
                    t(cfg.plex.read_timeout_ms),
                )?,
            ));
        }
        let plex = match &client {
            Some((_, p)) => p,
            None => anyhow::bail!("no Plex client"),
        };
        let opts = sync::Options {
            page_size: cfg.index.page_size,
            metadata_batch: cfg.index.metadata_batch,
            deletion_interval_s: cfg.index.deletion_check_interval_s,
            ..sync::Options::default()
        };
        let s = match sync::run(plex, &db, &opts, &mut |_| {}, &|| shutdown.is_set()) {
            Ok(s) => s,
            Err(_) if shutdown.is_set() => return Ok(()),
            Err(e) => {
                health.synced(Err(format!("{e:#}")), None);
                return Err(e);
            }
        };
        lookup.rebuild(&db)?;
        health.synced(Ok(&s), index::counts(&db).ok());
        tracing::info!(
            seen = s.seen,
            changed = s.changed,
            removed = s.removed,
            api_calls = s.api_calls,
            seconds = s.seconds,
            "library synced"
        );
        if !wait_for_next_sync(live, &db, lookup, events, shutdown)? {
            return Ok(());
        }
    }
}

/// Waits for the next sync: the interval, or a finished library scan (debounced: 2 s after
/// the last one). Deletions announced by a timeline notification (state 9) are applied at
/// once. Returns false on shutdown.
fn wait_for_next_sync(
    live: &std::sync::RwLock<Config>,
    db: &crate::store::Store,
    lookup: &Lookup,
    events: &std::sync::Mutex<Receiver<crate::plex::events::Event>>,
    shutdown: &Shutdown,
) -> Result<bool> {
    let events = events.lock().unwrap_or_else(|e| e.into_inner());
    let since = std::time::Instant::now();
    let mut scan_finished: Option<std::time::Instant> = None;
    loop {
        if shutdown.is_set() {
            return Ok(false);
        }
        match events.recv_timeout(Duration::from_millis(250)) {
            Ok(e) if e.is_scan_finished() => scan_finished = Some(std::time::Instant::now()),
            Ok(e) => {
                if let Some(item) = e.deleted_item() {
                    let keys = [item.to_string()];
                    let title = index::deletions::labels(db, &keys)?.remove(item);
                    if index::delete_items(db, &keys)? > 0 {
                        lookup.rebuild(db)?;
                        tracing::info!(
                            rating_key = %item,
                            "Plex deleted {}: removed from the index",
                            title.unwrap_or_else(|| item.to_string())
                        );
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {}
        }
        if scan_finished.is_some_and(|t| t.elapsed() >= Duration::from_secs(2)) {
            tracing::info!("a library scan finished: syncing");
            return Ok(true);
        }
        // The interval as configured now (SIGHUP may change it while we wait).
        let interval = live
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .index
            .sync_interval_s;
        if interval > 0 && since.elapsed() >= Duration::from_secs(interval) {
            return Ok(true);
        }
    }
}

/// The Plex directory: configured, else the first usual place that exists.
fn plex_dir(cfg: &Config) -> Option<PathBuf> {
    if !cfg.daemon.plex_dir.is_empty() {
        return Some(PathBuf::from(&cfg.daemon.plex_dir));
    }
    PLEX_DIRS.iter().map(PathBuf::from).find(|p| p.is_dir())
}

/// Used by `check-config` to show where the daemon would look.
pub fn describe_plex_dir(cfg: &Config) -> String {
    plex_dir(cfg)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "not found".into())
}
