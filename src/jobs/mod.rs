//! The daemon's jobs, one module each, and the table that starts them.
//!
//! A job is a module with a builder `fn(&Ctx) -> Result<Option<Job>>`: `Ok(None)` when it is
//! not configured (it logs why), `Err` when the daemon cannot run as configured (a socket that
//! cannot be bound), else the job's loop, run on its own thread under the supervisor
//! (restarted with back-off when it fails, stopped by the shared shutdown). A new job is a
//! module plus one line in [`TABLE`].

pub mod audit;
pub mod downloads;
pub mod guard;
pub mod heal;
pub mod index;
pub mod scrobble;
pub mod sessions;
pub mod socket;
pub mod throttle;

use std::thread::JoinHandle;

use anyhow::Result;

use crate::daemon::ctx::Ctx;
use crate::daemon::lifecycle::Shutdown;
use crate::daemon::supervisor;

/// A job's loop: returns `Ok` when shutdown was requested, `Err` when it failed.
pub type Job = supervisor::JobFn;

/// Builds a job from the context; `Ok(None)`: not configured.
pub type Builder = fn(&Ctx) -> Result<Option<Job>>;

/// Every job, in start order: the healer first (the shim must be in place), `/health` and
/// `/metrics` bound before the socket answers (whoever sees the daemon ready on its socket can
/// read them), the socket before anything that takes time, the session tracker before its
/// consumers.
pub const TABLE: &[(&str, Builder)] = &[
    ("heal", heal::job),
    ("http", http),
    ("socket", socket::job),
    ("audit", audit::writer::job),
    ("refusals", guard::refusals_job),
    ("sessions", sessions::job),
    ("guard", guard::job),
    ("throttle", throttle::run::job),
    ("scrobble", scrobble::run::job),
    ("downloads", downloads::run::job),
    ("sync", index::job::job),
    ("events", events),
];

/// Builds and starts every configured job of [`TABLE`].
pub fn start(ctx: &Ctx) -> Result<Vec<JoinHandle<()>>> {
    start_only(ctx, &TABLE.iter().map(|(n, _)| *n).collect::<Vec<_>>())
}

/// The jobs that work for or with Plex: off together on a machine without Plex (see
/// [`plex_absent`]). The socket stays: `downshiftarr status` asks the daemon through it.
pub const PLEX_JOBS: &[&str] = &["heal", "refusals", "sessions", "guard", "sync", "events"];

/// Why the Plex jobs are off, when this machine has no Plex to work with: no Plex token is set
/// (not in the environment, a token file or the file's key) and no Plex install is found. A
/// Jellyfin-only owner runs the downloads job and hears ONE line about Plex, not a warning per
/// job; a token file that cannot be read, or a Plex installed here, is not that case (each job
/// then says what is wrong, as before).
pub fn plex_absent(cfg: &crate::config::Config) -> Option<String> {
    if !matches!(cfg.plex.token.get(), Ok(None)) || heal::plex_dir(cfg).is_some() {
        return None;
    }
    Some(format!(
        "Plex is not configured (no token) and not installed here ({}): the Plex jobs are off ({})",
        crate::config::PLEX_DIRS.join(", "),
        PLEX_JOBS.join(", ")
    ))
}

/// [`start`] for the jobs of [`TABLE`] named in `names` (a command that runs one job on its
/// own, with the jobs it consumes).
pub fn start_only(ctx: &Ctx, names: &[&str]) -> Result<Vec<JoinHandle<()>>> {
    let mut handles = Vec::new();
    let absent = plex_absent(&ctx.config());
    if let Some(why) = &absent {
        if names.iter().any(|n| PLEX_JOBS.contains(n)) {
            tracing::info!("{why}");
        }
    }
    for (name, build) in TABLE.iter().filter(|(n, _)| names.contains(n)) {
        if absent.is_some() && PLEX_JOBS.contains(name) {
            continue;
        }
        if let Some(job) = build(ctx)? {
            handles.push(supervisor::spawn(
                name,
                ctx.shutdown.clone(),
                ctx.health.clone(),
                job,
            ));
        }
    }
    Ok(handles)
}

/// Plex's notifications, published on the context's event bus (reconnected by the
/// supervisor). Off when Plex is not configured.
fn events(ctx: &Ctx) -> Result<Option<Job>> {
    let Ok((url, token)) = ctx.config().plex_access.clone() else {
        return Ok(None); // the sync job says why
    };
    let ctx = ctx.clone();
    Ok(Some(Box::new(move |sd: &Shutdown| {
        crate::plex::events::listen(&url, &token, &ctx.events, &|| sd.is_set())
    })))
}

/// `/health`, `/metrics`, the Plex webhook and the ops API, when `daemon.http_listen` is set.
fn http(ctx: &Ctx) -> Result<Option<Job>> {
    let listen = ctx.config().daemon.http_listen.clone();
    if listen.is_empty() {
        return Ok(None);
    }
    let server = crate::daemon::http::bind(&listen)?;
    tracing::info!(listen = %listen, "serving /health, /metrics, the webhooks and the ops API");
    let ctx = ctx.clone();
    Ok(Some(Box::new(move |sd: &Shutdown| {
        crate::daemon::http::serve(&server, &ctx, sd)
    })))
}
