//! `downshiftarr daemon`: everything that is not a transcode decision.
//!
//! One process: the configuration is loaded, the index loaded into memory, one context
//! (`daemon::ctx`) built, and every configured job of the table (`jobs::TABLE`) started on its
//! own thread under the supervisor. Then this thread waits: SIGHUP reloads the configuration
//! (jobs read it per pass; the keys that need a restart are named), SIGTERM/SIGINT stop every
//! job within the grace period.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use crate::cli::DaemonArgs;
use crate::config;
use crate::daemon::ctx::Ctx;
use crate::daemon::lifecycle::{self, InstanceLock, Shutdown};
use crate::daemon::{health, logging};
use crate::jobs::index::{self, Lookup};

/// How long jobs get to finish after SIGTERM before the daemon exits anyway.
const STOP_GRACE: Duration = Duration::from_secs(4);

pub fn run(args: DaemonArgs) -> Result<ExitCode> {
    let path = config::path(args.config.as_deref());
    let cfg = config::load(&path)?;
    let signals = lifecycle::block_signals()?;
    crate::daemon::logring::ring().set_secrets(cfg.secret_values());
    let levels = logging::init(args.verbose || cfg.daemon.debug)?;
    for note in cfg.notes() {
        tracing::warn!("{note}");
    }
    let _lock = InstanceLock::acquire(Path::new(&cfg.daemon.state_dir))?;
    tracing::info!(version = downshiftarr_shim::VERSION, config = %path.display(), "downshiftarr daemon starting");

    let shutdown = Shutdown::default();
    lifecycle::spawn_signal_thread(signals, shutdown.clone())?;
    let health = Arc::new(health::Health::new());

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

    let ctx = Ctx::new(path.clone(), cfg, shutdown.clone(), health, lookup);
    let jobs = crate::jobs::start(&ctx)?;
    lifecycle::notify("READY=1");
    tracing::info!(socket = %ctx.config().shim.socket, "ready");

    let mut reloads = shutdown.reload_generation();
    while !shutdown.wait(Duration::from_secs(1)) {
        if shutdown.reload_generation() != reloads {
            reloads = shutdown.reload_generation();
            lifecycle::notify("RELOADING=1");
            match config::load(&ctx.config_path) {
                Ok(new) => {
                    levels.set_debug(args.verbose || new.daemon.debug);
                    let old = ctx.config();
                    let needs_restart = config::Config::needs_restart(&old, &new);
                    if !needs_restart.is_empty() {
                        tracing::warn!(
                            "reloaded; these changes take effect after a restart: {}",
                            needs_restart.join(", ")
                        );
                    } else {
                        tracing::info!("configuration reloaded");
                    }
                    if new.throttle.enabled() && !old.throttle.enabled() {
                        tracing::warn!("throttle: turned on by the reload; the throttle job starts at the next restart");
                    }
                    crate::daemon::logring::ring().set_secrets(new.secret_values());
                    ctx.set_config(new);
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
