//! The index job: syncs the library from Plex at start, every `index.sync_interval_s`, and
//! after each finished library scan (debounced 2 s) and when asked (`POST /api/sync`);
//! applies the deletions Plex announces (timeline state 9) at once.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::sync;
use crate::daemon::ctx::Ctx;
use crate::daemon::lifecycle::Shutdown;
use crate::jobs::Job;
use crate::plex::events::Event;

/// Off when Plex is not configured (then nothing could be synced; the index serves what it has).
pub fn job(ctx: &Ctx) -> Result<Option<Job>> {
    if let Err(e) = &ctx.config().plex_access {
        tracing::warn!("the library index will not be synced: {e}");
        return Ok(None);
    }
    let ctx = ctx.clone();
    let events = Mutex::new(ctx.events.subscribe());
    Ok(Some(Box::new(move |sd: &Shutdown| run(&ctx, &events, sd))))
}

fn run(ctx: &Ctx, events: &Mutex<Receiver<Event>>, shutdown: &Shutdown) -> Result<()> {
    let db = super::open(&ctx.db_path)?;
    loop {
        // The configuration of this pass: SIGHUP may have changed Plex or the index knobs.
        let cfg = ctx.config();
        let Some(plex) = ctx.plex() else {
            anyhow::bail!(
                "Plex is not configured: {}",
                cfg.plex_access.as_ref().err().map_or("", |e| e.as_str())
            );
        };
        let opts = sync::Options {
            page_size: cfg.index.page_size,
            metadata_batch: cfg.index.metadata_batch,
            deletion_interval_s: cfg.index.deletion_check_interval_s,
            ..sync::Options::default()
        };
        let s = match sync::run(&plex, &db, &opts, &mut |_| {}, &|| shutdown.is_set()) {
            Ok(s) => s,
            Err(_) if shutdown.is_set() => return Ok(()),
            Err(e) => {
                ctx.health.synced(Err(format!("{e:#}")), None);
                return Err(e);
            }
        };
        ctx.lookup.rebuild(&db)?;
        ctx.health.synced(Ok(&s), super::counts(&db).ok());
        tracing::info!(
            seen = s.seen,
            changed = s.changed,
            removed = s.removed,
            api_calls = s.api_calls,
            seconds = s.seconds,
            "library synced"
        );
        if !wait_for_next_sync(ctx, &db, events, shutdown)? {
            return Ok(());
        }
    }
}

/// Waits for the next sync: the interval, or a finished library scan (debounced: 2 s after
/// the last one). Deletions announced by a timeline notification (state 9) are applied at
/// once. Returns false on shutdown.
fn wait_for_next_sync(
    ctx: &Ctx,
    db: &crate::store::Store,
    events: &Mutex<Receiver<Event>>,
    shutdown: &Shutdown,
) -> Result<bool> {
    let events = events.lock().unwrap_or_else(|e| e.into_inner());
    let since = Instant::now();
    let mut scan_finished: Option<Instant> = None;
    loop {
        if shutdown.is_set() {
            return Ok(false);
        }
        match events.recv_timeout(Duration::from_millis(250)) {
            Ok(e) if e.is_scan_finished() => scan_finished = Some(Instant::now()),
            Ok(e) => {
                if let Some(item) = e.deleted_item() {
                    let keys = [item.to_string()];
                    let title = super::deletions::labels(db, &keys)?.remove(item);
                    if super::delete_items(db, &keys)? > 0 {
                        ctx.lookup.rebuild(db)?;
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
        // `POST /api/sync` (the dashboard's "sync now"); one set during a pass syncs again
        // right after it.
        if ctx.dashboard.sync_requested.swap(false, Ordering::SeqCst) {
            tracing::info!("a sync was requested through the ops API: syncing");
            return Ok(true);
        }
        if scan_finished.is_some_and(|t| t.elapsed() >= Duration::from_secs(2)) {
            tracing::info!("a library scan finished: syncing");
            return Ok(true);
        }
        // The interval as configured now (SIGHUP may change it while we wait).
        let interval = ctx.config().index.sync_interval_s;
        if interval > 0 && since.elapsed() >= Duration::from_secs(interval) {
            return Ok(true);
        }
    }
}
